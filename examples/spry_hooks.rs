//! The second example of the Spry WebSocket page: every hook, with logging.
//!
//! Run: `cargo run -p switchboard --example spry_hooks`.

use switchboard::{define_hooks, CloseEvent, Error, Message, Peer, Switchboard, UpgradeRequest};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let hooks = define_hooks()
        .upgrade(|request: UpgradeRequest| async move {
            println!("[WS] upgrading {}", request.uri());
        })
        .open(|peer: Peer| async move {
            let address = peer.remote_addr().map(|a| a.to_string()).unwrap_or_default();
            println!("[WS] open: {address}");
        })
        .message(|peer: Peer, message: Message| async move {
            let text = message.text()?;
            println!("[WS] message: {text}");
            if text == "ping" {
                peer.send(Message::from_text("pong"))?;
            }
            Ok::<_, switchboard::BoxError>(())
        })
        .close(|_peer: Peer, close: CloseEvent| async move {
            println!("[WS] close({}) - {}", close.code, close.reason);
        })
        .error(|_peer: Peer, error: Error| async move {
            println!("[WS] error: {error}");
        });
    println!("ws://127.0.0.1:3333/chat");
    Switchboard::new().ws("/chat", hooks).listen("127.0.0.1:3333").await
}
