//! permessage-deflate under limits. Arbitrary bytes as a compressed message, fed in arbitrary pieces:
//! inflation must stop at its limit and never panic. And arbitrary bytes as a message, compressed and
//! inflated again: they must come back unchanged, across messages that keep or reset the context.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use switchboard_wire::deflate::{Compressor, Decompressor, InflateError};

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else { return };
    let reset = control & 1 != 0;
    let chunk = usize::from(control >> 4) * 37 + 1;
    let limit = 1usize << (8 + usize::from((control >> 1) & 7));
    // As a compressed message from a peer.
    let mut inflate = Decompressor::new(reset);
    let mut out = BytesMut::new();
    let pieces: Vec<&[u8]> = rest.chunks(chunk).collect();
    for (n, piece) in pieces.iter().enumerate() {
        match inflate.decompress(piece, n + 1 == pieces.len(), &mut out, limit) {
            Ok(()) => assert!(out.len() <= limit, "{} bytes past a limit of {limit}", out.len()),
            Err(InflateError::TooBig | InflateError::Corrupt) => break,
        }
    }
    // As our own messages: two of them, so a kept context is exercised too.
    let mut deflate = Compressor::new(u32::from(control % 10), 9 + (control % 7), reset);
    let mut inflate = Decompressor::new(reset);
    for message in [rest, &rest[rest.len() / 2..]] {
        let mut compressed = BytesMut::new();
        deflate.compress(message, &mut compressed);
        let mut back = BytesMut::new();
        inflate.decompress(&compressed, true, &mut back, message.len().max(1)).expect("our own output inflates");
        assert_eq!(&back[..], message);
    }
});
