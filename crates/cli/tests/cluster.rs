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
        let welcome = tokio::time::timeout(WAIT, texts.next()).await.expect("welcome").expect("open");
        assert!(welcome.contains("\"welcome\""), "{welcome}");
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
    let redis = Redis::start();
    let node1 = ServeProcess::start(&["--broker", &redis.url()]);
    let node2 = ServeProcess::start(&["--broker", &redis.url()]);
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
