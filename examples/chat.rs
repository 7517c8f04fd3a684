//! `/chat?room=NAME`: every message goes to everyone else in the room (default room `lobby`); joins
//! and leaves are announced as JSON (`{"type":"join","id":..,"room":..,"peers":n}`,
//! `{"type":"leave",..}`), and a newcomer is greeted with `{"type":"welcome","id":..,"room":..,"peers":n}`.
//!
//! Rooms are topics, so with a broker (`switchboard serve --broker redis://...`) a room spans every
//! node; the peer counts are this node's.
//!
//! Run: `cargo run -p switchboard --example chat`, then connect two clients to
//! `ws://127.0.0.1:3333/chat?room=demo`. `switchboard serve` mounts these same hooks.

use serde_json::json;
use switchboard::{define_hooks, CloseEvent, HookSet, Message, Peer, Switchboard};

fn room(peer: &Peer) -> String {
    peer.request().query_param("room").filter(|r| !r.is_empty()).unwrap_or_else(|| "lobby".to_owned())
}

fn topic(room: &str) -> String {
    format!("chat:{room}")
}

/// The chat hooks.
pub fn hooks() -> HookSet {
    define_hooks()
        .open(|peer: Peer| async move {
            let room = room(&peer);
            peer.subscribe(&topic(&room));
            let count = peer.hub().subscribers(&topic(&room)).len();
            peer.send_json(&json!({"type": "welcome", "id": peer.id(), "room": room, "peers": count}))?;
            peer.publish(
                &topic(&room),
                Message::from_json(&json!({"type": "join", "id": peer.id(), "room": room, "peers": count}))?,
            );
            Ok::<_, switchboard::BoxError>(())
        })
        .message(|peer: Peer, message: Message| async move {
            peer.publish(&topic(&room(&peer)), message);
        })
        .close(|peer: Peer, _close: CloseEvent| async move {
            let room = room(&peer);
            let count = peer.hub().subscribers(&topic(&room)).len();
            let leave = json!({"type": "leave", "id": peer.id(), "room": room, "peers": count});
            peer.hub().publish(&topic(&room), Message::from_json(&leave)?);
            Ok::<_, switchboard::BoxError>(())
        })
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    println!("chat on ws://127.0.0.1:3333/chat?room=lobby");
    Switchboard::new().ws("/chat", hooks()).listen("127.0.0.1:3333").await
}
