//! Reading Redis replies (RESP2) as they arrive, in linear time and bounded
//! memory, from a peer we do not trust (issue 21: a reply that never ends,
//! or announces a giant bulk string, must neither stall the worker nor
//! grow its memory).
//!
//! The [`Reader`] scans each byte once: a line's end is searched from where
//! the previous chunk stopped, a bulk string's body is skipped by its
//! length. Values at the chosen depth (`emit`: 0 for whole replies, 3 for
//! the entries of an `XREAD` reply) are handed out whole as byte ranges, to
//! be parsed with [`crate::wire::resp::parse`]; shallower array headers and
//! scalars are handed out one by one. Bytes before the value being read are
//! dropped when the next chunk comes, so the buffer holds one value at a
//! time. Over `limit` bytes for one value, a line longer than
//! [`LINE_MAX`], or a bulk string announced longer than `limit`, is
//! [`ReadError::TooLarge`]: the caller closes the connection and calls
//! [`Reader::reset`], which frees the buffer.

use core::ops::Range;

use crate::wire::resp::small_int as int;
use crate::wire::stream_entry;

/// The longest line (status, error, or a length) accepted.
pub const LINE_MAX: usize = 64 * 1024;
/// Deepest array nesting accepted.
pub const DEPTH_MAX: usize = 8;
/// The buffer keeps at most this capacity between replies.
pub const KEEP: usize = 256 * 1024;

/// Why a reply cannot be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("a reply that is not RESP")]
    Bad,
    #[error("a reply larger than the limit ({0} bytes)")]
    TooLarge(usize),
}

/// What [`Reader::next`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// The bytes so far are read: push more.
    More,
    /// An array header above the `emit` depth (`n` < 0: the null array).
    Array { depth: usize, n: i64 },
    /// A scalar above the `emit` depth (its bytes, for `resp::parse`).
    Scalar { depth: usize, span: Range<usize> },
    /// One whole value at the `emit` depth (its bytes, for `resp::parse`).
    Value(Range<usize>),
    /// The top-level reply is complete.
    End,
}

/// An incremental reader of replies on one connection.
#[derive(Debug)]
pub struct Reader {
    buf: Vec<u8>,
    /// The next token starts here.
    pos: usize,
    /// A line's end is searched from here (>= pos).
    scan: usize,
    /// Elements left in each open array, outermost first.
    stack: Vec<u64>,
    /// Where the value at the `emit` depth being read starts.
    mark: Option<usize>,
    /// A bulk string (its header at `pos`): its length and where its body starts.
    bulk: Option<(usize, usize)>,
    /// The top-level reply ended: the next call says [`Step::End`].
    ended: bool,
    emit: usize,
    limit: usize,
    /// Whole stream entries at the `emit` depth are handed out without
    /// being read token by token (`stream_entry::len`); off in tests that
    /// compare the two ways.
    fast: bool,
}

impl Reader {
    /// A reader handing out values at depth `emit`, each at most `limit` bytes.
    pub fn new(emit: usize, limit: usize) -> Self {
        Reader {
            buf: Vec::new(),
            pos: 0,
            scan: 0,
            stack: Vec::new(),
            mark: None,
            bulk: None,
            ended: false,
            emit,
            limit: limit.max(64),
            fast: true,
        }
    }

    /// Sets the depth and limit for the next reply (between replies only).
    pub fn expect(&mut self, emit: usize, limit: usize) {
        if self.stack.is_empty() && self.mark.is_none() && self.bulk.is_none() {
            self.emit = emit;
            self.limit = limit.max(64);
        }
    }

    /// Forgets everything (a broken connection) and frees the buffer.
    pub fn reset(&mut self) {
        let (emit, limit) = (self.emit, self.limit);
        *self = Reader::new(emit, limit);
    }

    /// Bytes held (read, not yet consumed).
    pub fn held(&self) -> usize {
        self.buf.len() - self.mark.unwrap_or(self.pos).min(self.buf.len())
    }

    /// The buffer's capacity (for tests: it is given back).
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// The bytes of a span handed out by [`Reader::next`] (valid until the next push).
    pub fn slice(&self, span: Range<usize>) -> &[u8] {
        &self.buf[span]
    }

    /// Appends a chunk; what was handed out before is dropped first.
    pub fn push(&mut self, chunk: &[u8]) {
        let keep = self.mark.unwrap_or(self.pos);
        if keep > 0 {
            self.buf.drain(..keep);
            self.pos -= keep;
            self.scan -= keep;
            self.mark = self.mark.map(|m| m - keep);
            self.bulk = self.bulk.map(|(n, b)| (n, b - keep));
        }
        if self.buf.is_empty() && self.buf.capacity() > KEEP {
            self.buf = Vec::new();
        }
        self.buf.extend_from_slice(chunk);
    }

    fn too_large(&self) -> Result<Step, ReadError> {
        Err(ReadError::TooLarge(self.limit))
    }

    /// Bookkeeping after a value at depth `stack.len()` ended at `pos`:
    /// the value to hand out, if it was at the `emit` depth.
    fn value_done(&mut self) -> Option<Range<usize>> {
        let mut out = None;
        loop {
            let d = self.stack.len();
            if d == self.emit {
                if let Some(m) = self.mark.take() {
                    out = Some(m..self.pos);
                }
            }
            let Some(top) = self.stack.last_mut() else {
                self.ended = true;
                break;
            };
            *top -= 1;
            if *top > 0 {
                break;
            }
            self.stack.pop();
        }
        out
    }

    /// The next step (call again until [`Step::More`]).
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Step, ReadError> {
        if self.ended {
            self.ended = false;
            return Ok(Step::End);
        }
        loop {
            let depth = self.stack.len();
            let start = self.pos;
            if let Some((n, body)) = self.bulk {
                if self.buf.len() - body < n + 2 {
                    if let Some(m) = self.mark {
                        if self.buf.len() - m > self.limit {
                            return self.too_large();
                        }
                    }
                    return Ok(Step::More);
                }
                if &self.buf[body + n..body + n + 2] != b"\r\n" {
                    return Err(ReadError::Bad);
                }
                self.pos = body + n + 2;
                self.scan = self.pos;
                self.bulk = None;
            } else {
                if self.fast && depth == self.emit && self.mark.is_none() {
                    // a whole stream entry, already here: handed out at once
                    // (what reading it token by token would hand out)
                    if let Some(n) = stream_entry::len(&self.buf[start..]) {
                        if n <= self.limit {
                            self.mark = Some(start);
                            self.pos = start + n;
                            self.scan = self.pos;
                            if let Some(v) = self.value_done() {
                                return Ok(Step::Value(v));
                            }
                            continue;
                        }
                    }
                }
                // one line: its end searched from where the last search stopped
                let from = self.scan.max(self.pos);
                let Some(nl) = self.buf[from..].iter().position(|b| *b == b'\n') else {
                    self.scan = self.buf.len();
                    if self.buf.len() - self.pos > LINE_MAX {
                        return Err(ReadError::TooLarge(LINE_MAX));
                    }
                    if let Some(m) = self.mark {
                        if self.buf.len() - m > self.limit {
                            return self.too_large();
                        }
                    }
                    return Ok(Step::More);
                };
                let eol = from + nl;
                if eol < start + 2 || self.buf[eol - 1] != b'\r' {
                    return Err(ReadError::Bad);
                }
                if eol - start > LINE_MAX {
                    return Err(ReadError::TooLarge(LINE_MAX));
                }
                let kind = self.buf[start];
                let body = &self.buf[start + 1..eol - 1];
                let next = eol + 1;
                if depth == self.emit && self.mark.is_none() {
                    self.mark = Some(start);
                }
                match kind {
                    b'+' | b'-' => {}
                    b':' => {
                        int(body).ok_or(ReadError::Bad)?;
                    }
                    b'$' => {
                        let n = int(body).ok_or(ReadError::Bad)?;
                        if n >= 0 {
                            let n = n as usize;
                            if n > self.limit {
                                return self.too_large();
                            }
                            self.scan = next;
                            self.bulk = Some((n, next));
                            continue;
                        }
                    }
                    b'*' => {
                        let n = int(body).ok_or(ReadError::Bad)?;
                        self.pos = next;
                        self.scan = next;
                        if n > 0 {
                            if depth >= DEPTH_MAX || n as u64 > (self.limit as u64) / 4 + 16 {
                                return Err(ReadError::Bad);
                            }
                            self.stack.push(n as u64);
                            if depth < self.emit {
                                return Ok(Step::Array { depth, n });
                            }
                            continue;
                        }
                        let done = self.value_done();
                        if depth < self.emit {
                            return Ok(Step::Array { depth, n });
                        }
                        if let Some(v) = done {
                            return Ok(Step::Value(v));
                        }
                        continue;
                    }
                    _ => return Err(ReadError::Bad),
                }
                self.pos = next;
                self.scan = next;
            }
            // a scalar ended at `pos`
            if let Some(v) = self.value_done() {
                return Ok(Step::Value(v));
            }
            if depth < self.emit {
                return Ok(Step::Scalar {
                    depth,
                    span: start..self.pos,
                });
            }
        }
    }
}

/// Whole replies read so far, one after another in one buffer: no
/// allocation per reply (an `XADD` batch is 1024 of them).
#[derive(Debug, Default)]
pub struct Collected {
    bytes: Vec<u8>,
    /// Where each reply ends in `bytes`.
    ends: Vec<usize>,
}

impl Collected {
    /// Keeps a copy of one reply.
    pub fn push(&mut self, reply: &[u8]) {
        self.bytes.extend_from_slice(reply);
        self.ends.push(self.bytes.len());
    }

    /// Replies kept.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// No reply kept.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Each reply's bytes, in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let starts = core::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter())
            .map(|(a, b)| &self.bytes[a..*b])
    }

    /// Forgets the replies, keeping buffers up to [`KEEP`] for the next batch.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
        if self.bytes.capacity() > KEEP {
            self.bytes = Vec::new();
        }
        if self.ends.capacity() > KEEP / 8 {
            self.ends = Vec::new();
        }
    }

    /// Forgets the replies and frees the buffers.
    pub fn free(&mut self) {
        *self = Collected::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::resp::{parse, Reply};

    fn all(r: &mut Reader, bytes: &[u8], chunk: usize) -> Result<Vec<Vec<u8>>, ReadError> {
        let mut out = Vec::new();
        for c in bytes.chunks(chunk.max(1)) {
            r.push(c);
            loop {
                match r.next()? {
                    Step::More => break,
                    Step::Value(s) => out.push(r.slice(s).to_vec()),
                    Step::Scalar { span, .. } => {
                        let mut v = b"S".to_vec();
                        v.extend_from_slice(r.slice(span));
                        out.push(v);
                    }
                    Step::Array { depth, n } => out.push(format!("A{depth}:{n}").into_bytes()),
                    Step::End => out.push(b"END".to_vec()),
                }
            }
        }
        Ok(out)
    }

    const XREAD: &[u8] = b"*1\r\n*2\r\n$2\r\nst\r\n*2\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nn\r\n$4\r\na\r\nb\r\n*2\r\n$3\r\n2-0\r\n*0\r\n";

    #[test]
    fn xread_entries_come_out_whole_in_any_chunking() {
        for chunk in [1, 2, 3, 7, 1000] {
            let mut r = Reader::new(3, 1000);
            let got = all(&mut r, XREAD, chunk).unwrap();
            let want: Vec<Vec<u8>> = vec![
                b"A0:1".to_vec(),
                b"A1:2".to_vec(),
                b"S$2\r\nst\r\n".to_vec(),
                b"A2:2".to_vec(),
                b"*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nn\r\n$4\r\na\r\nb\r\n".to_vec(),
                b"*2\r\n$3\r\n2-0\r\n*0\r\n".to_vec(),
                b"END".to_vec(),
            ];
            assert_eq!(got, want, "chunk {chunk}");
            let (e, _) = parse(&got[4]).unwrap().unwrap();
            assert!(matches!(e, Reply::Array(Some(_))));
        }
    }

    #[test]
    fn whole_replies_one_after_another() {
        let mut r = Reader::new(0, 1000);
        let got = all(
            &mut r,
            b"$3\r\n1-0\r\n+OK\r\n$-1\r\n-ERR x\r\n:5\r\n*-1\r\n",
            2,
        )
        .unwrap();
        let values: Vec<&[u8]> = got
            .iter()
            .filter(|v| v.as_slice() != b"END")
            .map(Vec::as_slice)
            .collect();
        assert_eq!(
            values,
            vec![
                &b"$3\r\n1-0\r\n"[..],
                b"+OK\r\n",
                b"$-1\r\n",
                b"-ERR x\r\n",
                b":5\r\n",
                b"*-1\r\n"
            ]
        );
        assert_eq!(got.iter().filter(|v| v.as_slice() == b"END").count(), 6);
        // a null XREAD at emit depth 3: a header, then the end
        let mut r = Reader::new(3, 1000);
        assert_eq!(
            all(&mut r, b"*-1\r\n", 1).unwrap(),
            vec![b"A0:-1".to_vec(), b"END".to_vec()]
        );
    }

    #[test]
    fn bad_and_oversized_replies_are_errors_and_the_buffer_is_freed() {
        let bad = |b: &[u8]| all(&mut Reader::new(0, 1000), b, 3).unwrap_err();
        assert_eq!(bad(b"$1e300\r\n"), ReadError::Bad);
        assert_eq!(bad(b"?x\r\n"), ReadError::Bad);
        assert_eq!(bad(b"+a\nb\r\n"), ReadError::Bad);
        assert_eq!(bad(b"$3\r\nabcd\r\n"), ReadError::Bad);
        assert_eq!(bad(b"$999999999999\r\n"), ReadError::TooLarge(1000));
        assert_eq!(bad(b":99999999999999999999\r\n"), ReadError::Bad);
        // one entry over the limit
        let mut big = b"*1\r\n*2\r\n$2\r\nst\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*10\r\n".to_vec();
        for _ in 0..10 {
            big.extend_from_slice(b"$200\r\n");
            big.extend_from_slice(&[b'x'; 200]);
            big.extend_from_slice(b"\r\n");
        }
        assert_eq!(
            all(&mut Reader::new(3, 1000), &big, 64).unwrap_err(),
            ReadError::TooLarge(1000)
        );
        // an endless line: stopped at LINE_MAX, each byte scanned once
        let mut r = Reader::new(3, 1 << 20);
        r.push(b"+");
        let chunk = vec![b'x'; 4096];
        let mut err = None;
        for _ in 0..100 {
            r.push(&chunk);
            if let Err(e) = r.next() {
                err = Some(e);
                break;
            }
        }
        assert_eq!(err, Some(ReadError::TooLarge(LINE_MAX)));
        assert!(r.capacity() > 0);
        r.reset();
        assert_eq!((r.capacity(), r.held()), (0, 0));
    }

    #[test]
    fn consumed_bytes_are_dropped_on_the_next_push() {
        let mut r = Reader::new(3, 1000);
        let mut reply = b"*1\r\n*2\r\n$2\r\nst\r\n*200\r\n".to_vec();
        let entry = b"*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nn\r\n$1\r\na\r\n";
        for _ in 0..200 {
            reply.extend_from_slice(entry);
        }
        let mut max_held = 0;
        let mut n = 0;
        for c in reply.chunks(50) {
            r.push(c);
            max_held = max_held.max(r.held());
            loop {
                match r.next().unwrap() {
                    Step::More => break,
                    Step::Value(_) => n += 1,
                    _ => {}
                }
            }
        }
        assert_eq!(n, 200);
        assert!(max_held < 50 + entry.len(), "{max_held}");
    }

    #[test]
    fn collected_replies_come_back_whole_and_in_order() {
        let mut r = Reader::new(0, 1000);
        let mut got = Collected::default();
        let wire = b"$3\r\n1-0\r\n+OK\r\n-ERR no\r\n*2\r\n:1\r\n$-1\r\n";
        for c in wire.chunks(3) {
            r.push(c);
            while let Ok(step) = r.next() {
                match step {
                    Step::More => break,
                    Step::Value(span) => got.push(r.slice(span)),
                    _ => {}
                }
            }
        }
        assert_eq!(got.len(), 4);
        let all: Vec<&[u8]> = got.iter().collect();
        assert_eq!(
            all,
            [
                &b"$3\r\n1-0\r\n"[..],
                b"+OK\r\n",
                b"-ERR no\r\n",
                b"*2\r\n:1\r\n$-1\r\n"
            ]
        );
        got.clear();
        assert!(got.is_empty());
        assert_eq!(got.iter().count(), 0);
    }

    /// Every step (or error) of reading `bytes` in chunks of `chunk`.
    fn steps(fast: bool, bytes: &[u8], chunk: usize, limit: usize) -> Vec<String> {
        let mut r = Reader::new(3, limit);
        r.fast = fast;
        let mut out = Vec::new();
        for c in bytes.chunks(chunk.max(1)) {
            r.push(c);
            loop {
                match r.next() {
                    Ok(Step::More) => break,
                    Ok(Step::Value(s)) => out.push(format!("V{:?}", r.slice(s))),
                    Ok(Step::Scalar { depth, span }) => {
                        out.push(format!("S{depth}{:?}", r.slice(span)))
                    }
                    Ok(step) => out.push(format!("{step:?}")),
                    Err(e) => {
                        out.push(format!("E{e:?}"));
                        return out;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn whole_entries_handed_out_at_once_are_what_token_reading_hands_out() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n.max(1)
        };
        for round in 0..300 {
            let entries = rnd(5) as usize;
            let mut kv_all = Vec::new();
            for e in 0..entries {
                let mut args: Vec<Vec<u8>> = Vec::new();
                for _ in 0..rnd(4) * 2 {
                    let len = rnd(20) as usize;
                    args.push((0..len).map(|i| b"ab\r\n$*-0"[(i + e) % 8]).collect());
                }
                let mut kv = Vec::new();
                let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
                crate::wire::resp::command(&mut kv, &refs);
                let id = format!("{}-{e}", 1000 + round);
                let mut one = format!("*2\r\n${}\r\n{id}\r\n", id.len()).into_bytes();
                one.extend_from_slice(&kv);
                kv_all.push(one);
            }
            let mut reply = format!("*1\r\n*2\r\n$2\r\nst\r\n*{entries}\r\n").into_bytes();
            for e in &kv_all {
                reply.extend_from_slice(e);
            }
            let mut cases = vec![reply.clone()];
            for _ in 0..4 {
                let mut m = reply.clone();
                let at = rnd(m.len() as u64) as usize;
                m[at] = b"0123$*-\r\nx"[rnd(10) as usize];
                cases.push(m);
            }
            for bytes in &cases {
                for chunk in [1, 3, 17, 64, 4096] {
                    for limit in [64, 100, 4096] {
                        assert_eq!(
                            steps(true, bytes, chunk, limit),
                            steps(false, bytes, chunk, limit),
                            "round {round} chunk {chunk} limit {limit}: {:?}",
                            String::from_utf8_lossy(bytes)
                        );
                    }
                }
            }
        }
    }
}
