//! The entity store behind a sync hub: what a database must do for store sync, whatever it is.
//!
//! A store keeps, per collection, the entities, a version counter, the change log (the history that
//! `since` replays from) and the answer to every mutation by `(client, mutation_id)`, all changed in
//! one transaction per write, so a write is applied once however often it is sent. It reports every
//! committed change, its own and (for a shared database) other nodes', in version order through
//! [`EntityStore::committed`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::Value;

use super::protocol::{Current, Origin, ServerMessage};

/// A boxed future, so stores can be chosen at run time (`Arc<dyn EntityStore>`).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a write does to its entity.
#[derive(Clone, Debug, PartialEq)]
pub enum Operation {
    /// Create or replace it with this value.
    Put(Value),
    /// Delete it.
    Delete,
}

/// The collection's decision on a write, from its write hook (see [`super::Collection::on_write`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Store the value as proposed.
    Accept,
    /// Store this value instead (the ack and every subscriber get it).
    Rewrite(Value),
    /// Do not store anything; the client rolls back and is told why.
    Reject(String),
}

/// Decides a write once the store has locked the entity and read its current state.
pub type Decider = Arc<dyn Fn(&Current, &Operation) -> Decision + Send + Sync>;

/// One mutation, as the hub hands it to the store.
#[derive(Clone)]
pub struct Write {
    /// The collection.
    pub collection: String,
    /// The entity's id.
    pub id: String,
    /// Put or delete.
    pub operation: Operation,
    /// Apply only if the entity is at this version (0: does not exist).
    pub base_version: Option<u64>,
    /// Who sent it, and its id: the key of exactly-once.
    pub origin: Origin,
    /// The collection's write hook.
    pub decide: Decider,
}

/// One committed change, as subscribers receive it.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// The collection.
    pub collection: String,
    /// The entity's id.
    pub id: String,
    /// The new value; `None` when deleted.
    pub data: Option<Value>,
    /// The collection version of this change.
    pub version: u64,
    /// Who made it.
    pub origin: Option<Origin>,
}

impl Change {
    /// The `change` message for subscribers.
    pub fn message(&self) -> ServerMessage {
        ServerMessage::Change {
            id: self.id.clone(),
            data: self.data.clone(),
            deleted: self.data.is_none(),
            version: self.version,
            origin: self.origin.clone(),
        }
    }
}

/// What became of a write.
#[derive(Clone, Debug, PartialEq)]
pub enum WriteOutcome {
    /// Applied now: the answer (an `ack`) and the change it made.
    Applied {
        /// The `ack`.
        answer: ServerMessage,
        /// The change, for subscribers.
        change: Change,
    },
    /// Answered without a change: a final `reject` (conflict, hook), or the recorded answer of a
    /// mutation seen before (its original `ack` or `reject`).
    Answered(ServerMessage),
}

/// Every entity of a subscription at one collection version.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// The live entities.
    pub entities: Vec<super::protocol::Entity>,
    /// The collection version they are at.
    pub version: u64,
}

/// The changes after a version, or why they cannot be had.
#[derive(Clone, Debug, PartialEq)]
pub enum Replay {
    /// Every change after the asked version, in order (those of one entity, if asked), and the
    /// collection version they reach.
    Changes {
        /// The changes.
        changes: Vec<Change>,
        /// The collection version when they were read.
        version: u64,
    },
    /// The log does not reach back that far (or the version is from the future): refetch.
    Gone(String),
}

/// A store-level failure (the database is unreachable, a disk error). Writes that fail this way are
/// rejected as retryable: the client keeps them and sends them again.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

/// What the store reports in commit order: a change made through this store, or word that a
/// collection moved on elsewhere (another node) up to a version, to be read from the log.
#[derive(Clone, Debug, PartialEq)]
pub enum Committed {
    /// A change committed here, in version order.
    Change(Arc<Change>),
    /// The collection reached this version on another node.
    Reached {
        /// The collection.
        collection: String,
        /// Its version.
        version: u64,
    },
    /// Notifications may have been missed (the listener reconnected): check every collection.
    Resync,
}

/// A database that keeps synced collections.
pub trait EntityStore: Send + Sync + 'static {
    /// Applies a write exactly once: the mutation's answer is recorded with its effect in one
    /// transaction, and a write whose `(client, mutation_id)` was seen gets the recorded answer.
    /// The write is queued when this is called, not when the future is first polled: writes are
    /// applied in the order of the calls, so a connection may have many in flight and keep its order.
    fn write(&self, write: Write) -> StoreFuture<'static, Result<WriteOutcome, StoreError>>;

    /// The live entities of a collection (or of one entity) and the version they are at.
    fn snapshot<'a>(
        &'a self,
        collection: &'a str,
        id: Option<&'a str>,
    ) -> StoreFuture<'a, Result<Snapshot, StoreError>>;

    /// Every change after `since`, in version order (of one entity, if `id`).
    fn changes_since<'a>(
        &'a self,
        collection: &'a str,
        id: Option<&'a str>,
        since: u64,
    ) -> StoreFuture<'a, Result<Replay, StoreError>>;

    /// The current state of one entity.
    fn current<'a>(&'a self, collection: &'a str, id: &'a str) -> StoreFuture<'a, Result<Current, StoreError>>;

    /// The collection's version now.
    fn version<'a>(&'a self, collection: &'a str) -> StoreFuture<'a, Result<u64, StoreError>>;

    /// Committed changes in commit order. Called once, by the hub; later calls get `None`.
    fn committed(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Committed>>;
}
