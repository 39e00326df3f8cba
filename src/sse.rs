//! Server-sent events, decoded incrementally: body chunks in, whole events out.
//!
//! The one SSE decoder for everything that reads a stream as it passes — usage metering,
//! hiding what Warden asked a stream for, and (later) translation — so that they all agree on
//! where an event ends. Events are found at their blank line (`\n\n` or `\n\r\n`), wherever
//! the chunks split it. An event that lies inside one chunk is handed out borrowed from it (no
//! copy); one split across chunks is gathered, up to a limit: a longer one is handed out
//! undecoded, piece by piece, so memory stays bounded and no byte is lost.

use std::borrow::Cow;

/// What the decoder hands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'a> {
    /// A whole event, through its blank line.
    Event(Event<'a>),
    /// Bytes of an event longer than the decoder's limit, as they came: not decoded.
    Oversized(&'a [u8]),
    /// What was left when the body ended: an event without its blank line.
    Unterminated(Event<'a>),
}

/// One event's bytes, as the stream carried them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a>(pub &'a [u8]);

impl<'a> Event<'a> {
    /// The event's `data` (its `data:` lines, each without the one space after the colon,
    /// joined with `\n`); `None` when it has none (a comment, a bare `event:`).
    pub fn data(&self) -> Option<Cow<'a, [u8]>> {
        let mut data: Option<Cow<'a, [u8]>> = None;
        for line in self.0.split(|b| *b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(value) = line.strip_prefix(b"data:") else {
                continue;
            };
            let value = value.strip_prefix(b" ").unwrap_or(value);
            data = Some(match data {
                None => Cow::Borrowed(value),
                Some(joined) => {
                    let mut joined = joined.into_owned();
                    joined.push(b'\n');
                    joined.extend_from_slice(value);
                    Cow::Owned(joined)
                }
            });
        }
        data
    }
}

/// How the bytes fed so far ended, for a blank line split across chunks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Tail {
    #[default]
    Other,
    /// A line feed.
    Lf,
    /// A line feed and a carriage return.
    LfCr,
}

/// An incremental decoder of one SSE body.
#[derive(Debug)]
pub struct Decoder {
    /// An event begun in an earlier chunk.
    pending: Vec<u8>,
    tail: Tail,
    /// The current event passed the limit: its bytes go out as [`Piece::Oversized`].
    oversized: bool,
    limit: usize,
}

impl Decoder {
    /// A decoder that gathers events of up to `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Decoder {
            pending: Vec::new(),
            tail: Tail::Other,
            oversized: false,
            limit,
        }
    }

    /// Whether every byte fed so far belonged to a whole event (so a chunk that ends an event
    /// can be judged on its own).
    pub fn is_between_events(&self) -> bool {
        self.pending.is_empty() && !self.oversized && self.tail == Tail::Other
    }

    /// Feeds the next chunk, handing out each piece it completes, in order.
    pub fn feed(&mut self, chunk: &[u8], mut on: impl FnMut(Piece<'_>)) {
        let mut rest = chunk;
        while !rest.is_empty() {
            let Some(end) = boundary(self.tail, rest) else {
                self.tail = tail_after(self.tail, rest);
                if self.oversized {
                    on(Piece::Oversized(rest));
                } else if self.pending.len() + rest.len() > self.limit {
                    self.oversized = true;
                    if !self.pending.is_empty() {
                        on(Piece::Oversized(&self.pending));
                        self.pending.clear();
                    }
                    on(Piece::Oversized(rest));
                } else {
                    self.pending.extend_from_slice(rest);
                }
                return;
            };
            let (event, after) = rest.split_at(end);
            if self.oversized {
                on(Piece::Oversized(event));
                self.oversized = false;
            } else if self.pending.is_empty() {
                on(Piece::Event(Event(event)));
            } else {
                self.pending.extend_from_slice(event);
                on(Piece::Event(Event(&self.pending)));
                self.pending.clear();
            }
            self.tail = Tail::Other;
            rest = after;
        }
    }

    /// The body has ended: hands out what is left of an event that never got its blank line.
    pub fn finish(&mut self, mut on: impl FnMut(Piece<'_>)) {
        if !self.pending.is_empty() {
            on(Piece::Unterminated(Event(&self.pending)));
        }
        self.pending.clear();
        self.oversized = false;
        self.tail = Tail::Other;
    }
}

/// The index just past the first blank line in `bytes`, given how the bytes before ended.
fn boundary(tail: Tail, bytes: &[u8]) -> Option<usize> {
    match (tail, bytes) {
        (Tail::Lf | Tail::LfCr, [b'\n', ..]) => return Some(1),
        (Tail::Lf, [b'\r', b'\n', ..]) => return Some(2),
        _ => {}
    }
    memchr::memchr_iter(b'\n', bytes).find_map(|at| match &bytes[at + 1..] {
        [b'\n', ..] => Some(at + 2),
        [b'\r', b'\n', ..] => Some(at + 3),
        _ => None,
    })
}

/// How the bytes end after `bytes` (which hold no blank line) followed `tail`.
fn tail_after(tail: Tail, bytes: &[u8]) -> Tail {
    match bytes {
        [.., b'\n'] => Tail::Lf,
        [.., b'\n', b'\r'] => Tail::LfCr,
        [b'\r'] if tail == Tail::Lf => Tail::LfCr,
        _ => Tail::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every piece the decoder hands out for `chunks`, as owned text with its kind.
    fn decode(limit: usize, chunks: &[&[u8]]) -> Vec<(char, String)> {
        let mut decoder = Decoder::new(limit);
        let mut out = Vec::new();
        let mut take = |piece: Piece<'_>| {
            let (kind, bytes) = match piece {
                Piece::Event(Event(b)) => ('e', b),
                Piece::Oversized(b) => ('o', b),
                Piece::Unterminated(Event(b)) => ('u', b),
            };
            out.push((kind, String::from_utf8_lossy(bytes).into_owned()));
        };
        for chunk in chunks {
            decoder.feed(chunk, &mut take);
        }
        decoder.finish(&mut take);
        out
    }

    #[test]
    fn events_are_found_wherever_the_chunks_split_them() {
        let stream = b"data: {\"a\":1}\n\nevent: x\r\ndata: two\r\n\r\ndata: [DONE]\n\n";
        let whole = decode(1024, &[stream]);
        assert_eq!(
            whole,
            vec![
                ('e', "data: {\"a\":1}\n\n".into()),
                ('e', "event: x\r\ndata: two\r\n\r\n".into()),
                ('e', "data: [DONE]\n\n".into()),
            ]
        );
        for split in 1..stream.len() {
            let (a, b) = stream.split_at(split);
            assert_eq!(decode(1024, &[a, b]), whole, "split at {split}");
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(decode(1024, &bytes), whole);
    }

    #[test]
    fn an_event_over_the_limit_passes_undecoded_and_whole() {
        let out = decode(8, &[b"data: 0123", b"456789\n", b"\ndata: x\n\n"]);
        let oversized: String = out
            .iter()
            .filter(|(k, _)| *k == 'o')
            .map(|(_, s)| s.as_str())
            .collect();
        assert_eq!(oversized, "data: 0123456789\n\n");
        assert_eq!(out.last(), Some(&('e', "data: x\n\n".to_string())));
    }

    #[test]
    fn the_rest_of_a_cut_stream_is_handed_out_unterminated() {
        assert_eq!(
            decode(1024, &[b"data: a\n\ndata: b"]),
            vec![('e', "data: a\n\n".into()), ('u', "data: b".into())]
        );
    }

    #[test]
    fn data_lines_are_joined_as_the_spec_says() {
        let event = Event(b"event: e\ndata: one\ndata:two\r\n: comment\n\n");
        assert_eq!(event.data().as_deref(), Some(&b"one\ntwo"[..]));
        assert_eq!(Event(b": ping\n\n").data(), None);
        assert!(matches!(
            Event(b"data: x\n\n").data(),
            Some(Cow::Borrowed(b"x"))
        ));
    }
}
