//! `store.sync_with(&socket, &resource)`: keeps a [`Store`] in sync with a hub, both ways, through
//! reconnects, with the pending mutations, rejections and status in view.

use std::time::Duration;

use futures_core::Stream;
use futures_util::StreamExt;
use tokio::sync::{broadcast, watch};
use tokio_stream::wrappers::{BroadcastStream, WatchStream};

use super::local::Store;
use super::protocol::{ServerMessage, SUBPROTOCOL};
use super::replica::{Entities, PendingMutation, Rejection, Replica};
use super::resource::Resource;
use crate::client::{Session, Socket};

/// How long a retryable rejection waits before the mutation is sent again.
const RETRY_DELAY: Duration = Duration::from_secs(1);

/// Where a sync is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncStatus {
    /// Connecting for the first time.
    Connecting,
    /// Connected; subscribing, or local mutations are on their way.
    Syncing,
    /// Up to date with the server at this collection version; nothing pending.
    Synced {
        /// The collection version.
        version: u64,
    },
    /// Not connected; local changes wait.
    Offline {
        /// Mutations waiting.
        pending: usize,
    },
    /// Stopped (`stop()`, or the session closed for good).
    Stopped,
}

/// The running sync of one store. Dropping it does not stop the sync; [`SyncHandle::stop`] does.
pub struct SyncHandle {
    status: watch::Receiver<SyncStatus>,
    /// How many of the store's local changes the sync has taken in, and how many there are.
    taken: watch::Receiver<u64>,
    local: watch::Receiver<u64>,
    pending: watch::Receiver<Vec<PendingMutation>>,
    rejections: broadcast::Sender<Rejection>,
    errors: broadcast::Sender<String>,
    stop: watch::Sender<bool>,
    session: Session,
}

impl SyncHandle {
    /// The status now.
    pub fn current_status(&self) -> SyncStatus {
        self.status.borrow().clone()
    }

    /// The status now and at every change.
    pub fn status(&self) -> impl Stream<Item = SyncStatus> + Send + 'static {
        WatchStream::new(self.status.clone())
    }

    /// Waits until the sync is `Synced` with every local change made before the call taken in and
    /// acknowledged (and the server's state in the store), and returns its version, or `None` if it
    /// stopped first.
    pub async fn synced(&self) -> Option<u64> {
        let target = *self.local.borrow();
        let mut status = self.status.clone();
        let mut taken = self.taken.clone();
        loop {
            let caught_up = *taken.borrow_and_update() >= target;
            match &*status.borrow_and_update() {
                SyncStatus::Synced { version } if caught_up => return Some(*version),
                SyncStatus::Stopped => return None,
                _ => {}
            }
            tokio::select! {
                changed = status.changed() => changed.ok()?,
                changed = taken.changed() => changed.ok()?,
            }
        }
    }

    /// The local mutations the server has not answered, in order.
    pub fn pending(&self) -> Vec<PendingMutation> {
        self.pending.borrow().clone()
    }

    /// The pending mutations now and at every change.
    pub fn pending_changes(&self) -> impl Stream<Item = Vec<PendingMutation>> + Send + 'static {
        WatchStream::new(self.pending.clone())
    }

    /// Mutations the server refused for good (the store rolled back to the server's value).
    pub fn rejections(&self) -> impl Stream<Item = Rejection> + Send + 'static {
        BroadcastStream::new(self.rejections.subscribe()).filter_map(|r| std::future::ready(r.ok()))
    }

    /// What went wrong on the way (a message that could not be read, an `error` from the server,
    /// an entity that cannot be serialised). The sync goes on.
    pub fn errors(&self) -> impl Stream<Item = String> + Send + 'static {
        BroadcastStream::new(self.errors.subscribe()).filter_map(|r| std::future::ready(r.ok()))
    }

    /// Stops syncing and closes the connection. Local changes not yet acknowledged stay pending
    /// in [`SyncHandle::pending`].
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let _ = self.session.close(None, "sync stopped").await;
        let mut status = self.status.clone();
        let _ = status.wait_for(|s| *s == SyncStatus::Stopped).await;
    }
}

/// How a store's value maps to the entities it syncs: one entity, or a list of them.
pub trait SyncShape<T>: Send + Sync + 'static {
    /// Whether the store holds one entity (its subscription follows that entity's id) rather than
    /// the whole collection.
    fn single(&self) -> bool;
    /// The entity the store's value is, for a single-entity shape (`None` while its id is empty).
    fn entity(&self, value: &T) -> Option<String>;
    /// The value's entities by id.
    fn entities(&self, value: &T) -> Result<Entities, String>;
    /// The value for these entities (those that can be read; the others are reported). `current`
    /// is the store's value now: a single entity the server does not have (yet) leaves it as it is,
    /// unless it was `deleted`, which makes it the empty entity.
    fn value(&self, entities: &Entities, current: &T, deleted: bool, errors: &mut Vec<String>) -> T;
}

impl<T: Clone + Send + Sync + 'static, I: std::fmt::Display + 'static> SyncShape<T> for Resource<T, I> {
    fn single(&self) -> bool {
        true
    }

    fn entity(&self, value: &T) -> Option<String> {
        Some(self.id_of(value)).filter(|id| !id.is_empty())
    }

    fn entities(&self, value: &T) -> Result<Entities, String> {
        let id = self.id_of(value);
        if id.is_empty() {
            return Err("the entity's id is empty: give it an id to sync it".into());
        }
        Ok(Entities::from([(id, self.write(value)?)]))
    }

    fn value(&self, entities: &Entities, current: &T, deleted: bool, errors: &mut Vec<String>) -> T {
        match entities.values().next().cloned().map(|v| self.read(v)) {
            Some(Ok(value)) => value,
            Some(Err(error)) => {
                errors.push(format!("the entity cannot be read: {error}"));
                current.clone()
            }
            None if deleted => self.empty(),
            None => current.clone(),
        }
    }
}

/// A list of entities synced as a whole collection (fritz2's list variant); see [`Store::sync_list_with`].
pub struct ListOf<R>(pub R);

impl<T: Clone + Send + Sync + 'static, I: std::fmt::Display + 'static> SyncShape<Vec<T>> for ListOf<Resource<T, I>> {
    fn single(&self) -> bool {
        false
    }

    fn entity(&self, _value: &Vec<T>) -> Option<String> {
        None
    }

    fn entities(&self, value: &Vec<T>) -> Result<Entities, String> {
        value.iter().map(|entity| Ok((self.0.id_of(entity), self.0.write(entity)?))).collect()
    }

    fn value(&self, entities: &Entities, _current: &Vec<T>, _deleted: bool, errors: &mut Vec<String>) -> Vec<T> {
        entities
            .iter()
            .filter_map(|(id, data)| match self.0.read(data.clone()) {
                Ok(entity) => Some(entity),
                Err(error) => {
                    errors.push(format!("entity {id} cannot be read: {error}"));
                    None
                }
            })
            .collect()
    }
}

/// The collection a sync URL names: its last path segment (`ws://host/sync/people` is `people`).
fn collection_of(socket: &Socket) -> String {
    let path = socket.url().path.split('?').next().unwrap_or("").to_owned();
    path.trim_end_matches('/').rsplit('/').next().unwrap_or("").to_owned()
}

impl<T: Clone + Send + Sync + 'static> Store<T> {
    /// Keeps this store in sync with the collection at `socket`'s URL (`ws://host/sync/<collection>`)
    /// as the entity `resource` identifies in the store's value. Like fritz2: the initial value is not
    /// sent, every later local change is, and what the server sends replaces the store without being
    /// sent back. Unlike fritz2: changes carry mutation ids and versions, survive reconnects (give
    /// the socket a reconnect policy), and come back as rejections when the server refuses them.
    pub fn sync_with<I: std::fmt::Display + 'static>(&self, socket: &Socket, resource: &Resource<T, I>) -> SyncHandle {
        self.sync_shaped(socket, resource.clone())
    }

    /// Syncs with any [`SyncShape`].
    pub fn sync_shaped(&self, socket: &Socket, shape: impl SyncShape<T>) -> SyncHandle {
        let socket = socket.clone().protocols([SUBPROTOCOL]);
        let session = socket.connect();
        let (status_tx, status) = watch::channel(SyncStatus::Connecting);
        let (pending_tx, pending) = watch::channel(Vec::new());
        let (rejections, _) = broadcast::channel(64);
        let (errors, _) = broadcast::channel(64);
        let (stop, stop_rx) = watch::channel(false);
        let (value, count) = self.snapshot();
        let (taken_tx, taken) = watch::channel(count);
        let collection = collection_of(&socket);
        let client = uuid::Uuid::new_v4().to_string();
        let replica = match shape.single() {
            true => Replica::for_entity(collection, shape.entity(&value), client),
            false => Replica::new(collection, None, client),
        };
        let driver = Driver {
            store: self.clone(),
            shape,
            replica,
            session: session.clone(),
            status: status_tx,
            pending: pending_tx,
            rejections: rejections.clone(),
            errors: errors.clone(),
            taken: taken_tx,
            ever_open: false,
        };
        tokio::spawn(driver.run(stop_rx));
        let local = self.local_changes();
        SyncHandle { status, taken, local, pending, rejections, errors, stop, session }
    }
}

impl<T: Clone + Send + Sync + 'static> Store<Vec<T>> {
    /// Keeps a list of entities in sync with the whole collection (fritz2's list variant): local
    /// changes are compared by id and sent as one mutation per entity added, changed or removed.
    /// The list holds the collection's entities in id order.
    pub fn sync_list_with<I: std::fmt::Display + 'static>(
        &self,
        socket: &Socket,
        resource: &Resource<T, I>,
    ) -> SyncHandle {
        self.sync_shaped(socket, ListOf(resource.clone()))
    }
}

struct Driver<T, S> {
    store: Store<T>,
    shape: S,
    replica: Replica,
    session: Session,
    status: watch::Sender<SyncStatus>,
    pending: watch::Sender<Vec<PendingMutation>>,
    rejections: broadcast::Sender<Rejection>,
    errors: broadcast::Sender<String>,
    taken: watch::Sender<u64>,
    ever_open: bool,
}

impl<T: Clone + Send + Sync + 'static, S: SyncShape<T>> Driver<T, S> {
    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut opens = Box::pin(self.session.opens());
        let mut closes = Box::pin(self.session.closes());
        let mut messages = self.session.messages();
        let mut local = self.store.local_changes();
        let (_, mut seen) = self.store.snapshot();
        local.borrow_and_update();
        let mut retry: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
        if self.session.current_state().is_open() {
            self.opened().await;
        }
        loop {
            self.publish();
            tokio::select! {
                biased;
                _ = stop.changed() => break,
                Some(()) = opens.next() => self.opened().await,
                Some(_) = closes.next() => self.replica.on_close(),
                Ok(()) = local.changed() => {
                    let (value, count) = self.store.snapshot();
                    seen = count;
                    self.local_edit(&value).await;
                    // The status shows the new pending mutations before `synced()` sees them taken.
                    self.publish();
                    self.taken.send_replace(count);
                }
                () = async { if let Some(sleep) = retry.as_mut() { sleep.await } }, if retry.is_some() => {
                    retry = None;
                    let send = self.replica.resend();
                    self.send(send).await;
                }
                message = messages.next() => {
                    let Some(message) = message else { break };
                    let parsed = message
                        .text()
                        .map_err(|e| e.to_string())
                        .and_then(|text| serde_json::from_str::<ServerMessage>(text).map_err(|e| e.to_string()));
                    let message = match parsed {
                        Ok(message) => message,
                        Err(error) => {
                            self.error(format!("a message from the server cannot be read: {error}"));
                            continue;
                        }
                    };
                    let effects = self.replica.on_message(message);
                    self.send(effects.send).await;
                    if let Some(error) = effects.error {
                        self.error(format!("the server said: {error}"));
                    }
                    if effects.retry && retry.is_none() {
                        retry = Some(Box::pin(tokio::time::sleep(RETRY_DELAY)));
                    }
                    if effects.view_changed {
                        self.show(&mut seen, &mut local).await;
                    }
                    if let Some(rejection) = effects.rejection {
                        let _ = self.rejections.send(rejection);
                    }
                }
            }
        }
        self.status.send_replace(SyncStatus::Stopped);
    }

    /// Sends what a local change changed (subscribing first to the entity it names, for a
    /// single-entity store whose id was empty).
    async fn local_edit(&mut self, value: &T) {
        if self.shape.single() {
            if let Some(id) = self.shape.entity(value) {
                let send = self.replica.follow(id);
                self.send(send).await;
            }
        }
        match self.shape.entities(value) {
            Ok(entities) => {
                let send = self.replica.local_edit(&entities);
                self.send(send).await;
            }
            Err(error) => self.error(format!("a local change cannot be synced: {error}")),
        }
    }

    async fn opened(&mut self) {
        self.ever_open = true;
        let send = self.replica.on_open();
        self.send(send).await;
    }

    /// Shows the replica's view in the store, after any local change not yet read.
    async fn show(&mut self, seen: &mut u64, local: &mut watch::Receiver<u64>) {
        loop {
            let mut problems = Vec::new();
            let (current, _) = self.store.snapshot();
            let value = self.shape.value(&self.replica.view(), &current, self.replica.deleted(), &mut problems);
            for problem in problems {
                self.error(problem);
            }
            if self.store.apply_remote(value, *seen) {
                return;
            }
            // A local change came in between: take it first, then show the result.
            let (value, count) = self.store.snapshot();
            *seen = count;
            local.borrow_and_update();
            self.local_edit(&value).await;
            self.publish();
            self.taken.send_replace(count);
        }
    }

    async fn send(&mut self, messages: Vec<super::protocol::ClientMessage>) {
        for message in messages {
            let text = match serde_json::to_string(&message) {
                Ok(text) => text,
                Err(error) => {
                    self.error(format!("a message cannot be written: {error}"));
                    continue;
                }
            };
            if self.session.send(text).await.is_err() {
                return;
            }
        }
    }

    fn error(&self, error: String) {
        tracing::warn!(%error, "sync");
        let _ = self.errors.send(error);
    }

    fn publish(&self) {
        let pending = self.replica.pending();
        let status = if !self.replica.is_open() {
            if self.ever_open {
                SyncStatus::Offline { pending: pending.len() }
            } else {
                SyncStatus::Connecting
            }
        } else if self.replica.is_synced() {
            SyncStatus::Synced { version: self.replica.version().unwrap_or(0) }
        } else {
            SyncStatus::Syncing
        };
        self.status.send_if_modified(|current| {
            let changed = *current != status;
            *current = status;
            changed
        });
        self.pending.send_if_modified(|current| {
            let changed = *current != pending;
            *current = pending;
            changed
        });
    }
}
