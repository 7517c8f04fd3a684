//! Property tests: whatever one side encodes, the other decodes to the same messages, however the bytes
//! are cut into reads.

use bytes::BytesMut;
use proptest::prelude::*;
use switchboard_wire::deflate::DeflateParams;
use switchboard_wire::{Config, Connection, Event, MessageKind, Role};

fn deflate() -> DeflateParams {
    deflate_with(false)
}

/// `no_takeover`: both sides reset after every message (the sender then uses its thread's shared
/// compressor).
fn deflate_with(no_takeover: bool) -> DeflateParams {
    DeflateParams {
        server_no_context_takeover: no_takeover,
        client_no_context_takeover: no_takeover,
        server_max_window_bits: 15,
        client_max_window_bits: 15,
    }
}

fn message() -> impl Strategy<Value = (MessageKind, Vec<u8>)> {
    prop_oneof![
        ".{0,300}".prop_map(|s: String| (MessageKind::Text, s.into_bytes())),
        proptest::collection::vec(any::<u8>(), 0..70_000).prop_map(|b| (MessageKind::Binary, b)),
    ]
}

fn transfer(
    from: Role,
    compressed: bool,
    no_takeover: bool,
    messages: &[(MessageKind, Vec<u8>)],
    cuts: &[usize],
) -> Vec<Event> {
    let deflate = compressed.then(|| deflate_with(no_takeover));
    let config = Config { deflate, compression_threshold: 0, ..Config::default() };
    let mut sender = Connection::new(from, config.clone(), 7);
    let to = if from == Role::Client { Role::Server } else { Role::Client };
    let mut receiver = Connection::new(to, config, 9);
    let mut wire = BytesMut::new();
    for (kind, payload) in messages {
        assert!(sender.encode_message(*kind, payload, &mut wire));
    }
    let wire = wire.freeze();
    let mut input = BytesMut::new();
    let mut events = Vec::new();
    let mut pos = 0;
    let mut cut_iter = cuts.iter().cycle();
    while pos < wire.len() {
        let step = (*cut_iter.next().unwrap_or(&wire.len())).max(1);
        let end = (pos + step).min(wire.len());
        input.extend_from_slice(&wire[pos..end]);
        pos = end;
        while let Some(event) = receiver.receive(&mut input).expect("valid stream") {
            events.push(event);
        }
    }
    events
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn messages_survive_any_chunking(
        messages in proptest::collection::vec(message(), 1..6),
        cuts in proptest::collection::vec(1usize..5000, 1..8),
        from_client in any::<bool>(),
        compressed in any::<bool>(),
        no_takeover in any::<bool>(),
    ) {
        let from = if from_client { Role::Client } else { Role::Server };
        let events = transfer(from, compressed, no_takeover, &messages, &cuts);
        let expected: Vec<Event> = messages.iter().map(|(k, p)| Event::Message(*k, p.clone().into())).collect();
        prop_assert_eq!(events, expected);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..2000), client in any::<bool>()) {
        let role = if client { Role::Client } else { Role::Server };
        let mut conn = Connection::new(role, Config { deflate: Some(deflate()), ..Config::default() }, 1);
        let mut input = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = conn.receive(&mut input) {}
    }
}
