//! RFC 7692 permessage-deflate: parameter negotiation and per-message (de)compression.
//!
//! Compression is raw DEFLATE with a sync flush per message; the trailing `00 00 ff ff` of the flush is
//! stripped on send and put back on receive. Inflation is bounded by the message size limit, so a small
//! compressed frame cannot expand into an out-of-memory ("zip bomb"): it fails with 1009 instead.

use bytes::{BufMut, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The extension token.
pub const EXTENSION_NAME: &str = "permessage-deflate";
const TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Our side's wishes for permessage-deflate, used to build an offer (client) or answer one (server).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeflateConfig {
    /// Compression level 0-9. Level 1 costs a fraction of the CPU of level 6 for most of the gain on
    /// chat-sized JSON.
    pub level: u32,
    /// Ask that the server resets its compressor after each message (saves the server's memory).
    pub server_no_context_takeover: bool,
    /// Ask that the client resets its compressor after each message.
    pub client_no_context_takeover: bool,
    /// The largest LZ77 window (9-15 bits) the server may use to compress.
    pub server_max_window_bits: u8,
    /// The largest LZ77 window (9-15 bits) the client may use to compress.
    pub client_max_window_bits: u8,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        Self {
            level: 1,
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }
    }
}

/// The parameters both sides agreed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server resets its compression context after each message.
    pub server_no_context_takeover: bool,
    /// The client resets its compression context after each message.
    pub client_no_context_takeover: bool,
    /// Window bits the server compresses with.
    pub server_max_window_bits: u8,
    /// Window bits the client compresses with.
    pub client_max_window_bits: u8,
}

/// A malformed `Sec-WebSocket-Extensions` offer or answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid permessage-deflate parameters: {0}")]
pub struct NegotiationError(pub String);

/// One extension from a `Sec-WebSocket-Extensions` header: its name and `name[=value]` parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtensionOffer {
    /// The extension token, e.g. `permessage-deflate`.
    pub name: String,
    /// Parameters in order; quoted values are unquoted.
    pub params: Vec<(String, Option<String>)>,
}

/// Parses the comma-separated extension list of one or more `Sec-WebSocket-Extensions` header values.
pub fn parse_extensions<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<ExtensionOffer> {
    let mut out = Vec::new();
    for value in values {
        for item in value.split(',') {
            let mut parts = item.split(';').map(str::trim);
            let Some(name) = parts.next().filter(|n| !n.is_empty()) else { continue };
            let params = parts
                .filter(|p| !p.is_empty())
                .map(|p| match p.split_once('=') {
                    Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim().trim_matches('"').to_owned())),
                    None => (p.to_ascii_lowercase(), None),
                })
                .collect();
            out.push(ExtensionOffer { name: name.to_ascii_lowercase(), params });
        }
    }
    out
}

fn parse_window_bits(name: &str, value: &str) -> Result<u8, NegotiationError> {
    match value.parse::<u8>() {
        Ok(bits @ 8..=15) => Ok(bits),
        _ => Err(NegotiationError(format!("{name}={value} is not a window size from 8 to 15"))),
    }
}

/// What a client offered in one permessage-deflate offer.
#[derive(Default)]
struct Offer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: the client supports the parameter but named no limit.
    client_max_window_bits: Option<Option<u8>>,
}

fn parse_offer(offer: &ExtensionOffer) -> Result<Offer, NegotiationError> {
    let mut parsed = Offer::default();
    let mut seen = Vec::new();
    for (name, value) in &offer.params {
        if seen.contains(&name.as_str()) {
            return Err(NegotiationError(format!("{name} appears twice")));
        }
        seen.push(name.as_str());
        match (name.as_str(), value.as_deref()) {
            ("server_no_context_takeover", None) => parsed.server_no_context_takeover = true,
            ("client_no_context_takeover", None) => parsed.client_no_context_takeover = true,
            ("server_max_window_bits", Some(v)) => parsed.server_max_window_bits = Some(parse_window_bits(name, v)?),
            ("client_max_window_bits", None) => parsed.client_max_window_bits = Some(None),
            ("client_max_window_bits", Some(v)) => {
                parsed.client_max_window_bits = Some(Some(parse_window_bits(name, v)?))
            }
            (other, _) => return Err(NegotiationError(format!("unknown or malformed parameter {other}"))),
        }
    }
    Ok(parsed)
}

/// Server side: picks the first acceptable permessage-deflate offer. Returns the agreed parameters and
/// the `Sec-WebSocket-Extensions` response value, or `None` to decline compression.
///
/// An offer is declined when it is malformed or asks the server to compress with an 8-bit window, which
/// zlib cannot produce for raw DEFLATE; the next offer is tried.
pub fn negotiate_server(offers: &[ExtensionOffer], config: &DeflateConfig) -> Option<(DeflateParams, String)> {
    for offer in offers.iter().filter(|o| o.name == EXTENSION_NAME) {
        let Ok(parsed) = parse_offer(offer) else { continue };
        let server_bits = parsed.server_max_window_bits.unwrap_or(15).min(config.server_max_window_bits.max(9));
        if server_bits < 9 {
            continue;
        }
        let client_bits = match parsed.client_max_window_bits {
            None => 15,
            Some(limit) => limit.unwrap_or(15).min(config.client_max_window_bits.max(8)),
        };
        let params = DeflateParams {
            server_no_context_takeover: parsed.server_no_context_takeover || config.server_no_context_takeover,
            client_no_context_takeover: parsed.client_no_context_takeover || config.client_no_context_takeover,
            server_max_window_bits: server_bits,
            client_max_window_bits: client_bits,
        };
        let mut answer = String::from(EXTENSION_NAME);
        if params.server_no_context_takeover {
            answer.push_str("; server_no_context_takeover");
        }
        if params.client_no_context_takeover {
            answer.push_str("; client_no_context_takeover");
        }
        if parsed.server_max_window_bits.is_some() || server_bits < 15 {
            answer.push_str(&format!("; server_max_window_bits={server_bits}"));
        }
        if parsed.client_max_window_bits.is_some() && client_bits < 15 {
            answer.push_str(&format!("; client_max_window_bits={client_bits}"));
        }
        return Some((params, answer));
    }
    None
}

/// Client side: the offer to send in `Sec-WebSocket-Extensions`.
pub fn client_offer(config: &DeflateConfig) -> String {
    let mut offer = String::from(EXTENSION_NAME);
    if config.server_no_context_takeover {
        offer.push_str("; server_no_context_takeover");
    }
    if config.client_no_context_takeover {
        offer.push_str("; client_no_context_takeover");
    }
    if config.server_max_window_bits < 15 {
        offer.push_str(&format!("; server_max_window_bits={}", config.server_max_window_bits.max(9)));
    }
    offer.push_str("; client_max_window_bits");
    if config.client_max_window_bits < 15 {
        offer.push_str(&format!("={}", config.client_max_window_bits.max(9)));
    }
    offer
}

/// Client side: validates the server's answer against what we offered (RFC 7692 section 7.1).
pub fn accept_client(answer: &ExtensionOffer, config: &DeflateConfig) -> Result<DeflateParams, NegotiationError> {
    let parsed = parse_offer(answer)?;
    let client_bits = match parsed.client_max_window_bits {
        None => config.client_max_window_bits.max(9),
        Some(None) => return Err(NegotiationError("client_max_window_bits needs a value in an answer".into())),
        Some(Some(bits)) => bits.max(9),
    };
    let server_bits = parsed.server_max_window_bits.unwrap_or(15);
    if server_bits > config.server_max_window_bits.max(9) && config.server_max_window_bits < 15 {
        return Err(NegotiationError(format!("server_max_window_bits={server_bits} exceeds our offer")));
    }
    if config.server_no_context_takeover && !parsed.server_no_context_takeover {
        return Err(NegotiationError("server_no_context_takeover was requested but not confirmed".into()));
    }
    Ok(DeflateParams {
        server_no_context_takeover: parsed.server_no_context_takeover,
        client_no_context_takeover: parsed.client_no_context_takeover || config.client_no_context_takeover,
        server_max_window_bits: server_bits,
        client_max_window_bits: client_bits,
    })
}

/// Compresses outgoing messages.
pub struct Compressor {
    inner: Compress,
    reset_each_message: bool,
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressor").field("reset_each_message", &self.reset_each_message).finish()
    }
}

impl Compressor {
    /// A compressor with the given level and window; `reset_each_message` is "no context takeover".
    pub fn new(level: u32, window_bits: u8, reset_each_message: bool) -> Self {
        // zlib cannot write raw DEFLATE with an 8-bit window; negotiation never agrees to one for us.
        let bits = window_bits.clamp(9, 15);
        Self { inner: Compress::new_with_window_bits(Compression::new(level.min(9)), false, bits), reset_each_message }
    }

    /// Appends the compressed form of `input` to `out`, without the trailing `00 00 ff ff`.
    pub fn compress(&mut self, input: &[u8], out: &mut BytesMut) {
        let start = out.len();
        let before_in = self.inner.total_in();
        loop {
            let consumed = (self.inner.total_in() - before_in) as usize;
            out.reserve((input.len() - consumed) / 2 + 64);
            let spare = out.spare_capacity_mut();
            let room = spare.len();
            // SAFETY: flate2 only writes into the slice; we expose only the bytes it reports as written.
            let spare = unsafe { &mut *(spare as *mut [std::mem::MaybeUninit<u8>] as *mut [u8]) };
            let before_out = self.inner.total_out();
            let status = self.inner.compress(&input[consumed..], spare, FlushCompress::Sync);
            let written = (self.inner.total_out() - before_out) as usize;
            // SAFETY: `written` bytes of the spare capacity were initialised by the compressor.
            unsafe { out.set_len(out.len() + written) };
            let all_in = (self.inner.total_in() - before_in) as usize == input.len();
            // With a sync flush, output room left over means the flush is complete. An error cannot
            // happen on a stream we alone write; stop rather than spin if it ever does.
            if status.is_err() || (all_in && written < room) {
                break;
            }
        }
        if out.len() - start >= 4 && out[out.len() - 4..] == TRAILER {
            out.truncate(out.len() - 4);
        }
        if out.len() == start {
            // An empty message compresses to an empty block: RFC 7692 section 7.2.3.6 allows a single 0x00.
            out.put_u8(0);
        }
        if self.reset_each_message {
            self.inner.reset();
        }
    }
}

/// Decompresses incoming messages, bounded by a size limit.
pub struct Decompressor {
    inner: Decompress,
    reset_each_message: bool,
}

impl std::fmt::Debug for Decompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decompressor").field("reset_each_message", &self.reset_each_message).finish()
    }
}

/// Why a compressed message could not be inflated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InflateError {
    /// The data is not valid DEFLATE.
    Corrupt,
    /// The message would grow past the size limit.
    TooBig,
}

impl Decompressor {
    /// A decompressor; `reset_each_message` is the peer's "no context takeover". Inflation always uses
    /// a 15-bit window, which decodes a stream written with any smaller one.
    pub fn new(reset_each_message: bool) -> Self {
        Self { inner: Decompress::new_with_window_bits(false, 15), reset_each_message }
    }

    /// Inflates one piece of a compressed message into `out`. Call with `last = true` for the final
    /// piece so the sync-flush trailer is fed. `out` may not grow past `limit` bytes.
    pub fn decompress(
        &mut self,
        input: &[u8],
        last: bool,
        out: &mut BytesMut,
        limit: usize,
    ) -> Result<(), InflateError> {
        self.feed(input, out, limit)?;
        if last {
            self.feed(&TRAILER, out, limit)?;
            if self.reset_each_message {
                self.inner.reset(false);
            }
        }
        Ok(())
    }

    fn feed(&mut self, input: &[u8], out: &mut BytesMut, limit: usize) -> Result<(), InflateError> {
        let before_in = self.inner.total_in();
        loop {
            let consumed = (self.inner.total_in() - before_in) as usize;
            let room = limit.saturating_sub(out.len());
            // One byte past the limit tells "exactly at the limit" from "over it".
            let want = (input.len() - consumed).saturating_mul(4).clamp(256, 64 * 1024).min(room + 1);
            out.reserve(want);
            let spare = &mut out.spare_capacity_mut()[..want];
            // SAFETY: flate2 only writes into the slice; we expose only the bytes it reports as written.
            let spare = unsafe { &mut *(spare as *mut [std::mem::MaybeUninit<u8>] as *mut [u8]) };
            let before_out = self.inner.total_out();
            let status = self
                .inner
                .decompress(&input[consumed..], spare, FlushDecompress::Sync)
                .map_err(|_| InflateError::Corrupt)?;
            let written = (self.inner.total_out() - before_out) as usize;
            // SAFETY: `written` bytes of the spare capacity were initialised by the decompressor.
            unsafe { out.set_len(out.len() + written) };
            if out.len() > limit {
                return Err(InflateError::TooBig);
            }
            let all_in = (self.inner.total_in() - before_in) as usize == input.len();
            match status {
                // The peer's stream ended with a final block: later messages in this context are an error.
                Status::StreamEnd => return if all_in { Ok(()) } else { Err(InflateError::Corrupt) },
                _ if all_in && written < want => return Ok(()),
                Status::BufError if written == 0 && all_in => return Ok(()),
                Status::BufError if written == 0 => return Err(InflateError::Corrupt),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offers(header: &str) -> Vec<ExtensionOffer> {
        parse_extensions([header])
    }

    #[test]
    fn parses_a_browser_offer() {
        let parsed = offers("permessage-deflate; client_max_window_bits, x-webkit-deflate-frame");
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].params, vec![("client_max_window_bits".to_string(), None)]);
    }

    #[test]
    fn server_accepts_the_default_browser_offer() {
        let (params, answer) =
            negotiate_server(&offers("permessage-deflate; client_max_window_bits"), &DeflateConfig::default()).unwrap();
        assert_eq!(answer, "permessage-deflate");
        assert_eq!(params.server_max_window_bits, 15);
    }

    #[test]
    fn server_honours_no_context_takeover_and_window_limits() {
        let (params, answer) = negotiate_server(
            &offers("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=12"),
            &DeflateConfig::default(),
        )
        .unwrap();
        assert!(params.server_no_context_takeover && params.client_no_context_takeover);
        assert_eq!((params.server_max_window_bits, params.client_max_window_bits), (10, 12));
        assert_eq!(answer, "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=12");
    }

    #[test]
    fn server_skips_malformed_offers_and_takes_the_next() {
        let header = "permessage-deflate; server_max_window_bits=7, permessage-deflate; foo, permessage-deflate; client_no_context_takeover; client_no_context_takeover, permessage-deflate; server_max_window_bits=8, permessage-deflate";
        let (_, answer) = negotiate_server(&offers(header), &DeflateConfig::default()).unwrap();
        assert_eq!(answer, "permessage-deflate");
        assert!(negotiate_server(&offers("permessage-deflate; server_max_window_bits=20"), &DeflateConfig::default())
            .is_none());
        assert!(negotiate_server(&offers("x-other"), &DeflateConfig::default()).is_none());
    }

    #[test]
    fn client_validates_the_answer() {
        let config = DeflateConfig::default();
        assert_eq!(client_offer(&config), "permessage-deflate; client_max_window_bits");
        assert!(accept_client(&offers("permessage-deflate")[0], &config).is_ok());
        assert!(accept_client(&offers("permessage-deflate; client_max_window_bits")[0], &config).is_err());
        assert!(accept_client(&offers("permessage-deflate; bogus")[0], &config).is_err());
        let params = accept_client(
            &offers("permessage-deflate; client_max_window_bits=10; server_no_context_takeover")[0],
            &config,
        )
        .unwrap();
        assert_eq!(params.client_max_window_bits, 10);
        assert!(params.server_no_context_takeover);
    }

    #[test]
    fn round_trips_messages_with_and_without_context_takeover() {
        for reset in [false, true] {
            let mut c = Compressor::new(1, 15, reset);
            let mut d = Decompressor::new(reset);
            for msg in [&b"Hello"[..], b"Hello", b"", &vec![b'x'; 100_000], b"Hello again"] {
                let mut compressed = BytesMut::new();
                c.compress(msg, &mut compressed);
                let mut out = BytesMut::new();
                d.decompress(&compressed, true, &mut out, 1 << 20).unwrap();
                assert_eq!(&out[..], msg);
            }
        }
    }

    #[test]
    fn rfc_7692_hello_example_decodes() {
        // RFC 7692 section 7.2.3.1: "Hello" compressed.
        let mut d = Decompressor::new(false);
        let mut out = BytesMut::new();
        d.decompress(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], true, &mut out, 100).unwrap();
        assert_eq!(&out[..], b"Hello");
    }

    #[test]
    fn inflation_stops_at_the_limit() {
        let mut c = Compressor::new(9, 15, false);
        let mut bomb = BytesMut::new();
        c.compress(&vec![0u8; 10 << 20], &mut bomb);
        assert!(bomb.len() < 20_000);
        let mut d = Decompressor::new(false);
        let mut out = BytesMut::new();
        assert_eq!(d.decompress(&bomb, true, &mut out, 1 << 20), Err(InflateError::TooBig));
        assert!(out.capacity() < 2 << 20, "buffer grew to {}", out.capacity());
    }

    #[test]
    fn corrupt_data_is_an_error() {
        let mut d = Decompressor::new(false);
        let mut out = BytesMut::new();
        assert_eq!(d.decompress(&[0xff, 0xff, 0xff, 0xff], true, &mut out, 100), Err(InflateError::Corrupt));
    }
}
