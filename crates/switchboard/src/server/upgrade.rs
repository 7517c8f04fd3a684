//! What the `upgrade` hook sees and answers.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use http::{Extensions, HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::peer::RequestInfo;

/// The upgrade request, before the connection is accepted. Cheap to clone.
#[derive(Clone, Debug)]
pub struct UpgradeRequest {
    pub(crate) info: Arc<RequestInfo>,
    pub(crate) remote_addr: Option<SocketAddr>,
    pub(crate) protocols: Arc<[String]>,
}

impl UpgradeRequest {
    /// Method, URI and headers.
    pub fn request(&self) -> &RequestInfo {
        &self.info
    }

    /// The request URI.
    pub fn uri(&self) -> &http::Uri {
        &self.info.uri
    }

    /// The request headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.info.headers
    }

    /// The client's address, when known.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.remote_addr
    }

    /// The subprotocols the client offered, in its order of preference.
    pub fn protocols(&self) -> &[String] {
        &self.protocols
    }

    /// The value of a query parameter.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.info.query_param(name)
    }
}

/// The `upgrade` hook's yes: optional context, subprotocol and extra response headers.
#[derive(Debug, Default)]
pub struct Accept {
    pub(crate) context: Extensions,
    pub(crate) protocol: Option<String>,
    pub(crate) headers: HeaderMap,
}

impl Accept {
    /// Accepts with no subprotocol, no context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Attaches typed data that hooks read back with `peer.context::<T>()` (one value per type).
    pub fn context<T: Clone + Send + Sync + 'static>(mut self, value: T) -> Self {
        self.context.insert(value);
        self
    }

    /// Chooses a subprotocol. It must be one the client offered, or the upgrade fails with 500.
    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocol = Some(protocol.into());
        self
    }

    /// Adds a header to the 101 response (e.g. `Set-Cookie`). Invalid names or values are skipped
    /// with a warning.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        match (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            (Ok(name), Ok(value)) => {
                self.headers.append(name, value);
            }
            _ => tracing::warn!(name, "invalid header in Accept::header: skipped"),
        }
        self
    }
}

/// Builds a refusal for the `upgrade` hook: `Err(reject(StatusCode::UNAUTHORIZED, "bad token"))`.
pub fn reject(status: StatusCode, body: impl Into<String>) -> Response {
    (status, body.into()).into_response()
}

/// What an `upgrade` closure may return: `()` (accept), `Accept`, `Result<Accept, Response>` or
/// `Result<(), Response>`.
pub trait IntoUpgradeResult {
    /// Converts to the decision.
    fn into_upgrade_result(self) -> Result<Accept, Response>;
}

impl IntoUpgradeResult for () {
    fn into_upgrade_result(self) -> Result<Accept, Response> {
        Ok(Accept::new())
    }
}

impl IntoUpgradeResult for Accept {
    fn into_upgrade_result(self) -> Result<Accept, Response> {
        Ok(self)
    }
}

impl IntoUpgradeResult for Result<Accept, Response> {
    fn into_upgrade_result(self) -> Result<Accept, Response> {
        self
    }
}

impl IntoUpgradeResult for Result<(), Response> {
    fn into_upgrade_result(self) -> Result<Accept, Response> {
        self.map(|()| Accept::new())
    }
}
