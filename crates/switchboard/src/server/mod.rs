//! The server: hooks, peers, routing, serving.

mod app;
mod buffer_pool;
mod config;
mod endpoint;
mod hooks;
mod outbox;
mod peer;
mod task;
mod tls;
mod upgrade;
mod write_queue;

pub use app::{Server, Switchboard, DEFAULT_MAX_INCOMPLETE_BYTES};
pub use config::WsConfig;
pub use hooks::{define_hooks, HookResult, HookSet, Hooks, IntoHookResult};
pub(crate) use peer::{Outgoing, SharedCompression};
pub use peer::{Peer, ReadyState, RequestInfo, SlowConsumerPolicy, QUEUE_ENTRY_COST};
pub use tls::{TlsConfig, TlsError};
pub use upgrade::{reject, Accept, IntoUpgradeResult, UpgradeRequest};

pub(crate) use app::AppShared;
pub(crate) use endpoint::Endpoint;
pub(crate) use hooks::erase;
