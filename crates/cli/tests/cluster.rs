//! Two `switchboard serve` nodes joined by a real Redis: one chat room across both, exactly once and
//! in publisher order, surviving a Redis restart. scripts/test installs redis-server.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use support::ServeProcess;
use switchboard::client::State;
use switchboard::{websocket, Session};

/// A `redis-server` on a free port, killed on drop.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start_on(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server ({e}): run scripts/test, which installs it"));
        let redis = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !redis.ping() {
            assert!(Instant::now() < deadline, "redis-server did not start on port {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        Self::start_on(port)
    }

    fn ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else { return false };
        let mut reply = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok() && stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const WAIT: Duration = Duration::from_secs(10);

struct Member {
    session: Session,
    texts: std::pin::Pin<Box<dyn futures_util::Stream<Item = String> + Send>>,
}

impl Member {
    async fn join(node: &ServeProcess, room: &str) -> Self {
        let session = websocket(&format!("ws://{}/chat?room={room}", node.addr)).expect("url").connect();
        let mut texts: std::pin::Pin<Box<dyn futures_util::Stream<Item = String> + Send>> =
            Box::pin(session.messages().texts());
        // Announcements may come first: with history in Redis the welcome waits for the room's position.
        loop {
            let text = tokio::time::timeout(WAIT, texts.next()).await.expect("welcome").expect("open");
            if text.contains("\"welcome\"") {
                break;
            }
            assert!(text.starts_with('{'), "a chat line before the welcome: {text}");
        }
        Self { session, texts }
    }

    /// The next chat line, skipping join/leave announcements.
    async fn next_line(&mut self) -> String {
        loop {
            let text = tokio::time::timeout(WAIT, self.texts.next()).await.expect("a message in time").expect("open");
            if !text.starts_with('{') {
                return text;
            }
        }
    }

    async fn nothing_more(&mut self) {
        let extra = tokio::time::timeout(Duration::from_millis(300), async {
            loop {
                match self.texts.next().await {
                    Some(text) if text.starts_with('{') => continue,
                    other => return other,
                }
            }
        })
        .await;
        assert!(extra.is_err(), "unexpected extra message: {extra:?}");
    }
}

/// Sends probes from `from` until `to` sees one (Redis subscriptions are set up asynchronously),
/// then drains the probes that were still in flight.
async fn until_connected(from: &Member, to: &mut Member, others: &mut [&mut Member]) {
    let deadline = Instant::now() + WAIT;
    let mut n = 0;
    loop {
        assert!(Instant::now() < deadline, "the nodes never connected through Redis");
        from.session.send(format!("probe {n}")).await.expect("send");
        n += 1;
        if let Ok(Some(text)) = tokio::time::timeout(Duration::from_millis(200), to.texts.next()).await {
            if text.starts_with("probe") {
                break;
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for member in std::iter::once(to).chain(others.iter_mut().map(|m| &mut **m)) {
        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(50), member.texts.next()).await {}
    }
}

#[tokio::test]
async fn one_room_across_two_nodes_exactly_once_in_order_and_through_a_redis_restart() {
    one_room_across_two_nodes("0").await;
}

/// The same with history in Redis: every delivery, local ones included, comes from the recording
/// script's echo; while Redis is down, local delivery goes on unrecorded.
#[tokio::test]
async fn with_history_in_redis_one_room_across_two_nodes_exactly_once_in_order_and_through_a_redis_restart() {
    one_room_across_two_nodes("50").await;
}

async fn one_room_across_two_nodes(history: &str) {
    let redis = Redis::start();
    let node1 = ServeProcess::start(&["--broker", &redis.url(), "--history", history]);
    let node2 = ServeProcess::start(&["--broker", &redis.url(), "--history", history]);
    let mut alice = Member::join(&node1, "cluster").await;
    let mut carol = Member::join(&node1, "cluster").await;
    let mut bob = Member::join(&node2, "cluster").await;
    let mut outsider = Member::join(&node2, "elsewhere").await;
    until_connected(&alice, &mut bob, &mut [&mut carol]).await;
    until_connected(&bob, &mut alice, &mut [&mut carol]).await;

    // Both sides publish at once; every other member gets every line once, in publisher order.
    for i in 0..100 {
        alice.session.send(format!("alice {i}")).await.expect("send");
        bob.session.send(format!("bob {i}")).await.expect("send");
    }
    for (name, member) in [("alice", &mut alice), ("bob", &mut bob), ("carol", &mut carol)] {
        let mut from_alice = Vec::new();
        let mut from_bob = Vec::new();
        let expected = if name == "carol" { 200 } else { 100 };
        for _ in 0..expected {
            let line = member.next_line().await;
            match line.split_once(' ') {
                Some(("alice", n)) => from_alice.push(n.parse::<u32>().expect("number")),
                Some(("bob", n)) => from_bob.push(n.parse::<u32>().expect("number")),
                _ => panic!("{name} got {line:?}"),
            }
        }
        let all: Vec<u32> = (0..100).collect();
        match name {
            "alice" => assert_eq!((from_alice.len(), &from_bob), (0, &all), "alice gets bob's lines only"),
            "bob" => assert_eq!((&from_alice, from_bob.len()), (&all, 0), "bob gets alice's lines only"),
            _ => assert_eq!((&from_alice, &from_bob), (&all, &all), "carol gets both, in order"),
        }
        member.nothing_more().await;
    }
    outsider.nothing_more().await;

    // Redis goes away: local delivery goes on, nobody is disconnected.
    let port = redis.port;
    drop(redis);
    alice.session.send("during the outage").await.expect("send");
    assert_eq!(carol.next_line().await, "during the outage");
    tokio::time::sleep(Duration::from_millis(500)).await;
    for member in [&alice, &bob, &carol] {
        assert_eq!(member.session.current_state(), State::Open);
    }
    // Redis comes back on the same port: the brokers reconnect and resubscribe on their own.
    let _redis = Redis::start_on(port);
    until_connected(&alice, &mut bob, &mut [&mut carol]).await;
    bob.session.send("after the restart").await.expect("send");
    assert_eq!(alice.next_line().await, "after the restart");
    assert_eq!(carol.next_line().await, "after the restart");
}

/// Opens `/chat` on `node` (with `since`, if given) and returns the chat lines received before the
/// welcome, and the welcome.
async fn rejoin(node: &ServeProcess, room: &str, since: Option<&str>) -> (Session, Vec<String>, serde_json::Value) {
    let query = since.map(|since| format!("&since={since}")).unwrap_or_default();
    let session = websocket(&format!("ws://{}/chat?room={room}{query}", node.addr)).expect("url").connect();
    let mut texts = Box::pin(session.messages().texts());
    let mut lines = Vec::new();
    loop {
        let text = tokio::time::timeout(WAIT, texts.next()).await.expect("a message in time").expect("open");
        if !text.starts_with('{') {
            lines.push(text);
            continue;
        }
        let json: serde_json::Value = serde_json::from_str(&text).expect("json");
        if json["type"] == "welcome" {
            return (session, lines, json);
        }
    }
}

async fn leave(session: Session) {
    tokio::time::timeout(WAIT, session.close(None, "bye")).await.expect("closes in time").expect("valid code");
}

#[tokio::test]
async fn a_client_recovers_what_it_missed_on_another_node_or_is_told_it_cannot() {
    let redis = Redis::start();
    let node1 = ServeProcess::start(&["--broker", &redis.url(), "--history", "16"]);
    let node2 = ServeProcess::start(&["--broker", &redis.url(), "--history", "16"]);

    // Dave joins on node 1 and remembers the room's position from his welcome.
    let (dave, lines, welcome) = rejoin(&node1, "recovery", None).await;
    assert!(lines.is_empty());
    let position = welcome["position"].as_str().expect("history is on").to_owned();
    assert_eq!(welcome["recovered"], serde_json::Value::Null);
    leave(dave).await;

    // While he is away, Erin (on node 2) says three things.
    let erin = Member::join(&node2, "recovery").await;
    for line in ["one", "two", "three"] {
        erin.session.send(line).await.expect("send");
    }
    // Her lines are recorded once Redis echoes them to node 2 (she gets nothing back: she sent them).
    let deadline = Instant::now() + WAIT;
    loop {
        let (probe, _, welcome) = rejoin(&node2, "recovery", None).await;
        let offset: u64 =
            welcome["position"].as_str().and_then(|p| p.rsplit(':').next()?.parse().ok()).expect("offset");
        leave(probe).await;
        // leave(dave), join(erin), three lines, then the probes' own joins and leaves.
        if offset >= 5 {
            break;
        }
        assert!(Instant::now() < deadline, "the publications were never recorded");
    }

    // Dave comes back on node 2: the three lines, in order, then a welcome that says recovered.
    let (dave, missed, welcome) = rejoin(&node2, "recovery", Some(&position)).await;
    assert_eq!(missed, ["one", "two", "three"], "{welcome} after {position}");
    assert_eq!(welcome["recovered"], true, "{welcome}");
    let position = welcome["position"].as_str().expect("position").to_owned();
    // Live delivery follows the replay as usual.
    erin.session.send("four").await.expect("send");
    let mut texts = Box::pin(dave.messages().texts());
    loop {
        let text = tokio::time::timeout(WAIT, texts.next()).await.expect("in time").expect("open");
        if !text.starts_with('{') {
            assert_eq!(text, "four");
            break;
        }
    }
    drop(texts);
    leave(dave).await;

    // Nothing missed since: recovered, nothing replayed... except what happened after he left.
    let (dave, missed, welcome) = rejoin(&node1, "recovery", Some(&position)).await;
    assert_eq!(missed, ["four"], "only what came after his position");
    assert_eq!(welcome["recovered"], true, "{welcome}");
    let position = welcome["position"].as_str().expect("position").to_owned();
    leave(dave).await;

    // Away for longer than the history holds (16 publications): nothing replayed, recovered false.
    for i in 0..30 {
        erin.session.send(format!("flood {i}")).await.expect("send");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (dave, missed, welcome) = rejoin(&node1, "recovery", Some(&position)).await;
    assert!(missed.is_empty(), "{missed:?}");
    assert_eq!(welcome["recovered"], false, "{welcome}");
    leave(dave).await;

    // A position from another epoch (a history that was lost): recovered false.
    let (_dave, missed, welcome) = rejoin(&node2, "recovery", Some("0123456789abcdef:3")).await;
    assert!(missed.is_empty());
    assert_eq!(welcome["recovered"], false, "{welcome}");

    // A malformed position is the client's mistake: 1008 with what was wrong.
    let session = websocket(&format!("ws://{}/chat?room=recovery&since=nonsense", node1.addr)).expect("url").connect();
    let close = tokio::time::timeout(WAIT, session.closed()).await.expect("closed in time");
    assert_eq!(close.code, 1008);
    assert!(close.reason.contains("invalid position"), "{}", close.reason);
}
