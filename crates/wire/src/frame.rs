//! Frame headers (RFC 6455 section 5.2): parsing from and writing into byte buffers.

use bytes::{BufMut, BytesMut};

use crate::OpCode;

/// The largest header: 2 fixed bytes, 8 bytes of extended length, 4 bytes of mask key.
pub const MAX_HEADER_LEN: usize = 14;

/// Reserved bit 1: set on the first frame of a compressed message when permessage-deflate is on.
pub const RSV1: u8 = 0b100;

/// A parsed frame header. The opcode is kept raw so the caller can report a reserved one precisely.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Final fragment of a message.
    pub fin: bool,
    /// The three reserved bits, RSV1 as `0b100`.
    pub rsv: u8,
    /// The raw four-bit opcode.
    pub opcode: u8,
    /// The masking key, present on every client-to-server frame.
    pub mask: Option<[u8; 4]>,
    /// The payload length.
    pub payload_len: u64,
}

/// A header that cannot be parsed at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// The 64-bit length had its most significant bit set (RFC 6455 section 5.2).
    LengthOverflow,
}

impl FrameHeader {
    /// Parses a header from the start of `buf`. `Ok(None)` means more bytes are needed; otherwise returns
    /// the header and its length in bytes.
    #[inline]
    pub fn parse(buf: &[u8]) -> Result<Option<(Self, usize)>, HeaderError> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let first = buf[0];
        let second = buf[1];
        let masked = second & 0x80 != 0;
        let (payload_len, mut pos) = match second & 0x7F {
            126 => {
                if buf.len() < 4 {
                    return Ok(None);
                }
                (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
            }
            127 => {
                if buf.len() < 10 {
                    return Ok(None);
                }
                let mut len = [0u8; 8];
                len.copy_from_slice(&buf[2..10]);
                let len = u64::from_be_bytes(len);
                if len >> 63 != 0 {
                    return Err(HeaderError::LengthOverflow);
                }
                (len, 10)
            }
            short => (u64::from(short), 2),
        };
        let mask = if masked {
            if buf.len() < pos + 4 {
                return Ok(None);
            }
            let key = [buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]];
            pos += 4;
            Some(key)
        } else {
            None
        };
        let header =
            Self { fin: first & 0x80 != 0, rsv: (first >> 4) & 0b111, opcode: first & 0x0F, mask, payload_len };
        Ok(Some((header, pos)))
    }

    /// Writes a header into `out`, returning how many bytes it used.
    #[inline]
    pub fn write(
        fin: bool,
        rsv: u8,
        opcode: OpCode,
        mask: Option<[u8; 4]>,
        payload_len: usize,
        out: &mut [u8; MAX_HEADER_LEN],
    ) -> usize {
        out[0] = (u8::from(fin) << 7) | ((rsv & 0b111) << 4) | opcode.as_u8();
        let mask_bit = if mask.is_some() { 0x80 } else { 0 };
        let mut pos = if payload_len < 126 {
            out[1] = mask_bit | payload_len as u8;
            2
        } else if payload_len <= usize::from(u16::MAX) {
            out[1] = mask_bit | 126;
            out[2..4].copy_from_slice(&(payload_len as u16).to_be_bytes());
            4
        } else {
            out[1] = mask_bit | 127;
            out[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
            10
        };
        if let Some(key) = mask {
            out[pos..pos + 4].copy_from_slice(&key);
            pos += 4;
        }
        pos
    }

    /// Appends a header to `out`.
    #[inline]
    pub fn encode(fin: bool, rsv: u8, opcode: OpCode, mask: Option<[u8; 4]>, payload_len: usize, out: &mut BytesMut) {
        let mut header = [0u8; MAX_HEADER_LEN];
        let len = Self::write(fin, rsv, opcode, mask, payload_len, &mut header);
        out.put_slice(&header[..len]);
    }
}

/// Encodes a frame from raw header fields: `first_byte` is FIN, RSV and the opcode bits exactly as
/// they go on the wire, so reserved opcodes and bits can be produced. With `mask`, the payload is
/// masked as a client sends it. Meant for conformance tests and fuzzing seeds.
pub fn encode_raw_frame(first_byte: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + MAX_HEADER_LEN);
    out.push(first_byte);
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let start = out.len() + mask.map_or(0, |_| 4);
    if let Some(key) = mask {
        out.extend_from_slice(&key);
    }
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        crate::apply_mask(&mut out[start..], key, 0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc_examples() {
        // RFC 6455 section 5.7: a single-frame unmasked text message "Hello".
        let (h, n) = FrameHeader::parse(&[0x81, 0x05, b'H']).unwrap().unwrap();
        assert_eq!((h.fin, h.rsv, h.opcode, h.mask, h.payload_len, n), (true, 0, 1, None, 5, 2));
        // A masked one.
        let (h, n) = FrameHeader::parse(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d]).unwrap().unwrap();
        assert_eq!((h.mask, n), (Some([0x37, 0xfa, 0x21, 0x3d]), 6));
        // 256 bytes binary, 16-bit length.
        let (h, n) = FrameHeader::parse(&[0x82, 0x7E, 0x01, 0x00]).unwrap().unwrap();
        assert_eq!((h.opcode, h.payload_len, n), (2, 256, 4));
        // 64 KiB binary, 64-bit length.
        let (h, n) = FrameHeader::parse(&[0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]).unwrap().unwrap();
        assert_eq!((h.payload_len, n), (65536, 10));
    }

    #[test]
    fn incomplete_headers_ask_for_more() {
        for buf in [&[][..], &[0x81], &[0x82, 0x7E, 0x01], &[0x82, 0x7F, 0, 0, 0], &[0x81, 0x85, 1, 2, 3]] {
            assert_eq!(FrameHeader::parse(buf), Ok(None), "{buf:?}");
        }
    }

    #[test]
    fn rejects_a_64_bit_length_with_the_top_bit_set() {
        assert_eq!(FrameHeader::parse(&[0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0]), Err(HeaderError::LengthOverflow));
    }

    #[test]
    fn write_then_parse_round_trips_every_length_class() {
        for len in [0usize, 1, 125, 126, 65535, 65536, 1 << 40] {
            for mask in [None, Some([9, 8, 7, 6])] {
                let mut out = [0u8; MAX_HEADER_LEN];
                let n = FrameHeader::write(false, RSV1, OpCode::Binary, mask, len, &mut out);
                let (h, m) = FrameHeader::parse(&out[..n]).unwrap().unwrap();
                assert_eq!((h.fin, h.rsv, h.opcode, h.mask, h.payload_len, m), (false, RSV1, 2, mask, len as u64, n));
            }
        }
    }
}
