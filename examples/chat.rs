//! `/chat?room=NAME`: every message goes to everyone else in the room (default room `lobby`); joins
//! and leaves are announced as JSON (`{"type":"join","id":..,"room":..,"peers":n}`,
//! `{"type":"leave",..}`), and a newcomer is greeted with
//! `{"type":"welcome","id":..,"room":..,"peers":n,"position":"EPOCH:OFFSET"|null,"recovered":..}`.
//!
//! With history on (`switchboard serve` keeps 100 publications per room), a client that comes back
//! with `&since=EPOCH:OFFSET` (the position of its last welcome) first receives what it missed, then
//! its welcome, which says `"recovered": true`, or `false` when that could not be done completely
//! (too much missed, or the history was lost): then it should consider its view incomplete.
//!
//! Rooms are topics, so with a broker (`switchboard serve --broker redis://...`) a room spans every
//! node; the peer counts are this node's.
//!
//! Run: `cargo run -p switchboard --example chat`, then connect two clients to
//! `ws://127.0.0.1:3333/chat?room=demo`. `switchboard serve` mounts these same hooks.

use serde_json::json;
use switchboard::pubsub::Position;
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
            let since = match peer.request().query_param("since").map(|since| since.parse::<Position>()).transpose() {
                Ok(since) => since,
                Err(invalid) => {
                    // The client's mistake, not ours: 1008 with what was wrong, not 1011.
                    peer.close(1008, &format!("since: {invalid}"))?;
                    return Ok(());
                }
            };
            let (position, recovered) = match since {
                Some(since) => {
                    let recovery = peer.subscribe_since(&topic(&room), &since).await;
                    (Some(recovery.position), Some(recovery.recovered))
                }
                None => {
                    peer.subscribe(&topic(&room));
                    (peer.hub().position(&topic(&room)).await, None)
                }
            };
            let count = peer.hub().subscribers(&topic(&room)).len();
            let position = position.map(|p| p.to_string());
            peer.send_json(&json!({
                "type": "welcome", "id": peer.id(), "room": room, "peers": count,
                "position": position, "recovered": recovered,
            }))?;
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
