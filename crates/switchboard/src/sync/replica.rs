//! The client's side of `switchboard.sync.v1` as a state machine with no I/O: what the server
//! confirmed, the local mutations not yet answered, and the messages to send. The view a store shows
//! is the confirmed state with the pending mutations on top, so a change from elsewhere never
//! overwrites a local edit still on its way, and a rejection rolls back to what the server holds.

use std::collections::{BTreeMap, VecDeque};

use serde_json::Value;

use super::protocol::{ClientMessage, Current, ServerMessage};

/// Entities by id.
pub(crate) type Entities = BTreeMap<String, Value>;

/// Where a local mutation is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MutationState {
    /// Waiting for a connection (or for a retry after a retryable rejection).
    Queued,
    /// Sent; no answer yet.
    Sent,
}

/// A local mutation the server has not answered yet.
#[derive(Clone, Debug, PartialEq)]
pub struct PendingMutation {
    /// Its id (a UUID).
    pub mutation_id: String,
    /// The entity's id.
    pub id: String,
    /// The value written; `None` for a delete.
    pub data: Option<Value>,
    /// Queued or sent.
    pub state: MutationState,
}

/// The server refused a local mutation for good; the store was rolled back to `current`.
#[derive(Clone, Debug, PartialEq)]
pub struct Rejection {
    /// Which mutation.
    pub mutation_id: String,
    /// The entity's id.
    pub id: String,
    /// Why.
    pub reason: String,
    /// The entity as the server holds it now.
    pub current: Option<Current>,
}

/// What handling a server message asks of the driver.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Effects {
    /// Messages to send, in order.
    pub(crate) send: Vec<ClientMessage>,
    /// The view changed: show it.
    pub(crate) view_changed: bool,
    /// A mutation was rejected for good.
    pub(crate) rejection: Option<Rejection>,
    /// A retryable rejection: send the queued mutations again later.
    pub(crate) retry: bool,
    /// Something the server said that the user should know (an `error`).
    pub(crate) error: Option<String>,
}

/// The client state of one subscription.
pub(crate) struct Replica {
    collection: String,
    entity: Option<String>,
    /// A single-entity replica subscribes only once it knows the entity's id.
    single: bool,
    /// The followed entity was deleted.
    deleted: bool,
    client: String,
    /// The collection version seen last (`None`: a snapshot is needed).
    version: Option<u64>,
    open: bool,
    ready: bool,
    confirmed: Entities,
    /// The version of each entity's confirmed state (deleted ones too). An ack travels apart from
    /// the changes and may arrive after a newer change of the same entity: it must not undo it.
    versions: BTreeMap<String, u64>,
    /// The highest version of an acknowledged mutation: until the changes reach it, the store does
    /// not show everything the server has confirmed (an ack may overtake its own change).
    acked: u64,
    pending: VecDeque<PendingMutation>,
}

impl Replica {
    /// A replica of `collection` (or of one entity of it) for the client named `client`.
    pub(crate) fn new(collection: String, entity: Option<String>, client: String) -> Self {
        Self {
            collection,
            entity,
            single: false,
            deleted: false,
            client,
            version: None,
            open: false,
            ready: false,
            confirmed: Entities::new(),
            versions: BTreeMap::new(),
            acked: 0,
            pending: VecDeque::new(),
        }
    }

    /// A replica of one entity, subscribed once its id is known (see [`Replica::follow`]).
    pub(crate) fn for_entity(collection: String, entity: Option<String>, client: String) -> Self {
        Self { single: true, ..Self::new(collection, entity, client) }
    }

    /// A single-entity replica now follows the entity `id` (the store's value names it): subscribe
    /// to it if that is new.
    pub(crate) fn follow(&mut self, id: String) -> Vec<ClientMessage> {
        if !self.single || self.entity.as_ref() == Some(&id) {
            return Vec::new();
        }
        self.entity = Some(id);
        self.deleted = false;
        self.version = None;
        self.confirmed.clear();
        self.versions.clear();
        self.acked = 0;
        self.ready = false;
        if self.open {
            vec![self.sub()]
        } else {
            Vec::new()
        }
    }

    pub(crate) fn version(&self) -> Option<u64> {
        self.version
    }

    /// Ready, nothing pending, and every acknowledged change seen: the store shows the server's state.
    pub(crate) fn is_synced(&self) -> bool {
        self.ready && self.pending.is_empty() && self.version.is_some_and(|v| v >= self.acked)
    }

    pub(crate) fn is_open(&self) -> bool {
        self.open
    }

    pub(crate) fn pending(&self) -> Vec<PendingMutation> {
        self.pending.iter().cloned().collect()
    }

    fn sub(&self) -> ClientMessage {
        ClientMessage::Sub {
            collection: self.collection.clone(),
            id: self.entity.clone(),
            since: self.version,
            client: Some(self.client.clone()),
        }
    }

    fn message_for(pending: &PendingMutation) -> ClientMessage {
        match &pending.data {
            Some(data) => ClientMessage::Mutate {
                mutation_id: pending.mutation_id.clone(),
                id: pending.id.clone(),
                data: data.clone(),
                base_version: None,
            },
            None => ClientMessage::Delete {
                mutation_id: pending.mutation_id.clone(),
                id: pending.id.clone(),
                base_version: None,
            },
        }
    }

    /// A connection opened: subscribe (resuming after the version seen), then send every unanswered
    /// mutation again, in order.
    pub(crate) fn on_open(&mut self) -> Vec<ClientMessage> {
        if self.open {
            return Vec::new();
        }
        self.open = true;
        self.ready = false;
        let mut send = Vec::new();
        if !self.single || self.entity.is_some() {
            send.push(self.sub());
        }
        send.extend(self.resend());
        send
    }

    /// The connection closed: what was sent and not answered is sent again on the next.
    pub(crate) fn on_close(&mut self) {
        self.open = false;
        self.ready = false;
        for pending in &mut self.pending {
            pending.state = MutationState::Queued;
        }
    }

    /// The queued mutations, marked sent (nothing while offline).
    pub(crate) fn resend(&mut self) -> Vec<ClientMessage> {
        if !self.open {
            return Vec::new();
        }
        let mut send = Vec::new();
        for pending in &mut self.pending {
            if pending.state == MutationState::Queued {
                pending.state = MutationState::Sent;
                send.push(Self::message_for(pending));
            }
        }
        send
    }

    /// The confirmed entities with the pending mutations applied in order.
    pub(crate) fn view(&self) -> Entities {
        let mut view = self.confirmed.clone();
        for pending in &self.pending {
            match &pending.data {
                Some(data) => view.insert(pending.id.clone(), data.clone()),
                None => view.remove(&pending.id),
            };
        }
        view
    }

    /// The store now shows `local`: queue a mutation for every entity it changed, added or removed
    /// (and send them, if open).
    pub(crate) fn local_edit(&mut self, local: &Entities) -> Vec<ClientMessage> {
        let view = self.view();
        let mut edits = Vec::new();
        for (id, data) in local {
            if view.get(id) != Some(data) {
                edits.push((id.clone(), Some(data.clone())));
            }
        }
        for id in view.keys() {
            if !local.contains_key(id) {
                edits.push((id.clone(), None));
            }
        }
        for (id, data) in edits {
            self.pending.push_back(PendingMutation {
                mutation_id: uuid::Uuid::new_v4().to_string(),
                id,
                data,
                state: MutationState::Queued,
            });
        }
        self.resend()
    }

    /// Whether the followed entity is known to be deleted (not merely absent).
    pub(crate) fn deleted(&self) -> bool {
        self.deleted
    }

    /// Takes `data` as the entity's state at `version`, unless a newer state is known already.
    fn set_confirmed(&mut self, id: &str, data: Option<Value>, version: u64) {
        if self.versions.get(id).is_some_and(|known| *known > version) {
            return;
        }
        self.versions.insert(id.to_owned(), version);
        if self.entity.as_deref() == Some(id) {
            self.deleted = data.is_none();
        }
        match data {
            Some(data) => self.confirmed.insert(id.to_owned(), data),
            None => self.confirmed.remove(id),
        };
    }

    /// Handles one server message.
    pub(crate) fn on_message(&mut self, message: ServerMessage) -> Effects {
        let mut effects = Effects::default();
        match message {
            ServerMessage::Snapshot { entities, version } => {
                self.versions = entities.iter().map(|e| (e.id.clone(), e.version)).collect();
                self.confirmed = entities.into_iter().map(|e| (e.id, e.data)).collect();
                self.version = Some(version);
                effects.view_changed = true;
            }
            ServerMessage::Ready { version } => {
                self.ready = true;
                self.version = Some(self.version.map_or(version, |v| v.max(version)));
            }
            ServerMessage::Change { id, data, deleted, version, .. } => {
                let seen = self.version.unwrap_or(0);
                if self.version.is_some() && version <= seen {
                    return effects; // delivered before (a resumption overlaps)
                }
                // Versions are contiguous for a collection; an entity's changes skip the others'.
                if self.entity.is_none() && self.version.is_some() && version != seen + 1 {
                    self.ready = false;
                    effects.send.push(self.sub());
                    return effects;
                }
                self.set_confirmed(&id, if deleted { None } else { data }, version);
                self.version = Some(version);
                effects.view_changed = true;
            }
            ServerMessage::Ack { mutation_id, data, version } => {
                self.acked = self.acked.max(version);
                if let Some(at) = self.pending.iter().position(|p| p.mutation_id == mutation_id) {
                    if let Some(pending) = self.pending.remove(at) {
                        self.set_confirmed(&pending.id, (!data.is_null()).then_some(data), version);
                        effects.view_changed = true;
                    }
                }
            }
            ServerMessage::Reject { mutation_id, reason, retryable, current } => {
                let Some(at) = self.pending.iter().position(|p| p.mutation_id == mutation_id) else {
                    return effects;
                };
                if retryable {
                    if let Some(pending) = self.pending.get_mut(at) {
                        pending.state = MutationState::Queued;
                    }
                    effects.retry = true;
                    return effects;
                }
                if let Some(pending) = self.pending.remove(at) {
                    if let Some(current) = &current {
                        let live = current.version > 0 && !current.deleted;
                        self.set_confirmed(&pending.id, live.then(|| current.data.clone()), current.version);
                    }
                    effects.view_changed = true;
                    effects.rejection = Some(Rejection { mutation_id, id: pending.id, reason, current });
                }
            }
            ServerMessage::Refetch { .. } => {
                self.version = None;
                self.ready = false;
                effects.send.push(self.sub());
            }
            ServerMessage::Error { reason } => effects.error = Some(reason),
        }
        effects
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn change(id: &str, data: Value, version: u64) -> ServerMessage {
        ServerMessage::Change { id: id.into(), data: Some(data), deleted: false, version, origin: None }
    }

    fn opened() -> Replica {
        let mut replica = Replica::new("people".into(), None, "me".into());
        replica.on_open();
        replica.on_message(ServerMessage::Snapshot { entities: vec![], version: 0 });
        replica.on_message(ServerMessage::Ready { version: 0 });
        replica
    }

    #[test]
    fn a_local_edit_stays_visible_until_answered_and_a_rejection_rolls_back() {
        let mut replica = opened();
        replica.on_message(change("p1", json!({"age": 1}), 1));
        let sent = replica.local_edit(&Entities::from([("p1".into(), json!({"age": 2}))]));
        assert_eq!(sent.len(), 1);
        let ClientMessage::Mutate { mutation_id, .. } = &sent[0] else { panic!("{sent:?}") };
        // Someone else's change arrives first: the local edit still shows.
        replica.on_message(change("p1", json!({"age": 5}), 2));
        assert_eq!(replica.view()["p1"], json!({"age": 2}));
        let current = Current { data: json!({"age": 5}), version: 2, deleted: false };
        let effects = replica.on_message(ServerMessage::Reject {
            mutation_id: mutation_id.clone(),
            reason: "no".into(),
            retryable: false,
            current: Some(current),
        });
        assert!(effects.rejection.is_some());
        assert_eq!(replica.view()["p1"], json!({"age": 5}));
        assert!(replica.pending().is_empty());
    }

    #[test]
    fn mutations_made_offline_are_sent_in_order_after_the_sub_and_a_gap_resubscribes() {
        let mut replica = opened();
        replica.on_close();
        let mut local = Entities::new();
        for n in 0..3 {
            local.insert(format!("e{n}"), json!(n));
            assert!(replica.local_edit(&local).is_empty(), "nothing is sent offline");
        }
        let sent = replica.on_open();
        assert!(matches!(&sent[0], ClientMessage::Sub { since: Some(0), .. }), "{sent:?}");
        let ids: Vec<_> = sent[1..]
            .iter()
            .map(|m| match m {
                ClientMessage::Mutate { id, .. } => id.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(ids, ["e0", "e1", "e2"]);
        let effects = replica.on_message(change("x", json!(1), 5));
        assert!(matches!(&effects.send[..], [ClientMessage::Sub { since: Some(0), .. }]), "{effects:?}");
    }

    #[test]
    fn an_ack_that_arrives_after_a_newer_change_does_not_undo_it() {
        let mut replica = opened();
        let sent = replica.local_edit(&Entities::from([("form".into(), json!({"title": "mine"}))]));
        let ClientMessage::Mutate { mutation_id, .. } = &sent[0] else { panic!("{sent:?}") };
        // Ours became version 1, someone else's edit version 2; the change of 2 overtook our ack.
        replica.on_message(change("form", json!({"title": "mine"}), 1));
        replica.on_message(change("form", json!({"title": "mine", "guests": 12}), 2));
        replica.on_message(ServerMessage::Ack {
            mutation_id: mutation_id.clone(),
            version: 1,
            data: json!({"title": "mine"}),
        });
        assert!(replica.pending().is_empty());
        assert_eq!(replica.view()["form"], json!({"title": "mine", "guests": 12}));
    }

    #[test]
    fn an_ack_ahead_of_its_change_is_not_synced_until_the_change_arrives() {
        let mut replica = opened();
        let sent = replica.local_edit(&Entities::from([("a".into(), json!(1))]));
        let ClientMessage::Mutate { mutation_id, .. } = &sent[0] else { panic!("{sent:?}") };
        replica.on_message(ServerMessage::Ack { mutation_id: mutation_id.clone(), version: 1, data: json!(1) });
        assert!(replica.pending().is_empty());
        assert!(!replica.is_synced(), "version 1 is acknowledged but its change not yet seen");
        replica.on_message(change("a", json!(1), 1));
        assert!(replica.is_synced());
    }

    #[test]
    fn a_retryable_rejection_keeps_the_mutation_for_later() {
        let mut replica = opened();
        let sent = replica.local_edit(&Entities::from([("p".into(), json!(1))]));
        let ClientMessage::Mutate { mutation_id, .. } = &sent[0] else { panic!() };
        let effects = replica.on_message(ServerMessage::Reject {
            mutation_id: mutation_id.clone(),
            reason: "the database is unreachable".into(),
            retryable: true,
            current: None,
        });
        assert!(effects.retry);
        assert_eq!(replica.pending()[0].state, MutationState::Queued);
        assert_eq!(replica.resend().len(), 1);
    }
}
