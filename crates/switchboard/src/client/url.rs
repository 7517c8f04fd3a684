//! ws:// and wss:// URLs, checked when the socket is created (not when it connects).

use http::Uri;

use super::error::ConnectError;

/// A parsed WebSocket URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WsUrl {
    /// `wss://` (TLS).
    pub secure: bool,
    /// Host name or IP literal (without brackets).
    pub host: String,
    /// Port (80 or 443 when the URL has none).
    pub port: u16,
    /// Path and query, at least `/`.
    pub path: String,
}

impl WsUrl {
    /// Parses `ws://host[:port]/path?query` or `wss://...`.
    pub fn parse(url: &str) -> Result<Self, ConnectError> {
        let bad = |why: &str| ConnectError::InvalidUrl { url: url.to_owned(), reason: why.to_owned() };
        let uri: Uri = url.parse().map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
        let secure = match uri.scheme_str() {
            Some("ws") => false,
            Some("wss") => true,
            Some(other) => return Err(ConnectError::UnsupportedScheme(other.to_owned())),
            None => return Err(bad("the URL has no scheme (use ws:// or wss://)")),
        };
        let authority = uri.authority().ok_or_else(|| bad("the URL has no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("credentials in the URL are not supported; send an Authorization header"));
        }
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
        if host.is_empty() {
            return Err(bad("the URL has no host"));
        }
        let port = authority.port_u16().unwrap_or(if secure { 443 } else { 80 });
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let path = if path.is_empty() { "/".to_owned() } else { path.to_owned() };
        Ok(Self { secure, host, port, path })
    }

    /// `host[:port]` as sent in the Host header (the port only when it is not the default).
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        let default = if self.secure { 443 } else { 80 };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// A new URL with `suffix` appended to the path (before the query).
    pub fn append(&self, suffix: &str) -> Result<Self, ConnectError> {
        let (path, query) = match self.path.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (self.path.as_str(), None),
        };
        let joined = match (path.ends_with('/'), suffix.starts_with('/')) {
            (true, true) => format!("{path}{}", &suffix[1..]),
            (false, false) if !suffix.is_empty() => format!("{path}/{suffix}"),
            _ => format!("{path}{suffix}"),
        };
        let full = match query {
            Some(query) => format!("{joined}?{query}"),
            None => joined,
        };
        Self::parse(&format!("{}{}", self.origin(), full))
    }

    /// `ws://host:port` without the path.
    pub fn origin(&self) -> String {
        format!("{}://{}", if self.secure { "wss" } else { "ws" }, self.host_header())
    }
}

impl std::fmt::Display for WsUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.origin(), self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ws_and_wss_with_defaults() {
        let url = WsUrl::parse("ws://example.com").unwrap();
        assert_eq!((url.secure, url.host.as_str(), url.port, url.path.as_str()), (false, "example.com", 80, "/"));
        let url = WsUrl::parse("wss://example.com:8443/chat?room=1").unwrap();
        assert_eq!((url.secure, url.port, url.path.as_str()), (true, 8443, "/chat?room=1"));
        assert_eq!(url.host_header(), "example.com:8443");
        let url = WsUrl::parse("ws://[::1]:3333/x").unwrap();
        assert_eq!((url.host.as_str(), url.host_header()), ("::1", "[::1]:3333".to_string()));
    }

    #[test]
    fn rejects_bad_urls_at_once() {
        assert!(matches!(WsUrl::parse("http://example.com"), Err(ConnectError::UnsupportedScheme(s)) if s == "http"));
        assert!(matches!(WsUrl::parse("example.com/chat"), Err(ConnectError::InvalidUrl { .. })));
        assert!(matches!(WsUrl::parse("ws://"), Err(ConnectError::InvalidUrl { .. })));
        assert!(matches!(WsUrl::parse("ws://exa mple.com"), Err(ConnectError::InvalidUrl { .. })));
        assert!(matches!(WsUrl::parse("ws://user:pw@example.com"), Err(ConnectError::InvalidUrl { .. })));
    }

    #[test]
    fn append_extends_the_path_and_keeps_the_query() {
        let base = WsUrl::parse("ws://h:1/api?token=x").unwrap();
        assert_eq!(base.append("/room/1").unwrap().to_string(), "ws://h:1/api/room/1?token=x");
        assert_eq!(base.append("room").unwrap().path, "/api/room?token=x");
        let root = WsUrl::parse("ws://h:1/").unwrap();
        assert_eq!(root.append("/room").unwrap().path, "/room");
        assert!(root.append("/bad path").is_err());
    }
}
