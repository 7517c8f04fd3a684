//! The pages and scripts embedded in the binary: `switchboard.js`, the dashboard and the demos.

use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};

/// One embedded file.
pub struct Asset {
    /// Where it is served.
    pub path: &'static str,
    /// Its media type.
    pub content_type: &'static str,
    /// Its text.
    pub body: &'static str,
}

const JS: &str = "text/javascript; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";

/// Every public asset (the dashboard page itself is served by the admin check in `web`).
pub const PUBLIC: &[Asset] = &[
    Asset { path: "/switchboard.js", content_type: JS, body: include_str!("../../../../clients/js/switchboard.js") },
    Asset {
        path: "/switchboard.d.ts",
        content_type: "application/typescript; charset=utf-8",
        body: include_str!("../../../../clients/js/switchboard.d.ts"),
    },
    Asset {
        path: "/assets/style.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../../../../web/style.css"),
    },
    Asset { path: "/favicon.svg", content_type: "image/svg+xml", body: include_str!("../../../../web/favicon.svg") },
    Asset { path: "/assets/dashboard.js", content_type: JS, body: include_str!("../../../../web/dashboard.js") },
    Asset { path: "/assets/chat.js", content_type: JS, body: include_str!("../../../../web/demo/chat.js") },
    Asset { path: "/assets/store.js", content_type: JS, body: include_str!("../../../../web/demo/store.js") },
    Asset { path: "/demo/chat", content_type: HTML, body: include_str!("../../../../web/demo/chat.html") },
    Asset { path: "/demo/store", content_type: HTML, body: include_str!("../../../../web/demo/store.html") },
];

/// The dashboard page.
pub const DASHBOARD: Asset = Asset { path: "/", content_type: HTML, body: include_str!("../../../../web/index.html") };

impl Asset {
    /// The response serving it. Assets change only with the binary: caches revalidate (no-cache)
    /// so an upgrade is seen at once.
    pub fn response(&self) -> Response {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        (headers, self.body).into_response()
    }
}
