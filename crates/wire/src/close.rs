//! Close codes and close frame payloads (RFC 6455 sections 5.5.1 and 7.4).

use bytes::{BufMut, Bytes, BytesMut};

/// A close status code, as carried in a close frame.
///
/// The associated constants name the codes that RFC 6455 and the IANA registry define.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose of the connection has been fulfilled.
    pub const NORMAL: Self = Self(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: Self = Self(1001);
    /// 1002: the peer broke the protocol.
    pub const PROTOCOL_ERROR: Self = Self(1002);
    /// 1003: the endpoint cannot accept this kind of data.
    pub const UNSUPPORTED_DATA: Self = Self(1003);
    /// 1005: no code was present (never sent on the wire).
    pub const NO_STATUS: Self = Self(1005);
    /// 1006: the connection dropped without a close frame (never sent on the wire).
    pub const ABNORMAL: Self = Self(1006);
    /// 1007: a text message (or close reason) was not valid UTF-8, or data did not match its type.
    pub const INVALID_PAYLOAD: Self = Self(1007);
    /// 1008: a message violated the endpoint's policy.
    pub const POLICY_VIOLATION: Self = Self(1008);
    /// 1009: a frame or message was larger than the endpoint accepts.
    pub const MESSAGE_TOO_BIG: Self = Self(1009);
    /// 1010: the client expected an extension the server did not negotiate.
    pub const MANDATORY_EXTENSION: Self = Self(1010);
    /// 1011: the server met an unexpected condition (a failing handler, a missed keep-alive).
    pub const INTERNAL_ERROR: Self = Self(1011);
    /// 1012: the service is restarting.
    pub const SERVICE_RESTART: Self = Self(1012);
    /// 1013: try again later (used here for slow consumers whose queue overflowed).
    pub const TRY_AGAIN_LATER: Self = Self(1013);
    /// 1014: a gateway received an invalid response upstream.
    pub const BAD_GATEWAY: Self = Self(1014);
    /// 1015: the TLS handshake failed (never sent on the wire).
    pub const TLS_HANDSHAKE: Self = Self(1015);

    /// Whether this code may appear in a close frame on the wire.
    ///
    /// Valid: 1000-1003, 1007-1014, and 3000-4999. Everything else, including the reserved 1004-1006
    /// and 1015, and the unassigned 1016-2999, is a protocol error when received.
    pub fn is_valid_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }

    /// Whether an application may pass this code to `close` (browsers allow only 1000 and 3000-4999;
    /// a server may also use the protocol codes it could send itself).
    pub fn is_sendable_by_application(self) -> bool {
        self.is_valid_on_wire()
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        Self(code)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> Self {
        code.0
    }
}

impl std::fmt::Display for CloseCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The payload of a close frame: a code and a UTF-8 reason of at most 123 bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code.
    pub code: CloseCode,
    /// The reason, possibly empty.
    pub reason: String,
}

/// Why a close frame payload was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClosePayloadError {
    /// A close payload of exactly one byte cannot hold a code.
    OneByte,
    /// The code is reserved or unassigned.
    InvalidCode(u16),
    /// The reason is not valid UTF-8.
    InvalidUtf8,
}

impl CloseFrame {
    /// Builds a close frame; the reason is cut at a character boundary to fit in 123 bytes.
    pub fn new(code: impl Into<CloseCode>, reason: impl Into<String>) -> Self {
        let mut reason = reason.into();
        truncate_reason(&mut reason);
        Self { code: code.into(), reason }
    }

    /// Parses a received close payload. `Ok(None)` means an empty payload (no status, 1005).
    pub fn parse(payload: &[u8]) -> Result<Option<Self>, ClosePayloadError> {
        match payload.len() {
            0 => Ok(None),
            1 => Err(ClosePayloadError::OneByte),
            _ => {
                let code = CloseCode(u16::from_be_bytes([payload[0], payload[1]]));
                if !code.is_valid_on_wire() {
                    return Err(ClosePayloadError::InvalidCode(code.0));
                }
                let reason = simdutf8::basic::from_utf8(&payload[2..]).map_err(|_| ClosePayloadError::InvalidUtf8)?;
                Ok(Some(Self { code, reason: reason.to_owned() }))
            }
        }
    }

    /// The wire payload: two bytes of code, then the reason.
    pub fn to_payload(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(2 + self.reason.len());
        buf.put_u16(self.code.0);
        buf.put_slice(self.reason.as_bytes());
        buf.freeze()
    }
}

/// Cuts a reason to the 123 bytes a close frame has room for, at a character boundary.
pub fn truncate_reason(reason: &mut String) {
    const MAX: usize = 123;
    if reason.len() > MAX {
        let mut end = MAX;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_validity_follows_rfc_6455_section_7_4() {
        for code in [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999] {
            assert!(CloseCode(code).is_valid_on_wire(), "{code} should be valid");
        }
        for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535] {
            assert!(!CloseCode(code).is_valid_on_wire(), "{code} should be invalid");
        }
    }

    #[test]
    fn parses_empty_one_byte_and_invalid_payloads() {
        assert_eq!(CloseFrame::parse(&[]), Ok(None));
        assert_eq!(CloseFrame::parse(&[0x03]), Err(ClosePayloadError::OneByte));
        assert_eq!(CloseFrame::parse(&[0x03, 0xEC]), Err(ClosePayloadError::InvalidCode(1004)));
        assert_eq!(CloseFrame::parse(&[0x03, 0xE8, 0xFF]), Err(ClosePayloadError::InvalidUtf8));
        let ok = CloseFrame::parse(&[0x03, 0xE8, b'b', b'y', b'e']).unwrap().unwrap();
        assert_eq!(ok, CloseFrame::new(1000, "bye"));
        assert_eq!(&ok.to_payload()[..], &[0x03, 0xE8, b'b', b'y', b'e']);
    }

    #[test]
    fn long_reasons_are_cut_at_a_character_boundary() {
        let frame = CloseFrame::new(1000, "é".repeat(100));
        assert!(frame.reason.len() <= 123);
        assert_eq!(frame.reason.len() % 2, 0);
    }
}
