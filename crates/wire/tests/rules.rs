//! Byte-vector tests: one per protocol rule, each checking the exact close code the violation earns.

use bytes::BytesMut;
use switchboard_wire::deflate::{Compressor, DeflateParams};
use switchboard_wire::{
    encode_raw_frame, CloseCode, CloseFrame, CloseState, Config, Connection, Event, MessageKind, ProtocolError, Role,
};

const KEY: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

/// A client frame: masked, with the raw first byte given (FIN, RSV, opcode).
fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    encode_raw_frame(first, Some(KEY), payload)
}

fn server() -> Connection {
    Connection::new(Role::Server, Config::default(), 0)
}

/// Feeds `bytes` and collects events until the input is exhausted or an error occurs.
fn run(conn: &mut Connection, bytes: &[u8]) -> (Vec<Event>, Option<ProtocolError>) {
    let mut input = BytesMut::from(bytes);
    let mut events = Vec::new();
    loop {
        match conn.receive(&mut input) {
            Ok(Some(event)) => events.push(event),
            Ok(None) => return (events, None),
            Err(e) => return (events, Some(e)),
        }
    }
}

fn expect_close(bytes: &[u8], code: u16) {
    let (_, err) = run(&mut server(), bytes);
    let err = err.unwrap_or_else(|| panic!("expected close {code} for {bytes:02x?}"));
    assert_eq!(err.close_code(), CloseCode(code), "{err}");
}

#[test]
fn text_binary_ping_pong_are_delivered() {
    let mut bytes = client_frame(0x81, b"Hello");
    bytes.extend(client_frame(0x82, &[1, 2, 3]));
    bytes.extend(client_frame(0x89, b"p"));
    bytes.extend(client_frame(0x8A, b""));
    let (events, err) = run(&mut server(), &bytes);
    assert_eq!(err, None);
    assert_eq!(
        events,
        vec![
            Event::Message(MessageKind::Text, "Hello".into()),
            Event::Message(MessageKind::Binary, vec![1u8, 2, 3].into()),
            Event::Ping("p".into()),
            Event::Pong("".into()),
        ]
    );
}

#[test]
fn fragments_with_interleaved_control_frames_are_assembled() {
    let mut bytes = client_frame(0x01, b"Hel");
    bytes.extend(client_frame(0x89, b"ping"));
    bytes.extend(client_frame(0x00, b"l"));
    bytes.extend(client_frame(0x80, b"o"));
    let (events, err) = run(&mut server(), &bytes);
    assert_eq!(err, None);
    assert_eq!(events, vec![Event::Ping("ping".into()), Event::Message(MessageKind::Text, "Hello".into())]);
}

#[test]
fn reserved_bits_without_extension_are_1002() {
    for first in [0xC1, 0xA1, 0x91, 0xF1] {
        expect_close(&client_frame(first, b"x"), 1002);
    }
}

#[test]
fn rsv1_on_control_or_continuation_frames_is_1002_even_with_deflate() {
    let params = DeflateParams {
        server_no_context_takeover: false,
        client_no_context_takeover: false,
        server_max_window_bits: 15,
        client_max_window_bits: 15,
    };
    let config = Config { deflate: Some(params), ..Config::default() };
    let (_, err) = run(&mut Connection::new(Role::Server, config.clone(), 0), &client_frame(0xC9, b""));
    assert_eq!(err.map(|e| e.close_code()), Some(CloseCode(1002)));
    let mut bytes = client_frame(0x01, b"a");
    bytes.extend(client_frame(0xC0, b"b"));
    let (_, err) = run(&mut Connection::new(Role::Server, config, 0), &bytes);
    assert_eq!(err.map(|e| e.close_code()), Some(CloseCode(1002)));
}

#[test]
fn reserved_opcodes_are_1002() {
    for opcode in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        expect_close(&client_frame(0x80 | opcode, b""), 1002);
    }
}

#[test]
fn control_frames_over_125_bytes_or_fragmented_are_1002() {
    expect_close(&client_frame(0x89, &[0; 126]), 1002);
    expect_close(&client_frame(0x09, b""), 1002);
    expect_close(&client_frame(0x08, b""), 1002);
}

#[test]
fn continuation_without_start_and_new_message_inside_fragments_are_1002() {
    expect_close(&client_frame(0x80, b"x"), 1002);
    let mut bytes = client_frame(0x01, b"a");
    bytes.extend(client_frame(0x81, b"b"));
    expect_close(&bytes, 1002);
}

#[test]
fn an_unmasked_client_frame_is_1002() {
    expect_close(&[0x81, 0x02, b'h', b'i'], 1002);
}

#[test]
fn a_masked_server_frame_is_1002_for_a_client() {
    let (_, err) = run(&mut Connection::new(Role::Client, Config::default(), 1), &client_frame(0x81, b"hi"));
    assert_eq!(err, Some(ProtocolError::MaskedFrame));
}

#[test]
fn invalid_utf8_is_1007_at_the_first_bad_byte() {
    expect_close(
        &client_frame(0x81, &[0xCE, 0xBA, 0xE1, 0xBD, 0xB9, 0xCF, 0x83, 0xCE, 0xBC, 0xCE, 0xB5, 0xED, 0xA0, 0x80]),
        1007,
    );
    // Cut inside a character at the end of the message.
    expect_close(&client_frame(0x81, &[b'a', 0xCE]), 1007);
    // The first fragment is already impossible: failure before the message is complete.
    let mut conn = server();
    let (_, err) = run(&mut conn, &client_frame(0x01, &[b'a', 0xF4, 0x90, 0x80]));
    assert_eq!(err, Some(ProtocolError::InvalidUtf8));
    // A frame's payload is validated as it arrives, before the frame is complete.
    let frame = client_frame(0x81, &[b'o', b'k', 0xFF, b'x', b'y', b'z']);
    let mut conn = server();
    let (_, err) = run(&mut conn, &frame[..frame.len() - 3]);
    assert_eq!(err, Some(ProtocolError::InvalidUtf8));
}

#[test]
fn utf8_split_across_fragments_is_accepted() {
    let text = "κόσμε".as_bytes();
    let mut bytes = client_frame(0x01, &text[..1]);
    bytes.extend(client_frame(0x00, &text[1..4]));
    bytes.extend(client_frame(0x80, &text[4..]));
    let (events, err) = run(&mut server(), &bytes);
    assert_eq!(err, None);
    assert_eq!(events, vec![Event::Message(MessageKind::Text, "κόσμε".into())]);
}

#[test]
fn close_payload_rules() {
    expect_close(&client_frame(0x88, &[0x03]), 1002);
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
        expect_close(&client_frame(0x88, &code.to_be_bytes()), 1002);
    }
    expect_close(&client_frame(0x88, &[0x03, 0xE8, 0xFF, 0xFE]), 1007);
}

#[test]
fn oversized_frames_and_messages_are_1009() {
    let config = Config { max_frame_size: 100, max_message_size: 150, ..Config::default() };
    let (_, err) = run(&mut Connection::new(Role::Server, config.clone(), 0), &client_frame(0x82, &[0; 101]));
    assert_eq!(err.map(|e| e.close_code()), Some(CloseCode(1009)));
    let mut bytes = client_frame(0x02, &[0; 100]);
    bytes.extend(client_frame(0x80, &[0; 51]));
    let (_, err) = run(&mut Connection::new(Role::Server, config, 0), &bytes);
    assert_eq!(err.map(|e| e.close_code()), Some(CloseCode(1009)));
    // A 64-bit length with the top bit set.
    expect_close(&[0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4], 1002);
}

#[test]
fn a_message_in_too_many_fragments_is_1009() {
    let config = Config { max_fragments: 3, ..Config::default() };
    let mut three = client_frame(0x01, b"a");
    three.extend(client_frame(0x00, b"b"));
    three.extend(client_frame(0x80, b"c"));
    let (events, err) = run(&mut Connection::new(Role::Server, config.clone(), 0), &three);
    assert!(err.is_none(), "{err:?}");
    assert!(matches!(&events[..], [Event::Message(MessageKind::Text, data)] if &data[..] == b"abc"));
    let mut four = client_frame(0x01, b"a");
    four.extend(client_frame(0x00, b"b"));
    four.extend(client_frame(0x00, b"c"));
    four.extend(client_frame(0x80, b"d"));
    let (_, err) = run(&mut Connection::new(Role::Server, config, 0), &four);
    assert!(matches!(err, Some(ProtocolError::TooManyFragments { limit: 3 })), "{err:?}");
    assert_eq!(err.map(|e| e.close_code()), Some(CloseCode(1009)));
}

#[test]
fn a_deflate_bomb_is_1009() {
    let params = DeflateParams {
        server_no_context_takeover: false,
        client_no_context_takeover: false,
        server_max_window_bits: 15,
        client_max_window_bits: 15,
    };
    let mut compressed = BytesMut::new();
    Compressor::new(9, 15, false).compress(&vec![b'a'; 8 << 20], &mut compressed);
    let config = Config { deflate: Some(params), max_message_size: 1 << 20, ..Config::default() };
    let (_, err) = run(&mut Connection::new(Role::Server, config, 0), &client_frame(0xC1, &compressed));
    assert_eq!(err, Some(ProtocolError::MessageTooBig { limit: 1 << 20 }));
}

#[test]
fn closing_handshake_from_the_peer() {
    let mut conn = server();
    let mut bytes = client_frame(0x88, &CloseFrame::new(1000, "bye").to_payload());
    bytes.extend(client_frame(0x81, b"ignored after close"));
    let (events, err) = run(&mut conn, &bytes);
    assert_eq!(err, None);
    assert_eq!(events, vec![Event::Close(Some(CloseFrame::new(1000, "bye")))]);
    assert_eq!(conn.close_state(), CloseState::CloseReceived);
    let mut out = BytesMut::new();
    assert!(conn.encode_close(Some(&CloseFrame::new(1000, "bye")), &mut out));
    assert_eq!(&out[..], &[0x88, 0x05, 0x03, 0xE8, b'b', b'y', b'e']);
    assert_eq!(conn.close_state(), CloseState::Closed);
    assert!(!conn.encode_message(MessageKind::Text, b"late", &mut out));
}

#[test]
fn closing_handshake_started_by_us_still_delivers_data_sent_before_the_peer_saw_it() {
    let mut conn = server();
    let mut out = BytesMut::new();
    conn.encode_close(Some(&CloseFrame::new(1001, "shutdown")), &mut out);
    assert_eq!(conn.close_state(), CloseState::CloseSent);
    let mut bytes = client_frame(0x81, b"in flight");
    bytes.extend(client_frame(0x88, &1001u16.to_be_bytes()));
    let (events, err) = run(&mut conn, &bytes);
    assert_eq!(err, None);
    assert_eq!(
        events,
        vec![Event::Message(MessageKind::Text, "in flight".into()), Event::Close(Some(CloseFrame::new(1001, "")))]
    );
    assert_eq!(conn.close_state(), CloseState::Closed);
}

#[test]
fn fail_encodes_the_close_frame_once() {
    let mut conn = server();
    let mut out = BytesMut::new();
    conn.fail(&ProtocolError::InvalidUtf8, &mut out);
    assert_eq!(&out[..4], &[0x88, out[1], 0x03, 0xEF]);
    assert_eq!(conn.close_state(), CloseState::Closed);
    let mut input = BytesMut::from(&client_frame(0x81, b"x")[..]);
    assert_eq!(conn.receive(&mut input), Ok(None));
    assert!(input.is_empty());
}
