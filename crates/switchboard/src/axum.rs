//! Mounting WebSocket hooks in an existing axum application.
//!
//! Every route made with [`ws`] belongs to one process-wide group: they share topics, the peer list and
//! shutdown, as routes of one [`Switchboard`](crate::Switchboard) do. [`hub`] reaches that group
//! (publish, list peers, shut down). For a separate group with its own settings, build a `Switchboard`
//! and mount [`Switchboard::into_router`](crate::Switchboard::into_router) instead.
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use switchboard::define_hooks;
//!
//! # async fn run() -> std::io::Result<()> {
//! let app = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .route("/chat", switchboard::axum::ws(define_hooks()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await
//! # }
//! ```

use std::sync::{Arc, OnceLock};

use axum::routing::MethodRouter;

use crate::server::{erase, AppShared, Endpoint};
use crate::{Hooks, Hub, WsConfig};

/// The group every [`ws`] route belongs to.
fn group() -> Arc<AppShared> {
    static GROUP: OnceLock<Arc<AppShared>> = OnceLock::new();
    GROUP.get_or_init(Arc::default).clone()
}

/// An axum route handler that serves `hooks` (default limits).
pub fn ws(hooks: impl Hooks) -> MethodRouter {
    ws_with_config(hooks, WsConfig::default())
}

/// An axum route handler that serves `hooks` with the given limits.
pub fn ws_with_config(hooks: impl Hooks, config: WsConfig) -> MethodRouter {
    let app = group();
    let route = app.add_route("");
    Endpoint { hooks: erase(hooks), config: Arc::new(config), route, app, fallback: None }.into_method_router()
}

/// The hub of the routes made with [`ws`]: publish to their topics, list their peers, shut them down.
pub fn hub() -> Hub {
    Hub { app: group() }
}
