//! The Grafana dashboards in `dashboards/` as data: their files, their PromQL queries and the
//! metric names those queries read. Tests compare these names with the documented metrics and
//! with a live `/metrics` scrape, so a panel can never chart a series nobody exports.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The repository root (the root crate's manifest directory).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every dashboard file, sorted by name.
pub fn dashboard_files() -> Vec<PathBuf> {
    let dir = repo_root().join("dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dashboards/ entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no dashboards in {}", dir.display());
    files
}

/// Every dashboard, parsed.
pub fn dashboards() -> Vec<(PathBuf, Value)> {
    dashboard_files()
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p:?}: {e}"));
            let v: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, v)
        })
        .collect()
}

/// Every panel of a dashboard, including panels nested in collapsed rows.
pub fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().into_iter().flatten() {
        out.push(p);
        for nested in p["panels"].as_array().into_iter().flatten() {
            out.push(nested);
        }
    }
    out
}

/// Every PromQL query of a dashboard: panel targets and template-variable queries.
pub fn queries(dashboard: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for p in panels(dashboard) {
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(e) = t["expr"].as_str() {
                out.push(e.to_string());
            }
        }
    }
    for v in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let q = match &v["query"] {
            Value::String(s) => Some(s.as_str()),
            Value::Object(o) => o.get("query").and_then(Value::as_str),
            _ => None,
        };
        if v["type"] == "query"
            && let Some(q) = q
        {
            out.push(q.to_string());
        }
    }
    out
}

/// Metric names read by all dashboard queries, with the histogram series suffixes
/// (`_bucket`, `_sum`, `_count`) stripped so that they match the names the code registers.
pub fn dashboard_metric_names() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (_, d) in dashboards() {
        for q in queries(&d) {
            names.extend(metric_names_in(&q));
        }
    }
    names
}

/// Metric names in one PromQL expression or Grafana variable query
/// (`label_values(metric, label)`, `query_result(expr)`), histogram suffixes stripped.
pub fn metric_names_in(query: &str) -> BTreeSet<String> {
    let q = query.trim();
    if let Some(inner) = strip_call(q, "label_values") {
        // label_values(label) names no metric; label_values(selector, label) does.
        return match split_last_top_level_comma(inner) {
            Some((selector, _label)) => metric_names_in(selector),
            None => BTreeSet::new(),
        };
    }
    if let Some(inner) = strip_call(q, "query_result") {
        return metric_names_in(inner);
    }
    if strip_call(q, "label_names").is_some() || strip_call(q, "metrics").is_some() {
        return BTreeSet::new();
    }
    promql_metric_names(q)
        .into_iter()
        .map(|n| strip_histogram_suffix(&n).to_string())
        .collect()
}

/// `name_bucket` / `name_sum` / `name_count` → `name`.
pub fn strip_histogram_suffix(name: &str) -> &str {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name)
}

fn strip_call<'a>(q: &'a str, func: &str) -> Option<&'a str> {
    q.strip_prefix(func)?
        .trim_start()
        .strip_prefix('(')?
        .strip_suffix(')')
}

fn split_last_top_level_comma(s: &str) -> Option<(&str, &str)> {
    let mut depth = 0i32;
    let mut last = None;
    let mut quote = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'' | '`') => quote = Some(c),
            (None, '(' | '{' | '[') => depth += 1,
            (None, ')' | '}' | ']') => depth -= 1,
            (None, ',') if depth == 0 => last = Some(i),
            _ => {}
        }
    }
    last.map(|i| (&s[..i], &s[i + 1..]))
}

/// Aggregation operators and keywords: identifiers that are never metric names.
const KEYWORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
    "atan2",
];

/// Keywords followed by a parenthesised list of label names, not an expression.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// A small PromQL scanner: skips strings, label matchers, range/subquery brackets, numbers,
/// Grafana variables and label lists; an identifier that is not a keyword and not followed by
/// `(` (a function call) is a metric name.
fn promql_metric_names(expr: &str) -> BTreeSet<String> {
    let b = expr.as_bytes();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let ident_start = |c: u8| c.is_ascii_alphabetic() || c == b'_' || c == b':';
    let ident_char = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' | b'\'' | b'`' => i = skip_string(b, i),
            b'{' => i = skip_group(b, i, b'{', b'}'),
            b'[' => i = skip_group(b, i, b'[', b']'),
            b'$' => {
                i += 1;
                while i < b.len() && (ident_char(b[i]) || b[i] == b'{' || b[i] == b'}') {
                    i += 1;
                }
            }
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            c if c.is_ascii_digit() || c == b'.' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                    i += 1;
                }
            }
            c if ident_start(c) => {
                let start = i;
                while i < b.len() && ident_char(b[i]) {
                    i += 1;
                }
                let word = &expr[start..i];
                let mut j = i;
                while j < b.len() && b[j].is_ascii_whitespace() {
                    j += 1;
                }
                let call = j < b.len() && b[j] == b'(';
                if LABEL_LISTS.contains(&word) {
                    if call {
                        i = skip_group(b, j, b'(', b')');
                    }
                } else if !call && !KEYWORDS.contains(&word) {
                    names.insert(word.to_string());
                }
            }
            _ => i += 1,
        }
    }
    names
}

fn skip_string(b: &[u8], start: usize) -> usize {
    let q = b[start];
    let mut i = start + 1;
    while i < b.len() {
        if b[i] == b'\\' && q != b'`' {
            i += 2;
            continue;
        }
        if b[i] == q {
            return i + 1;
        }
        i += 1;
    }
    i
}

fn skip_group(b: &[u8], start: usize, open: u8, close: u8) -> usize {
    let mut depth = 0;
    let mut i = start;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' | b'`' => {
                i = skip_string(b, i);
                continue;
            }
            c if c == open => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    i
}

/// Reads a file of the repository, failing the test with its path.
pub fn read_repo_file(rel: impl AsRef<Path>) -> String {
    let p = repo_root().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}
