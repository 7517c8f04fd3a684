//! Frame opcodes (RFC 6455 section 5.2).

/// The opcode of a frame. Reserved values are rejected by the decoder, so they have no variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// A continuation of a fragmented message.
    Continuation,
    /// The first (or only) frame of a text message.
    Text,
    /// The first (or only) frame of a binary message.
    Binary,
    /// Starts or answers the closing handshake.
    Close,
    /// A keep-alive or round-trip probe; must be answered with a pong.
    Ping,
    /// The answer to a ping, or an unsolicited heartbeat.
    Pong,
}

impl OpCode {
    /// Decodes the low four bits of the first header byte; `None` for the reserved opcodes 3-7 and 11-15.
    #[inline]
    pub fn from_u8(bits: u8) -> Option<Self> {
        Some(match bits {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            _ => return None,
        })
    }

    /// The four-bit wire value.
    #[inline]
    pub fn as_u8(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    /// Close, ping and pong: at most 125 bytes of payload and never fragmented.
    #[inline]
    pub fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}
