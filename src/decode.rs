//! `uspwatch decode`: show a USP Record (and its Msg) as JSON, with the verdict the broker
//! would reach on it.
//!
//! Exit codes: 0 for a valid Record; 2 for one that decodes but fails validation (the JSON is
//! still printed, with `"valid": false` and the rejection), and 2 with a one-line error on
//! stderr for input that cannot be decoded at all.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use base64::Engine;
use serde::Serialize;
use uspwatch_proto::pb::usp::Msg;
use uspwatch_proto::pb::usp_record::Record;
use uspwatch_proto::{Decoded, Limits, Opaque, Payload, decode, validate};

/// Arguments of `uspwatch decode`.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct DecodeArgs {
    /// The Record as hex (whitespace ignored).
    #[arg(long)]
    hex: Option<String>,
    /// The Record as standard base64 (whitespace ignored).
    #[arg(long)]
    base64: Option<String>,
    /// A file holding the Record's raw bytes; `-` reads standard input.
    file: Option<PathBuf>,
}

/// The JSON printed for a Record that decodes.
#[derive(Debug, Serialize)]
struct Report<'a> {
    record: &'a Record,
    msg: Option<&'a Msg>,
    /// `msg`, `tls12`, `segmented` or `none`.
    payload: &'static str,
    record_type: &'static str,
    valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    rejection: Option<Rejection>,
}

#[derive(Debug, Serialize)]
struct Rejection {
    reason: &'static str,
    detail: String,
    usp_err_code: Option<u32>,
}

/// Why the input never became a Record; printed as one line.
struct Failure {
    reason: &'static str,
    detail: String,
}

pub fn run(args: &DecodeArgs) -> ExitCode {
    match input(args).and_then(|bytes| report(&bytes)) {
        Ok((json, valid)) => {
            let mut out = std::io::stdout().lock();
            // A closed stdout (e.g. piped into `head`) is not worth a panic.
            let _ = writeln!(out, "{json}");
            if valid {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            }
        }
        Err(f) => {
            let detail = f.detail.replace(['\n', '\r'], " ");
            let _ = writeln!(std::io::stderr().lock(), "error: {}: {detail}", f.reason);
            ExitCode::from(2)
        }
    }
}

fn input(args: &DecodeArgs) -> Result<Vec<u8>, Failure> {
    let strip = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
    let undecodable = |detail: String| Failure {
        reason: "undecodable",
        detail,
    };
    if let Some(h) = &args.hex {
        let h = strip(h);
        let h = h.strip_prefix("0x").unwrap_or(&h);
        return hex::decode(h).map_err(|e| undecodable(format!("invalid hex input: {e}")));
    }
    if let Some(b) = &args.base64 {
        return base64::engine::general_purpose::STANDARD
            .decode(strip(b))
            .map_err(|e| undecodable(format!("invalid base64 input: {e}")));
    }
    let Some(path) = &args.file else {
        return Err(undecodable(
            "no input: give --hex, --base64 or a file".into(),
        ));
    };
    let read = if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin().lock().read_to_end(&mut buf).map(|_| buf)
    } else {
        std::fs::read(path)
    };
    read.map_err(|e| Failure {
        reason: "unreadable",
        detail: format!("{}: {e}", path.display()),
    })
}

/// The pretty JSON for the bytes, and whether the Record is valid.
fn report(bytes: &[u8]) -> Result<(String, bool), Failure> {
    let (decoded, rejection) = match validate(bytes, &Limits::default()) {
        Ok(d) => (d, None),
        Err(invalid) => {
            let d = decode(bytes).map_err(|e| Failure {
                reason: e.reason().as_str(),
                detail: e.to_string(),
            })?;
            let reason = invalid.reason();
            let rejection = Rejection {
                reason: reason.as_str(),
                detail: invalid.to_string(),
                usp_err_code: reason.usp_err_code(),
            };
            (d, Some(rejection))
        }
    };
    let valid = rejection.is_none();
    let json =
        serde_json::to_string_pretty(&to_report(&decoded, rejection)).map_err(|e| Failure {
            reason: "unprintable",
            detail: e.to_string(),
        })?;
    Ok((json, valid))
}

fn to_report(d: &Decoded, rejection: Option<Rejection>) -> Report<'_> {
    let payload = match &d.payload {
        Payload::Msg(_) => "msg",
        Payload::Opaque(Opaque::Tls12) => "tls12",
        Payload::Opaque(Opaque::Segmented) => "segmented",
        Payload::None => "none",
    };
    Report {
        record: &d.record,
        msg: d.msg(),
        payload,
        record_type: d.record_type(),
        valid: rejection.is_none(),
        rejection,
    }
}
