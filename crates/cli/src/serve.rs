//! `switchboard serve`: the server with the demo endpoints.

use std::net::IpAddr;
use std::time::Duration;

use switchboard::pubsub::{HistoryConfig, PubSubConfig};
use switchboard::sync::{Collection, EntityStore, PostgresStore, SqliteStore, SyncHub};
use switchboard::wire::deflate::DeflateConfig;
use switchboard::{RateLimitPolicy, ServerConfig, Switchboard, TlsConfig, WsConfig};
use switchboard_script::{EngineConfig, Project, ProjectConfig, ProjectFiles};

#[path = "../../../examples/chat.rs"]
mod chat;
#[path = "../../../examples/echo.rs"]
mod echo;

/// Options of `switchboard serve`.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// Project folder: every `*.websocket` descriptor under it is served at
    /// /websockets/v4/service/<endpoint> with its JavaScript handler (default: the built-in demo project).
    #[arg(value_name = "DIR")]
    dir: Option<std::path::PathBuf>,
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
    /// Publications each topic keeps for recovery (`/chat?since=EPOCH:OFFSET`); 0 keeps none. With
    /// --broker the history lives in Redis and is shared by every node.
    #[arg(long, value_name = "N", default_value_t = 100, env = "SWITCHBOARD_HISTORY")]
    history: usize,
    /// Seconds a publication stays in the history.
    #[arg(long, value_name = "SECONDS", default_value_t = 300, env = "SWITCHBOARD_HISTORY_TTL")]
    history_ttl: u64,
    /// MiB that the history of all rooms together may hold in memory (without --broker); the oldest
    /// publications are evicted first.
    #[arg(long, value_name = "MIB", default_value_t = 64, env = "SWITCHBOARD_HISTORY_MAX_MIB")]
    history_max_mib: usize,
    /// MiB that incomplete incoming messages may hold, all connections together; the connection that
    /// goes past it is closed with 1013 (1009 if its message alone is larger).
    #[arg(long, value_name = "MIB", default_value_t = 64, env = "SWITCHBOARD_MAX_INCOMPLETE_MIB")]
    max_incomplete_mib: usize,
    /// Seconds a client has to complete a message once it started sending it (1008 after that).
    #[arg(long, value_name = "SECONDS", default_value_t = 60, env = "SWITCHBOARD_MESSAGE_TIMEOUT")]
    message_timeout: u64,
    /// MiB each script endpoint's JavaScript runtime may allocate.
    #[arg(long, value_name = "MIB", default_value_t = 64, env = "SWITCHBOARD_SCRIPT_MEMORY_MIB")]
    script_memory_mib: usize,
    /// Milliseconds of CPU time a script handler may take per event.
    #[arg(long, value_name = "MS", default_value_t = 1000, env = "SWITCHBOARD_SCRIPT_CPU_MS")]
    script_cpu_ms: u64,
    /// Hosts that scripts' outbound clients may reach (exact, or *.domain; repeatable). Default: any.
    #[arg(long = "allow-outbound", value_name = "PATTERN")]
    allow_outbound: Vec<String>,
    /// Folder of the embedded database (SQLite) that keeps the synced collections at /sync/<collection>.
    #[arg(long, value_name = "DIR", default_value = "switchboard-data", env = "SWITCHBOARD_DATA")]
    data: std::path::PathBuf,
    /// A PostgreSQL database for the synced collections instead of the embedded SQLite
    /// (postgres://user@host:port/db): every node given the same one serves the same collections,
    /// and changes reach subscribers on every node.
    #[arg(long, value_name = "URL", env = "SWITCHBOARD_DATABASE")]
    database: Option<String>,
    /// Changes each synced collection's log keeps for clients that resume with `since` (older ones
    /// are pruned; a client further behind refetches).
    #[arg(long, value_name = "N", default_value_t = switchboard::sync::DEFAULT_LOG_LIMIT, env = "SWITCHBOARD_SYNC_LOG")]
    sync_log: u64,
    /// Connections held at once, WebSocket and HTTP together (0: no limit); past it new ones get 503.
    #[arg(long, value_name = "N", default_value_t = 10_000, env = "SWITCHBOARD_MAX_CONNECTIONS")]
    max_connections: usize,
    /// Connections held at once from one client address (0: no limit); past it, 429.
    #[arg(long, value_name = "N", default_value_t = 256, env = "SWITCHBOARD_MAX_CONNECTIONS_PER_IP")]
    max_connections_per_ip: usize,
    /// New connections per second from one client address (0: no limit); past it, 429.
    #[arg(long, value_name = "N", default_value_t = 50, env = "SWITCHBOARD_CONNECTIONS_PER_SECOND_PER_IP")]
    connections_per_second_per_ip: u32,
    /// Seconds a client has to send its request head (and to finish a TLS handshake).
    #[arg(long, value_name = "SECONDS", default_value_t = 10, env = "SWITCHBOARD_REQUEST_HEAD_TIMEOUT")]
    request_head_timeout: u64,
    /// Messages per second one peer may send, with a burst of as many (0: no limit); past it the peer
    /// is closed with 1008 (or, with --rate-limit-policy drop, the messages are dropped and counted).
    #[arg(long, value_name = "N", default_value_t = 2_000, env = "SWITCHBOARD_MAX_MESSAGES_PER_SECOND")]
    max_messages_per_second: u32,
    /// Payload MiB per second one peer may send (0: no limit; the burst is a second's worth).
    #[arg(long, value_name = "MIB", default_value_t = 128, env = "SWITCHBOARD_MAX_MIB_PER_SECOND")]
    max_mib_per_second: u64,
    /// What happens past a peer's message or byte rate: close (1008) or drop.
    #[arg(long, value_name = "POLICY", default_value = "close", value_parser = ["close", "drop"])]
    rate_limit_policy: String,
    /// Pings per second one peer may send; past it, 1008 "ping flood".
    #[arg(long, value_name = "N", default_value_t = 50, env = "SWITCHBOARD_MAX_PINGS_PER_SECOND")]
    max_pings_per_second: u32,
    /// Web pages that may open sockets here, by Origin (repeatable): a whole origin
    /// (https://app.example.com), a host, *.example.com or *. Default: any. This server's own pages
    /// are always allowed; others get 403.
    #[arg(long = "allowed-origin", value_name = "PATTERN")]
    allowed_origins: Vec<String>,
    /// Refuse upgrades without an Origin header (clients that are not browsers) with 403.
    #[arg(long)]
    require_origin: bool,
    /// Apply the per-address limits to loopback clients too (by default they are exempt: behind a
    /// proxy on the same host every client is a loopback client).
    #[arg(long)]
    limit_loopback: bool,
    /// The token that opens the dashboard (/), /api and /metrics: as `Authorization: Bearer TOKEN` or
    /// through the login form's cookie. Required when listening beyond loopback (without it they are
    /// refused with 401); on loopback without one they are open.
    #[arg(long, value_name = "TOKEN", env = "SWITCHBOARD_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
}

/// The demo project served when no DIR is given.
const DEMO_PROJECT: &[(&str, &str)] = &[
    ("demo/shout.websocket", include_str!("../demo/demo/shout.websocket")),
    ("demo/shout.js", include_str!("../demo/demo/shout.js")),
    ("my-endpoint.websocket", include_str!("../demo/my-endpoint.websocket")),
    ("my-project/ws-handler.js", include_str!("../demo/my-project/ws-handler.js")),
];

/// The project files: DIR, or the built-in demo.
fn project_files(dir: Option<&std::path::Path>) -> Result<ProjectFiles, String> {
    match dir {
        None => Ok(ProjectFiles::embedded(DEMO_PROJECT)),
        Some(dir) => {
            let root = dir.canonicalize().map_err(|e| format!("project folder {}: {e}", dir.display()))?;
            if !root.is_dir() {
                return Err(format!("project folder {}: not a folder", dir.display()));
            }
            Ok(ProjectFiles::Dir(root))
        }
    }
}

/// The limits at the door, from the flags (0 turns one off).
fn door(args: &ServeArgs) -> ServerConfig {
    let head = Duration::from_secs(args.request_head_timeout.max(1));
    ServerConfig {
        max_connections: Some(args.max_connections).filter(|n| *n > 0),
        max_connections_per_ip: Some(args.max_connections_per_ip).filter(|n| *n > 0),
        connections_per_second_per_ip: std::num::NonZeroU32::new(args.connections_per_second_per_ip),
        request_head_timeout: head,
        tls_handshake_timeout: head,
        exempt_loopback: !args.limit_loopback,
        ..ServerConfig::default()
    }
}

pub async fn run(args: ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    // Browsers always offer permessage-deflate; the demo endpoints accept it (the library default is off).
    // Without server context takeover a chat publication is compressed once for every member, and no
    // connection keeps a compression window between messages.
    let deflate = DeflateConfig { server_no_context_takeover: true, ..DeflateConfig::default() };
    let mut config = WsConfig::default()
        .compression(Some(deflate))
        .message_timeout(Some(Duration::from_secs(args.message_timeout.max(1))));
    if !args.allowed_origins.is_empty() {
        config = config.allowed_origins(args.allowed_origins.clone());
    }
    config.require_origin = args.require_origin;
    let policy = if args.rate_limit_policy == "drop" { RateLimitPolicy::Drop } else { RateLimitPolicy::Close };
    let messages = Some(args.max_messages_per_second).filter(|n| *n > 0);
    let bytes = Some(args.max_mib_per_second.saturating_mul(1 << 20)).filter(|n| *n > 0);
    config = config.rate_limit(messages, bytes, policy);
    config.max_pings_per_second = args.max_pings_per_second.max(1);
    let mut app = Switchboard::new()
        .server_config(door(&args))
        .max_incomplete_bytes(args.max_incomplete_mib.saturating_mul(1 << 20));
    if let Some(url) = &args.broker {
        let broker = switchboard::pubsub::RedisBroker::new(url).map_err(|e| format!("--broker {url}: {e}"))?;
        app = app.broker(broker);
        tracing::info!(%url, "publications cross nodes through Redis");
    }
    if args.history > 0 {
        let history = HistoryConfig {
            size: args.history,
            ttl: Duration::from_secs(args.history_ttl.max(1)),
            max_bytes: args.history_max_mib.saturating_mul(1 << 20),
        };
        app = app.pubsub(PubSubConfig { history: Some(history), ..PubSubConfig::default() });
    }
    let files = project_files(args.dir.as_deref())?;
    let engine = EngineConfig {
        memory_limit: args.script_memory_mib.saturating_mul(1 << 20),
        cpu_limit: Duration::from_millis(args.script_cpu_ms.max(1)),
        ..EngineConfig::default()
    };
    let project = Project::open(files, ProjectConfig { engine, allowed_hosts: args.allow_outbound.clone() }).await;
    // Descriptors and handlers take effect as they are saved.
    let _watcher = switchboard_script::watch(project.clone())?;
    let store: std::sync::Arc<dyn EntityStore> = match &args.database {
        Some(url) => {
            let store = PostgresStore::connect(url, args.sync_log).await.map_err(|e| format!("--database: {e}"))?;
            tracing::info!("synced collections are in PostgreSQL");
            std::sync::Arc::new(store)
        }
        None => {
            std::fs::create_dir_all(&args.data).map_err(|e| format!("--data {}: {e}", args.data.display()))?;
            std::sync::Arc::new(SqliteStore::open_with_log_limit(args.data.join("sync.sqlite3"), args.sync_log)?)
        }
    };
    // Any collection name, schemaless JSON entities.
    let sync = SyncHub::with_store(store).any_collection(Collection::new());
    let app = app.config(config).sync("/sync", sync.clone()).ws("/echo", echo::hooks()).ws("/chat", chat::hooks());
    let app = switchboard_script::mount(app, project.clone());
    let admin = crate::web::Admin::new(args.admin_token.clone(), args.host.is_loopback());
    let app = crate::web::mount(app, project, sync, admin);
    let addr = std::net::SocketAddr::from((args.host, args.port));
    let cannot_listen = |error: std::io::Error| format!("cannot listen on {addr}: {error}");
    let (server, scheme) = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let tls = TlsConfig::from_pem_files(cert, key)?;
            (app.bind_tls(addr, tls).await.map_err(cannot_listen)?, "wss")
        }
        _ => (app.bind(addr).await.map_err(cannot_listen)?, "ws"),
    };
    let local = server.local_addr();
    let http = if scheme == "wss" { "https" } else { "http" };
    // Signal handlers first: whoever reads the line below may send SIGTERM at once.
    let running = server.run_until_signal();
    println!(
        "Switchboard listening on {http}://{local}  (dashboard {http}://{local}/, demos {http}://{local}/demo/chat and /demo/store; {scheme}://{local}/echo, {scheme}://{local}/chat)"
    );
    running.await;
    Ok(())
}
