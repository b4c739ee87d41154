//! Feeds arbitrary bytes through what a connection does with bytes from a client: rumqttd's
//! MQTT 3.1.1 and 5 codecs behind our fixed-header checks, then the per-packet rules (Response
//! Topic, topic ACL, reply routes, Record validation) for every packet that decodes.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    uspwatch_broker::fuzzing::read_path(data);
});
