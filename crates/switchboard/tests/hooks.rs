//! The hooks API end to end: real sockets, the real server, a client speaking the wire protocol.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::StatusCode;
use support::TestClient;
use switchboard::wire::Event;
use switchboard::{
    define_hooks, reject, Accept, BoxError, CloseEvent, Error, Message, Peer, ReadyState, SendError, Server,
    Switchboard, UpgradeRequest, WsConfig,
};
use tokio::sync::mpsc;

async fn serve(app: Switchboard) -> Server {
    app.bind("127.0.0.1:0").await.expect("bind")
}

fn echo() -> switchboard::HookSet {
    define_hooks().message(|peer: Peer, message: Message| async move { peer.send(message) })
}

#[tokio::test]
async fn upgrade_can_refuse_with_any_response() {
    let hooks = define_hooks().upgrade(|request: UpgradeRequest| async move {
        if request.query_param("token").as_deref() == Some("secret") {
            Ok(Accept::new())
        } else {
            let mut response = reject(StatusCode::UNAUTHORIZED, "a valid token is required");
            response.headers_mut().insert("www-authenticate", http::HeaderValue::from_static("Bearer"));
            Err(response)
        }
    });
    let server = serve(Switchboard::new().ws("/private", hooks)).await;
    let refused =
        TestClient::connect_with(server.local_addr(), "/private?token=wrong", &[], &[]).await.err().expect("refused");
    assert_eq!(refused.status, 401);
    assert_eq!(refused.body, "a valid token is required");
    assert!(refused.headers.iter().any(|(k, v)| k == "www-authenticate" && v == "Bearer"));
    assert!(TestClient::connect_with(server.local_addr(), "/private?token=secret", &[], &[]).await.is_ok());
}

#[derive(Clone, Debug, PartialEq)]
struct User(String);

#[tokio::test]
async fn upgrade_accepts_with_context_subprotocol_and_headers() {
    let hooks = define_hooks()
        .upgrade(|request: UpgradeRequest| async move {
            let user = request.headers().get("x-user").and_then(|v| v.to_str().ok()).unwrap_or("anonymous").to_owned();
            let protocol = request.protocols().iter().find(|p| *p == "chat.v2").cloned();
            let mut accept = Accept::new().context(User(user)).header("x-session", "42");
            if let Some(protocol) = protocol {
                accept = accept.protocol(protocol);
            }
            accept
        })
        .open(|peer: Peer| async move {
            let user = peer.context::<User>().map(|u| u.0.clone()).unwrap_or_default();
            let state = peer.ready_state();
            peer.send_text(format!("{user} {} {state:?}", peer.protocol().unwrap_or("-")))
        });
    let server = serve(Switchboard::new().ws("/ws", hooks)).await;
    let mut client =
        TestClient::connect_with(server.local_addr(), "/ws", &["chat.v1", "chat.v2"], &[("x-user", "ada")])
            .await
            .expect("accepted");
    assert_eq!(client.response.protocol.as_deref(), Some("chat.v2"));
    assert!(client.response.headers.iter().any(|(k, v)| k == "x-session" && v == "42"));
    assert_eq!(client.recv_text().await, "ada chat.v2 Open");
}

#[tokio::test]
async fn a_subprotocol_the_client_did_not_offer_is_a_500() {
    let hooks = define_hooks().upgrade(|_: UpgradeRequest| async move { Accept::new().protocol("not-offered") });
    let server = serve(Switchboard::new().ws("/ws", hooks)).await;
    let refused = TestClient::connect_with(server.local_addr(), "/ws", &["chat.v1"], &[]).await.err().expect("refused");
    assert_eq!(refused.status, 500);
}

fn fail_panic_or_echo(peer: Peer, message: Message) -> Result<(), BoxError> {
    match message.text()? {
        "fail" => Err("the handler failed".into()),
        "panic" => panic!("the handler panicked"),
        _ => Ok(peer.send(message)?),
    }
}

#[tokio::test]
async fn hook_errors_and_panics_close_only_that_peer_with_1011() {
    for sync in [false, true] {
        let (errors_tx, mut errors) = mpsc::unbounded_channel::<String>();
        let hooks = define_hooks().error(move |_peer: Peer, error: Error| {
            let errors_tx = errors_tx.clone();
            async move {
                let _ = errors_tx.send(error.to_string());
            }
        });
        // The same handler as an async hook and as a synchronous one (`message_sync`).
        let hooks = if sync {
            hooks.message_sync(fail_panic_or_echo)
        } else {
            hooks.message(|peer: Peer, message: Message| async move { fail_panic_or_echo(peer, message) })
        };
        let server = serve(Switchboard::new().ws("/ws", hooks)).await;
        let mut bystander = TestClient::connect(server.local_addr(), "/ws").await;
        bystander.send_text("echo").await;
        assert_eq!(bystander.recv_text().await, "echo", "sync: {sync}");
        for (trigger, expected) in [
            ("fail", "message hook failed: the handler failed"),
            ("panic", "message hook panicked: the handler panicked"),
        ] {
            let mut client = TestClient::connect(server.local_addr(), "/ws").await;
            client.send_text(trigger).await;
            let close = client.recv_close().await.expect("a close frame");
            assert_eq!(close.code.0, 1011, "{trigger}, sync: {sync}");
            assert_eq!(errors.recv().await.as_deref(), Some(expected));
            // The server and the other peers carry on.
            bystander.send_text("still alive").await;
            assert_eq!(bystander.recv_text().await, "still alive");
        }
    }
}

#[tokio::test]
async fn close_hook_sees_the_code_and_reason_and_peers_are_listed() {
    let (closes_tx, mut closes) = mpsc::unbounded_channel::<(CloseEvent, ReadyState)>();
    let hooks = define_hooks()
        .message(|peer: Peer, _message: Message| async move {
            let ids: Vec<String> = peer.peers().iter().map(|p| p.id().to_string()).collect();
            peer.send_json(&ids)
        })
        .close(move |peer: Peer, close: CloseEvent| {
            let closes_tx = closes_tx.clone();
            async move {
                let _ = closes_tx.send((close, peer.ready_state()));
            }
        });
    let server = serve(Switchboard::new().ws("/a", hooks).ws("/b", echo())).await;
    let mut a1 = TestClient::connect(server.local_addr(), "/a").await;
    let _a2 = TestClient::connect(server.local_addr(), "/a").await;
    let _b = TestClient::connect(server.local_addr(), "/b").await;
    a1.send_text("who is here?").await;
    let ids: Vec<String> = serde_json::from_str(&a1.recv_text().await).expect("json");
    assert_eq!(ids.len(), 2, "route peers");
    assert_eq!(server.peers().len(), 3, "server peers");
    a1.close(4001, "bye now").await;
    assert_eq!(a1.recv_close().await.map(|c| c.code.0), Some(4001));
    a1.expect_eof().await;
    let (event, state) = closes.recv().await.expect("close hook ran");
    assert_eq!(event, CloseEvent { code: 4001, reason: "bye now".into(), was_clean: true });
    assert_eq!(state, ReadyState::Closed);
    assert_eq!(server.peers().len(), 2);
}

#[tokio::test]
async fn peer_close_validates_the_code_and_terminate_drops_the_connection() {
    let hooks = define_hooks().message(|peer: Peer, message: Message| async move {
        match message.text()? {
            "bad code" => {
                let err = peer.close(1005, "reserved").expect_err("1005 may not be sent");
                peer.send_text(err.to_string())?;
            }
            "close" => peer.close(4100, "closing you")?,
            "terminate" => peer.terminate(),
            _ => {}
        }
        Ok::<_, BoxError>(())
    });
    let server = serve(Switchboard::new().ws("/ws", hooks)).await;
    let mut client = TestClient::connect(server.local_addr(), "/ws").await;
    client.send_text("bad code").await;
    assert!(client.recv_text().await.contains("1005 may not be sent"));
    client.send_text("close").await;
    let close = client.recv_close().await.expect("close frame");
    assert_eq!((close.code.0, close.reason.as_str()), (4100, "closing you"));
    client.close(4100, "").await;
    client.expect_eof().await;

    let mut client = TestClient::connect(server.local_addr(), "/ws").await;
    client.send_text("terminate").await;
    assert_eq!(client.recv_close().await, None, "terminate sends no close frame");
}

#[tokio::test]
async fn a_slow_consumer_is_closed_with_1013_without_slowing_others() {
    let (errors_tx, mut errors) = mpsc::unbounded_channel::<String>();
    let results = Arc::new(Mutex::new(Vec::new()));
    let recorded = results.clone();
    let hooks = define_hooks()
        .message(move |peer: Peer, message: Message| {
            let recorded = recorded.clone();
            async move {
                if message.text()? == "flood" {
                    // The client never reads: the queue fills up past 1 MiB.
                    let chunk = vec![0u8; 64 * 1024];
                    for _ in 0..1000 {
                        if let Err(e) = peer.send_binary(chunk.clone()) {
                            recorded.lock().expect("lock").push(e);
                            break;
                        }
                    }
                } else {
                    peer.send(message)?;
                }
                Ok::<_, BoxError>(())
            }
        })
        .error(move |_peer: Peer, error: Error| {
            let errors_tx = errors_tx.clone();
            async move {
                let _ = errors_tx.send(error.to_string());
            }
        });
    let config = WsConfig::default().max_buffered_bytes(1 << 20);
    let server = serve(Switchboard::new().config(config).ws("/ws", hooks)).await;
    let mut slow = TestClient::connect(server.local_addr(), "/ws").await;
    let mut fast = TestClient::connect(server.local_addr(), "/ws").await;
    slow.send_text("flood").await;
    let error = tokio::time::timeout(Duration::from_secs(10), errors.recv()).await.expect("in time").expect("error");
    assert!(error.starts_with("slow consumer"), "{error}");
    assert!(matches!(results.lock().expect("lock").first(), Some(SendError::QueueFull { .. })));
    fast.send_text("unaffected").await;
    assert_eq!(fast.recv_text().await, "unaffected");
    // The slow peer's connection ends even though its client never reads.
    let gone = async {
        while server.peers().len() > 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(8), gone).await.expect("the slow peer is dropped");
    // When the slow client finally reads: the backlog, then a 1013 close, or the end of the stream if
    // the server had to cut a frame short.
    let close = slow.recv_close().await;
    assert!(close.as_ref().is_none_or(|c| c.code.0 == 1013), "{close:?}");
}

#[tokio::test]
async fn pings_keepalive_and_idle_timeouts() {
    let (errors_tx, mut errors) = mpsc::unbounded_channel::<String>();
    let hooks = echo().error(move |_peer: Peer, error: Error| {
        let errors_tx = errors_tx.clone();
        async move {
            let _ = errors_tx.send(error.to_string());
        }
    });
    let config = WsConfig::default()
        .ping_interval(Some(Duration::from_millis(100)))
        .keepalive_timeout(Some(Duration::from_millis(400)));
    let server = serve(Switchboard::new().ws_with_config("/ws", hooks, config)).await;
    // A client that never answers: pings arrive, then the keep-alive close.
    let mut silent = TestClient::connect(server.local_addr(), "/ws").await;
    let mut pings = 0;
    let close = loop {
        match silent.next_event().await {
            Some(Event::Ping(_)) => pings += 1,
            Some(Event::Close(frame)) => break frame,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(pings >= 2, "{pings} pings");
    assert_eq!(close.map(|c| c.code.0), Some(1011));
    assert!(errors.recv().await.is_some_and(|e| e.contains("keep-alive timeout")));

    let idle = WsConfig::default().idle_timeout(Some(Duration::from_millis(300)));
    let server = serve(Switchboard::new().ws_with_config("/ws", echo(), idle)).await;
    let mut client = TestClient::connect(server.local_addr(), "/ws").await;
    let started = std::time::Instant::now();
    let close = client.recv_close().await.expect("close frame");
    assert_eq!((close.code.0, close.reason.as_str()), (1000, "idle timeout"));
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[tokio::test]
async fn plain_http_goes_to_the_fallback_and_other_routes_are_served() {
    let app = Switchboard::new()
        .ws_with_fallback("/ws", echo(), axum::routing::get(|| async { "fallback page" }))
        .ws("/bare", echo())
        .merge(axum::Router::new().route("/health", axum::routing::get(|| async { "ok" })));
    let server = serve(app).await;
    let get = |path: &'static str| {
        let addr = server.local_addr();
        async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            stream
                .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
                .await
                .expect("write");
            let mut response = String::new();
            stream.read_to_string(&mut response).await.expect("read");
            response
        }
    };
    assert!(get("/ws").await.ends_with("fallback page"));
    assert!(get("/health").await.ends_with("ok"));
    let bare = get("/bare").await;
    assert!(bare.starts_with("HTTP/1.1 426"), "{bare}");
    assert!(get("/missing").await.starts_with("HTTP/1.1 404"));
    let mut client = TestClient::connect(server.local_addr(), "/ws").await;
    client.send_text("upgrade still works").await;
    assert_eq!(client.recv_text().await, "upgrade still works");
}

#[tokio::test]
async fn mounts_in_a_plain_axum_router() {
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    let hooks = define_hooks().open(move |peer: Peer| {
        let counter = counter.clone();
        async move {
            assert!(peer.remote_addr().is_some_and(|a| a.ip().is_loopback()));
            counter.fetch_add(1, Ordering::SeqCst);
            peer.send_text("hello from axum")
        }
    });
    let router = axum::Router::new()
        .route("/", axum::routing::get(|| async { "index" }))
        .route("/ws", switchboard::axum::ws(hooks));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>()).await
    });
    let mut client = TestClient::connect(addr, "/ws").await;
    assert_eq!(client.recv_text().await, "hello from axum");
    assert_eq!(seen.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn graceful_shutdown_sends_1001_and_waits_for_the_close_handshake() {
    let server = serve(Switchboard::new().ws("/ws", echo()).shutdown_grace(Duration::from_secs(2))).await;
    let addr = server.local_addr();
    let mut polite = TestClient::connect(addr, "/ws").await;
    let mut rude = TestClient::connect(addr, "/ws").await;
    let shutdown = tokio::spawn(server.shutdown());
    let close = polite.recv_close().await.expect("close frame");
    assert_eq!(close.code.0, 1001);
    polite.close(1001, "").await;
    polite.expect_eof().await;
    // The rude peer never answers; it is dropped after the grace period.
    assert_eq!(rude.recv_close().await.map(|c| c.code.0), Some(1001));
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(10), shutdown).await.expect("shutdown finishes").expect("join");
    assert!(started.elapsed() < Duration::from_secs(8));
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "no longer accepting");
}

#[tokio::test]
async fn frames_sent_right_behind_the_handshake_are_not_lost() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = serve(Switchboard::new().ws("/ws", echo())).await;
    let mut stream = tokio::net::TcpStream::connect(server.local_addr()).await.expect("connect");
    // The handshake and a masked "hi" frame in one write.
    let mut bytes = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        .to_vec();
    bytes.extend(switchboard::wire::encode_raw_frame(0x81, Some([1, 2, 3, 4]), b"hi"));
    stream.write_all(&bytes).await.expect("write");
    let mut received = Vec::new();
    let mut chunk = [0u8; 512];
    while !received.ends_with(&[0x81, 0x02, b'h', b'i']) {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .expect("in time")
            .expect("read");
        assert!(n > 0, "closed before the echo: {:?}", String::from_utf8_lossy(&received));
        received.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn a_dropped_server_keeps_serving() {
    let addr = serve(Switchboard::new().ws("/echo", echo())).await.local_addr();
    // The Server handle is gone: the server is not.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut client = TestClient::connect(addr, "/echo").await;
    client.send_text("still here").await;
    assert_eq!(client.recv_text().await, "still here");
}

#[tokio::test]
async fn routes_and_peers_count_their_messages_bytes_and_close_codes() {
    let app = Switchboard::new().ws("/echo", echo()).ws("/quiet", define_hooks());
    let hub = app.hub();
    let server = serve(app).await;
    let mut client = TestClient::connect(server.local_addr(), "/echo").await;
    client.send_text("hello").await;
    assert_eq!(client.recv_text().await, "hello");
    client.send_binary(&[1, 2, 3]).await;
    assert!(matches!(client.next_event().await, Some(Event::Message(_, data)) if data.len() == 3));
    let peer = server.peers().into_iter().next().expect("the peer");
    assert_eq!(peer.route(), "/echo");
    let stats = peer.stats();
    assert_eq!((stats.traffic.messages_in, stats.traffic.bytes_in), (2, 8));
    assert_eq!((stats.traffic.messages_out, stats.traffic.bytes_out), (2, 8));
    assert!(stats.connected_at <= std::time::SystemTime::now());
    let open = hub.endpoints();
    assert_eq!(open.iter().map(|e| (e.path.as_str(), e.open)).collect::<Vec<_>>(), [("/echo", 1), ("/quiet", 0)]);
    client.close(4005, "done").await;
    let _ = client.recv_close().await;
    // The close hook runs before the peer leaves its route: wait for the totals to move.
    for _ in 0..100 {
        if hub.endpoints()[0].open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let echo = &hub.endpoints()[0];
    assert_eq!((echo.open, echo.connections), (0, 1));
    assert_eq!(echo.traffic.messages_in, 2, "the totals keep what the peers that left did");
    assert_eq!(echo.traffic.bytes_out, 8);
    assert_eq!(echo.close_codes.get(&4005), Some(&1));
}
