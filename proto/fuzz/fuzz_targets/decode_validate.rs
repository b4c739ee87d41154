//! Feeds arbitrary bytes through everything a network peer can reach: decode, validate (with
//! the default and a tiny size limit), Notify → Event conversion and JSON rendering.

#![no_main]

use libfuzzer_sys::fuzz_target;
use uspwatch_proto::{Event, Limits, decode, validate};

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = decode(data) {
        let _ = serde_json::to_vec(&d.record);
        if let Some(m) = d.msg() {
            let _ = serde_json::to_vec(m);
        }
    }
    let _ = validate(
        data,
        &Limits {
            max_record_size: 64,
        },
    );
    match validate(data, &Limits::default()) {
        Ok(d) => {
            let _ = d.record_type();
            if let Some(m) = d.msg()
                && let Some(e) = Event::from_notify(&d.record, m, 1_764_055_770_000)
            {
                let json = serde_json::to_vec(&e).unwrap_or_default();
                assert!(!json.is_empty(), "an Event always serialises");
            }
        }
        Err(e) => {
            let _ = (
                e.reason().as_str(),
                e.reason().usp_err_code(),
                e.to_string(),
            );
        }
    }
});
