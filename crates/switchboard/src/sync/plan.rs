//! What a write does, decided from what the database holds: the rules every entity store applies
//! (compare-and-set, the collection's hook, deleting nothing, log pruning), kept in one place so the
//! stores only read and execute.

use serde_json::Value;

use super::protocol::{Current, ServerMessage};
use super::store::{Change, Decision, Operation, Write};

/// The outcome of planning a write.
pub(crate) enum Plan {
    /// Change nothing; record and send this answer (a rejection, or deleting what is not there).
    Answer(ServerMessage),
    /// Store the change at `change.version`, moving the log's start to `log_start` (pruning below it
    /// when it moved), and record `answer`.
    Apply {
        /// The change (its `data` is the value to store, `None` to delete).
        change: Change,
        /// The log's first version after this write.
        log_start: u64,
        /// Whether `log_start` moved: older changes are to be deleted.
        prune: bool,
        /// The `ack`.
        answer: ServerMessage,
    },
}

/// Plans `write` on top of `current`, in a collection at `version` whose log starts at `log_start`
/// and keeps `log_limit` changes.
pub(crate) fn plan(write: &Write, current: &Current, version: u64, log_start: u64, log_limit: u64) -> Plan {
    let mutation_id = write.origin.mutation_id.clone();
    let reject = |reason: String| {
        Plan::Answer(ServerMessage::Reject {
            mutation_id: mutation_id.clone(),
            reason,
            retryable: false,
            current: Some(current.clone()),
        })
    };
    if let Some(base) = write.base_version {
        if base != current.version {
            return reject(format!("version conflict: {} is at version {}, not {base}", write.id, current.version));
        }
    }
    let stored = match (write.decide)(current, &write.operation) {
        Decision::Accept => write.operation.clone(),
        Decision::Rewrite(value) => Operation::Put(value),
        Decision::Reject(reason) => return reject(reason),
    };
    let data = match stored {
        Operation::Put(value) => Some(value),
        // Nothing to delete: answered, and no change for subscribers.
        Operation::Delete if current.version == 0 || current.deleted => {
            return Plan::Answer(ServerMessage::Ack { mutation_id, version: current.version, data: Value::Null });
        }
        Operation::Delete => None,
    };
    let next = version + 1;
    let log_limit = log_limit.max(1);
    // Prune in steps of an eighth of the limit, not on every write.
    let (log_start, prune) = if next + 1 - log_start.min(next) > log_limit + log_limit / 8 {
        (next + 1 - log_limit, true)
    } else {
        (log_start, false)
    };
    let answer = ServerMessage::Ack { mutation_id, version: next, data: data.clone().unwrap_or(Value::Null) };
    let change = Change {
        collection: write.collection.clone(),
        id: write.id.clone(),
        data,
        version: next,
        origin: Some(write.origin.clone()),
    };
    Plan::Apply { change, log_start, prune, answer }
}

/// A recorded answer, as sent again to a replayed mutation: a rejection carries the entity as it is
/// now, which is what the client must roll back to.
pub(crate) fn replayed(
    recorded: &str,
    current: impl FnOnce() -> Result<Current, String>,
) -> Result<ServerMessage, String> {
    let answer: ServerMessage =
        serde_json::from_str(recorded).map_err(|e| format!("a recorded answer is unreadable: {e}"))?;
    Ok(match answer {
        ServerMessage::Reject { mutation_id, reason, retryable, .. } => {
            ServerMessage::Reject { mutation_id, reason, retryable, current: Some(current()?) }
        }
        other => other,
    })
}

/// An entity row (its JSON text, `None` when deleted, and version) as a `Current`; no row is an
/// entity that never existed.
pub(crate) fn current_from(row: Option<(Option<String>, u64)>) -> Result<Current, String> {
    Ok(match row {
        None => Current { data: Value::Null, version: 0, deleted: false },
        Some((None, version)) => Current { data: Value::Null, version, deleted: true },
        Some((Some(text), version)) => Current { data: parse(&text)?, version, deleted: false },
    })
}

/// Stored JSON text as a value.
pub(crate) fn parse(text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| format!("a stored entity is unreadable: {e}"))
}

/// Why changes after `since` cannot be replayed from a collection at `version` whose log starts at
/// `log_start`, if they cannot.
pub(crate) fn replay_gone(collection: &str, since: u64, version: u64, log_start: u64) -> Option<String> {
    if since > version {
        return Some(format!(
            "version {since} is ahead of collection {collection} (at version {version}); resubscribe without since"
        ));
    }
    if since + 1 < log_start {
        return Some(format!(
            "the change log of {collection} starts at version {log_start}; resubscribe without since"
        ));
    }
    None
}
