//! Protocol violations, each with the close code it earns.

use crate::CloseCode;

/// A violation of RFC 6455 or RFC 7692 by the peer, or a limit it exceeded.
///
/// Every variant maps to the close code to send (`close_code`); the message says what was wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// RSV bits set without an extension that defines them.
    #[error("reserved bits {0:#05b} are set but no extension defines them")]
    ReservedBits(u8),
    /// Opcodes 3-7 and 11-15.
    #[error("opcode {0:#x} is reserved")]
    ReservedOpcode(u8),
    /// Control frames carry at most 125 bytes.
    #[error("a control frame carries {0} bytes; the limit is 125")]
    ControlFrameTooLong(u64),
    /// Control frames must have FIN set.
    #[error("a control frame is fragmented")]
    FragmentedControlFrame,
    /// A continuation frame with no message in progress.
    #[error("a continuation frame arrived with no fragmented message to continue")]
    UnexpectedContinuation,
    /// A text or binary frame while a fragmented message is in progress.
    #[error("a new data frame arrived inside a fragmented message")]
    ExpectedContinuation,
    /// Client frames must be masked (server role).
    #[error("a client frame is not masked")]
    UnmaskedFrame,
    /// Server frames must not be masked (client role).
    #[error("a server frame is masked")]
    MaskedFrame,
    /// A 64-bit length with the top bit set.
    #[error("a 64-bit payload length has its most significant bit set")]
    LengthOverflow,
    /// A text message that is not UTF-8.
    #[error("a text message is not valid UTF-8")]
    InvalidUtf8,
    /// A close reason that is not UTF-8.
    #[error("a close reason is not valid UTF-8")]
    InvalidCloseReason,
    /// A close payload of one byte.
    #[error("a close frame has a one-byte payload")]
    CloseOneByte,
    /// A close code that may not be sent.
    #[error("close code {0} may not be sent on the wire")]
    InvalidCloseCode(u16),
    /// A frame larger than the frame limit.
    #[error("a frame of {size} bytes exceeds the limit of {limit} bytes")]
    FrameTooBig {
        /// The announced payload length.
        size: u64,
        /// The configured limit.
        limit: usize,
    },
    /// A message larger than the message limit.
    #[error("a message exceeds the limit of {limit} bytes")]
    MessageTooBig {
        /// The configured limit.
        limit: usize,
    },
    /// A message in more frames than `Config::max_fragments`.
    #[error("a message arrives in more than {limit} fragments")]
    TooManyFragments {
        /// The configured limit.
        limit: usize,
    },
    /// Compressed data that does not inflate.
    #[error("a compressed message is not valid DEFLATE data")]
    CorruptCompression,
}

impl ProtocolError {
    /// The close code to send for this violation: 1007 for bad payload data, 1009 for size limits,
    /// 1002 for everything else.
    pub fn close_code(&self) -> CloseCode {
        match self {
            Self::InvalidUtf8 | Self::InvalidCloseReason | Self::CorruptCompression => CloseCode::INVALID_PAYLOAD,
            Self::FrameTooBig { .. } | Self::MessageTooBig { .. } | Self::TooManyFragments { .. } => {
                CloseCode::MESSAGE_TOO_BIG
            }
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}
