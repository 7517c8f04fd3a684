//! The rules of one synced collection: who may read it, who may write it, and the server's say on
//! every write (accept, rewrite, reject): the server is authoritative.

use std::sync::Arc;

use super::protocol::Current;
use super::store::{Decision, Operation};

/// What the write hook sees: who writes what, on top of what.
#[derive(Debug)]
pub struct WriteContext<'a> {
    /// The user, as the hub's `authenticate` named them (`None`: anonymous).
    pub user: Option<&'a str>,
    /// The client that sent the mutation.
    pub client: &'a str,
    /// The collection.
    pub collection: &'a str,
    /// The entity's id.
    pub id: &'a str,
    /// The entity as it is now (version 0: it does not exist).
    pub current: &'a Current,
    /// What the client asks for.
    pub operation: &'a Operation,
}

type WriteHook = dyn Fn(&WriteContext<'_>) -> Decision + Send + Sync;
type Permission = dyn Fn(Option<&str>) -> bool + Send + Sync;

/// The rules of a collection. The default accepts every read and write as sent.
///
/// ```
/// use switchboard::sync::{Collection, Decision, Operation};
///
/// // fritz2's test server: an entity with `_id == "test"` is stored with its name rewritten.
/// let people = Collection::new().on_write(|write| match write.operation {
///     Operation::Put(value) if value["_id"] == "test" => {
///         let mut value = value.clone();
///         value["name"] = "Hans".into();
///         Decision::Rewrite(value)
///     }
///     _ => Decision::Accept,
/// });
/// ```
#[derive(Clone, Default)]
pub struct Collection {
    pub(crate) on_write: Option<Arc<WriteHook>>,
    pub(crate) can_read: Option<Arc<Permission>>,
    pub(crate) can_write: Option<Arc<Permission>>,
}

impl Collection {
    /// A collection that anyone may read and write.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decides every write once the entity is locked: accept, store a rewritten value, or reject
    /// with a reason (final for the client: it rolls back to the current value). Runs inside the
    /// store's transaction, so keep it quick and do not block.
    pub fn on_write(mut self, hook: impl Fn(&WriteContext<'_>) -> Decision + Send + Sync + 'static) -> Self {
        self.on_write = Some(Arc::new(hook));
        self
    }

    /// Who may subscribe (given the user from `authenticate`). Others get an `error`.
    pub fn read_if(mut self, allowed: impl Fn(Option<&str>) -> bool + Send + Sync + 'static) -> Self {
        self.can_read = Some(Arc::new(allowed));
        self
    }

    /// Who may write. Others' mutations are rejected (final).
    pub fn write_if(mut self, allowed: impl Fn(Option<&str>) -> bool + Send + Sync + 'static) -> Self {
        self.can_write = Some(Arc::new(allowed));
        self
    }

    pub(crate) fn may_read(&self, user: Option<&str>) -> bool {
        self.can_read.as_ref().is_none_or(|allowed| allowed(user))
    }

    pub(crate) fn may_write(&self, user: Option<&str>) -> bool {
        self.can_write.as_ref().is_none_or(|allowed| allowed(user))
    }
}
