//! `/chat`: every message goes to every other peer on the route; joins and leaves are announced as
//! JSON (`{"type":"join","id":..,"peers":n}`, `{"type":"leave",..}`), and a newcomer is greeted with
//! `{"type":"welcome","id":..,"peers":n}`.
//!
//! Run: `cargo run -p switchboard --example chat`, then connect two clients to
//! `ws://127.0.0.1:3333/chat`. `switchboard serve` mounts these same hooks.

use serde_json::json;
use switchboard::{define_hooks, CloseEvent, HookSet, Message, Peer, Switchboard};

/// Sends `message` to every open peer on the route except `sender`.
fn broadcast(sender: &Peer, message: &Message) {
    for other in sender.peers().into_iter().filter(|p| p != sender) {
        // A peer that closed meanwhile, or a slow one being dropped, is not the sender's problem.
        let _ = other.send(message);
    }
}

/// The chat hooks.
pub fn hooks() -> HookSet {
    define_hooks()
        .open(|peer: Peer| async move {
            let count = peer.peers().len();
            peer.send_json(&json!({"type": "welcome", "id": peer.id(), "peers": count}))?;
            broadcast(&peer, &Message::from_json(&json!({"type": "join", "id": peer.id(), "peers": count}))?);
            Ok::<_, switchboard::BoxError>(())
        })
        .message(|peer: Peer, message: Message| async move { broadcast(&peer, &message) })
        .close(|peer: Peer, _close: CloseEvent| async move {
            let count = peer.peers().iter().filter(|p| **p != peer).count();
            broadcast(&peer, &Message::from_json(&json!({"type": "leave", "id": peer.id(), "peers": count}))?);
            Ok::<_, switchboard::BoxError>(())
        })
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    println!("chat on ws://127.0.0.1:3333/chat");
    Switchboard::new().ws("/chat", hooks()).listen("127.0.0.1:3333").await
}
