//! One WebSocket route: validates the upgrade request, runs the `upgrade` hook, answers 101, and starts
//! the peer's connection task.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU8, AtomicUsize};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use bytes::BytesMut;
use futures_util::FutureExt;
use http::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use switchboard_wire::handshake::{self, RequestError};
use switchboard_wire::{deflate, Config, Connection, Role};
use tokio::sync::Notify;
use tower::ServiceExt;
use uuid::Uuid;

use super::app::AppShared;
use super::config::WsConfig;
use super::hooks::DynHooks;
use super::peer::{Peer, PeerShared, ReadyState, RequestInfo, SharedCompression};
use super::stats::Route;
use super::task::{PeerTask, Start};
use super::upgrade::UpgradeRequest;

pub(crate) struct Endpoint {
    pub(crate) hooks: Arc<dyn DynHooks>,
    pub(crate) config: Arc<WsConfig>,
    pub(crate) route: Arc<Route>,
    pub(crate) app: Arc<AppShared>,
    pub(crate) fallback: Option<MethodRouter>,
}

impl Endpoint {
    /// The axum handler for this route.
    pub(crate) fn into_method_router(self) -> MethodRouter {
        let endpoint = Arc::new(self);
        axum::routing::any(move |request: Request<Body>| {
            let endpoint = endpoint.clone();
            async move { endpoint.handle(request).await }
        })
    }

    async fn handle(&self, mut request: Request<Body>) -> Response {
        let upgrade = match handshake::validate_request(request.method(), request.version(), request.headers()) {
            Ok(upgrade) => upgrade,
            Err(RequestError::NotUpgrade) if self.fallback.is_some() => {
                return match &self.fallback {
                    Some(fallback) => fallback.clone().oneshot(request).await.into_response(),
                    None => StatusCode::NOT_FOUND.into_response(),
                };
            }
            Err(error) => return refuse(&error),
        };
        self.app.start_background();
        if let Err(refusal) =
            super::origin::check(self.config.allowed_origins.as_deref(), self.config.require_origin, request.headers())
        {
            tracing::debug!(%refusal, "upgrade refused");
            return (StatusCode::FORBIDDEN, refusal.to_string()).into_response();
        }
        if self.app.is_shutting_down() {
            return (StatusCode::SERVICE_UNAVAILABLE, "the server is shutting down\n").into_response();
        }
        let Some(on_upgrade) = request.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
            // Only a server built with upgrades (ours, or axum::serve) can switch protocols.
            return (StatusCode::INTERNAL_SERVER_ERROR, "this HTTP server does not support connection upgrades\n")
                .into_response();
        };
        let remote_addr = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
        let admitted = request.extensions_mut().remove::<super::door::Held>();
        let (parts, _) = request.into_parts();
        let info = Arc::new(RequestInfo {
            method: parts.method,
            uri: parts.uri,
            version: parts.version,
            headers: parts.headers,
        });
        let upgrade_request =
            UpgradeRequest { info: info.clone(), remote_addr, protocols: upgrade.protocols.clone().into() };
        let accept = match std::panic::AssertUnwindSafe(self.hooks.upgrade(upgrade_request)).catch_unwind().await {
            Ok(Ok(accept)) => accept,
            Ok(Err(rejection)) => return rejection,
            Err(panic) => {
                let error = crate::Error::from_panic("upgrade", panic);
                tracing::error!(%error, "refusing the upgrade with 500");
                return (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response();
            }
        };
        if let Some(chosen) = &accept.protocol {
            if !upgrade.protocols.contains(chosen) {
                tracing::error!(chosen, offered = ?upgrade.protocols, "the upgrade hook chose a subprotocol the client did not offer");
                return (StatusCode::INTERNAL_SERVER_ERROR, "internal error: subprotocol mismatch\n").into_response();
            }
        }
        let negotiated =
            self.config.compression.as_ref().and_then(|c| deflate::negotiate_server(&upgrade.extensions, c));
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let mut headers = handshake::response_headers(
            &upgrade.key,
            accept.protocol.as_deref(),
            negotiated.as_ref().map(|(_, answer)| answer.as_str()),
        );
        for (name, value) in accept.headers.iter() {
            headers.append(name.clone(), value.clone());
        }
        *response.headers_mut() = headers;

        let wire_config = Config {
            max_frame_size: self.config.max_frame_size,
            max_message_size: self.config.max_message_size,
            deflate: negotiated.as_ref().map(|(params, _)| *params),
            compression_level: self.config.compression.map_or(1, |c| c.level),
            max_fragments: self.config.max_fragments,
            ..Config::default()
        };
        let shared_compression = wire_config
            .deflate
            .filter(|d| d.server_no_context_takeover)
            .map(|d| SharedCompression { level: wire_config.compression_level, window_bits: d.server_max_window_bits });
        let peer = Peer {
            shared: Arc::new(PeerShared {
                id: Uuid::new_v4(),
                remote_addr,
                request: info.detached(),
                context: accept.context,
                protocol: accept.protocol,
                extensions: negotiated.map(|(_, answer)| answer),
                state: AtomicU8::new(ReadyState::Connecting as u8),
                buffered: AtomicUsize::new(0),
                max_buffered: self.config.max_buffered_bytes,
                outbox: Default::default(),
                abort: AtomicU16::new(0),
                abort_signal: Notify::new(),
                drained: Notify::new(),
                drain_wanted: AtomicBool::new(false),
                slow_consumer: Mutex::default(),
                route: self.route.clone(),
                counters: Default::default(),
                connected_at: std::time::SystemTime::now(),
                app: self.app.clone(),
                topics: Mutex::default(),
                shared_compression,
            }),
        };
        let hooks = self.hooks.clone();
        let config = self.config.clone();
        let app = self.app.clone();
        // This task only waits for hyper to hand the connection over; the peer's own task then holds
        // nothing but the connection (one future per peer, no wrapper around it).
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let conn = Connection::new(Role::Server, wire_config, 0);
                    let start = Start { conn, peer, hooks, config, app, admitted };
                    // A plain TCP connection is taken back from hyper: reading and writing the socket
                    // directly skips a boxed I/O layer on every call. TLS keeps hyper's wrapper.
                    match upgraded.downcast::<TokioIo<tokio::net::TcpStream>>() {
                        Ok(parts) => {
                            let read_buf = BytesMut::from(&parts.read_buf[..]);
                            let io = parts.io.into_inner();
                            // hyper's 8 KiB read buffer would otherwise live as long as the connection.
                            drop(parts.read_buf);
                            tokio::spawn(PeerTask::new(io, read_buf, start).run());
                        }
                        Err(upgraded) => {
                            let io = TokioIo::new(upgraded);
                            let read_buf = BytesMut::new();
                            tokio::spawn(PeerTask::new(io, read_buf, start).run());
                        }
                    }
                }
                Err(error) => {
                    peer.set_ready_state(ReadyState::Closed);
                    peer.shared.outbox.close();
                    tracing::debug!(%error, "the upgrade did not complete");
                }
            }
        });
        response
    }
}

/// The HTTP answer to an invalid upgrade request: its status, required headers, and a body that says
/// what was wrong.
fn refuse(error: &RequestError) -> Response {
    let mut response = (error.status(), format!("{error}\n")).into_response();
    for (name, value) in error.headers() {
        response.headers_mut().insert(name, http::HeaderValue::from_static(value));
    }
    response
}
