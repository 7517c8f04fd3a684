//! One collection's subscribers on this node, and its changes delivered to them once each, in
//! version order, with no gap: a change is delivered only after the one before it; a missing one is
//! read from the store's log first.
//!
//! A new subscriber is registered before its snapshot (or replay) is read, and changes that arrive
//! meanwhile are held for it; once its snapshot is sent, the held changes newer than the snapshot
//! follow, then `ready`. So `ready` means live, and nothing falls between the snapshot and the live
//! changes.

use std::sync::{Arc, Mutex};

use super::protocol::ServerMessage;
use super::store::Change;
use crate::{Message, Peer};

/// Most changes held for one subscriber while its snapshot is read; past it, it is closed with 1013.
const MAX_HELD: usize = 100_000;

/// How a subscriber reads changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// `switchboard.sync.v1` `change` messages.
    V1,
    /// fritz2's raw format: the entity's value as it now is, and never the client's own writes.
    Raw {
        /// The client name of the raw connection (its own writes carry it).
        client: String,
    },
}

struct Subscriber {
    peer: Peer,
    id: Option<String>,
    format: Format,
    /// Changes up to this version were sent (in the snapshot or replay) or are not for it.
    from: u64,
    /// Changes that arrived while the snapshot was read, until it is live.
    held: Option<Vec<Arc<Change>>>,
}

/// The collection's subscribers on this node and how far changes were delivered to them.
pub(crate) struct Feed {
    state: Mutex<State>,
}

struct State {
    delivered: u64,
    subscribers: Vec<Subscriber>,
}

/// A change arrived before the ones it follows: read `(delivered, version]` from the log first.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Gap {
    pub(crate) delivered: u64,
}

impl Feed {
    /// A feed whose changes up to `version` are in the store already.
    pub(crate) fn new(version: u64) -> Self {
        Self { state: Mutex::new(State { delivered: version, subscribers: Vec::new() }) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How far changes were delivered.
    pub(crate) fn delivered(&self) -> u64 {
        self.lock().delivered
    }

    /// How many subscribers speak `switchboard.sync.v1`, and how many fritz2's raw format.
    pub(crate) fn subscriber_counts(&self) -> (usize, usize) {
        let state = self.lock();
        let raw = state.subscribers.iter().filter(|s| matches!(s.format, Format::Raw { .. })).count();
        (state.subscribers.len() - raw, raw)
    }

    /// Registers a subscriber that is about to read its snapshot; changes are held for it.
    pub(crate) fn add(&self, peer: Peer, id: Option<String>, format: Format) {
        self.lock().subscribers.push(Subscriber { peer, id, format, from: 0, held: Some(Vec::new()) });
    }

    /// Sends what the subscriber's snapshot or replay left out and makes it live. `sent` is the
    /// version its snapshot or replay reached; `first` the messages to send before the held changes
    /// (the snapshot, the replayed changes). Returns the version it is live from, or `None` when the
    /// peer is no longer registered.
    pub(crate) fn go_live(&self, peer: &Peer, sent: u64, first: Vec<Message>, ready: bool) -> Option<u64> {
        let mut state = self.lock();
        let subscriber = state.subscribers.iter_mut().find(|s| s.peer == *peer)?;
        for message in first {
            let _ = peer.send(message);
        }
        let mut at = sent;
        for change in subscriber.held.take().unwrap_or_default() {
            if change.version > at {
                at = change.version;
                if let Some(message) = message_for(subscriber, &change, &mut None) {
                    let _ = peer.send(message);
                }
            }
        }
        subscriber.from = at;
        if ready {
            let _ = peer.send(text(ServerMessage::Ready { version: at }.to_json()));
        }
        Some(at)
    }

    /// Removes a subscriber; true when none is left.
    pub(crate) fn remove(&self, peer: &Peer) -> bool {
        let mut state = self.lock();
        state.subscribers.retain(|s| s.peer != *peer);
        state.subscribers.is_empty()
    }

    /// Delivers the next change. Older ones are ignored (already delivered); a newer one is a gap.
    pub(crate) fn deliver(&self, change: &Arc<Change>) -> Result<(), Gap> {
        let mut state = self.lock();
        if change.version <= state.delivered {
            return Ok(());
        }
        if change.version != state.delivered + 1 {
            return Err(Gap { delivered: state.delivered });
        }
        state.delivered = change.version;
        let mut v1 = None;
        for subscriber in &mut state.subscribers {
            if let Some(held) = &mut subscriber.held {
                if held.len() >= MAX_HELD {
                    let _ = subscriber.peer.close(1013, "sync: too many changes while the snapshot was read");
                    continue;
                }
                held.push(change.clone());
                continue;
            }
            if change.version <= subscriber.from {
                continue;
            }
            if let Some(message) = message_for(subscriber, change, &mut v1) {
                let _ = subscriber.peer.send(message);
            }
        }
        Ok(())
    }

    /// Tells every subscriber that changes cannot be delivered (the log no longer has them) and
    /// forgets them: they subscribe again.
    pub(crate) fn refetch(&self, reason: &str, version: u64) {
        let mut state = self.lock();
        let message = text(ServerMessage::Refetch { reason: reason.to_owned() }.to_json());
        for subscriber in state.subscribers.drain(..) {
            match subscriber.format {
                Format::V1 => {
                    let _ = subscriber.peer.send(message.clone());
                }
                Format::Raw { .. } => {
                    let _ = subscriber.peer.close(1011, "sync: changes were lost; reconnect");
                }
            }
        }
        state.delivered = version;
    }
}

/// The message a subscriber gets for a change, if any; `v1` caches the one `change` text that every
/// v1 subscriber shares.
fn message_for(subscriber: &Subscriber, change: &Change, v1: &mut Option<Message>) -> Option<Message> {
    if subscriber.id.as_ref().is_some_and(|id| *id != change.id) {
        return None;
    }
    match &subscriber.format {
        Format::V1 => Some(v1.get_or_insert_with(|| text(change.message().to_json())).clone()),
        Format::Raw { client } => {
            let own = change.origin.as_ref().is_some_and(|origin| origin.client == *client);
            // A raw client keeps its own value (a rewrite reaches it with its ack); a deletion has no
            // value in fritz2's format.
            match (&change.data, own) {
                (Some(data), false) => Some(text(data.to_string())),
                _ => None,
            }
        }
    }
}

pub(crate) fn text(text: String) -> Message {
    Message::from_text(text)
}
