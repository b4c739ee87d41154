//! Collection times: `Unix-Epoch` (seconds or milliseconds) and `ISO-8601`.

use chrono::{DateTime, NaiveDateTime};

use crate::{Error, Result};

/// Epoch values at or above this are milliseconds: 10^11 seconds is the year 5138, 10^11
/// milliseconds is 1973.
const MS_THRESHOLD: f64 = 1e11;

/// A `Unix-Epoch` value in seconds (TR-369 example, BBF reference agent) or milliseconds
/// (TR-181's definition), as milliseconds. `None` for an instant before 1970, which a device
/// only reports when it does not know the time.
pub fn epoch_ms(v: f64) -> Result<Option<i64>> {
    if !v.is_finite() {
        return Err(Error::Timestamp(v.to_string()));
    }
    if v < 0.0 {
        return Ok(None);
    }
    let ms = if v >= MS_THRESHOLD { v } else { v * 1000.0 };
    // Beyond the year 9999 is not a clock reading.
    if ms > 253_402_300_799_999.0 {
        return Err(Error::Timestamp(v.to_string()));
    }
    #[allow(clippy::cast_possible_truncation)] // range checked just above
    Ok(Some(ms.round() as i64))
}

/// A timestamp as text: digits are a Unix epoch, anything else must be ISO 8601.
pub(crate) fn parse_text(s: &str) -> Result<Option<i64>> {
    let t = s.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let v: f64 = t.parse().map_err(|_| Error::Timestamp(clip(s)))?;
        return epoch_ms(v);
    }
    let ms = match DateTime::parse_from_rfc3339(t) {
        Ok(dt) => dt.timestamp_millis(),
        Err(_) => NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f")
            .map_err(|_| Error::Timestamp(clip(s)))?
            .and_utc()
            .timestamp_millis(),
    };
    Ok((ms >= 0).then_some(ms))
}

fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_and_milliseconds() {
        assert_eq!(epoch_ms(1_736_935_200.0).unwrap(), Some(1_736_935_200_000));
        assert_eq!(
            epoch_ms(1_736_935_200_123.0).unwrap(),
            Some(1_736_935_200_123)
        );
        assert_eq!(epoch_ms(-5.0).unwrap(), None);
        assert!(epoch_ms(f64::NAN).is_err());
        assert!(epoch_ms(1e20).is_err());
    }

    #[test]
    fn text_forms() {
        assert_eq!(
            parse_text("2025-01-15T10:00:00Z").unwrap(),
            Some(1_736_935_200_000)
        );
        assert_eq!(
            parse_text("2025-01-15T11:00:00.5+01:00").unwrap(),
            Some(1_736_935_200_500)
        );
        assert_eq!(
            parse_text("2025-01-15T10:00:00").unwrap(),
            Some(1_736_935_200_000)
        );
        assert_eq!(parse_text("1736935200").unwrap(), Some(1_736_935_200_000));
        assert_eq!(parse_text("0001-01-01T00:00:00Z").unwrap(), None);
        assert!(parse_text("yesterday").is_err());
        assert!(parse_text("").is_err());
        assert!(parse_text("1.2.3").is_err());
    }
}
