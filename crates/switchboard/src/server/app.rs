//! `Switchboard`: routes WebSocket paths to hooks, serves them, and shuts down gracefully.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::MethodRouter;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use switchboard_wire::CloseCode;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tower::ServiceExt;

use super::config::WsConfig;
use super::door::{Door, DoorStats, Held, ServerConfig};
use super::endpoint::Endpoint;
use super::hooks::{erase, Hooks};
use super::peer::{Peer, PeerSet};
use super::stats::{EndpointStats, Route};
use super::tls::TlsConfig;
use crate::pubsub::{Broker, Hub, Inbox, PubSubConfig, Topics};

/// State shared by every route and connection of one server.
#[derive(Default)]
pub(crate) struct AppShared {
    peers: PeerSet,
    shutting_down: AtomicBool,
    peer_left: Notify,
    pub(crate) topics: Topics,
    pub(crate) incomplete: IncompleteBudget,
    background_started: AtomicBool,
    routes: std::sync::Mutex<Vec<Arc<Route>>>,
    door: std::sync::OnceLock<Arc<Door>>,
}

/// Default server-wide budget for bytes held in incomplete incoming messages.
pub const DEFAULT_MAX_INCOMPLETE_BYTES: usize = 64 << 20;

/// Bytes held in incomplete incoming messages (partial frames, fragments) by all connections together,
/// and the budget for them.
pub(crate) struct IncompleteBudget {
    held: AtomicUsize,
    budget: AtomicUsize,
}

impl Default for IncompleteBudget {
    fn default() -> Self {
        Self { held: AtomicUsize::new(0), budget: AtomicUsize::new(DEFAULT_MAX_INCOMPLETE_BYTES) }
    }
}

/// The budget was exceeded.
pub(crate) struct OverBudget {
    pub(crate) total: usize,
    pub(crate) budget: usize,
}

impl IncompleteBudget {
    /// A connection's holding went from `before` to `now`. Returns the excess when it grew and the total
    /// is now past the budget (the caller then closes the connection, which releases what it holds).
    pub(crate) fn update(&self, before: usize, now: usize) -> Option<OverBudget> {
        if now == before {
            // The common case on every read: nothing held before or after. One counter is shared by
            // every connection; touching it here would make each read contend for it.
            return None;
        }
        if now < before {
            self.held.fetch_sub(before - now, Ordering::AcqRel);
            return None;
        }
        let total = self.held.fetch_add(now - before, Ordering::AcqRel) + (now - before);
        let budget = self.budget.load(Ordering::Relaxed);
        (total > budget).then_some(OverBudget { total, budget })
    }

    /// A connection that held `bytes` is gone.
    pub(crate) fn release(&self, bytes: usize) {
        if bytes > 0 {
            self.held.fetch_sub(bytes, Ordering::AcqRel);
        }
    }
}

impl AppShared {
    pub(crate) fn peers(&self) -> Vec<Peer> {
        self.peers.list()
    }

    /// A new route at `path` (empty when not known: an axum route).
    pub(crate) fn add_route(&self, path: &str) -> Arc<Route> {
        let route = Arc::new(Route::new(path));
        self.routes.lock().unwrap_or_else(|p| p.into_inner()).push(route.clone());
        route
    }

    /// The door's counts, once the server is serving.
    pub(crate) fn door(&self) -> Option<DoorStats> {
        self.door.get().map(|door| door.stats())
    }

    /// Every route's peers and traffic, in the order they were added.
    pub(crate) fn endpoints(&self) -> Vec<EndpointStats> {
        let routes = self.routes.lock().unwrap_or_else(|p| p.into_inner()).clone();
        routes.iter().map(|route| route.stats()).collect()
    }

    pub(crate) fn register(&self, peer: &Peer) {
        self.peers.insert(peer);
    }

    pub(crate) fn unregister(&self, peer: &Peer) {
        self.peers.remove(&peer.id());
        self.peer_left.notify_waiters();
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Refuses new upgrades (503), sends 1001 to every peer, and waits up to `grace` for their close
    /// handshakes; peers still open after that are dropped.
    pub(crate) async fn shutdown(&self, grace: Duration) {
        self.shutting_down.store(true, Ordering::Release);
        for peer in self.peers.list() {
            let _ = peer.close(CloseCode::GOING_AWAY.0, "server shutting down");
        }
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let left = self.peer_left.notified();
            if self.peers.len() == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, left).await.is_err() {
                let stragglers = self.peers.list();
                tracing::warn!(count = stragglers.len(), "peers did not close in time: dropping them");
                for peer in stragglers {
                    peer.terminate();
                }
                break;
            }
        }
    }

    /// Starts the server's housekeeping (history expiry, removal of unused topics) once, on the
    /// current tokio runtime. It ends when the server is dropped.
    pub(crate) fn start_background(self: &Arc<Self>) {
        if self.background_started.load(Ordering::Acquire) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        if !self.background_started.swap(true, Ordering::AcqRel) {
            runtime.spawn(crate::pubsub::sweep_loop(Arc::downgrade(self)));
        }
    }
}

/// A WebSocket server: paths mapped to hooks, plus any other axum routes.
///
/// ```no_run
/// use switchboard::{define_hooks, Switchboard};
///
/// # async fn run() -> std::io::Result<()> {
/// let app = Switchboard::new().ws(
///     "/chat",
///     define_hooks().message(|peer: switchboard::Peer, msg: switchboard::Message| async move {
///         if msg.text()? == "ping" {
///             peer.send("pong")?;
///         }
///         Ok::<_, switchboard::BoxError>(())
///     }),
/// );
/// app.listen("127.0.0.1:3333").await
/// # }
/// ```
pub struct Switchboard {
    router: Router,
    config: WsConfig,
    server_config: ServerConfig,
    shared: Arc<AppShared>,
    shutdown_grace: Duration,
}

impl Default for Switchboard {
    fn default() -> Self {
        Self::new()
    }
}

impl Switchboard {
    /// A server with no routes and default limits.
    pub fn new() -> Self {
        Self {
            router: Router::new(),
            config: WsConfig::default(),
            server_config: ServerConfig::default(),
            shared: Arc::default(),
            shutdown_grace: Duration::from_secs(10),
        }
    }

    /// Sets the limits and timers for the routes added after this call.
    pub fn config(mut self, config: WsConfig) -> Self {
        self.config = config;
        self
    }

    /// Sets the limits at the door: connections in total and per client address, new connections per
    /// second per address, and the request head's deadline and size (see [`ServerConfig`]; on by
    /// default). They apply when this server accepts connections (`bind`, `serve`), not to routes
    /// mounted in another HTTP server.
    pub fn server_config(mut self, config: ServerConfig) -> Self {
        self.server_config = config;
        self
    }

    /// The budget for bytes held in incomplete incoming messages (partial frames and fragments) by all
    /// connections together (default 64 MiB). A connection whose input takes the total past it is closed
    /// with 1013 (try again later), or 1009 if its message alone is larger than the budget; every other
    /// connection carries on. Each message is also bounded by `WsConfig::max_message_size` and must be
    /// complete within `WsConfig::message_timeout`.
    pub fn max_incomplete_bytes(self, bytes: usize) -> Self {
        self.shared.incomplete.budget.store(bytes, Ordering::Relaxed);
        self
    }

    /// How long `shutdown` waits for peers to finish their close handshake (default 10 s).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Serves `hooks` at `path` (crossws' and Spry's `app.ws(path, hooks)`). A plain GET without an
    /// upgrade gets 426 with an explanation.
    pub fn ws(self, path: &str, hooks: impl Hooks) -> Self {
        let config = self.config.clone();
        self.route_ws(path, hooks, config, None)
    }

    /// Like `ws`, with limits for this route only.
    pub fn ws_with_config(self, path: &str, hooks: impl Hooks, config: WsConfig) -> Self {
        self.route_ws(path, hooks, config, None)
    }

    /// Like `ws`, and a plain HTTP request on `path` goes to `fallback` (Spry's `app.ws(path, hooks,
    /// fallback)`), e.g. `axum::routing::get(|| async { "a page" })`.
    pub fn ws_with_fallback(self, path: &str, hooks: impl Hooks, fallback: MethodRouter) -> Self {
        let config = self.config.clone();
        self.route_ws(path, hooks, config, Some(fallback))
    }

    fn route_ws(mut self, path: &str, hooks: impl Hooks, config: WsConfig, fallback: Option<MethodRouter>) -> Self {
        let endpoint = Endpoint {
            hooks: erase(hooks),
            config: Arc::new(config),
            route: self.shared.add_route(path),
            app: self.shared.clone(),
            fallback,
        };
        self.router = self.router.route(path, endpoint.into_method_router());
        self
    }

    /// Adds ordinary HTTP routes (pages, APIs) served beside the WebSocket routes.
    pub fn merge(mut self, router: Router) -> Self {
        self.router = self.router.merge(router);
        self
    }

    /// Every open peer, on every route.
    pub fn peers(&self) -> Vec<Peer> {
        self.shared.peers.list()
    }

    /// Sets the pub/sub limits, slow-consumer policy and history.
    pub fn pubsub(self, config: PubSubConfig) -> Self {
        *self.shared.topics.config.write().unwrap_or_else(|p| p.into_inner()) = config;
        self
    }

    /// Connects this server to other nodes through `broker` (default: one node, in memory). Starts
    /// the broker, so it must be called inside a tokio runtime.
    pub fn broker(self, broker: impl Broker) -> Self {
        let broker: Arc<dyn Broker> = Arc::new(broker);
        broker.start(Inbox { app: Arc::downgrade(&self.shared) });
        self.shared.topics.set_broker(broker);
        self
    }

    /// A handle for publishing to topics from anywhere.
    pub fn hub(&self) -> Hub {
        Hub { app: self.shared.clone() }
    }

    /// The routes as an axum `Router`, to mount in an existing application (served with
    /// `axum::serve(...).with_upgrades()` semantics: `axum::serve` supports upgrades).
    pub fn into_router(self) -> Router {
        self.router
    }

    /// Binds `addr` and serves in the background. The returned `Server` tells the address and shuts down.
    pub async fn bind(self, addr: impl ToSocketAddrs) -> std::io::Result<Server> {
        let listener = TcpListener::bind(addr).await?;
        Ok(self.serve(listener, None))
    }

    /// Binds `addr` and serves wss:// (TLS) in the background.
    pub async fn bind_tls(self, addr: impl ToSocketAddrs, tls: TlsConfig) -> std::io::Result<Server> {
        let listener = TcpListener::bind(addr).await?;
        Ok(self.serve(listener, Some(tls)))
    }

    /// Serves on `addr` until SIGINT (Ctrl-C) or SIGTERM, then shuts down gracefully.
    pub async fn listen(self, addr: impl ToSocketAddrs) -> std::io::Result<()> {
        self.bind(addr).await?.run_until_signal().await;
        Ok(())
    }

    /// Serves wss:// on `addr` until SIGINT or SIGTERM, then shuts down gracefully.
    pub async fn listen_tls(self, addr: impl ToSocketAddrs, tls: TlsConfig) -> std::io::Result<()> {
        self.bind_tls(addr, tls).await?.run_until_signal().await;
        Ok(())
    }

    /// Serves on an already bound listener.
    pub fn serve(self, listener: TcpListener, tls: Option<TlsConfig>) -> Server {
        let local_addr = listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (stop_tx, stop_rx) = watch::channel(false);
        let router = self.router;
        self.shared.start_background();
        let door = Arc::new(Door::new(self.server_config));
        let door = self.shared.door.get_or_init(|| door).clone();
        let accept = tokio::spawn(accept_loop(listener, tls, router, stop_rx, door));
        tracing::info!(%local_addr, "listening");
        Server { local_addr, shared: self.shared, stop: stop_tx, accept, grace: self.shutdown_grace }
    }
}

/// A running server. Dropping it leaves the server running in the background (like dropping a tokio
/// `JoinHandle`); call [`Server::shutdown`] or [`Server::run_until_signal`] to stop it.
#[must_use = "dropping the Server leaves it running with no way to shut it down; await run_until_signal() or keep it for shutdown()"]
pub struct Server {
    local_addr: SocketAddr,
    shared: Arc<AppShared>,
    stop: watch::Sender<bool>,
    accept: JoinHandle<()>,
    grace: Duration,
}

impl Server {
    /// The bound address (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Every open peer.
    pub fn peers(&self) -> Vec<Peer> {
        self.shared.peers.list()
    }

    /// A handle for publishing to topics from anywhere.
    pub fn hub(&self) -> Hub {
        Hub { app: self.shared.clone() }
    }

    /// Waits for SIGINT or SIGTERM, then shuts down gracefully. The handlers are installed when this
    /// is called, not when the future is first polled: a signal that arrives in between (say, right
    /// after the process announced that it listens) is not lost to the default action.
    pub fn run_until_signal(self) -> impl std::future::Future<Output = ()> + Send {
        let signal = wait_for_signal();
        async move {
            signal.await;
            tracing::info!("signal received: shutting down");
            self.shutdown().await;
        }
    }

    /// Stops accepting, sends 1001 to every peer, and waits (up to the grace period) for their close
    /// handshakes; peers still open after that are dropped.
    pub async fn shutdown(self) {
        self.shared.shutting_down.store(true, Ordering::Release);
        let _ = self.stop.send(true);
        let _ = self.accept.await;
        self.shared.shutdown(self.grace).await;
        tracing::info!("shut down");
    }
}

/// Installs the SIGINT and SIGTERM handlers now and returns a future that resolves on either.
fn wait_for_signal() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let (Ok(mut interrupt), Ok(mut terminate)) =
            (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
        {
            return Box::pin(async move {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
            });
        }
    }
    Box::pin(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

/// Resolves when shutdown was asked for; never when the `Server` was merely dropped.
async fn stop_requested(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsConfig>,
    router: Router,
    mut stop: watch::Receiver<bool>,
    door: Arc<Door>,
) {
    let mut failures = AcceptFailures::default();
    let mut sweep = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = stop_requested(&mut stop) => {
                failures.stopped();
                return;
            }
            _ = sweep.tick() => door.sweep(),
            accepted = listener.accept() => match accepted {
                Ok((stream, addr)) => {
                    failures.recovered();
                    let admitted = match door.admit(addr.ip()) {
                        Ok(admitted) => Held(admitted),
                        Err(refusal) => {
                            tracing::debug!(%addr, ?refusal, "connection refused at the door");
                            // A TLS client could read an answer only after a handshake, which is what
                            // the door saves: it is closed at once.
                            if tls.is_none() {
                                tokio::spawn(refuse(stream, door.answer(refusal)));
                            }
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let router = router.clone();
                    let stop = stop.clone();
                    let config = door.config.clone();
                    match &tls {
                        None => {
                            tokio::spawn(serve_http(stream, addr, router, stop, admitted, config));
                        }
                        Some(tls) => {
                            let acceptor = tls.acceptor();
                            tokio::spawn(async move {
                                match tokio::time::timeout(config.tls_handshake_timeout, acceptor.accept(stream)).await {
                                    Ok(Ok(stream)) => serve_http(stream, addr, router, stop, admitted, config).await,
                                    Ok(Err(error)) => tracing::debug!(%addr, %error, "TLS handshake failed"),
                                    Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
                                }
                            });
                        }
                    }
                }
                Err(error) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    let pause = failures.failed(&error);
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }
}

/// Answers a connection refused at the door and closes it (without reading what it sent).
async fn refuse(mut stream: tokio::net::TcpStream, answer: String) {
    use tokio::io::AsyncWriteExt;
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

async fn serve_http<IO>(
    io: IO,
    addr: SocketAddr,
    router: Router,
    mut stop: watch::Receiver<bool>,
    admitted: Held,
    config: ServerConfig,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(addr));
        // An upgraded connection outlives this HTTP connection: its peer keeps the admission.
        request.extensions_mut().insert(admitted.clone());
        router.clone().oneshot(request.map(Body::new))
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.request_head_timeout)
        .max_header_size(config.max_request_head_bytes)
        .max_buf_size(config.max_request_head_bytes.max(8192));
    // Hyper keeps 100 header slots on the stack; another count moves them to the heap.
    if config.max_headers != 100 {
        builder.max_headers(config.max_headers);
    }
    let connection = builder.serve_connection(TokioIo::new(io), service).with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%addr, %error, "HTTP connection ended with an error");
            }
        }
        () = stop_requested(&mut stop) => {
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), connection).await;
        }
    }
}

/// An episode of failing accepts (out of file descriptors, say): one warning when it starts, one line
/// when it ends, with the count; the pause between attempts grows from 10 ms to 1 s.
#[derive(Default)]
struct AcceptFailures {
    count: u64,
    since: Option<std::time::Instant>,
}

impl AcceptFailures {
    fn failed(&mut self, error: &std::io::Error) -> Duration {
        self.count += 1;
        if self.since.is_none() {
            self.since = Some(std::time::Instant::now());
            tracing::warn!(%error, "accept failed: backing off until connections can be accepted again");
        }
        Duration::from_millis(10u64.saturating_mul(1 << self.count.min(7)).min(1000))
    }

    fn recovered(&mut self) {
        if let Some(since) = self.since.take() {
            tracing::warn!(failures = self.count, seconds = since.elapsed().as_secs_f64(), "accepting again");
            self.count = 0;
        }
    }

    /// Shutdown ends an episode still under way: its closing line is written then.
    fn stopped(&self) {
        if let Some(since) = self.since {
            tracing::warn!(
                failures = self.count,
                seconds = since.elapsed().as_secs_f64(),
                "stopped accepting while accepts were failing"
            );
        }
    }
}
