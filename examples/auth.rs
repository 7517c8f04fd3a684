//! Authentication beyond the handshake. Browsers cannot set headers on a WebSocket, so a client
//! shows its token in one of three places, all checked in `upgrade`:
//! - the query: `wss://host/live?token=TOKEN` (simple; the URL may end up in proxy logs);
//! - a cookie: `session=TOKEN`, sent by the browser itself (check `Origin` too: any page can make
//!   the browser send it; `WsConfig::allowed_origins` does);
//! - `Sec-WebSocket-Protocol`: `new WebSocket(url, ["switchboard.bearer", TOKEN])`; the server answers
//!   with `switchboard.bearer`, never with the token.
//!
//! A session ends when its token does: at expiry the peer is closed with 4001 "token expired", and
//! when the token is revoked with 4003 "token revoked". Both are in 4000-4099, where Switchboard's
//! clients (Rust and switchboard.js) stop reconnecting: the client needs a new token first.
//!
//! Run: `cargo run -p switchboard --example auth`, then
//! `switchboard connect "ws://127.0.0.1:3333/live?token=demo"`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::StatusCode;
use switchboard::{define_hooks, reject, Accept, CloseEvent, HookSet, Peer, UpgradeRequest};
use tokio::time::Instant;

/// The subprotocol that carries a token as the next offered protocol.
pub const BEARER_PROTOCOL: &str = "switchboard.bearer";
/// The close code of a session whose token expired.
pub const TOKEN_EXPIRED: u16 = 4001;
/// The close code of a session whose token was revoked.
pub const TOKEN_REVOKED: u16 = 4003;

/// Who a token stands for, and until when.
#[derive(Clone, Debug)]
pub struct Grant {
    /// The user.
    pub user: String,
    /// When the token stops being valid.
    pub expires_at: Instant,
}

/// The valid tokens and the sessions opened with each. Cheap to clone.
#[derive(Clone, Default)]
pub struct Tokens {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    grants: HashMap<String, Grant>,
    /// Open sessions by token, each with the timer that ends it at expiry.
    sessions: HashMap<String, Vec<(Peer, tokio::task::AbortHandle)>>,
}

/// What a peer's context holds: its user and token.
#[derive(Clone, Debug)]
pub struct Session {
    /// The user.
    pub user: String,
    /// The token it showed.
    pub token: String,
    /// When it ends.
    pub expires_at: Instant,
}

impl Tokens {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `token` valid for `user` for `lifetime`.
    pub fn grant(&self, token: &str, user: &str, lifetime: Duration) {
        let grant = Grant { user: user.to_owned(), expires_at: Instant::now() + lifetime };
        self.lock().grants.insert(token.to_owned(), grant);
    }

    /// Makes `token` invalid and closes every session opened with it (4003).
    pub fn revoke(&self, token: &str) {
        let peers = {
            let mut inner = self.lock();
            inner.grants.remove(token);
            inner.sessions.remove(token).unwrap_or_default()
        };
        for (peer, expiry) in peers {
            expiry.abort();
            let _ = peer.close(TOKEN_REVOKED, "token revoked");
        }
    }

    fn valid(&self, token: &str) -> Option<Grant> {
        self.lock().grants.get(token).filter(|g| g.expires_at > Instant::now()).cloned()
    }
}

/// The token a request shows, and the subprotocol to answer with.
fn token_of(request: &UpgradeRequest) -> Option<(String, Option<&'static str>)> {
    if let Some(token) = request.query_param("token") {
        return Some((token, None));
    }
    let protocols = request.protocols();
    if let Some(at) = protocols.iter().position(|p| p == BEARER_PROTOCOL) {
        return protocols.get(at + 1).map(|token| (token.clone(), Some(BEARER_PROTOCOL)));
    }
    let cookies = request.headers().get_all(http::header::COOKIE);
    cookies.iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        (name == "session").then(|| (value.to_owned(), None))
    })
}

/// Hooks that accept only a valid token and end the session with it; `then` are the route's own
/// hooks for `message` (the others are taken).
pub fn hooks(tokens: Tokens, then: HookSet) -> HookSet {
    let (check, opened, closed) = (tokens.clone(), tokens.clone(), tokens);
    then.upgrade(move |request: UpgradeRequest| {
        let found = token_of(&request).and_then(|(token, protocol)| Some((check.valid(&token)?, token, protocol)));
        async move {
            let Some((grant, token, protocol)) = found else {
                return Err(reject(StatusCode::UNAUTHORIZED, "a valid token is required\n"));
            };
            let session = Session { user: grant.user, token, expires_at: grant.expires_at };
            let accept = Accept::new().context(session);
            Ok(match protocol {
                Some(protocol) => accept.protocol(protocol),
                None => accept,
            })
        }
    })
    .open(move |peer: Peer| {
        let tokens = opened.clone();
        async move {
            let Some(session) = peer.context::<Session>().cloned() else { return };
            // The session ends with its token, even if nobody revokes it.
            let expiring = peer.clone();
            let expiry = tokio::spawn(async move {
                tokio::time::sleep_until(session.expires_at).await;
                let _ = expiring.close(TOKEN_EXPIRED, "token expired");
            });
            tokens.lock().sessions.entry(session.token).or_default().push((peer, expiry.abort_handle()));
        }
    })
    .close(move |peer: Peer, _event: CloseEvent| {
        let tokens = closed.clone();
        async move {
            if let Some(session) = peer.context::<Session>() {
                let mut inner = tokens.lock();
                if let Some(peers) = inner.sessions.get_mut(&session.token) {
                    peers.retain(|(open, expiry)| {
                        let gone = open.id() == peer.id();
                        if gone {
                            expiry.abort();
                        }
                        !gone
                    });
                    if peers.is_empty() {
                        inner.sessions.remove(&session.token);
                    }
                }
            }
        }
    })
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> std::io::Result<()> {
    let tokens = Tokens::default();
    tokens.grant("demo", "ada", Duration::from_secs(600));
    let echo = define_hooks().message(|peer: Peer, message: switchboard::Message| async move {
        let user = peer.context::<Session>().map(|s| s.user.clone()).unwrap_or_default();
        peer.send(format!("{user}: {}", message.text().unwrap_or("(binary)")))
    });
    println!("ws://127.0.0.1:3333/live?token=demo (valid for 10 minutes)");
    switchboard::Switchboard::new().ws("/live", hooks(tokens, echo)).listen("127.0.0.1:3333").await
}
