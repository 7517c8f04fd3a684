//! The `switchboard.sync.v1` wire format (docs/sync-protocol.md): JSON text messages whose `type`
//! names them. Parsing checks every field and says what is wrong; it never panics on input.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The subprotocol a v1 client offers.
pub const SUBPROTOCOL: &str = "switchboard.sync.v1";

/// Longest entity, mutation or client id accepted, in bytes.
pub const MAX_ID_LEN: usize = 256;

/// A client's message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Subscribe to a collection (or one entity of it), optionally resuming after `since`.
    Sub {
        /// The collection, as mounted (`/sync/<collection>`).
        collection: String,
        /// One entity only.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// Resume after this version: every later change is replayed once, in order, or `refetch`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<u64>,
        /// The client's name, kept across reconnects: mutation ids are unique per client. Without
        /// it, the connection is the client.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client: Option<String>,
    },
    /// Create or replace an entity.
    Mutate {
        /// Unique per client (a UUID is enough).
        mutation_id: String,
        /// The entity's id.
        id: String,
        /// The whole entity.
        data: Value,
        /// Apply only if the entity is still at this version (0: only if it does not exist).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        base_version: Option<u64>,
    },
    /// Delete an entity.
    Delete {
        /// Unique per client.
        mutation_id: String,
        /// The entity's id.
        id: String,
        /// Apply only if the entity is still at this version.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        base_version: Option<u64>,
    },
}

/// An entity as the server holds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    /// Its id.
    pub id: String,
    /// Its value.
    pub data: Value,
    /// The collection version of its last change.
    pub version: u64,
}

/// Where a change came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The client that made it.
    pub client: String,
    /// Its mutation id.
    pub mutation_id: String,
}

/// The current state of an entity in a rejection: its value and version, or `deleted`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Current {
    /// Its value (`null` when deleted or never created).
    pub data: Value,
    /// Its version (0: never created).
    pub version: u64,
    /// Whether it was deleted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

/// A server's message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// Every entity of the subscription, at `version`.
    Snapshot {
        /// The entities.
        entities: Vec<Entity>,
        /// The collection version they are at.
        version: u64,
    },
    /// The subscriber receives live changes from here on; everything up to `version` was sent.
    Ready {
        /// The collection version.
        version: u64,
    },
    /// A mutation was applied (or had been: a replay gets its first ack again).
    Ack {
        /// Which mutation.
        mutation_id: String,
        /// The version it got.
        version: u64,
        /// What was stored (a server hook may have rewritten it); `null` for a delete.
        data: Value,
    },
    /// A mutation was not applied.
    Reject {
        /// Which mutation.
        mutation_id: String,
        /// Why, for people.
        reason: String,
        /// Whether sending it again later may succeed (the database was unreachable, say).
        #[serde(default)]
        retryable: bool,
        /// The entity as it is now: the client rolls back to it.
        current: Option<Current>,
    },
    /// An accepted change, to every subscriber.
    Change {
        /// The entity's id.
        id: String,
        /// Its new value (absent when deleted).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data: Option<Value>,
        /// Whether it was deleted.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        deleted: bool,
        /// The collection version of this change.
        version: u64,
        /// Who made it (absent for changes made on the server).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        origin: Option<Origin>,
    },
    /// The changes after the client's version cannot be replayed: subscribe again without `since`.
    Refetch {
        /// Why.
        reason: String,
    },
    /// A request that could not be served (the connection stays open).
    Error {
        /// What was wrong.
        reason: String,
    },
}

/// A client message that breaks the protocol: the connection is closed with 1008 and this reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Violation(pub String);

impl ClientMessage {
    /// Reads and checks a client message.
    pub fn parse(text: &str) -> Result<Self, Violation> {
        let message: Self = serde_json::from_str(text).map_err(|e| {
            let what = e.to_string();
            // serde's own words ("missing field `id`", "unknown variant `x`, expected ...") name the
            // problem; the position matters only for broken JSON.
            let what = match what.find(" at line ") {
                Some(at) if e.is_data() => what[..at].to_owned(),
                _ => what,
            };
            Violation(format!("sync message: {what}"))
        })?;
        message.check()?;
        Ok(message)
    }

    fn check(&self) -> Result<(), Violation> {
        let id = |field: &str, value: &str| -> Result<(), Violation> {
            if value.is_empty() {
                return Err(Violation(format!("sync message: \"{field}\" is empty")));
            }
            if value.len() > MAX_ID_LEN {
                return Err(Violation(format!(
                    "sync message: \"{field}\" is {} bytes, at most {MAX_ID_LEN}",
                    value.len()
                )));
            }
            Ok(())
        };
        match self {
            Self::Sub { collection, id: entity, client, .. } => {
                id("collection", collection)?;
                if let Some(entity) = entity {
                    id("id", entity)?;
                }
                if let Some(client) = client {
                    id("client", client)?;
                }
            }
            Self::Mutate { mutation_id, id: entity, .. } | Self::Delete { mutation_id, id: entity, .. } => {
                id("mutation_id", mutation_id)?;
                id("id", entity)?;
            }
        }
        Ok(())
    }
}

impl ServerMessage {
    /// The message as JSON text.
    pub fn to_json(&self) -> String {
        // Serialising these types cannot fail: every map key is a string.
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"type\":\"error\",\"reason\":\"{e}\"}}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn client_messages_read_as_documented() {
        assert_eq!(
            ClientMessage::parse(r#"{"type":"sub","collection":"people"}"#),
            Ok(ClientMessage::Sub { collection: "people".into(), id: None, since: None, client: None })
        );
        assert_eq!(
            ClientMessage::parse(r#"{"type":"sub","collection":"people","id":"p1","since":42,"client":"c","x":1}"#),
            Ok(ClientMessage::Sub {
                collection: "people".into(),
                id: Some("p1".into()),
                since: Some(42),
                client: Some("c".into())
            })
        );
        assert_eq!(
            ClientMessage::parse(r#"{"type":"mutate","mutation_id":"m1","id":"p1","data":{"age":3},"base_version":7}"#),
            Ok(ClientMessage::Mutate {
                mutation_id: "m1".into(),
                id: "p1".into(),
                data: json!({"age": 3}),
                base_version: Some(7)
            })
        );
        assert_eq!(
            ClientMessage::parse(r#"{"type":"delete","mutation_id":"m2","id":"p1"}"#),
            Ok(ClientMessage::Delete { mutation_id: "m2".into(), id: "p1".into(), base_version: None })
        );
    }

    #[test]
    fn violations_say_what_is_wrong() {
        let violation = |text: &str| ClientMessage::parse(text).expect_err(text).0;
        assert!(violation("{not json").starts_with("sync message: key must be a string at line 1"));
        assert_eq!(violation(r#"{"collection":"x"}"#), "sync message: missing field `type`");
        assert!(violation(r#"{"type":"subscribe"}"#)
            .starts_with("sync message: unknown variant `subscribe`, expected one of `sub`, `mutate`, `delete`"));
        assert_eq!(violation(r#"{"type":"mutate","id":"a","data":1}"#), "sync message: missing field `mutation_id`");
        assert!(violation(r#"{"type":"mutate","mutation_id":"m","id":"a","data":1,"base_version":-1}"#)
            .contains("invalid value: integer `-1`"));
        assert_eq!(
            violation(r#"{"type":"delete","mutation_id":"","id":"a"}"#),
            "sync message: \"mutation_id\" is empty"
        );
        let long = "x".repeat(MAX_ID_LEN + 1);
        assert!(violation(&format!(r#"{{"type":"sub","collection":"{long}"}}"#)).contains("at most 256"));
    }

    /// The protocol's own words and some noise, to build near-messages from.
    fn near_message() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let words = [
            "{",
            "}",
            ",",
            ":",
            "\"type\"",
            "\"sub\"",
            "\"mutate\"",
            "\"delete\"",
            "\"collection\"",
            "\"id\"",
            "\"mutation_id\"",
            "\"data\"",
            "\"since\"",
            "\"base_version\"",
            "\"client\"",
            "\"\"",
            "-1",
            "7",
            "18446744073709551616",
            "null",
            "[",
            "]",
            "\"x\"",
        ];
        proptest::collection::vec(proptest::sample::select(words.to_vec()), 0..24).prop_map(|parts| parts.concat())
    }

    proptest::proptest! {
        /// Any text, and any mix of the protocol's own words: a message or a named violation, and
        /// what parses writes back to the same message.
        #[test]
        fn any_text_parses_or_names_its_problem(text in proptest::prop_oneof![near_message(), ".*"]) {
            match ClientMessage::parse(&text) {
                Ok(message) => {
                    let written = serde_json::to_string(&message).expect("writes");
                    proptest::prop_assert_eq!(ClientMessage::parse(&written), Ok(message));
                }
                Err(violation) => proptest::prop_assert!(violation.0.starts_with("sync message: "), "{}", violation.0),
            }
        }
    }

    #[test]
    fn server_messages_write_as_documented() {
        let change = ServerMessage::Change {
            id: "p1".into(),
            data: Some(json!({"age": 4})),
            deleted: false,
            version: 9,
            origin: Some(Origin { client: "c".into(), mutation_id: "m1".into() }),
        };
        assert_eq!(
            change.to_json(),
            r#"{"type":"change","id":"p1","data":{"age":4},"version":9,"origin":{"client":"c","mutation_id":"m1"}}"#
        );
        let deleted = ServerMessage::Change { id: "p1".into(), data: None, deleted: true, version: 10, origin: None };
        assert_eq!(deleted.to_json(), r#"{"type":"change","id":"p1","deleted":true,"version":10}"#);
        let reject = ServerMessage::Reject {
            mutation_id: "m3".into(),
            reason: "version conflict".into(),
            retryable: false,
            current: Some(Current { data: json!({"age": 4}), version: 9, deleted: false }),
        };
        assert_eq!(
            reject.to_json(),
            r#"{"type":"reject","mutation_id":"m3","reason":"version conflict","retryable":false,"current":{"data":{"age":4},"version":9}}"#
        );
        for message in [change, reject, ServerMessage::Ready { version: 3 }] {
            let text = message.to_json();
            assert_eq!(serde_json::from_str::<ServerMessage>(&text).expect("round trip"), message);
        }
    }
}
