//! A raw-socket conformance suite against `switchboard serve`'s `/echo`, in the spirit of the
//! Autobahn|Testsuite: each case names the Autobahn case it follows. Frames are written byte by byte,
//! so every violation is checked for the exact close code (not just a dropped connection), and every
//! bad handshake for its HTTP status.

mod support;

use std::time::Duration;

use support::{RawClient, ServeProcess};

const TEXT: u8 = 1;
const BINARY: u8 = 2;
const CONT: u8 = 0;
const CLOSE: u8 = 8;
const PING: u8 = 9;
const PONG: u8 = 10;

async fn echo(server: &ServeProcess) -> RawClient {
    RawClient::connect(server.addr, "/echo", &[]).await
}

/// Expects the next frame to be `opcode` with `payload`.
async fn expect_frame(client: &mut RawClient, case: &str, opcode: u8, payload: &[u8]) {
    let frame = client.recv().await.unwrap_or_else(|| panic!("{case}: connection closed, expected opcode {opcode}"));
    assert_eq!((frame.opcode, frame.fin), (opcode, true), "{case}: {frame:?}");
    assert!(frame.payload == payload, "{case}: payload differs ({} vs {} bytes)", frame.payload.len(), payload.len());
}

/// Expects a close frame with `code`, then the server closing the TCP connection.
async fn expect_failure(client: &mut RawClient, case: &str, code: u16) {
    let got = client.expect_close().await;
    assert_eq!(got, code, "{case}: wrong close code");
    client.expect_eof().await;
}

/// Performs a normal close and expects the echo and the TCP close.
async fn close_normally(client: &mut RawClient, case: &str) {
    client.close(1000).await;
    expect_failure(client, case, 1000).await;
}

#[tokio::test]
async fn case_1_framing_of_text_and_binary_messages() {
    let server = ServeProcess::start(&[]);
    for (opcode, group) in [(TEXT, "1.1"), (BINARY, "1.2")] {
        for (i, len) in [0usize, 125, 126, 127, 128, 65535, 65536].into_iter().enumerate() {
            let case = format!("{group}.{}", i + 1);
            let payload = vec![b'*'; len];
            let mut client = echo(&server).await;
            client.send(true, 0, opcode, &payload).await;
            expect_frame(&mut client, &case, opcode, &payload).await;
            close_normally(&mut client, &case).await;
        }
        let case = format!("{group}.8");
        let payload = vec![b'*'; 65536];
        let mut client = echo(&server).await;
        client.send_chopped(true, 0, opcode, &payload, 997).await;
        expect_frame(&mut client, &case, opcode, &payload).await;
        close_normally(&mut client, &case).await;
    }
}

#[tokio::test]
async fn case_2_pings_and_pongs() {
    let server = ServeProcess::start(&[]);
    let cases: [(&str, Vec<u8>); 4] = [
        ("2.1", vec![]),
        ("2.2", b"Hello, world!".to_vec()),
        ("2.3", vec![0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff]),
        ("2.4", vec![0xfe; 125]),
    ];
    for (case, payload) in cases {
        let mut client = echo(&server).await;
        client.send(true, 0, PING, &payload).await;
        expect_frame(&mut client, case, PONG, &payload).await;
        close_normally(&mut client, case).await;
    }
    // 2.5: a ping of 126 bytes.
    let mut client = echo(&server).await;
    client.send(true, 0, PING, &[0xfe; 126]).await;
    expect_failure(&mut client, "2.5", 1002).await;
    // 2.6: a 125-byte ping sent one byte at a time.
    let mut client = echo(&server).await;
    client.send_chopped(true, 0, PING, &[0xfe; 125], 1).await;
    expect_frame(&mut client, "2.6", PONG, &[0xfe; 125]).await;
    close_normally(&mut client, "2.6").await;
    // 2.7, 2.8: unsolicited pongs are ignored.
    let mut client = echo(&server).await;
    client.send(true, 0, PONG, b"").await;
    client.send(true, 0, PONG, b"unsolicited pong payload").await;
    close_normally(&mut client, "2.7/2.8").await;
    // 2.9: an unsolicited pong, then a ping.
    let mut client = echo(&server).await;
    client.send(true, 0, PONG, b"unsolicited pong payload").await;
    client.send(true, 0, PING, b"ping payload").await;
    expect_frame(&mut client, "2.9", PONG, b"ping payload").await;
    close_normally(&mut client, "2.9").await;
    // 2.10, 2.11: ten pings in a row (the second time chopped), ten pongs in order.
    for (case, chop) in [("2.10", None), ("2.11", Some(1))] {
        let mut client = echo(&server).await;
        for i in 0..10 {
            let payload = format!("payload-{i}");
            match chop {
                Some(n) => client.send_chopped(true, 0, PING, payload.as_bytes(), n).await,
                None => client.send(true, 0, PING, payload.as_bytes()).await,
            }
        }
        for i in 0..10 {
            expect_frame(&mut client, case, PONG, format!("payload-{i}").as_bytes()).await;
        }
        close_normally(&mut client, case).await;
    }
}

#[tokio::test]
async fn case_3_reserved_bits() {
    let server = ServeProcess::start(&[]);
    // 3.1: RSV1 on a text frame of a connection without an extension.
    let mut client = echo(&server).await;
    client.send(true, 0b100, TEXT, b"Hello, world!").await;
    expect_failure(&mut client, "3.1", 1002).await;
    // 3.2-3.4: a valid text, then a bad frame, then a ping that must not be answered.
    for (case, rsv) in [("3.2", 0b010), ("3.3", 0b110), ("3.4", 0b001)] {
        let mut client = echo(&server).await;
        client.send(true, 0, TEXT, b"Hello, world!").await;
        client.send(true, rsv, TEXT, b"Hello, world!").await;
        client.send(true, 0, PING, b"").await;
        expect_frame(&mut client, case, TEXT, b"Hello, world!").await;
        expect_failure(&mut client, case, 1002).await;
    }
    // 3.5-3.7: reserved bits on binary, ping and close frames.
    for (case, rsv, opcode, payload) in [
        ("3.5", 0b101, BINARY, vec![0xff; 8]),
        ("3.6", 0b011, PING, b"Hello".to_vec()),
        ("3.7", 0b111, CLOSE, 1000u16.to_be_bytes().to_vec()),
    ] {
        let mut client = echo(&server).await;
        client.send(true, rsv, opcode, &payload).await;
        expect_failure(&mut client, case, 1002).await;
    }
}

#[tokio::test]
async fn case_4_reserved_opcodes() {
    let server = ServeProcess::start(&[]);
    for (i, opcode) in [3u8, 4, 5, 6, 7].into_iter().enumerate() {
        let case = format!("4.1.{}", i + 1);
        let mut client = echo(&server).await;
        client.send(true, 0, opcode, b"").await;
        expect_failure(&mut client, &case, 1002).await;
    }
    for (i, opcode) in [11u8, 12, 13, 14, 15].into_iter().enumerate() {
        let case = format!("4.2.{}", i + 1);
        let mut client = echo(&server).await;
        client.send(true, 0, TEXT, b"Hello, world!").await;
        client.send(true, 0, opcode, b"reserved").await;
        client.send(true, 0, PING, b"").await;
        expect_frame(&mut client, &case, TEXT, b"Hello, world!").await;
        expect_failure(&mut client, &case, 1002).await;
    }
}

#[tokio::test]
async fn case_5_fragmentation() {
    let server = ServeProcess::start(&[]);
    // 5.1, 5.2: fragmented ping and pong.
    for (case, opcode) in [("5.1", PING), ("5.2", PONG)] {
        let mut client = echo(&server).await;
        client.send(false, 0, opcode, b"fragment1").await;
        client.send(true, 0, CONT, b"fragment2").await;
        expect_failure(&mut client, case, 1002).await;
    }
    // 5.3-5.5: a text message in two fragments, at once, chopped, and slowly.
    for (case, chop) in [("5.3", None), ("5.4", Some(3)), ("5.5", Some(1))] {
        let mut client = echo(&server).await;
        for (fin, opcode, part) in [(false, TEXT, &b"fragment1"[..]), (true, CONT, b"fragment2")] {
            match chop {
                Some(n) => client.send_chopped(fin, 0, opcode, part, n).await,
                None => client.send(fin, 0, opcode, part).await,
            }
        }
        expect_frame(&mut client, case, TEXT, b"fragment1fragment2").await;
        close_normally(&mut client, case).await;
    }
    // 5.6-5.8: a ping between the fragments is answered first.
    for (case, chop) in [("5.6", None), ("5.7", Some(1)), ("5.8", Some(2))] {
        let mut client = echo(&server).await;
        for (fin, opcode, part) in [(false, TEXT, &b"fragment1"[..]), (true, PING, b"ping"), (true, CONT, b"fragment2")]
        {
            match chop {
                Some(n) => client.send_chopped(fin, 0, opcode, part, n).await,
                None => client.send(fin, 0, opcode, part).await,
            }
        }
        expect_frame(&mut client, case, PONG, b"ping").await;
        expect_frame(&mut client, case, TEXT, b"fragment1fragment2").await;
        close_normally(&mut client, case).await;
    }
    // 5.9-5.14: continuations with nothing to continue.
    for (case, first_fin) in [("5.9", true), ("5.12", false)] {
        let mut client = echo(&server).await;
        client.send(first_fin, 0, CONT, b"non-continuation payload").await;
        client.send(true, 0, TEXT, b"Hello, world!").await;
        expect_failure(&mut client, case, 1002).await;
    }
    // 5.15: two fragments make a message, then a continuation of nothing.
    let mut client = echo(&server).await;
    client.send(false, 0, TEXT, b"fragment1").await;
    client.send(true, 0, CONT, b"fragment2").await;
    client.send(false, 0, CONT, b"fragment3").await;
    client.send(true, 0, TEXT, b"fragment4").await;
    expect_frame(&mut client, "5.15", TEXT, b"fragment1fragment2").await;
    expect_failure(&mut client, "5.15", 1002).await;
    // 5.18: a new text frame inside a fragmented message.
    let mut client = echo(&server).await;
    client.send(false, 0, TEXT, b"fragment1").await;
    client.send(true, 0, TEXT, b"fragment2").await;
    expect_failure(&mut client, "5.18", 1002).await;
    // 5.19, 5.20: fragments interleaved with pings, sent with pauses.
    let mut client = echo(&server).await;
    for (i, (fin, opcode)) in
        [(false, TEXT), (false, CONT), (false, CONT), (false, CONT), (true, CONT)].into_iter().enumerate()
    {
        client.send(fin, 0, opcode, format!("fragment{}", i + 1).as_bytes()).await;
        if i == 1 || i == 3 {
            client.send(true, 0, PING, format!("pongme {}!", i / 2 + 1).as_bytes()).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    expect_frame(&mut client, "5.19", PONG, b"pongme 1!").await;
    expect_frame(&mut client, "5.19", PONG, b"pongme 2!").await;
    expect_frame(&mut client, "5.19", TEXT, b"fragment1fragment2fragment3fragment4fragment5").await;
    close_normally(&mut client, "5.19").await;
}

/// Valid UTF-8 from Autobahn 6.2-6.3 and Markus Kuhn's test file.
const VALID_UTF8: &[&[u8]] = &[
    b"",
    "Hello-µ@ßöäüàá-UTF-8!!".as_bytes(),
    "κόσμε".as_bytes(),
    &[0x00],
    &[0xc2, 0x80],
    &[0xe0, 0xa0, 0x80],
    &[0xf0, 0x90, 0x80, 0x80],
    &[0x7f],
    &[0xdf, 0xbf],
    &[0xef, 0xbf, 0xbf],
    &[0xf4, 0x8f, 0xbf, 0xbf],
    &[0xed, 0x9f, 0xbf],
    &[0xee, 0x80, 0x80],
    &[0xef, 0xbf, 0xbd],
];

/// Invalid UTF-8 from Autobahn 6.3-6.21.
const INVALID_UTF8: &[&[u8]] = &[
    &[
        0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80, 0x65, 0x64, 0x69, 0x74,
        0x65, 0x64,
    ],
    &[0xf8, 0x88, 0x80, 0x80, 0x80],
    &[0xfc, 0x84, 0x80, 0x80, 0x80, 0x80],
    &[0xf4, 0x90, 0x80, 0x80],
    &[0x80],
    &[0xbf],
    &[0x80, 0xbf, 0x80],
    &[0xc0, 0x20],
    &[0xe0, 0x80],
    &[0xf0, 0x80, 0x80],
    &[0xfe],
    &[0xff],
    &[0xfe, 0xfe, 0xff, 0xff],
    &[0xc0, 0xaf],
    &[0xe0, 0x80, 0xaf],
    &[0xf0, 0x80, 0x80, 0xaf],
    &[0xc1, 0xbf],
    &[0xed, 0xa0, 0x80],
    &[0xed, 0xbf, 0xbf],
    &[0xed, 0xa0, 0x80, 0xed, 0xb0, 0x80],
    &[0xce, 0xba, 0xe1, 0xbd],
];

#[tokio::test]
async fn case_6_utf8_handling() {
    let server = ServeProcess::start(&[]);
    for (i, text) in VALID_UTF8.iter().enumerate() {
        let case = format!("6.valid.{i}");
        let mut client = echo(&server).await;
        client.send(true, 0, TEXT, text).await;
        expect_frame(&mut client, &case, TEXT, text).await;
        // The same text split into one-byte fragments.
        if !text.is_empty() {
            for (j, byte) in text.iter().enumerate() {
                let opcode = if j == 0 { TEXT } else { CONT };
                client.send(j + 1 == text.len(), 0, opcode, &[*byte]).await;
            }
            expect_frame(&mut client, &case, TEXT, text).await;
        }
        close_normally(&mut client, &case).await;
    }
    for (i, text) in INVALID_UTF8.iter().enumerate() {
        let case = format!("6.invalid.{i}");
        let mut client = echo(&server).await;
        client.send(true, 0, TEXT, text).await;
        expect_failure(&mut client, &case, 1007).await;
        // One-byte fragments.
        let mut client = echo(&server).await;
        for (j, byte) in text.iter().enumerate() {
            let opcode = if j == 0 { TEXT } else { CONT };
            client.send(j + 1 == text.len(), 0, opcode, &[*byte]).await;
        }
        expect_failure(&mut client, &case, 1007).await;
    }
    // 6.4.1/6.4.2: fail fast: the connection fails on the fragment with the bad byte, before the rest.
    let mut client = echo(&server).await;
    client.send(false, 0, TEXT, "κόσμε".as_bytes()).await;
    client.send(false, 0, CONT, &[0xf4, 0x90, 0x80, 0x80]).await;
    expect_failure(&mut client, "6.4.1", 1007).await;
    // 6.4.3/6.4.4: fail fast inside one frame whose payload arrives in pieces.
    let mut client = echo(&server).await;
    let mut payload = "κόσμε".as_bytes().to_vec();
    payload.extend_from_slice(&[0xf4, 0x90, 0x80, 0x80]);
    payload.extend_from_slice(b"edited");
    let frame = RawClient::encode(true, 0, TEXT, &payload);
    client.send_raw(&frame[..frame.len() - 6]).await;
    expect_failure(&mut client, "6.4.3", 1007).await;
}

#[tokio::test]
async fn case_7_closing_handshake() {
    let server = ServeProcess::start(&[]);
    // 7.1.1: echo, then a clean close.
    let mut client = echo(&server).await;
    client.send(true, 0, TEXT, b"Hello World!").await;
    expect_frame(&mut client, "7.1.1", TEXT, b"Hello World!").await;
    close_normally(&mut client, "7.1.1").await;
    // 7.1.2-7.1.4: a second close, a ping, a text after the close are ignored.
    for (case, opcode, payload) in [
        ("7.1.2", CLOSE, 1000u16.to_be_bytes().to_vec()),
        ("7.1.3", PING, b"".to_vec()),
        ("7.1.4", TEXT, b"after".to_vec()),
    ] {
        let mut client = echo(&server).await;
        client.close(1000).await;
        client.send(true, 0, opcode, &payload).await;
        expect_failure(&mut client, case, 1000).await;
    }
    // 7.1.5: an unfinished fragmented message, then a close.
    let mut client = echo(&server).await;
    client.send(false, 0, TEXT, b"fragment1").await;
    client.close(1000).await;
    client.send(true, 0, CONT, b"fragment2").await;
    expect_failure(&mut client, "7.1.5", 1000).await;
    // 7.1.6: a large message, a ping, and a close: the echo may be cut off, the close must come.
    let mut client = echo(&server).await;
    client.send(true, 0, TEXT, &vec![b'B'; 256 * 1024]).await;
    client.send(true, 0, PING, b"").await;
    client.close(1000).await;
    assert_eq!(client.expect_close().await, 1000, "7.1.6");
    // 7.3.1: an empty close is answered with an empty close.
    let mut client = echo(&server).await;
    client.send(true, 0, CLOSE, b"").await;
    expect_failure(&mut client, "7.3.1", 1005).await;
    // 7.3.2: a one-byte close payload.
    let mut client = echo(&server).await;
    client.send(true, 0, CLOSE, b"\x03").await;
    expect_failure(&mut client, "7.3.2", 1002).await;
    // 7.3.3-7.3.5: code only, code and reason, a 123-byte reason.
    for (case, reason) in [("7.3.3", String::new()), ("7.3.4", "Hello World!".to_string()), ("7.3.5", "*".repeat(123))]
    {
        let mut client = echo(&server).await;
        let mut payload = 1000u16.to_be_bytes().to_vec();
        payload.extend_from_slice(reason.as_bytes());
        client.send(true, 0, CLOSE, &payload).await;
        expect_failure(&mut client, case, 1000).await;
    }
    // 7.3.6: a 124-byte reason makes the close frame 126 bytes long.
    let mut client = echo(&server).await;
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(&[b'*'; 124]);
    client.send(true, 0, CLOSE, &payload).await;
    expect_failure(&mut client, "7.3.6", 1002).await;
    // 7.5.1: a reason that is not UTF-8.
    let mut client = echo(&server).await;
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(INVALID_UTF8[0]);
    client.send(true, 0, CLOSE, &payload).await;
    expect_failure(&mut client, "7.5.1", 1007).await;
    // 7.7.x: valid codes are echoed.
    for code in [1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999] {
        let mut client = echo(&server).await;
        client.close(code).await;
        expect_failure(&mut client, &format!("7.7 ({code})"), code).await;
    }
    // 7.9.x and 7.13.x: invalid codes are a protocol error.
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535] {
        let mut client = echo(&server).await;
        client.close(code).await;
        expect_failure(&mut client, &format!("7.9 ({code})"), 1002).await;
    }
}

#[tokio::test]
async fn case_9_large_messages_up_to_16_mib() {
    let server = ServeProcess::start(&[]);
    let mut client = echo(&server).await;
    for len in [64 * 1024, 256 * 1024, 1 << 20, 4 << 20, 16 << 20] {
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        client.send(true, 0, BINARY, &payload).await;
        expect_frame(&mut client, &format!("9.2 ({len} bytes)"), BINARY, &payload).await;
    }
    // 9.x with fragments: 4 MiB in 64 KiB fragments.
    let payload = vec![b'x'; 4 << 20];
    for (i, chunk) in payload.chunks(64 * 1024).enumerate() {
        let last = (i + 1) * 64 * 1024 >= payload.len();
        client.send(last, 0, if i == 0 { TEXT } else { CONT }, chunk).await;
    }
    expect_frame(&mut client, "9.3", TEXT, &payload).await;
    close_normally(&mut client, "9").await;
    // Over the 16 MiB limit: 1009, announced by the header alone.
    let mut client = echo(&server).await;
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&((16u64 << 20) + 1).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    client.send_raw(&header).await;
    expect_failure(&mut client, "limit", 1009).await;
}

#[tokio::test]
async fn case_12_13_permessage_deflate() {
    use flate2::{Compress, Compression, FlushCompress};
    let server = ServeProcess::start(&[]);
    for (case, offer) in [
        ("13.1", "permessage-deflate"),
        ("13.2", "permessage-deflate; client_no_context_takeover; server_no_context_takeover"),
        ("13.3", "permessage-deflate; client_max_window_bits=9; server_max_window_bits=9"),
        ("13.4", "permessage-deflate; client_max_window_bits=15; server_max_window_bits=15"),
    ] {
        let header = format!("Sec-WebSocket-Extensions: {offer}");
        let mut client = RawClient::connect(server.addr, "/echo", &[&header]).await;
        assert!(
            client.response_head.to_ascii_lowercase().contains("sec-websocket-extensions: permessage-deflate"),
            "{case}"
        );
        let server_resets = client.response_head.contains("server_no_context_takeover");
        let mut compressor = Compress::new_with_window_bits(Compression::new(6), false, 9);
        // The server's messages form one DEFLATE stream unless it resets its context per message.
        let mut decompressor = flate2::Decompress::new_with_window_bits(false, 15);
        for text in ["Hello, compression!", &"abcdefgh".repeat(1000), "Hello, compression!"] {
            let mut compressed = Vec::with_capacity(text.len() + 64);
            compressor.compress_vec(text.as_bytes(), &mut compressed, FlushCompress::Sync).expect("compress");
            compressed.truncate(compressed.len() - 4);
            client.send(true, 0b100, TEXT, &compressed).await;
            let frame = client.recv().await.expect("echo");
            let inflated = if frame.rsv & 0b100 != 0 {
                let mut input = frame.payload.clone();
                input.extend_from_slice(&[0, 0, 0xff, 0xff]);
                let mut inflated = Vec::with_capacity(text.len() + 64);
                decompressor.decompress_vec(&input, &mut inflated, flate2::FlushDecompress::Sync).expect("inflate");
                if server_resets {
                    decompressor.reset(false);
                }
                inflated
            } else {
                frame.payload.clone()
            };
            assert_eq!(inflated, text.as_bytes(), "{case}");
        }
        close_normally(&mut client, case).await;
    }
    // A compressed frame on a connection that did not negotiate compression.
    let mut client = echo(&server).await;
    client.send(true, 0b100, TEXT, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]).await;
    expect_failure(&mut client, "rsv1 without deflate", 1002).await;
    // Corrupt DEFLATE data.
    let mut client = RawClient::connect(server.addr, "/echo", &["Sec-WebSocket-Extensions: permessage-deflate"]).await;
    client.send(true, 0b100, TEXT, &[0xff, 0xff, 0xff, 0xff, 0xff]).await;
    expect_failure(&mut client, "corrupt deflate", 1007).await;
    // A zip bomb: 32 MiB of zeros in a few KiB.
    let mut client = RawClient::connect(server.addr, "/echo", &["Sec-WebSocket-Extensions: permessage-deflate"]).await;
    let mut bomb = Vec::with_capacity(64 * 1024);
    let mut compressor = Compress::new(Compression::best(), false);
    compressor.compress_vec(&vec![0u8; 32 << 20], &mut bomb, FlushCompress::Sync).expect("compress");
    bomb.truncate(bomb.len() - 4);
    assert!(bomb.len() < 64 * 1024);
    client.send(true, 0b100, BINARY, &bomb).await;
    expect_failure(&mut client, "zip bomb", 1009).await;
}

#[tokio::test]
async fn handshake_errors_get_the_right_status() {
    let server = ServeProcess::start(&[]);
    let addr = server.addr;
    let cases: Vec<(&str, String, u16)> = vec![
        ("plain GET", format!("GET /echo HTTP/1.1\r\nHost: {addr}\r\n\r\n"), 426),
        (
            "POST",
            format!("POST /echo HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n", support::KEY),
            405,
        ),
        (
            "version 8",
            format!("GET /echo HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 8\r\n\r\n", support::KEY),
            426,
        ),
        (
            "no key",
            format!("GET /echo HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n"),
            400,
        ),
        (
            "short key",
            format!("GET /echo HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n\r\n"),
            400,
        ),
        (
            "no Connection: upgrade",
            format!("GET /echo HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: keep-alive\r\nSec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n\r\n", support::KEY),
            400,
        ),
        (
            "unknown path",
            format!("GET /nowhere HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n\r\n", support::KEY),
            404,
        ),
        ("garbage", "NOT HTTP AT ALL\r\n\r\n".to_string(), 400),
    ];
    for (case, request, status) in cases {
        let (mut client, got) = RawClient::raw_request(addr, request.as_bytes()).await;
        assert_eq!(got, status, "{case}: {}", client.response_head);
        let head = client.response_head.to_ascii_lowercase();
        if status == 426 {
            assert!(head.contains("sec-websocket-version: 13"), "{case}: {head}");
        }
        if case != "garbage" && case != "unknown path" {
            let body = client.read_body().await;
            assert!(!body.trim().is_empty(), "{case}: the body should say what is wrong");
        }
    }
    // Token lists and case-insensitive header values are accepted.
    let (client, status) = RawClient::raw_request(
        addr,
        format!("GET /echo HTTP/1.1\r\nHost: {addr}\r\nUpgrade: WebSocket\r\nConnection: keep-alive, UPGRADE\r\nSec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n\r\n", support::KEY).as_bytes(),
    )
    .await;
    assert_eq!(status, 101, "{}", client.response_head);
    assert!(client.response_head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "accept key: {}", client.response_head);
}

#[tokio::test]
async fn sigterm_closes_peers_with_1001_and_exits_0() {
    let server = ServeProcess::start(&[]);
    let mut client = echo(&server).await;
    client.send(true, 0, TEXT, b"still here").await;
    expect_frame(&mut client, "shutdown", TEXT, b"still here").await;
    let addr = server.addr;
    let waiter = tokio::task::spawn_blocking(move || server.terminate());
    let code = client.expect_close().await;
    assert_eq!(code, 1001);
    client.close(1001).await;
    client.expect_eof().await;
    let status = waiter.await.expect("join");
    assert!(status.success(), "exit status {status}");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "the port should be closed");
}
