//! A project: every `*.websocket` descriptor under its root, reconciled with the files on each
//! (re)load. A valid descriptor gets a runtime with its handler loaded; a bad one is reported (log,
//! operations view, 503 at the upgrade) and never stops the others. Endpoints are unique: the first
//! descriptor by path wins.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;
use switchboard::Peer;
use uuid::Uuid;

use crate::clients::Registry;
use crate::descriptor::Descriptor;
use crate::engine::{Engine, EngineConfig};
use crate::files::ProjectFiles;

/// Settings of a project's runtimes and clients.
#[derive(Clone, Debug, Default)]
pub struct ProjectConfig {
    /// Memory and CPU limits of each endpoint's runtime (the label is set per endpoint).
    pub engine: EngineConfig,
    /// Hosts outbound clients may reach (exact, or `*.domain`); empty: any.
    pub allowed_hosts: Vec<String>,
}

/// An endpoint that serves: its descriptor, its runtime, its peers.
pub(crate) struct LiveEndpoint {
    pub(crate) descriptor: Descriptor,
    /// The handler module's path, computed once (it goes with every event).
    pub(crate) handler: Arc<str>,
    pub(crate) engine: Engine,
    /// The descriptor it was started from: a change restarts it (as does a change to a file its
    /// runtime read).
    fingerprint: String,
    pub(crate) peers: Arc<Mutex<HashMap<Uuid, Peer>>>,
    pub(crate) errors: AtomicU64,
    pub(crate) last_error: Mutex<Option<String>>,
}

impl LiveEndpoint {
    pub(crate) fn record_error(&self, error: &crate::ScriptError) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(error.to_string());
    }

    pub(crate) fn peers(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Peer>> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What an endpoint name leads to.
#[derive(Clone)]
pub(crate) enum Slot {
    Live(Arc<LiveEndpoint>),
    /// The descriptor exists but cannot serve: why.
    Broken(String),
}

/// One descriptor file and what became of it.
#[derive(Clone)]
struct Entry {
    location: String,
    descriptor: Option<Descriptor>,
    error: Option<String>,
}

#[derive(Default)]
struct State {
    entries: Vec<Entry>,
    endpoints: HashMap<String, Slot>,
}

/// One line of the operations view (`GET /services/v4/ops/websockets`).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct EndpointStatus {
    /// The descriptor's path in the project.
    pub location: String,
    /// The endpoint, if the descriptor names one.
    pub endpoint: Option<String>,
    /// The handler module, as written.
    pub handler: Option<String>,
    /// The engine.
    pub engine: Option<String>,
    /// The description.
    pub description: Option<String>,
    /// `ok` or `error`.
    pub status: &'static str,
    /// Why it is not serving.
    pub error: Option<String>,
    /// Connected peers.
    pub peers: usize,
    /// Handler failures since it started.
    pub errors: u64,
    /// The last handler failure.
    pub last_error: Option<String>,
}

/// A project's endpoints.
pub struct Project {
    files: ProjectFiles,
    config: ProjectConfig,
    clients: Arc<Registry>,
    state: RwLock<State>,
    reloading: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Project {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Project").field("files", &self.files).field("endpoints", &self.status()).finish()
    }
}

impl Project {
    /// Loads every descriptor of `files` and starts their runtimes. Within a tokio runtime.
    pub async fn open(files: ProjectFiles, config: ProjectConfig) -> Arc<Self> {
        let clients = Arc::new(Registry::new(config.allowed_hosts.clone()));
        let project =
            Arc::new(Self { files, config, clients, state: RwLock::default(), reloading: tokio::sync::Mutex::new(()) });
        project.reload().await;
        project
    }

    /// The project's files.
    pub fn files(&self) -> &ProjectFiles {
        &self.files
    }

    /// The outbound clients created by the project's scripts.
    pub fn clients(&self) -> &Arc<Registry> {
        &self.clients
    }

    /// The runtime settings.
    pub fn config(&self) -> &ProjectConfig {
        &self.config
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn lookup(&self, endpoint: &str) -> Option<Slot> {
        self.read().endpoints.get(endpoint).cloned()
    }

    /// The operations view: every descriptor, with its status and peers.
    pub fn status(&self) -> Vec<EndpointStatus> {
        let state = self.read();
        state
            .entries
            .iter()
            .map(|entry| {
                let descriptor = entry.descriptor.as_ref();
                let live = descriptor.and_then(|d| match state.endpoints.get(&d.endpoint) {
                    Some(Slot::Live(live)) if live.descriptor.location == entry.location => Some(live),
                    _ => None,
                });
                EndpointStatus {
                    location: entry.location.clone(),
                    endpoint: descriptor.map(|d| d.endpoint.clone()),
                    handler: descriptor.map(|d| d.handler.clone()),
                    engine: descriptor.map(|d| d.engine.clone()),
                    description: descriptor.and_then(|d| d.description.clone()),
                    status: if entry.error.is_none() { "ok" } else { "error" },
                    error: entry.error.clone(),
                    peers: live.map_or(0, |l| l.peers().len()),
                    errors: live.map_or(0, |l| l.errors.load(Ordering::Relaxed)),
                    last_error: live.and_then(|l| l.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone()),
                }
            })
            .collect()
    }

    /// Reconciles the endpoints with the files: new descriptors start, changed ones restart (their
    /// peers stay connected and the next event runs the new handler), removed ones close their peers
    /// with 1001. Every problem is logged once.
    pub async fn reload(&self) {
        let _one_at_a_time = self.reloading.lock().await;
        let previous: HashMap<String, Slot> = self.read().endpoints.clone();
        let previous_errors: HashMap<String, Option<String>> =
            self.read().entries.iter().map(|e| (e.location.clone(), e.error.clone())).collect();
        let mut entries = Vec::new();
        let mut endpoints: HashMap<String, Slot> = HashMap::new();
        let mut claimed: HashMap<String, String> = HashMap::new();
        for location in self.files.find(".websocket") {
            let mut entry = Entry { location: location.clone(), descriptor: None, error: None };
            match Descriptor::load(&self.files, &location) {
                Err((reason, named)) => {
                    // A descriptor that names an endpoint refuses its upgrades with the reason.
                    if let Some(endpoint) = named.filter(|e| !claimed.contains_key(e)) {
                        claimed.insert(endpoint.clone(), location.clone());
                        endpoints.insert(endpoint, Slot::Broken(format!("{location}: {reason}")));
                    }
                    entry.error = Some(reason);
                }
                Ok(descriptor) => {
                    if let Some(first) = claimed.get(&descriptor.endpoint) {
                        entry.error = Some(format!(
                            "endpoint {:?} is already served by {first}; {location} is ignored",
                            descriptor.endpoint
                        ));
                    } else {
                        claimed.insert(descriptor.endpoint.clone(), location.clone());
                        let old = match previous.get(&descriptor.endpoint) {
                            Some(Slot::Live(live)) => Some(live.clone()),
                            _ => None,
                        };
                        let slot = self.start(&descriptor, old).await;
                        if let Slot::Broken(reason) = &slot {
                            entry.error = Some(reason.clone());
                        }
                        endpoints.insert(descriptor.endpoint.clone(), slot);
                    }
                    entry.descriptor = Some(descriptor);
                }
            }
            if previous_errors.get(&location) != Some(&entry.error) {
                match &entry.error {
                    Some(error) => tracing::error!(descriptor = %self.files.describe(&location), "{error}"),
                    None => {
                        let endpoint = entry.descriptor.as_ref().map(|d| d.endpoint.as_str()).unwrap_or_default();
                        tracing::info!(descriptor = %self.files.describe(&location), endpoint, "serving /websockets/v4/service/{endpoint}");
                    }
                }
            }
            entries.push(entry);
        }
        for (name, slot) in &previous {
            let Slot::Live(old) = slot else { continue };
            let gone = match endpoints.get(name) {
                None | Some(Slot::Broken(_)) => true,
                Some(Slot::Live(new)) => !Arc::ptr_eq(&new.peers, &old.peers),
            };
            if gone {
                let peers: Vec<Peer> = old.peers().drain().map(|(_, peer)| peer).collect();
                if !peers.is_empty() {
                    tracing::info!(endpoint = %name, peers = peers.len(), "endpoint removed: closing its peers with 1001");
                }
                for peer in peers {
                    let _ = peer.close(1001, "endpoint removed");
                }
            }
        }
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = State { entries, endpoints };
    }

    /// The endpoint for `descriptor`: the running one if nothing changed, else a new runtime with the
    /// handler loaded (taking over the old one's peers).
    async fn start(&self, descriptor: &Descriptor, old: Option<Arc<LiveEndpoint>>) -> Slot {
        let handler = descriptor.handler_path();
        if !self.files.exists(&handler) {
            return Slot::Broken(format!(
                "handler module {handler} does not exist (looked for {})",
                self.files.describe(&handler)
            ));
        }
        let fingerprint = format!("{descriptor:?}");
        if let Some(old) = old.as_ref().filter(|old| old.fingerprint == fingerprint && !old.engine.sources_changed()) {
            return Slot::Live(old.clone());
        }
        let config = EngineConfig { label: descriptor.endpoint.clone(), ..self.config.engine.clone() };
        let engine = Engine::start(self.files.clone(), config, self.clients.clone());
        if let Err(error) = engine.load(&handler).await {
            return Slot::Broken(format!("handler {handler}: {error}"));
        }
        let peers = old.map(|old| old.peers.clone()).unwrap_or_default();
        Slot::Live(Arc::new(LiveEndpoint {
            descriptor: descriptor.clone(),
            handler: Arc::from(handler.as_str()),
            engine,
            fingerprint,
            peers,
            errors: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }))
    }
}
