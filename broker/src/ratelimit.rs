//! Per-device ingress limits: one token bucket per Endpoint ID, shared by all of that
//! endpoint's connections, in records and in bytes.
//!
//! A device over its bucket has the excess publishes quarantined (`rate_limited`), so one
//! flooding or looping device costs the gateway a counter increment per publish, never the
//! controller's, the sink's or the other devices' capacity.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Bucket sizes and refill rates (from `BrokerConfig`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rates {
    /// Publishes per second; 0 turns the limit off.
    pub records_per_sec: f64,
    pub record_burst: f64,
    /// Payload bytes per second; 0 turns the limit off.
    pub bytes_per_sec: f64,
    pub byte_burst: f64,
}

impl Rates {
    fn unlimited(&self) -> bool {
        self.records_per_sec <= 0.0 && self.bytes_per_sec <= 0.0
    }
}

/// Quarantine events for rate-limited publishes are themselves limited to one per device per
/// this interval (the metric still counts every publish), so a flood cannot become a flood of
/// quarantine records in the sink.
const REPORT_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub(crate) struct Bucket {
    rates: Rates,
    records: f64,
    bytes: f64,
    refilled: Instant,
    last_report: Option<Instant>,
    /// Publishes refused since the last reported one.
    unreported: u64,
}

/// What to do with a publish that is over the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Pass,
    /// Over the limit; `Some(n)`: emit a quarantine event covering `n` refused publishes.
    Refuse(Option<u64>),
}

impl Bucket {
    fn new(rates: Rates, now: Instant) -> Bucket {
        Bucket {
            rates,
            records: rates.record_burst,
            bytes: rates.byte_burst,
            refilled: now,
            last_report: None,
            unreported: 0,
        }
    }

    /// Takes one publish of `size` payload bytes.
    pub(crate) fn take(&mut self, size: usize, now: Instant) -> Verdict {
        let r = self.rates;
        if r.unlimited() {
            return Verdict::Pass;
        }
        let dt = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.records = (self.records + dt * r.records_per_sec).min(r.record_burst);
        self.bytes = (self.bytes + dt * r.bytes_per_sec).min(r.byte_burst);
        #[allow(clippy::cast_precision_loss)] // sizes are bounded by max_packet_size
        let size = size as f64;
        let records_ok = r.records_per_sec <= 0.0 || self.records >= 1.0;
        let bytes_ok = r.bytes_per_sec <= 0.0 || self.bytes >= size;
        if records_ok && bytes_ok {
            if r.records_per_sec > 0.0 {
                self.records -= 1.0;
            }
            if r.bytes_per_sec > 0.0 {
                self.bytes -= size;
            }
            return Verdict::Pass;
        }
        self.unreported = self.unreported.saturating_add(1);
        let due = self
            .last_report
            .is_none_or(|t| now.saturating_duration_since(t) >= REPORT_EVERY);
        if due {
            self.last_report = Some(now);
            Verdict::Refuse(Some(std::mem::take(&mut self.unreported)))
        } else {
            Verdict::Refuse(None)
        }
    }
}

/// A shared bucket and the number of connections holding it.
type Counted = (Arc<Mutex<Bucket>>, usize);

/// The buckets of the connected endpoints. An entry lives while at least one connection of
/// its endpoint does, so memory is bounded by `max_connections`.
#[derive(Debug)]
pub(crate) struct Buckets {
    rates: Rates,
    by_eid: Mutex<HashMap<String, Counted>>,
}

impl Buckets {
    pub(crate) fn new(rates: Rates) -> Buckets {
        Buckets {
            rates,
            by_eid: Mutex::new(HashMap::new()),
        }
    }

    /// The bucket of `eid`, shared with the endpoint's other connections. Pair with
    /// [`Buckets::release`].
    pub(crate) fn acquire(&self, eid: &str) -> Arc<Mutex<Bucket>> {
        let mut m = self.by_eid.lock();
        let entry = m.entry(eid.to_owned()).or_insert_with(|| {
            (
                Arc::new(Mutex::new(Bucket::new(self.rates, Instant::now()))),
                0,
            )
        });
        entry.1 = entry.1.saturating_add(1);
        entry.0.clone()
    }

    /// One connection of `eid` ended.
    pub(crate) fn release(&self, eid: &str) {
        let mut m = self.by_eid.lock();
        if let Some(entry) = m.get_mut(eid) {
            entry.1 = entry.1.saturating_sub(1);
            if entry.1 == 0 {
                m.remove(eid);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_eid.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates(records_per_sec: f64, record_burst: f64) -> Rates {
        Rates {
            records_per_sec,
            record_burst,
            bytes_per_sec: 1000.0,
            byte_burst: 2000.0,
        }
    }

    #[test]
    fn burst_then_refill_then_reports_at_most_once_a_second() {
        let t0 = Instant::now();
        let mut b = Bucket::new(rates(2.0, 3.0), t0);
        for _ in 0..3 {
            assert_eq!(b.take(10, t0), Verdict::Pass);
        }
        assert_eq!(b.take(10, t0), Verdict::Refuse(Some(1)));
        assert_eq!(b.take(10, t0), Verdict::Refuse(None));
        assert_eq!(b.take(10, t0), Verdict::Refuse(None));
        // Half a second refills one record; the refusal count waits for the next report.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(b.take(10, t1), Verdict::Pass);
        assert_eq!(b.take(10, t1), Verdict::Refuse(None));
        let t2 = t0 + Duration::from_millis(1000);
        assert_eq!(b.take(10, t2), Verdict::Pass);
        assert_eq!(b.take(10, t2), Verdict::Refuse(Some(4)));
    }

    #[test]
    fn bytes_are_limited_too_and_zero_means_off() {
        let t0 = Instant::now();
        let mut b = Bucket::new(rates(100.0, 100.0), t0);
        assert_eq!(b.take(1500, t0), Verdict::Pass);
        assert!(matches!(b.take(1500, t0), Verdict::Refuse(_)));
        let mut off = Bucket::new(
            Rates {
                records_per_sec: 0.0,
                record_burst: 0.0,
                bytes_per_sec: 0.0,
                byte_burst: 0.0,
            },
            t0,
        );
        for _ in 0..10_000 {
            assert_eq!(off.take(1 << 20, t0), Verdict::Pass);
        }
    }

    #[test]
    fn an_endpoints_connections_share_one_bucket_until_the_last_ends() {
        let buckets = Buckets::new(rates(1.0, 1.0));
        let a = buckets.acquire("os::A");
        let a2 = buckets.acquire("os::A");
        assert!(Arc::ptr_eq(&a, &a2));
        let now = Instant::now();
        assert_eq!(a.lock().take(1, now), Verdict::Pass);
        assert!(matches!(a2.lock().take(1, now), Verdict::Refuse(_)));
        buckets.release("os::A");
        assert_eq!(buckets.len(), 1);
        buckets.release("os::A");
        assert_eq!(buckets.len(), 0);
    }
}
