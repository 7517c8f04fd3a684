//! # switchboard-script
//!
//! Eclipse Dirigible's WebSocket API (`sdk/net`) on Switchboard: `*.websocket` descriptors with
//! JavaScript handler modules, served at `/websockets/v4/service/<endpoint>`, and outbound clients
//! created from scripts and found again by id or handler. Handlers run in QuickJS, one runtime per
//! endpoint on a thread of its own, with a memory limit and a CPU-time limit per event.
#![warn(missing_docs)]

mod clients;
mod descriptor;
mod endpoints;
mod engine;
mod error;
mod files;
mod host;
mod loader;
mod project;
mod source;
mod watch;

pub use clients::{ClientInfo, Registry};
pub use descriptor::{Descriptor, ENGINE};
pub use endpoints::{endpoint, mount, OPS_PATH, SERVICE_PREFIXES};
pub use engine::{Engine, EngineConfig, Event, Method};
pub use error::{ScriptError, ScriptErrorKind};
pub use files::ProjectFiles;
pub use project::{EndpointStatus, Project, ProjectConfig};
pub use watch::{watch, ProjectWatcher};

/// Entry points for the fuzz targets (`fuzz/`); not part of the API.
#[doc(hidden)]
pub mod fuzzing {
    /// The per-event import rewrite.
    pub fn imports_to_require(source: &str) -> Result<String, String> {
        crate::source::imports_to_require(source)
    }
}
