//! The `Origin` check at the upgrade: which web pages may open a socket here. Browsers always send
//! `Origin` on a WebSocket handshake and a page cannot forge it, so an allowlist stops other sites
//! from using a visitor's browser (and cookies) against this server. Clients that are not browsers
//! send no `Origin`; they are let through unless `WsConfig::require_origin` is set.

use http::HeaderMap;

/// Why an upgrade's origin was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum OriginRefusal {
    /// No `Origin` header, and one is required.
    Missing,
    /// An origin the allowlist does not name.
    NotAllowed(String),
}

impl std::fmt::Display for OriginRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing => f.write_str("this endpoint requires an Origin header\n"),
            Self::NotAllowed(origin) => writeln!(f, "origin {origin} is not allowed here"),
        }
    }
}

/// Checks `headers` against the allowlist (`None`: any origin). A page served by this server itself
/// (its origin's host is the request's `Host`) is always allowed.
pub(crate) fn check(allowed: Option<&[String]>, require: bool, headers: &HeaderMap) -> Result<(), OriginRefusal> {
    let Some(origin) = headers.get(http::header::ORIGIN) else {
        return if require { Err(OriginRefusal::Missing) } else { Ok(()) };
    };
    let origin = String::from_utf8_lossy(origin.as_bytes()).into_owned();
    let Some(allowed) = allowed else { return Ok(()) };
    let host = host_of(&origin);
    let own = headers.get(http::header::HOST).and_then(|h| h.to_str().ok());
    if host.is_some() && own.is_some_and(|own| host_port_of(&origin).is_some_and(|hp| hp.eq_ignore_ascii_case(own))) {
        return Ok(());
    }
    if allowed.iter().any(|pattern| matches(pattern, &origin, host)) {
        return Ok(());
    }
    Err(OriginRefusal::NotAllowed(origin))
}

/// `scheme://host[:port]` without the scheme.
fn host_port_of(origin: &str) -> Option<&str> {
    origin.split_once("://").map(|(_, rest)| rest)
}

/// The host of an origin, without scheme and port.
fn host_of(origin: &str) -> Option<&str> {
    let rest = host_port_of(origin)?;
    if let Some(v6) = rest.strip_prefix('[') {
        return v6.split_once(']').map(|(host, _)| host);
    }
    Some(rest.split(':').next().unwrap_or(rest))
}

/// A pattern is a whole origin (`https://app.example.com`, `http://localhost:5173`), a host
/// (`app.example.com`, any scheme and port), `*.example.com` (every subdomain, not the domain
/// itself) or `*` (anything).
fn matches(pattern: &str, origin: &str, host: Option<&str>) -> bool {
    if pattern == "*" {
        return true;
    }
    if pattern.contains("://") {
        return pattern.trim_end_matches('/').eq_ignore_ascii_case(origin);
    }
    let Some(host) = host else { return false };
    match pattern.strip_prefix("*.") {
        Some(domain) => {
            host.len() > domain.len() + 1
                && host[host.len() - domain.len()..].eq_ignore_ascii_case(domain)
                && host.as_bytes()[host.len() - domain.len() - 1] == b'.'
        }
        None => pattern.eq_ignore_ascii_case(host),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::HOST, host.parse().expect("host"));
        if let Some(origin) = origin {
            headers.insert(http::header::ORIGIN, origin.parse().expect("origin"));
        }
        headers
    }

    #[test]
    fn patterns_name_origins_hosts_and_subdomains() {
        let allowed = ["https://app.example.com".to_owned(), "*.example.org".to_owned(), "localhost".to_owned()];
        let check = |origin: &str| check(Some(&allowed), false, &headers(Some(origin), "api.example.net"));
        assert_eq!(check("https://app.example.com"), Ok(()));
        assert!(check("http://app.example.com").is_err(), "a whole origin includes the scheme");
        assert_eq!(check("https://a.b.example.org"), Ok(()));
        assert!(check("https://example.org").is_err(), "*.domain is its subdomains only");
        assert!(check("https://evilexample.org").is_err());
        assert_eq!(check("http://localhost:5173"), Ok(()));
        assert_eq!(check("https://evil.example"), Err(OriginRefusal::NotAllowed("https://evil.example".into())));
        assert_eq!(check("null"), Err(OriginRefusal::NotAllowed("null".into())));
    }

    #[test]
    fn own_pages_and_clients_without_origin_pass_unless_required() {
        let allowed = ["https://app.example.com".to_owned()];
        assert_eq!(check(Some(&allowed), false, &headers(Some("http://127.0.0.1:3333"), "127.0.0.1:3333")), Ok(()));
        assert_eq!(check(Some(&allowed), false, &headers(None, "h")), Ok(()));
        assert_eq!(check(Some(&allowed), true, &headers(None, "h")), Err(OriginRefusal::Missing));
        assert_eq!(check(None, false, &headers(Some("https://anything"), "h")), Ok(()));
    }
}
