//! The first example of the Spry WebSocket page, in Rust:
//!
//! ```dart
//! app.ws('/chat', defineHooks(
//!     message: (peer, message) {
//!         final text = message.text();
//!         print('[WS] message: ${text}');
//!         if (text == 'ping') {
//!             peer.send(Message.text('pong'));
//!         }
//!     }
//! ));
//! ```
//!
//! Run: `cargo run -p switchboard --example spry_ping`.

use switchboard::{define_hooks, Message, Peer, Switchboard};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let app = Switchboard::new().ws(
        "/chat",
        define_hooks().message(|peer: Peer, message: Message| async move {
            let text = message.text()?;
            println!("[WS] message: {text}");
            if text == "ping" {
                peer.send(Message::from_text("pong"))?;
            }
            Ok::<_, switchboard::BoxError>(())
        }),
    );
    println!("ws://127.0.0.1:3333/chat");
    app.listen("127.0.0.1:3333").await
}
