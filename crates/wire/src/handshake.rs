//! The opening handshake (RFC 6455 section 4): server-side request validation and client-side request
//! building and response validation.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Version};
use sha1::{Digest, Sha1};

use crate::deflate::{self, DeflateConfig, DeflateParams, ExtensionOffer};

const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key`.
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID);
    BASE64.encode(sha.finalize())
}

/// A fresh random `Sec-WebSocket-Key` from 16 bytes of caller-supplied randomness.
pub fn generate_key(nonce: [u8; 16]) -> String {
    BASE64.encode(nonce)
}

/// Why an upgrade request was refused, with the HTTP status to answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Not a GET.
    #[error("WebSocket handshakes must use GET, not {0}")]
    Method(String),
    /// HTTP/1.0 or older.
    #[error("WebSocket handshakes need HTTP/1.1 or later")]
    HttpVersion,
    /// No `Upgrade: websocket`: a plain HTTP request on a WebSocket path.
    #[error("this is a WebSocket endpoint: send `Upgrade: websocket` to connect")]
    NotUpgrade,
    /// `Connection` lacks the `upgrade` token.
    #[error("the Connection header must contain the token `upgrade`")]
    ConnectionHeader,
    /// `Sec-WebSocket-Key` missing, repeated, or not 16 bytes of base64.
    #[error("Sec-WebSocket-Key must be the base64 encoding of 16 bytes: {0}")]
    Key(&'static str),
    /// `Sec-WebSocket-Version` is not 13.
    #[error("unsupported Sec-WebSocket-Version {0:?}: this server speaks version 13")]
    Version(String),
}

impl RequestError {
    /// The status to answer with: 405, 426 for a missing upgrade or another version, 400 otherwise.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Method(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::NotUpgrade | Self::Version(_) => StatusCode::UPGRADE_REQUIRED,
            Self::HttpVersion | Self::ConnectionHeader | Self::Key(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// Headers the error response must carry (`Sec-WebSocket-Version: 13` on 426, `Allow: GET` on 405).
    pub fn headers(&self) -> Vec<(&'static str, &'static str)> {
        match self {
            Self::Version(_) => vec![("sec-websocket-version", "13")],
            Self::NotUpgrade => {
                vec![("sec-websocket-version", "13"), ("upgrade", "websocket"), ("connection", "upgrade")]
            }
            Self::Method(_) => vec![("allow", "GET")],
            _ => Vec::new(),
        }
    }
}

/// A valid upgrade request, as the server sees it.
#[derive(Clone, Debug)]
pub struct UpgradeRequest {
    /// The client's `Sec-WebSocket-Key`.
    pub key: String,
    /// Subprotocols the client offered, in its order of preference.
    pub protocols: Vec<String>,
    /// Extensions the client offered.
    pub extensions: Vec<ExtensionOffer>,
}

/// Whether any comma-separated token of any value of `name` equals `token`, ignoring case.
pub fn header_has_token(headers: &HeaderMap, name: &str, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

fn header_tokens(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Validates an upgrade request (RFC 6455 section 4.2.1).
pub fn validate_request(
    method: &Method,
    version: Version,
    headers: &HeaderMap,
) -> Result<UpgradeRequest, RequestError> {
    if method != Method::GET {
        return Err(RequestError::Method(method.to_string()));
    }
    if version < Version::HTTP_11 {
        return Err(RequestError::HttpVersion);
    }
    if !header_has_token(headers, "upgrade", "websocket") {
        return Err(RequestError::NotUpgrade);
    }
    if !header_has_token(headers, "connection", "upgrade") {
        return Err(RequestError::ConnectionHeader);
    }
    let version = headers
        .get_all("sec-websocket-version")
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_owned())
        .collect::<Vec<_>>();
    if version.len() != 1 || version[0] != "13" {
        return Err(RequestError::Version(version.join(", ")));
    }
    let mut keys = headers.get_all("sec-websocket-key").iter();
    let key = match (keys.next(), keys.next()) {
        (None, _) => return Err(RequestError::Key("the header is missing")),
        (Some(_), Some(_)) => return Err(RequestError::Key("the header is repeated")),
        (Some(key), None) => key,
    };
    let key = key.to_str().map_err(|_| RequestError::Key("the value is not ASCII"))?.trim();
    match BASE64.decode(key) {
        Ok(raw) if raw.len() == 16 => {}
        Ok(_) => return Err(RequestError::Key("the value does not decode to 16 bytes")),
        Err(_) => return Err(RequestError::Key("the value is not valid base64")),
    }
    let extensions =
        deflate::parse_extensions(headers.get_all("sec-websocket-extensions").iter().filter_map(|v| v.to_str().ok()));
    Ok(UpgradeRequest { key: key.to_owned(), protocols: header_tokens(headers, "sec-websocket-protocol"), extensions })
}

/// The headers of a `101 Switching Protocols` answer.
pub fn response_headers(key: &str, protocol: Option<&str>, extensions: Option<&str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(http::header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&accept_key(key.as_bytes())) {
        headers.insert(http::header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    if let Some(value) = protocol.and_then(|p| HeaderValue::from_str(p).ok()) {
        headers.insert(http::header::SEC_WEBSOCKET_PROTOCOL, value);
    }
    if let Some(value) = extensions.and_then(|e| HeaderValue::from_str(e).ok()) {
        headers.insert(http::header::SEC_WEBSOCKET_EXTENSIONS, value);
    }
    headers
}

/// A client's opening request.
#[derive(Clone, Debug)]
pub struct ClientRequest {
    /// `host[:port]` for the Host header.
    pub host: String,
    /// Path and query.
    pub path: String,
    /// Subprotocols to offer.
    pub protocols: Vec<String>,
    /// Offer permessage-deflate with these wishes.
    pub deflate: Option<DeflateConfig>,
    /// Extra headers (name, value).
    pub headers: Vec<(String, String)>,
}

impl ClientRequest {
    /// Writes the request head with the given key.
    pub fn encode(&self, key: &str) -> Vec<u8> {
        let mut out = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n",
            if self.path.is_empty() { "/" } else { &self.path },
            self.host,
            key
        );
        if !self.protocols.is_empty() {
            out.push_str(&format!("Sec-WebSocket-Protocol: {}\r\n", self.protocols.join(", ")));
        }
        if let Some(config) = &self.deflate {
            out.push_str(&format!("Sec-WebSocket-Extensions: {}\r\n", deflate::client_offer(config)));
        }
        for (name, value) in &self.headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str("\r\n");
        out.into_bytes()
    }
}

/// Why a server's answer to our opening request was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// The bytes are not an HTTP response.
    #[error("the server's answer is not valid HTTP: {0}")]
    Malformed(String),
    /// The head is larger than we accept.
    #[error("the server's response head exceeds {0} bytes")]
    TooLarge(usize),
    /// Not 101: the server refused or does not speak WebSocket here.
    #[error("the server answered {status} instead of 101 Switching Protocols")]
    Status {
        /// The status code.
        status: u16,
        /// Response headers, for the caller's error message.
        headers: Vec<(String, String)>,
    },
    /// A required header is missing or wrong.
    #[error("invalid {0} header in the server's answer")]
    Header(&'static str),
    /// The server chose a subprotocol we did not offer.
    #[error("the server chose subprotocol {0:?}, which was not offered")]
    Protocol(String),
    /// The server answered with an extension we did not offer, or malformed parameters.
    #[error("extension negotiation failed: {0}")]
    Extension(String),
}

/// The parts of a valid 101 answer that the connection needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerResponse {
    /// The chosen subprotocol.
    pub protocol: Option<String>,
    /// The agreed permessage-deflate parameters.
    pub deflate: Option<DeflateParams>,
    /// The raw `Sec-WebSocket-Extensions` answer.
    pub extensions: Option<String>,
    /// All response headers.
    pub headers: Vec<(String, String)>,
}

/// The largest response head we read before giving up.
pub const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// Parses a response head from `buf`. `Ok(None)`: need more bytes. On success returns the result and
/// the number of bytes the head used (anything after it is already WebSocket data).
pub fn parse_response(
    buf: &[u8],
    key: &str,
    request: &ClientRequest,
) -> Result<Option<(ServerResponse, usize)>, ResponseError> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let used = match response.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_RESPONSE_HEAD => {
            return Err(ResponseError::TooLarge(MAX_RESPONSE_HEAD))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(ResponseError::Malformed(e.to_string())),
    };
    let all: Vec<(String, String)> = response
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).trim().to_owned()))
        .collect();
    let status = response.code.unwrap_or(0);
    if status != 101 {
        return Err(ResponseError::Status { status, headers: all });
    }
    let get = |name: &str| all.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect::<Vec<_>>();
    let has_token = |name: &str, token: &str| {
        get(name).iter().flat_map(|v| v.split(',')).any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if !has_token("upgrade", "websocket") {
        return Err(ResponseError::Header("Upgrade"));
    }
    if !has_token("connection", "upgrade") {
        return Err(ResponseError::Header("Connection"));
    }
    if get("sec-websocket-accept") != [accept_key(key.as_bytes()).as_str()] {
        return Err(ResponseError::Header("Sec-WebSocket-Accept"));
    }
    let protocol = match get("sec-websocket-protocol").as_slice() {
        [] => None,
        [p] if request.protocols.iter().any(|o| o == p) => Some((*p).to_owned()),
        [p] => return Err(ResponseError::Protocol((*p).to_owned())),
        _ => return Err(ResponseError::Header("Sec-WebSocket-Protocol")),
    };
    let ext_values = get("sec-websocket-extensions");
    let answers = deflate::parse_extensions(ext_values.iter().copied());
    let mut agreed = None;
    for answer in &answers {
        match (&request.deflate, answer.name.as_str()) {
            (Some(config), deflate::EXTENSION_NAME) if agreed.is_none() => {
                agreed =
                    Some(deflate::accept_client(answer, config).map_err(|e| ResponseError::Extension(e.to_string()))?);
            }
            _ => {
                return Err(ResponseError::Extension(format!(
                    "the server answered with {:?}, which was not offered",
                    answer.name
                )))
            }
        }
    }
    let extensions = if ext_values.is_empty() { None } else { Some(ext_values.join(", ")) };
    Ok(Some((ServerResponse { protocol, deflate: agreed, extensions, headers: all }, used)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_static(v));
        }
        map
    }

    const GOOD: &[(&str, &str)] = &[
        ("host", "example"),
        ("upgrade", "WebSocket"),
        ("connection", "keep-alive, Upgrade"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("sec-websocket-version", "13"),
        ("sec-websocket-protocol", "chat, superchat"),
    ];

    #[test]
    fn rfc_accept_key_example() {
        assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn accepts_a_valid_request_with_token_lists_in_any_case() {
        let req = validate_request(&Method::GET, Version::HTTP_11, &headers(GOOD)).unwrap();
        assert_eq!(req.protocols, vec!["chat", "superchat"]);
        assert_eq!(req.key, "dGhlIHNhbXBsZSBub25jZQ==");
    }

    #[test]
    fn refuses_each_bad_request_with_its_status() {
        let without = |name: &str| {
            let mut h = headers(GOOD);
            h.remove(name);
            h
        };
        let with = |name: &'static str, value: &'static str| {
            let mut h = headers(GOOD);
            h.insert(name, HeaderValue::from_static(value));
            h
        };
        let cases: Vec<(Method, Version, HeaderMap, u16)> = vec![
            (Method::POST, Version::HTTP_11, headers(GOOD), 405),
            (Method::GET, Version::HTTP_10, headers(GOOD), 400),
            (Method::GET, Version::HTTP_11, without("upgrade"), 426),
            (Method::GET, Version::HTTP_11, with("upgrade", "h2c"), 426),
            (Method::GET, Version::HTTP_11, without("connection"), 400),
            (Method::GET, Version::HTTP_11, with("connection", "keep-alive"), 400),
            (Method::GET, Version::HTTP_11, without("sec-websocket-key"), 400),
            (Method::GET, Version::HTTP_11, with("sec-websocket-key", "not base64!"), 400),
            (Method::GET, Version::HTTP_11, with("sec-websocket-key", "dGhlIHNhbXBsZQ=="), 400),
            (Method::GET, Version::HTTP_11, without("sec-websocket-version"), 426),
            (Method::GET, Version::HTTP_11, with("sec-websocket-version", "8"), 426),
        ];
        for (method, version, headers, status) in cases {
            let err = validate_request(&method, version, &headers).unwrap_err();
            assert_eq!(err.status().as_u16(), status, "{err}");
        }
    }

    #[test]
    fn client_request_and_response_round_trip() {
        let request = ClientRequest {
            host: "localhost:3333".into(),
            path: "/chat?room=1".into(),
            protocols: vec!["chat.v1".into()],
            deflate: Some(DeflateConfig::default()),
            headers: vec![("Authorization".into(), "Bearer x".into())],
        };
        let key = generate_key([7; 16]);
        let head = String::from_utf8(request.encode(&key)).unwrap();
        assert!(head.starts_with("GET /chat?room=1 HTTP/1.1\r\nHost: localhost:3333\r\n"));
        assert!(head.contains("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"));
        let answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\nSec-WebSocket-Protocol: chat.v1\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n\x01\x00",
            accept_key(key.as_bytes())
        );
        let (resp, used) = parse_response(answer.as_bytes(), &key, &request).unwrap().unwrap();
        assert_eq!(used, answer.len() - 2);
        assert_eq!(resp.protocol.as_deref(), Some("chat.v1"));
        assert!(resp.deflate.is_some());
        assert!(matches!(parse_response(&answer.as_bytes()[..20], &key, &request), Ok(None)));
        let wrong = answer.replace("chat.v1", "other");
        assert!(matches!(parse_response(wrong.as_bytes(), &key, &request), Err(ResponseError::Protocol(_))));
        let refused = "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n";
        assert!(matches!(
            parse_response(refused.as_bytes(), &key, &request),
            Err(ResponseError::Status { status: 401, .. })
        ));
    }
}
