//! What `switchboard serve` shows a person: the dashboard (`/`), its JSON (`/api/...`) and live
//! feed (`/api/live`), Prometheus metrics (`/metrics`), the demos (`/demo/chat`, `/demo/store`) and
//! `switchboard.js` itself.

mod admin;
mod api;
mod assets;
pub mod errors;
mod live;
mod metrics;
mod rates;

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use switchboard::sync::SyncHub;
use switchboard::{Hub, Switchboard};
use switchboard_script::Project;

pub use admin::Admin;

/// What the pages read.
pub struct Web {
    hub: Hub,
    project: Arc<Project>,
    sync: SyncHub,
    admin: Admin,
    rates: Arc<rates::Rates>,
    started: SystemTime,
    metrics: metrics_exporter_prometheus::PrometheusRecorder,
}

/// Mounts the pages on `app`, whose hub they show, with the project's script endpoints and the
/// sync hub's collections.
pub fn mount(app: Switchboard, project: Arc<Project>, sync: SyncHub, admin: Admin) -> Switchboard {
    let hub = app.hub();
    let rates = rates::Rates::start(hub.clone());
    let web =
        Arc::new(Web { hub, project, sync, admin, rates, started: SystemTime::now(), metrics: metrics::recorder() });
    let mut router = Router::new()
        .route("/", get(dashboard))
        .route("/login", get(login_form).post(login))
        .route("/metrics", get(prometheus))
        // Browsers ask for it on any page they show (a JSON answer, say); the pages name /favicon.svg.
        .route("/favicon.ico", get(|| async { axum::http::StatusCode::NO_CONTENT }))
        .merge(api::routes());
    for asset in assets::PUBLIC {
        router = router.route(asset.path, get(move || std::future::ready(asset.response())));
    }
    app.ws("/api/live", live::hooks(web.clone())).merge(router.with_state(web))
}

async fn dashboard(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    web.admin.refuses(&headers).unwrap_or_else(|| assets::DASHBOARD.response())
}

async fn login_form(State(web): State<Arc<Web>>) -> Response {
    web.admin.refusal(Some("Sign in with the admin token."))
}

async fn login(State(web): State<Arc<Web>>, headers: HeaderMap, body: String) -> Response {
    match web.admin.refuses_action(&headers, false) {
        // The token is being shown: only the origin check applies.
        Some(refused) if refused.status() != axum::http::StatusCode::UNAUTHORIZED => refused,
        _ => web.admin.login(&body),
    }
}

async fn prometheus(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    if let Some(refused) = web.admin.refuses(&headers) {
        return refused;
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], metrics::render(&web)).into_response()
}
