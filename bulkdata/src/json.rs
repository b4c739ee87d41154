//! JSON reports (TR-369 A.7.2): `{"Report":[{…},{…}]}`, oldest retained report first.
//!
//! `NameValuePair` elements are flat objects of report names to values; `ObjectHierarchy`
//! elements nest one object per path segment (instance numbers as keys). Flattening nested
//! objects by joining keys with `.` reads both; a `NameValuePair` hint refuses nesting.

use serde_json::{Map, Value};

use crate::{Error, Format, Out, Result, time};

/// The member of each report element that carries its collection time.
const COLLECTION_TIME: &str = "CollectionTime";

pub(crate) fn decode(text: &str, format: Option<Format>, out: &mut Out) -> Result<()> {
    // serde_json bounds nesting (128 levels), so the recursion below is bounded too.
    let root: Value = serde_json::from_str(text).map_err(|e| Error::Json(e.to_string()))?;
    let Value::Object(mut top) = root else {
        return Err(shape("the top level is not an object"));
    };
    let Some(Value::Array(reports)) = top.remove("Report") else {
        return Err(shape("there is no \"Report\" array"));
    };
    if let Some(k) = top.keys().next() {
        return Err(shape(&format!("unexpected top-level member {:?}", clip(k))));
    }
    let nested_ok = format != Some(Format::NameValuePair);
    for (i, report) in reports.into_iter().enumerate() {
        let Value::Object(mut members) = report else {
            return Err(shape(&format!("report {i} is not an object")));
        };
        let at = match members.remove(COLLECTION_TIME) {
            None => None,
            Some(Value::Number(n)) => {
                time::epoch_ms(n.as_f64().ok_or_else(|| Error::Timestamp(n.to_string()))?)?
            }
            Some(Value::String(s)) => time::parse_text(&s)?,
            Some(other) => return Err(Error::Timestamp(clip(&other.to_string()))),
        };
        flatten(members, None, nested_ok, at, i, out)?;
    }
    Ok(())
}

fn flatten(
    members: Map<String, Value>,
    prefix: Option<&str>,
    nested_ok: bool,
    at: Option<i64>,
    report: usize,
    out: &mut Out,
) -> Result<()> {
    for (key, value) in members {
        if key.is_empty() {
            return Err(shape("an empty member name"));
        }
        let name = match prefix {
            Some(p) => format!("{p}.{key}"),
            None => key,
        };
        let text = match value {
            Value::Object(inner) if nested_ok => {
                flatten(inner, Some(&name), nested_ok, at, report, out)?;
                continue;
            }
            Value::Object(_) => {
                return Err(shape(&format!(
                    "{:?} holds an object in a NameValuePair report",
                    clip(&name)
                )));
            }
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null | Value::Array(_) => {
                return Err(shape(&format!(
                    "{:?} is not a string, number or boolean",
                    clip(&name)
                )));
            }
        };
        out.push(name, text, at, report)?;
    }
    Ok(())
}

fn shape(detail: &str) -> Error {
    Error::Shape(detail.to_string())
}

fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}
