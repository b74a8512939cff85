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
}

impl Stream<'_> {
    /// `XADD stream MAXLEN ~ maxlen * n node e epoch o ordinal s source v event d data`.
    pub fn xadd(&self, out: &mut Vec<u8>, ordinal: u64, source: &[u8], event: &[u8], data: &[u8]) {
        let maxlen = self.maxlen.to_string();
        let ordinal = ordinal.to_string();
        command(
            out,
            &[
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
            ],
        );
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
