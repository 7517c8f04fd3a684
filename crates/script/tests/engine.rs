//! The runtime alone: both handler styles, every context function, replies, module state, limits.

use std::sync::Arc;
use std::time::Duration;

use switchboard::Message;
use switchboard_script::{Engine, EngineConfig, Event, Method, ProjectFiles, Registry, ScriptErrorKind};

fn project(files: &[(&str, &str)]) -> ProjectFiles {
    ProjectFiles::embedded(files)
}

fn event(handler: &str, method: Method, message: Option<&str>, error: Option<&str>) -> Event {
    Event {
        handler: Arc::from(handler),
        method,
        message: message.map(|m| Message::from_text(m.to_owned())),
        error: error.map(str::to_owned),
        peer: None,
    }
}

fn engine(files: ProjectFiles, config: EngineConfig) -> Engine {
    Engine::start(files, config, Arc::new(Registry::default()))
}

async fn reply(engine: &Engine, e: Event) -> Option<String> {
    engine.event(e).await.expect("handler ran").map(|m| m.text().expect("text").to_owned())
}

#[tokio::test]
async fn exported_handlers_see_the_context_and_keep_module_state() {
    let files = project(&[(
        "p/h.js",
        r#"import { websockets } from "sdk/net";
let count = 0;
export function onOpen() { count++; return `open ${websockets.getMethod()} ${websockets.isOnOpen()} ${websockets.getPeer()}`; }
export function onMessage(message) {
  count++;
  return { method: websockets.getMethod(), message, same: websockets.getMessage() === message, isOnMessage: websockets.isOnMessage(), count };
}
export function onError(error) { return `error ${error} ${websockets.getError()} ${websockets.isOnError()}`; }
export function onClose() { return `close ${websockets.isOnClose()} ${count}`; }
"#,
    )]);
    let engine = engine(files, EngineConfig::default());
    engine.load("p/h.js").await.expect("loads");
    assert_eq!(
        reply(&engine, event("p/h.js", Method::Open, None, None)).await.as_deref(),
        Some("open onopen true null")
    );
    let json = reply(&engine, event("p/h.js", Method::Message, Some("hi"), None)).await.expect("reply");
    assert_eq!(json, r#"{"method":"onmessage","message":"hi","same":true,"isOnMessage":true,"count":2}"#);
    assert_eq!(
        reply(&engine, event("p/h.js", Method::Error, None, Some("boom"))).await.as_deref(),
        Some("error boom boom true")
    );
    assert_eq!(reply(&engine, event("p/h.js", Method::Close, None, None)).await.as_deref(), Some("close true 2"));
}

#[tokio::test]
async fn per_event_modules_run_for_every_event_in_both_module_systems() {
    let files = project(&[
        (
            "cjs.js",
            r#"var websockets = require("net/v4/websockets");
var log = require("./log");
log.push(websockets.getMethod() + ":" + (websockets.getMessage() || ""));
"#,
        ),
        ("log.js", "module.exports = globalThis.seen = globalThis.seen || [];\n"),
        (
            "esm.js",
            r#"import { websockets } from "sdk/net";
if (websockets.isOnMessage()) { globalThis.esm = (globalThis.esm || 0) + 1; }
"#,
        ),
        (
            "probe.js",
            "export function onMessage() { return JSON.stringify({ seen: globalThis.seen, esm: globalThis.esm }); }\n",
        ),
    ]);
    let engine = engine(files, EngineConfig::default());
    for (method, message) in [(Method::Open, None), (Method::Message, Some("a")), (Method::Close, None)] {
        assert_eq!(reply(&engine, event("cjs.js", method, message, None)).await, None);
        assert_eq!(reply(&engine, event("esm.js", method, message, None)).await, None);
    }
    let seen = reply(&engine, event("probe.js", Method::Message, Some("?"), None)).await;
    assert_eq!(seen.as_deref(), Some(r#"{"seen":["onopen:","onmessage:a","onclose:"],"esm":1}"#));
}

#[tokio::test]
async fn binary_messages_arrive_as_array_buffers_and_typed_arrays_go_back_as_binary() {
    let files = project(&[(
        "bin.js",
        "export function onMessage(m) { const bytes = new Uint8Array(m); return bytes.map((b) => b + 1); }\n",
    )]);
    let engine = engine(files, EngineConfig::default());
    let binary = Event {
        handler: Arc::from("bin.js"),
        method: Method::Message,
        message: Some(Message::from_binary(vec![1u8, 2, 255])),
        error: None,
        peer: None,
    };
    let reply = engine.event(binary).await.expect("ran").expect("a reply");
    assert!(reply.is_binary());
    assert_eq!(&reply.bytes()[..], &[2u8, 3, 0]);
}

#[tokio::test]
async fn errors_say_what_and_where() {
    let files = project(&[
        ("throws.js", "export function onMessage() {\n  null.x;\n}\n"),
        ("broken.js", "export function onMessage( {\n"),
        ("missing.js", "import { nope } from \"./nowhere\";\nexport function onOpen() {}\n"),
        ("loop.js", "export function onMessage() { for (;;) {} }\nexport function onOpen() { return 'alive'; }\n"),
        ("hog.js", "export function onMessage() { const a = []; for (;;) a.push(new Array(1e5).fill(1)); }\nexport function onOpen() { return 'alive'; }\n"),
    ]);
    let config =
        EngineConfig { cpu_limit: Duration::from_millis(200), memory_limit: 32 << 20, ..EngineConfig::default() };
    let engine = engine(files, config);
    let thrown = engine.event(event("throws.js", Method::Message, Some("x"), None)).await.expect_err("throws");
    assert_eq!(thrown.kind, ScriptErrorKind::Thrown);
    assert!(thrown.message.starts_with("TypeError"), "{thrown:?}");
    assert_eq!(thrown.location.as_deref().map(|l| l.starts_with("throws.js:2")), Some(true), "{thrown:?}");
    let broken = engine.load("broken.js").await.expect_err("does not compile");
    assert_eq!(broken.kind, ScriptErrorKind::Compile, "{broken:?}");
    assert!(broken.to_string().contains("(at broken.js:2:1)"), "{broken}");
    let missing = engine.load("missing.js").await.expect_err("import fails");
    assert!(missing.to_string().contains("nowhere"), "{missing}");
    let looped = engine.event(event("loop.js", Method::Message, Some("x"), None)).await.expect_err("interrupted");
    assert_eq!(looped.kind, ScriptErrorKind::Timeout, "{looped:?}");
    assert_eq!(reply(&engine, event("loop.js", Method::Open, None, None)).await.as_deref(), Some("alive"));
    let hog = engine.event(event("hog.js", Method::Message, Some("x"), None)).await.expect_err("out of memory");
    assert_eq!(hog.kind, ScriptErrorKind::OutOfMemory, "{hog:?}");
    assert_eq!(reply(&engine, event("hog.js", Method::Open, None, None)).await.as_deref(), Some("alive"));
}
