//! Signed cluster entries (`worker_events_cluster ... secret=`): an
//! HMAC-SHA256 over an entry's fields, sent as its `h` field, so a node
//! drops entries that someone without the secret added to the stream.
//!
//! The MAC covers `n`, `e`, `o`, `s`, `v` and `d`, each as its length (8
//! bytes, little endian) and its bytes, so no two entries share an input.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// An entry's signed fields.
pub struct Fields<'a> {
    pub node: &'a [u8],
    pub epoch: &'a [u8],
    pub ordinal: &'a [u8],
    pub source: &'a [u8],
    pub event: &'a [u8],
    pub data: &'a [u8],
}

fn mac(secret: &[u8], f: &Fields<'_>) -> HmacSha256 {
    // HMAC takes a key of any length
    let mut m = HmacSha256::new_from_slice(secret).expect("any key length");
    for part in [f.node, f.epoch, f.ordinal, f.source, f.event, f.data] {
        m.update(&(part.len() as u64).to_le_bytes());
        m.update(part);
    }
    m
}

/// The `h` field: 64 lowercase hex digits.
pub fn sign(secret: &[u8], f: &Fields<'_>) -> [u8; 64] {
    let tag = mac(secret, f).finalize().into_bytes();
    let mut out = [0u8; 64];
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in tag.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 15)];
    }
    out
}

fn unhex(h: &[u8]) -> Option<[u8; 32]> {
    if h.len() != 64 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = digit(h[2 * i])? << 4 | digit(h[2 * i + 1])?;
    }
    Some(out)
}

/// True when `h` is the entry's HMAC (compared in constant time).
pub fn verify(secret: &[u8], f: &Fields<'_>, h: &[u8]) -> bool {
    match unhex(h) {
        Some(tag) => mac(secret, f).verify_slice(&tag).is_ok(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(data: &[u8]) -> Fields<'_> {
        Fields {
            node: b"a",
            epoch: b"7",
            ordinal: b"1",
            source: b"s",
            event: b"v",
            data,
        }
    }

    #[test]
    fn signed_entries_verify_and_altered_ones_do_not() {
        let h = sign(b"k", &fields(b"x"));
        assert!(verify(b"k", &fields(b"x"), &h));
        assert!(!verify(b"k2", &fields(b"x"), &h));
        assert!(!verify(b"k", &fields(b"y"), &h));
        assert!(!verify(b"k", &fields(b"x"), &h[..63]));
        assert!(!verify(b"k", &fields(b"x"), b"zz"));
        // field boundaries are part of the input
        let a = Fields {
            node: b"ab",
            epoch: b"",
            ..fields(b"x")
        };
        let b = Fields {
            node: b"a",
            epoch: b"b",
            ..fields(b"x")
        };
        assert_ne!(sign(b"k", &a), sign(b"k", &b));
        // RFC 4231 test case 2 (the same HMAC-SHA256 over the plain message)
        let mut m = HmacSha256::new_from_slice(b"Jefe").unwrap();
        m.update(b"what do ya want for nothing?");
        let t = m.finalize().into_bytes();
        assert_eq!(t[..4], [0x5b, 0xdc, 0xc1, 0x46]);
    }
}
