//! A script runtime: one QuickJS runtime on a thread of its own, running handler modules for events
//! one at a time, within a memory limit and a CPU-time limit per event. The network threads only
//! queue events to it and await the outcome, so a slow or hostile script never holds them up.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use rquickjs::context::EvalOptions;
use rquickjs::{ArrayBuffer, Context, Ctx, Function, Module, Object, Persistent, Runtime, Value};
use switchboard::{Message, Peer};
use tokio::sync::oneshot;

use crate::error::{ScriptError, ScriptErrorKind};
use crate::files::{ProjectFiles, ReadLog};
use crate::host::Host;
use crate::source::{imports_to_require, module_kind, ModuleKind};

/// The JavaScript half of every runtime (sdk/net, console, require, the dispatcher).
const PRELUDE: &str = include_str!("prelude.js");

/// Limits and identity of a runtime.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Names the runtime in logs (the endpoint, or the script file).
    pub label: String,
    /// Bytes the runtime may allocate (default 64 MiB).
    pub memory_limit: usize,
    /// CPU time one event may take (default 1 s); past it the handler is interrupted.
    pub cpu_limit: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self { label: "script".into(), memory_limit: 64 << 20, cpu_limit: Duration::from_secs(1) }
    }
}

/// Which event a handler runs for; the strings are Dirigible's `getMethod()` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// The connection opened.
    Open,
    /// A message arrived.
    Message,
    /// Something failed.
    Error,
    /// The connection closed.
    Close,
}

impl Method {
    /// Its number in the prelude's `METHODS`.
    fn number(self) -> u8 {
        match self {
            Self::Open => 0,
            Self::Message => 1,
            Self::Error => 2,
            Self::Close => 3,
        }
    }

    /// `onopen`, `onmessage`, `onerror` or `onclose`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "onopen",
            Self::Message => "onmessage",
            Self::Error => "onerror",
            Self::Close => "onclose",
        }
    }
}

/// One event for a handler module.
pub struct Event {
    /// The handler module's project path (`my-project/ws-handler.js`).
    pub handler: Arc<str>,
    /// Which event.
    pub method: Method,
    /// The message, for `onmessage`.
    pub message: Option<Message>,
    /// The error, for `onerror`.
    pub error: Option<String>,
    /// The connection, for server endpoints (`websockets.getPeer()`).
    pub peer: Option<Peer>,
}

type Outcome<T> = oneshot::Sender<Result<T, ScriptError>>;

enum Job {
    Load {
        handler: String,
        done: Outcome<()>,
    },
    Event {
        event: Event,
        done: Outcome<Option<Message>>,
    },
    /// Runs a script file as a module (`switchboard run`).
    Run {
        path: String,
        done: Outcome<()>,
    },
    /// The last handle is gone.
    Stop,
}

/// A handle to a runtime. Cheap to clone; the runtime ends (and closes the clients it created) when
/// the last handle is dropped.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    jobs: mpsc::Sender<Job>,
    label: Arc<str>,
    files: ProjectFiles,
    log: ReadLog,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.jobs.send(Job::Stop);
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("label", &self.inner.label).finish()
    }
}

/// Hands an outbound client's events to the runtime that created it, without keeping it alive.
#[derive(Clone)]
pub(crate) struct Poster {
    jobs: mpsc::Sender<Job>,
    owner: Arc<str>,
}

impl Poster {
    /// The runtime's label.
    pub(crate) fn owner(&self) -> &str {
        &self.owner
    }

    /// Runs the handler for `event` and waits for it; a failure is logged with its stack.
    pub(crate) async fn deliver(&self, event: Event) {
        let (done, outcome) = oneshot::channel();
        let (handler, method) = (event.handler.clone(), event.method);
        let handler = &*handler;
        if self.jobs.send(Job::Event { event, done }).is_err() {
            return;
        }
        if let Ok(Err(error)) = outcome.await {
            tracing::warn!(
                runtime = %self.owner, handler, method = method.as_str(), stack = error.stack.as_deref().unwrap_or(""),
                "client handler failed: {error}"
            );
        }
    }
}

impl Engine {
    /// Starts a runtime for a project. Must be called within a tokio runtime (outbound clients run on
    /// it).
    pub fn start(files: ProjectFiles, config: EngineConfig, clients: Arc<crate::clients::Registry>) -> Self {
        let (jobs, queue) = mpsc::channel();
        let label: Arc<str> = Arc::from(config.label.as_str());
        let runtime = tokio::runtime::Handle::try_current().ok();
        let poster = Poster { jobs: jobs.clone(), owner: label.clone() };
        let log = ReadLog::default();
        let (thread_files, thread_log) = (files.clone(), log.clone());
        let spawned =
            std::thread::Builder::new().name(format!("script {}", config.label)).stack_size(8 << 20).spawn(move || {
                let host = Arc::new(Host::new(thread_files, thread_log, clients, runtime, poster));
                run(config, &host, queue);
                host.clients.close_all_of(host.label());
            });
        if let Err(error) = spawned {
            tracing::error!(%error, "cannot start a script runtime thread");
        }
        Self { inner: Arc::new(Inner { jobs, label, files, log }) }
    }

    /// Whether a file the runtime has read (its handlers, the modules they import) changed since.
    pub fn sources_changed(&self) -> bool {
        self.inner.log.changed(&self.inner.files)
    }

    /// The runtime's label.
    pub fn label(&self) -> &str {
        &self.inner.label
    }

    /// Loads (and for ES modules, evaluates) a handler module: compile errors surface here.
    pub async fn load(&self, handler: &str) -> Result<(), ScriptError> {
        let (done, outcome) = oneshot::channel();
        self.submit(Job::Load { handler: handler.to_owned(), done }, outcome).await
    }

    /// Runs the handler for one event. What it returns is its reply: sent to `event.peer` when there is
    /// one (before anything a later event sends), returned otherwise.
    pub async fn event(&self, event: Event) -> Result<Option<Message>, ScriptError> {
        let (done, outcome) = oneshot::channel();
        self.submit(Job::Event { event, done }, outcome).await
    }

    /// Runs a script file as an ES module (top-level code, imports).
    pub async fn run(&self, path: &str) -> Result<(), ScriptError> {
        let (done, outcome) = oneshot::channel();
        self.submit(Job::Run { path: path.to_owned(), done }, outcome).await
    }

    async fn submit<T>(&self, job: Job, outcome: oneshot::Receiver<Result<T, ScriptError>>) -> Result<T, ScriptError> {
        let gone = || {
            ScriptError::new(ScriptErrorKind::Unavailable, format!("the script runtime {} is gone", self.inner.label))
        };
        self.inner.jobs.send(job).map_err(|_| gone())?;
        outcome.await.unwrap_or_else(|_| Err(gone()))
    }
}

/// The runtime's thread: sets QuickJS up, then serves jobs until every handle is dropped.
/// Marks the calling thread as a batch thread: when a network thread hands it an event it does not
/// preempt that thread at once, so the network thread queues the events it has (a batch) before
/// the runtime takes them. Without this, on a busy core the two threads alternate once per event.
fn run_as_batch_thread() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: sets the scheduling policy of the calling thread (pid 0) from a valid struct.
        let status = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
        if status != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "cannot make the script runtime a batch thread");
        }
    }
}

fn run(config: EngineConfig, host: &Arc<Host>, queue: mpsc::Receiver<Job>) {
    run_as_batch_thread();
    let Ok(runtime) = Runtime::new() else {
        tracing::error!(runtime = %config.label, "cannot create a QuickJS runtime");
        return;
    };
    runtime.set_memory_limit(config.memory_limit);
    runtime.set_max_stack_size(1 << 20);
    let clock = Clock::new();
    let interrupt = clock.clone();
    runtime.set_interrupt_handler(Some(Box::new(move || interrupt.expired())));
    runtime.set_loader(host.modules(), host.modules());
    let Ok(context) = Context::full(&runtime) else {
        tracing::error!(runtime = %config.label, "cannot create a QuickJS context");
        return;
    };
    let ready = context.with(|ctx| {
        crate::host::install(&ctx, host)?;
        ctx.eval::<(), _>(PRELUDE)
    });
    if let Err(error) = ready {
        tracing::error!(runtime = %config.label, %error, "the script prelude failed");
        return;
    }
    let limits = Limits { clock, cpu: config.cpu_limit };
    // Looked up once: a property lookup by name per event costs more than the echo itself.
    let Ok(api) = context.with(|ctx| Api::save(&ctx)) else {
        tracing::error!(runtime = %config.label, "the script prelude did not define its API");
        return;
    };
    while let Ok(job) = queue.recv() {
        // A caller that stopped waiting (its connection closed) just misses the outcome.
        let stop = context.with(|ctx| {
            match job {
                Job::Load { handler, done } => {
                    drop(done.send(limits.guard(&ctx, || load(&ctx, host, &handler).map(drop))))
                }
                Job::Event { event, done } => drop(done.send(limits.guard(&ctx, || dispatch(&ctx, host, &api, event)))),
                Job::Run { path, done } => drop(done.send(limits.guard(&ctx, || run_module(&ctx, host, &path)))),
                Job::Stop => return true,
            }
            false
        });
        if stop {
            break;
        }
    }
}

/// CPU-time deadline of the event being run, read by QuickJS's interrupt handler.
#[derive(Clone)]
struct Clock {
    start: Instant,
    /// Microseconds since `start`; 0: no deadline.
    deadline: Arc<AtomicU64>,
}

impl Clock {
    fn new() -> Self {
        Self { start: Instant::now(), deadline: Arc::new(AtomicU64::new(0)) }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX).max(1)
    }

    fn expired(&self) -> bool {
        let deadline = self.deadline.load(Ordering::Relaxed);
        deadline != 0 && self.now() > deadline
    }
}

struct Limits {
    clock: Clock,
    cpu: Duration,
}

impl Limits {
    /// Runs `f` under the CPU deadline and turns what JavaScript threw into a `ScriptError`.
    fn guard<'js, T>(&self, ctx: &Ctx<'js>, f: impl FnOnce() -> rquickjs::Result<T>) -> Result<T, ScriptError> {
        let budget = u64::try_from(self.cpu.as_micros()).unwrap_or(u64::MAX);
        self.clock.deadline.store(self.clock.now().saturating_add(budget), Ordering::Relaxed);
        let result = f();
        let timed_out = self.clock.expired();
        self.clock.deadline.store(0, Ordering::Relaxed);
        result.map_err(|error| {
            let mut error = script_error(ctx, error);
            if timed_out {
                error.kind = ScriptErrorKind::Timeout;
                error.message = format!("ran longer than {:?} of CPU time ({})", self.cpu, error.message);
            } else if error.kind == ScriptErrorKind::OutOfMemory {
                ctx.run_gc();
            }
            error
        })
    }
}

/// What JavaScript threw (or why rquickjs failed), as a `ScriptError`.
fn script_error(ctx: &Ctx<'_>, error: rquickjs::Error) -> ScriptError {
    if !error.is_exception() {
        let message = error.to_string();
        let kind = if message.contains("out of memory") || matches!(error, rquickjs::Error::Allocation) {
            ScriptErrorKind::OutOfMemory
        } else if matches!(error, rquickjs::Error::Resolving { .. } | rquickjs::Error::Loading { .. }) {
            ScriptErrorKind::Compile
        } else {
            ScriptErrorKind::Thrown
        };
        return ScriptError::new(kind, message);
    }
    let thrown = ctx.catch();
    let object = thrown.as_object();
    let field = |name: &str| object.and_then(|o| o.get::<_, Option<String>>(name).ok().flatten());
    let message = match (field("name"), field("message")) {
        (Some(name), Some(message)) => format!("{name}: {message}"),
        (None, Some(message)) => message,
        _ => describe(ctx, &thrown),
    };
    let kind = if message.contains("out of memory") {
        ScriptErrorKind::OutOfMemory
    } else if message.starts_with("SyntaxError") {
        ScriptErrorKind::Compile
    } else {
        ScriptErrorKind::Thrown
    };
    ScriptError::from_js(kind, message, field("stack"))
}

/// A thrown value that is not an Error, as text.
fn describe<'js>(ctx: &Ctx<'js>, value: &Value<'js>) -> String {
    if let Some(text) = value.as_string().and_then(|s| s.to_string().ok()) {
        return text;
    }
    ctx.json_stringify(value.clone())
        .ok()
        .flatten()
        .and_then(|s| s.to_string().ok())
        .unwrap_or_else(|| format!("a thrown {}", value.type_name()))
}

fn switchboard<'js>(ctx: &Ctx<'js>) -> rquickjs::Result<Object<'js>> {
    ctx.globals().get("__switchboard")
}

/// Loads handler `path` once: an ES module with exports is evaluated now; CommonJS and ES modules
/// without exports are compiled, to run at their first event.
fn load(ctx: &Ctx<'_>, host: &Host, path: &str) -> rquickjs::Result<u32> {
    if let Some(number) = host.loaded(path) {
        return Ok(number);
    }
    let number = host.next_handler_number();
    let api = switchboard(ctx)?;
    let source = host.log.read(&host.files, path).map_err(|e| {
        rquickjs::Error::new_loading_message(path, format!("cannot read {}: {e}", host.files.describe(path)))
    })?;
    match module_kind(&source) {
        ModuleKind::EsModule => {
            let (module, promise) = Module::declare(ctx.clone(), path, source)?.eval()?;
            settle(ctx, promise.into_value())?;
            api.get::<_, Function>("registerModule")?.call::<_, ()>((number, path, module.namespace()?))?;
        }
        ModuleKind::EsModuleWithoutExports => {
            let body = imports_to_require(&source)
                .map_err(|message| rquickjs::Exception::throw_syntax(ctx, &format!("{path}: {message}")))?;
            let function = compile_common_js(ctx, path, &body)?;
            api.get::<_, Function>("registerCommonJs")?.call::<_, ()>((number, path, function))?;
        }
        ModuleKind::CommonJs => {
            let function = compile_common_js(ctx, path, &source)?;
            api.get::<_, Function>("registerCommonJs")?.call::<_, ()>((number, path, function))?;
        }
    }
    host.set_loaded(path, number);
    Ok(number)
}

/// A CommonJS module body as a function of `(exports, require, module, __filename)`. The wrapper
/// starts on the module's first line, so line numbers in errors are the file's.
pub(crate) fn compile_common_js<'js>(ctx: &Ctx<'js>, path: &str, source: &str) -> rquickjs::Result<Function<'js>> {
    let mut options = EvalOptions::default();
    options.strict = false;
    options.filename = Some(path.to_owned());
    ctx.eval_with_options(format!("(function (exports, require, module, __filename) {{{source}\n}})"), options)
}

/// Runs the jobs a promise waits for; its value once settled, its reason as an error if rejected.
fn settle<'js>(ctx: &Ctx<'js>, value: Value<'js>) -> rquickjs::Result<Value<'js>> {
    let Some(promise) = value.as_promise().cloned() else { return Ok(value) };
    while promise.state() == rquickjs::promise::PromiseState::Pending {
        if !ctx.execute_pending_job() {
            return Err(rquickjs::Exception::throw_internal(
                ctx,
                "the handler's promise never settled (it waits for something that never comes)",
            ));
        }
    }
    promise.result::<Value>().unwrap_or_else(|| Ok(Value::new_undefined(ctx.clone())))
}

/// The prelude's functions that every event calls.
struct Api {
    dispatch: Persistent<Function<'static>>,
    reply: Persistent<Function<'static>>,
}

impl Api {
    fn save(ctx: &Ctx<'_>) -> rquickjs::Result<Self> {
        let api = switchboard(ctx)?;
        Ok(Self {
            dispatch: Persistent::save(ctx, api.get::<_, Function>("dispatch")?),
            reply: Persistent::save(ctx, api.get::<_, Function>("reply")?),
        })
    }
}

/// Runs the handler for one event and converts its return value to a reply.
fn dispatch(ctx: &Ctx<'_>, host: &Host, api: &Api, event: Event) -> rquickjs::Result<Option<Message>> {
    let handler = load(ctx, host, &event.handler)?;
    let peer_number = event.peer.as_ref().map(|peer| host.peer_number(peer));
    let message = match &event.message {
        Some(message) => message_to_js(ctx, message)?,
        None => Value::new_undefined(ctx.clone()),
    };
    let returned = api.dispatch.clone().restore(ctx)?.call::<_, Value>((
        handler,
        event.method.number(),
        message,
        event.error.clone(),
        peer_number,
    ));
    if let (Method::Close, Some(number)) = (event.method, peer_number) {
        host.forget_peer(number);
    }
    let settled = settle(ctx, returned?)?;
    // Strings, ArrayBuffers and nothing are told apart here; typed arrays and other values (JSON) by
    // the prelude.
    let direct = settled.is_null()
        || settled.is_undefined()
        || settled.is_string()
        || ArrayBuffer::from_value(settled.clone()).is_some();
    let reply = if direct { settled } else { api.reply.clone().restore(ctx)?.call::<_, Value>((settled,))? };
    let reply = js_to_message(&reply)?;
    match (reply, &event.peer) {
        // Sent from here, before the next job runs: a reply always precedes what later events send.
        (Some(reply), Some(peer)) => {
            let _ = peer.send(reply);
            Ok(None)
        }
        (reply, _) => Ok(reply),
    }
}

/// Runs `path` as an ES module (its imports and top-level code).
fn run_module(ctx: &Ctx<'_>, host: &Host, path: &str) -> rquickjs::Result<()> {
    let source = host.log.read(&host.files, path).map_err(|e| {
        rquickjs::Error::new_loading_message(path, format!("cannot read {}: {e}", host.files.describe(path)))
    })?;
    let (_, promise) = Module::declare(ctx.clone(), path, source)?.eval()?;
    settle(ctx, promise.into_value()).map(drop)
}

/// A message as JavaScript sees it: a string for text, an ArrayBuffer for binary.
pub(crate) fn message_to_js<'js>(ctx: &Ctx<'js>, message: &Message) -> rquickjs::Result<Value<'js>> {
    match message.text() {
        Ok(text) if message.is_text() => rquickjs::String::from_str(ctx.clone(), text).map(|s| s.into_value()),
        _ => ArrayBuffer::new_copy(ctx.clone(), &message.bytes()[..]).map(|b| b.into_value()),
    }
}

/// What a script sends: a string (text) or an ArrayBuffer (binary); null/undefined is nothing.
pub(crate) fn js_to_message(value: &Value<'_>) -> rquickjs::Result<Option<Message>> {
    if value.is_null() || value.is_undefined() {
        return Ok(None);
    }
    if let Some(text) = value.as_string() {
        return Ok(Some(Message::from_text(text.to_string()?)));
    }
    if let Some(buffer) = ArrayBuffer::from_value(value.clone()) {
        // SAFETY: the bytes are copied before any JavaScript runs again.
        let bytes = unsafe { buffer.as_bytes() }.map(<[u8]>::to_vec).unwrap_or_default();
        return Ok(Some(Message::from_binary(bytes)));
    }
    Err(rquickjs::Error::new_from_js(value.type_name(), "string or ArrayBuffer"))
}
