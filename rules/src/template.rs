//! `{{name}}` templates for annotations and action fields, filled from a result row.

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Lit(String),
    Var(String),
}

impl Template {
    /// Parses `text`; an unclosed `{{` or an empty name is an error.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Lit(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| format!("unclosed '{{{{' in template {text:?}"))?;
            let name = after[..end].trim();
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
            {
                return Err(format!("bad variable {name:?} in template {text:?}"));
            }
            parts.push(Part::Var(name.to_string()));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// Variable names used.
    pub fn vars(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v) => Some(v.as_str()),
            Part::Lit(_) => None,
        })
    }

    /// Fills the template; unknown variables render as empty (they are refused at load).
    pub fn render(&self, lookup: &dyn Fn(&str) -> Option<String>) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Var(v) => out.push_str(&lookup(v).unwrap_or_default()),
            }
        }
        out
    }
}

/// How a result value is written into a template: integers as integers, other numbers with
/// at most two decimals, strings as they are, null as empty.
pub(crate) fn display_value(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.to_string()
            } else if let Some(f) = n.as_f64() {
                if f.fract() == 0.0 && f.abs() < 1e15 {
                    format!("{}", f as i64)
                } else {
                    let s = format!("{f:.2}");
                    s.trim_end_matches('0').trim_end_matches('.').to_string()
                }
            } else {
                n.to_string()
            }
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_rejects() {
        let t = Template::parse("{{endpoint_id}} noise {{ avg_noise }} dBm").unwrap();
        assert_eq!(t.vars().collect::<Vec<_>>(), ["endpoint_id", "avg_noise"]);
        let out = t.render(&|v| match v {
            "endpoint_id" => Some("os::A".into()),
            "avg_noise" => Some(display_value(&serde_json::json!(-62.333333))),
            _ => None,
        });
        assert_eq!(out, "os::A noise -62.33 dBm");
        assert!(Template::parse("{{oops").is_err());
        assert!(Template::parse("{{}}").is_err());
        assert_eq!(display_value(&serde_json::json!(6.0)), "6");
    }
}
