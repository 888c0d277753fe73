//! Reading a step's stdout or stderr into a bounded tail: memory stays at the limit whatever
//! the step prints, and the start of the kept text is cut on a character boundary.
//!
//! The limit bounds what is stored, too: the kept text, escaped as JSON (as the step's
//! outputs are stored and recorded in its events), is at most the limit in bytes. Bytes
//! that are not UTF-8 become U+FFFD (three bytes each) and control characters are escaped
//! (`\u0000`, six bytes), so text cut to the limit in raw bytes could be up to six times
//! larger once stored: the start is cut further until it fits.

use std::collections::VecDeque;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::sync::CancellationToken;

/// What was kept of one output stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    /// The last bytes of the stream, as UTF-8: invalid sequences become U+FFFD, and a
    /// character cut in half by the limit is dropped from the start. At most the limit in
    /// bytes once escaped as JSON (see the module docs).
    pub tail: String,
    /// Every byte the stream carried, kept or not.
    pub total_bytes: u64,
    /// Whether the start was dropped: `total_bytes` is over the limit, or the text was, once
    /// escaped as stored.
    pub truncated: bool,
}

/// The last `keep` bytes of a stream, and how many bytes it carried in all.
#[derive(Debug)]
pub(crate) struct Tail {
    keep: usize,
    bytes: VecDeque<u8>,
    total: u64,
}

impl Tail {
    pub(crate) fn new(keep: usize) -> Tail {
        Tail {
            keep,
            bytes: VecDeque::with_capacity(keep),
            total: 0,
        }
    }

    pub(crate) fn push(&mut self, chunk: &[u8]) {
        self.total = self.total.saturating_add(chunk.len() as u64);
        if chunk.len() >= self.keep {
            self.bytes.clear();
            self.bytes.extend(&chunk[chunk.len() - self.keep..]);
            return;
        }
        let overflow = (self.bytes.len() + chunk.len()).saturating_sub(self.keep);
        self.bytes.drain(..overflow);
        self.bytes.extend(chunk);
    }

    pub(crate) fn finish(mut self) -> Captured {
        let truncated = self.total > self.bytes.len() as u64;
        let mut kept: &[u8] = self.bytes.make_contiguous();
        if truncated {
            // The cut may have split a UTF-8 sequence: its continuation bytes (0b10xx_xxxx,
            // at most three) would otherwise show as a replacement character.
            let partial = kept
                .iter()
                .take(3)
                .take_while(|b| (**b & 0b1100_0000) == 0b1000_0000)
                .count();
            kept = &kept[partial..];
        }
        let text = String::from_utf8_lossy(kept);
        let (tail, cut) = fit_stored(&text, self.keep);
        Captured {
            tail: tail.to_owned(),
            total_bytes: self.total,
            truncated: truncated || cut,
        }
    }
}

/// The longest end of `text` whose JSON-escaped form is at most `limit` bytes, and whether
/// anything had to be cut.
fn fit_stored(text: &str, limit: usize) -> (&str, bool) {
    let mut size = 0usize;
    let mut start = text.len();
    for (at, c) in text.char_indices().rev() {
        size += stored_len(c);
        if size > limit {
            return (&text[start..], true);
        }
        start = at;
    }
    (text, false)
}

/// The bytes `c` takes in a JSON string.
fn stored_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

/// Reads `pipe` to its end, or until `stop` fires, keeping the last `keep` bytes.
pub(crate) async fn read_tail<R>(mut pipe: R, keep: usize, stop: CancellationToken) -> Captured
where
    R: AsyncRead + Unpin,
{
    const CHUNK: usize = 64 * 1024;
    let mut tail = Tail::new(keep);
    let mut buf = vec![0u8; CHUNK];
    loop {
        tokio::select! {
            // `stop` first: a stream that never pauses must not starve it.
            biased;
            () = stop.cancelled() => break,
            read = pipe.read(&mut buf) => match read {
                Ok(0) => break,
                Ok(n) => tail.push(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!(error = %e, "reading the step's output failed; keeping what was read");
                    break;
                }
            },
        }
    }
    tail.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn captured(keep: usize, chunks: &[&[u8]]) -> Captured {
        let mut tail = Tail::new(keep);
        for chunk in chunks {
            tail.push(chunk);
        }
        tail.finish()
    }

    #[test]
    fn output_under_the_limit_is_kept_whole() {
        let c = captured(10, &[b"abc", b"def"]);
        assert_eq!(c.tail, "abcdef");
        assert_eq!(c.total_bytes, 6);
        assert!(!c.truncated);
    }

    #[test]
    fn output_exactly_at_the_limit_is_not_truncated() {
        let c = captured(6, &[b"abc", b"def"]);
        assert_eq!(c.tail, "abcdef");
        assert!(!c.truncated);
    }

    #[test]
    fn only_the_last_bytes_are_kept_across_chunks() {
        let c = captured(4, &[b"abc", b"def", b"g"]);
        assert_eq!(c.tail, "defg");
        assert_eq!(c.total_bytes, 7);
        assert!(c.truncated);
    }

    #[test]
    fn a_chunk_larger_than_the_limit_keeps_its_own_end() {
        let c = captured(3, &[b"xy", b"0123456789"]);
        assert_eq!(c.tail, "789");
        assert_eq!(c.total_bytes, 12);
        assert!(c.truncated);
    }

    #[test]
    fn a_character_split_by_the_cut_is_dropped() {
        // "ééé" is c3 a9 c3 a9 c3 a9; the last 3 bytes start inside a character.
        let c = captured(3, &["ééé".as_bytes()]);
        assert_eq!(c.tail, "é");
        assert!(c.truncated);
    }

    #[test]
    fn invalid_utf8_becomes_replacement_characters() {
        let c = captured(16, &[b"ok\xff\xfe!"]);
        assert_eq!(c.tail, "ok\u{fffd}\u{fffd}!");
        assert_eq!(c.total_bytes, 5);
    }

    /// The size of `s` as a JSON string, without its quotes.
    fn json_len(s: &str) -> usize {
        serde_json::to_string(s).unwrap().len() - 2
    }

    #[test]
    fn invalid_utf8_is_cut_to_the_limit_as_stored() {
        // Each 0xff becomes U+FFFD, three bytes: 12 raw bytes would store as 36.
        let c = captured(12, &[b"ab\xff\xff\xff\xff\xff\xff\xff\xff\xffz"]);
        assert_eq!(c.tail, "\u{fffd}\u{fffd}\u{fffd}z");
        assert!(json_len(&c.tail) <= 12);
        assert!(c.truncated);
    }

    #[test]
    fn control_characters_are_counted_escaped() {
        // A NUL is stored as `\u0000`, six bytes; a newline as `\n`, two.
        let c = captured(16, &[&[0u8; 16]]);
        assert_eq!(c.tail, "\0\0");
        assert_eq!(json_len(&c.tail), 12);
        assert!(c.truncated);
        let c = captured(8, &[b"a\nb\"c"]);
        assert_eq!((c.tail.as_str(), c.truncated), ("a\nb\"c", false));
        assert_eq!(json_len(&c.tail), 7);
    }

    #[test]
    fn a_large_tail_of_any_bytes_stores_within_its_limit() {
        let bytes: Vec<u8> = (0..200_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for keep in [1, 100, 4096, 65_536] {
            let c = captured(keep, &[&bytes]);
            assert!(json_len(&c.tail) <= keep, "{keep}: {}", json_len(&c.tail));
            assert!(c.truncated);
            assert_eq!(c.total_bytes, 200_000);
        }
    }

    #[test]
    fn a_zero_limit_only_counts() {
        let c = captured(0, &[b"abc"]);
        assert_eq!(c.tail, "");
        assert_eq!(c.total_bytes, 3);
        assert!(c.truncated);
    }
}
