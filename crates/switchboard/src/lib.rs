//! # Switchboard
//!
//! A WebSocket toolkit and server: crossws-style server hooks (`upgrade`, `open`, `message`, `close`,
//! `error`), built on the sans-IO protocol core [`switchboard_wire`].
//!
//! ```no_run
//! use switchboard::{define_hooks, Message, Peer, Switchboard};
//!
//! #[tokio::main]
//! async fn main() -> std::io::Result<()> {
//!     let hooks = define_hooks().message(|peer: Peer, message: Message| async move {
//!         if message.text()? == "ping" {
//!             peer.send("pong")?;
//!         }
//!         Ok::<_, switchboard::BoxError>(())
//!     });
//!     Switchboard::new().ws("/chat", hooks).listen("127.0.0.1:3333").await
//! }
//! ```
#![warn(missing_docs)]
// `upgrade` refuses with an HTTP `Response` (128 bytes) in `Err`: it happens once per handshake, and
// boxing it would make every refusal in user code noisier.
#![allow(clippy::result_large_err)]

pub mod axum;
pub mod client;
mod error;
mod message;
pub mod pubsub;
mod server;
pub mod sync;

pub use client::{websocket, Session, Socket};
pub use error::{BoxError, CloseEvent, Error, InvalidCloseCode, SendError};
pub use message::{Message, MessageKind, NotText};
pub use pubsub::{Hub, Position, PubSubConfig, Recovery};
pub use server::*;
pub use switchboard_wire as wire;
pub use switchboard_wire::{CloseCode, ProtocolError};
