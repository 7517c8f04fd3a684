//! The server: hooks, peers, routing, serving.

mod app;
mod buffer_pool;
mod config;
mod door;
mod endpoint;
mod hooks;
mod origin;
mod outbox;
mod peer;
mod rate;
mod stats;
mod task;
mod tls;
mod upgrade;
mod write_queue;

pub use app::{Server, Switchboard, DEFAULT_MAX_INCOMPLETE_BYTES};
pub use config::WsConfig;
pub use door::{DoorStats, ServerConfig};
pub use hooks::{define_hooks, HookResult, HookSet, Hooks, IntoHookResult};
pub use peer::{percent_decode, Peer, ReadyState, RequestInfo, SlowConsumerPolicy, QUEUE_ENTRY_COST};
pub(crate) use peer::{Outgoing, SharedCompression};
pub use rate::RateLimitPolicy;
pub use stats::{EndpointStats, PeerStats, Traffic};
pub use tls::{TlsConfig, TlsError};
pub use upgrade::{reject, Accept, IntoUpgradeResult, UpgradeRequest};

pub(crate) use app::AppShared;
pub(crate) use endpoint::Endpoint;
pub(crate) use hooks::erase;
