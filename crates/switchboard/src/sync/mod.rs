//! Store sync (fritz2's `syncWith`, done properly): the `switchboard.sync.v1` protocol
//! (docs/sync-protocol.md), the hub that serves it over an entity store, and the stores.
//!
//! Every accepted change gets the next version of its collection and is recorded, with the answer
//! to the mutation that made it, in one transaction: a mutation sent twice is applied once.
//! Subscribers receive changes once each, in version order, and resume after a disconnect with
//! `since`.

mod client;
mod collection;
mod feed;
mod hub;
mod local;
mod plan;
mod postgres;
pub mod protocol;
mod replica;
mod resource;
mod sqlite;
mod store;

pub use client::{ListOf, SyncHandle, SyncShape, SyncStatus};
pub use collection::{Collection, WriteContext};
pub use hub::{CollectionStats, SyncHub, DEFAULT_MAX_ENTITY_BYTES};
pub use local::Store;
pub use postgres::PostgresStore;
pub use protocol::{ClientMessage, Current, Entity, Origin, ServerMessage, Violation, SUBPROTOCOL};
pub use replica::{MutationState, PendingMutation, Rejection};
pub use resource::{Json, Resource, Serializer};
pub use sqlite::{SqliteStore, DEFAULT_LOG_LIMIT};
pub use store::{
    Change, Committed, Decider, Decision, EntityStore, Operation, Replay, Snapshot, StoreError, StoreFuture, Write,
    WriteOutcome,
};
