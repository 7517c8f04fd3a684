//! Hostile clients against the real `switchboard serve`: each attack gets its named outcome, and the
//! server keeps serving everyone else. Every wait is bounded; none measures speed.

mod support;

use std::time::Duration;

use support::{RawClient, ServeProcess};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn serve(name: &str, extra: &[&str]) -> ServeProcess {
    let data = support::data_dir(name);
    let mut args = vec!["--data", data.as_str()];
    args.extend_from_slice(extra);
    ServeProcess::start(&args)
}

/// A client that can still echo: the server is serving.
async fn still_serving(server: &ServeProcess) {
    let mut client = RawClient::connect(server.addr, "/echo", &[]).await;
    client.send(true, 0, 1, b"still there?").await;
    let echo = client.recv().await.expect("an echo");
    assert_eq!(echo.payload, b"still there?");
}

/// Sends `request` (tolerating a server that closes before it is all written) and reads the answer.
async fn answer_to(server: &ServeProcess, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

fn status_of(answer: &str) -> u16 {
    answer.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[tokio::test]
async fn a_thousand_half_open_handshakes_do_not_stop_a_new_client_and_end_at_their_deadline() {
    let server = serve("attack-slowloris", &["--request-head-timeout", "2"]);
    let mut half_open = Vec::new();
    for _ in 0..1000 {
        let mut stream = TcpStream::connect(server.addr).await.expect("connect");
        stream.write_all(b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: web").await.expect("write");
        half_open.push(stream);
    }
    tokio::time::timeout(Duration::from_secs(5), still_serving(&server)).await.expect("a new client is served at once");
    let all_closed = async {
        for stream in &mut half_open {
            let mut rest = Vec::new();
            let _ = stream.read_to_end(&mut rest).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(15), all_closed)
        .await
        .expect("the server closes every half-open handshake");
}

#[tokio::test]
async fn connections_past_the_caps_are_refused_with_503_and_429_and_retry_after() {
    let per_ip = serve("attack-per-ip", &["--limit-loopback", "--max-connections-per-ip", "3"]);
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(RawClient::connect(per_ip.addr, "/echo", &[]).await);
    }
    let refused = answer_to(&per_ip, b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status_of(&refused), 429, "{refused}");
    assert!(refused.contains("Retry-After: 5\r\n") && refused.contains("too many connections from your address"));
    drop(held.pop());
    let mut freed = None;
    for _ in 0..100 {
        let (client, status) = RawClient::handshake(per_ip.addr, "/echo", &[]).await;
        if status == 101 {
            freed = Some(client);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(freed.is_some(), "a closed connection frees its place");

    let full = serve("attack-full", &["--max-connections", "2"]);
    let _one = RawClient::connect(full.addr, "/echo", &[]).await;
    let _two = RawClient::connect(full.addr, "/echo", &[]).await;
    let refused = answer_to(&full, b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status_of(&refused), 503, "{refused}");
    assert!(refused.contains("Retry-After: 5\r\n"), "{refused}");

    let fast = serve("attack-rate", &["--limit-loopback", "--connections-per-second-per-ip", "3"]);
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(status_of(&answer_to(&fast, b"GET /api HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await));
    }
    assert_eq!(&statuses[..3], [200, 200, 200], "{statuses:?}");
    assert!(statuses[3..].contains(&429), "{statuses:?}");
    let refused = answer_to(&fast, b"GET /api HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(refused.contains("too many new connections from your address"), "{refused}");
}

#[tokio::test]
async fn a_64_kib_header_and_10_000_headers_get_431() {
    let server = serve("attack-heads", &[]);
    let big = format!("GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(64 << 10));
    let answer = answer_to(&server, big.as_bytes()).await;
    assert_eq!(status_of(&answer), 431, "{answer}");
    let mut many = String::from("GET /echo HTTP/1.1\r\nHost: x\r\n");
    for n in 0..10_000 {
        many.push_str(&format!("X-{n}: y\r\n"));
    }
    many.push_str("\r\n");
    let answer = answer_to(&server, many.as_bytes()).await;
    assert_eq!(status_of(&answer), 431, "{answer}");
    still_serving(&server).await;
}

#[tokio::test]
async fn a_frame_declaring_2_63_bytes_and_a_deflate_bomb_get_1009() {
    let server = serve("attack-sizes", &[]);
    let mut huge = RawClient::connect(server.addr, "/echo", &[]).await;
    huge.send_raw(&[0x82, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4]).await;
    assert_eq!(huge.expect_close().await, 1009);

    let mut bomb = RawClient::connect(server.addr, "/echo", &["Sec-WebSocket-Extensions: permessage-deflate"]).await;
    assert!(bomb.response_head.contains("permessage-deflate"), "{}", bomb.response_head);
    let mut deflate = flate2::Compress::new(flate2::Compression::best(), false);
    let zeros = vec![0u8; 17 << 20];
    let mut compressed = Vec::with_capacity(64 << 10);
    deflate.compress_vec(&zeros, &mut compressed, flate2::FlushCompress::Sync).expect("deflate");
    assert!(compressed.len() < 64 << 10, "17 MiB of zeros compress to {} bytes", compressed.len());
    compressed.truncate(compressed.len() - 4); // the 00 00 ff ff a sync flush ends with
    bomb.send(true, 4, 2, &compressed).await;
    assert_eq!(bomb.expect_close().await, 1009);
    still_serving(&server).await;
}

#[tokio::test]
async fn a_fragment_flood_and_a_ping_flood_are_closed() {
    let server = serve("attack-floods", &[]);
    let mut fragments = RawClient::connect(server.addr, "/echo", &[]).await;
    let mut batch = RawClient::encode(false, 0, 1, b"a");
    for n in 0..(1usize << 17) {
        batch.extend(RawClient::encode(false, 0, 0, b"a"));
        if n % 4096 == 0 {
            fragments.send_raw(&batch).await;
            batch.clear();
        }
    }
    fragments.send_raw(&batch).await;
    let close = loop {
        let frame = fragments.recv().await.expect("a close frame");
        if frame.opcode == 8 {
            break frame;
        }
    };
    assert_eq!(close.close_code(), 1009);
    assert!(String::from_utf8_lossy(&close.payload[2..]).contains("more than 131072 fragments"));

    let mut pings = RawClient::connect(server.addr, "/echo", &[]).await;
    let mut flood = Vec::new();
    for _ in 0..500 {
        flood.extend(RawClient::encode(true, 0, 9, b"ping"));
    }
    pings.send_raw(&flood).await;
    let close = loop {
        let frame = pings.recv().await.expect("a close frame");
        if frame.opcode == 8 {
            break frame;
        }
    };
    assert_eq!(close.close_code(), 1008);
    assert_eq!(String::from_utf8_lossy(&close.payload[2..]), "ping flood (50 pings/s allowed)");
    still_serving(&server).await;
}

#[tokio::test]
async fn a_peer_over_its_message_rate_is_closed_or_its_messages_are_dropped_and_counted() {
    let closing = serve("attack-rate-close", &["--max-messages-per-second", "10"]);
    let mut fast = RawClient::connect(closing.addr, "/echo", &[]).await;
    let mut burst = Vec::new();
    for _ in 0..50 {
        burst.extend(RawClient::encode(true, 0, 1, b"x"));
    }
    fast.send_raw(&burst).await;
    let mut echoes = 0;
    let close = loop {
        let frame = fast.recv().await.expect("frames, then a close");
        match frame.opcode {
            8 => break frame,
            _ => echoes += 1,
        }
    };
    assert_eq!(close.close_code(), 1008);
    assert_eq!(String::from_utf8_lossy(&close.payload[2..]), "message rate limit exceeded (10/s)");
    assert!(echoes <= 10, "{echoes} echoes");
    still_serving(&closing).await;

    let dropping = serve("attack-rate-drop", &["--max-messages-per-second", "10", "--rate-limit-policy", "drop"]);
    let mut fast = RawClient::connect(dropping.addr, "/echo", &[]).await;
    fast.send_raw(&burst).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    fast.send(true, 0, 1, b"later").await;
    let mut got = Vec::new();
    while got.last().map(Vec::as_slice) != Some(b"later".as_slice()) {
        got.push(fast.recv().await.expect("echoes").payload);
    }
    assert!(got.len() <= 12, "most of the burst was dropped: {} echoes", got.len());
    let (_, _, metrics) = RawClient::http(dropping.addr, "GET", "/api/endpoints", &[], "").await;
    let endpoints: serde_json::Value = serde_json::from_str(&metrics).expect("JSON");
    let echo = endpoints["routes"].as_array().and_then(|r| r.iter().find(|e| e["path"] == "/echo")).cloned();
    assert!(echo.is_some_and(|e| e["rate_limited"].as_u64() >= Some(38)), "{endpoints}");
}

#[tokio::test]
async fn origins_outside_the_allowlist_get_403() {
    let server =
        serve("attack-origin", &["--allowed-origin", "https://app.example.com", "--allowed-origin", "*.example.org"]);
    let (_, status) = RawClient::handshake(server.addr, "/echo", &["Origin: https://evil.example"]).await;
    assert_eq!(status, 403);
    for allowed in ["https://app.example.com", "https://a.example.org"] {
        let (_, status) = RawClient::handshake(server.addr, "/echo", &[&format!("Origin: {allowed}")]).await;
        assert_eq!(status, 101, "{allowed}");
    }
    let (_, status) = RawClient::handshake(server.addr, "/echo", &[]).await;
    assert_eq!(status, 101, "clients that are not browsers send no Origin");
    let own = format!("Origin: http://{}", server.addr);
    let (_, status) = RawClient::handshake(server.addr, "/echo", &[&own]).await;
    assert_eq!(status, 101, "the server's own pages");

    let strict = serve("attack-origin-required", &["--require-origin"]);
    let (mut refused, status) = RawClient::handshake(strict.addr, "/echo", &[]).await;
    assert_eq!(status, 403);
    assert_eq!(refused.read_body().await, "this endpoint requires an Origin header\n");
}
