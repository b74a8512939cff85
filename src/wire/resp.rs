//! Redis' wire format (RESP2) for the cluster bridge's outgoing batches: a
//! batch of `XADD` and `SET NX PX` commands built natively in one buffer,
//! so the bridge sends it with one cosocket write (building each command
//! through lua-resty-redis' varargs cost 14-30 µs of interpreted Lua per
//! event: BENCHMARKS.md "Cross-node").

/// Appends `n` in decimal.
fn decimal(out: &mut Vec<u8>, n: u64) {
    let mut b = [0u8; 20];
    out.extend_from_slice(digits(&mut b, n));
}

/// `n` in decimal, in `b`.
fn digits(b: &mut [u8; 20], mut n: u64) -> &[u8] {
    let mut at = b.len();
    loop {
        at -= 1;
        b[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &b[at..];
        }
    }
}

/// Appends one bulk string.
fn bulk(out: &mut Vec<u8>, a: &[u8]) {
    out.push(b'$');
    decimal(out, a.len() as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(a);
    out.extend_from_slice(b"\r\n");
}

/// Appends one command (an array of bulk strings).
pub fn command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.push(b'*');
    decimal(out, args.len() as u64);
    out.extend_from_slice(b"\r\n");
    for a in args {
        bulk(out, a);
    }
}

/// What every `XADD` of one node carries besides the event, and the part
/// of the command that is the same for all of a batch's events (written
/// once, so an event costs no allocation).
pub struct Stream<'a> {
    stream: &'a [u8],
    node: &'a [u8],
    epoch: &'a [u8],
    /// `secret=`: every entry gets an `h` field (see `cluster_sign`).
    secret: Option<&'a [u8]>,
    /// `XADD stream MAXLEN ~ maxlen * n node e epoch o`, in RESP.
    head: Vec<u8>,
}

impl<'a> Stream<'a> {
    pub fn new(
        stream: &'a [u8],
        maxlen: u64,
        node: &'a [u8],
        epoch: &'a [u8],
        secret: Option<&'a [u8]>,
    ) -> Self {
        let mut head = Vec::with_capacity(96 + stream.len() + node.len() + epoch.len());
        let mut b = [0u8; 20];
        let maxlen = digits(&mut b, maxlen);
        let parts: [&[u8]; 11] = [
            b"XADD", stream, b"MAXLEN", b"~", maxlen, b"*", b"n", node, b"e", epoch, b"o",
        ];
        for a in parts {
            bulk(&mut head, a);
        }
        Stream {
            stream,
            node,
            epoch,
            secret,
            head,
        }
    }

    /// `XADD stream MAXLEN ~ maxlen * n node e epoch o ordinal s source v event d data [h hmac]`.
    pub fn xadd(&self, out: &mut Vec<u8>, ordinal: u64, source: &[u8], event: &[u8], data: &[u8]) {
        let mut b = [0u8; 20];
        let ordinal = digits(&mut b, ordinal);
        let h = self.secret.map(|k| {
            crate::wire::sign::sign(
                k,
                &crate::wire::sign::Fields {
                    node: self.node,
                    epoch: self.epoch,
                    ordinal,
                    source,
                    event,
                    data,
                },
            )
        });
        out.reserve(self.head.len() + source.len() + event.len() + data.len() + 160);
        out.extend_from_slice(if h.is_some() { b"*20\r\n" } else { b"*18\r\n" });
        out.extend_from_slice(&self.head);
        bulk(out, ordinal);
        for (k, v) in [(b"s", source), (b"v", event), (b"d", data)] {
            bulk(out, k);
            bulk(out, v);
        }
        if let Some(h) = &h {
            bulk(out, b"h");
            bulk(out, h);
        }
    }

    /// `SET <stream>:unique:<key> node NX PX ttl_ms`: a cluster unique claim.
    pub fn unique_claim(&self, out: &mut Vec<u8>, key: &[u8], ttl_ms: u64) {
        let mut k = self.stream.to_vec();
        k.extend_from_slice(b":unique:");
        k.extend_from_slice(key);
        let mut b = [0u8; 20];
        let ttl = digits(&mut b, ttl_ms.max(1));
        command(out, &[b"SET", &k, self.node, b"NX", b"PX", ttl]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut b = Vec::new();
        command(&mut b, &[b"PING"]);
        assert_eq!(b, b"*1\r\n$4\r\nPING\r\n");
        let s = Stream::new(b"st", 10, b"a", b"77", None);
        let mut b = Vec::new();
        s.xadd(&mut b, 5, b"src", b"ev", b"\x00\r\n");
        let want = "*18\r\n$4\r\nXADD\r\n$2\r\nst\r\n$6\r\nMAXLEN\r\n$1\r\n~\r\n$2\r\n10\r\n$1\r\n*\r\n\
            $1\r\nn\r\n$1\r\na\r\n$1\r\ne\r\n$2\r\n77\r\n$1\r\no\r\n$1\r\n5\r\n$1\r\ns\r\n$3\r\nsrc\r\n\
            $1\r\nv\r\n$2\r\nev\r\n$1\r\nd\r\n$3\r\n\x00\r\n\r\n";
        assert_eq!(b, want.as_bytes());
        let mut b = Vec::new();
        s.unique_claim(&mut b, b"k", 0);
        assert_eq!(
            b,
            b"*6\r\n$3\r\nSET\r\n$11\r\nst:unique:k\r\n$1\r\na\r\n$2\r\nNX\r\n$2\r\nPX\r\n$1\r\n1\r\n"
        );
    }

    #[test]
    fn an_xadd_is_the_command_its_fields_make() {
        // the batch's shared head and the per-event part, against the
        // generic writer, signed and not, with numbers of every width
        for secret in [None, Some(&b"k"[..])] {
            for (ordinal, maxlen) in [(0, 1), (9, 10), (1 << 40, 123_456), (u64::MAX, u64::MAX)] {
                let s = Stream::new(b"stream", maxlen, b"node-a", b"1733500000000", secret);
                let mut got = Vec::new();
                s.xadd(&mut got, ordinal, b"src", b"ev", b"payload");
                let (o, m) = (ordinal.to_string(), maxlen.to_string());
                let h = secret.map(|k| {
                    crate::wire::sign::sign(
                        k,
                        &crate::wire::sign::Fields {
                            node: b"node-a",
                            epoch: b"1733500000000",
                            ordinal: o.as_bytes(),
                            source: b"src",
                            event: b"ev",
                            data: b"payload",
                        },
                    )
                });
                let mut args: Vec<&[u8]> = vec![
                    b"XADD",
                    b"stream",
                    b"MAXLEN",
                    b"~",
                    m.as_bytes(),
                    b"*",
                    b"n",
                    b"node-a",
                    b"e",
                    b"1733500000000",
                    b"o",
                    o.as_bytes(),
                    b"s",
                    b"src",
                    b"v",
                    b"ev",
                    b"d",
                    b"payload",
                ];
                if let Some(h) = &h {
                    args.extend_from_slice(&[b"h", h]);
                }
                let mut want = Vec::new();
                command(&mut want, &args);
                assert_eq!(
                    got,
                    want,
                    "ordinal {ordinal} maxlen {maxlen} signed {}",
                    h.is_some()
                );
            }
        }
        let mut b = Vec::new();
        command(&mut b, &[&b""[..]; 10]);
        assert_eq!(b, [&b"*10\r\n"[..], &b"$0\r\n\r\n".repeat(10)].concat());
    }
}

/// One parsed reply (borrowing the buffer).
#[derive(Debug, PartialEq, Eq)]
pub enum Reply<'a> {
    Status(&'a [u8]),
    Error(&'a [u8]),
    Int(i64),
    /// `None`: the null bulk string.
    Bulk(Option<&'a [u8]>),
    /// `None`: the null array (XREAD BLOCK that timed out).
    Array(Option<Vec<Reply<'a>>>),
}

/// A reply that is not RESP2.
#[derive(Debug, PartialEq, Eq)]
pub struct BadReply;

/// Parses one complete reply at the start of `buf`: the reply and the bytes
/// it took, `Ok(None)` when `buf` holds only part of it.
pub fn parse(buf: &[u8]) -> Result<Option<(Reply<'_>, usize)>, BadReply> {
    parse_at(buf, 0, 0)
}

/// The line at `at` (up to the first CR LF) and where the next one starts.
fn line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(at..)?;
    let mut from = 0;
    loop {
        let nl = from + rest[from..].iter().position(|b| *b == b'\n')?;
        if nl > 0 && rest[nl - 1] == b'\r' {
            return Some((&rest[..nl - 1], at + nl + 1));
        }
        from = nl + 1;
    }
}

/// A length or integer line's value in its usual form, an optional `-` and
/// 1 to 18 digits (never overflows), without the text parser; `None` for
/// anything else. `resp_reader` accepts exactly these.
pub(crate) fn small_int(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.strip_prefix(b"-") {
        Some(d) => (true, d),
        None => (false, s),
    };
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let mut n: i64 = 0;
    for b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + i64::from(b - b'0');
    }
    Some(if neg { -n } else { n })
}

fn int(s: &[u8]) -> Result<i64, BadReply> {
    if let Some(n) = small_int(s) {
        return Ok(n);
    }
    // the rest of what `i64`'s parser takes (a `+`, 19 digits)
    core::str::from_utf8(s)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(BadReply)
}

fn parse_at(buf: &[u8], at: usize, depth: u32) -> Result<Option<(Reply<'_>, usize)>, BadReply> {
    if depth > 8 {
        return Err(BadReply);
    }
    let Some((l, next)) = line(buf, at) else {
        return Ok(None);
    };
    let (&kind, body) = l.split_first().ok_or(BadReply)?;
    Ok(Some(match kind {
        b'+' => (Reply::Status(body), next),
        b'-' => (Reply::Error(body), next),
        b':' => (Reply::Int(int(body)?), next),
        b'$' => {
            let n = int(body)?;
            if n < 0 {
                return Ok(Some((Reply::Bulk(None), next)));
            }
            let n = usize::try_from(n).map_err(|_| BadReply)?;
            let end = next + n;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(BadReply);
            }
            (Reply::Bulk(Some(&buf[next..end])), end + 2)
        }
        b'*' => {
            let n = int(body)?;
            if n < 0 {
                return Ok(Some((Reply::Array(None), next)));
            }
            let n = usize::try_from(n).map_err(|_| BadReply)?;
            let mut items = Vec::with_capacity(n.min(4096));
            let mut at = next;
            for _ in 0..n {
                match parse_at(buf, at, depth + 1)? {
                    Some((r, after)) => {
                        items.push(r);
                        at = after;
                    }
                    None => return Ok(None),
                }
            }
            (Reply::Array(Some(items)), at)
        }
        _ => return Err(BadReply),
    }))
}

#[cfg(test)]
mod parse_tests {
    use super::*;

    #[test]
    fn a_line_ends_at_its_first_cr_lf_and_numbers_read_as_before() {
        assert_eq!(parse(b"+a\nb\r\n"), Ok(Some((Reply::Status(b"a\nb"), 6))));
        assert_eq!(
            parse(b"+a\rb\r\r\n"),
            Ok(Some((Reply::Status(b"a\rb\r"), 7)))
        );
        assert_eq!(parse(b"+\n\r\n"), Ok(Some((Reply::Status(b"\n"), 4))));
        assert_eq!(parse(b"+ab\n"), Ok(None));
        assert_eq!(parse(b":+7\r\n"), Ok(Some((Reply::Int(7), 5))));
        assert_eq!(parse(b":-7\r\n"), Ok(Some((Reply::Int(-7), 5))));
        assert_eq!(parse(b":007\r\n"), Ok(Some((Reply::Int(7), 6))));
        assert_eq!(
            parse(b":9223372036854775807\r\n"),
            Ok(Some((Reply::Int(i64::MAX), 22)))
        );
        assert_eq!(parse(b":9223372036854775808\r\n"), Err(BadReply));
        assert_eq!(parse(b":\r\n"), Err(BadReply));
        assert_eq!(parse(b":1x\r\n"), Err(BadReply));
    }

    #[test]
    fn replies_whole_and_in_parts() {
        let xread =
            b"*1\r\n*2\r\n$2\r\nst\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nn\r\n$4\r\na\r\nb\r\n";
        let (r, used) = parse(xread).unwrap().unwrap();
        assert_eq!(used, xread.len());
        let Reply::Array(Some(streams)) = r else {
            panic!()
        };
        let Reply::Array(Some(s)) = &streams[0] else {
            panic!()
        };
        assert_eq!(s[0], Reply::Bulk(Some(b"st")));
        let Reply::Array(Some(entries)) = &s[1] else {
            panic!()
        };
        let Reply::Array(Some(e)) = &entries[0] else {
            panic!()
        };
        assert_eq!(e[0], Reply::Bulk(Some(b"1-0")));
        let Reply::Array(Some(kv)) = &e[1] else {
            panic!()
        };
        assert_eq!(kv[1], Reply::Bulk(Some(b"a\r\nb")));
        // every prefix is incomplete, never an error
        for cut in 0..xread.len() {
            assert_eq!(parse(&xread[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(parse(b"*-1\r\n"), Ok(Some((Reply::Array(None), 5))));
        assert_eq!(parse(b"$-1\r\n+OK\r\n"), Ok(Some((Reply::Bulk(None), 5))));
        assert_eq!(
            parse(b"-LOADING x\r\n"),
            Ok(Some((Reply::Error(b"LOADING x"), 12)))
        );
        assert_eq!(parse(b":42\r\n"), Ok(Some((Reply::Int(42), 5))));
        assert_eq!(parse(b"?x\r\n"), Err(BadReply));
        assert_eq!(parse(b"$3\r\nabcd\r\n"), Err(BadReply));
    }
}
