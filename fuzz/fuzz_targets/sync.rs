//! `switchboard.sync.v1` client messages: any text gives a message or a violation that names the
//! problem, never a panic; a message that parses writes back to one that parses the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::sync::ClientMessage;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match ClientMessage::parse(text) {
        Ok(message) => {
            let written = serde_json::to_string(&message).expect("a parsed message writes");
            assert_eq!(ClientMessage::parse(&written).as_ref(), Ok(&message));
        }
        Err(violation) => assert!(violation.0.starts_with("sync message: ")),
    }
});
