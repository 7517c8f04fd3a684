//! The session's background task: connects, runs the link, and reconnects as the policy says.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use switchboard_wire::handshake::{self, ClientRequest, ResponseError};
use switchboard_wire::{CloseFrame, CloseState, Config, Connection, Event, MessageKind, Role};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use super::error::{ConnectError, SessionError};
use super::policy::Decision;
use super::session::{Lifecycle, Outgoing, SessionShared, State};
use super::socket::Socket;
use super::tls::ClientTls;
use crate::error::CloseEvent;
use crate::Message;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An open connection.
struct Link {
    io: Box<dyn Io>,
    conn: Connection,
    read_buf: BytesMut,
}

const READ_CHUNK: usize = 8192;
/// How long a protocol failure waits for the application to answer what it already received.
const SETTLE_LIMIT: Duration = Duration::from_millis(100);

pub(crate) async fn run(socket: Socket, shared: Arc<SessionShared>, mut commands: mpsc::UnboundedReceiver<Outgoing>) {
    let mut attempt: u32 = 0;
    let last = 'session: loop {
        shared.set_state(State::Connecting { attempt });
        let attempt_fut = tokio::time::timeout(socket.connect_timeout, connect(&socket));
        tokio::pin!(attempt_fut);
        let mut close_pending = false;
        let connected = loop {
            tokio::select! {
                biased;
                () = close_requested(&shared), if !close_pending => {
                    // Messages queued before the close still go out once open; with none, stop now.
                    if commands.is_empty() {
                        let reason = shared.requested_close().map(|f| f.reason).unwrap_or_default();
                        let reason = format!("closed while connecting {reason}").trim().to_owned();
                        break 'session CloseEvent { code: 1006, reason, was_clean: false };
                    }
                    close_pending = true;
                }
                result = &mut attempt_fut => break result.unwrap_or_else(|_| {
                    Err(ConnectError::Timeout { url: socket.url.to_string(), after: socket.connect_timeout })
                }),
            }
        };
        let (close, stayed_up) = match connected {
            Ok(link) => {
                shared.set_state(State::Open);
                shared.emit(Lifecycle::Opened);
                let opened = Instant::now();
                let close = run_link(link, &socket, &shared, &mut commands).await;
                (close, opened.elapsed())
            }
            Err(error) => {
                let close = CloseEvent { code: 1006, reason: error.to_string(), was_clean: false };
                shared.emit_error(SessionError::Connect(error));
                (close, Duration::ZERO)
            }
        };
        shared.emit(Lifecycle::Closed(close.clone()));
        let Some(policy) = socket.reconnect.as_ref().filter(|_| shared.requested_close().is_none()) else {
            break close;
        };
        if stayed_up >= policy.stable_after {
            attempt = 0;
        }
        match policy.decide(close.code, attempt, rand::random::<f64>()) {
            Decision::Stop => break close,
            Decision::After(delay) => {
                attempt += 1;
                shared.set_state(State::Reconnecting { attempt, delay });
                tokio::select! {
                    biased;
                    () = close_requested(&shared) => break close,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    };
    shared.finish(last, &mut commands);
}

/// Resolves once the user asked to close (at once if they already did).
async fn close_requested(shared: &SessionShared) {
    if shared.requested_close().is_none() {
        shared.close_signal.notified().await;
    }
}

async fn connect(socket: &Socket) -> Result<Link, ConnectError> {
    let url = &socket.url;
    let io_error = |e: std::io::Error| ConnectError::Io { url: url.to_string(), source: Arc::new(e) };
    let tcp = TcpStream::connect((url.host.as_str(), url.port)).await.map_err(io_error)?;
    tcp.set_nodelay(true).map_err(io_error)?;
    let mut io: Box<dyn Io> = if url.secure {
        let tls = socket.tls.clone().unwrap_or_else(ClientTls::webpki);
        let name = ServerName::try_from(url.host.clone()).map_err(|e| ConnectError::Tls(e.to_string()))?;
        Box::new(TlsConnector::from(tls.config).connect(name, tcp).await.map_err(io_error)?)
    } else {
        Box::new(tcp)
    };
    let request = ClientRequest {
        host: url.host_header(),
        path: url.path.clone(),
        protocols: socket.protocols.clone(),
        deflate: socket.compression,
        headers: socket.headers.clone(),
    };
    let key = handshake::generate_key(rand::random());
    io.write_all(&request.encode(&key)).await.map_err(io_error)?;
    let mut buf = BytesMut::with_capacity(1024);
    let (response, used) = loop {
        let n = io.read_buf(&mut buf).await.map_err(io_error)?;
        match handshake::parse_response(&buf, &key, &request) {
            Ok(Some(parsed)) => break parsed,
            Ok(None) if n == 0 => {
                return Err(io_error(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the server closed the connection during the handshake",
                )))
            }
            Ok(None) => {}
            Err(ResponseError::Status { status, headers }) => return Err(ConnectError::Refused { status, headers }),
            Err(other) => return Err(ConnectError::Handshake(other.to_string())),
        }
    };
    let _ = buf.split_to(used);
    let config = Config {
        max_frame_size: socket.max_message_size,
        max_message_size: socket.max_message_size,
        deflate: response.deflate,
        compression_level: socket.compression.map_or(1, |c| c.level),
        ..Config::default()
    };
    Ok(Link { io, conn: Connection::new(Role::Client, config, rand::random()), read_buf: buf })
}

/// Runs one open connection until it closes; returns how.
async fn run_link(
    mut link: Link,
    socket: &Socket,
    shared: &SessionShared,
    commands: &mut mpsc::UnboundedReceiver<Outgoing>,
) -> CloseEvent {
    let mut write_buf = BytesMut::new();
    let mut sent: Vec<Outgoing> = Vec::new();
    let mut last_frame = Instant::now();
    let mut next_ping = socket.keepalive.map(|(every, _)| last_frame + every);
    let mut close_deadline: Option<Instant> = None;
    // Frames that came in the same read as the handshake response are already buffered.
    if let Some(close) = process_input(&mut link, &mut write_buf, socket, shared, commands).await {
        return close;
    }
    loop {
        let deadline = [next_ping, socket.keepalive.map(|(_, timeout)| last_frame + timeout), close_deadline]
            .into_iter()
            .flatten()
            .min();
        if link.read_buf.capacity() - link.read_buf.len() < READ_CHUNK {
            link.read_buf.reserve(READ_CHUNK);
        }
        tokio::select! {
            biased;
            () = close_requested(shared), if close_deadline.is_none() => {
                let frame = shared.requested_close().unwrap_or_else(|| CloseFrame::new(1000, ""));
                // What was queued before the close goes out first.
                drain(commands, &mut link.conn, &mut write_buf, &mut sent);
                link.conn.encode_close(Some(&frame), &mut write_buf);
                shared.set_state(State::Closing);
                close_deadline = Some(Instant::now() + socket.close_timeout);
                if let Err(error) = link.io.write_all(&write_buf).await {
                    return lost(shared, error);
                }
                write_buf.clear();
                sent.clear();
            }
            item = commands.recv(), if close_deadline.is_none() => {
                let Some(item) = item else { return CloseEvent { code: 1006, reason: "session dropped".into(), was_clean: false } };
                encode(&mut link.conn, &item.message, &mut write_buf);
                sent.push(item);
                drain(commands, &mut link.conn, &mut write_buf, &mut sent);
                if let Err(error) = link.io.write_all(&write_buf).await {
                    return lost(shared, error);
                }
                write_buf.clear();
                // The queue budget these messages held is free again.
                sent.clear();
            }
            read = link.io.read_buf(&mut link.read_buf) => {
                match read {
                    Ok(0) => return eof(&link.conn),
                    Err(error) => return lost(shared, error),
                    Ok(_) => last_frame = Instant::now(),
                }
                if let Some(close) = process_input(&mut link, &mut write_buf, socket, shared, commands).await {
                    return close;
                }
            }
            () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                let now = Instant::now();
                if close_deadline.is_some_and(|d| now >= d) {
                    return CloseEvent { code: 1006, reason: "the server did not answer the close frame".into(), was_clean: false };
                }
                if let Some((_, timeout)) = socket.keepalive.filter(|(_, timeout)| now >= last_frame + *timeout) {
                    shared.emit_error(SessionError::KeepaliveTimeout(timeout));
                    return CloseEvent { code: 1006, reason: "keep-alive timeout".into(), was_clean: false };
                }
                if let Some(at) = next_ping.filter(|at| now >= *at) {
                    link.conn.encode_ping(b"", &mut write_buf);
                    if let Err(error) = link.io.write_all(&write_buf).await {
                        return lost(shared, error);
                    }
                    write_buf.clear();
                    next_ping = socket.keepalive.map(|(every, _)| at.max(now - every) + every);
                }
            }
        }
    }
}

/// Handles every complete frame in the read buffer, then writes the pongs. Returns how the link
/// closed, if it did.
async fn process_input(
    link: &mut Link,
    write_buf: &mut BytesMut,
    socket: &Socket,
    shared: &SessionShared,
    commands: &mut mpsc::UnboundedReceiver<Outgoing>,
) -> Option<CloseEvent> {
    loop {
        match link.conn.receive(&mut link.read_buf) {
            Ok(None) => break,
            Ok(Some(Event::Message(kind, data))) => shared.deliver(Message::from_wire(kind, data)).await,
            Ok(Some(Event::Ping(payload))) => link.conn.encode_pong(&payload, write_buf),
            Ok(Some(Event::Pong(_))) => {}
            Ok(Some(Event::Close(frame))) => {
                return Some(closed_by_server(link, frame, write_buf, socket, shared).await)
            }
            Err(error) => {
                // The messages delivered before the violation may have replies on their way from the
                // application (an echo, an ack): let it act on them, and send what it queued first.
                shared.settle(SETTLE_LIMIT).await;
                let mut sent = Vec::new();
                drain(commands, &mut link.conn, write_buf, &mut sent);
                link.conn.fail(&error, write_buf);
                let _ = tokio::time::timeout(socket.close_timeout, link.io.write_all(write_buf)).await;
                let close = CloseEvent { code: error.close_code().0, reason: error.to_string(), was_clean: false };
                shared.emit_error(SessionError::Protocol(error));
                return Some(close);
            }
        }
    }
    if !write_buf.is_empty() {
        if let Err(error) = link.io.write_all(write_buf).await {
            return Some(lost(shared, error));
        }
        write_buf.clear();
    }
    None
}

fn encode(conn: &mut Connection, message: &Message, out: &mut BytesMut) {
    let kind = if message.is_text() { MessageKind::Text } else { MessageKind::Binary };
    conn.encode_message(kind, message.bytes(), out);
}

/// Encodes what else is queued, up to a batch of 64 KiB.
fn drain(
    commands: &mut mpsc::UnboundedReceiver<Outgoing>,
    conn: &mut Connection,
    out: &mut BytesMut,
    sent: &mut Vec<Outgoing>,
) {
    while out.len() < 64 * 1024 {
        let Ok(item) = commands.try_recv() else { break };
        encode(conn, &item.message, out);
        sent.push(item);
    }
}

/// The server sent its close frame: answer it if it started the handshake, then wait for it to close
/// the TCP connection (RFC 6455: the server closes first).
async fn closed_by_server(
    link: &mut Link,
    frame: Option<CloseFrame>,
    write_buf: &mut BytesMut,
    socket: &Socket,
    shared: &SessionShared,
) -> CloseEvent {
    let (code, reason) = frame.as_ref().map_or((1005, String::new()), |f| (f.code.0, f.reason.clone()));
    if link.conn.close_state() == CloseState::CloseReceived {
        shared.set_state(State::Closing);
        link.conn.encode_close(frame.as_ref(), write_buf);
        if link.io.write_all(write_buf).await.is_err() {
            return CloseEvent { code, reason, was_clean: false };
        }
    }
    let mut sink = [0u8; 512];
    let _ = tokio::time::timeout(socket.close_timeout, async {
        while matches!(link.io.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
    let _ = link.io.shutdown().await;
    CloseEvent { code, reason, was_clean: true }
}

fn eof(conn: &Connection) -> CloseEvent {
    let reason =
        if conn.close_state() == CloseState::Open { "the connection dropped without a close frame" } else { "" };
    CloseEvent { code: 1006, reason: reason.into(), was_clean: false }
}

fn lost(shared: &SessionShared, error: std::io::Error) -> CloseEvent {
    let close = CloseEvent { code: 1006, reason: error.to_string(), was_clean: false };
    shared.emit_error(SessionError::Io(Arc::new(error)));
    close
}
