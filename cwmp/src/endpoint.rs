//! The TR-369 §2.2 Endpoint ID of a CWMP device, so that its history continues under the same
//! key when it moves to USP.
//!
//! `os::<OUI>-<SerialNumber>` or `ops::<OUI>-<ProductClass>-<SerialNumber>`, each part
//! percent-encoded as R-ARC.5 requires (`A-Z a-z 0-9 - . _` stay, every other UTF-8 byte
//! becomes `%HH`, uppercase hex, as obuspa's default Endpoint ID does).
//!
//! CWMP allows 64 characters each for ProductClass and SerialNumber, TR-369 only 50 for the
//! whole instance-id (R-ARC.6). When the encoded instance-id does not fit, it is cut to its
//! first 33 characters (never inside a `%HH` triple) followed by `.` and 16 hex digits of a
//! 64-bit FNV-1a hash of the full, unencoded `OUI-ProductClass-SerialNumber` (or
//! `OUI-SerialNumber`) text: deterministic on every platform and release, distinct for
//! devices that share a long prefix, and still a valid Endpoint ID. Such a device's USP agent
//! will likely pick a different ID of its own; the inventory shows the derived one.

use crate::error::{Error, Result};
use crate::soap::DeviceId;

/// Which TR-369 scheme to derive from a CWMP DeviceId.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdScheme {
    /// `os::<OUI>-<SerialNumber>` (obuspa's default).
    #[default]
    Os,
    /// `ops::<OUI>-<ProductClass>-<SerialNumber>`.
    Ops,
}

/// Longest instance-id TR-369 allows (R-ARC.6).
const MAX_INSTANCE: usize = 50;
/// Characters kept before the hash when an instance-id is too long: 33 + '.' + 16 = 50.
const KEPT: usize = MAX_INSTANCE - 17;

/// The Endpoint ID of the device `d` under `scheme`.
pub fn endpoint_id(d: &DeviceId, scheme: IdScheme) -> Result<String> {
    if d.oui.len() != 6 || !d.oui.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::DeviceId(format!(
            "OUI {:?} is not 6 hex digits",
            d.oui.chars().take(16).collect::<String>()
        )));
    }
    if d.serial_number.is_empty() {
        return Err(Error::DeviceId("SerialNumber is empty".into()));
    }
    let oui = d.oui.to_ascii_uppercase();
    let (prefix, raw) = match scheme {
        IdScheme::Os => ("os::", format!("{oui}-{}", d.serial_number)),
        IdScheme::Ops => {
            if d.product_class.is_empty() {
                return Err(Error::DeviceId(
                    "ProductClass is empty; the ops scheme needs it".into(),
                ));
            }
            (
                "ops::",
                format!("{oui}-{}-{}", d.product_class, d.serial_number),
            )
        }
    };
    let mut instance = String::with_capacity(raw.len());
    instance.push_str(&oui);
    instance.push('-');
    if scheme == IdScheme::Ops {
        encode(&mut instance, &d.product_class);
        instance.push('-');
    }
    encode(&mut instance, &d.serial_number);
    if instance.len() > MAX_INSTANCE {
        let mut cut = KEPT;
        // Never split a %HH triple.
        if let Some(p) = instance[cut - 2..cut].find('%') {
            cut = cut - 2 + p;
        }
        instance.truncate(cut);
        instance.push_str(&format!(".{:016X}", fnv1a64(raw.as_bytes())));
    }
    let id = format!("{prefix}{instance}");
    uspwatch_proto::validate_endpoint_id(&id).map_err(|e| Error::DeviceId(e.to_string()))?;
    Ok(id)
}

fn encode(out: &mut String, s: &str) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// 64-bit FNV-1a: fixed constants, so the same device gets the same ID on every build.
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(pc: &str, sn: &str) -> DeviceId {
        DeviceId {
            manufacturer: "ExampleCo".into(),
            oui: "00256D".into(),
            product_class: pc.into(),
            serial_number: sn.into(),
        }
    }

    #[test]
    fn spec_examples() {
        let d = dev("STB", "0123456789");
        assert_eq!(
            endpoint_id(&d, IdScheme::Os).unwrap(),
            "os::00256D-0123456789"
        );
        assert_eq!(
            endpoint_id(&d, IdScheme::Ops).unwrap(),
            "ops::00256D-STB-0123456789"
        );
    }

    #[test]
    fn characters_outside_the_set_are_percent_encoded() {
        let d = dev("Home Gateway", "A/B:1");
        assert_eq!(
            endpoint_id(&d, IdScheme::Ops).unwrap(),
            "ops::00256D-Home%20Gateway-A%2FB%3A1"
        );
        let d = dev("x", "é");
        assert_eq!(endpoint_id(&d, IdScheme::Os).unwrap(), "os::00256D-%C3%A9");
    }

    #[test]
    fn lowercase_oui_is_normalised_and_bad_ones_refused() {
        let mut d = dev("STB", "1");
        d.oui = "00256d".into();
        assert_eq!(endpoint_id(&d, IdScheme::Os).unwrap(), "os::00256D-1");
        d.oui = "00256G".into();
        assert!(matches!(
            endpoint_id(&d, IdScheme::Os),
            Err(Error::DeviceId(_))
        ));
        let d = dev("", "1");
        assert!(endpoint_id(&d, IdScheme::Ops).is_err());
        let d = dev("STB", "");
        assert!(endpoint_id(&d, IdScheme::Os).is_err());
    }

    #[test]
    fn exactly_fifty_fits_and_fifty_one_is_hashed() {
        // 7 characters of OUI and dash, 43 of serial: 50.
        let sn = "S".repeat(43);
        let id = endpoint_id(&dev("P", &sn), IdScheme::Os).unwrap();
        assert_eq!(id, format!("os::00256D-{sn}"));
        let sn = "S".repeat(44);
        let id = endpoint_id(&dev("P", &sn), IdScheme::Os).unwrap();
        let instance = id.strip_prefix("os::").unwrap();
        assert_eq!(instance.len(), 50);
        assert!(instance.starts_with("00256D-SSSS"));
        let hash = format!("{:016X}", fnv1a64(format!("00256D-{sn}").as_bytes()));
        assert!(instance.ends_with(&format!(".{hash}")), "{instance}");
    }

    #[test]
    fn long_ids_are_deterministic_and_distinct() {
        let a = dev(&"P".repeat(64), &format!("{}1", "9".repeat(63)));
        let b = dev(&"P".repeat(64), &format!("{}2", "9".repeat(63)));
        let ia = endpoint_id(&a, IdScheme::Ops).unwrap();
        assert_eq!(ia, endpoint_id(&a, IdScheme::Ops).unwrap());
        assert_ne!(ia, endpoint_id(&b, IdScheme::Ops).unwrap());
        // A fixed value pins the algorithm: changing it would move every long-ID device.
        assert_eq!(fnv1a64(b"00256D-x"), 0x54D0_0D7A_8DBC_CBB7);
    }

    #[test]
    fn the_cut_never_splits_an_escape() {
        for n in 0..40 {
            let sn = format!("{}{}", "a".repeat(n), " ".repeat(40));
            let id = endpoint_id(&dev("P", &sn), IdScheme::Os).unwrap();
            uspwatch_proto::validate_endpoint_id(&id).unwrap();
            let instance = id.strip_prefix("os::").unwrap();
            assert!(instance.len() <= 50);
            let head = instance.rsplit_once('.').unwrap().0;
            let bytes = head.as_bytes();
            for (i, b) in bytes.iter().enumerate() {
                if *b == b'%' {
                    assert!(i + 2 < bytes.len(), "split escape in {instance}");
                }
            }
        }
    }
}
