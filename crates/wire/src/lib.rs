//! # switchboard-wire
//!
//! The WebSocket protocol as a pure state machine over byte buffers: RFC 6455 framing and the closing
//! handshake, RFC 7692 permessage-deflate, and the opening handshake. No sockets, no runtime, no
//! allocation per frame when a whole frame is already in the read buffer.
//!
//! ```
//! use bytes::BytesMut;
//! use switchboard_wire::{Config, Connection, Event, MessageKind, Role};
//!
//! let mut client = Connection::new(Role::Client, Config::default(), 42);
//! let mut server = Connection::new(Role::Server, Config::default(), 0);
//!
//! let mut wire = BytesMut::new();
//! client.encode_message(MessageKind::Text, b"hello", &mut wire);
//! let event = server.receive(&mut wire).unwrap();
//! assert_eq!(event, Some(Event::Message(MessageKind::Text, "hello".into())));
//! ```
#![warn(missing_docs)]

mod close;
mod connection;
pub mod deflate;
mod error;
mod frame;
pub mod handshake;
mod mask;
mod opcode;
mod utf8;

pub use close::{truncate_reason, CloseCode, CloseFrame, ClosePayloadError};
pub use connection::{
    encode_frame, server_frame, server_frame_compressed, CloseState, Config, Connection, Event, MessageKind, Role,
};
pub use error::ProtocolError;
pub use frame::{encode_raw_frame, FrameHeader, HeaderError, MAX_HEADER_LEN, RSV1};
pub use mask::apply_mask;
pub use opcode::OpCode;
pub use utf8::{Utf8Error, Utf8Validator};
