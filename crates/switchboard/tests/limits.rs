//! Bounded under hostile load: send queues that count what entries cost, slow consumers closed once
//! with a close frame that reaches them, hooks that do not stall their peer's writes, catch-ups of any
//! size, history that is freed and bounded, and incomplete messages within a budget and a deadline.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::TestClient;
use switchboard::pubsub::{HistoryConfig, PubSubConfig};
use switchboard::wire::{encode_raw_frame, Event, MessageKind};
use switchboard::{define_hooks, Error, Message, Peer, Position, Server, Switchboard, WsConfig};

const SUBSCRIBER_LIMIT: usize = 64 << 10;

/// Says when the subscriber of `blockable_subscriber` is blocked, and releases it. (Plain channels:
/// a tokio timer in the test could wait for the blocked worker.)
struct Blocker {
    blocked: std::sync::mpsc::Receiver<()>,
    release: std::sync::mpsc::Sender<()>,
}

/// `/sub` subscribes to "t" and answers "ready"; a text "block" blocks the connection's task (a
/// synchronous hook) until the test releases it, so nothing is written meanwhile. Errors reach `errors`.
async fn blockable_subscriber(errors: Arc<Mutex<Vec<String>>>) -> (Server, Blocker) {
    let (release, released) = std::sync::mpsc::channel::<()>();
    let released = Arc::new(Mutex::new(released));
    let (blocking, blocked) = std::sync::mpsc::channel::<()>();
    let blocking = Arc::new(Mutex::new(blocking));
    let hooks = define_hooks()
        .open(|peer: Peer| async move {
            peer.subscribe("t");
            peer.send_text("ready")
        })
        .message_sync(move |_peer: Peer, message: Message| {
            if message.text() == Ok("block") {
                let _ = blocking.lock().unwrap().send(());
                let _ = released.lock().unwrap().recv_timeout(Duration::from_secs(10));
            }
            Ok::<_, switchboard::BoxError>(())
        })
        .error(move |_peer: Peer, error: Error| {
            let errors = errors.clone();
            async move { errors.lock().unwrap().push(error.to_string()) }
        });
    let pubsub = PubSubConfig { max_subscriber_queue: SUBSCRIBER_LIMIT, ..PubSubConfig::default() };
    let server = Switchboard::new().pubsub(pubsub).ws("/sub", hooks).bind("127.0.0.1:0").await.expect("bind");
    (server, Blocker { blocked, release })
}

/// Blocks the subscriber's task, publishes `count` messages of `size` bytes to it, releases it, and
/// returns the close code the subscriber then receives (1006 for none).
async fn flood_blocked_subscriber(server: &Server, blocker: &Blocker, count: usize, size: usize) -> u16 {
    let mut client = TestClient::connect(server.local_addr(), "/sub").await;
    assert_eq!(client.recv_text().await, "ready");
    client.send_text("block").await;
    blocker.blocked.recv_timeout(Duration::from_secs(10)).expect("the subscriber's task blocks");
    let hub = server.hub();
    let payload = "x".repeat(size);
    for _ in 0..count {
        hub.publish("t", payload.as_str());
    }
    blocker.release.send(()).expect("release the subscriber");
    loop {
        match client.next_event().await {
            Some(Event::Close(frame)) => return frame.map_or(1005, |f| f.code.0),
            Some(_) => {}
            None => return 1006,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_publications_fill_a_subscriber_queue_like_any_other() {
    let (server, blocker) = blockable_subscriber(Arc::default()).await;
    // 100 000 empty publications cost 6.4 MB of queue entries: far past the 64 KiB limit.
    flood_blocked_subscriber(&server, &blocker, 100_000, 0).await;
    assert_eq!(server.hub().stats().slow_closed, 1, "the subscriber was not closed: empty messages cost nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_receives_its_1013_close_frame() {
    let (server, blocker) = blockable_subscriber(Arc::default()).await;
    assert_eq!(flood_blocked_subscriber(&server, &blocker, 1_000, 1_000).await, 1013);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_counted_and_reported_once_with_the_limit_that_applied() {
    let errors = Arc::new(Mutex::new(Vec::new()));
    let (server, blocker) = blockable_subscriber(errors.clone()).await;
    flood_blocked_subscriber(&server, &blocker, 5_000, 100).await;
    assert_eq!(server.hub().stats().slow_closed, 1);
    let errors = errors.lock().unwrap().clone();
    let slow: Vec<&String> = errors.iter().filter(|e| e.contains("slow consumer")).collect();
    assert_eq!(slow.len(), 1, "{errors:?}");
    assert!(slow[0].contains(&format!("limit {SUBSCRIBER_LIMIT}")), "{slow:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_async_hook_does_not_stall_its_peers_writes() {
    // "slow" makes the message hook await 1.5 s; every message's text is echoed after its hook.
    let hooks = define_hooks()
        .open(|peer: Peer| async move {
            peer.subscribe("feed");
            peer.send_text("ready")
        })
        .message(|peer: Peer, message: Message| async move {
            let text = message.text()?.to_owned();
            if text == "slow" {
                tokio::time::sleep(Duration::from_millis(1500)).await;
            }
            peer.send_text(format!("done {text}"))?;
            Ok::<_, switchboard::BoxError>(())
        });
    let pubsub = PubSubConfig { max_subscriber_queue: SUBSCRIBER_LIMIT, ..PubSubConfig::default() };
    let server = Switchboard::new().pubsub(pubsub).ws("/feed", hooks).bind("127.0.0.1:0").await.expect("bind");
    let mut client = TestClient::connect(server.local_addr(), "/feed").await;
    assert_eq!(client.recv_text().await, "ready");
    client.send_text("slow").await;
    client.send_text("a").await;
    client.send_text("b").await;
    // While the hook waits, 1.2 s of publications (about 3 MiB, 46 times the subscriber limit) flow
    // to a client that reads as fast as it can.
    let hub = server.hub();
    let publisher = tokio::spawn(async move {
        let chunk = "p".repeat(16 << 10);
        for _ in 0..200 {
            hub.publish("feed", chunk.as_str());
            tokio::time::sleep(Duration::from_millis(6)).await;
        }
    });
    let mut received = Vec::new();
    let mut publications = 0;
    while received.len() < 3 {
        match client.next_event().await {
            Some(Event::Message(MessageKind::Text, data)) if data.starts_with(b"done ") => {
                received.push(String::from_utf8_lossy(&data).into_owned());
            }
            Some(Event::Message(..)) => publications += 1,
            Some(Event::Close(frame)) => panic!("closed while a hook was pending: {frame:?}"),
            Some(_) => {}
            None => panic!("the connection dropped"),
        }
    }
    assert_eq!(received, ["done slow", "done a", "done b"], "one at a time, in order");
    assert!(publications > 100, "only {publications} publications arrived while the hook was pending");
    publisher.await.expect("publisher");
}

/// A subscriber of `?topic=` (default "room") that catches up with `&since=EPOCH:OFFSET`, then gets a
/// welcome saying whether it recovered and how many publications it replayed.
fn catch_up_hooks() -> switchboard::HookSet {
    define_hooks().open(|peer: Peer| async move {
        let topic = peer.request().query_param("topic").unwrap_or_else(|| "room".to_owned());
        let recovery = match peer.request().query_param("since") {
            Some(since) => {
                let since: Position = since.parse()?;
                let recovery = peer.subscribe_since(&topic, &since).await;
                format!("welcome recovered={} replayed={}", recovery.recovered, recovery.replayed)
            }
            None => {
                peer.subscribe(&topic);
                "welcome".to_owned()
            }
        };
        peer.send_text(recovery)?;
        Ok::<_, switchboard::BoxError>(())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catch_up_larger_than_the_subscriber_queue_is_replayed_in_full() {
    let history = HistoryConfig { size: 100, ttl: Duration::from_secs(60), ..HistoryConfig::default() };
    let pubsub = PubSubConfig { max_subscriber_queue: SUBSCRIBER_LIMIT, history: Some(history), ..Default::default() };
    let server =
        Switchboard::new().pubsub(pubsub).ws("/room", catch_up_hooks()).bind("127.0.0.1:0").await.expect("bind");
    let hub = server.hub();
    // 60 publications of 16 KiB: 15 times the subscriber limit.
    let mut first = None;
    for i in 0..60 {
        let position = hub.publish_with_position("room", format!("{i:05}{}", "m".repeat(16 << 10))).await;
        first = first.or(position);
    }
    let since = Position { offset: 0, ..first.expect("history is on") };
    for live in 0..3 {
        let mut client = TestClient::connect(server.local_addr(), &format!("/room?since={since}")).await;
        for i in 0..60 {
            let text = client.recv_text().await;
            assert_eq!(&text[..5], format!("{i:05}"), "replayed in order");
        }
        // The live publications of the earlier rounds are history now.
        for _ in 0..live {
            assert_eq!(client.recv_text().await, "live");
        }
        assert_eq!(client.recv_text().await, format!("welcome recovered=true replayed={}", 60 + live));
        // Live publications follow the welcome.
        hub.publish("room", "live");
        assert_eq!(client.recv_text().await, "live");
    }
    assert_eq!(hub.stats().slow_closed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_catch_ups_that_publish_after_their_welcome_all_complete() {
    let history = HistoryConfig { size: 100, ttl: Duration::from_secs(60), ..HistoryConfig::default() };
    let pubsub = PubSubConfig { max_subscriber_queue: SUBSCRIBER_LIMIT, history: Some(history), ..Default::default() };
    // As /chat does: each newcomer announces itself to the others once it is welcomed.
    let hooks = define_hooks().open(|peer: Peer| async move {
        let since: Position = peer.request().query_param("since").unwrap_or_default().parse()?;
        let recovery = peer.subscribe_since("room", &since).await;
        peer.send_text(format!("welcome {}", recovery.recovered))?;
        peer.publish("room", "joined");
        Ok::<_, switchboard::BoxError>(())
    });
    let server = Switchboard::new().pubsub(pubsub).ws("/room", hooks).bind("127.0.0.1:0").await.expect("bind");
    let hub = server.hub();
    let first = hub.publish_with_position("room", "m".repeat(32 << 10)).await.expect("history is on");
    for _ in 1..40 {
        hub.publish("room", "m".repeat(32 << 10));
    }
    let since = Position { offset: 0, ..first };
    let addr = server.local_addr();
    let clients = (0..4).map(|_| {
        let path = format!("/room?since={since}");
        async move {
            let mut client = TestClient::connect(addr, &path).await;
            let mut replayed = 0;
            loop {
                let text = client.recv_text().await;
                match text.as_str() {
                    "welcome true" => return replayed,
                    "joined" => {}
                    other => {
                        assert_eq!(other.len(), 32 << 10, "{other:.40}");
                        replayed += 1;
                    }
                }
            }
        }
    });
    let replayed = futures_util::future::join_all(clients).await;
    assert_eq!(replayed, [40, 40, 40, 40]);
    assert_eq!(hub.stats().slow_closed, 0);
}

#[tokio::test]
async fn history_expires_on_time_and_unused_topics_go() {
    let history = HistoryConfig { size: 10, ttl: Duration::from_millis(300), ..HistoryConfig::default() };
    let pubsub = PubSubConfig { history: Some(history), ..Default::default() };
    let server =
        Switchboard::new().pubsub(pubsub).ws("/room", catch_up_hooks()).bind("127.0.0.1:0").await.expect("bind");
    let hub = server.hub();
    for room in 0..1000 {
        hub.publish(&format!("room{room}"), "visited once");
    }
    assert_eq!(hub.stats().topics, 1000);
    assert!(hub.stats().history_bytes > 0);
    // Nothing is published again: expiry must not wait for the next publication.
    let deadline = Instant::now() + Duration::from_secs(5);
    while hub.stats().topics > 0 || hub.stats().history_bytes > 0 {
        assert!(Instant::now() < deadline, "history kept past its TTL: {:?}", hub.stats());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A subscriber that leaves a topic without history takes the topic with it.
    let client = TestClient::connect(server.local_addr(), "/room").await;
    drop(client);
    let deadline = Instant::now() + Duration::from_secs(5);
    while hub.stats().topics > 0 {
        assert!(Instant::now() < deadline, "an unused topic stayed: {:?}", hub.topics());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn history_memory_is_bounded_as_a_whole_oldest_first() {
    let history = HistoryConfig { size: 100, ttl: Duration::from_secs(60), max_bytes: 1 << 20 };
    let pubsub = PubSubConfig { history: Some(history), ..Default::default() };
    let server =
        Switchboard::new().pubsub(pubsub).ws("/room", catch_up_hooks()).bind("127.0.0.1:0").await.expect("bind");
    let hub = server.hub();
    let payload = "h".repeat(64 << 10);
    let mut firsts = Vec::new();
    for room in 0..10 {
        let topic = format!("room{room}");
        firsts.push(hub.publish_with_position(&topic, payload.as_str()).await.expect("position"));
        for _ in 1..10 {
            hub.publish(&topic, payload.as_str());
        }
    }
    let stats = hub.stats();
    assert!(stats.history_bytes <= 1 << 20, "{stats:?}");
    assert!(stats.history_evicted >= 80, "{stats:?}");
    // The oldest room lost its history; the newest kept all of it.
    let from = |position: &Position| Position { offset: 0, ..position.clone() };
    let mut oldest =
        TestClient::connect(server.local_addr(), &format!("/room?topic=room0&since={}", from(&firsts[0]))).await;
    assert_eq!(oldest.recv_text().await, "welcome recovered=false replayed=0");
    let mut newest =
        TestClient::connect(server.local_addr(), &format!("/room?topic=room9&since={}", from(&firsts[9]))).await;
    for _ in 0..10 {
        assert_eq!(newest.recv_text().await.len(), 64 << 10);
    }
    assert_eq!(newest.recv_text().await, "welcome recovered=true replayed=10");
}

#[tokio::test]
async fn incomplete_messages_are_bounded_by_a_server_wide_budget() {
    let echo = define_hooks().message_sync(|peer: Peer, message: Message| peer.send(message));
    let server =
        Switchboard::new().max_incomplete_bytes(1 << 20).ws("/echo", echo).bind("127.0.0.1:0").await.expect("bind");
    let addr = server.local_addr();
    // A frame of 700 KiB whose last byte never comes: each holds 700 KiB.
    let frame = encode_raw_frame(0x82, Some([1, 2, 3, 4]), &vec![7u8; 700 << 10]);
    let partial = &frame[..frame.len() - 1];
    let mut first = TestClient::connect(addr, "/echo").await;
    first.send_raw(partial).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut second = TestClient::connect(addr, "/echo").await;
    second.send_raw(partial).await;
    let close = second.recv_close().await.expect("a close frame");
    assert_eq!(close.code.0, 1013, "{close:?}");
    // A message larger than the whole budget could never fit: 1009.
    let huge = encode_raw_frame(0x82, Some([1, 2, 3, 4]), &vec![7u8; 3 << 20]);
    let mut third = TestClient::connect(addr, "/echo").await;
    third.send_raw(&huge[..(2 << 20)]).await;
    assert_eq!(third.recv_close().await.expect("a close frame").code.0, 1009);
    // The first completes its message and gets it back; once it is done, others fit again.
    first.send_raw(&frame[frame.len() - 1..]).await;
    match first.next_event().await {
        Some(Event::Message(MessageKind::Binary, data)) => assert_eq!(data.len(), 700 << 10),
        other => panic!("expected the echo, got {other:?}"),
    }
    let mut fourth = TestClient::connect(addr, "/echo").await;
    fourth.send_raw(&frame).await;
    match fourth.next_event().await {
        Some(Event::Message(MessageKind::Binary, data)) => assert_eq!(data.len(), 700 << 10),
        other => panic!("expected the echo, got {other:?}"),
    }
}

#[tokio::test]
async fn a_message_must_be_completed_within_its_deadline() {
    let echo = define_hooks().message_sync(|peer: Peer, message: Message| peer.send(message));
    let config = WsConfig::default().message_timeout(Some(Duration::from_millis(600)));
    let server = Switchboard::new().ws_with_config("/echo", echo, config).bind("127.0.0.1:0").await.expect("bind");
    let frame = encode_raw_frame(0x82, Some([1, 2, 3, 4]), &vec![7u8; 1000]);
    let mut client = TestClient::connect(server.local_addr(), "/echo").await;
    let started = Instant::now();
    client.send_raw(&frame[..100]).await;
    // A byte every 100 ms keeps the connection alive, but not the message.
    let trickle = async {
        for byte in &frame[100..] {
            client.send_raw(std::slice::from_ref(byte)).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(1500), trickle).await;
    let close = client.recv_close().await.expect("a close frame");
    assert_eq!(close.code.0, 1008, "{close:?}");
    assert!(close.reason.contains("not completed"), "{close:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}
