//! Our client against servers nobody here wrote: Python's `websockets` and Node's `ws`. The test command
//! (scripts/test) installs both; without them these tests fail and say how to get them.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use switchboard::client::{SendError, State};
use switchboard::websocket;

const WAIT: Duration = Duration::from_secs(10);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A foreign server process, killed on drop.
struct Peer {
    child: Child,
    port: u16,
}

impl Peer {
    fn start(mut command: Command, what: &str) -> Self {
        let mut child =
            command.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap_or_else(|e| {
                panic!("cannot start the {what} server: {e}. Run scripts/test, which installs it.")
            });
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout).read_line(&mut line).expect("read READY");
        let port = line.strip_prefix("READY ").and_then(|p| p.trim().parse().ok()).unwrap_or_else(|| {
            panic!("the {what} server did not start: {line:?}. Run scripts/test, which installs it.")
        });
        Self { child, port }
    }

    fn python() -> Self {
        let python = std::env::var_os("SWITCHBOARD_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| root().join(".cache/venv/bin/python"));
        let mut command = Command::new(python);
        command.arg(root().join("tests/peers/python_server.py"));
        Self::start(command, "Python websockets")
    }

    fn node() -> Self {
        let modules = root().join("tests/peers/node_modules/ws");
        assert!(modules.exists(), "Node's ws is not installed in tests/peers: run scripts/test (npm ci there)");
        let mut command = Command::new("node");
        command.arg(root().join("tests/peers/node_server.mjs"));
        Self::start(command, "Node ws")
    }

    fn url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn next<S: futures_util::Stream + Unpin>(stream: &mut S) -> S::Item {
    tokio::time::timeout(WAIT, stream.next()).await.expect("an item in time").expect("the stream goes on")
}

/// Text, binary, and a burst of compressible JSON, with and without permessage-deflate.
async fn echo_roundtrips(url: &str) {
    for compression in [true, false] {
        let session = websocket(url).expect("url").compression(compression).connect();
        let mut messages = session.messages();
        session.send("hello κόσμε").await.expect("send");
        assert_eq!(next(&mut messages).await.text().expect("text"), "hello κόσμε");
        session.send(vec![0u8, 1, 254, 255]).await.expect("send");
        let binary = next(&mut messages).await;
        assert!(binary.is_binary());
        assert_eq!(&binary.bytes()[..], &[0u8, 1, 254, 255]);
        for i in 0..100 {
            session.send_json(&serde_json::json!({"seq": i, "text": "compress me ".repeat(30)})).await.expect("send");
        }
        for i in 0..100 {
            let value: serde_json::Value = next(&mut messages).await.json().expect("json");
            assert_eq!(value["seq"], i);
        }
        let close = session.close(None, "done").await.expect("close");
        assert_eq!((close.code, close.was_clean), (1000, true));
    }
}

#[tokio::test]
async fn python_websockets_echo_with_and_without_compression() {
    let peer = Peer::python();
    echo_roundtrips(&peer.url("/echo")).await;
    let session = websocket(&peer.url("/extensions")).expect("url").connect();
    let mut texts = session.messages().texts();
    assert!(next(&mut texts).await.starts_with("permessage-deflate"));
}

#[tokio::test]
async fn python_websockets_subprotocols_headers_and_big_messages() {
    let peer = Peer::python();
    let session = websocket(&peer.url("/protocol")).expect("url").protocols(["chat.v1", "chat.v2"]).connect();
    assert_eq!(next(&mut session.messages().texts()).await, "chat.v2");
    let session = websocket(&peer.url("/protocol")).expect("url").protocols(["other"]).connect();
    assert_eq!(next(&mut session.messages().texts()).await, "none");
    let session = websocket(&peer.url("/headers")).expect("url").header("X-Token", "abc123").expect("header").connect();
    assert_eq!(next(&mut session.messages().texts()).await, "abc123");
    let session = websocket(&peer.url("/big")).expect("url").connect();
    let mut messages = session.messages();
    let binary = next(&mut messages).await;
    assert_eq!(binary.len(), 16 << 20);
    assert!(binary.bytes().iter().enumerate().all(|(i, b)| *b == (i % 256) as u8));
    let text = next(&mut messages).await;
    assert_eq!((text.is_text(), text.len()), (true, 16 << 20));
}

#[tokio::test]
async fn python_websockets_server_close_pings_and_sudden_death() {
    let peer = Peer::python();
    // A server-initiated close with a code and reason.
    let session = websocket(&peer.url("/close")).expect("url").connect();
    let mut closes = Box::pin(session.closes());
    session.send("bye?").await.expect("send");
    let close = next(&mut closes).await;
    assert_eq!((close.code, close.reason.as_str(), close.was_clean), (4321, "custom reason", true));
    match session.send("after").await {
        Err(SendError::Closed { code, reason }) => assert_eq!((code, reason.as_str()), (4321, "custom reason")),
        other => panic!("expected SendError::Closed, got {other:?}"),
    }
    // The server pings every 0.2 s and drops clients that do not answer within 1 s: ours answers
    // even though nobody reads its messages.
    let session = websocket(&peer.url("/echo")).expect("url").connect();
    tokio::time::sleep(Duration::from_millis(1800)).await;
    assert_eq!(session.current_state(), State::Open);
    session.send("still here").await.expect("send");
    assert_eq!(next(&mut session.messages().texts()).await, "still here");
    // The server dies in the middle of a fragmented message.
    let session = websocket(&peer.url("/die")).expect("url").connect();
    let close = tokio::time::timeout(WAIT, session.closed()).await.expect("closed");
    assert_eq!((close.code, close.was_clean), (1006, false));
}

#[tokio::test]
async fn node_ws_echo_subprotocol_and_close() {
    let peer = Peer::node();
    echo_roundtrips(&peer.url("/echo")).await;
    let session = websocket(&peer.url("/protocol")).expect("url").protocols(["chat.v1", "chat.v2"]).connect();
    assert_eq!(next(&mut session.messages().texts()).await, "chat.v2");
    let session = websocket(&peer.url("/extensions")).expect("url").connect();
    assert!(next(&mut session.messages().texts()).await.starts_with("permessage-deflate"));
    let session = websocket(&peer.url("/close")).expect("url").connect();
    session.send("close please").await.expect("send");
    let close = tokio::time::timeout(WAIT, session.closed()).await.expect("closed");
    assert_eq!((close.code, close.reason.as_str(), close.was_clean), (4321, "custom reason", true));
}
