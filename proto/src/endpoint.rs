//! USP Endpoint IDs (TR-369 §2.2): `scheme ":" [authority-id] ":" instance-id`.

use crate::error::{Error, Result};

/// Longest instance-id TR-369 allows (R-ARC.6).
pub const MAX_INSTANCE_ID_LEN: usize = 50;

/// A syntactically valid Endpoint ID, split into its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointId<'a> {
    pub scheme: &'a str,
    pub authority: &'a str,
    pub instance: &'a str,
}

impl<'a> EndpointId<'a> {
    /// Parses and checks an Endpoint ID against the scheme table of TR-369 §2.2.
    pub fn parse(id: &'a str) -> Result<Self> {
        let bad = |why| Error::InvalidEndpointId {
            id: id.chars().take(80).collect(),
            why,
        };
        // Schemes and authorities are a few bytes long: a plain scan beats memchr's setup.
        let colon = |s: &'a str| {
            s.bytes()
                .position(|b| b == b':')
                .map(|i| (&s[..i], &s[i + 1..]))
        };
        let (scheme, rest) = colon(id).ok_or_else(|| bad("no ':' after the scheme"))?;
        let (authority, instance) = colon(rest).ok_or_else(|| bad("no ':' after the authority"))?;
        check_authority(scheme, authority).map_err(bad)?;
        check_instance(scheme, instance).map_err(bad)?;
        Ok(EndpointId {
            scheme,
            authority,
            instance,
        })
    }
}

/// Checks an Endpoint ID; see [`EndpointId::parse`].
pub fn validate_endpoint_id(id: &str) -> Result<()> {
    EndpointId::parse(id).map(|_| ())
}

fn check_authority(scheme: &str, a: &str) -> std::result::Result<(), &'static str> {
    let hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
    match scheme {
        "oui" => (matches!(a.len(), 6 | 7 | 9) && hex(a))
            .then_some(())
            .ok_or("oui authority must be 6, 7 or 9 hex digits"),
        "cid" => (a.len() == 6 && hex(a))
            .then_some(())
            .ok_or("cid authority must be 6 hex digits"),
        "pen" => (!a.is_empty() && a.len() <= 10 && a.bytes().all(|b| b.is_ascii_digit()))
            .then_some(())
            .ok_or("pen authority must be a decimal enterprise number"),
        "self" | "user" | "doc" => (a.len() <= 6 && a.bytes().all(instance_byte_ok))
            .then_some(())
            .ok_or("authority must be at most 6 characters"),
        "proto" => (a.len() <= 6 && a.bytes().all(|b| instance_byte_ok(b) && b != b'.'))
            .then_some(())
            .ok_or("proto authority must be at most 6 characters without '.'"),
        "os" | "ops" | "uuid" | "imei" | "fqdn" => a
            .is_empty()
            .then_some(())
            .ok_or("this scheme takes no authority"),
        "" => Err("empty scheme"),
        _ => Err("unknown scheme"),
    }
}

fn instance_byte_ok(b: u8) -> bool {
    INSTANCE_BYTE[usize::from(b)]
}

// Every Record names two endpoints, so this check is on the broker's per-message path: a table
// lookup per byte instead of a chain of comparisons.
const INSTANCE_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || c == b'-' || c == b'.' || c == b'_';
        b += 1;
    }
    t
};

fn check_instance(scheme: &str, i: &str) -> std::result::Result<(), &'static str> {
    if i.is_empty() {
        return Err("empty instance-id");
    }
    if i.len() > MAX_INSTANCE_ID_LEN {
        return Err("instance-id longer than 50 characters");
    }
    let b = i.as_bytes();
    // Almost every real instance-id is plain; only those with a '%' need the escape walk.
    if !b.iter().all(|&c| instance_byte_ok(c)) {
        check_escapes(b)?;
    }
    match scheme {
        "os" | "ops" => b
            .contains(&b'-')
            .then_some(())
            .ok_or("os/ops instance-id must be <OUI>-...<Serial>"),
        _ => Ok(()),
    }
}

fn check_escapes(b: &[u8]) -> std::result::Result<(), &'static str> {
    let mut k = 0;
    while let Some(&c) = b.get(k) {
        if instance_byte_ok(c) {
            k += 1;
        } else if c == b'%' {
            match (b.get(k + 1), b.get(k + 2)) {
                (Some(h), Some(l)) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => k += 3,
                (Some(_), Some(_)) => return Err("bad %-escape in instance-id"),
                _ => return Err("truncated %-escape in instance-id"),
            }
        } else {
            return Err("instance-id has a character outside A-Za-z0-9-._ and %HH");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_spec_examples() {
        for id in [
            "oui:00256D:my-unique-bbf-id-42",
            "cid:3AA3F8:my-unique-usp-id-42",
            "pen:3561:my-unique-bbf-id-42",
            "self::my-Agent",
            "self::uspwatch",
            "os::00256D-0123456789",
            "os::012345-obuspa-test",
            "ops::00256D-STB-0123456789",
            "uuid::f81d4fae-7dec-11d0-a765-00a0c91e6bf6",
            "imei::990000862471854",
            "proto::my-Agent",
            "fqdn::www.example.org",
            "self::a%20b",
        ] {
            EndpointId::parse(id).unwrap_or_else(|e| panic!("{id}: {e}"));
        }
    }

    #[test]
    fn rejects_bad_ids() {
        for id in [
            "",
            "noscheme",
            "os:",
            "bogus::x",
            "oui:XYZ:abc",
            "oui:00256D:",
            "os:abc:00256D-1",
            "self::has space",
            "self::a/b",
            "self::%2",
            "self::%zz",
            "self::%",
            "proto:a.b:x",
            "os::nodash",
            &format!("self::{}", "a".repeat(51)),
            "self::é",
        ] {
            assert!(EndpointId::parse(id).is_err(), "{id} accepted");
        }
    }

    #[test]
    fn fifty_character_instance_is_the_limit() {
        assert!(EndpointId::parse(&format!("self::{}", "a".repeat(50))).is_ok());
    }
}
