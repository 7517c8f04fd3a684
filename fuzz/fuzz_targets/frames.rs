//! Arbitrary bytes, cut into arbitrary reads, into both roles of the decoder, with and without
//! permessage-deflate. It must never panic, never hang, and never buffer past its limits.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use switchboard_wire::deflate::DeflateParams;
use switchboard_wire::{Config, Connection, Event, Role};

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else { return };
    let role = if control & 1 == 0 { Role::Server } else { Role::Client };
    let deflate = (control & 2 != 0).then_some(DeflateParams {
        server_no_context_takeover: control & 4 != 0,
        client_no_context_takeover: control & 8 != 0,
        server_max_window_bits: 15,
        client_max_window_bits: 15,
    });
    let config = Config { deflate, max_frame_size: 1 << 16, max_message_size: 1 << 17, ..Config::default() };
    let mut conn = Connection::new(role, config, 1);
    let chunk = usize::from(control >> 4) + 1;
    let mut input = BytesMut::new();
    let mut out = BytesMut::new();
    for piece in rest.chunks(chunk) {
        input.extend_from_slice(piece);
        loop {
            match conn.receive(&mut input) {
                Ok(Some(Event::Message(kind, payload))) => {
                    assert!(payload.len() <= 1 << 17);
                    if kind == switchboard_wire::MessageKind::Text {
                        assert!(std::str::from_utf8(&payload).is_ok());
                    }
                }
                Ok(Some(Event::Ping(payload))) => conn.encode_pong(&payload, &mut out),
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(error) => {
                    conn.fail(&error, &mut out);
                    return;
                }
            }
        }
        assert!(input.len() <= (1 << 16) + 14 + chunk);
    }
});
