//! Guardrails: whether an action may go out, and why not.

use std::collections::{HashMap, VecDeque};

use uspwatch_proto::time::millis;

use crate::rule::{Guardrails, Mode};

/// What to do with one action attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    Send,
    DryRun,
    /// Stopped by the named guardrail.
    Suppressed(&'static str),
}

/// Per-rule guardrail bookkeeping.
#[derive(Debug, Default)]
pub(crate) struct ActionState {
    /// Last attempt per device (any outcome except a cooldown suppression).
    last_attempt: HashMap<String, i64>,
    /// Times of actions that passed every guardrail (sent or dry-run).
    passed: VecDeque<i64>,
}

const HOUR_MS: i64 = 3_600_000;

impl ActionState {
    /// Whether a firing alert on `endpoint` should attempt its action now: when it just
    /// started firing, or when the cooldown since the last attempt has passed.
    pub fn due(&self, endpoint: &str, just_fired: bool, now_ms: i64, g: &Guardrails) -> bool {
        just_fired || !self.in_cooldown(endpoint, now_ms, g)
    }

    fn in_cooldown(&self, endpoint: &str, now_ms: i64, g: &Guardrails) -> bool {
        self.last_attempt
            .get(endpoint)
            .is_some_and(|t| now_ms.saturating_sub(*t) < millis(g.cooldown))
    }

    /// Decides one attempt and records it. Order: kill switch, silence, cooldown,
    /// max_per_hour, max_fleet_fraction, then the mode.
    pub fn decide(
        &mut self,
        endpoint: &str,
        now_ms: i64,
        g: &Guardrails,
        kill_switch: bool,
        silenced: bool,
        fleet_size: usize,
    ) -> Decision {
        if self.in_cooldown(endpoint, now_ms, g) {
            return Decision::Suppressed("cooldown");
        }
        self.last_attempt.insert(endpoint.to_string(), now_ms);
        if kill_switch {
            return Decision::Suppressed("kill_switch");
        }
        if silenced {
            return Decision::Suppressed("silenced");
        }
        let fleet_ms = millis(g.fleet_window);
        let horizon = now_ms.saturating_sub(HOUR_MS.max(fleet_ms));
        while self.passed.front().is_some_and(|t| *t <= horizon) {
            self.passed.pop_front();
        }
        let in_last = |ms: i64| {
            self.passed
                .iter()
                .filter(|t| **t > now_ms.saturating_sub(ms))
                .count()
        };
        if in_last(HOUR_MS) >= g.max_per_hour {
            return Decision::Suppressed("max_per_hour");
        }
        let budget = (g.max_fleet_fraction * fleet_size as f64).ceil() as usize;
        if in_last(fleet_ms) >= budget.max(1) {
            return Decision::Suppressed("max_fleet_fraction");
        }
        self.passed.push_back(now_ms);
        match g.mode {
            Mode::Enforce => Decision::Send,
            Mode::DryRun => Decision::DryRun,
        }
    }

    /// Forgets devices whose cooldown has long passed, so the map stays bounded.
    pub fn prune(&mut self, now_ms: i64, g: &Guardrails) {
        let keep = millis(g.cooldown);
        self.last_attempt
            .retain(|_, t| now_ms.saturating_sub(*t) < keep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn g(mode: Mode) -> Guardrails {
        crate::rule::split_action(
            &toml::from_str(&format!(
                "type = \"get\"\npaths = [\"Device.\"]\nmode = \"{}\"\ncooldown = \"10m\"\nmax_per_hour = 3\nmax_fleet_fraction = 0.5",
                mode.as_str()
            ))
            .unwrap(),
        )
        .unwrap()
        .0
    }

    #[test]
    fn guardrail_order() {
        let g = g(Mode::Enforce);
        let mut s = ActionState::default();
        assert_eq!(
            s.decide("a", 0, &g, true, false, 10),
            Decision::Suppressed("kill_switch")
        );
        assert_eq!(
            s.decide("a", 1, &g, false, false, 10),
            Decision::Suppressed("cooldown")
        );
        assert_eq!(
            s.decide("b", 1, &g, false, true, 10),
            Decision::Suppressed("silenced")
        );
        for (i, d) in ["c", "d", "e"].iter().enumerate() {
            assert_eq!(
                s.decide(d, 2 + i as i64, &g, false, false, 10),
                Decision::Send
            );
        }
        assert_eq!(
            s.decide("f", 9, &g, false, false, 10),
            Decision::Suppressed("max_per_hour")
        );
        let later = 2 * HOUR_MS;
        assert!(s.due("a", false, later, &g));
        assert_eq!(s.decide("x", later, &g, false, false, 2), Decision::Send);
        assert_eq!(
            s.decide("y", later, &g, false, false, 2),
            Decision::Suppressed("max_fleet_fraction")
        );
        assert_eq!(g.cooldown, Duration::from_secs(600));
    }
}
