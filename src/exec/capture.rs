//! Reading a step's stdout or stderr into a bounded tail: memory stays at the limit whatever
//! the step prints, and the start of the kept text is cut on a character boundary.

use std::collections::VecDeque;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::sync::CancellationToken;

/// What was kept of one output stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    /// The last bytes of the stream (at most the limit), as UTF-8: invalid sequences become
    /// U+FFFD, and a character cut in half by the limit is dropped from the start.
    pub tail: String,
    /// Every byte the stream carried, kept or not.
    pub total_bytes: u64,
    /// Whether bytes were dropped from the start (`total_bytes` is over the limit).
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
        Captured {
            tail: String::from_utf8_lossy(kept).into_owned(),
            total_bytes: self.total,
            truncated,
        }
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

    #[test]
    fn a_zero_limit_only_counts() {
        let c = captured(0, &[b"abc"]);
        assert_eq!(c.tail, "");
        assert_eq!(c.total_bytes, 3);
        assert!(c.truncated);
    }
}
