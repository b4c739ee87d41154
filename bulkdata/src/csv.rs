//! CSV reports (TR-369 A.7.1): RFC 4180 fields, a required header line, rows separated by
//! CRLF (or LF), the escape character quoting fields and doubled inside them.
//!
//! - `ParameterPerRow` (R-BULK.12): columns `ParameterName, ParameterValue, ParameterType`,
//!   after an optional timestamp column; rows with one timestamp form one report.
//! - `ParameterPerColumn`: the header holds the names, each further row is one report; a first
//!   column named `ReportTimestamp` holds its time.

use crate::{CsvOptions, Error, Format, Out, Result, time};

const NAME: &str = "ParameterName";
const VALUE: &str = "ParameterValue";
const TYPE: &str = "ParameterType";
const TIMESTAMP: &str = "ReportTimestamp";

/// One CSV record and the line it starts on.
struct Row {
    line: usize,
    fields: Vec<String>,
}

pub(crate) fn decode(
    text: &str,
    format: Option<Format>,
    opts: CsvOptions,
    out: &mut Out,
) -> Result<()> {
    let rows = records(text, opts)?;
    let mut rows = rows.into_iter();
    let Some(header) = rows.next() else {
        return Err(Error::Csv {
            line: 1,
            detail: "no header line".into(),
        });
    };
    let per_row =
        header.fields.iter().any(|f| f == NAME) && header.fields.iter().any(|f| f == VALUE);
    match format {
        Some(Format::ParameterPerRow) if !per_row => Err(Error::HintMismatch {
            expected: "a ParameterPerRow report",
        }),
        Some(Format::ParameterPerColumn) if per_row => Err(Error::HintMismatch {
            expected: "a ParameterPerColumn report",
        }),
        Some(Format::NameValuePair | Format::ObjectHierarchy) => Err(Error::HintMismatch {
            expected: "a JSON report",
        }),
        _ if per_row => parameter_per_row(&header, rows, out),
        _ => parameter_per_column(&header, rows, out),
    }
}

fn bad(line: usize, detail: impl Into<String>) -> Error {
    Error::Csv {
        line,
        detail: detail.into(),
    }
}

fn parameter_per_row(header: &Row, rows: impl Iterator<Item = Row>, out: &mut Out) -> Result<()> {
    let col = |name: &str| header.fields.iter().position(|f| f == name);
    let (Some(name_at), Some(value_at)) = (col(NAME), col(VALUE)) else {
        return Err(bad(
            header.line,
            "header lacks ParameterName or ParameterValue",
        ));
    };
    let type_at = col(TYPE);
    let ts_at = (name_at != 0 && value_at != 0 && type_at != Some(0)).then_some(0);
    let known = [Some(name_at), Some(value_at), type_at, ts_at];
    for (i, f) in header.fields.iter().enumerate() {
        let dup = header.fields.iter().filter(|g| *g == f).count() > 1;
        if dup || !known.contains(&Some(i)) {
            return Err(bad(header.line, format!("unexpected column {:?}", clip(f))));
        }
    }
    let mut report = 0;
    let mut previous: Option<String> = None;
    for row in rows {
        if row.fields.len() != header.fields.len() {
            return Err(width(&row, header));
        }
        let at = match ts_at {
            Some(i) => {
                let raw = &row.fields[i];
                if previous.as_ref().is_some_and(|p| p != raw) {
                    report += 1;
                }
                previous = Some(raw.clone());
                time::parse_text(raw)?
            }
            None => None,
        };
        let mut fields = row.fields;
        let value = std::mem::take(&mut fields[value_at]);
        let name = std::mem::take(&mut fields[name_at]);
        out.push(name, value, at, report)?;
    }
    Ok(())
}

fn parameter_per_column(
    header: &Row,
    rows: impl Iterator<Item = Row>,
    out: &mut Out,
) -> Result<()> {
    let has_ts = header
        .fields
        .first()
        .is_some_and(|f| f.eq_ignore_ascii_case(TIMESTAMP));
    let names = &header.fields[usize::from(has_ts)..];
    for (report, row) in rows.enumerate() {
        if row.fields.len() != header.fields.len() {
            return Err(width(&row, header));
        }
        let mut fields = row.fields.into_iter();
        let at = match has_ts {
            true => fields
                .next()
                .map(|t| time::parse_text(&t))
                .transpose()?
                .flatten(),
            false => None,
        };
        for (name, value) in names.iter().zip(fields) {
            out.push(name.clone(), value, at, report)?;
        }
    }
    Ok(())
}

fn width(row: &Row, header: &Row) -> Error {
    bad(
        row.line,
        format!(
            "{} fields, the header has {}",
            row.fields.len(),
            header.fields.len()
        ),
    )
}

/// Splits the text into records; blank lines are skipped.
fn records(text: &str, opts: CsvOptions) -> Result<Vec<Row>> {
    let (sep, q) = (opts.field_separator, opts.escape);
    let mut rows = Vec::new();
    let mut fields: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut line = 1;
    let mut row_line = 1;
    let mut in_quotes = false;
    // The field was quoted (so an empty line is not blank, and text after it is an error).
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_quotes {
            if c == q {
                if chars.peek() == Some(&q) {
                    chars.next();
                    field.push(q);
                } else {
                    in_quotes = false;
                }
            } else {
                if c == '\n' {
                    line += 1;
                }
                field.push(c);
            }
            continue;
        }
        match c {
            _ if c == q && field.is_empty() && !quoted => {
                in_quotes = true;
                quoted = true;
            }
            _ if c == sep => {
                fields.push(std::mem::take(&mut field));
                quoted = false;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\r' | '\n' => {
                let blank = fields.is_empty() && field.is_empty() && !quoted;
                if !blank {
                    fields.push(std::mem::take(&mut field));
                    rows.push(Row {
                        line: row_line,
                        fields: std::mem::take(&mut fields),
                    });
                }
                quoted = false;
                line += 1;
                row_line = line;
            }
            _ if quoted => return Err(bad(line, "text after a closing quote")),
            _ => field.push(c),
        }
    }
    if in_quotes {
        return Err(bad(row_line, "unterminated quoted field"));
    }
    if !fields.is_empty() || !field.is_empty() || quoted {
        fields.push(field);
        rows.push(Row {
            line: row_line,
            fields,
        });
    }
    Ok(rows)
}

fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(text: &str) -> Vec<Vec<String>> {
        records(text, CsvOptions::default())
            .unwrap()
            .into_iter()
            .map(|r| r.fields)
            .collect()
    }

    #[test]
    fn rfc4180_fields() {
        assert_eq!(
            split("a,\"b,c\",\"say \"\"hi\"\"\"\r\n\r\nx,,\"\"\n"),
            vec![vec!["a", "b,c", "say \"hi\""], vec!["x", "", ""],]
        );
        assert_eq!(split("\"multi\nline\",2"), vec![vec!["multi\nline", "2"]]);
        assert!(records("\"open,1\n", CsvOptions::default()).is_err());
        assert!(records("\"a\"b,1\n", CsvOptions::default()).is_err());
        let semi = CsvOptions {
            field_separator: ';',
            escape: '\'',
        };
        let rows = records("a;'b;c'\n", semi).unwrap();
        assert_eq!(rows[0].fields, ["a", "b;c"]);
    }
}
