//! Our client against servers nobody here wrote: Python's `websockets` and Node's `ws`. The test command
//! (scripts/test) installs both; without them these tests fail and say how to get them.

use std::time::Duration;

use futures_util::StreamExt;
use switchboard::client::{SendError, State};
use switchboard::websocket;

const WAIT: Duration = Duration::from_secs(10);

#[path = "support/foreign.rs"]
mod foreign;
use foreign::Peer;

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
