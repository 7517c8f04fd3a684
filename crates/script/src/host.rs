//! The native functions a runtime gives its prelude (`__host`): logging, the connection of the event
//! (`getPeer()`), outbound clients, and module resolution for `require`. Scripts get nothing else of
//! the machine: no filesystem, no processes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rquickjs::{Ctx, Exception, Function, Object, Value};
use switchboard::Peer;

use crate::clients::Registry;
use crate::engine::{compile_common_js, js_to_message, Poster};
use crate::files::{ProjectFiles, ReadLog};
use crate::loader::ProjectModules;

/// What the native functions of one runtime share.
pub(crate) struct Host {
    pub(crate) files: ProjectFiles,
    /// Every project file this runtime read.
    pub(crate) log: ReadLog,
    pub(crate) clients: Arc<Registry>,
    runtime: Option<tokio::runtime::Handle>,
    poster: Poster,
    /// The connections whose events this runtime handles (from their first event to their close), by
    /// the number JavaScript knows them by; and that number by their id.
    peers: Mutex<Peers>,
    /// Handler modules loaded into the runtime, with the number JavaScript knows them by.
    loaded: Mutex<HashMap<String, u32>>,
}

#[derive(Default)]
struct Peers {
    by_number: HashMap<u32, Peer>,
    numbers: HashMap<uuid::Uuid, u32>,
    next: u32,
}

impl Host {
    pub(crate) fn new(
        files: ProjectFiles,
        log: ReadLog,
        clients: Arc<Registry>,
        runtime: Option<tokio::runtime::Handle>,
        poster: Poster,
    ) -> Self {
        Self { files, log, clients, runtime, poster, peers: Mutex::default(), loaded: Mutex::default() }
    }

    /// The number of loaded handler `path`, if it is loaded.
    pub(crate) fn loaded(&self, path: &str) -> Option<u32> {
        self.loaded.lock().unwrap_or_else(|p| p.into_inner()).get(path).copied()
    }

    /// The number handler `path` gets when it is loaded.
    pub(crate) fn next_handler_number(&self) -> u32 {
        u32::try_from(self.loaded.lock().unwrap_or_else(|p| p.into_inner()).len()).unwrap_or(u32::MAX)
    }

    pub(crate) fn set_loaded(&self, path: &str, number: u32) {
        self.loaded.lock().unwrap_or_else(|p| p.into_inner()).insert(path.to_owned(), number);
    }

    /// The project's modules, as the runtime resolves and loads them.
    pub(crate) fn modules(&self) -> ProjectModules {
        ProjectModules { files: self.files.clone(), log: self.log.clone() }
    }

    /// The runtime's label (its endpoint, or its script).
    pub(crate) fn label(&self) -> &str {
        self.poster.owner()
    }

    fn peers(&self) -> std::sync::MutexGuard<'_, Peers> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The number JavaScript knows `peer` by (assigned on its first event).
    pub(crate) fn peer_number(&self, peer: &Peer) -> u32 {
        let mut peers = self.peers();
        if let Some(number) = peers.numbers.get(&peer.id()) {
            return *number;
        }
        let number = peers.next;
        peers.next = peers.next.wrapping_add(1);
        peers.numbers.insert(peer.id(), number);
        peers.by_number.insert(number, peer.clone());
        number
    }

    pub(crate) fn forget_peer(&self, number: u32) {
        let mut peers = self.peers();
        if let Some(peer) = peers.by_number.remove(&number) {
            peers.numbers.remove(&peer.id());
        }
    }

    fn peer<'js>(&self, ctx: &Ctx<'js>, number: u32) -> rquickjs::Result<Peer> {
        self.peers()
            .by_number
            .get(&number)
            .cloned()
            .ok_or_else(|| Exception::throw_message(ctx, "the connection is closed"))
    }
}

/// Installs `__host` on the global object (the prelude takes it and removes it).
pub(crate) fn install<'js>(ctx: &Ctx<'js>, host: &Arc<Host>) -> rquickjs::Result<()> {
    let api = Object::new(ctx.clone())?;
    let h = host.clone();
    api.set(
        "log",
        Function::new(ctx.clone(), move |ctx: Ctx<'js>, level: String, text: String| {
            let module = ctx.script_or_module_name(1).and_then(|m| m.to_string().ok()).unwrap_or_default();
            let runtime = h.label();
            match level.as_str() {
                "error" => tracing::error!(target: "script", runtime, module, "{text}"),
                "warn" => tracing::warn!(target: "script", runtime, module, "{text}"),
                "debug" => tracing::debug!(target: "script", runtime, module, "{text}"),
                _ => tracing::info!(target: "script", runtime, module, "{text}"),
            }
        })?,
    )?;
    install_peer_functions(ctx, host, &api)?;
    install_client_functions(ctx, host, &api)?;
    let h = host.clone();
    api.set(
        "resolve",
        Function::new(ctx.clone(), move |ctx: Ctx<'js>, from: String, name: String| {
            h.modules().resolve_path(&from, &name).map_err(|message| Exception::throw_message(&ctx, &message))
        })?,
    )?;
    let h = host.clone();
    api.set(
        "compile",
        Function::new(ctx.clone(), move |ctx: Ctx<'js>, path: String| {
            let source =
                h.log.read(&h.files, &path).map_err(|e| Exception::throw_message(&ctx, &format!("{path}: {e}")))?;
            compile_common_js(&ctx, &path, &source)
        })?,
    )?;
    ctx.globals().set("__host", api)
}

fn install_peer_functions<'js>(ctx: &Ctx<'js>, host: &Arc<Host>, api: &Object<'js>) -> rquickjs::Result<()> {
    let h = host.clone();
    api.set(
        "peerId",
        Function::new(ctx.clone(), move |ctx: Ctx<'js>, n: u32| h.peer(&ctx, n).map(|peer| peer.id().to_string()))?,
    )?;
    let h = host.clone();
    api.set(
        "peerSend",
        Function::new(ctx.clone(), move |ctx: Ctx<'js>, n: u32, data: Value<'js>| {
            let peer = h.peer(&ctx, n)?;
            if let Some(message) = js_to_message(&data)? {
                peer.send(message).map_err(|e| Exception::throw_message(&ctx, &e.to_string()))?;
            }
            Ok::<_, rquickjs::Error>(())
        })?,
    )?;
    let h = host.clone();
    api.set(
        "peerClose",
        Function::new(ctx.clone(), move |ctx: Ctx<'js>, n: u32, code: f64, reason: String| {
            let peer = h.peer(&ctx, n)?;
            let code = if code.fract() == 0.0 && (0.0..=65535.0).contains(&code) { code as u16 } else { 0 };
            peer.close(code, &reason).map_err(|e| Exception::throw_range(&ctx, &e.to_string()))
        })?,
    )?;
    let h = host.clone();
    api.set(
        "peerSubscribe",
        Function::new(ctx.clone(), move |ctx: Ctx<'js>, n: u32, topic: String| {
            h.peer(&ctx, n).map(|peer| peer.subscribe(&topic))
        })?,
    )?;
    let h = host.clone();
    api.set(
        "peerUnsubscribe",
        Function::new(ctx.clone(), move |ctx: Ctx<'js>, n: u32, topic: String| {
            h.peer(&ctx, n).map(|peer| peer.unsubscribe(&topic))
        })?,
    )?;
    let h = host.clone();
    api.set(
        "peerPublish",
        Function::new(ctx.clone(), move |ctx: Ctx<'js>, n: u32, topic: String, data: Value<'js>| {
            let peer = h.peer(&ctx, n)?;
            let message = js_to_message(&data)?.unwrap_or_else(|| switchboard::Message::from_text(""));
            Ok::<_, rquickjs::Error>(peer.publish(&topic, message) as f64)
        })?,
    )?;
    Ok(())
}

fn install_client_functions<'js>(ctx: &Ctx<'js>, host: &Arc<Host>, api: &Object<'js>) -> rquickjs::Result<()> {
    let h = host.clone();
    api.set(
        "clientCreate",
        Function::new(ctx.clone(), move |ctx: Ctx<'js>, uri: String, handler: String, engine: String| {
            let Some(runtime) = h.runtime.as_ref() else {
                return Err(Exception::throw_internal(&ctx, "createWebsocket: no network runtime"));
            };
            h.modules()
                .resolve_path("", &handler)
                .map_err(|message| Exception::throw_type(&ctx, &format!("createWebsocket: handler: {message}")))?;
            let info = h
                .clients
                .create(&uri, &handler, &engine, h.poster.clone(), runtime)
                .map_err(|message| Exception::throw_type(&ctx, &message))?;
            to_js(&ctx, &info)
        })?,
    )?;
    let h = host.clone();
    api.set(
        "clientSend",
        Function::new(ctx.clone(), move |ctx: Ctx<'js>, id: String, data: Value<'js>| {
            let message = js_to_message(&data)?.unwrap_or_else(|| switchboard::Message::from_text(""));
            if !h.clients.send(&id, message) {
                return Err(Exception::throw_message(&ctx, "the client is closed"));
            }
            Ok(())
        })?,
    )?;
    let h = host.clone();
    api.set("clientClose", Function::new(ctx.clone(), move |id: String| h.clients.close(&id))?)?;
    let h = host.clone();
    api.set(
        "clientInfo",
        Function::new(ctx.clone(), move |ctx: Ctx<'js>, id: String| match h.clients.info(&id) {
            Some(info) => to_js(&ctx, &info),
            None => Ok(Value::new_null(ctx.clone())),
        })?,
    )?;
    let h = host.clone();
    api.set("clientList", Function::new(ctx.clone(), move |ctx: Ctx<'js>| to_js(&ctx, &h.clients.list()))?)?;
    Ok(())
}

/// A serialisable value as a JavaScript value.
fn to_js<'js>(ctx: &Ctx<'js>, value: &impl serde::Serialize) -> rquickjs::Result<Value<'js>> {
    let json = serde_json::to_string(value).map_err(|e| Exception::throw_internal(ctx, &e.to_string()))?;
    ctx.json_parse(json)
}
