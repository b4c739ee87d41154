//! A TR-181 parameter store and USP path resolution (§2.5 of TR-369): full parameter paths,
//! partial (object) paths, `*` wildcards and `[Param==value]` search expressions.

use std::collections::BTreeMap;

use uspwatch_proto::pb::usp::get_resp::{RequestedPathResult, ResolvedPathResult};

/// USP "Invalid path syntax".
pub(crate) const ERR_PATH_SYNTAX: u32 = 7008;
/// USP "Invalid path (not in the supported data model)".
pub(crate) const ERR_INVALID_PATH: u32 = 7026;

/// Multi-instance objects that may legitimately have no instances.
const TABLES: [&str; 4] = [
    "Device.LocalAgent.Subscription.",
    "Device.LocalAgent.Request.",
    "Device.LocalAgent.Controller.",
    "Device.WiFi.AccessPoint.1.AssociatedDevice.",
];

/// One segment of a parsed path.
#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Lit(String),
    /// `*`: any instance number.
    Any,
    /// `[Key==Value]`: instances whose `Key` parameter equals `Value`.
    Expr(String, String),
}

/// A parsed USP path: `Device.WiFi.Radio.*.Stats.Noise`, `Device.LocalAgent.Subscription.[ID==x].`
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PathPattern {
    segs: Vec<Seg>,
    /// Ends with `.`: an object (partial) path.
    pub(crate) object: bool,
    /// Contains a wildcard or search expression.
    pub(crate) search: bool,
}

impl PathPattern {
    /// Parses a path; `Err` is a USP error code and message.
    pub(crate) fn parse(path: &str) -> Result<PathPattern, (u32, String)> {
        let syntax = || (ERR_PATH_SYNTAX, format!("invalid path syntax: {path}"));
        if !path.starts_with("Device.") && path != "Device" {
            return Err((ERR_INVALID_PATH, format!("not in the data model: {path}")));
        }
        let object = path.ends_with('.');
        let body = path.strip_suffix('.').unwrap_or(path);
        let mut segs = Vec::new();
        let mut search = false;
        for raw in split_outside_brackets(body).ok_or_else(syntax)? {
            let seg = if raw == "*" {
                search = true;
                Seg::Any
            } else if let Some(inner) = raw.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
                let (k, v) = inner.split_once("==").ok_or_else(syntax)?;
                let v = v.trim();
                let v = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(v);
                if k.trim().is_empty() {
                    return Err(syntax());
                }
                search = true;
                Seg::Expr(k.trim().to_string(), v.to_string())
            } else if raw.is_empty() || raw.contains(['[', ']', '*']) {
                return Err(syntax());
            } else {
                Seg::Lit(raw.to_string())
            };
            segs.push(seg);
        }
        Ok(PathPattern {
            segs,
            object,
            search,
        })
    }

    /// Whether `path` (a parameter, command or event path) lies at or below this pattern
    /// (an object pattern is a subtree filter) or equals it (a parameter pattern).
    pub(crate) fn covers(&self, tree: &Tree, path: &str) -> bool {
        let body = path.strip_suffix('.').unwrap_or(path);
        let segs: Vec<&str> = body.split('.').collect();
        match self.match_prefix(tree, &segs) {
            Some(()) if self.object => segs.len() >= self.segs.len(),
            Some(()) => segs.len() == self.segs.len(),
            None => false,
        }
    }

    fn match_prefix(&self, tree: &Tree, segs: &[&str]) -> Option<()> {
        if segs.len() < self.segs.len() {
            return None;
        }
        let mut prefix = String::new();
        for (pat, seg) in self.segs.iter().zip(segs) {
            let ok = match pat {
                Seg::Lit(l) => l == seg,
                Seg::Any => is_instance(seg),
                Seg::Expr(k, v) => {
                    is_instance(seg) && tree.get(&format!("{prefix}{seg}.{k}")) == Some(v.as_str())
                }
            };
            if !ok {
                return None;
            }
            prefix.push_str(seg);
            prefix.push('.');
        }
        Some(())
    }

    fn len(&self) -> usize {
        self.segs.len()
    }
}

fn is_instance(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn split_outside_brackets(s: &str) -> Option<Vec<&str>> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.checked_sub(1)?,
            '.' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return None;
    }
    out.push(&s[start..]);
    Some(out)
}

/// The parameter values of one agent, by full path.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tree {
    params: BTreeMap<String, String>,
}

impl Tree {
    pub(crate) fn get(&self, path: &str) -> Option<&str> {
        self.params.get(path).map(String::as_str)
    }

    /// Sets a value; returns whether it changed.
    pub(crate) fn set(&mut self, path: &str, value: impl Into<String>) -> bool {
        let value = value.into();
        match self.params.get_mut(path) {
            Some(v) if *v == value => false,
            Some(v) => {
                *v = value;
                true
            }
            None => {
                self.params.insert(path.to_string(), value);
                true
            }
        }
    }

    /// Removes every parameter of an object (path ending in `.`) and below.
    pub(crate) fn remove_object(&mut self, obj: &str) {
        let keys: Vec<String> = self
            .params
            .range(obj.to_string()..)
            .take_while(|(k, _)| k.starts_with(obj))
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            self.params.remove(&k);
        }
    }

    /// Parameter paths matched by a pattern (an object pattern matches the whole subtree).
    pub(crate) fn resolve_params<'a>(&'a self, pat: &PathPattern) -> Vec<&'a str> {
        self.params
            .keys()
            .filter(|k| {
                let segs: Vec<&str> = k.split('.').collect();
                pat.match_prefix(self, &segs).is_some()
                    && if pat.object {
                        segs.len() > pat.len()
                    } else {
                        segs.len() == pat.len()
                    }
            })
            .map(String::as_str)
            .collect()
    }

    /// Existing object instances an object pattern resolves to (each ending in `.`).
    pub(crate) fn resolve_objects(&self, pat: &PathPattern) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for k in self.params.keys() {
            let segs: Vec<&str> = k.split('.').collect();
            if segs.len() > pat.len() && pat.match_prefix(self, &segs).is_some() {
                let obj = format!("{}.", segs[..pat.len()].join("."));
                if out.last() != Some(&obj) && !out.contains(&obj) {
                    out.push(obj);
                }
            }
        }
        out
    }

    /// Answers one requested path of a Get (`max_depth` 0 = unlimited).
    pub(crate) fn get_path(&self, path: &str, max_depth: u32) -> RequestedPathResult {
        let mut res = RequestedPathResult {
            requested_path: path.to_string(),
            ..Default::default()
        };
        let pat = match PathPattern::parse(path) {
            Ok(p) => p,
            Err((code, msg)) => {
                res.err_code = code;
                res.err_msg = msg;
                return res;
            }
        };
        let mut by_obj: BTreeMap<&str, BTreeMap<String, String>> = BTreeMap::new();
        for p in self.resolve_params(&pat) {
            let depth = p.split('.').count() - pat.len();
            if pat.object && max_depth != 0 && depth > max_depth as usize {
                continue;
            }
            let cut = p.rfind('.').map_or(0, |i| i + 1);
            let value = self.get(p).unwrap_or_default().to_string();
            by_obj
                .entry(&p[..cut])
                .or_default()
                .insert(p[cut..].to_string(), value);
        }
        if by_obj.is_empty() && !pat.search && !TABLES.contains(&path) {
            res.err_code = ERR_INVALID_PATH;
            res.err_msg = format!("no such path: {path}");
            return res;
        }
        res.resolved_path_results = by_obj
            .into_iter()
            .map(|(obj, params)| ResolvedPathResult {
                resolved_path: obj.to_string(),
                result_params: params,
            })
            .collect();
        res
    }

    /// Instance numbers in use in a table (e.g. `Device.LocalAgent.Subscription.`).
    pub(crate) fn instances(&self, table: &str) -> Vec<u32> {
        let mut out: Vec<u32> = self
            .params
            .range(table.to_string()..)
            .take_while(|(k, _)| k.starts_with(table))
            .filter_map(|(k, _)| k[table.len()..].split('.').next()?.parse().ok())
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Whether the path is a known table.
    pub(crate) fn is_table(path: &str) -> bool {
        TABLES.contains(&path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> Tree {
        let mut t = Tree::default();
        for (k, v) in [
            ("Device.WiFi.Radio.1.Channel", "6"),
            ("Device.WiFi.Radio.1.Stats.Noise", "-90"),
            ("Device.WiFi.Radio.2.Channel", "36"),
            ("Device.WiFi.Radio.2.Stats.Noise", "-92"),
            ("Device.LocalAgent.Subscription.1.ID", "a"),
            ("Device.LocalAgent.Subscription.1.Enable", "true"),
            ("Device.LocalAgent.Subscription.3.ID", "b.c"),
            ("Device.LocalAgent.Subscription.3.Enable", "false"),
        ] {
            t.set(k, v);
        }
        t
    }

    #[test]
    fn full_parameter_path() {
        let r = tree().get_path("Device.WiFi.Radio.1.Channel", 0);
        assert_eq!(r.err_code, 0);
        assert_eq!(r.resolved_path_results.len(), 1);
        assert_eq!(
            r.resolved_path_results[0].resolved_path,
            "Device.WiFi.Radio.1."
        );
        assert_eq!(r.resolved_path_results[0].result_params["Channel"], "6");
    }

    #[test]
    fn partial_path_groups_by_object_and_honours_depth() {
        let t = tree();
        let r = t.get_path("Device.WiFi.Radio.1.", 0);
        let objs: Vec<_> = r
            .resolved_path_results
            .iter()
            .map(|x| x.resolved_path.as_str())
            .collect();
        assert_eq!(objs, ["Device.WiFi.Radio.1.", "Device.WiFi.Radio.1.Stats."]);
        assert_eq!(r.resolved_path_results[1].result_params["Noise"], "-90");
        let shallow = t.get_path("Device.WiFi.Radio.1.", 1);
        assert_eq!(shallow.resolved_path_results.len(), 1);
    }

    #[test]
    fn wildcards_and_search_expressions() {
        let t = tree();
        let r = t.get_path("Device.WiFi.Radio.*.Stats.Noise", 0);
        let vals: Vec<_> = r
            .resolved_path_results
            .iter()
            .map(|x| x.result_params["Noise"].as_str())
            .collect();
        assert_eq!(vals, ["-90", "-92"]);
        let pat = PathPattern::parse("Device.LocalAgent.Subscription.[ID==\"b.c\"].").unwrap();
        assert_eq!(
            t.resolve_objects(&pat),
            ["Device.LocalAgent.Subscription.3."]
        );
        let pat = PathPattern::parse("Device.LocalAgent.Subscription.[Enable==true].ID").unwrap();
        assert_eq!(
            t.resolve_params(&pat),
            ["Device.LocalAgent.Subscription.1.ID"]
        );
        let none = t.get_path("Device.WiFi.Radio.*.Nothing", 0);
        assert_eq!((none.err_code, none.resolved_path_results.len()), (0, 0));
    }

    #[test]
    fn bad_paths() {
        let t = tree();
        assert_eq!(t.get_path("Device.Nope.", 0).err_code, ERR_INVALID_PATH);
        assert_eq!(t.get_path("Other.X", 0).err_code, ERR_INVALID_PATH);
        assert_eq!(t.get_path("Device..X", 0).err_code, ERR_PATH_SYNTAX);
        assert_eq!(t.get_path("Device.A.[ID=1].", 0).err_code, ERR_PATH_SYNTAX);
        assert_eq!(t.get_path("Device.LocalAgent.Request.", 0).err_code, 0);
    }

    #[test]
    fn covers_subtree_and_exact() {
        let t = tree();
        let obj = PathPattern::parse("Device.").unwrap();
        assert!(obj.covers(&t, "Device.IP.Diagnostics.IPPing()"));
        let p = PathPattern::parse("Device.WiFi.Radio.*.Stats.Noise").unwrap();
        assert!(p.covers(&t, "Device.WiFi.Radio.1.Stats.Noise"));
        assert!(!p.covers(&t, "Device.WiFi.Radio.1.Channel"));
        let ev = PathPattern::parse("Device.Boot!").unwrap();
        assert!(ev.covers(&t, "Device.Boot!"));
        assert!(!ev.covers(&t, "Device.LocalAgent.Periodic!"));
    }

    #[test]
    fn instances_and_removal() {
        let mut t = tree();
        assert_eq!(t.instances("Device.LocalAgent.Subscription."), [1, 3]);
        t.remove_object("Device.LocalAgent.Subscription.1.");
        assert_eq!(t.instances("Device.LocalAgent.Subscription."), [3]);
    }
}
