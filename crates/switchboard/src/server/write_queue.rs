//! What a connection task has to write: small frames copied into one buffer, large payloads and shared
//! (encode-once) frames kept as reference-counted segments, all written with vectored I/O. A
//! publication to ten thousand subscribers is one buffer referenced ten thousand times, not copied.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::buffer_pool;

/// Segments below this size are copied into the tail buffer: a copy is cheaper than another iovec.
const COPY_BELOW: usize = 1024;
/// At most this many segments per write call.
const MAX_IOVECS: usize = 64;

#[derive(Default)]
pub(crate) struct WriteQueue {
    chunks: VecDeque<Bytes>,
    tail: BytesMut,
}

impl WriteQueue {
    /// The buffer the wire encoder appends to (borrowed from the thread's pool until written).
    pub(crate) fn buf(&mut self) -> &mut BytesMut {
        if self.tail.capacity() == 0 {
            self.tail = buffer_pool::take();
        }
        &mut self.tail
    }

    /// Appends an already encoded frame without copying it (unless it is small).
    pub(crate) fn push_shared(&mut self, frame: Bytes) {
        if frame.len() < COPY_BELOW {
            self.buf().extend_from_slice(&frame);
        } else {
            self.seal_tail();
            self.chunks.push_back(frame);
        }
    }

    fn seal_tail(&mut self) {
        if !self.tail.is_empty() {
            self.chunks.push_back(self.tail.split().freeze());
        }
    }

    /// Bytes waiting to be written.
    pub(crate) fn len(&self) -> usize {
        self.chunks.iter().map(Bytes::len).sum::<usize>() + self.tail.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.tail.is_empty() && self.chunks.is_empty()
    }

    /// Forgets everything queued (the connection is being torn down, or a close jumps the queue).
    pub(crate) fn clear(&mut self) {
        self.chunks.clear();
        self.tail.clear();
    }

    /// Writes everything out. Cancel-safe: what was written is dropped from the queue as it goes.
    pub(crate) async fn write_to<W: AsyncWrite + Unpin>(&mut self, io: &mut W) -> std::io::Result<()> {
        if self.chunks.is_empty() {
            // The common case: only copied frames. One plain write, no segment bookkeeping.
            while !self.tail.is_empty() {
                let written = io.write(&self.tail).await?;
                if written == 0 {
                    return Err(std::io::ErrorKind::WriteZero.into());
                }
                self.tail.advance(written);
            }
            buffer_pool::give_back(&mut self.tail);
            return io.flush().await;
        }
        self.seal_tail();
        while !self.chunks.is_empty() {
            let written = {
                let slices: Vec<IoSlice<'_>> = self.chunks.iter().take(MAX_IOVECS).map(|c| IoSlice::new(c)).collect();
                io.write_vectored(&slices).await?
            };
            if written == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            self.advance(written);
        }
        io.flush().await?;
        buffer_pool::give_back(&mut self.tail);
        Ok(())
    }

    fn advance(&mut self, mut written: usize) {
        while written > 0 {
            let Some(front) = self.chunks.front_mut() else { return };
            if written >= front.len() {
                written -= front.len();
                self.chunks.pop_front();
            } else {
                front.advance(written);
                written = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keeps_the_order_of_copied_and_shared_segments() {
        let mut queue = WriteQueue::default();
        queue.buf().extend_from_slice(b"head ");
        queue.push_shared(Bytes::from(vec![b'x'; 2000]));
        queue.buf().extend_from_slice(b" mid ");
        queue.push_shared(Bytes::from_static(b"small"));
        assert_eq!(queue.len(), 5 + 2000 + 5 + 5);
        let mut out = Vec::new();
        queue.write_to(&mut out).await.unwrap();
        let mut expected = b"head ".to_vec();
        expected.extend(vec![b'x'; 2000]);
        expected.extend_from_slice(b" mid small");
        assert_eq!(out, expected);
        assert!(queue.is_empty());
    }
}
