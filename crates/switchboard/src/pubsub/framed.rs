//! A publication framed once for every subscriber: the plain frame, and compressed frames built on
//! first use for subscribers that share a compressor setting. The history keeps the same `Framed`, so
//! a replay to any number of reconnecting subscribers frames (and compresses) each publication once.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use switchboard_wire::{server_frame, server_frame_compressed};

use crate::server::{Peer, SharedCompression};
use crate::{Message, MessageKind};

/// Messages shorter than this go out uncompressed: DEFLATE would make them longer.
const COMPRESSION_THRESHOLD: usize = 32;
/// Replayed messages at least this large are compressed on the blocking pool (about 0.2 ms of CPU
/// and more at level 1).
const OFF_THREAD_ABOVE: usize = 64 << 10;

/// One publication, as subscribers receive it.
pub(crate) struct Framed {
    kind: MessageKind,
    /// The whole uncompressed frame: header and payload, in an allocation of its own (never a slice of
    /// a connection's read buffer, which a kept message would keep alive).
    plain: Bytes,
    payload_len: usize,
    /// One frame per compression setting among the subscribers that negotiated
    /// `server_no_context_takeover` (with no context kept between messages, one compressed frame is
    /// valid for all of them).
    compressed: Mutex<Vec<(SharedCompression, Bytes)>>,
}

impl Framed {
    /// Frames `message` (one copy of its payload).
    pub(crate) fn new(message: &Message) -> Self {
        Self {
            kind: message.kind(),
            plain: server_frame(message.kind(), message.bytes()),
            payload_len: message.len(),
            compressed: Mutex::new(Vec::new()),
        }
    }

    /// The payload's length: what a subscriber's queue accounts for.
    pub(crate) fn len(&self) -> usize {
        self.payload_len
    }

    /// Bytes this publication holds (its plain frame; compressed frames are built only on demand).
    pub(crate) fn frame_len(&self) -> usize {
        self.plain.len()
    }

    /// The compression setting whose shared frame `peer` gets; `None`: the plain frame. Peers without
    /// server context takeover share one compressed frame per setting; plain is valid for everyone.
    fn setting_for(&self, peer: &Peer) -> Option<SharedCompression> {
        peer.shared.shared_compression.filter(|_| self.payload_len >= COMPRESSION_THRESHOLD)
    }

    /// The frame for `peer`.
    pub(crate) fn frame_for(&self, peer: &Peer) -> Bytes {
        match self.setting_for(peer) {
            Some(setting) => self.compressed_frame(setting),
            None => self.plain.clone(),
        }
    }

    /// Like `frame_for`, but a large compression not done yet runs on tokio's blocking pool, so that a
    /// replay of big publications does not hold up the other connections of a runtime worker.
    pub(crate) async fn frame_for_off_thread(self: &Arc<Self>, peer: &Peer) -> Bytes {
        match self.setting_for(peer) {
            Some(setting) if self.payload_len >= OFF_THREAD_ABOVE && !self.has_compressed(setting) => {
                let framed = self.clone();
                match tokio::task::spawn_blocking(move || framed.compressed_frame(setting)).await {
                    Ok(frame) => frame,
                    Err(_) => self.frame_for(peer),
                }
            }
            _ => self.frame_for(peer),
        }
    }

    fn has_compressed(&self, setting: SharedCompression) -> bool {
        self.compressed.lock().unwrap_or_else(|p| p.into_inner()).iter().any(|(s, _)| *s == setting)
    }

    fn compressed_frame(&self, setting: SharedCompression) -> Bytes {
        let mut frames = self.compressed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, frame)) = frames.iter().find(|(s, _)| *s == setting) {
            return frame.clone();
        }
        let header_len = self.plain.len() - self.payload_len;
        let payload = &self.plain[header_len..];
        let frame = server_frame_compressed(self.kind, payload, setting.level, setting.window_bits);
        frames.push((setting, frame.clone()));
        frame
    }
}

/// Frames for one fan-out: remembers the last compressed frame, so that a publication to many peers
/// with the same setting takes the lock once rather than once per subscriber.
pub(crate) struct FanOut<'a> {
    framed: &'a Framed,
    last: Option<(SharedCompression, Bytes)>,
}

impl<'a> FanOut<'a> {
    pub(crate) fn new(framed: &'a Framed) -> Self {
        Self { framed, last: None }
    }

    pub(crate) fn for_peer(&mut self, peer: &Peer) -> Bytes {
        match self.framed.setting_for(peer) {
            Some(setting) => {
                if let Some((last, frame)) = &self.last {
                    if *last == setting {
                        return frame.clone();
                    }
                }
                let frame = self.framed.compressed_frame(setting);
                self.last = Some((setting, frame.clone()));
                frame
            }
            _ => self.framed.plain.clone(),
        }
    }
}
