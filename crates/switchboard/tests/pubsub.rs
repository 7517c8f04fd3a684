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
        let config = PubSubConfig { max_subscriber_queue: 256 * 1024, slow_consumer: policy, history: None };
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
        history: Some(switchboard::pubsub::HistoryConfig { size: 5, ttl: Duration::from_secs(60) }),
        ..PubSubConfig::default()
    };
    let hooks = define_hooks()
        .open(|peer: Peer| async move {
            let since: Position = serde_json::from_str(&peer.request().query_param("since").unwrap_or_default())?;
            let recovery = peer.subscribe_since("news", &since);
            peer.send_json(&serde_json::json!({"recovered": recovery.recovered, "replayed": recovery.replayed, "offset": recovery.position.offset}))?;
            Ok::<_, BoxError>(())
        });
    let server = Switchboard::new().pubsub(config).ws("/ws", hooks).bind("127.0.0.1:0").await.expect("bind");
    let hub = server.hub();
    let mut positions = Vec::new();
    for i in 1..=8 {
        positions.push(hub.publish_with_position("news", format!("n{i}")).1.expect("history is on"));
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
