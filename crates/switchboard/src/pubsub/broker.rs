//! The `Broker` trait: how publications travel between nodes. The in-memory broker (one node) is the
//! default; `RedisBroker` connects several.

use std::sync::{Arc, Weak};

use bytes::{BufMut, Bytes, BytesMut};
use uuid::Uuid;

use crate::server::AppShared;
use crate::{Message, MessageKind};

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
}

/// Where a broker delivers publications that arrive from other nodes.
#[derive(Clone)]
pub struct Inbox {
    pub(crate) app: Weak<AppShared>,
}

impl Inbox {
    /// Delivers a publication from another node to this node's subscribers of `topic`.
    pub fn deliver(&self, topic: &str, message: Message) {
        if let Some(app) = self.app.upgrade() {
            app.topics.deliver_remote(topic, message);
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

/// Decodes an envelope into its origin node and message; `None` if it is not one of ours.
pub(crate) fn decode_envelope(bytes: Bytes) -> Option<(Uuid, Message)> {
    if bytes.len() < 18 || bytes[0] != 1 {
        return None;
    }
    let node = Uuid::from_slice(&bytes[2..18]).ok()?;
    let kind = if bytes[1] == 0 { MessageKind::Text } else { MessageKind::Binary };
    let message = Message::new(kind, bytes.slice(18..)).ok()?;
    Some((node, message))
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
            let (origin, decoded) = decode_envelope(encode_envelope(node, &message)).expect("decodes");
            assert_eq!((origin, decoded), (node, message));
        }
        assert!(decode_envelope(Bytes::from_static(b"short")).is_none());
        let mut bad_text = encode_envelope(node, &Message::from_text("x")).to_vec();
        bad_text.push(0xFF);
        assert!(decode_envelope(Bytes::from(bad_text)).is_none());
    }
}
