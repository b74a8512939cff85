//! Unit tests of the event log (`crate::zone::ring`): appends, reads,
//! overruns, eviction, cursors. The model check and the threaded run are in
//! `ring_tests` and `ring_threads_tests`.

use core::sync::atomic::Ordering;

use super::ring::*;
use crate::zone::lock::TestLock;

/// A heap log standing in for shared memory (leaked for the test's duration).
fn zone(len: usize) -> Ring<'static> {
    let hdr: &'static RingHeader = Box::leak(Box::default());
    let bytes: &'static mut [u64] = Box::leak(vec![0u64; len / 8].into_boxed_slice());
    // SAFETY: a fresh, leaked allocation of `len` bytes used only through this view.
    let ring = unsafe { Ring::new(hdr, bytes.as_mut_ptr().cast(), (len as u64) & !7) };
    ring.reset();
    ring
}

fn read_all(z: &Ring, l: &TestLock, cur: &mut Cursor) -> (Vec<(u64, Vec<u8>)>, u64) {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut lost = 0;
    loop {
        match z.read_next(l, cur, &mut buf) {
            ReadOutcome::Empty => return (out, lost),
            ReadOutcome::Lost(n) => lost += n,
            ReadOutcome::Record(rh) => {
                let v = z.view(&rh, &buf).unwrap();
                out.push((v.seq, v.data.to_vec()));
            }
        }
    }
}

#[test]
fn append_then_read_in_order() {
    let z = zone(64 * 1024);
    let l = TestLock::default();
    let mut cur = z.cursor_at_head(&l);
    assert!(!z.has_pending(&cur));
    for i in 0..10u8 {
        z.append(&l, 42, b"src", b"ev", None, &[i; 13]).unwrap();
    }
    assert!(z.has_pending(&cur));
    let (recs, lost) = read_all(&z, &l, &mut cur);
    assert_eq!(lost, 0);
    assert_eq!(recs.len(), 10);
    for (i, (seq, data)) in recs.iter().enumerate() {
        assert_eq!(*seq, i as u64 + 1);
        assert_eq!(data, &vec![i as u8; 13]);
    }
}

#[test]
fn wraps_around_and_keeps_data_intact() {
    let z = zone(64 * 1024);
    let l = TestLock::default();
    let mut cur = z.cursor_at_head(&l);
    for (expect, round) in (1..).zip(0..200u32) {
        let data: Vec<u8> = (0..(round * 37 % 3000))
            .map(|i| (i ^ round) as u8)
            .collect();
        z.append(&l, 1, b"s", b"e", None, &data).unwrap();
        let (recs, lost) = read_all(&z, &l, &mut cur);
        assert_eq!(lost, 0);
        assert_eq!(recs, vec![(expect, data)]);
    }
    assert!(z.header().head.load(Ordering::Relaxed) > z.cap() * 2);
}

/// Header and names are gathered on the stack up to 256 bytes and copied
/// part by part beyond: names on both sides of that, a unique key and a
/// log that wraps (some records straddle its end) read back as written.
#[test]
fn long_names_read_back_on_both_sides_of_the_gathered_prefix() {
    let z = zone(16 * 1024);
    let l = TestLock::default();
    let mut cur = z.cursor_at_head(&l);
    for round in 0..120u32 {
        let name = |len: u32, salt: u32| -> Vec<u8> {
            (0..len).map(|i| (i * 7 + salt + round) as u8).collect()
        };
        let source = name(1 + round * 3 % 400, 1);
        let event = name(1 + round * 5 % 150, 2);
        let unique = name(round % 90, 3);
        let data = name(round * 11 % 700, 4);
        z.append(&l, 1, &source, &event, Some(&unique), &data)
            .unwrap();
        let mut buf = Vec::new();
        let ReadOutcome::Record(rh) = z.read_next(&l, &mut cur, &mut buf) else {
            panic!("round {round}: no record");
        };
        let v = z.view(&rh, &buf).unwrap();
        assert_eq!(
            (v.source, v.event, v.unique, v.data),
            (&source[..], &event[..], Some(&unique[..]), &data[..]),
            "round {round}"
        );
    }
    assert!(z.header().head.load(Ordering::Relaxed) > z.cap() * 2);
}

#[test]
fn overrun_reports_exact_loss() {
    let z = zone(64 * 1024);
    let l = TestLock::default();
    let mut cur = z.cursor_at_head(&l);
    let n = 500u64;
    for _ in 0..n {
        z.append(&l, 1, b"s", b"e", None, &[7u8; 1000]).unwrap();
    }
    let (recs, lost) = read_all(&z, &l, &mut cur);
    assert!(lost > 0);
    assert_eq!(
        lost + recs.len() as u64,
        n,
        "every record is either seen or reported lost"
    );
    assert_eq!(recs.last().unwrap().0, n);
    assert_eq!(z.header().evicted.load(Ordering::Relaxed), lost);
}

#[test]
fn too_large_is_refused_with_limit() {
    let z = zone(64 * 1024);
    let l = TestLock::default();
    let big = vec![0u8; z.cap() as usize];
    match z.append(&l, 1, b"s", b"e", None, &big) {
        Err(AppendError::TooLarge { size, limit }) => {
            assert!(size > limit);
            assert_eq!(limit, z.max_record());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unique_roundtrips() {
    let z = zone(64 * 1024);
    let l = TestLock::default();
    let mut cur = z.cursor_at_head(&l);
    z.append(&l, 9, b"s", b"e", Some(b"key-1"), b"x").unwrap();
    let mut buf = Vec::new();
    let ReadOutcome::Record(rh) = z.read_next(&l, &mut cur, &mut buf) else {
        panic!()
    };
    let v = z.view(&rh, &buf).unwrap();
    assert_eq!(v.unique, Some(&b"key-1"[..]));
    assert_eq!(v.pid, 9);
}

#[test]
fn seq_gap_from_dead_poster_is_reported_once() {
    let z = zone(64 * 1024);
    let l = TestLock::default();
    let mut cur = z.cursor_at_head(&l);
    z.append(&l, 1, b"s", b"e", None, b"a").unwrap();
    // A poster took seq 2 and died before committing.
    z.header().head_seq.fetch_add(1, Ordering::Relaxed);
    z.append(&l, 1, b"s", b"e", None, b"b").unwrap();
    let (recs, lost) = read_all(&z, &l, &mut cur);
    assert_eq!(lost, 1);
    assert_eq!(recs, vec![(1, b"a".to_vec()), (3, b"b".to_vec())]);
}

#[test]
fn a_scribbled_record_is_skipped_and_counted_never_replayed() {
    let z = zone(64 * 1024);
    let l = TestLock::default();
    let mut cur = z.cursor_at_head(&l);
    z.append(&l, 1, b"s", b"e", None, b"a").unwrap();
    let (recs, _) = read_all(&z, &l, &mut cur);
    assert_eq!(recs.len(), 1);
    let at = z.header().head.load(Ordering::Relaxed);
    z.append(&l, 1, b"s", b"e", None, b"b").unwrap();
    z.append(&l, 1, b"s", b"e", None, b"c").unwrap();
    // Corrupt the length of record "b".
    z.copy_in(at, &[0xff, 0xff, 0xff, 0x7f]);
    let (recs, lost) = read_all(&z, &l, &mut cur);
    assert_eq!((recs, lost), (vec![], 2));
    z.append(&l, 1, b"s", b"e", None, b"d").unwrap();
    let (recs, lost) = read_all(&z, &l, &mut cur);
    assert_eq!((recs, lost), (vec![(4, b"d".to_vec())], 0));
}

#[test]
fn concurrent_writers_and_readers_agree() {
    use std::sync::Arc;
    let z = zone(1 << 20);
    let l = Arc::new(TestLock::default());
    let start = z.cursor_at_head(&*l);
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let l = l.clone();
            std::thread::spawn(move || {
                for i in 0..20_000u32 {
                    let d = [(w as u8), (i % 251) as u8].repeat(1 + (i % 50) as usize);
                    z.append(&*l, w, b"s", b"e", None, &d).unwrap();
                }
            })
        })
        .collect();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let l = l.clone();
            std::thread::spawn(move || {
                let mut cur = start;
                let mut buf = Vec::new();
                let (mut seen, mut lost, mut last) = (0u64, 0u64, 0u64);
                while seen + lost < 40_000 {
                    match z.read_next(&*l, &mut cur, &mut buf) {
                        ReadOutcome::Empty => std::thread::yield_now(),
                        ReadOutcome::Lost(n) => lost += n,
                        ReadOutcome::Record(rh) => {
                            let v = z.view(&rh, &buf).unwrap();
                            assert!(v.seq > last);
                            last = v.seq;
                            let (w, i) = (v.data[0], v.data[1]);
                            assert_eq!(w as i32, v.pid);
                            assert!(
                                v.data.chunks(2).all(|c| c == [w, i]),
                                "torn record delivered"
                            );
                            seen += 1;
                        }
                    }
                }
                (seen, lost)
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    for r in readers {
        let (seen, lost) = r.join().unwrap();
        assert_eq!(seen + lost, 40_000);
    }
}

#[test]
fn a_full_log_evicts_ahead_so_its_tail_changes_rarely() {
    // 1 MB: evicts 16 KB ahead (EVICT_AHEAD); 100-byte-ish records
    let z = zone(1 << 20);
    let l = TestLock::default();
    let cap = z.cap();
    let ahead = evict_ahead(cap);
    assert_eq!(ahead, EVICT_AHEAD);
    let post = |z: &Ring| z.append(&l, 1, b"src", b"ev", None, &[7u8; 64]).unwrap();
    // fill it
    while z.header().tail.load(Ordering::Relaxed) == 0 {
        post(&z);
    }
    let rec = {
        let h = z.header();
        let before = h.head.load(Ordering::Relaxed);
        post(&z);
        h.head.load(Ordering::Relaxed) - before
    };
    let (mut changes, mut last) = (0, z.header().tail.load(Ordering::Relaxed));
    let posts = 10_000;
    for _ in 0..posts {
        post(&z);
        let h = z.header();
        let (head, tail) = (
            h.head.load(Ordering::Relaxed),
            h.tail.load(Ordering::Relaxed),
        );
        // what is kept: never more than the log, never less than it minus
        // the eviction ahead and one record
        assert!(head - tail <= cap && head - tail + ahead + rec > cap);
        if tail != last {
            changes += 1;
            last = tail;
        }
    }
    // once per ~ahead / rec posts, not on every post
    let most = posts / (ahead / rec) + 1;
    assert!(
        changes <= most,
        "{changes} tail changes in {posts} posts (most {most})"
    );
    assert!(changes > 0);
}
