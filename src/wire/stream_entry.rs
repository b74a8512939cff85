//! One stream entry of an `XREAD` reply (`*2 $id *2k ($field $value)*`),
//! read in place: no allocation, no search for line ends. This is the
//! receiving bridge's path for every entry (issue 24: building a
//! `resp::Reply` tree per entry, twice, and copying the entry was about
//! 40 % of a bridge's CPU in the cluster bench).
//!
//! Only the exact shape is read here. Anything else (null strings, other
//! types, an odd field list, bytes after the entry) returns `None`, and the
//! caller reads the entry with [`crate::wire::resp::parse`], whose verdicts
//! name what is wrong. For every entry [`walk`] accepts, `parse` reads the
//! same id and the same fields in the same order (unit-tested below).

use crate::wire::resp::small_int;

/// The longest length header accepted (digits): 10^18 is beyond any entry
/// (and [`small_int`]'s own bound).
const DIGITS_MAX: usize = 18;

/// A header line `<kind><digits>\r\n` at `at`: its number and where the
/// next token starts.
fn header(buf: &[u8], at: usize, kind: u8) -> Option<(usize, usize)> {
    if *buf.get(at)? != kind {
        return None;
    }
    let from = at + 1;
    let digits = buf
        .get(from..)?
        .iter()
        .take(DIGITS_MAX + 1)
        .take_while(|b| b.is_ascii_digit())
        .count();
    let end = from + digits;
    if buf.get(end..end + 2)? != b"\r\n" {
        return None;
    }
    // digits only (no sign): 1 to DIGITS_MAX of them, or None
    let n = usize::try_from(small_int(&buf[from..end])?).ok()?;
    Some((n, end + 2))
}

/// A bulk string at `at`: its bytes and where the next token starts.
fn bulk(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let (n, body) = header(buf, at, b'$')?;
    let end = body.checked_add(n)?;
    if buf.get(end..end.checked_add(2)?)? != b"\r\n" {
        return None;
    }
    Some((&buf[body..end], end + 2))
}

/// Reads `buf`, exactly one entry, calling `pair` with each field and its
/// value in order; the entry's id. `None`: not exactly that shape (the
/// caller reads it the slow way; `pair` may have been called for some
/// fields before, so the caller forgets what it was given).
pub fn walk<'a>(buf: &'a [u8], pair: impl FnMut(&'a [u8], &'a [u8])) -> Option<&'a [u8]> {
    let (id, end) = read(buf, pair)?;
    (end == buf.len()).then_some(id)
}

/// The length of the entry at the start of `buf`, when `buf` holds all of
/// it and it has exactly the shape [`walk`] reads (for
/// `resp_reader::Reader`, which hands such an entry out without reading it
/// token by token).
pub fn len(buf: &[u8]) -> Option<usize> {
    read(buf, |_, _| {}).map(|(_, end)| end)
}

/// The entry at the start of `buf`: its id and where it ends.
fn read<'a>(buf: &'a [u8], mut pair: impl FnMut(&'a [u8], &'a [u8])) -> Option<(&'a [u8], usize)> {
    let (2, at) = header(buf, 0, b'*')? else {
        return None;
    };
    let (id, at) = bulk(buf, at)?;
    let (n, mut at) = header(buf, at, b'*')?;
    if n % 2 != 0 {
        return None;
    }
    for _ in 0..n / 2 {
        let (k, next) = bulk(buf, at)?;
        let (v, next) = bulk(buf, next)?;
        pair(k, v);
        at = next;
    }
    Some((id, at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::resp::{command, parse, Reply};

    /// An entry's id and its fields, in order.
    type Read = (Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>);

    /// What `parse` reads from an entry of the right shape.
    fn by_parse(buf: &[u8]) -> Option<Read> {
        let (Reply::Array(Some(parts)), used) = parse(buf).ok()?? else {
            return None;
        };
        let [Reply::Bulk(Some(id)), Reply::Array(Some(kv))] = &parts[..] else {
            return None;
        };
        if used != buf.len() || kv.len() % 2 != 0 {
            return None;
        }
        let mut out = Vec::new();
        for p in kv.chunks(2) {
            let [Reply::Bulk(Some(k)), Reply::Bulk(Some(v))] = p else {
                return None;
            };
            out.push((k.to_vec(), v.to_vec()));
        }
        Some((id.to_vec(), out))
    }

    fn by_walk(buf: &[u8]) -> Option<Read> {
        let mut out = Vec::new();
        let id = walk(buf, |k, v| out.push((k.to_vec(), v.to_vec())))?;
        Some((id.to_vec(), out))
    }

    fn entry(id: &[u8], fields: &[&[u8]]) -> Vec<u8> {
        let mut kv = Vec::new();
        command(&mut kv, fields);
        let mut b = b"*2\r\n".to_vec();
        b.extend_from_slice(format!("${}\r\n", id.len()).as_bytes());
        b.extend_from_slice(id);
        b.extend_from_slice(b"\r\n");
        b.extend_from_slice(&kv);
        b
    }

    #[test]
    fn an_entry_reads_as_parse_reads_it() {
        let fields: [&[u8]; 12] = [
            b"n",
            b"node-a",
            b"e",
            b"17",
            b"o",
            b"42",
            b"s",
            b"src",
            b"v",
            b"ev",
            b"d",
            b"\x01\r\n\x00 binary",
        ];
        for k in [0, 2, 12] {
            let b = entry(b"1733500000000-7", &fields[..k]);
            let got = by_walk(&b);
            assert!(got.is_some(), "{k} fields");
            assert_eq!(got, by_parse(&b), "{k} fields");
        }
    }

    #[test]
    fn what_walk_accepts_parse_reads_the_same_way() {
        // every one-byte change, cut and extension of an entry: walk either
        // declines (the slow path decides) or agrees with parse
        let base = entry(b"5-1", &[b"n", b"ab", b"d", b"xyz"]);
        let mut accepted = 0;
        let mut check = |b: &[u8]| {
            if let Some(w) = by_walk(b) {
                accepted += 1;
                assert_eq!(Some(w), by_parse(b), "{:?}", String::from_utf8_lossy(b));
            }
        };
        for i in 0..base.len() {
            for byte in [
                b'0', b'1', b'3', b'9', b'$', b'*', b'\r', b'\n', b'-', b'+', b':', b'x',
            ] {
                let mut b = base.clone();
                b[i] = byte;
                check(&b);
            }
            check(&base[..i]);
            let mut b = base.clone();
            b.insert(i, b'0');
            check(&b);
        }
        let mut longer = base.clone();
        longer.extend_from_slice(b"+OK\r\n");
        check(&longer);
        assert!(accepted > 0);
        assert_eq!(by_walk(&longer), None, "bytes after the entry");
    }

    #[test]
    fn other_shapes_are_left_to_the_slow_path() {
        for b in [
            &b"*-1\r\n"[..],
            b"*2\r\n$-1\r\n*0\r\n",
            b"*2\r\n$1\r\n1\r\n*-1\r\n",
            b"*2\r\n$1\r\n1\r\n*1\r\n$1\r\nn\r\n",
            b"*2\r\n$1\r\n1\r\n*2\r\n$1\r\nn\r\n$-1\r\n",
            b"*2\r\n$1\r\n1\r\n*2\r\n:1\r\n$1\r\nn\r\n",
            b"*3\r\n$1\r\n1\r\n*0\r\n$0\r\n\r\n",
            b"*2\r\n$1\r\n1\r\n*0\r\n",
            b"*2\r\n$99999999999999999999\r\n",
            b"*2\r\n$+1\r\n1\r\n*0\r\n",
        ] {
            let want = if b == b"*2\r\n$1\r\n1\r\n*0\r\n" {
                Some((b"1".to_vec(), Vec::new()))
            } else {
                None
            };
            assert_eq!(by_walk(b), want, "{:?}", String::from_utf8_lossy(b));
        }
    }
}
