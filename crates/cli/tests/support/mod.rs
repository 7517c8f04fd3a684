//! Test support: start the real `switchboard` binary, and speak raw WebSocket bytes to it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use switchboard_wire::{encode_raw_frame, FrameHeader};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub mod postgres;
pub mod sync;

/// A fresh data folder for one test's `serve --data` (its SQLite), named after the test.
pub fn data_dir(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("switchboard-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir.to_str().expect("a UTF-8 temporary path").to_owned()
}

/// A running `switchboard serve`, killed on drop.
pub struct ServeProcess {
    child: Child,
    pub addr: SocketAddr,
    /// What it logged, when started with `start_logged`.
    pub log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl ServeProcess {
    /// Starts `switchboard serve --port 0 <extra args>` and waits for its "listening" line.
    pub fn start(extra: &[&str]) -> Self {
        Self::start_on(0, extra)
    }

    /// Starts `switchboard serve --port <port> <extra args>`.
    pub fn start_on(port: u16, extra: &[&str]) -> Self {
        Self::spawn(port, extra, false)
    }

    /// Like `start`, with the log (at info level, no colours) collected in `log`.
    pub fn start_logged(extra: &[&str]) -> Self {
        Self::spawn(0, extra, true)
    }

    /// Waits until the log contains `text`.
    pub fn wait_for_log(&self, text: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !self.log.lock().unwrap().contains(text) {
            assert!(std::time::Instant::now() < deadline, "no {text:?} in the log:\n{}", self.log.lock().unwrap());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn spawn(port: u16, extra: &[&str], logged: bool) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["serve", "--port", &port.to_string()])
            .args(extra)
            .env("RUST_LOG", if logged { "info" } else { "warn" })
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(if logged { Stdio::piped() } else { Stdio::inherit() })
            .spawn()
            .expect("start switchboard serve");
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        if let Some(stderr) = child.stderr.take() {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read the listening line");
        let addr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("http://").or_else(|| w.strip_prefix("https://")))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        Self { child, addr, log }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let status = self.child.wait().expect("wait");
        std::mem::forget(self);
        status
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A received frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub rsv: u8,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The close code of a close frame (1005 if empty).
    pub fn close_code(&self) -> u16 {
        assert_eq!(self.opcode, 8, "not a close frame: {self:?}");
        if self.payload.len() >= 2 {
            u16::from_be_bytes([self.payload[0], self.payload[1]])
        } else {
            1005
        }
    }
}

/// A raw WebSocket client: sends exactly the bytes a test asks for.
pub struct RawClient {
    pub stream: TcpStream,
    buf: BytesMut,
    pub response_head: String,
}

pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const MASK: [u8; 4] = [0x12, 0x34, 0x56, 0x78];
pub const TIMEOUT: Duration = Duration::from_secs(5);

impl RawClient {
    /// Opens a connection and performs the handshake with extra header lines (e.g.
    /// "Sec-WebSocket-Extensions: permessage-deflate"). Panics unless the server answers 101.
    pub async fn connect(addr: SocketAddr, path: &str, extra_headers: &[&str]) -> Self {
        let (client, status) = Self::handshake(addr, path, extra_headers).await;
        assert_eq!(status, 101, "handshake refused: {}", client.response_head);
        client
    }

    /// Sends a handshake and returns the client with the response status (any status).
    pub async fn handshake(addr: SocketAddr, path: &str, extra_headers: &[&str]) -> (Self, u16) {
        let mut request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
        );
        for header in extra_headers {
            request.push_str(header);
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        Self::raw_request(addr, request.as_bytes()).await
    }

    /// Sends arbitrary request bytes and reads the response head.
    pub async fn raw_request(addr: SocketAddr, request: &[u8]) -> (Self, u16) {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        stream.write_all(request).await.expect("send request");
        let mut buf = BytesMut::new();
        let head_end = loop {
            if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos + 4;
            }
            let n = tokio::time::timeout(TIMEOUT, stream.read_buf(&mut buf))
                .await
                .expect("response in time")
                .expect("read");
            assert!(n > 0, "connection closed before the response head: {:?}", String::from_utf8_lossy(&buf));
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        buf.advance(head_end);
        let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        (Self { stream, buf, response_head: head }, status)
    }

    /// Sends one plain HTTP request (`headers` as `Name: value`) and returns the status, the
    /// response head and the body.
    pub async fn http(
        addr: SocketAddr,
        method: &str,
        path: &str,
        headers: &[&str],
        body: &str,
    ) -> (u16, String, String) {
        let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        for header in headers {
            request.push_str(header);
            request.push_str("\r\n");
        }
        request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        let (mut client, status) = Self::raw_request(addr, request.as_bytes()).await;
        let body = client.read_body().await;
        (status, client.response_head, body)
    }

    /// Reads the body of a non-101 response with Content-Length.
    pub async fn read_body(&mut self) -> String {
        let length: usize = self
            .response_head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
            .unwrap_or(0);
        while self.buf.len() < length {
            let n = tokio::time::timeout(TIMEOUT, self.stream.read_buf(&mut self.buf))
                .await
                .expect("body in time")
                .expect("read");
            if n == 0 {
                break;
            }
        }
        String::from_utf8_lossy(&self.buf[..length.min(self.buf.len())]).into_owned()
    }

    /// Encodes one masked frame with the raw first-byte fields.
    pub fn encode(fin: bool, rsv: u8, opcode: u8, payload: &[u8]) -> Vec<u8> {
        encode_raw_frame((u8::from(fin) << 7) | (rsv << 4) | opcode, Some(MASK), payload)
    }

    /// Sends one frame.
    pub async fn send(&mut self, fin: bool, rsv: u8, opcode: u8, payload: &[u8]) {
        let bytes = Self::encode(fin, rsv, opcode, payload);
        let _ = self.stream.write_all(&bytes).await;
    }

    /// Sends one frame in pieces of `chop` bytes, flushing each.
    pub async fn send_chopped(&mut self, fin: bool, rsv: u8, opcode: u8, payload: &[u8], chop: usize) {
        let bytes = Self::encode(fin, rsv, opcode, payload);
        for piece in bytes.chunks(chop) {
            if self.stream.write_all(piece).await.is_err() {
                return;
            }
            self.stream.flush().await.ok();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Sends raw bytes.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
    }

    /// Reads the next frame; `None` at EOF (or a reset).
    pub async fn recv(&mut self) -> Option<Frame> {
        loop {
            if let Ok(Some((header, len))) = FrameHeader::parse(&self.buf) {
                let total = len + header.payload_len as usize;
                if self.buf.len() >= total {
                    assert!(header.mask.is_none(), "the server masked a frame");
                    let payload = self.buf[len..total].to_vec();
                    self.buf.advance(total);
                    return Some(Frame { fin: header.fin, rsv: header.rsv, opcode: header.opcode, payload });
                }
            }
            match tokio::time::timeout(TIMEOUT, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                Ok(_) => return None,
                Err(_) => panic!("no frame from the server within {TIMEOUT:?}"),
            }
        }
    }

    /// Reads frames until a close frame; returns its code. Pongs and data before it are skipped.
    pub async fn expect_close(&mut self) -> u16 {
        loop {
            match self.recv().await {
                Some(frame) if frame.opcode == 8 => return frame.close_code(),
                Some(_) => {}
                None => panic!("the server dropped the connection without a close frame"),
            }
        }
    }

    /// After the close exchange the server must close the TCP connection.
    pub async fn expect_eof(&mut self) {
        match self.recv().await {
            None => {}
            Some(frame) => panic!("expected the connection to close, got {frame:?}"),
        }
    }

    /// Sends a (valid) close frame with `code`.
    pub async fn close(&mut self, code: u16) {
        self.send(true, 0, 8, &code.to_be_bytes()).await;
    }
}
