//! The connection state machine: turns received bytes into events and outgoing messages into bytes.
//!
//! `Connection` does no I/O. The caller appends whatever it read to a `BytesMut` and calls
//! [`Connection::receive`] until it returns `Ok(None)`; it encodes outgoing frames with the `encode_*`
//! methods into its own write buffer. On `Err`, the caller sends the close frame that
//! [`Connection::fail`] encodes and closes the transport.

use bytes::{Buf, Bytes, BytesMut};

use crate::deflate::{Compressor, Decompressor, DeflateParams, InflateError};
use crate::frame::{FrameHeader, HeaderError, RSV1};
use crate::utf8::Utf8Validator;
use crate::{apply_mask, CloseFrame, ClosePayloadError, OpCode, ProtocolError};

/// Which end of the connection we are. Clients mask what they send; servers require masking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Accepts connections: expects masked frames, sends unmasked ones.
    Server,
    /// Opens connections: sends masked frames, expects unmasked ones.
    Client,
}

/// Limits and negotiated options for one connection.
#[derive(Clone, Debug)]
pub struct Config {
    /// The largest frame payload accepted (default 16 MiB).
    pub max_frame_size: usize,
    /// The largest message accepted, after decompression (default 16 MiB).
    pub max_message_size: usize,
    /// permessage-deflate parameters, when negotiated.
    pub deflate: Option<DeflateParams>,
    /// Compression level for outgoing messages (0-9, default 1).
    pub compression_level: u32,
    /// Outgoing messages shorter than this are sent uncompressed even when deflate is on: DEFLATE makes
    /// tiny payloads bigger.
    pub compression_threshold: usize,
    /// The most frames one incoming message may come in (default 131 072, which lets a 16 MiB
    /// message arrive in 128-byte fragments). More is `TooManyFragments` (1009): without a bound a
    /// peer could send a large message one byte per frame.
    pub max_fragments: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_frame_size: 16 << 20,
            max_message_size: 16 << 20,
            deflate: None,
            compression_level: 1,
            compression_threshold: 32,
            max_fragments: 1 << 17,
        }
    }
}

/// The kind of a data message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// UTF-8 text (validated).
    Text,
    /// Arbitrary bytes.
    Binary,
}

/// Something the peer sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A complete message. Text is guaranteed to be valid UTF-8.
    Message(MessageKind, Bytes),
    /// A ping; answer it with [`Connection::encode_pong`] (the async layers do this on their own).
    Ping(Bytes),
    /// A pong.
    Pong(Bytes),
    /// The peer's close frame (`None`: no status code). If we had not sent one, reply with
    /// [`Connection::encode_close`].
    Close(Option<CloseFrame>),
}

/// Where the closing handshake stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseState {
    /// Neither side has sent a close frame.
    Open,
    /// We sent a close frame and wait for the peer's.
    CloseSent,
    /// The peer sent a close frame and we have not answered yet.
    CloseReceived,
    /// Both close frames were exchanged, or the connection failed: the transport should be closed.
    Closed,
}

/// The frame whose payload is being received.
#[derive(Debug)]
struct InFrame {
    header: FrameHeader,
    opcode: OpCode,
    len: usize,
    /// Payload bytes at the front of the input that are already unmasked and validated.
    done: usize,
}

/// A fragmented or compressed message being assembled.
#[derive(Debug)]
struct InMessage {
    kind: MessageKind,
    compressed: bool,
    data: BytesMut,
    /// Frames received so far.
    fragments: usize,
}

/// A WebSocket connection's protocol state, for either role.
#[derive(Debug)]
pub struct Connection {
    role: Role,
    config: Config,
    state: CloseState,
    frame: Option<InFrame>,
    message: Option<InMessage>,
    utf8: Utf8Validator,
    // Boxed: most connections never compress, and these would triple the size of every one.
    compressor: Option<Box<Compressor>>,
    decompressor: Option<Box<Decompressor>>,
    mask_state: u64,
}

impl Connection {
    /// A connection in the open state. `seed` feeds the masking-key generator of the client role (use
    /// random bytes); the server role ignores it.
    pub fn new(role: Role, config: Config, seed: u64) -> Self {
        Self {
            role,
            config,
            state: CloseState::Open,
            frame: None,
            message: None,
            utf8: Utf8Validator::new(),
            compressor: None,
            decompressor: None,
            mask_state: seed | 1,
        }
    }

    /// Our role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The limits and negotiated options.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Where the closing handshake stands.
    pub fn close_state(&self) -> CloseState {
        self.state
    }

    /// Whether data frames may still be sent (we have not sent our close frame).
    pub fn can_send_data(&self) -> bool {
        matches!(self.state, CloseState::Open | CloseState::CloseReceived)
    }

    /// Whether a received message or frame is in progress (bytes are buffered for it).
    pub fn is_mid_message(&self) -> bool {
        self.frame.is_some() || self.message.is_some()
    }

    /// Bytes of a fragmented or compressed message assembled so far (not counting the frame whose
    /// payload is still in the caller's input buffer).
    pub fn partial_len(&self) -> usize {
        self.message.as_ref().map_or(0, |m| m.data.len())
    }

    /// The size the message being received will have at least: what is assembled plus the declared
    /// length of the frame in progress (compressed messages may inflate to more).
    pub fn incoming_message_len(&self) -> usize {
        self.partial_len() + self.frame.as_ref().map_or(0, |f| f.len)
    }

    /// Parses the next event from the front of `input`, consuming what it used.
    ///
    /// Returns `Ok(None)` when more bytes are needed. After an error, or once the peer's close frame has
    /// arrived, the rest of the input is discarded.
    pub fn receive(&mut self, input: &mut BytesMut) -> Result<Option<Event>, ProtocolError> {
        loop {
            if matches!(self.state, CloseState::CloseReceived | CloseState::Closed) {
                input.clear();
                return Ok(None);
            }
            if self.frame.is_none() {
                let Some(frame) = self.parse_header(input)? else { return Ok(None) };
                self.frame = Some(frame);
            }
            if !self.advance_payload(input)? {
                return Ok(None);
            }
            let Some(frame) = self.frame.take() else { return Ok(None) };
            let payload = input.split_to(frame.len);
            if let Some(event) = self.complete_frame(frame, payload)? {
                return Ok(Some(event));
            }
        }
    }

    fn parse_header(&mut self, input: &mut BytesMut) -> Result<Option<InFrame>, ProtocolError> {
        let (header, header_len) = match FrameHeader::parse(input) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return Ok(None),
            Err(HeaderError::LengthOverflow) => return Err(ProtocolError::LengthOverflow),
        };
        let opcode = OpCode::from_u8(header.opcode).ok_or(ProtocolError::ReservedOpcode(header.opcode))?;
        let rsv_allowed =
            if self.config.deflate.is_some() && matches!(opcode, OpCode::Text | OpCode::Binary) { RSV1 } else { 0 };
        if header.rsv & !rsv_allowed != 0 {
            return Err(ProtocolError::ReservedBits(header.rsv));
        }
        match (self.role, header.mask.is_some()) {
            (Role::Server, false) => return Err(ProtocolError::UnmaskedFrame),
            (Role::Client, true) => return Err(ProtocolError::MaskedFrame),
            _ => {}
        }
        if opcode.is_control() {
            if !header.fin {
                return Err(ProtocolError::FragmentedControlFrame);
            }
            if header.payload_len > 125 {
                return Err(ProtocolError::ControlFrameTooLong(header.payload_len));
            }
        } else {
            match (opcode, &self.message) {
                (OpCode::Continuation, None) => return Err(ProtocolError::UnexpectedContinuation),
                (OpCode::Text | OpCode::Binary, Some(_)) => return Err(ProtocolError::ExpectedContinuation),
                (OpCode::Continuation, Some(message)) if message.fragments >= self.config.max_fragments => {
                    return Err(ProtocolError::TooManyFragments { limit: self.config.max_fragments });
                }
                _ => {}
            }
            if header.payload_len > self.config.max_frame_size as u64 {
                return Err(ProtocolError::FrameTooBig { size: header.payload_len, limit: self.config.max_frame_size });
            }
            let compressed = header.rsv & RSV1 != 0 || self.message.as_ref().is_some_and(|m| m.compressed);
            let buffered = self.message.as_ref().map_or(0, |m| m.data.len()) as u64;
            if !compressed && buffered + header.payload_len > self.config.max_message_size as u64 {
                return Err(ProtocolError::MessageTooBig { limit: self.config.max_message_size });
            }
        }
        // Dropping the header bytes moves a pointer; `split_to` would make the buffer shared.
        input.advance(header_len);
        // The length fits in usize: it is at most max_frame_size or 125.
        Ok(Some(InFrame { header, opcode, len: header.payload_len as usize, done: 0 }))
    }

    /// Unmasks and (for uncompressed text) validates newly arrived payload bytes. Returns whether the
    /// whole payload is here.
    fn advance_payload(&mut self, input: &mut BytesMut) -> Result<bool, ProtocolError> {
        let Some(frame) = self.frame.as_mut() else { return Ok(false) };
        let available = frame.len.min(input.len());
        if available > frame.done {
            let fresh = &mut input[frame.done..available];
            if let Some(key) = frame.header.mask {
                apply_mask(fresh, key, frame.done);
            }
            let is_text = match frame.opcode {
                OpCode::Text => frame.header.rsv & RSV1 == 0,
                OpCode::Continuation => {
                    self.message.as_ref().is_some_and(|m| m.kind == MessageKind::Text && !m.compressed)
                }
                _ => false,
            };
            if is_text {
                self.utf8.feed(fresh).map_err(|_| ProtocolError::InvalidUtf8)?;
            }
            frame.done = available;
        }
        Ok(available == frame.len)
    }

    fn complete_frame(&mut self, frame: InFrame, payload: BytesMut) -> Result<Option<Event>, ProtocolError> {
        match frame.opcode {
            OpCode::Ping => Ok(self.deliver_control(Event::Ping(payload.freeze()))),
            OpCode::Pong => Ok(self.deliver_control(Event::Pong(payload.freeze()))),
            OpCode::Close => self.receive_close(&payload).map(Some),
            OpCode::Text | OpCode::Binary => {
                let kind = if frame.opcode == OpCode::Text { MessageKind::Text } else { MessageKind::Binary };
                let compressed = frame.header.rsv & RSV1 != 0;
                if frame.header.fin && !compressed {
                    // The common case: a whole message in one frame, handed over without a copy.
                    return self.finish_message(kind, payload);
                }
                let mut message = InMessage { kind, compressed, data: BytesMut::new(), fragments: 1 };
                self.append(&mut message, &payload, frame.header.fin)?;
                if frame.header.fin {
                    return self.finish_message(kind, message.data);
                }
                self.message = Some(message);
                Ok(None)
            }
            OpCode::Continuation => {
                let Some(mut message) = self.message.take() else { return Err(ProtocolError::UnexpectedContinuation) };
                message.fragments += 1;
                self.append(&mut message, &payload, frame.header.fin)?;
                if frame.header.fin {
                    return self.finish_message(message.kind, message.data);
                }
                self.message = Some(message);
                Ok(None)
            }
        }
    }

    /// Pings and pongs are passed on while open; once we have sent our close they are dropped.
    fn deliver_control(&self, event: Event) -> Option<Event> {
        (self.state == CloseState::Open).then_some(event)
    }

    fn append(&mut self, message: &mut InMessage, payload: &[u8], fin: bool) -> Result<(), ProtocolError> {
        let limit = self.config.max_message_size;
        if !message.compressed {
            message.data.extend_from_slice(payload);
            return Ok(());
        }
        let reset = match self.role {
            Role::Server => self.config.deflate.is_some_and(|d| d.client_no_context_takeover),
            Role::Client => self.config.deflate.is_some_and(|d| d.server_no_context_takeover),
        };
        let decompressor = self.decompressor.get_or_insert_with(|| Box::new(Decompressor::new(reset)));
        let before = message.data.len();
        decompressor.decompress(payload, fin, &mut message.data, limit).map_err(|e| match e {
            InflateError::Corrupt => ProtocolError::CorruptCompression,
            InflateError::TooBig => ProtocolError::MessageTooBig { limit },
        })?;
        if message.kind == MessageKind::Text {
            self.utf8.feed(&message.data[before..]).map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        Ok(())
    }

    fn finish_message(&mut self, kind: MessageKind, data: BytesMut) -> Result<Option<Event>, ProtocolError> {
        if kind == MessageKind::Text {
            self.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        // Data may still arrive after we sent our close frame, until the peer's close (RFC 6455
        // section 1.4); it is delivered, since the peer sent it before it saw our close.
        Ok(Some(Event::Message(kind, data.freeze())))
    }

    fn receive_close(&mut self, payload: &[u8]) -> Result<Event, ProtocolError> {
        let frame = CloseFrame::parse(payload).map_err(|e| match e {
            ClosePayloadError::OneByte => ProtocolError::CloseOneByte,
            ClosePayloadError::InvalidCode(code) => ProtocolError::InvalidCloseCode(code),
            ClosePayloadError::InvalidUtf8 => ProtocolError::InvalidCloseReason,
        })?;
        self.state = match self.state {
            CloseState::Open => CloseState::CloseReceived,
            _ => CloseState::Closed,
        };
        self.frame = None;
        self.message = None;
        Ok(Event::Close(frame))
    }

    /// Records a failure: the connection is closed and the close frame for `error` is appended to `out`
    /// (unless we already sent one). The caller then closes the transport.
    pub fn fail(&mut self, error: &ProtocolError, out: &mut BytesMut) {
        if self.state == CloseState::Open || self.state == CloseState::CloseReceived {
            let frame = CloseFrame::new(error.close_code(), error.to_string());
            self.encode_control(OpCode::Close, &frame.to_payload(), out);
        }
        self.state = CloseState::Closed;
        self.frame = None;
        self.message = None;
    }

    /// Appends a data message, compressed when negotiated and worthwhile. Returns `false` (and writes
    /// nothing) once we have sent a close frame.
    pub fn encode_message(&mut self, kind: MessageKind, payload: &[u8], out: &mut BytesMut) -> bool {
        if !matches!(self.state, CloseState::Open | CloseState::CloseReceived) {
            return false;
        }
        let opcode = if kind == MessageKind::Text { OpCode::Text } else { OpCode::Binary };
        match self.config.deflate {
            Some(params) if payload.len() >= self.config.compression_threshold => {
                let (bits, reset) = match self.role {
                    Role::Server => (params.server_max_window_bits, params.server_no_context_takeover),
                    Role::Client => (params.client_max_window_bits, params.client_no_context_takeover),
                };
                let level = self.config.compression_level;
                let mut compressed = BytesMut::with_capacity(payload.len() / 2 + 16);
                if reset {
                    // Without context takeover nothing carries over between messages, so one compressor
                    // per thread and setting serves every connection: a zlib state is ~256 KiB.
                    compress_shared(level, bits, payload, &mut compressed);
                } else {
                    let compressor =
                        self.compressor.get_or_insert_with(|| Box::new(Compressor::new(level, bits, false)));
                    compressor.compress(payload, &mut compressed);
                }
                self.encode_frame(opcode, RSV1, &compressed, out);
            }
            _ => self.encode_frame(opcode, 0, payload, out),
        }
        true
    }

    /// Appends a ping (payload cut to 125 bytes).
    pub fn encode_ping(&mut self, payload: &[u8], out: &mut BytesMut) {
        if self.state == CloseState::Open {
            self.encode_control(OpCode::Ping, payload, out);
        }
    }

    /// Appends a pong (payload cut to 125 bytes).
    pub fn encode_pong(&mut self, payload: &[u8], out: &mut BytesMut) {
        if matches!(self.state, CloseState::Open) {
            self.encode_control(OpCode::Pong, payload, out);
        }
    }

    /// Appends our close frame and advances the closing handshake. `None` sends an empty close (no
    /// status). Returns `false` if we had already sent one.
    pub fn encode_close(&mut self, frame: Option<&CloseFrame>, out: &mut BytesMut) -> bool {
        let next = match self.state {
            CloseState::Open => CloseState::CloseSent,
            CloseState::CloseReceived => CloseState::Closed,
            CloseState::CloseSent | CloseState::Closed => return false,
        };
        let payload = frame.map(CloseFrame::to_payload).unwrap_or_default();
        self.encode_control(OpCode::Close, &payload, out);
        self.state = next;
        true
    }

    /// Marks the connection closed without a close frame (transport lost or terminated).
    pub fn abort(&mut self) {
        self.state = CloseState::Closed;
    }

    fn encode_control(&mut self, opcode: OpCode, payload: &[u8], out: &mut BytesMut) {
        let payload = &payload[..payload.len().min(125)];
        self.encode_frame(opcode, 0, payload, out);
    }

    fn encode_frame(&mut self, opcode: OpCode, rsv: u8, payload: &[u8], out: &mut BytesMut) {
        match self.role {
            Role::Server => encode_frame(opcode, rsv, payload, out),
            Role::Client => {
                let key = self.next_mask();
                FrameHeader::encode(true, rsv, opcode, Some(key), payload.len(), out);
                let start = out.len();
                out.extend_from_slice(payload);
                apply_mask(&mut out[start..], key, 0);
            }
        }
    }

    /// xorshift64*: masking keys only need to be unpredictable to scripts in a browser, which cannot
    /// observe this generator; the seed comes from the OS.
    fn next_mask(&mut self) -> [u8; 4] {
        let mut x = self.mask_state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.mask_state = x;
        let out = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
        ((out >> 32) as u32).to_ne_bytes()
    }
}

thread_local! {
    /// Compressors that reset after every message, by (level, window bits), shared by the connections
    /// of this thread that negotiated no context takeover.
    static SHARED_COMPRESSORS: std::cell::RefCell<Vec<((u32, u8), Compressor)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Compresses one whole message with this thread's reset-per-message compressor for the setting.
fn compress_shared(level: u32, bits: u8, payload: &[u8], out: &mut BytesMut) {
    SHARED_COMPRESSORS.with(|compressors| {
        let mut compressors = compressors.borrow_mut();
        let index = match compressors.iter().position(|(key, _)| *key == (level, bits)) {
            Some(index) => index,
            None => {
                compressors.push(((level, bits), Compressor::new(level, bits, true)));
                compressors.len() - 1
            }
        };
        compressors[index].1.compress(payload, out);
    });
}

/// Appends one unmasked, final frame: what a server sends. Encoding a publication once with this and
/// sending the same bytes to every subscriber is how fan-out avoids per-peer work.
pub fn encode_frame(opcode: OpCode, rsv: u8, payload: &[u8], out: &mut BytesMut) {
    out.reserve(payload.len() + 10);
    FrameHeader::encode(true, rsv, opcode, None, payload.len(), out);
    out.extend_from_slice(payload);
}

/// A server frame as its own buffer.
pub fn server_frame(kind: MessageKind, payload: &[u8]) -> Bytes {
    let opcode = if kind == MessageKind::Text { OpCode::Text } else { OpCode::Binary };
    let mut out = BytesMut::with_capacity(payload.len() + 10);
    encode_frame(opcode, 0, payload, &mut out);
    out.freeze()
}

/// A compressed server frame as its own buffer, made with this thread's reset-per-message compressor
/// for `level` and `window_bits`. Such a frame can be shared by every peer that negotiated
/// `server_no_context_takeover` with that window: none of them keeps state between messages.
pub fn server_frame_compressed(kind: MessageKind, payload: &[u8], level: u32, window_bits: u8) -> Bytes {
    let opcode = if kind == MessageKind::Text { OpCode::Text } else { OpCode::Binary };
    let mut compressed = BytesMut::with_capacity(payload.len() / 2 + 64);
    compress_shared(level, window_bits, payload, &mut compressed);
    let mut out = BytesMut::with_capacity(compressed.len() + 10);
    encode_frame(opcode, RSV1, &compressed, &mut out);
    out.freeze()
}
