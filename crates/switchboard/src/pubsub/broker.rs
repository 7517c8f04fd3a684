//! The `Broker` trait: how publications travel between nodes. The in-memory broker (one node) is the
//! default; `RedisBroker` connects several.

use std::sync::{Arc, Weak};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::future::BoxFuture;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::history::{HistoryConfig, HistorySlice, Position};
use crate::server::AppShared;
use crate::{BoxError, Message, MessageKind};

/// Carries publications between the nodes of a cluster.
///
/// Every method returns at once: a broker does its network work in its own tasks, so a publisher is
/// never slowed by it. A node only asks for the topics it has local subscribers for.
pub trait Broker: Send + Sync + 'static {
    /// Starts the broker; publications from other nodes are handed to `inbox`.
    fn start(&self, inbox: Inbox);
    /// Forwards a local publication to the other nodes.
    fn publish(&self, topic: &str, message: &Message);
    /// This node now has subscribers for `topic`.
    fn subscribe(&self, topic: &str);
    /// This node no longer has subscribers for `topic`.
    fn unsubscribe(&self, topic: &str);

    /// Whether the broker keeps topic history itself, shared by every node. When it does (and
    /// `PubSubConfig::history` is set), positions are assigned by the broker, publications go through
    /// [`Broker::publish_recorded`], and `subscribe_since` reads [`Broker::history`]. Brokers that
    /// return `true` implement those three methods; the defaults serve brokers without history.
    fn keeps_history(&self) -> bool {
        false
    }

    /// Records a publication in the topic's history and forwards it. Every node with subscribers,
    /// this one included, gets it back through [`Inbox::deliver_publication`] with its position: that
    /// is how local subscribers receive it, so every node sees one order. If it cannot be recorded,
    /// the broker delivers it locally without a position (local delivery goes on). The receiver gets
    /// the position once recorded.
    fn publish_recorded(
        &self,
        topic: &str,
        message: &Message,
        except: Option<Uuid>,
        history: &HistoryConfig,
    ) -> oneshot::Receiver<Position> {
        let _ = (except, history);
        self.publish(topic, message);
        oneshot::channel().1
    }

    /// Resolves once publications to `topic` reach this node (after [`Broker::subscribe`]): `false`
    /// if the broker cannot tell (disconnected).
    fn ready(&self, topic: &str) -> BoxFuture<'static, bool> {
        let _ = topic;
        Box::pin(async { true })
    }

    /// Reads the history of `topic` after offset `after` (creating its epoch if it has none yet).
    fn history(
        &self,
        topic: &str,
        after: u64,
        history: &HistoryConfig,
    ) -> BoxFuture<'static, Result<HistorySlice, BoxError>> {
        let _ = (topic, after, history);
        Box::pin(async { Err("this broker keeps no history".into()) })
    }
}

/// Where a broker delivers publications that arrive from other nodes.
#[derive(Clone)]
pub struct Inbox {
    pub(crate) app: Weak<AppShared>,
}

impl Inbox {
    /// Delivers a publication from another node to this node's subscribers of `topic`.
    pub fn deliver(&self, topic: &str, message: Message) {
        self.deliver_publication(topic, message, None, None);
    }

    /// Delivers a publication to this node's subscribers of `topic` but `except` (the publishing
    /// peer), with its history position if it was recorded.
    pub fn deliver_publication(&self, topic: &str, message: Message, position: Option<Position>, except: Option<Uuid>) {
        if let Some(app) = self.app.upgrade() {
            app.topics.deliver_from_broker(topic, message, position, except);
        }
    }
}

/// One node, no network: local delivery is all there is.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemoryBroker;

impl Broker for MemoryBroker {
    fn start(&self, _inbox: Inbox) {}
    fn publish(&self, _topic: &str, _message: &Message) {}
    fn subscribe(&self, _topic: &str) {}
    fn unsubscribe(&self, _topic: &str) {}
}

/// The envelope between nodes: version, kind, origin node, payload. Binary payloads pass unchanged.
pub(crate) fn encode_envelope(node: Uuid, message: &Message) -> Bytes {
    let mut out = BytesMut::with_capacity(18 + message.len());
    out.put_u8(1);
    out.put_u8(u8::from(message.is_binary()));
    out.put_slice(node.as_bytes());
    out.put_slice(message.bytes());
    out.freeze()
}

/// The head of a recorded publication's envelope: version 2, kind, origin node, excepted peer (nil for
/// none). The broker appends `epoch:offset:` and the payload once the position is assigned.
pub(crate) fn recorded_envelope_head(node: Uuid, message: &Message, except: Option<Uuid>) -> Bytes {
    let mut out = BytesMut::with_capacity(34);
    out.put_u8(2);
    out.put_u8(u8::from(message.is_binary()));
    out.put_slice(node.as_bytes());
    out.put_slice(except.unwrap_or(Uuid::nil()).as_bytes());
    out.freeze()
}

/// A publication as it arrives from the broker.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Envelope {
    pub(crate) origin: Uuid,
    pub(crate) except: Option<Uuid>,
    pub(crate) position: Option<Position>,
    pub(crate) message: Message,
}

/// Decodes an envelope (version 1: plain, version 2: recorded); `None` if it is not one of ours.
pub(crate) fn decode_envelope(bytes: Bytes) -> Option<Envelope> {
    let version = *bytes.first()?;
    let kind = match bytes.get(1)? {
        0 => MessageKind::Text,
        _ => MessageKind::Binary,
    };
    let origin = Uuid::from_slice(bytes.get(2..18)?).ok()?;
    match version {
        1 => Some(Envelope {
            origin,
            except: None,
            position: None,
            message: Message::new(kind, bytes.slice(18..)).ok()?,
        }),
        2 => {
            let except = Some(Uuid::from_slice(bytes.get(18..34)?).ok()?).filter(|id| !id.is_nil());
            let rest = bytes.get(34..)?;
            let epoch_end = rest.iter().position(|&b| b == b':')?;
            let offset_end = epoch_end + 1 + rest[epoch_end + 1..].iter().position(|&b| b == b':')?;
            let epoch = std::str::from_utf8(&rest[..epoch_end]).ok()?.to_owned();
            let offset = std::str::from_utf8(&rest[epoch_end + 1..offset_end]).ok()?.parse().ok()?;
            let message = Message::new(kind, bytes.slice(34 + offset_end + 1..)).ok()?;
            Some(Envelope { origin, except, position: Some(Position { epoch, offset }), message })
        }
        _ => None,
    }
}

/// The broker a server uses, shared by its routes.
pub(crate) type SharedBroker = Arc<dyn Broker>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_and_reject_garbage() {
        let node = Uuid::new_v4();
        for message in [Message::from_text("héllo"), Message::from_binary(vec![0u8, 255, 1])] {
            let decoded = decode_envelope(encode_envelope(node, &message)).expect("decodes");
            assert_eq!(decoded, Envelope { origin: node, except: None, position: None, message: message.clone() });
            // What the Redis script publishes for a recorded publication.
            let peer = Uuid::new_v4();
            let mut recorded = recorded_envelope_head(node, &message, Some(peer)).to_vec();
            recorded.extend_from_slice(b"0af3:42:");
            recorded.extend_from_slice(message.bytes());
            let decoded = decode_envelope(Bytes::from(recorded)).expect("decodes");
            let position = Some(Position { epoch: "0af3".into(), offset: 42 });
            assert_eq!(decoded, Envelope { origin: node, except: Some(peer), position, message });
        }
        let mut no_offset = recorded_envelope_head(node, &Message::from_text("x"), None).to_vec();
        no_offset.extend_from_slice(b"0af3:x");
        assert!(decode_envelope(Bytes::from(no_offset)).is_none());
        assert!(decode_envelope(Bytes::from_static(b"short")).is_none());
        let mut bad_text = encode_envelope(node, &Message::from_text("x")).to_vec();
        bad_text.push(0xFF);
        assert!(decode_envelope(Bytes::from(bad_text)).is_none());
    }
}
