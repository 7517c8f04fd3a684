//! The client (fritz2's Socket and Session) against our own server, and against raw servers that
//! misbehave on purpose.

use std::time::Duration;

use futures_util::StreamExt;
use switchboard::client::{ClientTls, ConnectError, ReconnectPolicy, SendError, SessionError, State};
use switchboard::wire::handshake;
use switchboard::{
    define_hooks, websocket, Accept, Message, Peer, Server, Switchboard, TlsConfig, UpgradeRequest, WsConfig,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const WAIT: Duration = Duration::from_secs(5);

async fn next<S: futures_util::Stream + Unpin>(stream: &mut S) -> S::Item {
    tokio::time::timeout(WAIT, stream.next()).await.expect("an item in time").expect("the stream goes on")
}

fn echo_hooks() -> switchboard::HookSet {
    define_hooks().open(|peer: Peer| async move { peer.send_text("welcome") }).message(
        |peer: Peer, message: Message| async move {
            match message.text() {
                Ok("close me") => peer.close(4000, "bye").map_err(switchboard::BoxError::from),
                _ => peer.send(message).map_err(Into::into),
            }
        },
    )
}

async fn echo_server() -> Server {
    Switchboard::new().ws("/echo", echo_hooks()).bind("127.0.0.1:0").await.expect("bind")
}

#[tokio::test]
async fn the_seed_example_connect_receive_send_close() {
    let server = echo_server().await;
    let socket = websocket(&format!("ws://{}/echo", server.local_addr())).expect("url");
    let session = socket.connect();
    assert!(session.current_state().is_connecting());
    // Subscribing late loses nothing: the welcome sent on open is still delivered.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut texts = session.messages().texts();
    assert_eq!(next(&mut texts).await, "welcome");
    session.send("Hello").await.expect("send");
    assert_eq!(next(&mut texts).await, "Hello");
    let close = session.close(None, "finished").await.expect("valid code");
    assert_eq!((close.code, close.reason.as_str(), close.was_clean), (1000, "finished", true));
    match session.send("too late").await {
        Err(SendError::Closed { code: 1000, reason }) => assert_eq!(reason, "finished"),
        other => panic!("expected SendError::Closed, got {other:?}"),
    }
}

#[tokio::test]
async fn state_streams_yield_the_current_value_then_every_change() {
    let server = echo_server().await;
    let session = websocket(&format!("ws://{}/echo", server.local_addr())).expect("url").connect();
    let mut connecting = Box::pin(session.is_connecting());
    let mut open = Box::pin(session.is_open());
    let mut closed = Box::pin(session.is_closed());
    let mut opens = Box::pin(session.opens());
    let mut closes = Box::pin(session.closes());
    assert!(next(&mut connecting).await);
    assert!(!next(&mut open).await);
    assert!(!next(&mut closed).await);
    next(&mut opens).await;
    assert!(next(&mut open).await);
    assert!(!next(&mut connecting).await);
    session.send("close me").await.expect("send");
    let close = next(&mut closes).await;
    assert_eq!((close.code, close.reason.as_str(), close.was_clean), (4000, "bye", true));
    assert!(!next(&mut open).await);
    assert!(next(&mut closed).await);
    assert!(matches!(session.current_state(), State::Closed(c) if c.code == 4000));
    assert!(matches!(session.send("x").await, Err(SendError::Closed { code: 4000, .. })));
    // Streams end with the session; one created after the end yields the current value only.
    assert_eq!(tokio::time::timeout(WAIT, open.next()).await.expect("ends"), None);
    assert_eq!(tokio::time::timeout(WAIT, closes.next()).await.expect("ends"), None);
    let mut late = Box::pin(session.is_closed());
    assert!(next(&mut late).await);
    assert_eq!(late.next().await, None);
    // Nobody subscribed while it was open: the first subscriber still gets what arrived, then the end.
    let mut messages = session.messages().texts();
    assert_eq!(next(&mut messages).await, "welcome");
    assert!(tokio::time::timeout(WAIT, messages.next()).await.expect("ends").is_none());
}

#[tokio::test]
async fn sends_made_while_connecting_go_out_in_order_and_subscribers_each_get_everything() {
    let server = echo_server().await;
    let session = websocket(&format!("ws://{}/echo", server.local_addr())).expect("url").connect();
    let mut first = session.messages().texts();
    let mut second = session.messages().texts();
    for i in 0..200 {
        session.send(format!("message {i}")).await.expect("queued");
    }
    for subscriber in [&mut first, &mut second] {
        assert_eq!(next(subscriber).await, "welcome");
        for i in 0..200 {
            assert_eq!(next(subscriber).await, format!("message {i}"));
        }
    }
    let mut all = session.messages();
    session.send_json(&serde_json::json!({"n": 1})).await.expect("json");
    session.send(vec![1u8, 2, 3]).await.expect("binary");
    assert_eq!(next(&mut first).await, r#"{"n":1}"#);
    assert_eq!(next(&mut all).await.json::<serde_json::Value>().expect("json")["n"], 1);
    let binary = next(&mut all).await;
    assert_eq!((binary.is_binary(), &binary.bytes()[..]), (true, &[1u8, 2, 3][..]));
}

#[tokio::test]
async fn close_codes_are_checked_like_a_browser_does() {
    let server = echo_server().await;
    let session = websocket(&format!("ws://{}/echo", server.local_addr())).expect("url").connect();
    next(&mut Box::pin(session.opens())).await;
    assert!(session.close(1001, "").await.is_err());
    assert!(session.close(2999, "").await.is_err());
    let close = session.close(3001, "custom").await.expect("valid");
    assert_eq!(close.code, 3001);
}

#[tokio::test]
async fn append_headers_and_subprotocols_reach_the_server() {
    let hooks = define_hooks()
        .upgrade(|request: UpgradeRequest| async move {
            let token = request.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
            let protocol = request.protocols().first().cloned().unwrap_or_default();
            Accept::new().protocol(protocol).context(token)
        })
        .open(|peer: Peer| async move {
            let token = peer.context::<String>().cloned().unwrap_or_default();
            peer.send_text(format!("{} {} {}", peer.request().uri.path(), token, peer.protocol().unwrap_or("-")))
        });
    let server = Switchboard::new().ws("/api/room/1", hooks).bind("127.0.0.1:0").await.expect("bind");
    let base = websocket(&format!("ws://{}/api", server.local_addr())).expect("url");
    let socket = base
        .append("/room/1")
        .expect("append")
        .protocols(["chat.v1"])
        .header("Authorization", "Bearer t")
        .expect("header");
    let session = socket.connect();
    let mut texts = session.messages().texts();
    assert_eq!(next(&mut texts).await, "/api/room/1 Bearer t chat.v1");
    assert!(base.clone().header("bad header", "x").is_err());
    assert!(matches!(websocket("http://example.com"), Err(ConnectError::UnsupportedScheme(_))));
    assert!(matches!(base.append("/bad path"), Err(ConnectError::InvalidUrl { .. })));
}

#[tokio::test]
async fn refused_and_failed_connections_are_reported() {
    let hooks = define_hooks().upgrade(|_: UpgradeRequest| async move {
        Err::<Accept, _>(switchboard::reject(http::StatusCode::UNAUTHORIZED, "no"))
    });
    let server = Switchboard::new().ws("/private", hooks).bind("127.0.0.1:0").await.expect("bind");
    let session = websocket(&format!("ws://{}/private", server.local_addr())).expect("url").connect();
    let mut errors = Box::pin(session.errors());
    match next(&mut errors).await {
        SessionError::Connect(ConnectError::Refused { status: 401, .. }) => {}
        other => panic!("expected a 401 refusal, got {other:?}"),
    }
    assert_eq!(session.closed().await.code, 1006);

    // Nobody listens on this port.
    let unused = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = unused.local_addr().expect("addr");
    drop(unused);
    let session = websocket(&format!("ws://{addr}/x")).expect("url").connect();
    let mut errors = Box::pin(session.errors());
    assert!(matches!(next(&mut errors).await, SessionError::Connect(ConnectError::Io { .. })));

    // A server that accepts TCP but never answers the handshake.
    let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = silent.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let session =
        websocket(&format!("ws://{addr}/x")).expect("url").connect_timeout(Duration::from_millis(300)).connect();
    let mut errors = Box::pin(session.errors());
    assert!(matches!(next(&mut errors).await, SessionError::Connect(ConnectError::Timeout { .. })));
}

#[tokio::test]
async fn wss_with_a_private_root_or_insecure() {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
    let tls = TlsConfig::from_pem(certified.cert.pem().as_bytes(), certified.key_pair.serialize_pem().as_bytes())
        .expect("tls");
    let server = Switchboard::new().ws("/echo", echo_hooks()).bind_tls("127.0.0.1:0", tls).await.expect("bind");
    let url = format!("wss://localhost:{}/echo", server.local_addr().port());
    for tls in [ClientTls::with_extra_roots_pem(certified.cert.pem().as_bytes()).expect("roots"), ClientTls::insecure()]
    {
        let session = websocket(&url).expect("url").tls(tls).connect();
        let mut texts = session.messages().texts();
        assert_eq!(next(&mut texts).await, "welcome");
        session.send("over tls").await.expect("send");
        assert_eq!(next(&mut texts).await, "over tls");
        assert_eq!(session.close(None, "").await.expect("close").code, 1000);
    }
    // Without the root, verification fails.
    let session = websocket(&url).expect("url").connect();
    let mut errors = Box::pin(session.errors());
    assert!(matches!(next(&mut errors).await, SessionError::Connect(ConnectError::Io { .. })));
}

/// Accepts one connection, completes the handshake, then hands the raw stream to `behave`.
async fn raw_server<F, Fut>(behave: F) -> std::net::SocketAddr
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut chunk).await.expect("read");
            buf.extend_from_slice(&chunk[..n]);
        }
        let head = String::from_utf8_lossy(&buf).to_string();
        let key = head.lines().find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ")).expect("key").trim().to_owned();
        let answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            handshake::accept_key(key.as_bytes())
        );
        stream.write_all(answer.as_bytes()).await.expect("write");
        behave(stream).await;
    });
    addr
}

#[tokio::test]
async fn protocol_violations_by_the_server_get_the_right_close_code() {
    for (case, frame, code) in [
        ("masked server frame", vec![0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2], 1002),
        ("invalid UTF-8", vec![0x81, 0x02, 0xC0, 0xAF], 1007),
        ("reserved opcode", vec![0x83, 0x00], 1002),
        ("too big", vec![0x82, 0x7E, 0x04, 0x00], 1009),
    ] {
        let addr = raw_server(move |mut stream| async move {
            stream.write_all(&frame).await.expect("write");
            let mut sink = [0u8; 256];
            while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
        let session = websocket(&format!("ws://{addr}/")).expect("url").max_message_size(1000).connect();
        let mut errors = Box::pin(session.errors());
        assert!(matches!(next(&mut errors).await, SessionError::Protocol(_)), "{case}");
        let close = session.closed().await;
        assert_eq!(close.code, code, "{case}");
    }
}

#[tokio::test]
async fn a_silent_server_is_detected_by_keepalive() {
    let addr = raw_server(|mut stream| async move {
        // Reads (and ignores) the pings, never answers, never closes.
        let mut sink = [0u8; 256];
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
    let session = websocket(&format!("ws://{addr}/"))
        .expect("url")
        .keepalive(Duration::from_millis(100), Duration::from_millis(400))
        .connect();
    let mut errors = Box::pin(session.errors());
    assert!(matches!(next(&mut errors).await, SessionError::KeepaliveTimeout(_)));
    let close = session.closed().await;
    assert_eq!((close.code, close.was_clean), (1006, false));
}

#[tokio::test]
async fn server_pings_are_answered_even_when_nobody_reads() {
    let config = WsConfig::default()
        .ping_interval(Some(Duration::from_millis(50)))
        .keepalive_timeout(Some(Duration::from_millis(300)));
    let server =
        Switchboard::new().ws_with_config("/echo", echo_hooks(), config).bind("127.0.0.1:0").await.expect("bind");
    let session = websocket(&format!("ws://{}/echo", server.local_addr())).expect("url").connect();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(session.current_state(), State::Open, "the server would have closed a peer that does not pong");
}

#[tokio::test]
async fn reconnects_with_backoff_and_replays_queued_sends_in_order() {
    let server = echo_server().await;
    let addr = server.local_addr();
    let policy = ReconnectPolicy::default().backoff(Duration::from_millis(50), Duration::from_millis(200));
    let session = websocket(&format!("ws://{addr}/echo")).expect("url").reconnect(policy).connect();
    let mut states = Box::pin(session.state());
    let mut opens = Box::pin(session.opens());
    let mut texts = session.messages().texts();
    next(&mut opens).await;
    assert_eq!(next(&mut texts).await, "welcome");

    server.shutdown().await;
    // While the server is down, sends wait in the queue.
    let mut seen = Vec::new();
    loop {
        let state = next(&mut states).await;
        seen.push(state.clone());
        if matches!(state, State::Reconnecting { .. })
            && seen.iter().filter(|s| matches!(s, State::Connecting { .. })).count() >= 3
        {
            break;
        }
    }
    for i in 0..5 {
        session.send(format!("queued {i}")).await.expect("queued while down");
    }
    let server = Switchboard::new().ws("/echo", echo_hooks()).bind(addr).await.expect("rebind the same port");
    next(&mut opens).await;
    assert_eq!(next(&mut texts).await, "welcome");
    for i in 0..5 {
        assert_eq!(next(&mut texts).await, format!("queued {i}"));
    }
    assert!(seen.iter().any(|s| matches!(s, State::Connecting { attempt } if *attempt >= 2)), "{seen:?}");
    assert_eq!(session.close(None, "done").await.expect("close").code, 1000);
    drop(server);
}

#[tokio::test]
async fn codes_4000_to_4099_stop_reconnecting() {
    let server = echo_server().await;
    let policy = ReconnectPolicy::default().backoff(Duration::from_millis(10), Duration::from_millis(50));
    let session = websocket(&format!("ws://{}/echo", server.local_addr())).expect("url").reconnect(policy).connect();
    session.send("close me").await.expect("send");
    let close = tokio::time::timeout(WAIT, session.closed()).await.expect("closed for good");
    assert_eq!(close.code, 4000);
}

#[tokio::test]
async fn replies_to_messages_received_before_a_violation_go_out_before_the_close() {
    // Autobahn 3.2 in the client role: a valid text, then a frame with RSV2 set. The echo of the text
    // must reach the server before the 1002 close.
    let (frames_tx, mut frames) = tokio::sync::mpsc::unbounded_channel();
    let addr = raw_server(move |mut stream| async move {
        let mut bad = vec![0x81, 0x05];
        bad.extend_from_slice(b"Hello");
        bad.extend_from_slice(&[0xA1, 0x00]);
        stream.write_all(&bad).await.expect("write");
        let mut conn = switchboard::wire::Connection::new(switchboard::wire::Role::Server, Default::default(), 0);
        let mut buf = bytes::BytesMut::new();
        while stream.read_buf(&mut buf).await.is_ok_and(|n| n > 0) {
            while let Ok(Some(event)) = conn.receive(&mut buf) {
                let _ = frames_tx.send(event);
            }
        }
    })
    .await;
    let session = websocket(&format!("ws://{addr}/")).expect("url").connect();
    let mut messages = session.messages();
    let echo = session.clone();
    tokio::spawn(async move {
        while let Some(message) = messages.next().await {
            let _ = echo.send(message).await;
        }
    });
    use switchboard::wire::{CloseFrame, Event, MessageKind};
    assert_eq!(
        tokio::time::timeout(WAIT, frames.recv()).await.expect("in time").expect("a frame"),
        Event::Message(MessageKind::Text, "Hello".into())
    );
    match tokio::time::timeout(WAIT, frames.recv()).await.expect("in time").expect("a frame") {
        Event::Close(Some(CloseFrame { code, .. })) => assert_eq!(code.0, 1002),
        other => panic!("expected the 1002 close, got {other:?}"),
    }
}
