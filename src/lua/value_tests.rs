//! Properties of the payload codec (`crate::wire::payload`).
//!
//! - Lua-like values (nil, booleans, `ngx.null`, numbers as Lua sees them:
//!   doubles including NaN, ±inf, -0.0 and integral values, plus the
//!   encoder's exact `i64`s; byte strings, non-UTF-8 included; tables with
//!   an array part and integer, float, string and boolean keys, empty tables,
//!   bounded depth) round-trip exactly, and re-encoding what was decoded
//!   gives the same bytes.
//! - Hostile input: random bytes, token soup, truncations and one-byte
//!   edits of valid encodings decode or fail with an error, never panic, and
//!   never yield more tokens than there are bytes.
//!
//! The value model mirrors what `crate::lua::value` drives: Lua numbers go
//! through `Encoder::number` (which stores integral doubles as integers),
//! so a decoded `Int` stands for the double it equals. Equality treats NaN
//! as equal to NaN and tells -0.0 from 0.0 (the codec preserves the sign;
//! see its `numbers_keep_their_value` test).

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

use crate::wire::payload::{DecodeError, Decoder, Encoder, Token, MAX_DEPTH};
// Values as built for encoding and as decoded: the codec's own test tree.
// (`I` is an exact integer, `Encoder::int`; `N` a Lua number,
// `Encoder::number`; `T` an array part, keys 1..=n, then the other pairs.)
use crate::wire::payload::testing::{
    dec as decode, enc as encode, enc as encode_decoded, V, V as D,
};

/// Walks one whole payload without building it (iteratively, so hostile
/// nesting cannot overflow the test's stack), enforcing `MAX_DEPTH` as
/// `crate::lua::value` does. Returns the number of tokens read.
fn walk(bytes: &[u8]) -> Result<usize, DecodeError> {
    let mut d = Decoder::new(bytes);
    // Values still to read at each open table level.
    let mut pending: Vec<usize> = vec![1];
    let mut tokens = 0;
    while let Some(left) = pending.last_mut() {
        if *left == 0 {
            pending.pop();
            continue;
        }
        *left -= 1;
        let t = d.next()?;
        tokens += 1;
        assert!(tokens <= bytes.len(), "more tokens than bytes");
        if let Token::Str(s) = t {
            assert!(s.len() < bytes.len(), "a string longer than its payload");
        }
        if let Token::Table { n_array, n_hash } = t {
            // Every entry takes a byte at least: the counts are bounded.
            assert!(n_array <= bytes.len() && n_hash <= bytes.len() / 2);
            let n = n_array + 2 * n_hash;
            if n > 0 {
                // The entries would sit one level deeper than the table.
                if pending.len() > MAX_DEPTH {
                    return Err(DecodeError::TooDeep);
                }
                pending.push(n);
            }
        }
    }
    d.finish()?;
    Ok(tokens)
}

fn same_float(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits()
}

/// Does the decoded `d` stand for `v`?
fn same(v: &V, d: &D) -> bool {
    match (v, d) {
        (V::Nil, D::Nil) | (V::Null, D::Null) => true,
        (V::B(a), D::B(b)) => a == b,
        (V::I(a), D::I(b)) => a == b,
        // An integral double travels as an integer; it must be that double.
        (V::N(a), D::I(b)) => (*b as f64).to_bits() == a.to_bits() && *b as f64 as i64 == *b,
        (V::N(a), D::N(b)) => same_float(*a, *b),
        (V::S(a), D::S(b)) => a == b,
        (V::T(va, vh), D::T(da, dh)) => {
            va.len() == da.len()
                && vh.len() == dh.len()
                && va.iter().zip(da).all(|(v, d)| same(v, d))
                && vh
                    .iter()
                    .zip(dh)
                    .all(|((vk, vv), (dk, dv))| same(vk, dk) && same(vv, dv))
        }
        _ => false,
    }
}

/// Numbers as Lua has them, with the edge cases over-represented.
fn number() -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => any::<f64>(),
        2 => any::<u64>().prop_map(f64::from_bits),
        3 => (-100_000i64..100_000).prop_map(|i| i as f64),
        1 => (-(1i64 << 53)..=(1i64 << 53)).prop_map(|i| i as f64),
        1 => 0.0f64..1.0,
        // NaNs: the default one, its negation, and arbitrary payloads.
        1 => Just(f64::NAN),
        1 => Just(-f64::NAN),
        1 => any::<u64>().prop_map(|b| f64::from_bits(b | 0x7ff0_0000_0000_0001)),
        1 => prop::sample::select(vec![
            f64::INFINITY,
            f64::NEG_INFINITY,
            0.0,
            -0.0,
            9.0e15,
            -9.0e15,
            9.0e15 + 1.0,
            -9.0e15 - 1.0,
            9.0e15 - 1.0,
            2f64.powi(53),
            2f64.powi(63),
            -(2f64.powi(63)),
            f64::MAX,
            f64::MIN,
            f64::MIN_POSITIVE,
            f64::EPSILON,
            f64::from_bits(1),
            -f64::from_bits(1),
        ]),
    ]
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => vec(any::<u8>(), 0..24),
        // Non-UTF-8 for sure.
        1 => vec(0x80u8..=0xff, 1..8),
        // Lengths that need two- and three-byte varints (noise from a seed:
        // cheaper to generate than element-wise, and shrinks by length).
        2 => (120usize..300, any::<u64>()).prop_map(|(n, seed)| crate::testing::noise(seed, n)),
        1 => (16_380usize..16_400, any::<u64>()).prop_map(|(n, seed)| crate::testing::noise(seed, n)),
    ]
}

/// A cheap scalar, to fill wide tables.
fn small() -> impl Strategy<Value = V> {
    prop_oneof![
        any::<bool>().prop_map(V::B),
        any::<i64>().prop_map(V::I),
        (-1000i64..1000).prop_map(|i| V::N(i as f64 / 4.0)),
        any::<u64>().prop_map(|s| V::S(crate::testing::noise(s, (s % 5) as usize))),
    ]
}

/// Anything a table can hold (not nil), tables aside.
fn scalar() -> impl Strategy<Value = V> {
    prop_oneof![
        any::<bool>().prop_map(V::B),
        Just(V::Null),
        any::<i64>().prop_map(V::I),
        number().prop_map(V::N),
        bytes().prop_map(V::S),
    ]
}

/// A table key: an integer or float number (never NaN), an exact integer,
/// a string or a boolean.
fn key() -> impl Strategy<Value = V> {
    prop_oneof![
        3 => (-4i64..40).prop_map(|i| V::N(i as f64)),
        2 => number().prop_filter("NaN is not a key", |n| !n.is_nan()).prop_map(V::N),
        1 => any::<i64>().prop_map(V::I),
        3 => vec(any::<u8>(), 0..12).prop_map(V::S),
        1 => any::<bool>().prop_map(V::B),
    ]
}

/// How Lua tells keys apart: numbers by value (0 == -0.0, 2 == 2.0).
#[derive(PartialEq, Eq, Hash)]
enum KeyId {
    Num(u64),
    Int(i64),
    Str(Vec<u8>),
    Bool(bool),
}

fn key_id(k: &V) -> KeyId {
    let num = |n: f64| KeyId::Num(if n == 0.0 { 0 } else { n.to_bits() });
    match k {
        V::N(n) => num(*n),
        V::I(i) if *i as f64 as i64 == *i && (*i as f64) < 2f64.powi(63) => num(*i as f64),
        V::I(i) => KeyId::Int(*i),
        V::S(s) => KeyId::Str(s.clone()),
        V::B(b) => KeyId::Bool(*b),
        _ => unreachable!("not a key: {k:?}"),
    }
}

/// A table as Lua would hold it: distinct keys, and none of 1..=#array in
/// the hash part (those belong to the array part).
fn table(array: Vec<V>, pairs: Vec<(V, V)>) -> V {
    let n = array.len() as f64;
    let mut seen = std::collections::HashSet::new();
    let pairs = pairs
        .into_iter()
        .filter(|(k, _)| {
            let x = match k {
                V::N(x) => *x,
                V::I(i) => *i as f64,
                _ => f64::NAN,
            };
            !(x.fract() == 0.0 && x >= 1.0 && x <= n)
        })
        .filter(|(k, _)| seen.insert(key_id(k)))
        .collect();
    V::T(array, pairs)
}

/// A table-holdable value (not nil), nested a few levels deep.
fn nested() -> impl Strategy<Value = V> {
    scalar().prop_recursive(6, 200, 6, |inner| {
        prop_oneof![
            4 => (vec(inner.clone(), 0..6), vec((key(), inner.clone()), 0..6))
                .prop_map(|(a, h)| table(a, h)),
            // Empty tables.
            1 => Just(V::T(vec![], vec![])),
            // Wide ones: counts that need two-byte varints.
            1 => (vec(small(), 126..160), vec((key(), small()), 0..140))
                .prop_map(|(a, h)| table(a, h)),
            // Hash part only.
            1 => vec((key(), inner), 1..6).prop_map(|h| table(vec![], h)),
        ]
    })
}

/// Any payload value: nil too at the top level (a Lua call can post nil).
fn value() -> impl Strategy<Value = V> {
    prop_oneof![1 => Just(V::Nil), 12 => nested()]
}

fn encoded(v: &V) -> Vec<u8> {
    let mut e = Encoder::new();
    encode(&mut e, v);
    e.as_bytes().to_vec()
}

/// One edit of a valid encoding.
#[derive(Debug, Clone)]
enum Edit {
    Set(Index, u8),
    Flip(Index, u8),
    Insert(Index, u8),
    Delete(Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
        (any::<Index>(), 0u8..8).prop_map(|(i, bit)| Edit::Flip(i, 1 << bit)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<Index>().prop_map(Edit::Delete),
    ]
}

/// Bytes that look like the format: tags (mostly valid) with plausible
/// operands, so decoding gets deep before it fails.
fn token_soup() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        4 => (0u8..=3).prop_map(|t| vec![t]),
        2 => vec(any::<u8>(), 8).prop_map(|mut b| { b.insert(0, 4 + (b[0] & 1)); b }),
        2 => (0u8..12, vec(any::<u8>(), 0..12)).prop_map(|(n, mut s)| {
            s.insert(0, n);
            s.insert(0, 6);
            s
        }),
        3 => (0u8..5, 0u8..5).prop_map(|(a, h)| vec![7, a, h]),
        1 => vec(any::<u8>(), 1..4),
        // Big or overlong varints.
        1 => vec(0x80u8..=0xff, 1..12).prop_map(|mut v| { v.insert(0, 6 + (v[0] & 1)); v }),
    ];
    vec(piece, 0..40).prop_map(|p| p.concat())
}

proptest! {
    #![proptest_config(crate::testing::config(256))]

    /// Encode, decode, compare; decode consumes everything; re-encoding is
    /// byte-identical (the encoding is canonical for what it produces).
    #[test]
    fn lua_like_values_roundtrip(v in value()) {
        let bytes = encoded(&v);
        let mut d = Decoder::new(&bytes);
        let back = decode(&mut d, 0).expect("a valid encoding decodes");
        prop_assert_eq!(d.finish(), Ok(()));
        prop_assert!(same(&v, &back), "{:?}\n  came back as\n{:?}", v, back);
        let mut e = Encoder::new();
        encode_decoded(&mut e, &back);
        prop_assert_eq!(e.as_bytes(), &bytes[..]);
        prop_assert_eq!(walk(&bytes), Ok(tokens(&v)));
    }

    /// Every number Lua can hold keeps its exact value (NaN stays NaN, the
    /// sign of zero stays).
    #[test]
    fn numbers_keep_their_value(n in number()) {
        let bytes = encoded(&V::N(n));
        let back = match Decoder::new(&bytes).next() {
            Ok(Token::Int(i)) => {
                prop_assert!(i.unsigned_abs() <= 9_000_000_000_000_000);
                i as f64
            }
            Ok(Token::Num(x)) => x,
            other => return Err(TestCaseError::fail(format!("{other:?}"))),
        };
        prop_assert!(same_float(n, back), "{} ({:#x}) -> {} ({:#x})", n, n.to_bits(), back, back.to_bits());
    }

    /// Random bytes decode or fail cleanly.
    #[test]
    fn random_bytes_decode_or_fail(bytes in vec(any::<u8>(), 0..256)) {
        check_hostile(&bytes);
    }

    /// Format-shaped garbage decodes or fails cleanly.
    #[test]
    fn token_soup_decodes_or_fails(bytes in token_soup()) {
        check_hostile(&bytes);
    }

    /// Every strict prefix of a valid encoding is `Truncated`.
    #[test]
    fn truncations_are_truncated(v in value(), cuts in vec(any::<Index>(), 32)) {
        let bytes = encoded(&v);
        let all: Vec<usize> = if bytes.len() <= 300 {
            (0..bytes.len()).collect()
        } else {
            cuts.iter().map(|c| c.index(bytes.len())).collect()
        };
        for cut in all {
            prop_assert_eq!(walk(&bytes[..cut]), Err(DecodeError::Truncated), "cut at {}", cut);
            let mut d = Decoder::new(&bytes[..cut]);
            prop_assert_eq!(decode(&mut d, 0).err(), Some(DecodeError::Truncated), "cut at {}", cut);
        }
    }

    /// One- and few-byte edits of a valid encoding decode or fail cleanly.
    #[test]
    fn edited_encodings_decode_or_fail(v in value(), edits in vec(edit(), 1..4)) {
        let mut bytes = encoded(&v);
        for e in &edits {
            match *e {
                Edit::Set(i, b) => { let i = i.index(bytes.len()); bytes[i] = b }
                Edit::Flip(i, m) => { let i = i.index(bytes.len()); bytes[i] ^= m }
                Edit::Insert(i, b) => { let i = i.index(bytes.len() + 1); bytes.insert(i, b) }
                Edit::Delete(i) => { let i = i.index(bytes.len()); bytes.remove(i); }
            }
            if bytes.is_empty() {
                bytes.push(0);
            }
        }
        check_hostile(&bytes);
    }
}

proptest! {
    #![proptest_config(crate::testing::config(64))]

    /// Values written back to back into one encoder read back in order.
    #[test]
    fn a_stream_of_values_reads_back_in_order(vs in vec(value(), 0..6)) {
        let mut e = Encoder::new();
        vs.iter().for_each(|v| encode(&mut e, v));
        let mut d = Decoder::new(e.as_bytes());
        for v in &vs {
            let back = decode(&mut d, 0).expect("decodes");
            prop_assert!(same(v, &back), "{:?} vs {:?}", v, back);
        }
        prop_assert_eq!(d.finish(), Ok(()));
    }
}

/// Tokens in `v`'s encoding.
fn tokens(v: &V) -> usize {
    match v {
        V::T(a, h) => {
            1 + a.iter().map(tokens).sum::<usize>()
                + h.iter().map(|(k, x)| tokens(k) + tokens(x)).sum::<usize>()
        }
        _ => 1,
    }
}

/// Decodes untrusted bytes both ways (token walk and tree): no panic, the
/// two agree, and an error displays.
fn check_hostile(bytes: &[u8]) {
    let walked = walk(bytes);
    let mut d = Decoder::new(bytes);
    let tree = decode(&mut d, 0).and_then(|t| d.finish().map(|()| t));
    assert_eq!(walked.as_ref().err(), tree.as_ref().err(), "{bytes:02x?}");
    if let Err(e) = &walked {
        assert!(!e.to_string().is_empty());
    }
    if let Ok(t) = tree {
        // What decoded is a value the encoder can write again.
        let mut e = Encoder::new();
        encode_decoded(&mut e, &t);
        let mut d = Decoder::new(e.as_bytes());
        decode(&mut d, 0).expect("re-encoded value decodes");
        assert_eq!(d.finish(), Ok(()));
    }
}

#[test]
fn walk_enforces_max_depth_like_the_lua_layer() {
    let mut e = Encoder::new();
    for _ in 0..MAX_DEPTH {
        e.table(1, 0);
    }
    e.nil();
    assert_eq!(walk(e.as_bytes()), Ok(MAX_DEPTH + 1));
    let mut e = Encoder::new();
    for _ in 0..=MAX_DEPTH {
        e.table(1, 0);
    }
    e.nil();
    assert_eq!(walk(e.as_bytes()), Err(DecodeError::TooDeep));
}
