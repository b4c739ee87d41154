//! Password logins under attack: failed logins back off their username and source, unknown
//! usernames cost a password check like known ones, and refusals carry the right codes.

#[path = "support/helpers.rs"]
mod support;

use std::time::Duration;

use support::*;
use tokio::io::AsyncReadExt;
use uspwatch_broker::{BrokerConfig, ListenerKind};

/// A credentials file with cheap argon2 parameters (the checks run in a debug build).
fn credentials(dir: &tempfile::TempDir) -> std::path::PathBuf {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let argon = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(64, 1, 1, None).unwrap(),
    );
    let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
    let mut text = String::new();
    for (user, eid) in [("cpe", "os::00256D-A1"), ("cpe2", "os::00256D-A2")] {
        let h = argon.hash_password(b"right", &salt).unwrap();
        text.push_str(&format!(
            "[[client]]\nusername = \"{user}\"\npassword_hash = \"{h}\"\nendpoint_id = \"{eid}\"\nrole = \"agent\"\n"
        ));
    }
    let path = dir.path().join("credentials.toml");
    std::fs::write(&path, text).unwrap();
    path
}

async fn login_broker(
    dir: &tempfile::TempDir,
    f: impl FnOnce(&mut BrokerConfig),
) -> (uspwatch_broker::Broker, tokio_util::sync::CancellationToken) {
    let path = credentials(dir);
    broker(|c| {
        c.allow_anonymous = false;
        c.credentials_file = Some(path);
        c.login.backoff_initial = Duration::from_secs(60);
        c.login.backoff_max = Duration::from_secs(60);
        f(c);
    })
    .await
}

/// The reason code of the CONNACK answering a CONNECT (3.1.1: return code; 5: reason code).
async fn connack_code(b: &uspwatch_broker::Broker, v5: bool, user: &str, pass: &str) -> u8 {
    let kind = if v5 {
        ListenerKind::V5
    } else {
        ListenerKind::V4
    };
    let mut s = raw_connect(addr(b, kind), v5, "c1", Some((user, pass))).await;
    let mut head = [0u8; 4];
    tokio::time::timeout(WAIT, s.read_exact(&mut head))
        .await
        .expect("CONNACK in time")
        .expect("CONNACK");
    assert_eq!(head[0], 0x20, "not a CONNACK: {head:?}");
    head[3]
}

const OK: u8 = 0;
const V4_UNAVAILABLE: u8 = 3;
const V4_BAD_PASSWORD: u8 = 4;
const V5_RATE_EXCEEDED: u8 = 0x9F;

#[tokio::test]
async fn wrong_passwords_back_off_their_username_without_a_check() {
    let dir = tempfile::tempdir().unwrap();
    let (b, _t) = login_broker(&dir, |c| {
        c.login.free_failures_per_username = 2;
    })
    .await;
    for _ in 0..3 {
        assert_eq!(
            connack_code(&b, false, "cpe", "wrong").await,
            V4_BAD_PASSWORD
        );
    }
    let checks = b.stats().login_checks;
    // Backed off: even the right password is refused, and no check runs.
    assert_eq!(
        connack_code(&b, false, "cpe", "right").await,
        V4_UNAVAILABLE
    );
    assert_eq!(
        connack_code(&b, true, "cpe", "wrong").await,
        V5_RATE_EXCEEDED
    );
    assert_eq!(b.stats().login_checks, checks);
    // Other devices from the same source are unaffected.
    assert_eq!(connack_code(&b, false, "cpe2", "right").await, OK);
}

#[tokio::test]
async fn a_source_guessing_usernames_is_backed_off() {
    let dir = tempfile::tempdir().unwrap();
    let (b, _t) = login_broker(&dir, |c| {
        c.login.free_failures_per_source = 3;
    })
    .await;
    for user in ["admin", "root", "cpe", "test"] {
        assert_eq!(
            connack_code(&b, false, user, "guess").await,
            V4_BAD_PASSWORD
        );
    }
    let checks = b.stats().login_checks;
    assert_eq!(
        connack_code(&b, false, "cpe2", "right").await,
        V4_UNAVAILABLE
    );
    assert_eq!(
        connack_code(&b, true, "other", "guess").await,
        V5_RATE_EXCEEDED
    );
    assert_eq!(b.stats().login_checks, checks);
}

#[tokio::test]
async fn unknown_usernames_cost_a_password_check_like_known_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (b, _t) = login_broker(&dir, |_| {}).await;
    let before = b.stats().login_checks;
    assert_eq!(
        connack_code(&b, false, "cpe", "wrong").await,
        V4_BAD_PASSWORD
    );
    assert_eq!(b.stats().login_checks, before + 1);
    assert_eq!(
        connack_code(&b, false, "nobody", "wrong").await,
        V4_BAD_PASSWORD
    );
    assert_eq!(
        b.stats().login_checks,
        before + 2,
        "an unknown username answers only after a password check"
    );
}
