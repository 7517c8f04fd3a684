//! Who may see the dashboard, `/api` and `/metrics`: anyone on a loopback-only server without a
//! token; otherwise whoever shows `--admin-token` as a bearer token or in the cookie that the login
//! form sets.

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};

/// The cookie the login form sets.
pub const COOKIE: &str = "switchboard_admin";

/// The admin access rule of one server.
#[derive(Clone, Debug)]
pub struct Admin {
    token: Option<String>,
    /// Whether a token is needed (the server listens beyond loopback, or a token was given).
    required: bool,
}

impl Admin {
    /// The rule for a server listening on a loopback address or not, with this token.
    pub fn new(token: Option<String>, loopback: bool) -> Self {
        let token = token.filter(|t| !t.is_empty());
        let required = !loopback || token.is_some();
        if required && token.is_none() {
            tracing::warn!(
                "the dashboard, /api and /metrics are refused (401): serve listens beyond loopback; \
                 set --admin-token TOKEN (or SWITCHBOARD_ADMIN_TOKEN) to open them to whoever has it"
            );
        }
        Self { token, required }
    }

    /// Whether the request may see the admin pages.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        if !self.required {
            return true;
        }
        let Some(token) = &self.token else { return false };
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|given| same(given.trim(), token));
        bearer || cookie(headers, COOKIE).is_some_and(|given| same(&given, token))
    }

    /// `None` if a request that changes something (a POST, the live feed's upgrade) may go on: the
    /// reader is allowed, and a browser sent it from one of our own pages. Without that check any web
    /// page a person visits could close peers on their loopback server (cross-site requests carry no
    /// token there, and a cookie only when the browser is lax about it).
    pub fn refuses_action(&self, headers: &HeaderMap, json_body: bool) -> Option<Response> {
        if !same_origin(headers) {
            return Some(
                (StatusCode::FORBIDDEN, "cross-origin requests are refused: use the dashboard on this server\n")
                    .into_response(),
            );
        }
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json")));
        if json_body && !json {
            return Some((StatusCode::UNSUPPORTED_MEDIA_TYPE, "send Content-Type: application/json\n").into_response());
        }
        self.refuses(headers)
    }

    /// `None` if allowed, else the 401 answer (the login form, for a browser).
    pub fn refuses(&self, headers: &HeaderMap) -> Option<Response> {
        (!self.allows(headers)).then(|| self.refusal(None))
    }

    /// 401 with the login form and why.
    pub fn refusal(&self, problem: Option<&str>) -> Response {
        let why = match (&self.token, problem) {
            (_, Some(problem)) => problem.to_owned(),
            (None, None) => "This server listens beyond loopback and has no admin token: start it with \
                             --admin-token TOKEN to open the dashboard."
                .to_owned(),
            (Some(_), None) => "The dashboard needs the admin token.".to_owned(),
        };
        let page = LOGIN.replace("{why}", &escape(&why));
        let mut response = (StatusCode::UNAUTHORIZED, Html(page)).into_response();
        response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        response
    }

    /// The login form's POST: sets the cookie and goes to the dashboard when the token is right.
    pub fn login(&self, form: &str) -> Response {
        let given = form
            .split('&')
            .find_map(|pair| pair.strip_prefix("token="))
            .map(switchboard::percent_decode)
            .unwrap_or_default();
        match &self.token {
            Some(token) if same(&given, token) => {
                let cookie = format!("{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict", form_encode(token));
                let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
                if let Ok(value) = header::HeaderValue::from_str(&cookie) {
                    response.headers_mut().insert(header::SET_COOKIE, value);
                }
                response
            }
            Some(_) => self.refusal(Some("Wrong token.")),
            None if !self.required => (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response(),
            None => self.refusal(None),
        }
    }
}

/// Whether a browser's `Origin` (absent for other clients) is this server, as named by `Host`.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else { return true };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let origin = origin.to_str().unwrap_or_default();
    let authority = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://"));
    !host.is_empty() && authority.is_some_and(|a| a.eq_ignore_ascii_case(host))
}

/// Compares in time that depends on the lengths only.
fn same(given: &str, expected: &str) -> bool {
    let (a, b) = (given.as_bytes(), expected.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        (key == name).then(|| switchboard::percent_decode(value))
    })
}

fn form_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Escapes text for HTML.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

const LOGIN: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Switchboard: sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/assets/style.css"><link rel="icon" href="/favicon.svg" type="image/svg+xml"></head>
<body class="login"><main><h1>Switchboard</h1><p>{why}</p>
<form method="post" action="/login"><label>Admin token <input name="token" type="password" autofocus></label>
<button type="submit">Sign in</button></form></main></body></html>
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: header::HeaderName, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, value.parse().expect("header value"));
        headers
    }

    #[test]
    fn loopback_without_token_is_open_and_anything_else_needs_the_token() {
        assert!(Admin::new(None, true).allows(&HeaderMap::new()));
        let exposed = Admin::new(None, false);
        assert!(!exposed.allows(&headers(header::AUTHORIZATION, "Bearer ")));
        let admin = Admin::new(Some("s3cret".into()), true);
        assert!(!admin.allows(&HeaderMap::new()));
        assert!(admin.allows(&headers(header::AUTHORIZATION, "Bearer s3cret")));
        assert!(!admin.allows(&headers(header::AUTHORIZATION, "Bearer s3cre")));
        assert!(admin.allows(&headers(header::COOKIE, "a=b; switchboard_admin=s3cret")));
        assert!(!admin.allows(&headers(header::COOKIE, "switchboard_admin=wrong")));
    }

    #[test]
    fn actions_come_from_our_own_pages_as_json() {
        let admin = Admin::new(None, true);
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "127.0.0.1:3333".parse().expect("host"));
        assert_eq!(admin.refuses_action(&headers, true).map(|r| r.status()), Some(StatusCode::UNSUPPORTED_MEDIA_TYPE));
        headers.insert(header::CONTENT_TYPE, "application/json; charset=utf-8".parse().expect("type"));
        assert!(admin.refuses_action(&headers, true).is_none());
        headers.insert(header::ORIGIN, "http://127.0.0.1:3333".parse().expect("origin"));
        assert!(admin.refuses_action(&headers, true).is_none());
        headers.insert(header::ORIGIN, "http://evil.example".parse().expect("origin"));
        assert_eq!(admin.refuses_action(&headers, true).map(|r| r.status()), Some(StatusCode::FORBIDDEN));
    }

    #[test]
    fn the_login_form_sets_the_cookie_only_for_the_right_token() {
        let admin = Admin::new(Some("a b&c".into()), false);
        let ok = admin.login("token=a+b%26c");
        assert_eq!(ok.status(), StatusCode::SEE_OTHER);
        let cookie = ok.headers()[header::SET_COOKIE].to_str().expect("ascii").to_owned();
        assert!(cookie.starts_with("switchboard_admin=a%20b%26c;"), "{cookie}");
        let value = cookie.split(';').next().expect("pair").to_owned();
        assert!(admin.allows(&headers(header::COOKIE, &value)));
        assert_eq!(admin.login("token=nope").status(), StatusCode::UNAUTHORIZED);
        assert_eq!(switchboard::percent_decode("%zz%4"), "%zz%4");
    }
}
