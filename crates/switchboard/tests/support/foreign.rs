//! Foreign WebSocket servers for tests (Python's `websockets`, Node's `ws`), started as processes.
//! Shared by the library's and the CLI's tests. The test command (scripts/test) installs both.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A foreign server process, killed on drop.
pub struct Peer {
    child: Child,
    pub port: u16,
}

impl Peer {
    fn start(mut command: Command, what: &str) -> Self {
        let mut child =
            command.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap_or_else(|e| {
                panic!("cannot start the {what} server: {e}. Run scripts/test, which installs it.")
            });
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout).read_line(&mut line).expect("read READY");
        let port = line.strip_prefix("READY ").and_then(|p| p.trim().parse().ok()).unwrap_or_else(|| {
            panic!("the {what} server did not start: {line:?}. Run scripts/test, which installs it.")
        });
        Self { child, port }
    }

    pub fn python() -> Self {
        let python = std::env::var_os("SWITCHBOARD_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| root().join(".cache/venv/bin/python"));
        let mut command = Command::new(python);
        command.arg(root().join("tests/peers/python_server.py"));
        Self::start(command, "Python websockets")
    }

    pub fn node() -> Self {
        let modules = root().join("tests/peers/node_modules/ws");
        assert!(modules.exists(), "Node's ws is not installed in tests/peers: run scripts/test (npm ci there)");
        let mut command = Command::new("node");
        command.arg(root().join("tests/peers/node_server.mjs"));
        Self::start(command, "Node ws")
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
