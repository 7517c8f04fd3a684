//! `switchboard serve`: the server with the demo endpoints.

use std::net::IpAddr;

use axum::routing::get;
use switchboard::wire::deflate::DeflateConfig;
use switchboard::{Switchboard, TlsConfig, WsConfig};

#[path = "../../../examples/chat.rs"]
mod chat;
#[path = "../../../examples/echo.rs"]
mod echo;

/// Options of `switchboard serve`.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1", env = "SWITCHBOARD_HOST")]
    host: IpAddr,
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 3333, env = "SWITCHBOARD_PORT")]
    port: u16,
    /// PEM certificate chain: serve wss:// (with --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Connect to other nodes through Redis (e.g. redis://127.0.0.1:6379): /chat rooms span them.
    #[arg(long, value_name = "URL", env = "SWITCHBOARD_BROKER")]
    broker: Option<String>,
}

const INDEX: &str = "Switchboard is running.\n\nWebSocket endpoints:\n  /echo  every message comes back to its sender\n  /chat  every message goes to everyone else in the room (/chat?room=NAME, default lobby)\n";

pub async fn run(args: ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    // Browsers always offer permessage-deflate; the demo endpoints accept it (the library default is off).
    let config = WsConfig::default().compression(Some(DeflateConfig::default()));
    let mut app = Switchboard::new();
    if let Some(url) = &args.broker {
        let broker = switchboard::pubsub::RedisBroker::new(url).map_err(|e| format!("--broker {url}: {e}"))?;
        app = app.broker(broker);
        tracing::info!(%url, "publications cross nodes through Redis");
    }
    let app = app
        .config(config)
        .ws("/echo", echo::hooks())
        .ws("/chat", chat::hooks())
        .merge(axum::Router::new().route("/", get(|| async { INDEX })));
    let addr = (args.host, args.port);
    let (server, scheme) = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => (app.bind_tls(addr, TlsConfig::from_pem_files(cert, key)?).await?, "wss"),
        _ => (app.bind(addr).await?, "ws"),
    };
    let local = server.local_addr();
    let http = if scheme == "wss" { "https" } else { "http" };
    println!("Switchboard listening on {http}://{local}  ({scheme}://{local}/echo, {scheme}://{local}/chat)");
    server.run_until_signal().await;
    Ok(())
}
