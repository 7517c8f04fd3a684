//! `/echo`: every message goes back to its sender, text as text and binary as binary.
//!
//! Run: `cargo run -p switchboard --example echo`, then `ws://127.0.0.1:3333/echo`.
//! `switchboard serve` mounts these same hooks.

use switchboard::{define_hooks, HookSet, Message, Peer, Switchboard};

/// The echo hooks. The handler never awaits, so it is the synchronous form: no future per message.
pub fn hooks() -> HookSet {
    define_hooks().message_sync(|peer: Peer, message: Message| peer.send(message))
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    println!("echo on ws://127.0.0.1:3333/echo");
    Switchboard::new().ws("/echo", hooks()).listen("127.0.0.1:3333").await
}
