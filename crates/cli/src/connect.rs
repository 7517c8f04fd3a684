//! `switchboard connect URL`: an interactive and scriptable client (what websocat is to
//! tokio-tungstenite), built on the library's `Session`.
//!
//! stdin lines are sent as messages; received messages go to stdout, one per line (binary ones as
//! `[binary] <base64>`); state changes and the close code go to stderr. When stdin ends, the command
//! keeps printing what arrives until the server has been quiet for the linger period (`--linger`,
//! 1 s), so replies to the last lines are not lost, then closes with 1000 and exits 0 once the server
//! answered; a server close with an error code exits 2, a connection that could not be opened exits 1.

use std::io::Write;
use std::time::Duration;

use base64::Engine;
use futures_util::StreamExt;
use switchboard::client::{ClientTls, ReconnectPolicy, State};
use switchboard::Message;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Options of `switchboard connect`.
#[derive(clap::Args)]
pub struct ConnectArgs {
    /// ws:// or wss:// URL.
    url: String,
    /// Subprotocol to offer (repeatable).
    #[arg(long = "protocol", value_name = "NAME")]
    protocols: Vec<String>,
    /// Extra request header, `Name: value` (repeatable).
    #[arg(long = "header", value_name = "K:V")]
    headers: Vec<String>,
    /// Send stdin lines as binary messages instead of text.
    #[arg(long)]
    binary: bool,
    /// Accept any TLS certificate (self-signed test servers only).
    #[arg(long)]
    insecure: bool,
    /// Trust the certificates in this PEM file as well as the web PKI roots.
    #[arg(long, value_name = "PEM")]
    ca: Option<std::path::PathBuf>,
    /// Reconnect with backoff when the connection drops.
    #[arg(long)]
    reconnect: bool,
    /// Do not offer permessage-deflate.
    #[arg(long)]
    no_compression: bool,
    /// After the end of input, close once the server has sent nothing for this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
    linger: f64,
}

/// Exit codes.
pub const EXIT_CONNECT_FAILED: u8 = 1;
pub const EXIT_ERROR_CLOSE: u8 = 2;

pub async fn run(args: ConnectArgs) -> Result<u8, Box<dyn std::error::Error>> {
    let mut socket =
        switchboard::websocket(&args.url)?.protocols(args.protocols.clone()).compression(!args.no_compression);
    for header in &args.headers {
        let (name, value) =
            header.split_once(':').ok_or_else(|| format!("--header {header:?}: expected `Name: value`"))?;
        socket = socket.header(name.trim(), value.trim())?;
    }
    if args.insecure {
        socket = socket.tls(ClientTls::insecure());
    } else if let Some(ca) = &args.ca {
        let pem = std::fs::read(ca).map_err(|e| format!("cannot read {}: {e}", ca.display()))?;
        socket = socket.tls(ClientTls::with_extra_roots_pem(&pem)?);
    }
    if args.reconnect {
        socket = socket.reconnect(ReconnectPolicy::default());
    }
    let session = socket.connect();
    let mut messages = session.messages();
    let mut states = Box::pin(session.state());
    let mut errors = Box::pin(session.errors());
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    let mut ever_opened = false;
    let linger = Duration::try_from_secs_f64(args.linger).map_err(|e| format!("--linger {}: {e}", args.linger))?;
    // Armed at the end of input, pushed back by every message received; the session closes when it fires.
    let quiet_until = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(quiet_until);
    let mut lingering = false;
    let stdout = std::io::stdout();
    loop {
        tokio::select! {
            line = lines.next_line(), if stdin_open => match line {
                Ok(Some(line)) => {
                    let message = if args.binary { Message::from_binary(line.into_bytes()) } else { Message::from_text(line) };
                    if let Err(error) = session.send(message).await {
                        eprintln!("switchboard: {error}");
                        stdin_open = false;
                    }
                }
                Ok(None) | Err(_) => {
                    stdin_open = false;
                    lingering = true;
                    quiet_until.as_mut().reset(tokio::time::Instant::now() + linger);
                }
            },
            () = &mut quiet_until, if lingering => {
                lingering = false;
                let closer = session.clone();
                tokio::spawn(async move { closer.close(1000, "").await });
            }
            Some(message) = messages.next() => {
                if lingering {
                    quiet_until.as_mut().reset(tokio::time::Instant::now() + linger);
                }
                if print_message(&stdout, &message).is_err() {
                    // stdout is gone (a closed pipe): nobody reads any more.
                    let _ = session.close(1000, "").await;
                    return Ok(0);
                }
            }
            Some(error) = errors.next() => eprintln!("switchboard: {error}"),
            Some(state) = states.next() => match state {
                State::Connecting { attempt } => eprintln!("connecting to {} (attempt {})", args.url, attempt + 1),
                State::Open => {
                    ever_opened = true;
                    eprintln!("open");
                }
                State::Closing => eprintln!("closing"),
                State::Reconnecting { delay, .. } => eprintln!("reconnecting in {:.1}s", delay.as_secs_f64()),
                State::Closed(close) => {
                    // Print what arrived before the close.
                    while let Ok(Some(message)) = tokio::time::timeout(Duration::from_millis(10), messages.next()).await {
                        let _ = print_message(&stdout, &message);
                    }
                    eprintln!("closed: {} {}", close.code, close.reason);
                    return Ok(if !ever_opened {
                        EXIT_CONNECT_FAILED
                    } else if matches!(close.code, 1000 | 1001 | 1005) {
                        0
                    } else {
                        EXIT_ERROR_CLOSE
                    });
                }
            },
        }
    }
}

/// One line per message: text as it is, binary as `[binary] <base64>`.
fn print_message(stdout: &std::io::Stdout, message: &Message) -> std::io::Result<()> {
    let mut out = stdout.lock();
    if message.is_text() {
        writeln!(out, "{}", message.text().unwrap_or_default())?;
    } else {
        writeln!(out, "[binary] {}", base64::engine::general_purpose::STANDARD.encode(message.bytes()))?;
    }
    out.flush()
}
