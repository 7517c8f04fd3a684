//! Echo servers of every implementation under test, each on its own port, one per process: Switchboard,
//! and peers built from the Rust package registry with the same release profile.

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The implementations the harness knows.
pub const IMPLEMENTATIONS: &[&str] = &[
    "switchboard",
    "fastwebsockets",
    "tokio-websockets",
    "tokio-tungstenite",
    "tokio-tungstenite-tuned",
    "axum",
    "raw-tcp",
];

/// Runs the echo server `name` on `addr` until the process is killed.
pub async fn run(name: &str, addr: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    let listener = TcpListener::bind(addr).await?;
    println!("READY {}", listener.local_addr()?.port());
    match name {
        "switchboard" => switchboard_echo(listener).await,
        "switchboard-script" => script_echo(listener).await,
        "axum" => axum_echo(listener).await,
        other => {
            let kind = other.to_owned();
            loop {
                let (stream, _) = listener.accept().await?;
                let _ = stream.set_nodelay(true);
                let kind = kind.clone();
                tokio::spawn(async move {
                    let _ = match kind.as_str() {
                        "fastwebsockets" => fastwebsockets_echo(stream).await,
                        "tokio-websockets" => tokio_websockets_echo(stream).await,
                        "tokio-tungstenite" => tungstenite_echo(stream, false).await,
                        "tokio-tungstenite-tuned" => tungstenite_echo(stream, true).await,
                        "raw-tcp" => raw_echo(stream).await,
                        _ => Ok(()),
                    };
                });
            }
        }
    }
}

type Result2 = Result<(), Box<dyn std::error::Error + Send + Sync>>;

async fn switchboard_echo(listener: TcpListener) -> Result<(), Box<dyn std::error::Error>> {
    use switchboard::{define_hooks, Message, Peer, ServerConfig, Switchboard, WsConfig};
    // The echo handler never awaits, so it is written as the synchronous hook (no future per message).
    let hooks = define_hooks().message_sync(|peer: Peer, message: Message| peer.send(message));
    // Pings would only add noise to a benchmark.
    let config = WsConfig::default().ping_interval(None).keepalive_timeout(None);
    let server =
        Switchboard::new().server_config(ServerConfig::unlimited()).config(config).ws("/", hooks).serve(listener, None);
    server.run_until_signal().await;
    Ok(())
}

/// Echo through a script endpoint: `export function onMessage(m) { return m; }` in QuickJS.
async fn script_echo(listener: TcpListener) -> Result<(), Box<dyn std::error::Error>> {
    use switchboard::{ServerConfig, Switchboard, WsConfig};
    use switchboard_script::{Project, ProjectConfig, ProjectFiles};
    let files = ProjectFiles::embedded(&[
        ("echo.websocket", r#"{"endpoint": "echo", "handler": "echo"}"#),
        ("echo.js", "export function onMessage(message) { return message; }\n"),
    ]);
    let project = Project::open(files, ProjectConfig::default()).await;
    let config = WsConfig::default().ping_interval(None).keepalive_timeout(None);
    let hooks = switchboard_script::endpoint(project, "echo");
    let server =
        Switchboard::new().server_config(ServerConfig::unlimited()).config(config).ws("/", hooks).serve(listener, None);
    server.run_until_signal().await;
    Ok(())
}

async fn axum_echo(listener: TcpListener) -> Result<(), Box<dyn std::error::Error>> {
    use axum_ws::extract::ws::{Message, WebSocketUpgrade};
    let router = axum_ws::Router::new().route(
        "/",
        axum_ws::routing::get(|ws: WebSocketUpgrade| async move {
            ws.on_upgrade(|mut socket| async move {
                while let Some(Ok(message)) = socket.recv().await {
                    if matches!(message, Message::Text(_) | Message::Binary(_)) && socket.send(message).await.is_err() {
                        break;
                    }
                }
            })
        }),
    );
    axum_ws::serve(listener, router).await?;
    Ok(())
}

async fn fastwebsockets_echo(stream: TcpStream) -> Result2 {
    use fastwebsockets::{upgrade, FragmentCollector, OpCode};
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    let service = service_fn(|mut request: hyper::Request<hyper::body::Incoming>| async move {
        let (response, upgrade) = upgrade::upgrade(&mut request)?;
        tokio::spawn(async move {
            let Ok(ws) = upgrade.await else { return };
            let mut ws = FragmentCollector::new(ws);
            while let Ok(frame) = ws.read_frame().await {
                let echo = match frame.opcode {
                    OpCode::Close => break,
                    OpCode::Text | OpCode::Binary => ws.write_frame(frame).await,
                    _ => Ok(()),
                };
                if echo.is_err() {
                    break;
                }
            }
        });
        Ok::<_, fastwebsockets::WebSocketError>(response)
    });
    http1::Builder::new().serve_connection(TokioIo::new(stream), service).with_upgrades().await?;
    Ok(())
}

async fn tokio_websockets_echo(stream: TcpStream) -> Result2 {
    let (_request, mut ws) = tokio_websockets::ServerBuilder::new().accept(stream).await?;
    while let Some(Ok(message)) = ws.next().await {
        if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
            break;
        }
    }
    Ok(())
}

async fn tungstenite_echo(stream: TcpStream, tuned: bool) -> Result2 {
    use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
    // The default config zero-fills a 128 KiB read buffer on every read; the tuned one reads 4 KiB.
    let config = tuned.then(|| WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0));
    let mut ws = tokio_tungstenite::accept_async_with_config(stream, config).await?;
    while let Some(Ok(message)) = ws.next().await {
        if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
            break;
        }
    }
    Ok(())
}

/// No WebSocket at all: the bytes come back as they are (the floor any server pays).
async fn raw_echo(mut stream: TcpStream) -> Result2 {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n]).await?;
    }
}
