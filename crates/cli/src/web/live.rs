//! `/api/live`: the dashboard's WebSocket. Every second it pushes the overview (`/api/overview`)
//! to each admin connected, until they go.

use std::sync::Arc;
use std::time::Duration;

use switchboard::{define_hooks, HookSet, Peer, ReadyState, UpgradeRequest};

use super::Web;

/// How often the overview is pushed.
const EVERY: Duration = Duration::from_secs(1);

/// The hooks of `/api/live`.
pub fn hooks(web: Arc<Web>) -> HookSet {
    let admin = web.admin.clone();
    define_hooks()
        .upgrade(move |request: UpgradeRequest| {
            let refused = admin.refuses_action(request.headers(), false);
            async move {
                match refused {
                    None => Ok(()),
                    Some(refused) => Err(refused),
                }
            }
        })
        .open(move |peer: Peer| {
            tokio::spawn(push(web.clone(), peer));
            async {}
        })
}

async fn push(web: Arc<Web>, peer: Peer) {
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tick.tick().await;
        if peer.ready_state() != ReadyState::Open {
            break;
        }
        // A dashboard that reads slower than once a second does not get a backlog of them.
        if peer.buffered_amount() > 0 {
            continue;
        }
        if peer.send_text(super::api::overview(&web).to_string()).is_err() {
            break;
        }
    }
}
