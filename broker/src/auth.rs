//! Authentication and identity: which USP Endpoint ID a connection speaks for, and its role.
//!
//! Sources, in order: a verified client certificate's SAN URI `urn:bbf:usp:id:<EID>`; the
//! credentials file entry for the CONNECT username (argon2 hashes only); with
//! `allow_anonymous`, the Endpoint ID the client claims. A claim (MQTT 5 `usp-endpoint-id`
//! user property, or a client id that is itself an Endpoint ID) that contradicts the
//! credential refuses the CONNECT.

mod gate;

pub(crate) use gate::LoginGate;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use serde::Deserialize;

use crate::error::{Error, Result};

/// What a connection may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A USP Agent (CPE): subscribes to its agent topic, publishes to controller topics.
    Agent,
    /// A USP Controller: subscribes to its controller topic, publishes to agent topics.
    Controller,
}

/// One `[[client]]` entry of the credentials file.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientEntry {
    username: String,
    password_hash: String,
    endpoint_id: String,
    role: Role,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsFile {
    #[serde(default)]
    client: Vec<ClientEntry>,
}

/// The parsed credentials file, by username. Cheap to clone (shared).
#[derive(Default, Clone)]
pub(crate) struct Credentials {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    by_user: HashMap<String, ClientEntry>,
    roles_by_eid: HashMap<String, Role>,
    /// Checked instead of an entry when the username is unknown, made with the parameters of
    /// the file's first entry, so an unknown username costs what a known one costs and the
    /// answer time does not tell which usernames exist.
    dummy_hash: String,
    /// Argon2 verifications run (stats and tests).
    evaluations: AtomicU64,
}

/// Largest argon2 memory cost accepted in the credentials file (KiB): one password check
/// holds this much memory while it runs.
pub(crate) const MAX_CHECK_MEMORY_KIB: u32 = 64 * 1024;

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("entries", &self.inner.by_user.len())
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Reads and checks a credentials file; every bad entry is reported.
    pub(crate) fn load(path: &Path) -> Result<Credentials> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ReadFile {
            path: path.to_owned(),
            source,
        })?;
        Credentials::parse(&text).map_err(|detail| Error::Credentials {
            path: path.to_owned(),
            detail,
        })
    }

    fn parse(text: &str) -> std::result::Result<Credentials, String> {
        let file: CredentialsFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut problems = Vec::new();
        let mut c = Inner::default();
        let mut first_params = None;
        for (i, e) in file.client.into_iter().enumerate() {
            match PasswordHash::new(&e.password_hash) {
                Err(_) => problems.push(format!(
                    "client #{} ({}): password_hash is not a PHC string",
                    i + 1,
                    e.username
                )),
                Ok(h) => match Params::try_from(&h) {
                    Ok(p) if p.m_cost() <= MAX_CHECK_MEMORY_KIB => {
                        if first_params.is_none() {
                            let alg = Algorithm::try_from(h.algorithm).unwrap_or_default();
                            first_params = Some((alg, p));
                        }
                    }
                    Ok(p) => problems.push(format!(
                        "client #{} ({}): password_hash needs {} KiB per check, over the {} KiB limit",
                        i + 1,
                        e.username,
                        p.m_cost(),
                        MAX_CHECK_MEMORY_KIB
                    )),
                    Err(err) => problems.push(format!(
                        "client #{} ({}): password_hash is not an argon2 hash: {err}",
                        i + 1,
                        e.username
                    )),
                },
            }
            if let Err(err) = uspwatch_proto::validate_endpoint_id(&e.endpoint_id) {
                problems.push(format!("client #{} ({}): {err}", i + 1, e.username));
            }
            c.roles_by_eid.insert(e.endpoint_id.clone(), e.role);
            if let Some(prev) = c.by_user.insert(e.username.clone(), e) {
                problems.push(format!("username {:?} appears twice", prev.username));
            }
        }
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        let (alg, params) = first_params.unwrap_or_default();
        c.dummy_hash = hash_with(
            &Argon2::new(alg, Version::default(), params),
            &random_bytes::<32>().map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?;
        Ok(Credentials { inner: Arc::new(c) })
    }

    /// The role the file gives an Endpoint ID, if it names it.
    pub(crate) fn role_of(&self, eid: &str) -> Option<Role> {
        self.inner.roles_by_eid.get(eid).copied()
    }

    /// Argon2 verifications run so far.
    pub(crate) fn evaluations(&self) -> u64 {
        self.inner.evaluations.load(Ordering::Relaxed)
    }

    /// Checks a username/password; `None` when either is wrong. An unknown username is checked
    /// against the dummy hash, so both cost one argon2 verification. Argon2 is deliberately
    /// slow: call it off the async threads, through the login gate.
    pub(crate) fn verify(&self, username: &str, password: &[u8]) -> Option<(String, Role)> {
        let entry = self.inner.by_user.get(username);
        let phc = entry.map_or(self.inner.dummy_hash.as_str(), |e| e.password_hash.as_str());
        let hash = PasswordHash::new(phc).ok()?;
        self.inner.evaluations.fetch_add(1, Ordering::Relaxed);
        let ok = Argon2::default().verify_password(password, &hash).is_ok();
        let entry = entry?;
        ok.then(|| (entry.endpoint_id.clone(), entry.role))
    }
}

/// Hashes a password for the credentials file (argon2id, random salt, PHC string).
pub fn hash_password(password: &str) -> Result<String> {
    hash_with(&Argon2::default(), password.as_bytes())
}

fn hash_with(argon: &Argon2<'_>, password: &[u8]) -> Result<String> {
    let salt = random_bytes::<16>()?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| Error::Hash(e.to_string()))?;
    argon
        .hash_password(password, &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Hash(e.to_string()))
}

/// Bytes from the OS (through std's hasher seeds would not be random enough):
/// `/dev/urandom` exists on every platform this gateway targets.
fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    use std::io::Read;
    let mut out = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut out))
        .map_err(|e| Error::Hash(format!("no randomness for the salt: {e}")))?;
    Ok(out)
}

/// Why a CONNECT was refused; maps to a CONNACK code and a metric reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    BadCredentials,
    /// The source or username is backed off after failed logins (`"source"`, `"username"`).
    Throttled(&'static str),
    /// No password check slot within the queue deadline.
    Busy,
    NotAuthorized(String),
    EndpointMismatch {
        bound: String,
        claimed: String,
    },
    ClientIdInvalid(String),
}

impl Refusal {
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Refusal::BadCredentials => "bad_credentials",
            Refusal::Throttled(_) => "login_throttled",
            Refusal::Busy => "login_busy",
            Refusal::NotAuthorized(_) => "not_authorized",
            Refusal::EndpointMismatch { .. } => "endpoint_mismatch",
            Refusal::ClientIdInvalid(_) => "client_id_invalid",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::BadCredentials => f.write_str("unknown username or wrong password"),
            Refusal::Throttled(scope) => {
                write!(f, "too many failed logins for this {scope}; retry later")
            }
            Refusal::Busy => f.write_str("too many logins in progress; retry later"),
            Refusal::NotAuthorized(why) => f.write_str(why),
            Refusal::EndpointMismatch { bound, claimed } => write!(
                f,
                "claimed endpoint id {claimed:?} contradicts the credential's {bound:?}"
            ),
            Refusal::ClientIdInvalid(why) => f.write_str(why),
        }
    }
}

/// What the CONNECT offered about identity.
pub(crate) struct Offer<'a> {
    pub cert_eid: Option<&'a str>,
    pub user_property_eid: Option<&'a str>,
    pub client_id: &'a str,
}

/// The Endpoint ID the client claims: the MQTT 5 user property, else a client id that is
/// itself a valid Endpoint ID (a client id like `mosq-1234` claims nothing).
pub(crate) fn claimed_eid<'a>(offer: &Offer<'a>) -> Option<&'a str> {
    offer.user_property_eid.or_else(|| {
        uspwatch_proto::validate_endpoint_id(offer.client_id)
            .is_ok()
            .then_some(offer.client_id)
    })
}

/// Decides the identity of a connection. `verified` is the result of checking the
/// username/password (done by the caller on a blocking thread).
pub(crate) fn bind(
    offer: &Offer<'_>,
    verified: Option<Option<(String, Role)>>,
    credentials: &Credentials,
    allow_anonymous: bool,
) -> std::result::Result<(String, Role), Refusal> {
    let claimed = claimed_eid(offer);
    if let Some(eid) = offer.user_property_eid
        && uspwatch_proto::validate_endpoint_id(eid).is_err()
    {
        return Err(Refusal::ClientIdInvalid(format!(
            "usp-endpoint-id {:?} is not a valid Endpoint ID",
            eid.chars().take(80).collect::<String>()
        )));
    }
    let check_claim = |bound: &str| match claimed {
        Some(c) if c != bound => Err(Refusal::EndpointMismatch {
            bound: bound.to_owned(),
            claimed: c.to_owned(),
        }),
        _ => Ok(()),
    };
    if let Some(cert) = offer.cert_eid {
        check_claim(cert)?;
        if let Some(Some((pw_eid, _))) = &verified
            && pw_eid != cert
        {
            return Err(Refusal::EndpointMismatch {
                bound: cert.to_owned(),
                claimed: pw_eid.clone(),
            });
        }
        let role = credentials.role_of(cert).unwrap_or(Role::Agent);
        return Ok((cert.to_owned(), role));
    }
    match verified {
        Some(Some((eid, role))) => {
            check_claim(&eid)?;
            Ok((eid, role))
        }
        Some(None) => Err(Refusal::BadCredentials),
        None if allow_anonymous => match claimed {
            Some(c) => Ok((c.to_owned(), Role::Agent)),
            None => Err(Refusal::ClientIdInvalid(
                "anonymous client claims no Endpoint ID (usp-endpoint-id or client id)".into(),
            )),
        },
        None => Err(Refusal::NotAuthorized(
            "no credentials and no client certificate; anonymous access is off".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer<'a>(cert: Option<&'a str>, user_prop: Option<&'a str>, cid: &'a str) -> Offer<'a> {
        Offer {
            cert_eid: cert,
            user_property_eid: user_prop,
            client_id: cid,
        }
    }

    #[test]
    fn hashes_verify_and_wrong_passwords_fail() {
        let h = hash_password("s3cret").unwrap();
        let text = format!(
            "[[client]]\nusername = \"cpe1\"\npassword_hash = \"{h}\"\nendpoint_id = \"os::00256D-1\"\nrole = \"agent\"\n"
        );
        let c = Credentials::parse(&text).unwrap();
        assert_eq!(
            c.verify("cpe1", b"s3cret"),
            Some(("os::00256D-1".into(), Role::Agent))
        );
        assert_eq!(c.verify("cpe1", b"nope"), None);
        assert_eq!(c.verify("other", b"s3cret"), None);
    }

    #[test]
    fn bad_file_reports_every_entry() {
        let text = "[[client]]\nusername = \"a\"\npassword_hash = \"plain\"\nendpoint_id = \"x\"\nrole = \"agent\"\n";
        let err = Credentials::parse(text).unwrap_err();
        assert!(
            err.contains("PHC") && err.contains("Endpoint") || err.contains("endpoint"),
            "{err}"
        );
    }

    #[test]
    fn binding_rules() {
        let creds = Credentials::default();
        let ok = Some(Some(("os::00256D-1".to_string(), Role::Agent)));
        // The password's EID, with no claim or a matching claim.
        assert!(bind(&offer(None, None, "mosq-1"), ok.clone(), &creds, false).is_ok());
        assert!(
            bind(
                &offer(None, Some("os::00256D-1"), "x"),
                ok.clone(),
                &creds,
                false
            )
            .is_ok()
        );
        // A contradicting claim, by user property or by client id.
        let e = bind(
            &offer(None, Some("os::00256D-2"), "x"),
            ok.clone(),
            &creds,
            false,
        );
        assert_eq!(e.unwrap_err().reason(), "endpoint_mismatch");
        let e = bind(&offer(None, None, "os::00256D-2"), ok, &creds, false);
        assert_eq!(e.unwrap_err().reason(), "endpoint_mismatch");
        // Certificates win and must agree with claims.
        let cert = bind(&offer(Some("os::00256D-3"), None, "c"), None, &creds, false);
        assert_eq!(cert.unwrap().0, "os::00256D-3");
        let e = bind(
            &offer(Some("os::00256D-3"), None, "os::00256D-4"),
            None,
            &creds,
            false,
        );
        assert_eq!(e.unwrap_err().reason(), "endpoint_mismatch");
        // Anonymous.
        let e = bind(&offer(None, None, "os::00256D-5"), None, &creds, false);
        assert_eq!(e.unwrap_err().reason(), "not_authorized");
        let a = bind(&offer(None, None, "os::00256D-5"), None, &creds, true).unwrap();
        assert_eq!(a, ("os::00256D-5".to_string(), Role::Agent));
        let e = bind(&offer(None, None, "mosq-1"), None, &creds, true);
        assert_eq!(e.unwrap_err().reason(), "client_id_invalid");
        let e = bind(&offer(None, None, "x"), Some(None), &creds, true);
        assert_eq!(e.unwrap_err(), Refusal::BadCredentials);
    }
}
