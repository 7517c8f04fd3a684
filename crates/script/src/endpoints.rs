//! Serving a project: `/websockets/v4/service/<endpoint>` (and `/websockets/service/<endpoint>`) run
//! the endpoint's handler for every event of every connection, in order; `GET
//! /services/v4/ops/websockets` is Dirigible's operations view.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::Response;
use switchboard::{reject, Accept, CloseEvent, Error, Hooks, Message, Peer, Switchboard, UpgradeRequest};

use crate::engine::{Event, Method};
use crate::project::{Project, Slot};

/// The paths endpoints are served under (Dirigible's, and the same without the version).
pub const SERVICE_PREFIXES: [&str; 2] = ["/websockets/v4/service/", "/websockets/service/"];
/// The operations view.
pub const OPS_PATH: &str = "/services/v4/ops/websockets";

/// Mounts `project`'s endpoints and its operations view on `app`.
pub fn mount(app: Switchboard, project: Arc<Project>) -> Switchboard {
    let ops = project.clone();
    let router =
        axum::Router::new().route(OPS_PATH, axum::routing::get(move || std::future::ready(json(&ops.status()))));
    let mut app = app.merge(router);
    for prefix in SERVICE_PREFIXES {
        app = app.ws(&format!("{prefix}{{endpoint}}"), ScriptHooks { project: project.clone(), only: None });
    }
    app
}

/// The hooks of one script endpoint, to serve at a path of your choosing:
/// `app.ws("/live", switchboard_script::endpoint(project, "my-endpoint"))`. Reloads apply as they do
/// under `mount`; while the endpoint does not exist or is broken, upgrades get 404 or 503.
pub fn endpoint(project: Arc<Project>, name: &str) -> impl Hooks {
    ScriptHooks { project, only: Some(Arc::from(name)) }
}

/// The endpoint a peer connected to (its context).
#[derive(Clone)]
struct EndpointName(Arc<str>);

/// The hooks of every script endpoint: the endpoint is found by name at each event, so a reloaded
/// handler serves the next event.
struct ScriptHooks {
    project: Arc<Project>,
    /// Serves this endpoint whatever the path (`endpoint`); `None`: the endpoint named by the path.
    only: Option<Arc<str>>,
}

impl ScriptHooks {
    /// Runs the endpoint's handler for one event of `peer`: its reply goes back to the peer; a failure
    /// is logged with the JavaScript stack, counted, and closes only this peer, with 1011.
    async fn run(&self, peer: &Peer, method: Method, message: Option<Message>, error: Option<String>) {
        let Some(EndpointName(name)) = peer.context::<EndpointName>().cloned() else { return };
        let Some(Slot::Live(endpoint)) = self.project.lookup(&name) else { return };
        match method {
            Method::Open => {
                endpoint.peers().insert(peer.id(), peer.clone());
            }
            Method::Close => {
                endpoint.peers().remove(&peer.id());
            }
            Method::Message | Method::Error => {}
        }
        let handler = endpoint.handler.clone();
        let event = Event { handler: handler.clone(), method, message, error, peer: Some(peer.clone()) };
        match endpoint.engine.event(event).await {
            Ok(Some(reply)) => {
                let _ = peer.send(reply);
            }
            Ok(None) => {}
            Err(error) => {
                endpoint.record_error(&error);
                tracing::warn!(
                    endpoint = %name, handler = %handler, method = method.as_str(), stack = error.stack.as_deref().unwrap_or(""),
                    "handler failed: {error}"
                );
                if method != Method::Close {
                    let _ = peer.close(1011, &error.close_reason());
                }
            }
        }
    }
}

impl Hooks for ScriptHooks {
    async fn upgrade(&self, request: UpgradeRequest) -> Result<Accept, Response> {
        let path = request.uri().path();
        let name = match &self.only {
            Some(name) => name,
            None => SERVICE_PREFIXES.iter().find_map(|prefix| path.strip_prefix(prefix)).unwrap_or_default(),
        };
        match self.project.lookup(name) {
            Some(Slot::Live(_)) => Ok(Accept::new().context(EndpointName(Arc::from(name)))),
            Some(Slot::Broken(reason)) => {
                Err(reject(StatusCode::SERVICE_UNAVAILABLE, format!("endpoint {name:?} is not available: {reason}\n")))
            }
            None => Err(reject(
                StatusCode::NOT_FOUND,
                format!("no WebSocket endpoint {name:?}: no *.websocket descriptor declares it\n"),
            )),
        }
    }

    async fn open(&self, peer: Peer) -> switchboard::HookResult {
        self.run(&peer, Method::Open, None, None).await;
        Ok(())
    }

    async fn message(&self, peer: Peer, message: Message) -> switchboard::HookResult {
        self.run(&peer, Method::Message, Some(message), None).await;
        Ok(())
    }

    async fn close(&self, peer: Peer, _close: CloseEvent) -> switchboard::HookResult {
        self.run(&peer, Method::Close, None, None).await;
        Ok(())
    }

    async fn error(&self, peer: Peer, error: Error) {
        self.run(&peer, Method::Error, None, Some(error.to_string())).await;
    }
}

/// A JSON response.
fn json(value: &impl serde::Serialize) -> Response {
    match serde_json::to_vec_pretty(value) {
        Ok(body) => Response::builder()
            .header(axum::http::header::CONTENT_TYPE, "application/json")
            .body(axum::body::Body::from(body))
            .unwrap_or_else(|_| reject(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n")),
        Err(error) => reject(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode the view: {error}\n")),
    }
}
