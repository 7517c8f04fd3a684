//! `Store<T>`: a value that changes, and a stream of it (fritz2's `Store`). Local changes
//! (`set`, `update`, handlers) are told apart from values applied by a sync, so a sync never sends
//! back what the server sent.

use std::sync::{Arc, Mutex};

use futures_core::Stream;
use tokio::sync::watch;
use tokio_stream::wrappers::WatchStream;

/// A value and its changes. Cheap to clone; clones are the same store.
///
/// ```
/// use switchboard::sync::Store;
///
/// let counter = Store::new(0);
/// let add = counter.handler(|count: &mut i32, n: i32| *count += n);
/// add(2);
/// counter.update(|count| *count += 1);
/// assert_eq!(counter.current(), 3);
/// ```
pub struct Store<T> {
    inner: Arc<Inner<T>>,
}

struct Inner<T> {
    /// The value and how many local changes it has seen.
    state: Mutex<(T, u64)>,
    /// Every value, for `data()`.
    values: watch::Sender<T>,
    /// The number of local changes, for a sync.
    local: watch::Sender<u64>,
}

impl<T> Clone for Store<T> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

impl<T: Clone + Send + Sync + 'static> Store<T> {
    /// A store holding `initial`.
    pub fn new(initial: T) -> Self {
        let (values, _) = watch::channel(initial.clone());
        let (local, _) = watch::channel(0);
        Self { inner: Arc::new(Inner { state: Mutex::new((initial, 0)), values, local }) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (T, u64)> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The value now.
    pub fn current(&self) -> T {
        self.lock().0.clone()
    }

    /// The value now and after every change (a slow reader may skip values in between, never the
    /// latest). Ends when every clone of the store is dropped.
    pub fn data(&self) -> impl Stream<Item = T> + Send + 'static {
        WatchStream::new(self.inner.values.subscribe())
    }

    /// Replaces the value (a local change: a sync sends it).
    pub fn set(&self, value: T) {
        self.update(|current| *current = value);
    }

    /// Changes the value in place (a local change: a sync sends it).
    pub fn update(&self, change: impl FnOnce(&mut T)) {
        let mut state = self.lock();
        change(&mut state.0);
        state.1 += 1;
        self.inner.values.send_replace(state.0.clone());
        self.inner.local.send_replace(state.1);
    }

    /// A handler in fritz2's spirit: a function that applies `change` with an argument.
    pub fn handler<A>(&self, change: impl Fn(&mut T, A) + Send + Sync + 'static) -> impl Fn(A) + Send + Sync + 'static {
        let store = self.clone();
        move |argument| store.update(|value| change(value, argument))
    }

    /// The value and the count of local changes it includes.
    pub(crate) fn snapshot(&self) -> (T, u64) {
        let state = self.lock();
        (state.0.clone(), state.1)
    }

    /// Sets a value that came from the server, unless a local change came after `seen` (then the
    /// sync reads that change first and tries again). Not a local change: it is not sent back.
    pub(crate) fn apply_remote(&self, value: T, seen: u64) -> bool {
        let mut state = self.lock();
        if state.1 != seen {
            return false;
        }
        state.0 = value;
        self.inner.values.send_replace(state.0.clone());
        true
    }

    /// Notified of every local change.
    pub(crate) fn local_changes(&self) -> watch::Receiver<u64> {
        self.inner.local.subscribe()
    }
}
