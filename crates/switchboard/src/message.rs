//! `Message`: one complete WebSocket message, text or binary (crossws' `message.text()` and
//! `message.bytes()`).

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
pub use switchboard_wire::MessageKind;

/// A complete message. Cloning is cheap: the payload is reference-counted and shared, never copied.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    kind: MessageKind,
    data: Bytes,
}

/// A binary message whose bytes are not UTF-8 was read as text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the message is binary and its bytes are not valid UTF-8 (valid up to byte {valid_up_to})")]
pub struct NotText {
    /// How many leading bytes are valid UTF-8.
    pub valid_up_to: usize,
}

impl Message {
    /// A text message.
    pub fn from_text(text: impl Into<String>) -> Self {
        Self { kind: MessageKind::Text, data: Bytes::from(text.into()) }
    }

    /// A binary message.
    pub fn from_binary(bytes: impl Into<Bytes>) -> Self {
        Self { kind: MessageKind::Binary, data: bytes.into() }
    }

    /// A text message holding `value` as JSON.
    pub fn from_json<T: Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        Ok(Self { kind: MessageKind::Text, data: Bytes::from(serde_json::to_vec(value)?) })
    }

    /// A message from a kind and payload. The payload of a text message must be UTF-8; it is checked.
    pub fn new(kind: MessageKind, data: Bytes) -> Result<Self, NotText> {
        if kind == MessageKind::Text {
            if let Err(e) = std::str::from_utf8(&data) {
                return Err(NotText { valid_up_to: e.valid_up_to() });
            }
        }
        Ok(Self { kind, data })
    }

    /// A message whose text payload the protocol layer already validated.
    pub(crate) fn from_wire(kind: MessageKind, data: Bytes) -> Self {
        Self { kind, data }
    }

    /// The message as text: a text message always, a binary one if its bytes are UTF-8.
    pub fn text(&self) -> Result<&str, NotText> {
        match self.kind {
            // SAFETY: text payloads are validated on receipt (wire) or construction (from_text, new).
            MessageKind::Text => Ok(unsafe { std::str::from_utf8_unchecked(&self.data) }),
            MessageKind::Binary => {
                std::str::from_utf8(&self.data).map_err(|e| NotText { valid_up_to: e.valid_up_to() })
            }
        }
    }

    /// The raw payload bytes (for either kind).
    pub fn bytes(&self) -> &Bytes {
        &self.data
    }

    /// Takes the payload.
    pub fn into_bytes(self) -> Bytes {
        self.data
    }

    /// Parses the payload as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.data)
    }

    /// Text or binary.
    pub fn kind(&self) -> MessageKind {
        self.kind
    }

    /// Whether this is a text message.
    pub fn is_text(&self) -> bool {
        self.kind == MessageKind::Text
    }

    /// Whether this is a binary message.
    pub fn is_binary(&self) -> bool {
        self.kind == MessageKind::Binary
    }

    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.text() {
            Ok(text) if self.is_text() => write!(f, "Message::Text({text:?})"),
            _ => write!(f, "Message::Binary({} bytes)", self.data.len()),
        }
    }
}

impl From<&str> for Message {
    fn from(text: &str) -> Self {
        Self::from_text(text)
    }
}

impl From<String> for Message {
    fn from(text: String) -> Self {
        Self::from_text(text)
    }
}

impl From<&String> for Message {
    fn from(text: &String) -> Self {
        Self::from_text(text.clone())
    }
}

impl From<Vec<u8>> for Message {
    fn from(bytes: Vec<u8>) -> Self {
        Self::from_binary(bytes)
    }
}

impl From<&[u8]> for Message {
    fn from(bytes: &[u8]) -> Self {
        Self::from_binary(Bytes::copy_from_slice(bytes))
    }
}

impl From<Bytes> for Message {
    fn from(bytes: Bytes) -> Self {
        Self::from_binary(bytes)
    }
}

impl From<&Message> for Message {
    fn from(message: &Message) -> Self {
        message.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_of_text_binary_and_invalid_binary() {
        assert_eq!(Message::from("ping").text(), Ok("ping"));
        assert_eq!(Message::from(b"pong".to_vec()).text(), Ok("pong"));
        assert_eq!(Message::from(vec![b'a', 0xFF]).text(), Err(NotText { valid_up_to: 1 }));
        assert!(Message::new(MessageKind::Text, Bytes::from_static(&[0xFF])).is_err());
    }

    #[test]
    fn json_round_trip() {
        let msg = Message::from_json(&serde_json::json!({"a": 1})).unwrap();
        assert!(msg.is_text());
        let value: serde_json::Value = msg.json().unwrap();
        assert_eq!(value["a"], 1);
    }
}
