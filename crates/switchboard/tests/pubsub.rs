//! Topics on one node: subscriptions, encode-once fan-out to many subscribers, slow consumers, history.

mod support;

use std::time::Duration;

use support::TestClient;
use switchboard::wire::{Event, MessageKind};
use switchboard::{
    define_hooks, BoxError, Message, Peer, Position, PubSubConfig, Server, SlowConsumerPolicy, Switchboard,
};

/// Each peer subscribes to the topic named by `?topic=`; a text message `pub:T:TEXT` publishes TEXT to
/// T (excluding the sender), `all:T:TEXT` publishes including the sender, `unsub:T` unsubscribes, and
/// `topics` answers with the peer's topics.
fn hooks() -> switchboard::HookSet {
    define_hooks()
        .open(|peer: Peer| async move {
            if let Some(topic) = peer.request().query_param("topic") {
                peer.subscribe(&topic);
            }
            peer.send_text("ready")
        })
        .message(|peer: Peer, message: Message| async move {
            let text = message.text()?.to_owned();
            let mut parts = text.splitn(3, ':');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("pub"), Some(topic), Some(body)) => {
                    peer.publish(topic, body);
                }
                (Some("all"), Some(topic), Some(body)) => {
                    peer.hub().publish(topic, body);
                }
                (Some("unsub"), Some(topic), None) => {
                    peer.unsubscribe(topic);
                    peer.send_text("unsubscribed")?;
                }
                (Some("topics"), None, None) => peer.send_json(&peer.topics())?,
                _ => {}
            }
            Ok::<_, BoxError>(())
        })
}

async fn serve(config: PubSubConfig) -> Server {
    Switchboard::new().pubsub(config).ws("/ws", hooks()).bind("127.0.0.1:0").await.expect("bind")
}

async fn join(server: &Server, topic: &str) -> TestClient {
    let mut client = TestClient::connect(server.local_addr(), &format!("/ws?topic={topic}")).await;
    assert_eq!(client.recv_text().await, "ready");
    client
}

#[tokio::test]
async fn publish_reaches_every_subscriber_but_the_sender_and_subscriptions_end_with_the_peer() {
    let server = serve(PubSubConfig::default()).await;
    let mut a = join(&server, "room").await;
    let mut b = join(&server, "room").await;
    let mut other = join(&server, "elsewhere").await;
    a.send_text("pub:room:hello").await;
    assert_eq!(b.recv_text().await, "hello");
    a.send_text("all:room:to everyone").await;
    assert_eq!(a.recv_text().await, "to everyone");
    assert_eq!(b.recv_text().await, "to everyone");
    a.send_text("topics").await;
    assert_eq!(a.recv_text().await, r#"["room"]"#);
    assert_eq!(server.hub().topics(), vec![("elsewhere".to_string(), 1), ("room".to_string(), 2)]);
    b.send_text("unsub:room").await;
    assert_eq!(b.recv_text().await, "unsubscribed");
    // Publishing from outside any hook.
    assert_eq!(server.hub().publish("room", "from the hub"), 1);
    assert_eq!(a.recv_text().await, "from the hub");
    other.send_text("pub:elsewhere:nobody else").await;
    a.close(1000, "").await;
    a.expect_eof().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !server.hub().subscribers("room").is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the subscription should end with the peer");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(server.hub().topics(), vec![("elsewhere".to_string(), 1)]);
    // b is no longer subscribed: the only thing it gets is its own echo of nothing.
    b.send_text("topics").await;
    assert_eq!(b.recv_text().await, "[]");
}

#[tokio::test]
async fn a_thousand_subscribers_each_get_every_publication() {
    let server = serve(PubSubConfig::default()).await;
    let mut clients = Vec::new();
    for _ in 0..1000 {
        clients.push(join(&server, "fanout").await);
    }
    assert_eq!(server.hub().subscribers("fanout").len(), 1000);
    for i in 0..20 {
        assert_eq!(server.hub().publish("fanout", Message::from_binary(vec![i as u8; 100 + i])), 1000);
    }
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            tokio::spawn(async move {
                for i in 0..20usize {
                    match client.next_event().await {
                        Some(Event::Message(MessageKind::Binary, data)) => {
                            assert_eq!(&data[..], &vec![i as u8; 100 + i][..], "publication {i} in order");
                        }
                        other => panic!("expected publication {i}, got {other:?}"),
                    }
                }
            })
        })
        .collect();
    for reader in readers {
        reader.await.expect("every subscriber got every publication");
    }
    let stats = server.hub().stats();
    assert_eq!((stats.published, stats.delivered, stats.dropped, stats.slow_closed), (20, 20_000, 0, 0));
}

#[tokio::test]
async fn a_stalled_subscriber_is_closed_without_slowing_the_others() {
    for policy in [SlowConsumerPolicy::Close, SlowConsumerPolicy::Drop] {
        let config =
            PubSubConfig { max_subscriber_queue: 256 * 1024, slow_consumer: policy, ..PubSubConfig::default() };
        let server = serve(config).await;
        let stalled = join(&server, "feed").await; // never reads again
        let mut healthy = join(&server, "feed").await;
        let payload = vec![7u8; 32 * 1024];
        let started = std::time::Instant::now();
        let mut received = 0usize;
        for i in 0..400 {
            server.hub().publish("feed", Message::from_binary(payload.clone()));
            // The healthy subscriber keeps up.
            match healthy.next_event().await {
                Some(Event::Message(MessageKind::Binary, data)) => assert_eq!(data.len(), payload.len(), "{i}"),
                other => panic!("{policy:?}: healthy subscriber got {other:?}"),
            }
            received += 1;
        }
        assert_eq!(received, 400);
        assert!(started.elapsed() < Duration::from_secs(20), "{policy:?}: publishing was slowed down");
        let stats = server.hub().stats();
        match policy {
            SlowConsumerPolicy::Close => assert_eq!(stats.slow_closed, 1, "{stats:?}"),
            SlowConsumerPolicy::Drop => assert!(stats.dropped > 0, "{stats:?}"),
        }
        if policy == SlowConsumerPolicy::Close {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while server.hub().subscribers("feed").len() > 1 {
                assert!(tokio::time::Instant::now() < deadline, "the stalled subscriber should be gone");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        drop(stalled);
    }
}

#[tokio::test]
async fn subscribe_since_replays_what_was_missed_or_says_it_cannot() {
    let config = PubSubConfig {
        history: Some(switchboard::pubsub::HistoryConfig {
            size: 5,
            ttl: Duration::from_secs(60),
            ..Default::default()
        }),
        ..PubSubConfig::default()
    };
    let hooks = define_hooks()
        .open(|peer: Peer| async move {
            let since: Position = serde_json::from_str(&peer.request().query_param("since").unwrap_or_default())?;
            let recovery = peer.subscribe_since("news", &since).await;
            peer.send_json(&serde_json::json!({"recovered": recovery.recovered, "replayed": recovery.replayed, "offset": recovery.position.offset}))?;
            Ok::<_, BoxError>(())
        });
    let server = Switchboard::new().pubsub(config).ws("/ws", hooks).bind("127.0.0.1:0").await.expect("bind");
    let hub = server.hub();
    let mut positions = Vec::new();
    for i in 1..=8 {
        positions.push(hub.publish_with_position("news", format!("n{i}")).await.expect("history is on"));
    }
    let addr = server.local_addr();
    let connect = |since: &Position| {
        let query = serde_json::to_string(since).expect("json");
        let escaped =
            query.replace('"', "%22").replace('{', "%7B").replace('}', "%7D").replace(':', "%3A").replace(',', "%2C");
        async move { TestClient::connect(addr, &format!("/ws?since={escaped}")).await }
    };
    // Missed n7 and n8: both are replayed, then live publications follow.
    let mut client = connect(&positions[5]).await;
    assert_eq!(client.recv_text().await, "n7");
    assert_eq!(client.recv_text().await, "n8");
    let summary: serde_json::Value = serde_json::from_str(&client.recv_text().await).expect("json");
    assert_eq!(summary, serde_json::json!({"recovered": true, "replayed": 2, "offset": 8}));
    hub.publish("news", "n9");
    assert_eq!(client.recv_text().await, "n9");
    // Missed more than the history holds: nothing replayed, recovered false.
    let mut client = connect(&positions[0]).await;
    let summary: serde_json::Value = serde_json::from_str(&client.recv_text().await).expect("json");
    assert_eq!(summary["recovered"], false);
    // Another epoch (a restarted node): recovered false.
    let mut client = connect(&Position { epoch: "gone".into(), offset: 3 }).await;
    let summary: serde_json::Value = serde_json::from_str(&client.recv_text().await).expect("json");
    assert_eq!(summary["recovered"], false);
}

#[tokio::test]
async fn the_json_envelope_gives_subscribers_the_position_of_every_publication_and_replay() {
    let config = PubSubConfig {
        history: Some(switchboard::pubsub::HistoryConfig {
            size: 10,
            ttl: Duration::from_secs(60),
            ..Default::default()
        }),
        format: switchboard::pubsub::PublicationFormat::JsonEnvelope,
        ..PubSubConfig::default()
    };
    let hooks = define_hooks().open(|peer: Peer| async move {
        match peer.request().query_param("since") {
            Some(since) => {
                peer.subscribe_since("prices", &since.parse()?).await;
            }
            None => {
                peer.subscribe("prices");
            }
        }
        peer.send_text("ready")?;
        Ok::<_, BoxError>(())
    });
    let server = Switchboard::new().pubsub(config).ws("/ws", hooks).bind("127.0.0.1:0").await.expect("bind");
    let hub = server.hub();
    let mut live = TestClient::connect(server.local_addr(), "/ws").await;
    assert_eq!(live.recv_text().await, "ready");
    let first = hub.publish_with_position("prices", r#"{"eur":1.08}"#).await.expect("history is on");
    hub.publish("prices", "plain text");
    let received: serde_json::Value = serde_json::from_str(&live.recv_text().await).expect("json");
    assert_eq!(received, serde_json::json!({"topic": "prices", "position": first, "data": {"eur": 1.08}}));
    let received: serde_json::Value = serde_json::from_str(&live.recv_text().await).expect("json");
    assert_eq!(received["data"], "plain text");
    assert_eq!(received["position"]["offset"], first.offset + 1);
    // A client that only saw the first one gets the second replayed, with the same envelope.
    let mut back = TestClient::connect(server.local_addr(), &format!("/ws?since={first}")).await;
    let replayed: serde_json::Value = serde_json::from_str(&back.recv_text().await).expect("json");
    assert_eq!(replayed, received);
    assert_eq!(back.recv_text().await, "ready");
}

/// Subscribes through a raw socket offering permessage-deflate with `deflate`, and returns the socket
/// and the negotiated parameters once the hooks said "ready".
async fn deflate_subscriber(
    addr: std::net::SocketAddr,
    deflate: switchboard::wire::deflate::DeflateConfig,
) -> (tokio::net::TcpStream, switchboard::wire::Connection, bytes::BytesMut) {
    use switchboard::wire::handshake::{self, ClientRequest};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut io = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = ClientRequest {
        host: addr.to_string(),
        path: "/ws?topic=big".into(),
        protocols: vec![],
        deflate: Some(deflate),
        headers: vec![],
    };
    let key = handshake::generate_key(rand::random());
    io.write_all(&request.encode(&key)).await.expect("request");
    let mut buf = bytes::BytesMut::new();
    let (response, used) = loop {
        assert!(io.read_buf(&mut buf).await.expect("read") > 0, "closed during the handshake");
        if let Some(done) = handshake::parse_response(&buf, &key, &request).expect("valid response") {
            break done;
        }
    };
    bytes::Buf::advance(&mut buf, used);
    let config = switchboard::wire::Config { deflate: response.deflate, ..Default::default() };
    let mut conn = switchboard::wire::Connection::new(switchboard::wire::Role::Client, config, 1);
    loop {
        if let Some(Event::Message(_, data)) = conn.receive(&mut buf).expect("valid frames") {
            assert_eq!(&data[..], b"ready");
            return (io, conn, buf);
        }
        assert!(io.read_buf(&mut buf).await.expect("read") > 0);
    }
}

/// Reads exactly one whole frame's bytes (server frames are unmasked: 2-10 bytes of header).
async fn raw_frame(io: &mut tokio::net::TcpStream, buf: &mut bytes::BytesMut) -> bytes::BytesMut {
    use tokio::io::AsyncReadExt;
    loop {
        if buf.len() >= 2 {
            let (header, len) = match buf[1] & 0x7F {
                126 if buf.len() >= 4 => (4, u16::from_be_bytes([buf[2], buf[3]]) as usize),
                127 if buf.len() >= 10 => (10, u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes")) as usize),
                n if n < 126 => (2, n as usize),
                _ => (usize::MAX, 0),
            };
            if header != usize::MAX && buf.len() >= header + len {
                return buf.split_to(header + len);
            }
        }
        assert!(io.read_buf(buf).await.expect("read") > 0, "closed");
    }
}

#[tokio::test]
async fn publications_are_compressed_once_for_every_peer_without_server_context_takeover() {
    use switchboard::wire::deflate::DeflateConfig;
    let config = switchboard::WsConfig::default().compression(Some(DeflateConfig::default()));
    let server = Switchboard::new().config(config).ws("/ws", hooks()).bind("127.0.0.1:0").await.expect("bind");
    let no_takeover = DeflateConfig { server_no_context_takeover: true, ..DeflateConfig::default() };
    let (mut a, mut a_conn, mut a_buf) = deflate_subscriber(server.local_addr(), no_takeover).await;
    let (mut b, _, mut b_buf) = deflate_subscriber(server.local_addr(), no_takeover).await;
    let (mut c, mut c_conn, mut c_buf) = deflate_subscriber(server.local_addr(), DeflateConfig::default()).await;

    let text = "the same quote again and again; ".repeat(200);
    server.hub().publish("big", text.as_str());
    let frame_a = raw_frame(&mut a, &mut a_buf).await;
    let frame_b = raw_frame(&mut b, &mut b_buf).await;
    let frame_c = raw_frame(&mut c, &mut c_buf).await;
    // FIN + RSV1 + text: compressed, far smaller, and the very same bytes for both.
    assert_eq!(frame_a[0], 0xC1);
    assert!(frame_a.len() < text.len() / 10, "{} bytes for {}", frame_a.len(), text.len());
    assert_eq!(frame_a, frame_b);
    // A peer that keeps its context gets the publication uncompressed (always valid).
    assert_eq!(frame_c[0], 0x81);
    for (conn, mut frame) in [(&mut a_conn, frame_a), (&mut c_conn, frame_c)] {
        match conn.receive(&mut frame).expect("valid frame") {
            Some(Event::Message(_, data)) => assert_eq!(&data[..], text.as_bytes()),
            other => panic!("expected the publication, got {other:?}"),
        }
    }
    // Short publications are not worth compressing.
    server.hub().publish("big", "tiny");
    assert_eq!(raw_frame(&mut a, &mut a_buf).await[..], [0x81, 4, b't', b'i', b'n', b'y']);
}
