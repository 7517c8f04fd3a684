//! The fan-out scenario: one publisher, many subscribers on one topic. Switchboard's topics (a
//! publication framed once, the same bytes queued to every subscriber) against the usual way of
//! doing it with tokio-tungstenite: a loop that hands the message to every connection's task, each of
//! which frames and writes its own copy.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Fan-out servers: subscribers connect to `/`, the publisher to `/pub`.
pub const FANOUT_IMPLEMENTATIONS: &[&str] = &["switchboard-topics", "tokio-tungstenite-loop"];

/// Runs fan-out server `name` on `addr` until killed.
pub async fn serve(name: &str, addr: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    let listener = TcpListener::bind(addr).await?;
    println!("READY {}", listener.local_addr()?.port());
    match name {
        "switchboard-topics" => {
            use switchboard::{define_hooks, Message, Peer, PubSubConfig, ServerConfig, Switchboard, WsConfig};
            let subscriber = define_hooks().open(|peer: Peer| async move {
                peer.subscribe("fanout");
            });
            let publisher = define_hooks().message(|peer: Peer, message: Message| async move {
                peer.hub().publish("fanout", message);
            });
            let config = WsConfig::default().ping_interval(None).keepalive_timeout(None);
            // Subscribers that fall behind by a few MiB are fine here: the load reads everything.
            let pubsub = PubSubConfig { max_subscriber_queue: 64 << 20, ..PubSubConfig::default() };
            let server = Switchboard::new()
                .server_config(ServerConfig::unlimited())
                .config(config)
                .pubsub(pubsub)
                .ws("/", subscriber)
                .ws("/pub", publisher);
            server.serve(listener, None).run_until_signal().await;
            Ok(())
        }
        "tokio-tungstenite-loop" => {
            type Subscribers = Arc<Mutex<Vec<mpsc::UnboundedSender<tokio_tungstenite::tungstenite::Message>>>>;
            let subscribers: Subscribers = Arc::default();
            loop {
                let (stream, _) = listener.accept().await?;
                let _ = stream.set_nodelay(true);
                let subscribers = subscribers.clone();
                tokio::spawn(async move {
                    let mut path = String::new();
                    // The callback's error type is tungstenite's HTTP response; its size is theirs.
                    #[allow(clippy::result_large_err)]
                    let callback = |request: &tokio_tungstenite::tungstenite::handshake::server::Request, response| {
                        path = request.uri().path().to_owned();
                        Ok(response)
                    };
                    let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else { return };
                    let (mut sink, mut stream) = ws.split();
                    if path == "/pub" {
                        while let Some(Ok(message)) = stream.next().await {
                            if message.is_binary() || message.is_text() {
                                // The per-peer send loop.
                                let list = subscribers.lock().map(|l| l.clone()).unwrap_or_default();
                                for subscriber in list {
                                    let _ = subscriber.send(message.clone());
                                }
                            }
                        }
                    } else {
                        let (tx, mut rx) = mpsc::unbounded_channel();
                        if let Ok(mut list) = subscribers.lock() {
                            list.push(tx);
                        }
                        while let Some(message) = rx.recv().await {
                            if sink.send(message).await.is_err() {
                                break;
                            }
                        }
                    }
                });
            }
        }
        other => Err(format!("unknown fan-out server {other}").into()),
    }
}

/// Connects `subscribers`, then publishes `messages` of `size` bytes and measures how long until every
/// subscriber has all of them. Prints deliveries per second.
pub async fn load(
    addr: SocketAddr,
    subscribers: usize,
    messages: usize,
    size: usize,
) -> Result<f64, Box<dyn std::error::Error>> {
    let reply = crate::load::reply_len(size, false);
    let mut readers = Vec::with_capacity(subscribers);
    for index in 0..subscribers {
        let mut stream = crate::load::connect(addr, index).await?;
        crate::load::handshake_path(&mut stream, "/").await?;
        readers.push(stream);
    }
    // Let the server register every subscription.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut publisher = crate::load::connect(addr, subscribers).await?;
    crate::load::handshake_path(&mut publisher, "/pub").await?;
    let expected = reply * messages;
    let tasks: Vec<_> = readers
        .into_iter()
        .map(|mut stream| {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut got = 0usize;
                while got < expected {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return Err(got),
                        Ok(n) => got += n,
                    }
                }
                Ok(Instant::now())
            })
        })
        .collect();
    let frame = crate::load::masked_frame(size);
    let started = Instant::now();
    let mut batch = Vec::with_capacity(frame.len() * messages);
    for _ in 0..messages {
        batch.extend_from_slice(&frame);
    }
    publisher.write_all(&batch).await?;
    let mut last = started;
    for task in tasks {
        match tokio::time::timeout(Duration::from_secs(120), task).await {
            Ok(Ok(Ok(done))) => last = last.max(done),
            _ => return Err("a subscriber did not receive every publication".into()),
        }
    }
    Ok((subscribers * messages) as f64 / last.duration_since(started).as_secs_f64())
}
