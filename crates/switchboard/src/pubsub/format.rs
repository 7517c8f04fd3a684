//! How publications are framed for subscribers: as published, or wrapped with their topic and
//! history position so a client can remember where it is and ask `subscribe_since` for the rest.
//!
//! The format is applied once per publication (never per subscriber), so encode-once still holds.

use std::fmt;
use std::sync::Arc;

use super::history::Position;
use crate::Message;

/// A publication on its way to subscribers.
#[derive(Clone, Copy, Debug)]
pub struct Publication<'a> {
    /// The topic it was published to.
    pub topic: &'a str,
    /// Its history position, when the topic keeps history and the publication was recorded.
    pub position: Option<&'a Position>,
    /// The message as published.
    pub message: &'a Message,
}

/// A function from a publication to the message subscribers receive.
pub type FormatFn = Arc<dyn Fn(&Publication<'_>) -> Message + Send + Sync>;

/// How publications (and replays from history) are sent to subscribers.
#[derive(Clone, Default)]
pub enum PublicationFormat {
    /// The message exactly as published (the default).
    #[default]
    Raw,
    /// Text publications become `{"topic":..,"position":{"epoch":..,"offset":..}|null,"data":..}`,
    /// where `data` is the published JSON value, or a JSON string if the text is not JSON. Binary
    /// publications are sent as published.
    JsonEnvelope,
    /// Your own function.
    Custom(FormatFn),
}

impl fmt::Debug for PublicationFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Raw => f.write_str("Raw"),
            Self::JsonEnvelope => f.write_str("JsonEnvelope"),
            Self::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

impl PublicationFormat {
    /// The message subscribers receive for `publication`.
    pub fn apply(&self, publication: &Publication<'_>) -> Message {
        match self {
            Self::Raw => publication.message.clone(),
            Self::JsonEnvelope => json_envelope(publication),
            Self::Custom(format) => format(publication),
        }
    }
}

fn json_envelope(publication: &Publication<'_>) -> Message {
    let text = match publication.message.text() {
        Ok(text) if !publication.message.is_binary() => text,
        _ => return publication.message.clone(),
    };
    let data = serde_json::from_str::<serde_json::Value>(text).unwrap_or_else(|_| text.into());
    let envelope = serde_json::json!({
        "topic": publication.topic,
        "position": publication.position,
        "data": data,
    });
    Message::from_text(envelope.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_envelope_carries_topic_position_and_data() {
        let position = Position { epoch: "e1".into(), offset: 7 };
        let json = Message::from_text(r#"{"a":1}"#);
        let plain = Message::from_text("hi \"you\"");
        let format = PublicationFormat::JsonEnvelope;
        let wrapped = format.apply(&Publication { topic: "t", position: Some(&position), message: &json });
        assert_eq!(wrapped.text().ok(), Some(r#"{"data":{"a":1},"position":{"epoch":"e1","offset":7},"topic":"t"}"#));
        let wrapped = format.apply(&Publication { topic: "t", position: None, message: &plain });
        assert_eq!(wrapped.text().ok(), Some(r#"{"data":"hi \"you\"","position":null,"topic":"t"}"#));
        let binary = Message::from_binary(vec![1u8, 2]);
        assert_eq!(format.apply(&Publication { topic: "t", position: None, message: &binary }), binary);
    }
}
