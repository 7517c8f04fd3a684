//! `/api/...`: what the dashboard shows, as JSON, and the two things a person can do from it
//! (close a peer, publish to a topic).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};
use switchboard::{Peer, ReadyState};

use super::errors::{unix_ms, ErrorLog};
use super::Web;

/// The `/api` routes.
pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/api", get(|| async { answer(StatusCode::OK, &json!({"routes": ROUTES})) }))
        .route("/api/overview", view(overview))
        .route("/api/endpoints", view(endpoints))
        .route("/api/peers", get(peers_of))
        .route("/api/topics", view(topics))
        .route("/api/clients", view(clients))
        .route("/api/sync", view(sync))
        .route("/api/errors", view(errors))
        .route("/api/close", post(close))
        .route("/api/publish", post(publish))
}

const ROUTES: &[&str] = &[
    "GET /api/overview",
    "GET /api/endpoints",
    "GET /api/peers?endpoint=ROUTE",
    "GET /api/topics",
    "GET /api/clients",
    "GET /api/sync",
    "GET /api/errors",
    "POST /api/close {peer, code?, reason?}",
    "POST /api/publish {topic, message}",
];

/// A GET route answering `view` of the server, for admins.
fn view(view: fn(&Web) -> Value) -> MethodRouter<Arc<Web>> {
    get(move |State(web): State<Arc<Web>>, headers: HeaderMap| async move { guarded(&web, &headers, view) })
}

fn guarded(web: &Web, headers: &HeaderMap, view: impl FnOnce(&Web) -> Value) -> Response {
    match web.admin.refuses(headers) {
        None => answer(StatusCode::OK, &view(web)),
        Some(refused) => refused,
    }
}

/// Peers listed in the overview (the newest); `/api/peers` lists them all.
const OVERVIEW_PEERS: usize = 200;

fn newest_peers(web: &Web, most: usize) -> Vec<Value> {
    let mut peers: Vec<_> = web.hub.peers().into_iter().map(|p| (p.stats().connected_at, p)).collect();
    peers.sort_by_key(|(connected_at, _)| std::cmp::Reverse(*connected_at));
    peers.iter().take(most).map(|(_, p)| peer(p)).collect()
}

/// Everything the dashboard shows, in one document (also what `/api/live` pushes).
pub fn overview(web: &Web) -> Value {
    let (rate_in, rate_out) = web.rates.per_second();
    json!({
        "server": {
            "version": env!("CARGO_PKG_VERSION"),
            "started_at": unix_ms(web.started),
            "now": unix_ms(std::time::SystemTime::now()),
        },
        "endpoints": endpoints(web),
        "peers": newest_peers(web, OVERVIEW_PEERS),
        "peer_count": web.hub.peers().len(),
        "topics": topics(web),
        "clients": clients(web),
        "sync": sync(web),
        "pubsub": pubsub(web),
        "door": door(web),
        "rates": {"in": rate_in, "out": rate_out},
        "errors": errors(web),
    })
}

/// Native routes with their traffic, then the project's script endpoints with their status.
fn endpoints(web: &Web) -> Value {
    let routes: Vec<Value> = web
        .hub
        .endpoints()
        .into_iter()
        .map(|e| {
            json!({
                "path": e.path, "kind": kind_of(&e.path), "open": e.open, "connections": e.connections,
                "traffic": e.traffic, "close_codes": e.close_codes, "rate_limited": e.rate_limited,
            })
        })
        .collect();
    json!({"routes": routes, "scripts": web.project.status()})
}

fn kind_of(path: &str) -> &'static str {
    if switchboard_script::SERVICE_PREFIXES.iter().any(|prefix| path.starts_with(prefix)) {
        "script"
    } else if path.starts_with("/sync") {
        "sync"
    } else if path.starts_with("/api/") {
        "dashboard"
    } else {
        "native"
    }
}

fn peer(peer: &Peer) -> Value {
    let stats = peer.stats();
    let state = match peer.ready_state() {
        ReadyState::Connecting => "connecting",
        ReadyState::Open => "open",
        ReadyState::Closing => "closing",
        ReadyState::Closed => "closed",
    };
    json!({
        "id": peer.id(),
        "route": peer.route(),
        "path": peer.request().uri.path(),
        "address": peer.remote_addr().map(|a| a.to_string()),
        "protocol": peer.protocol(),
        "state": state,
        "connected_at": unix_ms(stats.connected_at),
        "traffic": stats.traffic,
        "buffered": peer.buffered_amount(),
        "topics": peer.topics(),
    })
}

#[derive(Deserialize)]
struct PeersQuery {
    endpoint: Option<String>,
}

async fn peers_of(State(web): State<Arc<Web>>, headers: HeaderMap, Query(query): Query<PeersQuery>) -> Response {
    guarded(&web, &headers, |web| {
        let peers = web.hub.peers();
        let chosen = peers.iter().filter(|p| query.endpoint.as_deref().is_none_or(|route| p.route() == route));
        Value::Array(chosen.map(peer).collect())
    })
}

fn topics(web: &Web) -> Value {
    let mut topics = web.hub.topics();
    topics.sort();
    Value::Array(
        topics.into_iter().map(|(name, subscribers)| json!({"name": name, "subscribers": subscribers})).collect(),
    )
}

fn clients(web: &Web) -> Value {
    json!(web.project.clients().list())
}

fn sync(web: &Web) -> Value {
    json!(web.sync.collections())
}

fn door(web: &Web) -> Value {
    match web.hub.door() {
        Some(door) => json!({
            "open": door.open, "refused_full": door.refused_full, "refused_per_ip": door.refused_per_ip,
            "refused_rate": door.refused_rate,
        }),
        None => Value::Null,
    }
}

fn pubsub(web: &Web) -> Value {
    let stats = web.hub.stats();
    json!({
        "topics": stats.topics, "published": stats.published, "delivered": stats.delivered,
        "dropped": stats.dropped, "slow_closed": stats.slow_closed,
        "history_bytes": stats.history_bytes, "history_evicted": stats.history_evicted,
    })
}

fn errors(_web: &Web) -> Value {
    json!(ErrorLog::global().entries())
}

#[derive(Deserialize)]
struct CloseRequest {
    peer: uuid::Uuid,
    code: Option<u16>,
    reason: Option<String>,
}

async fn close(State(web): State<Arc<Web>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    if let Some(refused) = web.admin.refuses_action(&headers, true) {
        return refused;
    }
    let request: CloseRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => return bad_request(format!("expected {{\"peer\": UUID, \"code\"?, \"reason\"?}}: {error}")),
    };
    let Some(peer) = web.hub.peers().into_iter().find(|p| p.id() == request.peer) else {
        return answer(StatusCode::NOT_FOUND, &json!({"error": format!("no open peer {}", request.peer)}));
    };
    let reason = request.reason.unwrap_or_else(|| "closed from the dashboard".to_owned());
    match peer.close(request.code.unwrap_or(1000), &reason) {
        Ok(()) => answer(StatusCode::OK, &json!({"closed": request.peer})),
        Err(error) => bad_request(error.to_string()),
    }
}

#[derive(Deserialize)]
struct PublishRequest {
    topic: String,
    message: String,
}

async fn publish(State(web): State<Arc<Web>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    if let Some(refused) = web.admin.refuses_action(&headers, true) {
        return refused;
    }
    match serde_json::from_slice::<PublishRequest>(&body) {
        Ok(request) if request.topic.is_empty() => bad_request("the topic is empty".into()),
        Ok(request) => {
            let delivered = web.hub.publish(&request.topic, request.message);
            answer(StatusCode::OK, &json!({"topic": request.topic, "subscribers": delivered}))
        }
        Err(error) => bad_request(format!("expected {{\"topic\": TEXT, \"message\": TEXT}}: {error}")),
    }
}

fn bad_request(error: String) -> Response {
    answer(StatusCode::BAD_REQUEST, &json!({"error": error}))
}

/// A JSON answer.
fn answer(status: StatusCode, value: &Value) -> Response {
    (status, [(axum::http::header::CONTENT_TYPE, "application/json")], value.to_string()).into_response()
}
