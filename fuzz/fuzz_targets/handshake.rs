//! Arbitrary bytes as an upgrade request (server side) and as a response (client side).
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_wire::deflate::{self, DeflateConfig};
use switchboard_wire::handshake::{self, ClientRequest};

fuzz_target!(|data: &[u8]| {
    // Server side: parse like an HTTP server would, then validate.
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    if let Ok(httparse::Status::Complete(_)) = request.parse(data) {
        let mut map = http::HeaderMap::new();
        for header in request.headers.iter() {
            if let (Ok(name), Ok(value)) =
                (http::HeaderName::from_bytes(header.name.as_bytes()), http::HeaderValue::from_bytes(header.value))
            {
                map.append(name, value);
            }
        }
        let method = http::Method::from_bytes(request.method.unwrap_or("GET").as_bytes()).unwrap_or(http::Method::GET);
        let version = if request.version == Some(1) { http::Version::HTTP_11 } else { http::Version::HTTP_10 };
        if let Ok(upgrade) = handshake::validate_request(&method, version, &map) {
            let _ = deflate::negotiate_server(&upgrade.extensions, &DeflateConfig::default());
            let _ = handshake::response_headers(&upgrade.key, upgrade.protocols.first().map(String::as_str), None);
        }
    }
    // Client side: the same bytes as the server's answer.
    let ours = ClientRequest {
        host: "localhost".into(),
        path: "/".into(),
        protocols: vec!["chat".into()],
        deflate: Some(DeflateConfig::default()),
        headers: Vec::new(),
    };
    let _ = handshake::parse_response(data, "dGhlIHNhbXBsZSBub25jZQ==", &ours);
});
