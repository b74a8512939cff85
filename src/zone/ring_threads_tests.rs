//! Property of the event log (`crate::zone::ring`) under threads: writers
//! and readers over one heap log with the test lock. Readers check every
//! record's checksum, that seqs only grow and skip exactly what `Lost`
//! reported, and at the end (after draining) that lost + seen = appended
//! since they started; the seqs they saw are the ones the writers were given
//! for those records.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use proptest::collection::vec;
use proptest::prelude::*;

use super::ring_tests::{with_ring, PREFIX};
use crate::testing::{checksum, noise};
use crate::zone::lock::TestLock;
use crate::zone::record::HEADER_LEN;
use crate::zone::ring::{ReadOutcome, Ring};

#[derive(Debug, Clone)]
struct Threaded {
    cap: u64,
    writers: u32,
    readers: usize,
    appends: u32,
    /// Largest payload, as a fraction (of 255) of the largest record.
    spread: u8,
    /// Reader `r` joins once this many records were appended (the first
    /// one from the start).
    join_after: Vec<u32>,
    /// Writers yield the CPU after every this many appends (so that readers
    /// sometimes keep up, and sometimes fall far behind).
    pause: u32,
}

fn threaded() -> impl Strategy<Value = Threaded> {
    (
        prop_oneof![
            (16u64..=512).prop_map(|n| n * 8),
            (2048u64..=8192).prop_map(|n| n * 8)
        ],
        1u32..=3,
        1usize..=3,
        200u32..1200,
        any::<u8>(),
        vec(0u32..400, 3),
        prop_oneof![1u32..4, 4u32..64, Just(u32::MAX)],
    )
        .prop_map(
            |(cap, writers, readers, appends, spread, mut join_after, pause)| {
                join_after[0] = 0;
                Threaded {
                    cap,
                    writers,
                    readers,
                    appends,
                    spread,
                    join_after,
                    pause,
                }
            },
        )
}

/// Payload of writer `w`'s `i`th record: w, i, checksum, noise.
fn threaded_payload(w: u32, i: u32, source: &[u8], event: &[u8], n: usize) -> Vec<u8> {
    let body = noise(((w as u64) << 32) | i as u64, n);
    let sum = checksum(&[&w.to_le_bytes(), &i.to_le_bytes(), source, event, &body]);
    [
        &w.to_le_bytes()[..],
        &i.to_le_bytes(),
        &sum.to_le_bytes(),
        &body,
    ]
    .concat()
}

/// What one reader saw: (seq, writer, index) of each record, and the totals.
struct Seen {
    start_seq: u64,
    records: Vec<(u64, u32, u32)>,
    lost: u64,
}

fn run_threads(t: &Threaded) -> Result<(), TestCaseError> {
    with_ring(t.cap, |ring| {
        let lock = TestLock::default();
        let done = AtomicBool::new(false);
        let appended = AtomicU64::new(0);
        let max = ring.max_record() as usize;
        let start = std::sync::Barrier::new(t.writers as usize + t.readers);
        let (seqs, seen) = std::thread::scope(|s| {
            let writers: Vec<_> = (0..t.writers)
                .map(|w| {
                    let (lock, appended, start) = (&lock, &appended, &start);
                    s.spawn(move || {
                        start.wait();
                        let source = format!("writer-{w}").into_bytes();
                        let mut seqs = Vec::with_capacity(t.appends as usize);
                        for i in 0..t.appends {
                            let event = noise(i as u64, 1 + (i % 4) as usize);
                            let room = max - HEADER_LEN - source.len() - event.len() - PREFIX - 8;
                            let n = (i as usize * 7919) % (1 + room * t.spread as usize / 255);
                            let data = threaded_payload(w, i, &source, &event, n);
                            let unique: &[u8] = if i % 5 == 0 { b"u" } else { b"" };
                            let seq = ring
                                .append(
                                    lock,
                                    1000 + w as i32,
                                    &source,
                                    &event,
                                    (!unique.is_empty()).then_some(unique),
                                    &data,
                                )
                                .expect("fits");
                            seqs.push(seq);
                            appended.fetch_add(1, Ordering::Release);
                            if i % t.pause == t.pause - 1 {
                                std::thread::yield_now();
                            }
                        }
                        seqs
                    })
                })
                .collect();
            let readers: Vec<_> = (0..t.readers)
                .map(|r| {
                    let (lock, done, appended, start) = (&lock, &done, &appended, &start);
                    let join_after = t.join_after[r] as u64;
                    s.spawn(move || reader(ring, lock, start, done, appended, join_after))
                })
                .collect();
            let seqs: Vec<Vec<u64>> = writers.into_iter().map(|h| h.join().unwrap()).collect();
            done.store(true, Ordering::Release);
            let seen: Vec<Result<Seen, String>> =
                readers.into_iter().map(|h| h.join().unwrap()).collect();
            (seqs, seen)
        });
        let end = ring.header().head_seq.load(Ordering::Relaxed);
        let total = t.writers as u64 * t.appends as u64;
        prop_assert_eq!(end, total + 1);
        for s in seen {
            let s = s.map_err(TestCaseError::fail)?;
            prop_assert_eq!(
                s.records.len() as u64 + s.lost,
                end - s.start_seq,
                "seen + lost = appended since the reader started"
            );
            for &(seq, w, i) in &s.records {
                prop_assert_eq!(
                    seqs[w as usize][i as usize],
                    seq,
                    "writer {} record {}",
                    w,
                    i
                );
            }
        }
        Ok(())
    })
}

/// One reader thread: joins before the writers start (`join_after` 0) or
/// once `join_after` records were appended (or the writers are done), then
/// reads until it drained the log after the writers finished. Checks each
/// record as it goes.
fn reader(
    ring: Ring,
    lock: &TestLock,
    start: &std::sync::Barrier,
    done: &AtomicBool,
    appended: &AtomicU64,
    join_after: u64,
) -> Result<Seen, String> {
    let early = (join_after == 0).then(|| ring.cursor_at_head(lock));
    start.wait();
    while appended.load(Ordering::Acquire) < join_after && !done.load(Ordering::Acquire) {
        std::thread::yield_now();
    }
    let mut cur = early.unwrap_or_else(|| ring.cursor_at_head(lock));
    let mut seen = Seen {
        start_seq: cur.next_seq,
        records: Vec::new(),
        lost: 0,
    };
    let mut expect = cur.next_seq;
    let mut last_i: Vec<Option<u32>> = vec![None; 3];
    let mut buf = Vec::new();
    loop {
        let finished = done.load(Ordering::Acquire);
        match ring.read_next(lock, &mut cur, &mut buf) {
            ReadOutcome::Empty if finished => return Ok(seen),
            ReadOutcome::Empty => std::thread::yield_now(),
            ReadOutcome::Lost(0) => return Err("Lost(0)".into()),
            ReadOutcome::Lost(n) => {
                seen.lost += n;
                expect += n;
            }
            ReadOutcome::Record(rh) => {
                let v = ring
                    .view(&rh, &buf)
                    .ok_or_else(|| format!("unparsable record {rh:?}"))?;
                if v.seq != expect {
                    return Err(format!("seq {} where {} was due", v.seq, expect));
                }
                expect += 1;
                let d = v.data;
                if d.len() < PREFIX {
                    return Err(format!("short payload at seq {}", v.seq));
                }
                let w = u32::from_le_bytes(d[0..4].try_into().unwrap());
                let i = u32::from_le_bytes(d[4..8].try_into().unwrap());
                let want = threaded_payload(w, i, v.source, v.event, d.len() - PREFIX);
                if want != d || v.pid != 1000 + w as i32 {
                    return Err(format!("torn or wrong record at seq {}", v.seq));
                }
                let slot = last_i
                    .get_mut(w as usize)
                    .ok_or_else(|| format!("writer {w}?"))?;
                if slot.is_some_and(|last| i <= last) {
                    return Err(format!("writer {w}: record {i} after {slot:?}"));
                }
                *slot = Some(i);
                seen.records.push((v.seq, w, i));
            }
        }
    }
}

proptest! {
    #![proptest_config(crate::testing::config(12))]

    /// Threads agree with each other: no torn record, exact loss.
    #[test]
    fn threads_never_see_torn_records_and_count_every_loss(t in threaded()) {
        run_threads(&t)?;
    }
}
