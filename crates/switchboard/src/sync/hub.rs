//! The sync hub: serves `switchboard.sync.v1` (and fritz2's raw format) over an [`EntityStore`].
//!
//! ```no_run
//! use switchboard::sync::{Collection, SqliteStore, SyncHub};
//! use switchboard::Switchboard;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let hub = SyncHub::new(SqliteStore::open("app.db")?).collection("people", Collection::new());
//! Switchboard::new().sync("/sync", hub).listen("127.0.0.1:3333").await?;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use axum::response::Response;
use http::StatusCode;
use tokio::sync::mpsc;

use super::collection::{Collection, WriteContext};
use super::feed::{text, Feed, Format, Gap};
use super::protocol::{ClientMessage, Origin, ServerMessage, SUBPROTOCOL};
use super::store::{Committed, Decider, EntityStore, Operation, Replay, Write, WriteOutcome};
use crate::server::{reject, Accept, Hooks, UpgradeRequest};
use crate::{CloseEvent, Message, Peer, Switchboard};

/// Largest entity accepted by default, as JSON text.
pub const DEFAULT_MAX_ENTITY_BYTES: usize = 1 << 20;

/// One synced collection as this node sees it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CollectionStats {
    /// The collection's name.
    pub name: String,
    /// The last version delivered to its subscribers here.
    pub version: u64,
    /// Connected `switchboard.sync.v1` subscriptions.
    pub stores: usize,
    /// Connected fritz2 raw-format clients.
    pub raw_stores: usize,
}

type Authenticate = dyn Fn(&UpgradeRequest) -> Result<Option<String>, Response> + Send + Sync;

/// Serves synced collections from one store. Cheap to clone.
#[derive(Clone)]
pub struct SyncHub {
    inner: Arc<HubInner>,
}

struct HubInner {
    store: Arc<dyn EntityStore>,
    collections: HashMap<String, Collection>,
    any: Option<Collection>,
    authenticate: Option<Arc<Authenticate>>,
    max_entity_bytes: usize,
    feeds: Mutex<HashMap<String, Arc<Feed>>>,
    started: OnceLock<()>,
}

impl SyncHub {
    /// A hub over `store` serving no collection yet: add them with [`SyncHub::collection`] or
    /// [`SyncHub::any_collection`].
    pub fn new(store: impl EntityStore) -> Self {
        Self::with_store(Arc::new(store))
    }

    /// A hub over a shared store.
    pub fn with_store(store: Arc<dyn EntityStore>) -> Self {
        Self {
            inner: Arc::new(HubInner {
                store,
                collections: HashMap::new(),
                any: None,
                authenticate: None,
                max_entity_bytes: DEFAULT_MAX_ENTITY_BYTES,
                feeds: Mutex::default(),
                started: OnceLock::new(),
            }),
        }
    }

    fn configure(mut self, change: impl FnOnce(&mut HubInner)) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => change(inner),
            None => tracing::error!("SyncHub configured after it was cloned or mounted: ignored"),
        }
        self
    }

    /// Serves a collection with its rules.
    pub fn collection(self, name: &str, rules: Collection) -> Self {
        let name = name.to_owned();
        self.configure(|inner| {
            inner.collections.insert(name, rules);
        })
    }

    /// Serves every collection name not declared, with these rules (schemaless JSON entities, as
    /// `switchboard serve` does).
    pub fn any_collection(self, rules: Collection) -> Self {
        self.configure(|inner| inner.any = Some(rules))
    }

    /// Names the user from the upgrade request (a token, a cookie), or refuses the connection with
    /// a response (401, say). Collection rules see the name. Default: everyone is anonymous.
    pub fn authenticate(
        self,
        authenticate: impl Fn(&UpgradeRequest) -> Result<Option<String>, Response> + Send + Sync + 'static,
    ) -> Self {
        self.configure(|inner| inner.authenticate = Some(Arc::new(authenticate)))
    }

    /// The largest entity accepted, as JSON text (default 1 MiB). Larger ones are rejected.
    pub fn max_entity_bytes(self, bytes: usize) -> Self {
        self.configure(|inner| inner.max_entity_bytes = bytes)
    }

    /// The collections with subscribers on this node: the version delivered to them and how many
    /// stores are connected, by name.
    pub fn collections(&self) -> Vec<CollectionStats> {
        let feeds: Vec<_> = lock(&self.inner.feeds).iter().map(|(name, feed)| (name.clone(), feed.clone())).collect();
        let mut stats: Vec<_> = feeds
            .into_iter()
            .map(|(name, feed)| {
                let (stores, raw_stores) = feed.subscriber_counts();
                CollectionStats { name, version: feed.delivered(), stores, raw_stores }
            })
            .collect();
        stats.sort_by(|a, b| a.name.cmp(&b.name));
        stats
    }

    fn rules(&self, collection: &str) -> Option<&Collection> {
        self.inner.collections.get(collection).or(self.inner.any.as_ref())
    }

    /// Starts the task that hands committed changes to subscribers (once, inside the runtime).
    fn start(&self) {
        self.inner.started.get_or_init(|| match self.inner.store.committed() {
            Some(committed) => {
                tokio::spawn(dispatch(Arc::downgrade(&self.inner), committed));
            }
            None => tracing::error!("sync: the store's changes are taken by another hub; subscribers get none"),
        });
    }
}

impl Switchboard {
    /// Serves `hub` under `prefix`: `prefix/<collection>` (and `prefix` itself, where `sub` names the
    /// collection) for `switchboard.sync.v1` clients, and `prefix/<collection>/<id>` for fritz2's raw
    /// `syncWith` format as well.
    pub fn sync(self, prefix: &str, hub: SyncHub) -> Self {
        let prefix = prefix.trim_end_matches('/').to_owned();
        let endpoint = SyncEndpoint { hub, prefix: prefix.clone() };
        self.ws(&prefix, endpoint.clone())
            .ws(&format!("{prefix}/{{collection}}"), endpoint.clone())
            .ws(&format!("{prefix}/{{collection}}/{{id}}"), endpoint)
    }
}

#[derive(Clone)]
struct SyncEndpoint {
    hub: SyncHub,
    prefix: String,
}

/// Most writes of one connection waiting for their answers at once.
const MAX_IN_FLIGHT: usize = 256;

/// A mutation's answer to come.
type Answer = std::pin::Pin<Box<dyn std::future::Future<Output = ServerMessage> + Send>>;

/// Work for a connection's answer task: wait for one answer and send it.
type Job = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// What one connection is, from its upgrade on.
struct Connection {
    user: Option<String>,
    collection: Option<String>,
    raw_id: Option<String>,
    state: Mutex<ConnectionState>,
    /// Answers go out from here, in the order the mutations came.
    answers: mpsc::UnboundedSender<Job>,
    in_flight: Arc<tokio::sync::Semaphore>,
}

impl Connection {
    fn new(user: Option<String>, collection: Option<String>, raw_id: Option<String>) -> Self {
        let (answers, mut jobs) = mpsc::unbounded_channel::<Job>();
        // Ends when the connection (its sender) is gone and the queued answers are sent.
        tokio::spawn(async move {
            while let Some(job) = jobs.recv().await {
                job.await;
            }
        });
        Self {
            user,
            collection,
            raw_id,
            state: Mutex::default(),
            answers,
            in_flight: Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT)),
        }
    }
}

#[derive(Default)]
struct ConnectionState {
    client: Option<String>,
    subscribed: Option<(String, Arc<Feed>)>,
}

#[derive(Clone)]
struct ConnectionRef(Arc<Connection>);

fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl SyncEndpoint {
    fn connection(peer: &Peer) -> Option<Arc<Connection>> {
        peer.context::<ConnectionRef>().map(|c| c.0.clone())
    }

    fn route(&self, path: &str) -> Result<(Option<String>, Option<String>), Response> {
        let rest = path.strip_prefix(&self.prefix).unwrap_or("").trim_start_matches('/');
        let mut segments = rest.split('/').filter(|s| !s.is_empty());
        let decode = |s: &str| {
            percent_decode(s)
                .ok_or_else(|| reject(StatusCode::BAD_REQUEST, format!("sync: {s:?} is not a valid path segment\n")))
        };
        let collection = segments.next().map(decode).transpose()?;
        let id = segments.next().map(decode).transpose()?;
        Ok((collection, id))
    }

    async fn subscribe(&self, peer: &Peer, connection: &Connection, message: SubRequest) {
        let hub = &self.hub;
        let SubRequest { collection, id, since, client, format } = message;
        let error = |reason: String| {
            let _ = peer.send(text(ServerMessage::Error { reason }.to_json()));
        };
        if let Some(url) = &connection.collection {
            if *url != collection {
                return error(format!("sub: this connection is for collection {url:?}, not {collection:?}"));
            }
        }
        let Some(rules) = hub.rules(&collection) else {
            return error(format!("sub: unknown collection {collection:?}"));
        };
        if !rules.may_read(connection.user.as_deref()) {
            return error(format!("sub: you may not read collection {collection:?}"));
        }
        // A new sub replaces the connection's subscription (a client resumes after a gap this way).
        self.unsubscribe(peer, connection);
        lock(&connection.state).client = Some(client.unwrap_or_else(|| format!("connection:{}", peer.id())));
        let feed = match self.join(&collection, peer, id.clone(), format.clone()).await {
            Ok(feed) => feed,
            Err(reason) => {
                lock(&connection.state).client = None;
                return error(format!("sub: {reason}; try again"));
            }
        };
        lock(&connection.state).subscribed = Some((collection.clone(), feed.clone()));
        let store = &hub.inner.store;
        let (first, sent) = match (since, &format) {
            (Some(since), Format::V1) => match store.changes_since(&collection, id.as_deref(), since).await {
                Ok(Replay::Changes { changes, version }) => {
                    (changes.iter().map(|change| text(change.message().to_json())).collect(), version)
                }
                Ok(Replay::Gone(reason)) => {
                    self.unsubscribe(peer, connection);
                    let _ = peer.send(text(ServerMessage::Refetch { reason }.to_json()));
                    return;
                }
                Err(failure) => {
                    self.unsubscribe(peer, connection);
                    return error(format!("sub: {failure}; try again"));
                }
            },
            _ => match store.snapshot(&collection, id.as_deref()).await {
                Ok(snapshot) => {
                    let first = match &format {
                        Format::V1 => vec![text(
                            ServerMessage::Snapshot { entities: snapshot.entities, version: snapshot.version }
                                .to_json(),
                        )],
                        // fritz2's raw client gets the entity as it is, if it exists.
                        Format::Raw { .. } => {
                            snapshot.entities.into_iter().map(|entity| text(entity.data.to_string())).collect()
                        }
                    };
                    (first, snapshot.version)
                }
                Err(failure) => {
                    self.unsubscribe(peer, connection);
                    return error(format!("sub: {failure}; try again"));
                }
            },
        };
        feed.go_live(peer, sent, first, format == Format::V1);
    }

    /// Registers the peer with the collection's feed (made on first use), so changes are held for it
    /// from now on. Registration happens under the feeds' lock, so a feed being dropped as its last
    /// subscriber leaves never gets a new one.
    async fn join(
        &self,
        collection: &str,
        peer: &Peer,
        id: Option<String>,
        format: Format,
    ) -> Result<Arc<Feed>, String> {
        let inner = &self.hub.inner;
        let mut version = None;
        loop {
            {
                let mut feeds = lock(&inner.feeds);
                let feed = match (feeds.get(collection), version) {
                    (Some(feed), _) => Some(feed.clone()),
                    (None, Some(version)) => {
                        Some(feeds.entry(collection.to_owned()).or_insert_with(|| Arc::new(Feed::new(version))).clone())
                    }
                    (None, None) => None,
                };
                if let Some(feed) = feed {
                    feed.add(peer.clone(), id, format);
                    return Ok(feed);
                }
            }
            version = Some(inner.store.version(collection).await.map_err(|e| e.to_string())?);
        }
    }

    fn unsubscribe(&self, peer: &Peer, connection: &Connection) {
        let Some((collection, feed)) = lock(&connection.state).subscribed.take() else { return };
        let mut feeds = lock(&self.hub.inner.feeds);
        if feed.remove(peer) && feeds.get(&collection).is_some_and(|f| Arc::ptr_eq(f, &feed)) {
            feeds.remove(&collection);
        }
    }

    /// Queues one mutation (checked here, applied in the store in the order queued) and returns
    /// its answer to come.
    fn mutate(&self, connection: &Connection, request: MutateRequest) -> Answer {
        let MutateRequest { mutation_id, id, operation, base_version, message_len } = request;
        let (client, collection) = {
            let state = lock(&connection.state);
            (state.client.clone(), state.subscribed.as_ref().map(|(c, _)| c.clone()))
        };
        let refuse = |reason: String, retryable: bool| ServerMessage::Reject {
            mutation_id: mutation_id.clone(),
            reason,
            retryable,
            current: None,
        };
        let reject =
            |reason: String, retryable: bool| -> Answer { Box::pin(std::future::ready(refuse(reason, retryable))) };
        let (Some(client), Some(collection)) = (client, collection) else {
            // Retryable: a client's queued writes may reach a new connection before its sub.
            return reject("send sub before writing: it names the client and the collection".into(), true);
        };
        let Some(rules) = self.hub.rules(&collection) else {
            return reject(format!("unknown collection {collection:?}"), false);
        };
        let user = connection.user.clone();
        if !rules.may_write(user.as_deref()) {
            return reject(format!("you may not write collection {collection:?}"), false);
        }
        let max = self.hub.inner.max_entity_bytes;
        // The message holds the entity, so only a message over the limit needs its entity measured
        // (the store serialises it once, to store it).
        if let (Operation::Put(value), true) = (&operation, message_len > max) {
            let size = value.to_string().len();
            if size > max {
                return reject(
                    format!("the entity is {size} bytes of JSON, at most {}", self.hub.inner.max_entity_bytes),
                    false,
                );
            }
        }
        let decide: Decider = match rules.on_write.clone() {
            None => Arc::new(|_, _| super::store::Decision::Accept),
            Some(hook) => {
                let (client, collection, id) = (client.clone(), collection.clone(), id.clone());
                Arc::new(move |current, operation| {
                    hook(&WriteContext {
                        user: user.as_deref(),
                        client: &client,
                        collection: &collection,
                        id: &id,
                        current,
                        operation,
                    })
                })
            }
        };
        let write = Write {
            collection,
            id,
            operation,
            base_version,
            origin: Origin { client, mutation_id: mutation_id.clone() },
            decide,
        };
        let written = self.hub.inner.store.write(write);
        Box::pin(async move {
            match written.await {
                Ok(WriteOutcome::Applied { answer, .. }) | Ok(WriteOutcome::Answered(answer)) => answer,
                // The store failed (the database is unreachable): the client keeps it and retries.
                Err(failure) => {
                    ServerMessage::Reject { mutation_id, reason: failure.to_string(), retryable: true, current: None }
                }
            }
        })
    }

    /// Queues a mutation and hands its answer to `then` in the connection's answer task, in the
    /// order the mutations came, so the next message is read while the store works. At most
    /// `MAX_IN_FLIGHT` writes per connection wait for answers; past that, reading waits.
    async fn mutate_in_order(
        &self,
        connection: &Connection,
        request: MutateRequest,
        then: impl FnOnce(ServerMessage) + Send + 'static,
    ) {
        let Ok(permit) = connection.in_flight.clone().acquire_owned().await else { return };
        let answer = self.mutate(connection, request);
        let job: Job = Box::pin(async move {
            then(answer.await);
            drop(permit);
        });
        let _ = connection.answers.send(job);
    }

    async fn on_v1_message(&self, peer: &Peer, connection: &Connection, message: &Message) -> crate::HookResult {
        let message_len = message.len();
        let parsed = match message.text() {
            Ok(text) => ClientMessage::parse(text),
            Err(_) => {
                Err(super::protocol::Violation("sync message: binary frames are not part of the protocol".into()))
            }
        };
        let message = match parsed {
            Ok(message) => message,
            Err(violation) => {
                let _ = peer.close(1008, &violation.0);
                return Ok(());
            }
        };
        match message {
            ClientMessage::Sub { collection, id, since, client } => {
                self.subscribe(peer, connection, SubRequest { collection, id, since, client, format: Format::V1 })
                    .await;
            }
            ClientMessage::Mutate { mutation_id, id, data, base_version } => {
                let request =
                    MutateRequest { mutation_id, id, operation: Operation::Put(data), base_version, message_len };
                let peer = peer.clone();
                self.mutate_in_order(connection, request, move |answer| drop(peer.send(text(answer.to_json())))).await;
            }
            ClientMessage::Delete { mutation_id, id, base_version } => {
                let request =
                    MutateRequest { mutation_id, id, operation: Operation::Delete, base_version, message_len };
                let peer = peer.clone();
                self.mutate_in_order(connection, request, move |answer| drop(peer.send(text(answer.to_json())))).await;
            }
        }
        Ok(())
    }

    /// fritz2's raw format: each text frame is the whole entity, a replace of the URL's id.
    async fn on_raw_message(
        &self,
        peer: &Peer,
        connection: &Connection,
        id: &str,
        message: &Message,
    ) -> crate::HookResult {
        let value = match message.text().map(serde_json::from_str::<serde_json::Value>) {
            Ok(Ok(value)) => value,
            Ok(Err(error)) => {
                let _ = peer.close(1008, &format!("fritz2 sync: the message is not JSON: {error}"));
                return Ok(());
            }
            Err(_) => {
                let _ = peer.close(1003, "fritz2 sync: entities are text frames of JSON");
                return Ok(());
            }
        };
        let request = MutateRequest {
            mutation_id: uuid::Uuid::new_v4().to_string(),
            id: id.to_owned(),
            operation: Operation::Put(value.clone()),
            base_version: None,
            message_len: message.len(),
        };
        let peer = peer.clone();
        let id = id.to_owned();
        self.mutate_in_order(connection, request, move |answer| match answer {
            // What was stored differs from what was sent (a server hook rewrote it): the client's
            // store takes the server's value. Its own value as sent is not echoed.
            ServerMessage::Ack { data, .. } if data != value => {
                let _ = peer.send(text(data.to_string()));
            }
            ServerMessage::Ack { .. } => {}
            ServerMessage::Reject { reason, current, retryable, .. } => {
                tracing::info!(id, %reason, retryable, "sync: a fritz2 client's write was rejected");
                if let Some(current) = current.filter(|c| c.version > 0 && !c.deleted) {
                    let _ = peer.send(text(current.data.to_string()));
                }
            }
            _ => {}
        })
        .await;
        Ok(())
    }
}

struct SubRequest {
    collection: String,
    id: Option<String>,
    since: Option<u64>,
    client: Option<String>,
    format: Format,
}

struct MutateRequest {
    mutation_id: String,
    id: String,
    operation: Operation,
    base_version: Option<u64>,
    /// The length of the message that carried it: a bound on the entity's JSON size.
    message_len: usize,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Hooks for SyncEndpoint {
    async fn upgrade(&self, request: UpgradeRequest) -> Result<Accept, Response> {
        self.hub.start();
        let (collection, raw_id) = self.route(request.uri().path())?;
        if let Some(collection) = &collection {
            if self.hub.rules(collection).is_none() {
                return Err(reject(StatusCode::NOT_FOUND, format!("sync: unknown collection {collection:?}\n")));
            }
        }
        let user = match &self.hub.inner.authenticate {
            Some(authenticate) => authenticate(&request)?,
            None => None,
        };
        let v1 = request.protocols().iter().any(|p| p == SUBPROTOCOL);
        let raw_id = match (v1, raw_id, &collection) {
            (true, _, _) => None,
            (false, Some(id), Some(_)) => Some(id),
            (false, _, _) => {
                return Err(reject(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "sync: offer the subprotocol {SUBPROTOCOL}, or connect to {}/<collection>/<id> for fritz2's raw format\n",
                        self.prefix
                    ),
                ))
            }
        };
        let connection = Connection::new(user, collection, raw_id);
        let accept = Accept::new().context(ConnectionRef(Arc::new(connection)));
        Ok(if v1 { accept.protocol(SUBPROTOCOL) } else { accept })
    }

    async fn open(&self, peer: Peer) -> crate::HookResult {
        let Some(connection) = Self::connection(&peer) else { return Ok(()) };
        if let (Some(id), Some(collection)) = (&connection.raw_id, &connection.collection) {
            let client = format!("fritz2:{}", peer.id());
            let request = SubRequest {
                collection: collection.clone(),
                id: Some(id.clone()),
                since: None,
                client: Some(client.clone()),
                format: Format::Raw { client },
            };
            self.subscribe(&peer, &connection, request).await;
        }
        Ok(())
    }

    async fn message(&self, peer: Peer, message: Message) -> crate::HookResult {
        let Some(connection) = Self::connection(&peer) else { return Ok(()) };
        match &connection.raw_id {
            Some(id) => self.on_raw_message(&peer, &connection, id, &message).await,
            None => self.on_v1_message(&peer, &connection, &message).await,
        }
    }

    async fn close(&self, peer: Peer, _close: CloseEvent) -> crate::HookResult {
        if let Some(connection) = Self::connection(&peer) {
            self.unsubscribe(&peer, &connection);
        }
        Ok(())
    }
}

/// Hands committed changes to the feeds in commit order, reading from the log what a feed missed.
async fn dispatch(hub: std::sync::Weak<HubInner>, mut committed: mpsc::UnboundedReceiver<Committed>) {
    while let Some(event) = committed.recv().await {
        let Some(hub) = hub.upgrade() else { return };
        let feeds: Vec<(String, Arc<Feed>, Option<Arc<super::store::Change>>)> = {
            let feeds = lock(&hub.feeds);
            match event {
                Committed::Change(change) => feeds
                    .get(&change.collection)
                    .map(|f| (change.collection.clone(), f.clone(), Some(change)))
                    .into_iter()
                    .collect(),
                Committed::Reached { collection, version } => feeds
                    .get(&collection)
                    .filter(|f| f.delivered() < version)
                    .map(|f| (collection.clone(), f.clone(), None))
                    .into_iter()
                    .collect(),
                Committed::Resync => feeds.iter().map(|(c, f)| (c.clone(), f.clone(), None)).collect(),
            }
        };
        for (collection, feed, change) in feeds {
            let caught_up = match &change {
                Some(change) => feed.deliver(change) == Ok(()),
                None => false,
            };
            if !caught_up {
                catch_up(&hub, &collection, &feed).await;
                if let Some(change) = &change {
                    let _ = feed.deliver(change);
                }
            }
        }
    }
}

/// Delivers what the store's log has after what the feed delivered.
async fn catch_up(hub: &HubInner, collection: &str, feed: &Feed) {
    let delivered = feed.delivered();
    match hub.store.changes_since(collection, None, delivered).await {
        Ok(Replay::Changes { changes, .. }) => {
            for change in changes {
                if let Err(Gap { delivered }) = feed.deliver(&Arc::new(change)) {
                    tracing::error!(collection, delivered, "sync: the change log has a gap");
                    break;
                }
            }
        }
        Ok(Replay::Gone(reason)) => {
            let version = hub.store.version(collection).await.unwrap_or(delivered);
            tracing::warn!(collection, %reason, "sync: subscribers fell behind the change log; they refetch");
            feed.refetch(&reason, version);
        }
        Err(error) => {
            tracing::warn!(collection, %error, "sync: cannot read the change log; delivery resumes with the next change")
        }
    }
}
