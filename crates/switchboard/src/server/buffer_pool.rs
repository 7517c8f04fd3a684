//! Per-thread pools of I/O buffers, so that an idle connection holds none.
//!
//! A connection borrows a buffer only while bytes are in flight: to read (returned when the read would
//! block and nothing is buffered) and to encode what it writes (returned once written). Ten thousand
//! idle connections then share a handful of buffers per worker thread instead of holding 8 KiB each.

use std::cell::RefCell;

use bytes::BytesMut;

/// The capacity a pooled buffer has when handed out.
pub(crate) const BUFFER_SIZE: usize = 8 * 1024;
/// Room below which a pooled buffer is reclaimed (or replaced) before it is handed out.
pub(crate) const MIN_ROOM: usize = 4 * 1024;
/// Buffers kept per thread; more are freed.
const KEPT: usize = 64;
/// Buffers that grew past this (a large message) are freed rather than pooled.
const LARGEST_KEPT: usize = 64 * 1024;

thread_local! {
    static POOL: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// A buffer with at least `MIN_ROOM` bytes of room (usually `BUFFER_SIZE`).
pub(crate) fn take() -> BytesMut {
    let mut buf = POOL.with(|pool| pool.borrow_mut().pop()).unwrap_or_default();
    // Each use consumes the front of a pooled buffer (messages are split off without a copy). Its
    // space is reclaimed only once it runs low, so the reclaim is paid once per few hundred small
    // messages, not per message. A buffer whose bytes are still referenced (a message the application
    // kept) gets fresh memory then.
    if buf.capacity() < MIN_ROOM {
        buf.reserve(BUFFER_SIZE);
    }
    buf
}

/// Returns an empty buffer to the pool (or frees it), leaving an unallocated one in its place.
pub(crate) fn give_back(buf: &mut BytesMut) {
    let buf = std::mem::take(buf);
    if !buf.is_empty() || buf.capacity() == 0 || buf.capacity() > LARGEST_KEPT {
        return;
    }
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < KEPT {
            pool.push(buf);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_and_the_lender_is_left_empty() {
        let mut buf = take();
        assert!(buf.capacity() >= MIN_ROOM);
        let address = buf.as_ptr();
        give_back(&mut buf);
        assert_eq!(buf.capacity(), 0, "the connection holds nothing");
        let again = take();
        assert_eq!(again.as_ptr(), address, "the same allocation comes back");
        // Non-empty buffers are never pooled (their bytes belong to a connection).
        let mut full = take();
        full.extend_from_slice(b"partial frame");
        let kept = full.clone();
        give_back(&mut full);
        assert_eq!(&kept[..], b"partial frame");
    }
}
