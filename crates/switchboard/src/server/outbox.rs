//! A peer's outgoing queue: what the application queued (messages, shared frames, pings, closes),
//! waiting for the connection task to write it.
//!
//! A mutex around a `VecDeque` and one waker, instead of a channel: an idle peer holds no allocation,
//! the task takes everything queued in one lock, and it is not woken for items queued while it runs
//! (it drains the queue before it parks again).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

use super::peer::Outgoing;

#[derive(Default)]
pub(crate) struct Outbox {
    queue: Mutex<VecDeque<Outgoing>>,
    waker: AtomicWaker,
    closed: AtomicBool,
}

impl Outbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Outgoing>> {
        // A push or a take cannot panic halfway.
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `item`; gives it back if the connection task is gone.
    pub(crate) fn push(&self, item: Outgoing) -> Result<(), Outgoing> {
        {
            let mut queue = self.lock();
            if self.closed.load(Ordering::Acquire) {
                return Err(item);
            }
            queue.push_back(item);
        }
        self.waker.wake();
        Ok(())
    }

    /// Moves everything queued into `into` (which should be empty; its allocation is swapped in).
    pub(crate) fn take_all(&self, into: &mut VecDeque<Outgoing>) {
        std::mem::swap(&mut *self.lock(), into);
    }

    /// Ready when something is queued; registers the task to be woken otherwise.
    pub(crate) fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.waker.register(cx.waker());
        if self.lock().is_empty() {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }

    /// The task is busy and will drain the queue before it waits again: pushes need not wake it.
    pub(crate) fn unregister(&self) {
        drop(self.waker.take());
    }

    /// The connection task is gone: refuse further items and drop what is queued.
    pub(crate) fn close(&self) {
        let dropped = {
            let mut queue = self.lock();
            self.closed.store(true, Ordering::Release);
            std::mem::take(&mut *queue)
        };
        drop(dropped);
    }
}
