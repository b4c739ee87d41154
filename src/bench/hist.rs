//! A fixed-size latency histogram in microseconds: exact below 64 µs, then 32 buckets per
//! power of two (about 3 % resolution), shared by many tasks through atomic counters.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

const LINEAR: u64 = 64;
const SUB: u64 = 32;
const BUCKETS: usize = (LINEAR + SUB * 40) as usize;

fn bucket(us: u64) -> usize {
    if us < LINEAR {
        return us as usize;
    }
    let e = 63 - u64::from(us.leading_zeros());
    let idx = LINEAR + (e - 6) * SUB + ((us >> (e - 5)) & (SUB - 1));
    (idx as usize).min(BUCKETS - 1)
}

/// The upper bound of a bucket, in microseconds.
fn upper(b: usize) -> u64 {
    let b = b as u64;
    if b < LINEAR {
        return b;
    }
    let e = (b - LINEAR) / SUB + 6;
    let m = (b - LINEAR) % SUB;
    ((SUB + m + 1) << (e - 5)) - 1
}

/// Concurrent recorder.
pub struct Hist {
    counts: Vec<AtomicU64>,
    max: AtomicU64,
}

impl Default for Hist {
    fn default() -> Self {
        Hist {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max: AtomicU64::new(0),
        }
    }
}

impl Hist {
    pub fn record(&self, us: u64) {
        self.counts[bucket(us)].fetch_add(1, Ordering::Relaxed);
        self.max.fetch_max(us, Ordering::Relaxed);
    }

    /// A sparse copy that crosses process boundaries as JSON.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            buckets: self
                .counts
                .iter()
                .enumerate()
                .filter_map(|(i, c)| {
                    let n = c.load(Ordering::Relaxed);
                    (n > 0).then_some((i as u32, n))
                })
                .collect(),
            max_us: self.max.load(Ordering::Relaxed),
        }
    }
}

/// Bucket counts and the exact maximum.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Snapshot {
    pub buckets: Vec<(u32, u64)>,
    pub max_us: u64,
}

/// Percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Summary {
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Snapshot {
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|(_, n)| n).sum()
    }

    fn quantile_us(&self, q: f64) -> u64 {
        let total = self.count();
        if total == 0 {
            return 0;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (b, n) in &self.buckets {
            seen += n;
            if seen >= rank {
                return upper(*b as usize).min(self.max_us);
            }
        }
        self.max_us
    }

    pub fn summary(&self) -> Summary {
        Summary {
            count: self.count(),
            p50_ms: self.quantile_us(0.50) as f64 / 1000.0,
            p99_ms: self.quantile_us(0.99) as f64 / 1000.0,
            max_ms: self.max_us as f64 / 1000.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for us in [0u64, 1, 63, 64, 65, 100, 1_000, 10_000, 123_456, 10_000_000] {
            let b = bucket(us);
            assert!(b >= last);
            last = b;
            assert!(upper(b) >= us, "{us} -> {b} -> {}", upper(b));
            assert!(upper(b) as f64 <= us as f64 * 1.07 + 1.0, "{us}");
        }
    }

    #[test]
    fn percentiles() {
        let h = Hist::default();
        for us in 1..=1000 {
            h.record(us * 10);
        }
        let s = h.snapshot().summary();
        assert_eq!(s.count, 1000);
        assert!((4.9..=5.3).contains(&s.p50_ms), "{s:?}");
        assert!((9.8..=10.3).contains(&s.p99_ms), "{s:?}");
        assert_eq!(s.max_ms, 10.0);
    }
}
