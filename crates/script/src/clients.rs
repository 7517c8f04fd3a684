//! Outbound WebSocket clients created by scripts (`websockets.createWebsocket`): the registry that
//! `getClients`, `getClient` and `getClientByHandler` read, and the task that runs each client on a
//! `switchboard` session and hands its events to the handler module.
//!
//! A client is listed from its creation until it is closed (Dirigible 7+ never filled the list), its
//! sends are queued in order while it connects, and `close()` goes out after what was sent before.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use serde::Serialize;
use switchboard::client::State;
use switchboard::Message;
use tokio::sync::{mpsc, Notify};

use crate::engine::{Event, Method, Poster};

/// What a script sees of a client (`getClients()`).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ClientInfo {
    /// Unique id.
    pub id: String,
    /// The URI it connects to.
    pub uri: String,
    /// The handler module its events run.
    pub handler: String,
    /// The handler's engine (`javascript`).
    pub engine: String,
    /// `connecting`, `open`, `closing` or `closed`.
    pub state: String,
    /// The runtime that created it (an endpoint, or the script file of `switchboard run`).
    pub owner: String,
}

enum Command {
    Send(Message),
    Close,
}

struct Client {
    info: Mutex<ClientInfo>,
    commands: mpsc::UnboundedSender<Command>,
}

/// The clients of a project, and which hosts they may reach.
#[derive(Default)]
pub struct Registry {
    clients: Mutex<Vec<Arc<Client>>>,
    allowed: Vec<String>,
    changed: Notify,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("clients", &self.list()).field("allowed", &self.allowed).finish()
    }
}

impl Registry {
    /// A registry whose clients may reach only hosts matching `allowed` (exact names, or `*.domain`;
    /// empty: any host).
    pub fn new(allowed: Vec<String>) -> Self {
        Self { clients: Mutex::default(), allowed, changed: Notify::new() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Client>>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every client not closed yet, oldest first.
    pub fn list(&self) -> Vec<ClientInfo> {
        self.lock().iter().map(|c| c.info.lock().unwrap_or_else(|p| p.into_inner()).clone()).collect()
    }

    /// The clients created by runtime `owner` that are not closed yet.
    pub fn open_of(&self, owner: &str) -> usize {
        self.list().iter().filter(|c| c.owner == owner).count()
    }

    /// Waits until the list changes.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// The client with this id.
    pub fn info(&self, id: &str) -> Option<ClientInfo> {
        self.list().into_iter().find(|c| c.id == id)
    }

    fn find(&self, id: &str) -> Option<Arc<Client>> {
        self.lock().iter().find(|c| c.info.lock().unwrap_or_else(|p| p.into_inner()).id == id).cloned()
    }

    /// Queues a message for client `id`. False if there is no such client.
    pub fn send(&self, id: &str, message: Message) -> bool {
        self.find(id).is_some_and(|client| client.commands.send(Command::Send(message)).is_ok())
    }

    /// Closes client `id` after what was sent before. False if there is no such client.
    pub fn close(&self, id: &str) -> bool {
        self.find(id).is_some_and(|client| client.commands.send(Command::Close).is_ok())
    }

    /// Closes every client of runtime `owner` (its runtime is going away).
    pub fn close_all_of(&self, owner: &str) {
        for client in self.lock().iter() {
            if client.info.lock().unwrap_or_else(|p| p.into_inner()).owner == owner {
                let _ = client.commands.send(Command::Close);
            }
        }
    }

    /// Whether `uri`'s host may be reached.
    fn allows(&self, uri: &str) -> bool {
        if self.allowed.is_empty() {
            return true;
        }
        let Some(host) = host_of(uri) else { return false };
        self.allowed.iter().any(|pattern| match pattern.strip_prefix("*.") {
            Some(domain) => host == domain || host.ends_with(&format!(".{domain}")),
            None => host == pattern.to_ascii_lowercase(),
        })
    }

    /// Creates a client and starts connecting it; its events go to `handler` through `poster`.
    pub(crate) fn create(
        self: &Arc<Self>,
        uri: &str,
        handler: &str,
        engine: &str,
        poster: Poster,
        runtime: &tokio::runtime::Handle,
    ) -> Result<ClientInfo, String> {
        if engine != "javascript" {
            return Err(format!("createWebsocket: unknown engine {engine:?}: the only engine is \"javascript\""));
        }
        let socket = switchboard::websocket(uri).map_err(|e| format!("createWebsocket: invalid URI {uri:?}: {e}"))?;
        if !self.allows(uri) {
            return Err(format!(
                "createWebsocket: {uri} is not an allowed host (allowed: {})",
                self.allowed.join(", ")
            ));
        }
        let info = ClientInfo {
            id: uuid::Uuid::new_v4().to_string(),
            uri: uri.to_owned(),
            handler: handler.to_owned(),
            engine: engine.to_owned(),
            state: "connecting".to_owned(),
            owner: poster.owner().to_owned(),
        };
        let (commands, queue) = mpsc::unbounded_channel();
        let client = Arc::new(Client { info: Mutex::new(info.clone()), commands });
        self.lock().push(client.clone());
        self.changed.notify_waiters();
        let session = {
            let _entered = runtime.enter();
            socket.connect()
        };
        let handler_path: Arc<str> = Arc::from(crate::files::with_js(handler.to_owned()).as_str());
        runtime.spawn(drive(self.clone(), client, session, queue, poster, handler_path));
        Ok(info)
    }

    fn remove(&self, client: &Arc<Client>) {
        self.lock().retain(|c| !Arc::ptr_eq(c, client));
        self.changed.notify_waiters();
    }
}

/// The host of a `ws://` or `wss://` URI, lowercase, without port or user info.
fn host_of(uri: &str) -> Option<String> {
    let rest = uri.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let host = match authority.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next()?,
        None => authority.split(':').next()?,
    };
    Some(host.to_ascii_lowercase())
}

/// Runs one client: forwards the script's sends and close in order, and hands every event to the
/// handler (one at a time, in order). Removes the client from the registry when it is closed.
async fn drive(
    registry: Arc<Registry>,
    client: Arc<Client>,
    session: switchboard::Session,
    mut commands: mpsc::UnboundedReceiver<Command>,
    poster: Poster,
    handler: Arc<str>,
) {
    let mut messages = session.messages();
    let mut states = Box::pin(session.state());
    let mut errors = Box::pin(session.errors());
    let set_state = |state: &str| client.info.lock().unwrap_or_else(|p| p.into_inner()).state = state.to_owned();
    let event = |method: Method, message: Option<Message>, error: Option<String>| Event {
        handler: handler.clone(),
        method,
        message,
        error,
        peer: None,
    };
    let mut commands_open = true;
    // A connection that fails at once may report its error before this task subscribed to errors.
    let mut errored = false;
    loop {
        tokio::select! {
            biased;
            Some(message) = messages.next() => poster.deliver(event(Method::Message, Some(message), None)).await,
            Some(error) = errors.next() => {
                errored = true;
                poster.deliver(event(Method::Error, None, Some(error.to_string()))).await;
            }
            command = commands.recv(), if commands_open => match command {
                Some(Command::Send(message)) => {
                    if let Err(error) = session.send(message).await {
                        poster.deliver(event(Method::Error, None, Some(error.to_string()))).await;
                    }
                }
                Some(Command::Close) | None => {
                    commands_open = false;
                    let closing = session.clone();
                    tokio::spawn(async move { closing.close(1000, "").await });
                }
            },
            Some(state) = states.next() => match state {
                State::Connecting { .. } | State::Reconnecting { .. } => set_state("connecting"),
                State::Open => {
                    set_state("open");
                    poster.deliver(event(Method::Open, None, None)).await;
                }
                State::Closing => set_state("closing"),
                State::Closed(close) => {
                    // What arrived before the close is handled before onclose.
                    while let Ok(Some(message)) = tokio::time::timeout(Duration::from_millis(10), messages.next()).await {
                        poster.deliver(event(Method::Message, Some(message), None)).await;
                    }
                    while let Ok(Some(error)) = tokio::time::timeout(Duration::from_millis(1), errors.next()).await {
                        errored = true;
                        poster.deliver(event(Method::Error, None, Some(error.to_string()))).await;
                    }
                    if !errored && close.code == 1006 {
                        // An abnormal end is an error too (as a browser reports it), even if its
                        // error was emitted before this task listened.
                        poster.deliver(event(Method::Error, None, Some(close.reason.clone()))).await;
                    }
                    set_state("closed");
                    poster.deliver(event(Method::Close, None, None)).await;
                    registry.remove(&client);
                    return;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_matched_exactly_or_by_domain() {
        assert_eq!(host_of("ws://User@Example.org:8080/x").as_deref(), Some("example.org"));
        assert_eq!(host_of("wss://[::1]:9/").as_deref(), Some("::1"));
        let registry = Registry::new(vec!["127.0.0.1".into(), "*.example.org".into()]);
        assert!(registry.allows("ws://127.0.0.1:3333/x"));
        assert!(registry.allows("wss://a.example.org/"));
        assert!(registry.allows("wss://example.org/"));
        assert!(!registry.allows("ws://evil.org/"));
        assert!(!registry.allows("ws://example.org.evil.org/"));
        assert!(Registry::new(Vec::new()).allows("ws://anything/"));
    }
}
