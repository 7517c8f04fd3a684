//! The client: fritz2-style sockets and sessions over `switchboard-wire`, with reconnects,
//! keep-alive and TLS.

mod driver;
mod error;
mod policy;
mod session;
mod socket;
mod tls;
mod url;

pub use error::{ConnectError, SendError, SessionError};
pub use policy::{Decision, ReconnectPolicy};
pub use session::{Messages, Session, State};
pub use socket::{websocket, Socket};
pub use tls::ClientTls;
pub use url::WsUrl;
