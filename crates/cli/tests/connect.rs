//! `switchboard connect` against `switchboard serve`, and the client surviving a killed server.

#[path = "../../switchboard/tests/support/foreign.rs"]
mod foreign;
mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use support::ServeProcess;
use switchboard::client::ReconnectPolicy;

/// Runs `switchboard connect` with `stdin` as its input; `None` keeps stdin open (nothing to send,
/// and no end of input that would close the session before it connects).
fn connect(args: &[&str], stdin: impl Into<Option<&'static [u8]>>) -> (String, String, i32) {
    let stdin = stdin.into();
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("connect")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start switchboard connect");
    let mut input = child.stdin.take().expect("stdin");
    let held = match stdin {
        Some(bytes) => {
            input.write_all(bytes).expect("write stdin");
            drop(input);
            None
        }
        None => Some(input),
    };
    let output = child.wait_with_output().expect("wait");
    drop(held);
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        output.status.code().unwrap_or(-1),
    )
}

#[test]
fn echo_hello_prints_hello_and_exits_0() {
    let server = ServeProcess::start(&[]);
    let url = format!("ws://{}/echo", server.addr);
    let (stdout, stderr, code) = connect(&[&url], &b"hello\n"[..]);
    assert_eq!((stdout.as_str(), code), ("hello\n", 0), "stderr: {stderr}");
    assert!(stderr.contains("open") && stderr.contains("closed: 1000"), "{stderr}");
    let (stdout, _, code) = connect(&["--binary", &url], &b"a\nbc\n"[..]);
    assert_eq!((stdout.as_str(), code), ("[binary] YQ==\n[binary] YmM=\n", 0));
    let (stdout, _, code) = connect(&["--no-compression", &url], "κόσμε\nline two\n".as_bytes());
    assert_eq!((stdout.as_str(), code), ("κόσμε\nline two\n", 0));
}

#[test]
fn error_closes_and_failed_connections_exit_non_zero() {
    let server = ServeProcess::start(&[]);
    let url = format!("ws://{}/echo", server.addr);
    // A line over the server's 16 MiB limit: the server closes with 1009.
    let mut big = vec![b'x'; (16 << 20) + 1];
    big.push(b'\n');
    let big: &'static [u8] = Box::leak(big.into_boxed_slice());
    let (_, stderr, code) = connect(&["--no-compression", &url], big);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("closed: 1009"), "{stderr}");
    let (_, stderr, code) = connect(&["ws://127.0.0.1:1/"], None);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("Connection refused"), "{stderr}");
    let (_, stderr, code) = connect(&["http://example.com"], None);
    assert_eq!(code, 1);
    assert!(stderr.contains("unsupported scheme"), "{stderr}");
}

#[tokio::test]
async fn the_client_reconnects_after_the_server_is_killed_and_restarted() {
    let server = ServeProcess::start(&[]);
    let port = server.addr.port();
    let policy = ReconnectPolicy::default().backoff(Duration::from_millis(50), Duration::from_millis(300));
    let session =
        switchboard::websocket(&format!("ws://{}/echo", server.addr)).expect("url").reconnect(policy).connect();
    let mut texts = session.messages().texts();
    let mut opens = Box::pin(session.opens());
    let mut closes = Box::pin(session.closes());
    let wait = Duration::from_secs(10);
    tokio::time::timeout(wait, opens.next()).await.expect("open");
    session.send("before").await.expect("send");
    assert_eq!(tokio::time::timeout(wait, texts.next()).await.expect("echo"), Some("before".to_owned()));

    drop(server); // SIGKILL: no close frame.
    let close = tokio::time::timeout(wait, closes.next()).await.expect("close").expect("event");
    assert_eq!((close.code, close.was_clean), (1006, false));
    for i in 0..3 {
        session.send(format!("while down {i}")).await.expect("queued");
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let _restarted = ServeProcess::start_on(port, &[]);
    tokio::time::timeout(wait, opens.next()).await.expect("reopened");
    for i in 0..3 {
        let text = tokio::time::timeout(wait, texts.next()).await.expect("replayed");
        assert_eq!(text, Some(format!("while down {i}")));
    }
}

/// A server that answers a close at once drops what it still owed (Python's `websockets` does): with
/// piped input the replies to the last lines must arrive before `connect` closes.
#[test]
fn piped_input_gets_every_reply_from_a_foreign_server_before_the_close() {
    let python = foreign::Peer::python();
    let url = python.url("/echo");
    let (stdout, stderr, code) = connect(&[&url], &b"hello\nsecond\n"[..]);
    assert_eq!((stdout.as_str(), code), ("hello\nsecond\n", 0), "stderr: {stderr}");
    let (stdout, stderr, code) = connect(&["--linger", "0.3", &url], &b"a\nb\nc\n"[..]);
    assert_eq!((stdout.as_str(), code), ("a\nb\nc\n", 0), "stderr: {stderr}");
    let (_, stderr, code) = connect(&["--linger=-1", &url], &b"a\n"[..]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("--linger -1"), "{stderr}");
}
