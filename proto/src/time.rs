//! Time as the gateway stores it: milliseconds since the Unix epoch in an `i64`.
//!
//! Every conversion from `Duration` or `SystemTime` to a millisecond count goes through here and
//! saturates instead of wrapping, so a huge configured duration or a clock far in the future
//! clamps at the edge of the range rather than turning negative. [`now_ms`] is the one place the
//! wall clock is read; nothing on the decode path calls it.
//!
//! RFC 3339 rendering needs no date library: the caller supplies the instant, this only renders it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The wall clock in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    epoch_ms(SystemTime::now())
}

/// `t` in milliseconds since the Unix epoch; an instant before 1970 is negative. Saturates at the
/// `i64` range.
pub fn epoch_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(after) => millis(after),
        Err(before) => millis(before.duration()).saturating_neg(),
    }
}

/// `d` in whole milliseconds, saturating at `i64::MAX`.
pub fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `d` in whole milliseconds, saturating at `u64::MAX`.
pub fn millis_u64(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `d` in whole microseconds, saturating at `u64::MAX`.
pub fn micros_u64(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Formats milliseconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC).
pub fn rfc3339_millis(epoch_ms: i64) -> String {
    let t = Parts::of(epoch_ms);
    if !(0..=9999).contains(&t.year) {
        return t.formatted();
    }
    // Every Event carries a timestamp; writing digits into a fixed template is several times
    // faster than `format!`.
    let mut b = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut v: u64| {
        for i in (at..at + width).rev() {
            b[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, t.year.unsigned_abs());
    put(5, 2, t.month.into());
    put(8, 2, t.day.into());
    put(11, 2, t.hour);
    put(14, 2, t.minute);
    put(17, 2, t.second);
    put(20, 3, t.millis);
    b.iter().map(|&c| char::from(c)).collect()
}

struct Parts {
    year: i64,
    month: u32,
    day: u32,
    hour: u64,
    minute: u64,
    second: u64,
    millis: u64,
}

impl Parts {
    fn of(epoch_ms: i64) -> Parts {
        let secs = epoch_ms.div_euclid(1000);
        let sod = secs.rem_euclid(86_400).unsigned_abs();
        let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
        Parts {
            year,
            month,
            day,
            hour: sod / 3600,
            minute: (sod % 3600) / 60,
            second: sod % 60,
            millis: epoch_ms.rem_euclid(1000).unsigned_abs(),
        }
    }

    fn formatted(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second, self.millis
        )
    }
}

// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_saturate_instead_of_wrapping() {
        assert_eq!(millis(Duration::from_millis(1500)), 1500);
        assert_eq!(millis(Duration::MAX), i64::MAX);
        assert_eq!(millis_u64(Duration::MAX), u64::MAX);
        assert_eq!(micros_u64(Duration::MAX), u64::MAX);
        assert_eq!(micros_u64(Duration::from_micros(7)), 7);
        assert_eq!(epoch_ms(UNIX_EPOCH + Duration::from_millis(42)), 42);
        assert_eq!(epoch_ms(UNIX_EPOCH - Duration::from_millis(42)), -42);
        let far = UNIX_EPOCH.checked_add(Duration::from_secs(u64::MAX / 2));
        if let Some(far) = far {
            assert_eq!(epoch_ms(far), i64::MAX);
        }
        assert!(now_ms() > 1_700_000_000_000);
    }

    #[test]
    fn known_instants() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_millis(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(
            rfc3339_millis(1_795_595_370_000),
            "2026-11-25T08:29:30.000Z"
        );
        assert_eq!(rfc3339_millis(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(
            rfc3339_millis(253_402_300_799_999),
            "9999-12-31T23:59:59.999Z"
        );
        assert_eq!(
            rfc3339_millis(253_402_300_800_000),
            "10000-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn fast_path_agrees_with_format() {
        let mut t: i64 = -62_167_219_200_000; // 0000-01-01
        while t < 253_402_300_800_000 {
            assert_eq!(rfc3339_millis(t), Parts::of(t).formatted(), "{t}");
            t += 7_777_777_777_777 / 1000 + 12_345;
        }
    }
}
