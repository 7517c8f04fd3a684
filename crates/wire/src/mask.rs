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
    // Eight bytes at a time with unaligned loads and stores: no alignment prologue, so a 20-byte chat
    // message costs two word operations and four byte ones.
    let key32 = u32::from_ne_bytes(key);
    let key64 = u64::from(key32) | (u64::from(key32) << 32);
    let (words, rest) = buf.as_chunks_mut::<8>();
    for word in words {
        *word = (u64::from_ne_bytes(*word) ^ key64).to_ne_bytes();
    }
    // The remainder starts at a multiple of 8 bytes, so at the start of the key cycle.
    for (i, byte) in rest.iter_mut().enumerate() {
        *byte ^= key[i & 3];
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
