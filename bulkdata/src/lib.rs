//! Sans-IO decoding of TR-181 Bulk Data reports (TR-369 Annex A) into flat readings.
//!
//! A report arrives as bytes — the `Data` argument of a `Push!` event, an MQTT payload or an
//! HTTP body — in one of four encodings: JSON `NameValuePair`, JSON `ObjectHierarchy`, CSV
//! `ParameterPerRow` and CSV `ParameterPerColumn`. [`decode`] turns the whole report into
//! [`Reading`]s (name, value, number, collection time) or refuses it with an [`Error`]; it
//! never returns part of a report. Nothing here touches a socket, a file or a clock.
//!
//! The encoding and format need not be known in advance: only the HTTP transport carries them
//! (`Content-Type`, `BBF-Report-Format`), while over MQTT 3.1.1 and USP `Push!` the receiver
//! would have to remember the profile's configuration. The shapes are distinguishable, so
//! [`Hints::default`] detects them: a body starting with `{` is JSON, whose `NameValuePair` is
//! the flat case of `ObjectHierarchy`; a CSV header naming `ParameterName` and
//! `ParameterValue` is `ParameterPerRow`, any other header is `ParameterPerColumn`. A hint
//! that is given is enforced.
//!
//! Timestamps: TR-181 defines `Unix-Epoch` in milliseconds, while TR-369's example and the BBF
//! reference agent write seconds. An epoch value of 10^11 or more is read as milliseconds
//! (10^11 seconds is the year 5138), anything smaller as seconds. ISO 8601 values without an
//! offset are UTC; instants before 1970 (TR-106's "Unknown Time" is year 1) mean the device
//! did not know the time, and the reading carries no collection time.
//!
//! ```
//! use uspwatch_bulkdata::{decode, Hints, Limits};
//!
//! let report = br#"{"Report":[{"CollectionTime":1736935200,"Device.DeviceInfo.UpTime":86400}]}"#;
//! let readings = decode(report, &Hints::default(), &Limits::default()).unwrap();
//! assert_eq!(readings[0].name, "Device.DeviceInfo.UpTime");
//! assert_eq!(readings[0].number, Some(86400.0));
//! assert_eq!(readings[0].collection_time_ms, Some(1_736_935_200_000));
//! ```

mod csv;
mod json;
mod time;

pub use time::epoch_ms;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a report was refused. A refused report yields no readings at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The report is larger than [`Limits::max_report_bytes`].
    #[error("report is {size} bytes, over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    /// The report holds more than [`Limits::max_samples`] parameter values.
    #[error("report holds more than {limit} values")]
    TooManySamples { limit: usize },
    /// The bytes are not UTF-8 text.
    #[error("report is not UTF-8 text")]
    NotUtf8,
    /// The body is empty or only whitespace.
    #[error("report is empty")]
    Empty,
    /// The JSON does not parse.
    #[error("report is not valid JSON: {0}")]
    Json(String),
    /// The JSON parses but is not shaped like a Bulk Data report.
    #[error("JSON report is malformed: {0}")]
    Shape(String),
    /// A CSV line is malformed.
    #[error("CSV report line {line}: {detail}")]
    Csv { line: usize, detail: String },
    /// A collection time could not be read.
    #[error("timestamp {0:?} is neither Unix epoch nor ISO 8601")]
    Timestamp(String),
    /// A parameter name is empty, too long or contains control characters.
    #[error("parameter name {0:?} is invalid")]
    InvalidName(String),
    /// A transport hint (content type, report format) is not one this decoder knows.
    #[error("unsupported {what}: {value:?}")]
    Unsupported { what: &'static str, value: String },
    /// The body does not match the encoding or format the transport declared.
    #[error("report is not {expected} as declared")]
    HintMismatch { expected: &'static str },
}

impl Error {
    /// Whether the report was refused for its size rather than its content.
    pub fn is_too_large(&self) -> bool {
        matches!(self, Error::TooLarge { .. } | Error::TooManySamples { .. })
    }
}

/// The two encodings of `Profile.{i}.EncodingType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Json,
    Csv,
}

/// The four report formats (`JSONEncoding.ReportFormat`, `CSVEncoding.ReportFormat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    NameValuePair,
    ObjectHierarchy,
    ParameterPerRow,
    ParameterPerColumn,
}

impl Format {
    /// The encoding this format belongs to.
    pub fn encoding(self) -> Encoding {
        match self {
            Format::NameValuePair | Format::ObjectHierarchy => Encoding::Json,
            Format::ParameterPerRow | Format::ParameterPerColumn => Encoding::Csv,
        }
    }

    /// Reads a `BBF-Report-Format` header value. TR-369 calls it a token but quotes it in its
    /// example; the reference agent sends it bare, so both are accepted.
    pub fn from_token(token: &str) -> Result<Format> {
        let t = token.trim();
        let t = t
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .unwrap_or(t);
        Ok(match t {
            "NameValuePair" => Format::NameValuePair,
            "ObjectHierarchy" => Format::ObjectHierarchy,
            "ParameterPerRow" => Format::ParameterPerRow,
            "ParameterPerColumn" => Format::ParameterPerColumn,
            _ => {
                return Err(Error::Unsupported {
                    what: "report format",
                    value: token.chars().take(64).collect(),
                });
            }
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Format::NameValuePair => "a NameValuePair report",
            Format::ObjectHierarchy => "an ObjectHierarchy report",
            Format::ParameterPerRow => "a ParameterPerRow report",
            Format::ParameterPerColumn => "a ParameterPerColumn report",
        }
    }
}

/// `CSVEncoding.FieldSeparator` and `EscapeCharacter`. Rows end with CRLF or LF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsvOptions {
    pub field_separator: char,
    pub escape: char,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            field_separator: ',',
            escape: '"',
        }
    }
}

/// What the transport said about the report; `None` means "detect it".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hints {
    pub encoding: Option<Encoding>,
    pub format: Option<Format>,
    pub csv: CsvOptions,
}

impl Hints {
    /// Hints from an HTTP (or MQTT 5) `Content-Type` and an HTTP `BBF-Report-Format`.
    ///
    /// The media type decides the encoding (`application/json`, `text/csv`); its parameters
    /// (`charset`, `header`) are not needed to decode. A format that contradicts the media type
    /// is refused.
    pub fn from_headers(content_type: Option<&str>, report_format: Option<&str>) -> Result<Hints> {
        let encoding = match content_type {
            None => None,
            Some(ct) => {
                let media = ct.split(';').next().unwrap_or("").trim();
                if media.eq_ignore_ascii_case("application/json") {
                    Some(Encoding::Json)
                } else if media.eq_ignore_ascii_case("text/csv") {
                    Some(Encoding::Csv)
                } else {
                    return Err(Error::Unsupported {
                        what: "content type",
                        value: ct.chars().take(64).collect(),
                    });
                }
            }
        };
        let format = report_format.map(Format::from_token).transpose()?;
        if let (Some(e), Some(f)) = (encoding, format)
            && f.encoding() != e
        {
            return Err(Error::HintMismatch {
                expected: f.as_str(),
            });
        }
        Ok(Hints {
            encoding: encoding.or(format.map(Format::encoding)),
            format,
            csv: CsvOptions::default(),
        })
    }
}

/// Bounds on what one report may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest report accepted, in bytes.
    pub max_report_bytes: usize,
    /// Most parameter values in one report (across retained reports in it).
    pub max_samples: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_report_bytes: 1024 * 1024,
            max_samples: 10_000,
        }
    }
}

/// Longest parameter name accepted (TR-181 references are at most 256 characters; alternative
/// names with R-BULK.9/10 suffixes add a little).
pub const MAX_NAME_LEN: usize = 1024;

/// One parameter value of a report.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// The report name: the parameter path, or the profile's alternative name with its
    /// instance and sub-path suffixes (TR-369 A.5/A.6).
    pub name: String,
    /// The value as text, as TR-106 writes it (`true`, `86400`, `lab-net`).
    pub value: String,
    /// The value as a finite number, when it is one.
    pub number: Option<f64>,
    /// When the device collected it (milliseconds since the Unix epoch), if it said.
    pub collection_time_ms: Option<i64>,
    /// Which report of the body it came from (0 = oldest retained report).
    pub report: usize,
}

impl Reading {
    fn new(name: String, value: String, collection_time_ms: Option<i64>, report: usize) -> Self {
        let number = value.trim().parse::<f64>().ok().filter(|n| n.is_finite());
        Reading {
            name,
            value,
            number,
            collection_time_ms,
            report,
        }
    }
}

/// Decodes one report body, all or nothing.
pub fn decode(body: &[u8], hints: &Hints, limits: &Limits) -> Result<Vec<Reading>> {
    if body.len() > limits.max_report_bytes {
        return Err(Error::TooLarge {
            size: body.len(),
            limit: limits.max_report_bytes,
        });
    }
    let text = std::str::from_utf8(body).map_err(|_| Error::NotUtf8)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let trimmed = text.trim_start();
    if trimmed.trim_end().is_empty() {
        return Err(Error::Empty);
    }
    let looks_json = trimmed.starts_with('{');
    let encoding = hints
        .encoding
        .or(hints.format.map(Format::encoding))
        .unwrap_or(if looks_json {
            Encoding::Json
        } else {
            Encoding::Csv
        });
    let mut out = Out {
        readings: Vec::new(),
        limit: limits.max_samples,
    };
    match encoding {
        Encoding::Json => {
            if !looks_json {
                return Err(Error::HintMismatch {
                    expected: "a JSON report",
                });
            }
            json::decode(trimmed, hints.format, &mut out)?;
        }
        Encoding::Csv => csv::decode(text, hints.format, hints.csv, &mut out)?,
    }
    Ok(out.readings)
}

/// Collects readings up to the sample limit.
pub(crate) struct Out {
    readings: Vec<Reading>,
    limit: usize,
}

impl Out {
    pub(crate) fn push(
        &mut self,
        name: String,
        value: String,
        collection_time_ms: Option<i64>,
        report: usize,
    ) -> Result<()> {
        if self.readings.len() >= self.limit {
            return Err(Error::TooManySamples { limit: self.limit });
        }
        check_name(&name)?;
        self.readings
            .push(Reading::new(name, value, collection_time_ms, report));
        Ok(())
    }
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(Error::InvalidName(name.chars().take(64).collect()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_format_tokens_quoted_or_bare() {
        assert_eq!(
            Format::from_token("\"ParameterPerRow\"").unwrap(),
            Format::ParameterPerRow
        );
        assert_eq!(
            Format::from_token(" NameValuePair").unwrap(),
            Format::NameValuePair
        );
        assert!(Format::from_token("XML").is_err());
    }

    #[test]
    fn headers_decide_and_must_agree() {
        let h = Hints::from_headers(Some("text/csv; charset=UTF-8; header=present"), None).unwrap();
        assert_eq!(h.encoding, Some(Encoding::Csv));
        let h = Hints::from_headers(None, Some("ObjectHierarchy")).unwrap();
        assert_eq!(h.encoding, Some(Encoding::Json));
        assert!(Hints::from_headers(Some("application/xml"), None).is_err());
        assert_eq!(
            Hints::from_headers(Some("application/json"), Some("ParameterPerRow")),
            Err(Error::HintMismatch {
                expected: "a ParameterPerRow report"
            })
        );
    }

    #[test]
    fn numbers_are_finite_only() {
        assert_eq!(Reading::new("a".into(), "NaN".into(), None, 0).number, None);
        assert_eq!(Reading::new("a".into(), "inf".into(), None, 0).number, None);
        assert_eq!(
            Reading::new("a".into(), " -61 ".into(), None, 0).number,
            Some(-61.0)
        );
        assert_eq!(
            Reading::new("a".into(), "true".into(), None, 0).number,
            None
        );
    }
}
