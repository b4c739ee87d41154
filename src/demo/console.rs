//! The demo's full-screen live view on a terminal: fleet by MTP, event rate, firing alerts,
//! the action timeline and quarantine counts, redrawn in place once a second on the
//! terminal's alternate screen. Logs go to a file meanwhile, whose path the header shows.

use std::io::{self, Write};
use std::path::Path;
use std::time::Duration;

use uspwatch_rules::{ActionStatus, VerifyOutcome};

use super::story::{Snapshot, Story};

/// Everything one frame shows besides the story and the snapshot.
pub struct Header<'a> {
    pub elapsed: Duration,
    pub duration: Duration,
    pub endpoints: &'a str,
    pub log_file: &'a Path,
    pub agents: usize,
}

const ALT_SCREEN_ON: &str = "\x1b[?1049h\x1b[?25l";
const ALT_SCREEN_OFF: &str = "\x1b[?25h\x1b[?1049l";
const HOME: &str = "\x1b[H";
const CLEAR_LINE: &str = "\x1b[K";
const CLEAR_BELOW: &str = "\x1b[J";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";
const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const CYAN: &str = "\x1b[36m";
const DIM: &str = "\x1b[2m";

/// Rows of the alert and action tables.
const ALERT_ROWS: usize = 10;
const ACTION_ROWS: usize = 14;
/// Width used when the terminal does not say (`COLUMNS`).
const DEFAULT_WIDTH: usize = 140;

/// The terminal's alternate screen; the normal screen comes back when this is dropped, on a
/// panic too.
pub struct Screen {
    width: usize,
}

impl Screen {
    pub fn open() -> io::Result<Screen> {
        let mut out = io::stdout().lock();
        out.write_all(ALT_SCREEN_ON.as_bytes())?;
        out.flush()?;
        let width = std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.parse().ok())
            .filter(|w: &usize| *w >= 60)
            .unwrap_or(DEFAULT_WIDTH);
        Ok(Screen { width })
    }

    pub fn draw(&mut self, header: &Header<'_>, snap: &Snapshot, story: &Story) -> io::Result<()> {
        let frame = render(header, snap, story, self.width);
        let mut out = io::stdout().lock();
        out.write_all(HOME.as_bytes())?;
        for line in frame {
            out.write_all(line.as_bytes())?;
            out.write_all(CLEAR_LINE.as_bytes())?;
            out.write_all(b"\r\n")?;
        }
        out.write_all(CLEAR_BELOW.as_bytes())?;
        out.flush()
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let mut out = io::stdout().lock();
        let _ = out.write_all(ALT_SCREEN_OFF.as_bytes());
        let _ = out.flush();
    }
}

/// Cuts `s` to `width` characters (escape sequences are added around cells, not inside).
fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        format!("{s:<width$}")
    } else {
        let mut t: String = s.chars().take(width.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

fn colored(color: &str, s: &str) -> String {
    format!("{color}{s}{RESET}")
}

/// One frame as lines.
fn render(h: &Header<'_>, snap: &Snapshot, story: &Story, width: usize) -> Vec<String> {
    let mut out = vec![
        format!(
            "{BOLD}{CYAN}uspwatch demo{RESET}  t+{}s of {}s   {}",
            h.elapsed.as_secs(),
            h.duration.as_secs(),
            fit(h.endpoints, width.saturating_sub(30))
        ),
        format!("logs: {}    Ctrl-C: quit", h.log_file.display()),
        String::new(),
    ];
    out.extend(fleet_and_events(h, snap, story));
    out.push(String::new());
    out.extend(alerts(snap, width));
    out.push(String::new());
    out.extend(actions(story, width));
    out
}

fn fleet_and_events(h: &Header<'_>, snap: &Snapshot, story: &Story) -> Vec<String> {
    let mut out = vec![format!(
        "{BOLD}{:<10}{:>8}{:>8}{:>9}{RESET}     {BOLD}events{RESET} {}/s, {} total   {BOLD}quarantined{RESET} {}",
        "MTP",
        "online",
        "stale",
        "offline",
        story.rate(),
        snap.events_total,
        snap.records_rejected
    )];
    let spark = sparkline(story, 40);
    let quarantine: Vec<String> = story
        .quarantine
        .iter()
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect();
    let mut rows: Vec<String> = snap
        .fleet
        .iter()
        .map(|(mtp, p)| {
            format!(
                "{:<10}{GREEN}{:>8}{RESET}{YELLOW}{:>8}{RESET}{RED}{:>9}{RESET}",
                mtp, p.online, p.stale, p.offline
            )
        })
        .collect();
    let t = snap.totals();
    rows.push(format!(
        "{BOLD}{:<10}{:>8}{:>8}{:>9}{RESET}",
        "total", t.online, t.stale, t.offline
    ));
    let connected = snap.broker_connections as usize;
    if connected < h.agents {
        let filled = (connected * 20).checked_div(h.agents).unwrap_or(20);
        rows.push(format!(
            "connecting [{}{}] {connected}/{}",
            "#".repeat(filled),
            " ".repeat(20 - filled.min(20)),
            h.agents
        ));
    }
    for (i, row) in rows.into_iter().enumerate() {
        let right = match i {
            0 => format!("{CYAN}{spark}{RESET}"),
            1 => quarantine.join("  "),
            _ => String::new(),
        };
        // The fleet columns are 35 characters wide before their colour codes.
        out.push(format!("{row}     {right}"));
    }
    out
}

/// The newest seconds of the event rate as block characters.
fn sparkline(story: &Story, width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let data: Vec<u64> = story
        .rates
        .iter()
        .skip(story.rates.len().saturating_sub(width))
        .copied()
        .collect();
    let max = data.iter().copied().max().unwrap_or(0).max(1);
    data.iter()
        .map(|v| BARS[((v * 7) / max).min(7) as usize])
        .collect()
}

fn alerts(snap: &Snapshot, width: usize) -> Vec<String> {
    let mut out = vec![format!(
        "{BOLD}Firing alerts: {} ({} pending){RESET}",
        snap.firing.len(),
        snap.pending
    )];
    out.push(format!(
        "{BOLD}{} {} summary{RESET}",
        fit("rule", 22),
        fit("device", 26)
    ));
    let summary_w = width.saturating_sub(50).max(10);
    for a in snap.firing.iter().take(ALERT_ROWS) {
        let color = match a.severity.as_str() {
            "critical" => RED,
            "warning" => YELLOW,
            _ => RESET,
        };
        out.push(format!(
            "{} {} {}",
            colored(color, &fit(&a.rule, 22)),
            fit(&a.endpoint_id, 26),
            fit(&a.summary, summary_w)
        ));
    }
    if snap.firing.len() > ALERT_ROWS {
        out.push(colored(
            DIM,
            &format!("… {} more", snap.firing.len() - ALERT_ROWS),
        ));
    }
    out
}

fn actions(story: &Story, width: usize) -> Vec<String> {
    let mut out = vec![format!(
        "{BOLD}Actions, newest first ({} verified fixed){RESET}",
        story.actions_verified
    )];
    out.push(format!(
        "{BOLD}{} {} {} {} progress{RESET}",
        fit("when", 7),
        fit("rule", 20),
        fit("device", 26),
        fit("command", 36)
    ));
    let progress_w = width.saturating_sub(94).max(16);
    for a in story.actions().take(ACTION_ROWS) {
        let color = match (a.status, a.verify) {
            (_, Some(VerifyOutcome::Fixed)) => GREEN,
            (_, Some(VerifyOutcome::NotFixed)) | (ActionStatus::Failed, _) => RED,
            (ActionStatus::Suppressed | ActionStatus::DryRun, _) => DIM,
            _ => RESET,
        };
        out.push(format!(
            "{} {} {} {} {}",
            fit(&format!("t+{}s", a.at_s), 7),
            fit(&a.rule, 20),
            fit(&a.endpoint_id, 26),
            fit(&a.command, 36),
            colored(color, &fit(&a.progress(), progress_w))
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_pads_and_cuts_by_characters() {
        assert_eq!(fit("ab", 4), "ab  ");
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(fit("→→→→→", 3), "→→…");
    }
}
