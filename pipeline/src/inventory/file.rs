//! The static inventory file: EID → labels, as CSV or TOML.
//!
//! CSV: a header row, the first column is the Endpoint ID and every other column a label
//! (`endpoint_id,region,olt,pon,subscriber`); plain comma-separated values without quoting;
//! blank lines and lines starting with `#` are skipped.
//!
//! TOML: one table per Endpoint ID, either at the top level or under `[devices]`:
//! `[devices."os::00256D-0001"]` `region = "north"`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crate::error::{Error, Result};

pub(crate) type Labels = BTreeMap<String, String>;

pub(crate) fn load(path: &Path) -> Result<HashMap<String, Labels>> {
    let bad = |detail: String| Error::Inventory {
        path: path.to_path_buf(),
        detail,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let is_toml = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("toml"));
    if is_toml {
        parse_toml(&text).map_err(bad)
    } else {
        parse_csv(&text).map_err(bad)
    }
}

pub(crate) fn parse_csv(text: &str) -> Result<HashMap<String, Labels>, String> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
    let Some((_, header)) = lines.next() else {
        return Ok(HashMap::new());
    };
    let cols: Vec<&str> = header.split(',').map(str::trim).collect();
    let mut out = HashMap::new();
    let mut problems = Vec::new();
    for (n, line) in lines {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != cols.len() {
            problems.push(format!(
                "line {n}: {} fields, header has {}",
                fields.len(),
                cols.len()
            ));
            continue;
        }
        let eid = fields[0];
        if let Err(e) = uspwatch_proto::validate_endpoint_id(eid) {
            problems.push(format!("line {n}: {e}"));
            continue;
        }
        let labels = cols[1..]
            .iter()
            .zip(&fields[1..])
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        out.insert(eid.to_string(), labels);
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems.join("; "))
    }
}

pub(crate) fn parse_toml(text: &str) -> Result<HashMap<String, Labels>, String> {
    let mut table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
    if let Some(toml::Value::Table(devices)) = table.remove("devices") {
        table = devices;
    }
    let mut out = HashMap::new();
    let mut problems = Vec::new();
    for (eid, v) in table {
        if let Err(e) = uspwatch_proto::validate_endpoint_id(&eid) {
            problems.push(e.to_string());
            continue;
        }
        let toml::Value::Table(t) = v else {
            problems.push(format!("{eid}: expected a table of labels"));
            continue;
        };
        let mut labels = Labels::new();
        for (k, v) in t {
            let s = match v {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Float(f) => f.to_string(),
                _ => {
                    problems.push(format!("{eid}.{k}: labels are strings or numbers"));
                    continue;
                }
            };
            labels.insert(k, s);
        }
        out.insert(eid, labels);
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_and_toml() {
        let csv =
            "# fleet\nendpoint_id,region,olt\nos::00256D-1,north,olt-7\n\nos::00256D-2,south,\n";
        let m = parse_csv(csv).unwrap();
        assert_eq!(m["os::00256D-1"]["olt"], "olt-7");
        assert!(!m["os::00256D-2"].contains_key("olt"));
        assert!(parse_csv("eid,a\nos::00256D-1\n").is_err());
        assert!(parse_csv("eid,a\nnot-an-eid,x\n").is_err());

        let t = parse_toml("[devices.\"os::00256D-1\"]\nregion = \"north\"\npon = 3\n").unwrap();
        assert_eq!(t["os::00256D-1"]["pon"], "3");
        let top = parse_toml("[\"os::00256D-2\"]\nregion = \"x\"\n").unwrap();
        assert_eq!(top["os::00256D-2"]["region"], "x");
        assert!(parse_toml("[\"os::00256D-2\"]\nregion = [1]\n").is_err());
    }
}
