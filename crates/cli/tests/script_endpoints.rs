//! Script endpoints through the real binary: `switchboard serve tests/projects/dirigible` (the seed's
//! descriptor and handler, both handler styles, replies, peers and topics, bad descriptors, failing
//! handlers, reload, outbound clients), `switchboard run` with the seed's client example, and
//! `switchboard new endpoint`.

#[path = "../../switchboard/tests/support/foreign.rs"]
mod foreign;
mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::{RawClient, ServeProcess};

fn project() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/projects/dirigible")
}

fn serve_project(extra: &[&str]) -> ServeProcess {
    let dir = project();
    let mut args = vec![dir.to_str().expect("utf-8 path")];
    args.extend_from_slice(extra);
    ServeProcess::start_logged(&args)
}

async fn connect(server: &ServeProcess, endpoint: &str) -> RawClient {
    RawClient::connect(server.addr, &format!("/websockets/v4/service/{endpoint}"), &[]).await
}

/// Sends a text message and returns the next text (or binary, as lossy text) message.
async fn ask(client: &mut RawClient, text: &str) -> String {
    client.send(true, 0, 1, text.as_bytes()).await;
    next_text(client).await
}

async fn next_text(client: &mut RawClient) -> String {
    loop {
        let frame = client.recv().await.expect("a message");
        match frame.opcode {
            1 | 2 => return String::from_utf8_lossy(&frame.payload).into_owned(),
            8 => panic!(
                "closed: {} {:?}",
                frame.close_code(),
                String::from_utf8_lossy(&frame.payload[2.min(frame.payload.len())..])
            ),
            _ => {}
        }
    }
}

/// The close frame's code and reason.
async fn close_of(client: &mut RawClient) -> (u16, String) {
    loop {
        let frame = client.recv().await.expect("a close frame");
        if frame.opcode == 8 {
            let reason = String::from_utf8_lossy(frame.payload.get(2..).unwrap_or_default()).into_owned();
            return (frame.close_code(), reason);
        }
    }
}

async fn ops(server: &ServeProcess) -> serde_json::Value {
    let (mut client, status) = RawClient::raw_request(
        server.addr,
        format!("GET /services/v4/ops/websockets HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", server.addr)
            .as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{}", client.response_head);
    serde_json::from_str(&client.read_body().await).expect("JSON")
}

fn entry<'a>(view: &'a serde_json::Value, location: &str) -> &'a serde_json::Value {
    view.as_array()
        .and_then(|list| list.iter().find(|e| e["location"] == location))
        .unwrap_or_else(|| panic!("no {location} in {view:#}"))
}

#[tokio::test]
async fn the_seed_endpoint_serves_its_handler_with_every_event() {
    let server = serve_project(&[]);
    for prefix in ["/websockets/v4/service/", "/websockets/service/"] {
        let mut client = RawClient::connect(server.addr, &format!("{prefix}my-endpoint"), &[]).await;
        assert_eq!(ask(&mut client, "hello").await, "echo: hello");
        client.close(1000).await;
        assert_eq!(client.expect_close().await, 1000);
    }
    server.wait_for_log("server onopen onopen");
    server.wait_for_log("server onmessage hello");
    server.wait_for_log("server onclose onclose");
    // A protocol error reaches onError, with getError() as its argument.
    let mut client = connect(&server, "my-endpoint").await;
    client.send(true, 0, 3, b"reserved opcode").await;
    assert_eq!(client.expect_close().await, 1002);
    server.wait_for_log("server onerror protocol error");
    assert!(server.log.lock().unwrap().contains("runtime=\"my-endpoint\" module=\"my-project/ws-handler.js\""));
}

#[tokio::test]
async fn both_handler_styles_see_the_context_functions() {
    let server = serve_project(&[]);
    let mut exports = connect(&server, "exports").await;
    let open: serde_json::Value = serde_json::from_str(&next_text(&mut exports).await).expect("json");
    assert_eq!(open["method"], "onopen");
    assert_eq!(open["flags"], serde_json::json!([true, false, false, false]));
    assert_eq!(open["opened"], 1);
    let message: serde_json::Value = serde_json::from_str(&ask(&mut exports, "hi").await).expect("json");
    assert_eq!(message["method"], "onmessage");
    assert_eq!((&message["message"], &message["arg"]), (&serde_json::json!("hi"), &serde_json::json!("hi")));
    assert_eq!(message["flags"], serde_json::json!([false, true, false, false]));

    let mut per_event = connect(&server, "per-event").await;
    assert_eq!(next_text(&mut per_event).await, "per-event open onopen calls=1");
    assert_eq!(ask(&mut per_event, "x").await, "per-event message x calls=1 events=2");
    assert_eq!(ask(&mut per_event, "y").await, "per-event message y calls=1 events=3");
}

#[tokio::test]
async fn handlers_reply_send_close_publish_and_keep_state() {
    let server = serve_project(&[]);
    let mut a = connect(&server, "peer").await;
    assert_eq!(ask(&mut a, "json").await, r#"{"ok":true,"list":[1,2]}"#);
    assert_eq!(ask(&mut a, "twice x").await, "x");
    assert_eq!(next_text(&mut a).await, "x");
    a.send(true, 0, 2, &[1, 2, 255]).await;
    let frame = a.recv().await.expect("binary reply");
    assert_eq!((frame.opcode, frame.payload), (2, vec![2, 3, 0]));
    assert_eq!(ask(&mut a, "id").await.len(), 36, "a UUID");

    // Topics: between script peers, and with the native /chat rooms.
    assert_eq!(ask(&mut a, "sub news").await, "subscribed true");
    let mut b = connect(&server, "peer").await;
    assert_eq!(ask(&mut b, "pub news hello there").await, "delivered 1");
    assert_eq!(next_text(&mut a).await, "hello there");
    let mut chat = RawClient::connect(server.addr, "/chat?room=lobby", &[]).await;
    assert!(next_text(&mut chat).await.contains("\"welcome\""));
    assert_eq!(ask(&mut b, "pub chat:lobby from a script").await, "delivered 1");
    assert_eq!(next_text(&mut chat).await, "from a script");

    // Module state spans connections; each connection's events run in order.
    let mut first = connect(&server, "count").await;
    let mut second = connect(&server, "count").await;
    assert_eq!(ask(&mut first, "").await, "1");
    assert_eq!(ask(&mut second, "").await, "2");
    assert_eq!(ask(&mut first, "").await, "3");
}

#[tokio::test]
async fn a_script_closes_with_its_code_and_an_invalid_code_is_its_error() {
    let server = serve_project(&[]);
    let mut client = connect(&server, "peer").await;
    client.send(true, 0, 1, b"close 4001 bye now").await;
    assert_eq!(close_of(&mut client).await, (4001, "bye now".to_owned()));
    let mut client = connect(&server, "peer").await;
    client.send(true, 0, 1, b"badclose").await;
    let (code, reason) = close_of(&mut client).await;
    assert_eq!(code, 1011);
    assert!(reason.contains("RangeError") && reason.contains("1005"), "{reason}");
}

#[tokio::test]
async fn unknown_and_broken_endpoints_are_refused_with_the_reason() {
    let server = serve_project(&[]);
    let refused = |path: &str| {
        let path = path.to_owned();
        let addr = server.addr;
        async move {
            let (mut client, status) = RawClient::handshake(addr, &path, &[]).await;
            (status, client.read_body().await)
        }
    };
    let (status, body) = refused("/websockets/v4/service/nowhere").await;
    assert_eq!(status, 404);
    assert!(body.contains("\"nowhere\""), "{body}");
    for (endpoint, reason) in [
        ("missing-module", "handler module z-bad/nothing-here.js does not exist"),
        ("syntax", "z-bad/syntax-error.js:2"),
        ("invalid-json", "invalid JSON at line 4, column 3"),
        ("engine", "unknown \"engine\" \"graalvm\""),
        ("escape", "outside the project"),
        ("no-handler", "missing \"handler\""),
    ] {
        let (status, body) = refused(&format!("/websockets/v4/service/{endpoint}")).await;
        assert_eq!(status, 503, "{endpoint}: {body}");
        assert!(body.contains(reason), "{endpoint}: {body}");
    }
    // The good ones serve; the duplicate is reported with both paths.
    let mut client = connect(&server, "my-endpoint").await;
    assert_eq!(ask(&mut client, "still").await, "echo: still");
    let view = ops(&server).await;
    assert_eq!(entry(&view, "my-endpoint.websocket")["status"], "ok");
    assert_eq!(entry(&view, "my-endpoint.websocket")["peers"], 1);
    assert_eq!(entry(&view, "my-endpoint.websocket")["description"], "My Websocket");
    let duplicate = entry(&view, "z-bad/duplicate.websocket");
    assert_eq!(duplicate["status"], "error");
    assert!(duplicate["error"].as_str().unwrap_or_default().contains("already served by my-endpoint.websocket"));
    assert!(entry(&view, "z-bad/bad-name.websocket")["error"]
        .as_str()
        .unwrap_or_default()
        .contains("one path segment"));
    let log = server.log.lock().unwrap().clone();
    assert!(log.contains("z-bad/syntax-error.js:2"), "{log}");
    assert_eq!(log.matches("invalid JSON at line 4").count(), 1, "reported once:\n{log}");
}

#[tokio::test]
async fn a_failing_handler_closes_only_its_own_connection_with_1011() {
    let server = serve_project(&["--script-cpu-ms", "300", "--script-memory-mib", "32"]);
    let mut bystander = connect(&server, "count").await;
    assert_eq!(ask(&mut bystander, "").await.parse::<u64>().map(|_| ()), Ok(()));
    for (endpoint, expected) in
        [("throws", "TypeError"), ("throws", "failures/throws.js:4"), ("loops", "timed out"), ("hog", "out of memory")]
    {
        let mut victim = connect(&server, endpoint).await;
        victim.send(true, 0, 1, b"break it").await;
        let (code, reason) = close_of(&mut victim).await;
        assert_eq!(code, 1011, "{endpoint}");
        assert!(reason.contains(expected), "{endpoint}: {reason}");
        // The endpoint itself carries on, and so does everyone else.
        let mut next = connect(&server, endpoint).await;
        assert_eq!(ask(&mut next, "ok").await, "fine", "{endpoint}");
        assert!(ask(&mut bystander, "").await.parse::<u64>().is_ok());
    }
    let view = ops(&server).await;
    assert_eq!(entry(&view, "failures/throws.websocket")["errors"], 2);
    assert!(entry(&view, "failures/loops.websocket")["last_error"].as_str().unwrap_or_default().contains("CPU time"));
    server.wait_for_log("handler failed");
}

/// Copies the test project to a fresh temporary folder.
fn temporary_project(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("switchboard-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&project(), &dir);
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir").flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

async fn eventually<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check().await {
        assert!(Instant::now() < deadline, "not within 5 s: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn descriptors_and_handlers_reload_while_peers_are_connected() {
    let dir = temporary_project("reload");
    let server = ServeProcess::start_logged(&[dir.to_str().expect("utf-8")]);
    let addr = server.addr;
    let status = |endpoint: &'static str| async move {
        RawClient::handshake(addr, &format!("/websockets/v4/service/{endpoint}"), &[]).await.1
    };
    let mut counter = connect(&server, "count").await;
    assert_eq!(ask(&mut counter, "").await, "1");

    // Added: a descriptor and its handler.
    std::fs::write(dir.join("added.js"), "export function onMessage(m) { return `added ${m}`; }\n").expect("write");
    std::fs::write(dir.join("added.websocket"), r#"{"endpoint": "added", "handler": "added"}"#).expect("write");
    eventually("the added endpoint serves", || async { status("added").await == 101 }).await;
    let mut added = connect(&server, "added").await;
    assert_eq!(ask(&mut added, "x").await, "added x");

    // Changed: the handler; the connected peer's next event runs the new one.
    std::fs::write(dir.join("features/count.js"), "export function onMessage() { return 'v2'; }\n").expect("write");
    let deadline = Instant::now() + Duration::from_secs(5);
    while ask(&mut counter, "").await != "v2" {
        assert!(Instant::now() < deadline, "the changed handler did not serve within 5 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Broken, then fixed: 503 meanwhile.
    std::fs::write(dir.join("added.js"), "export function onMessage( {\n").expect("write");
    eventually("the broken endpoint is refused", || async { status("added").await == 503 }).await;
    std::fs::write(dir.join("added.js"), "export function onMessage(m) { return `fixed ${m}`; }\n").expect("write");
    eventually("the fixed endpoint serves", || async { status("added").await == 101 }).await;

    // A module the handler imports changes on its own: the endpoint restarts with it.
    std::fs::write(dir.join("word.js"), "export const word = 'one';\n").expect("write");
    std::fs::write(
        dir.join("added.js"),
        "import { word } from './word';\nexport function onMessage(m) { return `${word} ${m}`; }\n",
    )
    .expect("write");
    let ask_added = || async move {
        let mut client = RawClient::connect(addr, "/websockets/v4/service/added", &[]).await;
        ask(&mut client, "x").await
    };
    eventually("the handler imports word.js", || async { ask_added().await == "one x" }).await;
    std::fs::write(dir.join("word.js"), "export const word = 'two';\n").expect("write");
    eventually("a change to an imported module reloads", || async { ask_added().await == "two x" }).await;

    // Removed: its peers are closed with 1001, and it is gone.
    std::fs::remove_file(dir.join("features/count.websocket")).expect("remove");
    assert_eq!(close_of(&mut counter).await.0, 1001);
    assert_eq!(status("count").await, 404);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn scripts_create_find_use_and_close_outbound_clients() {
    let server = serve_project(&[]);
    let mut driver = connect(&server, "client").await;
    let echo = format!("ws://{}/echo", server.addr);
    let created: serde_json::Value =
        serde_json::from_str(&ask(&mut driver, &format!("connect {echo}")).await).expect("json");
    assert_eq!(created["uri"], echo.as_str());
    assert_eq!(created["handler"], "features/client-events");
    assert_eq!(created["engine"], "javascript");
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(next_text(&mut driver).await, "client onopen");
    let list: serde_json::Value = serde_json::from_str(&ask(&mut driver, "list").await).expect("json");
    assert_eq!(list, serde_json::json!([{ "uri": echo, "handler": "features/client-events", "state": "open" }]));
    assert_eq!(ask(&mut driver, "byhandler features/client-events").await, id);
    assert_eq!(ask(&mut driver, "byhandler nobody").await, "null");
    assert_eq!(ask(&mut driver, &format!("byid {id}")).await, echo);
    assert_eq!(ask(&mut driver, &format!("send {id} ping")).await, "sent");
    assert_eq!(next_text(&mut driver).await, "client onmessage ping");
    assert_eq!(ask(&mut driver, &format!("close {id}")).await, "closing");
    assert_eq!(next_text(&mut driver).await, "client onclose onclose");
    assert_eq!(ask(&mut driver, "list").await, "[]");

    // A server that refuses: onerror, then onclose, and the list is empty again.
    ask(&mut driver, "connect ws://127.0.0.1:1/refused").await;
    let first = next_text(&mut driver).await;
    assert!(first.starts_with("client onerror"), "an error first, got {first:?}");
    assert_eq!(next_text(&mut driver).await, "client onclose onclose");
    assert_eq!(ask(&mut driver, "list").await, "[]");
    // A malformed URI is a JavaScript error that says what is wrong.
    let bad = ask(&mut driver, "bad http://example.org/").await;
    assert!(bad.starts_with("TypeError: createWebsocket: invalid URI \"http://example.org/\""), "{bad}");
}

/// The seed's client example, unmodified but for its URI.
const SEED_CLIENT: &str = r#"import { websockets } from "sdk/net"

const uri = "ws://echo.websocket.org:80/";
const handler = "my-project/ws-handler"

function initialize() {
    console.log("Connect to: " + uri);
    let websocket = websockets.createWebsocket(uri, handler);
    websocket.send("hello");
}

initialize();

websockets.getClientByHandler(handler).close();
"#;

#[tokio::test]
async fn the_seed_client_example_delivers_its_hello_to_a_foreign_server() {
    let python = foreign::Peer::python();
    let dir = temporary_project("run");
    let script = SEED_CLIENT.replace("ws://echo.websocket.org:80/", &python.url("/record"));
    std::fs::write(dir.join("client.js"), script).expect("write");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["run", "client.js"])
        .current_dir(&dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("run");
    let log = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{log}");
    for line in ["Connect to: ws://127.0.0.1:", "client onopen onopen", "client onclose onclose"] {
        assert!(log.contains(line), "no {line:?} in:\n{log}");
    }
    // The close came right after the send, and still went out after the hello.
    let session = switchboard::websocket(&python.url("/recorded")).expect("url").connect();
    let mut texts = session.messages().texts();
    let recorded = tokio::time::timeout(Duration::from_secs(10), futures_util::StreamExt::next(&mut texts)).await;
    assert_eq!(recorded.expect("in time").as_deref(), Some("[\"hello\"]"));
    // A script that throws says where, and exits 1.
    std::fs::write(dir.join("broken.js"), "import { websockets } from \"sdk/net\";\nwebsockets.nothing();\n")
        .expect("write");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["run", "broken.js", "--dir"])
        .arg(&dir)
        .current_dir(&dir)
        .output()
        .expect("run");
    let log = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{log}");
    assert!(log.contains("broken.js:2"), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn new_endpoint_writes_a_descriptor_and_handler_that_serve() {
    let dir = std::env::temp_dir().join(format!("switchboard-new-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let new = |name: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["new", "endpoint", name, "--dir"])
            .arg(&dir)
            .output()
            .expect("new")
    };
    let output = new("greeter");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let handler = std::fs::read_to_string(dir.join("greeter-handler.js")).expect("handler");
    for function in ["onOpen()", "onMessage(message)", "onError(error)", "onClose()"] {
        assert!(handler.contains(function), "{function}");
    }
    let again = new("greeter");
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));
    assert_eq!(new("no/slashes").status.code(), Some(1));
    let server = ServeProcess::start(&[dir.to_str().expect("utf-8")]);
    let mut client = connect(&server, "greeter").await;
    assert_eq!(ask(&mut client, "hi").await, "hi");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn outbound_clients_can_be_restricted_to_allowed_hosts() {
    let server = serve_project(&["--allow-outbound", "*.example.org", "--allow-outbound", "localhost"]);
    let mut driver = connect(&server, "client").await;
    let refused = ask(&mut driver, "bad ws://127.0.0.1:1/x").await;
    assert_eq!(
        refused,
        "TypeError: createWebsocket: ws://127.0.0.1:1/x is not an allowed host (allowed: *.example.org, localhost)"
    );
    assert_eq!(ask(&mut driver, "list").await, "[]");
}
