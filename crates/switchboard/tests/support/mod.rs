//! A minimal WebSocket test client on `switchboard-wire` (client role), over plain TCP or TLS.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use switchboard_wire::handshake::{self, ClientRequest};
use switchboard_wire::{CloseFrame, Config, Connection, Event, MessageKind, Role};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub const TIMEOUT: Duration = Duration::from_secs(5);

pub struct TestClient {
    io: Pin<Box<dyn Io>>,
    conn: Connection,
    buf: BytesMut,
    pub response: handshake::ServerResponse,
}

/// The handshake was answered with something other than 101.
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl TestClient {
    pub async fn connect(addr: SocketAddr, path: &str) -> Self {
        Self::connect_with(addr, path, &[], &[]).await.expect("handshake accepted")
    }

    pub async fn connect_with(
        addr: SocketAddr,
        path: &str,
        protocols: &[&str],
        headers: &[(&str, &str)],
    ) -> Result<Self, Refused> {
        let stream = TcpStream::connect(addr).await.expect("connect");
        Self::handshake(Box::pin(stream), &addr.to_string(), path, protocols, headers).await
    }

    pub async fn handshake(
        mut io: Pin<Box<dyn Io>>,
        host: &str,
        path: &str,
        protocols: &[&str],
        headers: &[(&str, &str)],
    ) -> Result<Self, Refused> {
        let request = ClientRequest {
            host: host.to_string(),
            path: path.to_string(),
            protocols: protocols.iter().map(|p| p.to_string()).collect(),
            deflate: None,
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        let key = handshake::generate_key(rand::random());
        io.write_all(&request.encode(&key)).await.expect("send request");
        let mut buf = BytesMut::new();
        loop {
            let n =
                tokio::time::timeout(TIMEOUT, io.read_buf(&mut buf)).await.expect("response in time").expect("read");
            match handshake::parse_response(&buf, &key, &request) {
                Ok(Some((response, used))) => {
                    buf.advance(used);
                    let conn = Connection::new(Role::Client, Config::default(), rand::random());
                    return Ok(Self { io, conn, buf, response });
                }
                Ok(None) => assert!(n > 0, "connection closed during the handshake"),
                Err(handshake::ResponseError::Status { status, headers }) => {
                    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n").map_or(0, |p| p + 4);
                    let len: usize = headers
                        .iter()
                        .find(|(k, _)| k == "content-length")
                        .and_then(|(_, v)| v.parse().ok())
                        .unwrap_or(0);
                    while buf.len() < head_end + len {
                        if io.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                            break;
                        }
                    }
                    let body = String::from_utf8_lossy(&buf[head_end..(head_end + len).min(buf.len())]).into_owned();
                    return Err(Refused { status, headers, body });
                }
                Err(e) => panic!("bad handshake response: {e}"),
            }
        }
    }

    pub async fn send_text(&mut self, text: &str) {
        let mut out = BytesMut::new();
        self.conn.encode_message(MessageKind::Text, text.as_bytes(), &mut out);
        self.io.write_all(&out).await.expect("write");
    }

    pub async fn send_binary(&mut self, data: &[u8]) {
        let mut out = BytesMut::new();
        self.conn.encode_message(MessageKind::Binary, data, &mut out);
        self.io.write_all(&out).await.expect("write");
    }

    /// Writes raw bytes (a partial frame, say).
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.expect("write");
    }

    pub async fn close(&mut self, code: u16, reason: &str) {
        let mut out = BytesMut::new();
        self.conn.encode_close(Some(&CloseFrame::new(code, reason)), &mut out);
        self.io.write_all(&out).await.expect("write");
    }

    /// The next event, answering nothing automatically. `None` at EOF.
    pub async fn next_event(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.conn.receive(&mut self.buf).expect("valid frames from the server") {
                return Some(event);
            }
            match tokio::time::timeout(TIMEOUT, self.io.read_buf(&mut self.buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                Ok(_) => return None,
                Err(_) => panic!("nothing from the server within {TIMEOUT:?}"),
            }
        }
    }

    /// The next text message (pings and pongs skipped).
    pub async fn recv_text(&mut self) -> String {
        loop {
            match self.next_event().await {
                Some(Event::Message(MessageKind::Text, data)) => {
                    return String::from_utf8(data.to_vec()).expect("utf8")
                }
                Some(Event::Ping(_) | Event::Pong(_)) => {}
                other => panic!("expected a text message, got {other:?}"),
            }
        }
    }

    /// The next close frame (messages, pings skipped); `None` if the connection dropped instead.
    pub async fn recv_close(&mut self) -> Option<CloseFrame> {
        loop {
            match self.next_event().await {
                Some(Event::Close(frame)) => return frame.or(Some(CloseFrame::new(1005, ""))),
                Some(_) => {}
                None => return None,
            }
        }
    }

    /// Whether the server closes the transport (EOF) within the timeout.
    pub async fn expect_eof(&mut self) {
        let mut sink = [0u8; 256];
        loop {
            match tokio::time::timeout(TIMEOUT, self.io.read(&mut sink)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                Ok(Ok(_)) => {}
                Err(_) => panic!("the server did not close the connection"),
            }
        }
    }
}
