//! The login gate: every password check passes here, so wrong passwords cannot starve logins.
//!
//! - A bounded number of argon2 checks run at once (memory: slots × the hash's memory cost);
//!   a CONNECT waits for a slot at most `queue_timeout`, then is refused as busy.
//! - Attempts whose source or username has recent failures may hold only half of the slots,
//!   so logins without a failure history always find one.
//! - Each attempt is charged as a failure before it runs (and refunded when it succeeds), so
//!   a burst of concurrent attempts is limited as tightly as a sequence: a source or username
//!   past its free failures is backed off (doubling up to `backoff_max`) and refused without
//!   a check, after a short delay that keeps a refused client from reconnecting in a loop.
//! - Usernames are remembered as keyed 64-bit hashes and sources as addresses (IPv6 by /64),
//!   in tables of at most `max_tracked` entries: an attacker cannot grow them.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::{Credentials, Refusal, Role};
use crate::config::LoginConfig;
use crate::metrics;

/// Longest delay before a back-off refusal is answered.
const REFUSAL_DELAY_MAX: Duration = Duration::from_secs(1);

#[derive(Clone, Copy)]
struct Record {
    failures: u32,
    last: Instant,
    until: Instant,
}

/// Failures per key, bounded in entries.
struct Failures<K> {
    map: HashMap<K, Record>,
    free: u32,
}

/// What the tables say about an attempt.
enum Verdict {
    Go { suspect: bool },
    Wait(Duration),
}

impl<K: Hash + Eq + Copy> Failures<K> {
    fn new(free: u32) -> Self {
        Failures {
            map: HashMap::new(),
            free,
        }
    }

    fn live(&mut self, key: &K, now: Instant, cfg: &LoginConfig) -> Option<&mut Record> {
        let r = self.map.get_mut(key)?;
        if now.duration_since(r.last) > cfg.failure_memory && now >= r.until {
            self.map.remove(key);
            return None;
        }
        self.map.get_mut(key)
    }

    /// Refused while backed off; otherwise charged one failure up front.
    fn charge(&mut self, key: K, now: Instant, cfg: &LoginConfig) -> Verdict {
        let free = self.free;
        if let Some(r) = self.live(&key, now, cfg) {
            if now < r.until {
                return Verdict::Wait(r.until - now);
            }
            let suspect = r.failures > 0;
            r.failures = r.failures.saturating_add(1);
            r.last = now;
            if r.failures > free {
                r.until = now + backoff(r.failures - free, cfg);
            }
            return Verdict::Go { suspect };
        }
        self.make_room(now, cfg);
        let until = if free == 0 {
            now + backoff(1, cfg)
        } else {
            now
        };
        self.map.insert(
            key,
            Record {
                failures: 1,
                last: now,
                until,
            },
        );
        Verdict::Go { suspect: false }
    }

    /// Gives back the failure charged for an attempt that succeeded.
    fn refund(&mut self, key: &K, clear: bool) {
        let free = self.free;
        let Some(r) = self.map.get_mut(key) else {
            return;
        };
        r.failures = r.failures.saturating_sub(1);
        if clear || r.failures == 0 {
            self.map.remove(key);
        } else if r.failures <= free {
            r.until = r.last;
        }
    }

    fn make_room(&mut self, now: Instant, cfg: &LoginConfig) {
        if self.map.len() < cfg.max_tracked {
            return;
        }
        self.map
            .retain(|_, r| now.duration_since(r.last) <= cfg.failure_memory || now < r.until);
        if self.map.len() >= cfg.max_tracked
            && let Some(oldest) = self.map.iter().min_by_key(|(_, r)| r.last).map(|(k, _)| *k)
        {
            self.map.remove(&oldest);
        }
    }
}

/// `backoff_initial × 2^(n-1)`, at most `backoff_max`.
fn backoff(n: u32, cfg: &LoginConfig) -> Duration {
    let factor = 1u32 << n.saturating_sub(1).min(20);
    cfg.backoff_initial
        .saturating_mul(factor)
        .min(cfg.backoff_max)
}

/// The key a source address is counted under: IPv4 as is, IPv6 by its /64.
fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

/// Where password checks are admitted, limited and counted.
pub(crate) struct LoginGate {
    config: LoginConfig,
    all: Arc<Semaphore>,
    suspects: Arc<Semaphore>,
    sources: Mutex<Failures<IpAddr>>,
    usernames: Mutex<Failures<u64>>,
    keys: RandomState,
    active: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

impl LoginGate {
    pub(crate) fn new(config: LoginConfig) -> Self {
        let slots = config.max_concurrent_checks.max(1);
        LoginGate {
            all: Arc::new(Semaphore::new(slots)),
            suspects: Arc::new(Semaphore::new((slots / 2).max(1))),
            sources: Mutex::new(Failures::new(config.free_failures_per_source)),
            usernames: Mutex::new(Failures::new(config.free_failures_per_username)),
            keys: RandomState::new(),
            active: Arc::new(AtomicUsize::new(0)),
            peak: Arc::new(AtomicUsize::new(0)),
            config,
        }
    }

    /// Most checks seen running at once.
    #[cfg(test)]
    fn peak_concurrency(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// Checks a username/password from `source`: `Ok(None)` for a wrong pair, `Err` when the
    /// attempt is refused without a check.
    pub(crate) async fn check(
        &self,
        credentials: &Credentials,
        source: IpAddr,
        username: &str,
        password: &[u8],
    ) -> Result<Option<(String, Role)>, Refusal> {
        let now = Instant::now();
        let skey = source_key(source);
        let ukey = self.keys.hash_one(username);
        let by_source = self.sources.lock().charge(skey, now, &self.config);
        let by_user = match by_source {
            Verdict::Wait(_) => None,
            Verdict::Go { .. } => Some(self.usernames.lock().charge(ukey, now, &self.config)),
        };
        let (suspect, refused) = match (by_source, by_user) {
            (Verdict::Wait(d), _) => (true, Some(("source", d))),
            (Verdict::Go { .. }, Some(Verdict::Wait(d))) => {
                // Not this source's fault: its charge is given back.
                self.sources.lock().refund(&skey, false);
                (true, Some(("username", d)))
            }
            (Verdict::Go { suspect: s }, Some(Verdict::Go { suspect: u })) => (s || u, None),
            (Verdict::Go { .. }, None) => (true, None),
        };
        if let Some((scope, wait)) = refused {
            ::metrics::counter!(metrics::LOGIN_THROTTLED, "scope" => scope).increment(1);
            tokio::time::sleep(wait.min(REFUSAL_DELAY_MAX)).await;
            return Err(Refusal::Throttled(scope));
        }
        let Some(permits) = self.admit(suspect).await else {
            ::metrics::counter!(metrics::LOGIN_THROTTLED, "scope" => "busy").increment(1);
            // The attempt never ran: it is not a failure of the source or username.
            self.sources.lock().refund(&skey, false);
            self.usernames.lock().refund(&ukey, false);
            return Err(Refusal::Busy);
        };
        let (creds, user, pass) = (credentials.clone(), username.to_owned(), password.to_vec());
        let (active, peak) = (self.active.clone(), self.peak.clone());
        let verified = tokio::task::spawn_blocking(move || {
            let _permits = permits;
            let now_active = active.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now_active, Ordering::SeqCst);
            ::metrics::gauge!(metrics::LOGIN_CHECKS_ACTIVE).increment(1.0);
            let r = creds.verify(&user, &pass);
            ::metrics::gauge!(metrics::LOGIN_CHECKS_ACTIVE).decrement(1.0);
            active.fetch_sub(1, Ordering::SeqCst);
            r
        })
        .await
        .unwrap_or(None);
        if verified.is_some() {
            self.sources.lock().refund(&skey, false);
            self.usernames.lock().refund(&ukey, true);
        }
        Ok(verified)
    }

    /// A check slot (two permits for a suspect attempt) within the queue deadline.
    async fn admit(
        &self,
        suspect: bool,
    ) -> Option<(Option<OwnedSemaphorePermit>, OwnedSemaphorePermit)> {
        let wait = async {
            let limited = if suspect {
                Some(self.suspects.clone().acquire_owned().await.ok()?)
            } else {
                None
            };
            let slot = self.all.clone().acquire_owned().await.ok()?;
            Some((limited, slot))
        };
        tokio::time::timeout(self.config.queue_timeout, wait)
            .await
            .ok()
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> LoginConfig {
        LoginConfig {
            free_failures_per_source: 3,
            free_failures_per_username: 2,
            backoff_initial: Duration::from_secs(10),
            backoff_max: Duration::from_secs(40),
            ..LoginConfig::default()
        }
    }

    #[test]
    fn failures_past_the_free_ones_back_off_doubling_up_to_the_cap() {
        let c = cfg();
        let mut t = Failures::new(2);
        let t0 = Instant::now();
        let go = |v: Verdict| matches!(v, Verdict::Go { .. });
        assert!(go(t.charge(1u64, t0, &c)));
        assert!(go(t.charge(1, t0, &c)));
        // The third is allowed but starts a back-off for the ones after it.
        assert!(go(t.charge(1, t0, &c)));
        let Verdict::Wait(d) = t.charge(1, t0, &c) else {
            panic!("backed off")
        };
        assert_eq!(d, Duration::from_secs(10));
        assert!(go(t.charge(2, t0, &c)), "other keys are unaffected");
        let t1 = t0 + Duration::from_secs(10);
        assert!(go(t.charge(1, t1, &c)));
        let Verdict::Wait(d) = t.charge(1, t1, &c) else {
            panic!()
        };
        assert_eq!(d, Duration::from_secs(20));
        let mut t2 = t1 + d;
        for _ in 0..5 {
            assert!(go(t.charge(1, t2, &c)));
            let Verdict::Wait(d) = t.charge(1, t2, &c) else {
                panic!()
            };
            assert!(d <= Duration::from_secs(40));
            t2 += d;
        }
        // Forgotten after failure_memory without failures.
        let later = t2 + c.failure_memory + Duration::from_secs(41);
        assert!(matches!(
            t.charge(1, later, &c),
            Verdict::Go { suspect: false }
        ));
    }

    #[test]
    fn a_success_refunds_its_charge_and_clears_a_username() {
        let c = cfg();
        let mut t = Failures::new(1);
        let t0 = Instant::now();
        assert!(matches!(
            t.charge(7u64, t0, &c),
            Verdict::Go { suspect: false }
        ));
        assert!(matches!(t.charge(7, t0, &c), Verdict::Go { suspect: true }));
        // That second attempt succeeded: its charge is refunded and the back-off lifted.
        t.refund(&7, false);
        assert!(matches!(t.charge(7, t0, &c), Verdict::Go { .. }));
        t.refund(&7, true);
        assert!(t.map.is_empty());
    }

    #[test]
    fn tables_stay_bounded_under_many_keys() {
        let c = LoginConfig {
            max_tracked: 100,
            ..cfg()
        };
        let mut t = Failures::new(3);
        let t0 = Instant::now();
        for k in 0..10_000u64 {
            let _ = t.charge(k, t0 + Duration::from_millis(k), &c);
        }
        assert!(t.map.len() <= 100, "{}", t.map.len());
    }

    #[test]
    fn ipv6_sources_count_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(source_key(a), source_key(b));
        assert_ne!(source_key(a), source_key(c));
        let v4: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(source_key(v4), "192.0.2.1".parse::<IpAddr>().unwrap());
    }

    /// Credentials with cheap argon2 parameters, so tests run many checks quickly.
    pub(crate) fn cheap_credentials() -> Credentials {
        let argon = argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon2::Params::new(64, 1, 1, None).unwrap(),
        );
        let h = super::super::hash_with(&argon, b"right").unwrap();
        Credentials::parse(&format!(
            "[[client]]\nusername = \"cpe\"\npassword_hash = \"{h}\"\nendpoint_id = \"os::00256D-1\"\nrole = \"agent\"\n"
        ))
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_checks_never_exceed_the_slots() {
        let gate = Arc::new(LoginGate::new(LoginConfig {
            max_concurrent_checks: 2,
            queue_timeout: Duration::from_secs(30),
            free_failures_per_source: 10_000,
            free_failures_per_username: 10_000,
            ..LoginConfig::default()
        }));
        let creds = cheap_credentials();
        let mut tasks = Vec::new();
        for i in 0..32u8 {
            let (gate, creds) = (gate.clone(), creds.clone());
            tasks.push(tokio::spawn(async move {
                let ip = IpAddr::from([10, 0, 0, i]);
                gate.check(&creds, ip, "cpe", b"wrong").await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), Ok(None));
        }
        assert_eq!(creds.evaluations(), 32);
        let peak = gate.peak_concurrency();
        assert!((1..=2).contains(&peak), "{peak} checks ran at once");
    }

    #[tokio::test]
    async fn no_slot_within_the_deadline_is_busy_and_not_a_failure() {
        let gate = LoginGate::new(LoginConfig {
            max_concurrent_checks: 2,
            queue_timeout: Duration::from_millis(20),
            ..cfg()
        });
        let creds = cheap_credentials();
        let held = gate.all.clone().acquire_many_owned(2).await.unwrap();
        let ip = IpAddr::from([10, 0, 0, 1]);
        for _ in 0..5 {
            assert_eq!(
                gate.check(&creds, ip, "cpe", b"right").await,
                Err(Refusal::Busy)
            );
        }
        assert_eq!(creds.evaluations(), 0);
        drop(held);
        assert!(
            gate.check(&creds, ip, "cpe", b"right")
                .await
                .unwrap()
                .is_some()
        );
    }

    #[tokio::test]
    async fn suspects_leave_half_of_the_slots_to_clean_logins() {
        let gate = LoginGate::new(LoginConfig {
            max_concurrent_checks: 4,
            queue_timeout: Duration::from_millis(20),
            ..cfg()
        });
        let creds = cheap_credentials();
        // Every suspect slot is taken (by attempts of sources with failures).
        let held = gate.suspects.clone().acquire_many_owned(2).await.unwrap();
        let bad = IpAddr::from([10, 0, 0, 9]);
        assert_eq!(gate.check(&creds, bad, "x", b"wrong").await, Ok(None));
        assert_eq!(
            gate.check(&creds, bad, "y", b"wrong").await,
            Err(Refusal::Busy),
            "a source with a failure waits for a suspect slot"
        );
        let good = IpAddr::from([10, 0, 0, 10]);
        assert!(
            gate.check(&creds, good, "cpe", b"right")
                .await
                .unwrap()
                .is_some()
        );
        drop(held);
    }

    #[tokio::test]
    async fn unknown_usernames_cost_a_check_like_known_ones() {
        let gate = LoginGate::new(LoginConfig::default());
        let creds = cheap_credentials();
        let ip = IpAddr::from([10, 0, 0, 1]);
        assert_eq!(gate.check(&creds, ip, "cpe", b"wrong").await, Ok(None));
        assert_eq!(creds.evaluations(), 1);
        assert_eq!(gate.check(&creds, ip, "nobody", b"wrong").await, Ok(None));
        assert_eq!(
            creds.evaluations(),
            2,
            "the unknown username ran a check too"
        );
    }

    #[tokio::test]
    async fn backed_off_sources_and_usernames_are_refused_without_a_check() {
        let gate = LoginGate::new(cfg());
        let creds = cheap_credentials();
        let ip = IpAddr::from([10, 0, 0, 1]);
        // Username: 2 free failures, the 3rd runs and starts the back-off.
        for _ in 0..3 {
            assert_eq!(gate.check(&creds, ip, "cpe", b"wrong").await, Ok(None));
        }
        let before = creds.evaluations();
        let other = IpAddr::from([10, 0, 0, 2]);
        assert_eq!(
            gate.check(&creds, other, "cpe", b"right").await,
            Err(Refusal::Throttled("username"))
        );
        assert_eq!(creds.evaluations(), before);
        // Source: 3 free failures (all usernames), then backed off for every username.
        let ip = IpAddr::from([10, 0, 0, 3]);
        for u in ["a", "b", "c", "d"] {
            assert_eq!(gate.check(&creds, ip, u, b"wrong").await, Ok(None));
        }
        let before = creds.evaluations();
        assert_eq!(
            gate.check(&creds, ip, "e", b"wrong").await,
            Err(Refusal::Throttled("source"))
        );
        assert_eq!(creds.evaluations(), before);
    }
}
