//! `switchboard serve` when the machine says no: a busy port, and running out of file descriptors.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn a_busy_port_is_reported_with_its_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--port", &port.to_string()])
        .output()
        .expect("run switchboard serve");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("cannot listen on 127.0.0.1:{port}")), "{stderr}");
    assert!(stderr.contains("in use"), "{stderr}");
}

#[tokio::test]
async fn running_out_of_file_descriptors_is_logged_once_per_episode_and_recovers() {
    let mut child = Command::new("bash")
        .args(["-c", &format!("ulimit -n 48 && exec {} serve --port 0", env!("CARGO_BIN_EXE_switchboard"))])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start switchboard serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("listening line");
    let addr: std::net::SocketAddr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http://"))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    // More connections than descriptors: the server cannot accept them all for 1.5 s.
    let mut held = Vec::new();
    for _ in 0..80 {
        held.push(tokio::net::TcpStream::connect(addr).await.expect("connect (queued in the backlog)"));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    drop(held);
    // Once descriptors are free again, the server serves.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (mut client, status) = support::RawClient::handshake(addr, "/echo", &[]).await;
        if status == 101 {
            client.send(true, 0, 1, b"back").await;
            let frame = client.recv().await.expect("echo");
            assert_eq!(frame.payload, b"back");
            break;
        }
        assert!(Instant::now() < deadline, "the server did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
    let mut stderr = String::new();
    child.stderr.take().expect("stderr").read_to_string(&mut stderr).expect("stderr");
    // One warning when an episode starts and one line with its count when it ends, by recovering or
    // at shutdown (the backlog left behind may cause a second short episode, perhaps still under way
    // when SIGTERM arrives); the accept loop used to log 20 lines a second.
    let failed = stderr.lines().filter(|l| l.contains("accept failed")).count();
    let ended = stderr
        .lines()
        .filter(|l| (l.contains("accepting again") || l.contains("stopped accepting")) && l.contains("failures="))
        .count();
    assert!((1..=3).contains(&failed) && failed == ended, "one line per episode:\n{stderr}");
}
