//! The payload codec: Lua-like values to bytes and back.
//!
//! Pure, no Lua types: `crate::lua::value` walks real Lua values and drives
//! the [`Encoder`], and rebuilds them from the [`Decoder`]'s tokens.
//!
//! It accepts what cjson accepts (nil, booleans, numbers, strings, tables,
//! `ngx.null`) and is stricter about round trips than JSON can be: strings are
//! raw bytes (non-UTF-8 included), integer and non-integer keys stay numbers,
//! an empty table stays an empty table, NaN and infinities survive.
//!
//! ```text
//! value  := 0x00 nil | 0x01 false | 0x02 true | 0x03 null
//!         | 0x04 i64-le | 0x05 f64-le | 0x06 varint(len) bytes
//!         | 0x07 varint(n_array) varint(n_hash) value*n_array (value value)*n_hash
//! ```
//! The array part holds keys 1..n_array in order; everything else is pairs.

/// Deepest table nesting accepted (cjson's default `encode_max_depth`).
pub const MAX_DEPTH: usize = 1000;

const NIL: u8 = 0;
const FALSE: u8 = 1;
const TRUE: u8 = 2;
const NULL: u8 = 3;
const INT: u8 = 4;
const NUM: u8 = 5;
const STR: u8 = 6;
const TABLE: u8 = 7;

/// Appends encoded values to a byte buffer, up to a limit: past it the
/// encoder stops writing and reports [`Encoder::exceeded`], so a value far
/// larger than any event is never copied (nor its buffer kept).
pub struct Encoder {
    buf: Vec<u8>,
    limit: usize,
    exceeded: bool,
}

impl Default for Encoder {
    fn default() -> Self {
        Self {
            buf: Vec::new(),
            limit: usize::MAX,
            exceeded: false,
        }
    }
}

/// How many bytes [`put_varint`] writes for `n`.
fn varint_len(mut n: u64) -> usize {
    let mut len = 1;
    while n >= 0x80 {
        n >>= 7;
        len += 1;
    }
    len
}

fn put_varint(buf: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        buf.push((n as u8) | 0x80);
        n >>= 7;
    }
    buf.push(n as u8);
}

impl Encoder {
    /// An empty encoder.
    pub fn new() -> Self {
        Self::default()
    }
    /// True (and marks the encoder exceeded) unless `n` more bytes fit.
    /// Every caller asks for exactly the bytes it writes, so whether a value
    /// fits depends on its encoded size only, never on the order a table's
    /// entries are walked in (which varies from run to run).
    fn room(&mut self, n: usize) -> bool {
        if !self.exceeded && self.buf.len().saturating_add(n) > self.limit {
            self.exceeded = true;
        }
        !self.exceeded
    }
    /// Encodes `nil`.
    pub fn nil(&mut self) {
        if self.room(1) {
            self.buf.push(NIL);
        }
    }
    /// Encodes a boolean.
    pub fn boolean(&mut self, b: bool) {
        if self.room(1) {
            self.buf.push(if b { TRUE } else { FALSE });
        }
    }
    /// Encodes `ngx.null` (cjson's null).
    pub fn null(&mut self) {
        if self.room(1) {
            self.buf.push(NULL);
        }
    }
    /// Encodes an integer.
    pub fn int(&mut self, i: i64) {
        if !self.room(9) {
            return;
        }
        self.buf.push(INT);
        self.buf.extend_from_slice(&i.to_le_bytes());
    }
    /// Encodes a number: as an integer when that is exact, else as a double.
    pub fn number(&mut self, n: f64) {
        if n.fract() == 0.0
            && (-9.0e15..=9.0e15).contains(&n)
            && !(n == 0.0 && n.is_sign_negative())
        {
            self.int(n as i64);
        } else if self.room(9) {
            self.buf.push(NUM);
            self.buf.extend_from_slice(&n.to_le_bytes());
        }
    }
    /// Encodes a byte string.
    pub fn string(&mut self, s: &[u8]) {
        let header = 1 + varint_len(s.len() as u64);
        if !self.room(s.len().saturating_add(header)) {
            return;
        }
        self.buf.push(STR);
        put_varint(&mut self.buf, s.len() as u64);
        self.buf.extend_from_slice(s);
    }
    /// Starts a table; exactly `n_array` values then `n_hash` key/value pairs must follow.
    pub fn table(&mut self, n_array: usize, n_hash: usize) {
        if !self.room(1 + varint_len(n_array as u64) + varint_len(n_hash as u64)) {
            return;
        }
        self.buf.push(TABLE);
        put_varint(&mut self.buf, n_array as u64);
        put_varint(&mut self.buf, n_hash as u64);
    }
    /// The bytes so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }
    /// Forgets everything (keeps the allocation and the limit).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.exceeded = false;
    }
    /// Sets the most bytes the encoding may take.
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }
    /// True when a value did not fit in the limit (the bytes are then
    /// incomplete and must not be used).
    pub fn exceeded(&self) -> bool {
        self.exceeded
    }
    /// Gives memory back when the buffer grew past `keep` bytes.
    pub fn shrink(&mut self, keep: usize) {
        if self.buf.capacity() > keep {
            self.buf.clear();
            self.buf.shrink_to(keep);
        }
    }
}

/// One decoded item.
#[derive(Debug, Clone, PartialEq)]
pub enum Token<'a> {
    Nil,
    Bool(bool),
    Null,
    Int(i64),
    Num(f64),
    Str(&'a [u8]),
    /// A table header; its contents follow as further tokens.
    Table {
        n_array: usize,
        n_hash: usize,
    },
}

/// Why bytes could not be decoded.
#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    Truncated,
    BadTag(u8),
    TooDeep,
    Trailing,
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DecodeError::Truncated => f.write_str("truncated payload"),
            DecodeError::BadTag(t) => write!(f, "bad tag {t}"),
            DecodeError::TooDeep => f.write_str("nesting too deep"),
            DecodeError::Trailing => f.write_str("trailing bytes"),
        }
    }
}

/// Reads tokens from encoded bytes.
pub struct Decoder<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Decoder<'a> {
    /// A decoder over `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Decoder { buf, at: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.at.checked_add(n).ok_or(DecodeError::Truncated)?;
        let s = self.buf.get(self.at..end).ok_or(DecodeError::Truncated)?;
        self.at = end;
        Ok(s)
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.take(1)?[0];
            n |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(DecodeError::Truncated)
    }

    /// The next token.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Token<'a>, DecodeError> {
        let tag = self.take(1)?[0];
        Ok(match tag {
            NIL => Token::Nil,
            FALSE => Token::Bool(false),
            TRUE => Token::Bool(true),
            NULL => Token::Null,
            INT => Token::Int(i64::from_le_bytes(self.take(8)?.try_into().unwrap())),
            NUM => Token::Num(f64::from_le_bytes(self.take(8)?.try_into().unwrap())),
            STR => {
                let n = self.varint()?;
                Token::Str(self.take(usize::try_from(n).map_err(|_| DecodeError::Truncated)?)?)
            }
            TABLE => {
                let n_array = self.varint()? as usize;
                let n_hash = self.varint()? as usize;
                // Every entry takes at least one byte: refuse absurd counts early.
                let left = self.buf.len() - self.at;
                if n_array > left || n_hash > left / 2 {
                    return Err(DecodeError::Truncated);
                }
                Token::Table { n_array, n_hash }
            }
            t => return Err(DecodeError::BadTag(t)),
        })
    }

    /// Errors unless every byte was consumed.
    pub fn finish(&self) -> Result<(), DecodeError> {
        (self.at == self.buf.len())
            .then_some(())
            .ok_or(DecodeError::Trailing)
    }
}

/// Checks that `buf` is exactly one encoded value (what a receiver decodes),
/// without building it: a payload from another node is checked before it
/// is posted here.
pub fn check(buf: &[u8]) -> Result<(), DecodeError> {
    let mut d = Decoder::new(buf);
    // values still to read at each open table level
    let mut pending: Vec<u64> = vec![1];
    while let Some(top) = pending.last_mut() {
        if *top == 0 {
            pending.pop();
            continue;
        }
        *top -= 1;
        if let Token::Table { n_array, n_hash } = d.next()? {
            if pending.len() > MAX_DEPTH {
                return Err(DecodeError::TooDeep);
            }
            pending.push(n_array as u64 + 2 * n_hash as u64);
        }
    }
    d.finish()
}

/// A value tree without Lua, for the unit and property tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// A tiny value tree to test round trips without Lua.
    #[derive(Debug, PartialEq, Clone)]
    pub enum V {
        Nil,
        B(bool),
        Null,
        I(i64),
        N(f64),
        S(Vec<u8>),
        T(Vec<V>, Vec<(V, V)>),
    }

    pub fn enc(e: &mut Encoder, v: &V) {
        match v {
            V::Nil => e.nil(),
            V::B(b) => e.boolean(*b),
            V::Null => e.null(),
            V::I(i) => e.int(*i),
            V::N(n) => e.number(*n),
            V::S(s) => e.string(s),
            V::T(a, h) => {
                e.table(a.len(), h.len());
                a.iter().for_each(|x| enc(e, x));
                for (k, x) in h {
                    enc(e, k);
                    enc(e, x);
                }
            }
        }
    }

    pub fn dec(d: &mut Decoder, depth: usize) -> Result<V, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep);
        }
        Ok(match d.next()? {
            Token::Nil => V::Nil,
            Token::Bool(b) => V::B(b),
            Token::Null => V::Null,
            Token::Int(i) => V::I(i),
            Token::Num(n) => V::N(n),
            Token::Str(s) => V::S(s.to_vec()),
            Token::Table { n_array, n_hash } => {
                let a = (0..n_array)
                    .map(|_| dec(d, depth + 1))
                    .collect::<Result<_, _>>()?;
                let h = (0..n_hash)
                    .map(|_| Ok((dec(d, depth + 1)?, dec(d, depth + 1)?)))
                    .collect::<Result<_, _>>()?;
                V::T(a, h)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{dec, enc, V};
    use super::*;

    #[test]
    fn check_accepts_what_decodes_and_nothing_else() {
        let mut e = Encoder::new();
        enc(
            &mut e,
            &V::T(
                vec![V::I(1), V::S(b"x".to_vec())],
                vec![(V::S(b"k".to_vec()), V::T(vec![], vec![]))],
            ),
        );
        assert_eq!(check(e.as_bytes()), Ok(()));
        let b = e.as_bytes();
        for cut in 0..b.len() {
            assert!(check(&b[..cut]).is_err(), "cut {cut}");
        }
        let mut t = b.to_vec();
        t.push(0);
        assert_eq!(check(&t), Err(DecodeError::Trailing));
        assert_eq!(check(b"garbage"), Err(DecodeError::BadTag(b'g')));
    }

    #[test]
    fn the_limit_stops_writing() {
        let mut e = Encoder::new();
        e.set_limit(100);
        e.table(0, 2);
        e.string(b"small");
        assert!(!e.exceeded());
        e.string(&[b'x'; 1000]);
        assert!(e.exceeded());
        assert!(
            e.as_bytes().len() <= 100,
            "nothing past the limit is written"
        );
        e.int(1);
        assert!(e.as_bytes().len() <= 100);
        e.clear();
        assert!(!e.exceeded());
        e.string(&[b'x'; 98]);
        assert!(
            !e.exceeded(),
            "the limit holds after clear: 98 + 2 fits in 100"
        );
    }

    #[test]
    fn the_limit_is_exact_whatever_the_order() {
        // {s = 150 B, n = 1.5, 7, true} encodes to 3 + 10 + 156 + 12 bytes
        let enc = |limit: usize, s_first: bool| {
            let mut e = Encoder::new();
            e.set_limit(limit);
            e.table(2, 2);
            e.int(7);
            e.boolean(true);
            let s = [b'a'; 150];
            for first in [s_first, !s_first] {
                if first {
                    e.string(b"s");
                    e.string(&s);
                } else {
                    e.string(b"n");
                    e.number(1.5);
                }
            }
            (e.exceeded(), e.as_bytes().len())
        };
        let full = enc(usize::MAX, true).1;
        assert_eq!(full, 3 + 10 + 3 + 153 + 3 + 9);
        for s_first in [true, false] {
            assert_eq!(enc(full, s_first), (false, full), "fits exactly");
            assert!(enc(full - 1, s_first).0, "one byte short");
        }
        let mut e = Encoder::new();
        e.set_limit(varint_len(200) + 1 + 200);
        e.string(&[b'x'; 200]);
        assert!(
            !e.exceeded(),
            "a string's header is its varint, not a reservation"
        );
    }

    #[test]
    fn shrink_gives_memory_back() {
        let mut e = Encoder::new();
        e.string(&vec![b'x'; 1 << 20]);
        e.shrink(4096);
        assert!(e.as_bytes().is_empty());
        e.string(b"again");
        assert!(!e.exceeded());
    }

    fn roundtrip(v: &V) -> V {
        let mut e = Encoder::new();
        enc(&mut e, v);
        let mut d = Decoder::new(e.as_bytes());
        let out = dec(&mut d, 0).unwrap();
        d.finish().unwrap();
        out
    }

    #[test]
    fn scalars_roundtrip() {
        for v in [
            V::Nil,
            V::B(true),
            V::B(false),
            V::Null,
            V::I(0),
            V::I(-1),
            V::I(i64::MAX),
            V::N(0.5),
            V::S(vec![]),
            V::S(b"\x00\xff\xfe binary".to_vec()),
        ] {
            assert_eq!(roundtrip(&v), v);
        }
    }

    #[test]
    fn numbers_keep_their_value() {
        let mut e = Encoder::new();
        for n in [
            1.0,
            -3.0,
            2.5,
            1e300,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            9.5e15,
        ] {
            e.clear();
            e.number(n);
            let t = Decoder::new(e.as_bytes()).next().unwrap();
            let back = match t {
                Token::Int(i) => i as f64,
                Token::Num(x) => x,
                t => panic!("{t:?}"),
            };
            assert_eq!(back.to_bits(), n.to_bits());
        }
        e.clear();
        e.number(f64::NAN);
        assert!(matches!(Decoder::new(e.as_bytes()).next(), Ok(Token::Num(x)) if x.is_nan()));
    }

    #[test]
    fn nested_tables_roundtrip() {
        let v = V::T(
            vec![V::I(1), V::S(b"two".to_vec()), V::T(vec![], vec![])],
            vec![
                (V::S(b"k".to_vec()), V::Null),
                (V::I(10), V::T(vec![V::B(true)], vec![])),
                (V::N(1.5), V::S(vec![0; 3])),
            ],
        );
        assert_eq!(roundtrip(&v), v);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert_eq!(Decoder::new(&[]).next(), Err(DecodeError::Truncated));
        assert_eq!(Decoder::new(&[9]).next(), Err(DecodeError::BadTag(9)));
        assert_eq!(
            Decoder::new(&[STR, 0xff, 0xff, 0xff, 0x0f]).next(),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            Decoder::new(&[TABLE, 0xff, 0xff, 0x7f, 0]).next(),
            Err(DecodeError::Truncated)
        );
        // Fuzz-ish: every prefix of a valid encoding fails cleanly.
        let mut e = Encoder::new();
        enc(
            &mut e,
            &V::T(vec![V::S(b"abc".to_vec())], vec![(V::I(5), V::N(0.25))]),
        );
        let bytes = e.as_bytes();
        for cut in 0..bytes.len() {
            let mut d = Decoder::new(&bytes[..cut]);
            assert!(dec(&mut d, 0).is_err() || d.finish().is_err() || cut == bytes.len());
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        // A small LCG: deterministic, no extra dependency.
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as u8
        };
        for _ in 0..20_000 {
            let len = next() as usize % 64;
            let mut bytes: Vec<u8> = (0..len).map(|_| next()).collect();
            // Bias towards valid tags so decoding gets deep into the format.
            if let Some(b) = bytes.first_mut() {
                *b %= 9;
            }
            let mut d = Decoder::new(&bytes);
            let _ = dec(&mut d, 0).and_then(|_| d.finish());
        }
    }

    #[test]
    fn depth_is_bounded() {
        // 8 MB: the stack of an nginx worker, where decoding really runs.
        std::thread::Builder::new()
            .stack_size(8 << 20)
            .spawn(|| {
                let mut e = Encoder::new();
                for _ in 0..MAX_DEPTH + 5 {
                    e.table(1, 0);
                }
                e.nil();
                assert_eq!(
                    dec(&mut Decoder::new(e.as_bytes()), 0),
                    Err(DecodeError::TooDeep)
                );
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
