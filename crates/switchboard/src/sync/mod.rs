//! Store sync (fritz2's `syncWith`, done properly): the `switchboard.sync.v1` protocol. The hub, the
//! entity stores and the Rust client build on it (see docs/sync-protocol.md).

pub mod protocol;

pub use protocol::{ClientMessage, Current, Entity, Origin, ServerMessage, Violation, SUBPROTOCOL};
