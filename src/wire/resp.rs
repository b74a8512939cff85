//! Redis' wire format (RESP2) for the cluster bridge's outgoing batches: a
//! batch of `XADD` and `SET NX PX` commands built natively in one buffer,
//! so the bridge sends it with one cosocket write (building each command
//! through lua-resty-redis' varargs cost 14-30 µs of interpreted Lua per
//! event: BENCHMARKS.md "Cross-node").

use std::io::Write;

/// Appends one command (an array of bulk strings).
pub fn command(out: &mut Vec<u8>, args: &[&[u8]]) {
    let _ = write!(out, "*{}\r\n", args.len());
    for a in args {
        let _ = write!(out, "${}\r\n", a.len());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// What every `XADD` of one node carries besides the event.
pub struct Stream<'a> {
    pub stream: &'a [u8],
    pub maxlen: u64,
    pub node: &'a [u8],
    pub epoch: &'a [u8],
    /// `secret=`: every entry gets an `h` field (see `cluster_sign`).
    pub secret: Option<&'a [u8]>,
}

impl Stream<'_> {
    /// `XADD stream MAXLEN ~ maxlen * n node e epoch o ordinal s source v event d data [h hmac]`.
    pub fn xadd(&self, out: &mut Vec<u8>, ordinal: u64, source: &[u8], event: &[u8], data: &[u8]) {
        let maxlen = self.maxlen.to_string();
        let ordinal = ordinal.to_string();
        let h = self.secret.map(|k| {
            crate::wire::sign::sign(
                k,
                &crate::wire::sign::Fields {
                    node: self.node,
                    epoch: self.epoch,
                    ordinal: ordinal.as_bytes(),
                    source,
                    event,
                    data,
                },
            )
        });
        let mut args: Vec<&[u8]> = vec![
            b"XADD",
            self.stream,
            b"MAXLEN",
            b"~",
            maxlen.as_bytes(),
            b"*",
            b"n",
            self.node,
            b"e",
            self.epoch,
            b"o",
            ordinal.as_bytes(),
            b"s",
            source,
            b"v",
            event,
            b"d",
            data,
        ];
        if let Some(h) = &h {
            args.extend_from_slice(&[b"h", h]);
        }
        command(out, &args);
    }

    /// `SET <stream>:unique:<key> node NX PX ttl_ms`: a cluster unique claim.
    pub fn unique_claim(&self, out: &mut Vec<u8>, key: &[u8], ttl_ms: u64) {
        let mut k = self.stream.to_vec();
        k.extend_from_slice(b":unique:");
        k.extend_from_slice(key);
        let ttl = ttl_ms.max(1).to_string();
        command(out, &[b"SET", &k, self.node, b"NX", b"PX", ttl.as_bytes()]);
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
        let s = Stream {
            stream: b"st",
            maxlen: 10,
            node: b"a",
            epoch: b"77",
            secret: None,
        };
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

fn line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(at..)?;
    let end = rest.windows(2).position(|w| w == b"\r\n")?;
    Some((&rest[..end], at + end + 2))
}

fn int(s: &[u8]) -> Result<i64, BadReply> {
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
