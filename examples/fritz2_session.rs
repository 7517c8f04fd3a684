//! The fritz2 seed example in Rust: connect, print every message from the server, send "Hello",
//! close with a reason.
//!
//! ```kotlin
//! val session: Session = websocket("ws://myserver:3333").connect()
//! session.messages.body handledBy { window.alert("Server said: $it") }
//! session.send("Hello")
//! session.close(reason = "finished")
//! ```
//!
//! Run `switchboard serve` first, then `cargo run -p switchboard --example fritz2_session`
//! (or pass another URL as the first argument).

use futures_util::StreamExt;
use switchboard::websocket;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args().nth(1).unwrap_or_else(|| "ws://127.0.0.1:3333/echo".to_owned());
    let socket = websocket(&url)?;
    let session = socket.connect();

    // Receiving messages from the server (the seed's `messages.body`).
    let mut body = session.messages().texts();
    let printer = tokio::spawn(async move {
        while let Some(text) = body.next().await {
            println!("Server said: {text}");
        }
    });

    // Sending messages to the server: queued until the connection is open.
    session.send("Hello").await?;

    // Wait for the echo, then close with a reason (the code defaults to 1000).
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let close = session.close(None, "finished").await?;
    println!("closed: {} {}", close.code, close.reason);

    // After the close, sending fails (the seed's SendException).
    if let Err(error) = session.send("too late").await {
        println!("send after close: {error}");
    }
    printer.abort();
    Ok(())
}
