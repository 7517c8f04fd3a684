//! Topics (pub/sub): subscriptions, encode-once fan-out, slow-consumer policy, history for recovery,
//! and brokers that carry publications between nodes.
//!
//! Delivery guarantee: on one node every subscriber gets every publication that its queue has room
//! for, in publication order. Across nodes (the Redis broker) delivery is at most once and ordered per
//! publishing node: a publication that cannot be forwarded while Redis is down is counted and logged,
//! not retried. History (`subscribe_since`) is how a client recovers what it missed: in memory on one
//! node, in Redis Streams (shared, one order for every node) with the Redis broker. With history in
//! Redis, publications made while Redis is unreachable are delivered locally, unrecorded.

mod broker;
mod format;
mod framed;
mod history;
mod hub;
mod recovery;
mod redis;
mod retention;
mod topics;

pub use broker::{Broker, Inbox, MemoryBroker};
pub use format::{FormatFn, Publication, PublicationFormat};
pub use history::{HistoryConfig, HistorySlice, InvalidPosition, Position, Recovery, HISTORY_ENTRY_COST};
pub use hub::{Hub, PubSubStats};
pub use redis::RedisBroker;
pub use topics::PubSubConfig;

pub(crate) use retention::sweep_loop;
pub(crate) use topics::Topics;
