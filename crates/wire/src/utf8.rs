//! Incremental UTF-8 validation for text messages that arrive in pieces.
//!
//! A text message may be split across frames, and a frame across reads, at any byte, even inside a
//! character. The validator keeps the (at most three) bytes of an unfinished character between pieces
//! and reports an error at the first byte that can never become valid, so a connection fails fast
//! instead of after buffering the whole message.

/// Validates a byte stream piece by piece.
#[derive(Clone, Debug, Default)]
pub struct Utf8Validator {
    /// Bytes of a character cut by the end of the previous piece.
    pending: [u8; 4],
    pending_len: u8,
}

/// The stream is not UTF-8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Utf8Error;

impl Utf8Validator {
    /// A validator at the start of a message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether a character is cut by the end of the bytes seen so far.
    pub fn is_incomplete(&self) -> bool {
        self.pending_len != 0
    }

    /// Feeds the next piece. Fails as soon as the bytes seen so far cannot start a valid UTF-8 string.
    pub fn feed(&mut self, mut piece: &[u8]) -> Result<(), Utf8Error> {
        if self.pending_len != 0 {
            // Complete the cut character from the front of this piece, one byte at a time.
            while self.pending_len != 0 {
                let Some((&byte, rest)) = piece.split_first() else {
                    return Ok(());
                };
                self.pending[usize::from(self.pending_len)] = byte;
                self.pending_len += 1;
                piece = rest;
                match std::str::from_utf8(&self.pending[..usize::from(self.pending_len)]) {
                    Ok(_) => self.pending_len = 0,
                    Err(e) if e.error_len().is_some() => return Err(Utf8Error),
                    Err(_) => {}
                }
            }
        }
        match simdutf8::compat::from_utf8(piece) {
            Ok(_) => Ok(()),
            Err(e) => match e.error_len() {
                Some(_) => Err(Utf8Error),
                None => {
                    let tail = &piece[e.valid_up_to()..];
                    self.pending[..tail.len()].copy_from_slice(tail);
                    self.pending_len = tail.len() as u8;
                    Ok(())
                }
            },
        }
    }

    /// Ends the message: fails if a character is left unfinished. Resets for the next message.
    pub fn finish(&mut self) -> Result<(), Utf8Error> {
        let incomplete = self.is_incomplete();
        self.pending_len = 0;
        if incomplete {
            Err(Utf8Error)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_split(bytes: &[u8], at: &[usize]) -> Result<(), Utf8Error> {
        let mut v = Utf8Validator::new();
        let mut start = 0;
        for &cut in at {
            v.feed(&bytes[start..cut])?;
            start = cut;
        }
        v.feed(&bytes[start..])?;
        v.finish()
    }

    #[test]
    fn accepts_valid_text_split_at_every_byte() {
        let text = "Hello-µ@ßöäüàá-UTF-8!! κόσμε 𝄞".as_bytes();
        for i in 0..=text.len() {
            for j in i..=text.len() {
                assert_eq!(feed_split(text, &[i, j]), Ok(()), "split at {i},{j}");
            }
        }
    }

    #[test]
    fn fails_at_the_first_impossible_byte_even_mid_message() {
        // Autobahn 6.4.1: "κόσμε" then 0xF4 0x90 (beyond U+10FFFF), then more bytes.
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed("κόσμε".as_bytes()), Ok(()));
        assert_eq!(v.feed(&[0xF4]), Ok(()));
        assert_eq!(v.feed(&[0x90]), Err(Utf8Error));
    }

    #[test]
    fn rejects_truncated_overlong_and_surrogate_sequences() {
        for bad in [&[0xCE][..], &[0xC0, 0x80], &[0xED, 0xA0, 0x80], &[0xF8, 0x88, 0x80, 0x80, 0x80], &[0xFF]] {
            for cut in 0..=bad.len() {
                assert_eq!(feed_split(bad, &[cut]), Err(Utf8Error), "{bad:?} cut at {cut}");
            }
        }
    }
}
