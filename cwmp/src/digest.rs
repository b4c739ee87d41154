//! HTTP Digest authentication (RFC 7616, MD5, `qop=auth` or none) as a Connection Request
//! needs it: the ACS answers a CPE's challenge, the CPE checks the answer. Pure functions; the
//! caller supplies nonces and client nonces.

use md5::{Digest as _, Md5};

/// A parsed `WWW-Authenticate: Digest …` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    /// Whether the server offered `qop=auth` (else the RFC 2069 form is used).
    pub qop_auth: bool,
}

/// The parameters of an `Authorization: Digest …` header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Authorization {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub qop: Option<String>,
    pub nc: Option<String>,
    pub cnonce: Option<String>,
    pub opaque: Option<String>,
}

fn hex_md5(parts: &[&str]) -> String {
    let mut h = Md5::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update(b":");
        }
        h.update(p.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// `key="value", key=value, …` pairs (bounded: at most 32 pairs, values of 512 bytes).
fn params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() && out.len() < 32 {
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq]
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        rest = rest[eq + 1..].trim_start();
        let value;
        if let Some(r) = rest.strip_prefix('"') {
            let end = r.find('"').unwrap_or(r.len());
            value = r[..end].to_string();
            rest = r.get(end + 1..).unwrap_or("");
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_string();
            rest = &rest[end..];
        }
        rest = rest.trim_start().trim_start_matches(',').trim_start();
        if value.len() <= 512 {
            out.push((key, value));
        }
    }
    out
}

fn get(p: &[(String, String)], k: &str) -> Option<String> {
    p.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone())
}

/// Parses a `WWW-Authenticate` value; `None` unless it is an MD5 Digest challenge.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let (scheme, rest) = header.trim().split_once(char::is_whitespace)?;
    if !scheme.eq_ignore_ascii_case("digest") {
        return None;
    }
    let p = params(rest);
    if let Some(a) = get(&p, "algorithm")
        && !a.eq_ignore_ascii_case("md5")
    {
        return None;
    }
    Some(Challenge {
        realm: get(&p, "realm")?,
        nonce: get(&p, "nonce")?,
        opaque: get(&p, "opaque"),
        qop_auth: get(&p, "qop").is_some_and(|q| q.split(',').any(|x| x.trim() == "auth")),
    })
}

/// The response hash for the given fields.
fn response(a: &Authorization, password: &str, method: &str) -> String {
    let ha1 = hex_md5(&[&a.username, &a.realm, password]);
    let ha2 = hex_md5(&[method, &a.uri]);
    match (&a.qop, &a.nc, &a.cnonce) {
        (Some(q), Some(nc), Some(cn)) => hex_md5(&[&ha1, &a.nonce, nc, cn, q, &ha2]),
        _ => hex_md5(&[&ha1, &a.nonce, &ha2]),
    }
}

/// The `Authorization` header value answering `c` for a `method` request of `uri`.
pub fn authorize(
    c: &Challenge,
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
    cnonce: &str,
) -> String {
    let mut a = Authorization {
        username: username.to_string(),
        realm: c.realm.clone(),
        nonce: c.nonce.clone(),
        uri: uri.to_string(),
        opaque: c.opaque.clone(),
        ..Authorization::default()
    };
    if c.qop_auth {
        a.qop = Some("auth".into());
        a.nc = Some("00000001".into());
        a.cnonce = Some(cnonce.to_string());
    }
    a.response = response(&a, password, method);
    let mut h = format!(
        r#"Digest username="{}", realm="{}", nonce="{}", uri="{}", algorithm=MD5, response="{}""#,
        a.username, a.realm, a.nonce, a.uri, a.response
    );
    if let (Some(q), Some(nc), Some(cn)) = (&a.qop, &a.nc, &a.cnonce) {
        h.push_str(&format!(r#", qop={q}, nc={nc}, cnonce="{cn}""#));
    }
    if let Some(o) = &a.opaque {
        h.push_str(&format!(r#", opaque="{o}""#));
    }
    h
}

/// Parses an `Authorization: Digest …` value.
pub fn parse_authorization(header: &str) -> Option<Authorization> {
    let (scheme, rest) = header.trim().split_once(char::is_whitespace)?;
    if !scheme.eq_ignore_ascii_case("digest") {
        return None;
    }
    let p = params(rest);
    Some(Authorization {
        username: get(&p, "username")?,
        realm: get(&p, "realm")?,
        nonce: get(&p, "nonce")?,
        uri: get(&p, "uri")?,
        response: get(&p, "response")?,
        qop: get(&p, "qop"),
        nc: get(&p, "nc"),
        cnonce: get(&p, "cnonce"),
        opaque: get(&p, "opaque"),
    })
}

/// Whether `a` is a correct answer for `password` to the challenge with `nonce` and `realm`.
/// Compares in constant time over the hash text.
pub fn verify(a: &Authorization, realm: &str, nonce: &str, password: &str, method: &str) -> bool {
    if a.realm != realm || a.nonce != nonce {
        return false;
    }
    let expected = response(a, password, method);
    expected.len() == a.response.len()
        && expected
            .bytes()
            .zip(a.response.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_2617_example() {
        // RFC 2617 §3.5: Mufasa / "Circle Of Life".
        let c = parse_challenge(
            r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
        )
        .unwrap();
        assert!(c.qop_auth);
        let h = authorize(
            &c,
            "Mufasa",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            "0a4f113b",
        );
        assert!(
            h.contains(r#"response="6629fae49393a05397450978507c4ef1""#),
            "{h}"
        );
        let a = parse_authorization(&h).unwrap();
        assert!(verify(
            &a,
            "testrealm@host.com",
            &c.nonce,
            "Circle Of Life",
            "GET"
        ));
        assert!(!verify(
            &a,
            "testrealm@host.com",
            &c.nonce,
            "circle of life",
            "GET"
        ));
        assert!(!verify(
            &a,
            "testrealm@host.com",
            "othernonce",
            "Circle Of Life",
            "GET"
        ));
    }

    #[test]
    fn non_digest_and_garbage_are_refused() {
        assert_eq!(parse_challenge(r#"Basic realm="x""#), None);
        assert_eq!(
            parse_challenge(r#"Digest realm="x", nonce="n", algorithm=SHA-256"#),
            None
        );
        assert_eq!(parse_challenge("Digest"), None);
        assert_eq!(parse_authorization(r#"Digest username="a""#), None);
        let _ = parse_challenge(&format!("Digest {}", "a=\"".repeat(10_000)));
    }
}
