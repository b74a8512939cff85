//! Properties of the event log (`crate::zone::ring`).
//!
//! - A model check: random appends (sizes up to the largest record, and
//!   just over it), poster deaths (seq gaps) and several cursors reading,
//!   draining and rejoining, against a `Vec` model of the log (which records
//!   the ring keeps: the newest that fit; what each reader should get next;
//!   the exact loss it should report). Every record carries its seq and a
//!   checksum of its own content, and is also compared byte for byte.
//! - The threaded run is in `ring_threads`.

use core::sync::atomic::Ordering;

use proptest::collection::vec;
use proptest::prelude::*;

use crate::testing::{checksum, noise};
use crate::zone::lock::TestLock;
use crate::zone::record::{record_len, HEADER_LEN};
use crate::zone::ring::{evict_ahead, AppendError, Cursor, ReadOutcome, Ring, RingHeader};

/// Runs `f` over a fresh heap log of `cap` bytes (its bytes start as junk,
/// which no reader may ever see).
pub(super) fn with_ring<R>(cap: u64, f: impl FnOnce(Ring<'_>) -> R) -> R {
    let hdr = RingHeader::default();
    let mut bytes = vec![0xdbdb_dbdb_dbdb_dbdbu64; (cap / 8) as usize];
    // SAFETY: `bytes` holds `cap` bytes (cap is a non-zero multiple of 8),
    // outlives the view (dropped after `f` returns), and is reached only
    // through rings over `hdr`.
    let ring = unsafe { Ring::new(&hdr, bytes.as_mut_ptr().cast(), cap) };
    ring.reset();
    let r = f(ring);
    drop(bytes);
    r
}

// ---------------------------------------------------------------------------
// The model check.

/// How big an append's payload is, relative to what the log accepts.
#[derive(Debug, Clone)]
enum Size {
    /// This fraction (of 65535) of the room between the smallest and the
    /// largest payload.
    Frac(u16),
    /// Exactly the largest record.
    Max,
    /// This many bytes more than the largest payload: refused.
    Over(u8),
}

#[derive(Debug, Clone)]
enum Op {
    Append {
        source: u8,
        event: u8,
        unique: u8,
        size: Size,
    },
    /// A poster took a seq and died: the seq is never used.
    DeadPoster,
    /// One read attempt by this reader.
    Read(usize),
    /// This reader reads until `Empty`.
    Drain(usize),
    /// This reader starts over at the head (a new consumer).
    Rejoin(usize),
}

const READERS: usize = 3;
/// Payload prefix: seq (8) and checksum (8).
pub(super) const PREFIX: usize = 16;

/// Ops; names are at least `min_name` bytes long (the source and event:
/// the unique may always be empty).
fn op(min_name: u8) -> impl Strategy<Value = Op> {
    let size = prop_oneof![
        6 => any::<u16>().prop_map(Size::Frac),
        3 => (0u16..2000).prop_map(Size::Frac),
        1 => Just(Size::Max),
        1 => (1u8..=64).prop_map(Size::Over),
    ];
    prop_oneof![
        10 => (min_name..=8, min_name..=8, 0u8..=8, size).prop_map(|(source, event, unique, size)| {
            Op::Append { source, event, unique, size }
        }),
        1 => Just(Op::DeadPoster),
        6 => (0..READERS).prop_map(Op::Read),
        2 => (0..READERS).prop_map(Op::Drain),
        1 => (0..READERS).prop_map(Op::Rejoin),
    ]
}

/// Log capacities: small ones wrap and evict all the time.
fn cap() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => (16u64..=128).prop_map(|n| n * 8),
        1 => (128u64..=1024).prop_map(|n| n * 8),
    ]
}

/// One appended record, as the model remembers it.
#[derive(Debug, Clone)]
struct Rec {
    seq: u64,
    pid: i32,
    source: Vec<u8>,
    event: Vec<u8>,
    unique: Vec<u8>,
    data: Vec<u8>,
    len: u64,
}

/// The record's payload: seq, checksum of everything, then noise.
fn payload(seq: u64, pid: i32, source: &[u8], event: &[u8], unique: &[u8], n: usize) -> Vec<u8> {
    let body = noise(seq, n - PREFIX);
    let sum = checksum(&[
        &seq.to_le_bytes(),
        &pid.to_le_bytes(),
        source,
        event,
        unique,
        &body,
    ]);
    [&seq.to_le_bytes()[..], &sum.to_le_bytes(), &body].concat()
}

/// Checks a payload against its own checksum; returns the seq it carries.
fn verify(pid: i32, source: &[u8], event: &[u8], unique: &[u8], data: &[u8]) -> Option<u64> {
    let seq = u64::from_le_bytes(data.get(..8)?.try_into().ok()?);
    let sum = u64::from_le_bytes(data.get(8..16)?.try_into().ok()?);
    let want = checksum(&[
        &seq.to_le_bytes(),
        &pid.to_le_bytes(),
        source,
        event,
        unique,
        &data[16..],
    ]);
    (sum == want).then_some(seq)
}

/// What the log should hold.
#[derive(Default)]
struct Model {
    /// Every committed record, oldest first.
    recs: Vec<Rec>,
    /// Index in `recs` of the oldest one still in the log.
    first: usize,
    /// The seq the next append gets.
    next_seq: u64,
    head: u64,
    tail: u64,
    evicted: u64,
}

impl Model {
    fn append(&mut self, cap: u64, rec: Rec) {
        // a full log evicts a little ahead
        let room = if self.head + rec.len - self.tail > cap {
            cap - evict_ahead(cap)
        } else {
            cap
        };
        while self.head + rec.len - self.tail > room {
            self.tail += self.recs[self.first].len;
            self.first += 1;
            self.evicted += 1;
        }
        self.head += rec.len;
        self.next_seq = rec.seq + 1;
        self.recs.push(rec);
    }
}

/// A reader, as the model sees it: its real cursor, the index in
/// `Model::recs` of the next record it should get, the seq it expects
/// next, and what it saw since it (re)joined.
struct Reader {
    cur: Cursor,
    idx: usize,
    next_seq: u64,
    start_seq: u64,
    seen: u64,
    lost: u64,
}

/// What a read should return, per the model (and advances the model reader).
#[derive(Debug, PartialEq)]
enum Expect {
    Empty,
    Lost(u64),
    Record(usize),
}

fn expect(m: &Model, r: &mut Reader) -> Expect {
    if r.idx == m.recs.len() {
        return Expect::Empty;
    }
    if r.idx < m.first {
        // Overrun: resynchronised at the oldest record still there.
        let at = &m.recs[m.first];
        let lost = at.seq - r.next_seq;
        (r.idx, r.next_seq) = (m.first, at.seq);
        return Expect::Lost(lost);
    }
    let rec = &m.recs[r.idx];
    if rec.seq > r.next_seq {
        // A dead poster's seq: reported before the record after it.
        let gap = rec.seq - r.next_seq;
        r.next_seq = rec.seq;
        return Expect::Lost(gap);
    }
    r.idx += 1;
    r.next_seq = rec.seq + 1;
    Expect::Record(r.idx - 1)
}

/// One real read, checked against the model.
fn read_one(
    ring: Ring,
    lock: &TestLock,
    m: &Model,
    r: &mut Reader,
    buf: &mut Vec<u8>,
) -> Result<Expect, TestCaseError> {
    let pending = ring.has_pending(&r.cur);
    let want = expect(m, r);
    // `has_pending` is true exactly when the read will not be `Empty`.
    prop_assert_eq!(pending, want != Expect::Empty);
    match (ring.read_next(lock, &mut r.cur, buf), &want) {
        (ReadOutcome::Empty, Expect::Empty) => {}
        (ReadOutcome::Lost(n), Expect::Lost(w)) => {
            prop_assert_eq!(n, *w, "lost count");
            r.lost += n;
        }
        (ReadOutcome::Record(rh), Expect::Record(i)) => {
            let v = ring.view(&rh, buf);
            prop_assert!(v.is_some(), "record does not parse: {:?}", rh);
            let v = v.unwrap();
            let carried = verify(
                v.pid,
                v.source,
                v.event,
                v.unique.unwrap_or_default(),
                v.data,
            );
            prop_assert_eq!(carried, Some(v.seq), "checksum or seq of a record");
            let rec = &m.recs[*i];
            prop_assert_eq!(rh.len as u64, rec.len);
            prop_assert_eq!(v.seq, rec.seq);
            prop_assert_eq!(v.pid, rec.pid);
            prop_assert_eq!(v.source, &rec.source[..]);
            prop_assert_eq!(v.event, &rec.event[..]);
            prop_assert_eq!(
                v.unique,
                (!rec.unique.is_empty()).then_some(&rec.unique[..])
            );
            prop_assert_eq!(v.data, &rec.data[..]);
            r.seen += 1;
        }
        (got, want) => {
            return Err(TestCaseError::fail(format!(
                "read got {got:?}, the model wants {want:?}"
            )))
        }
    }
    prop_assert_eq!(r.cur.next_seq, r.next_seq, "cursor seq");
    Ok(want)
}

fn check_counters(ring: Ring, m: &Model) -> Result<(), TestCaseError> {
    let h = ring.header();
    prop_assert_eq!(h.head.load(Ordering::Relaxed), m.head, "head");
    prop_assert_eq!(h.tail.load(Ordering::Relaxed), m.tail, "tail");
    prop_assert_eq!(h.head_seq.load(Ordering::Relaxed), m.next_seq, "head_seq");
    prop_assert_eq!(h.posted.load(Ordering::Relaxed), m.recs.len() as u64);
    prop_assert_eq!(h.evicted.load(Ordering::Relaxed), m.evicted, "evicted");
    prop_assert!(m.head - m.tail <= ring.cap());
    Ok(())
}

fn run_model(cap: u64, ops: &[Op]) -> Result<(), TestCaseError> {
    with_ring(cap, |ring| {
        let lock = TestLock::default();
        let mut m = Model {
            next_seq: 1,
            ..Model::default()
        };
        let join = |m: &Model| {
            let cur = ring.cursor_at_head(&lock);
            Reader {
                cur,
                idx: m.recs.len(),
                next_seq: m.next_seq,
                start_seq: m.next_seq,
                seen: 0,
                lost: 0,
            }
        };
        let mut readers: Vec<Reader> = (0..READERS).map(|_| join(&m)).collect();
        let mut buf = Vec::new();
        let max = ring.max_record();
        for op in ops {
            match op {
                Op::Append {
                    source,
                    event,
                    unique,
                    size,
                } => {
                    let seq = m.next_seq;
                    let pid = (seq % 7) as i32 + 100;
                    let names = noise(!seq, (*source + *event + *unique) as usize);
                    let (source, rest) = names.split_at(*source as usize);
                    let (event, unique) = rest.split_at(*event as usize);
                    let max_data = max as usize - HEADER_LEN - names.len();
                    let n = match size {
                        Size::Frac(f) => PREFIX + (max_data - PREFIX) * *f as usize / 65535,
                        Size::Max => max_data,
                        Size::Over(k) => max_data + *k as usize,
                    };
                    let data = payload(seq, pid, source, event, unique, n);
                    let len = record_len(source.len(), event.len(), unique.len(), n);
                    match ring.append(
                        &lock,
                        pid,
                        source,
                        event,
                        (!unique.is_empty()).then_some(unique),
                        &data,
                    ) {
                        Ok(got) => {
                            prop_assert!(len <= max, "accepted {} > {}", len, max);
                            prop_assert_eq!(got, seq);
                            let rec = Rec {
                                seq,
                                pid,
                                source: source.to_vec(),
                                event: event.to_vec(),
                                unique: unique.to_vec(),
                                data,
                                len,
                            };
                            m.append(cap, rec);
                        }
                        Err(AppendError::TooLarge { size, limit }) => {
                            prop_assert!(len > max, "refused {} <= {}", len, max);
                            prop_assert_eq!((size, limit), (len, max));
                        }
                        // Refusing a record without a source or an event
                        // would be fine too (records need both).
                        Err(AppendError::Format(_)) if source.is_empty() || event.is_empty() => {}
                        Err(e) => return Err(TestCaseError::fail(format!("append: {e}"))),
                    }
                }
                Op::DeadPoster => {
                    ring.header().head_seq.fetch_add(1, Ordering::Relaxed);
                    m.next_seq += 1;
                }
                Op::Read(i) => {
                    read_one(ring, &lock, &m, &mut readers[*i], &mut buf)?;
                }
                Op::Drain(i) => {
                    while read_one(ring, &lock, &m, &mut readers[*i], &mut buf)? != Expect::Empty {}
                }
                Op::Rejoin(i) => readers[*i] = join(&m),
            }
            check_counters(ring, &m)?;
        }
        // Drained, every reader has seen or been told of every seq since it
        // joined (up to the last committed record; a dead poster's seq after
        // it is only reported once a record follows).
        let committed_end = m.recs.last().map_or(1, |r| r.seq + 1);
        for r in &mut readers {
            while read_one(ring, &lock, &m, r, &mut buf)? != Expect::Empty {}
            let end = committed_end.max(r.start_seq);
            prop_assert_eq!(r.seen + r.lost, end - r.start_seq, "seen + lost");
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(crate::testing::config(384))]

    /// The ring agrees with the model on every read and every counter.
    #[test]
    fn ring_follows_the_model(cap in cap(), ops in vec(op(1), 1..120)) {
        run_model(cap, &ops)?;
    }
}

proptest! {
    #![proptest_config(crate::testing::config(64))]

    /// The same with empty sources and events: the ring must refuse such a
    /// record or deliver it.
    #[test]
    fn ring_follows_the_model_with_empty_names(cap in cap(), ops in vec(op(0), 1..60)) {
        run_model(cap, &ops)?;
    }
}

/// The shrunk case of `ring_follows_the_model_with_empty_names`, and what
/// follows from it once the record reaches the tail.
#[test]
fn an_empty_source_is_refused_or_delivered() {
    with_ring(4096, |ring| {
        let lock = TestLock::default();
        let mut cur = ring.cursor_at_head(&lock);
        let mut buf = Vec::new();
        if let Ok(seq) = ring.append(&lock, 1, b"", b"e", None, b"x") {
            ring.append(&lock, 1, b"s", b"e", None, b"after").unwrap();
            // Today: Lost(2) (this record and the next one), then Empty.
            let got = ring.read_next(&lock, &mut cur, &mut buf);
            assert!(
                matches!(got, ReadOutcome::Record(rh) if rh.seq == seq),
                "an accepted record is not delivered: {got:?}"
            );
            let got = ring.read_next(&lock, &mut cur, &mut buf);
            assert!(
                matches!(got, ReadOutcome::Record(rh) if rh.seq == seq + 1),
                "the record after it is not delivered: {got:?}"
            );
            // Evicting it must not take the whole log along.
            for _ in 0..40 {
                ring.append(&lock, 1, b"s", b"e", None, &[0; 100]).unwrap();
            }
            let h = ring.header();
            let (head, tail) = (
                h.head.load(Ordering::Relaxed),
                h.tail.load(Ordering::Relaxed),
            );
            assert!(
                head - tail > ring.cap() / 2,
                "the log was emptied: head {head}, tail {tail}"
            );
        }
    })
}

/// A reader loads the head once per run of records (`Cursor::head`): it
/// still sees records committed after that load, and a stale head never
/// hides an overrun (the tail check around each copy catches it).
#[test]
fn a_cached_head_sees_later_records_and_overruns() {
    with_ring(4096, |ring| {
        let lock = TestLock::default();
        let mut cur = ring.cursor_at_head(&lock);
        let mut buf = Vec::new();
        let seq = |o: ReadOutcome| match o {
            ReadOutcome::Record(rh) => rh.seq,
            other => panic!("expected a record, got {other:?}"),
        };
        let first = ring.append(&lock, 1, b"s", b"e", None, b"a").unwrap();
        ring.append(&lock, 1, b"s", b"e", None, b"b").unwrap();
        assert_eq!(seq(ring.read_next(&lock, &mut cur, &mut buf)), first);
        let loaded = cur.head;
        // committed after the reader loaded the head
        ring.append(&lock, 1, b"s", b"e", None, b"c").unwrap();
        assert_eq!(seq(ring.read_next(&lock, &mut cur, &mut buf)), first + 1);
        assert_eq!(
            cur.head, loaded,
            "the head is loaded again only once reached"
        );
        assert_eq!(seq(ring.read_next(&lock, &mut cur, &mut buf)), first + 2);
        assert!(matches!(
            ring.read_next(&lock, &mut cur, &mut buf),
            ReadOutcome::Empty
        ));
        // the reader holds a head, then the log wraps past its position
        ring.append(&lock, 1, b"s", b"e", None, b"d").unwrap();
        ring.append(&lock, 1, b"s", b"e", None, b"e").unwrap();
        assert_eq!(seq(ring.read_next(&lock, &mut cur, &mut buf)), first + 3);
        for _ in 0..100 {
            ring.append(&lock, 1, b"s", b"e", None, &[0; 100]).unwrap();
        }
        match ring.read_next(&lock, &mut cur, &mut buf) {
            ReadOutcome::Lost(n) => assert!(n >= 1, "lost {n}"),
            other => panic!("an overrun behind a stale head was not reported: {other:?}"),
        }
        // and equal cursors stay equal whatever head they last loaded
        let mut other = cur;
        other.head = 0;
        assert_eq!(other, cur);
    })
}
