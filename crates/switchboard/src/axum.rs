//! Mounting WebSocket hooks in an existing axum application.
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

use std::sync::Arc;

use axum::routing::MethodRouter;

use crate::server::{erase, AppShared, Endpoint};
use crate::{Hooks, WsConfig};

/// An axum route handler that serves `hooks` (default limits).
pub fn ws(hooks: impl Hooks) -> MethodRouter {
    ws_with_config(hooks, WsConfig::default())
}

/// An axum route handler that serves `hooks` with the given limits.
pub fn ws_with_config(hooks: impl Hooks, config: WsConfig) -> MethodRouter {
    Endpoint {
        hooks: erase(hooks),
        config: Arc::new(config),
        peers: Arc::default(),
        app: Arc::new(AppShared::default()),
        fallback: None,
    }
    .into_method_router()
}
