//! Payload masking (RFC 6455 section 5.3).
//!
//! Masking is an XOR with a repeating 4-byte key. It runs on every byte a client sends, so it works a
//! machine word at a time instead of byte by byte.

/// XORs `buf` with `key`, starting at byte `offset` of the key cycle.
///
/// `offset` lets a payload that arrives in pieces be unmasked piece by piece: pass the number of payload
/// bytes already unmasked. Returns nothing; masking and unmasking are the same operation.
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let key = rotate_key(key, offset);
    // Short payloads (the common chat message) are done bytewise; the setup of the wide loop costs more.
    if buf.len() < 16 {
        for (i, byte) in buf.iter_mut().enumerate() {
            *byte ^= key[i & 3];
        }
        return;
    }
    let key64 = u64::from_ne_bytes([key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3]]);
    let (head, words, tail) = {
        // SAFETY: every bit pattern is a valid u64 and a valid u8; align_to_mut only splits the slice.
        unsafe { buf.align_to_mut::<u64>() }
    };
    for (i, byte) in head.iter_mut().enumerate() {
        *byte ^= key[i & 3];
    }
    // The words start `head.len()` bytes into the key cycle.
    let shift = head.len() & 3;
    let word_key = if shift == 0 {
        key64
    } else {
        let rotated = rotate_key(key, shift);
        u64::from_ne_bytes([
            rotated[0], rotated[1], rotated[2], rotated[3], rotated[0], rotated[1], rotated[2], rotated[3],
        ])
    };
    for word in words.iter_mut() {
        *word ^= word_key;
    }
    // Words are 8 bytes, a multiple of 4, so the tail starts where the head's cycle left off.
    let tail_key = rotate_key(key, shift);
    for (i, byte) in tail.iter_mut().enumerate() {
        *byte ^= tail_key[i & 3];
    }
}

#[inline]
fn rotate_key(key: [u8; 4], offset: usize) -> [u8; 4] {
    let mut k = key;
    k.rotate_left(offset & 3);
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(buf: &mut [u8], key: [u8; 4], offset: usize) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= key[(i + offset) & 3];
        }
    }

    #[test]
    fn matches_bytewise_masking_for_every_length_alignment_and_offset() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        let data: Vec<u8> = (0..200u32).map(|i| (i * 7 + 3) as u8).collect();
        for start in 0..8 {
            for len in 0..(data.len() - start) {
                for offset in 0..4 {
                    let mut fast = data.clone();
                    let mut slow = data.clone();
                    apply_mask(&mut fast[start..start + len], key, offset);
                    naive(&mut slow[start..start + len], key, offset);
                    assert_eq!(fast, slow, "start {start} len {len} offset {offset}");
                }
            }
        }
    }

    #[test]
    fn rfc_example_hello() {
        // RFC 6455 section 5.7: "Hello" masked with 37 fa 21 3d.
        let mut payload = *b"Hello";
        apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(payload, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    }

    #[test]
    fn masking_in_pieces_equals_masking_at_once() {
        let key = [1, 2, 3, 4];
        let data: Vec<u8> = (0..100u8).collect();
        let mut whole = data.clone();
        apply_mask(&mut whole, key, 0);
        let mut pieces = data.clone();
        let (a, rest) = pieces.split_at_mut(7);
        let (b, c) = rest.split_at_mut(30);
        apply_mask(a, key, 0);
        apply_mask(b, key, 7);
        apply_mask(c, key, 37);
        assert_eq!(whole, pieces);
    }
}
