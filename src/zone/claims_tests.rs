//! Unit tests of the claims table (`super`): unique claims, task windows,
//! expiry to the millisecond, bounded task entries.

use super::*;
use crate::zone::lock::TestLock;

/// No window end: a key may always be taken as new.
const NEVER: u64 = u64::MAX;

fn zone(entries: usize) -> Claims<'static> {
    let table: Vec<Claim> = (0..entries)
        .map(|_| Claim {
            hash: AtomicU64::new(0),
            word: AtomicU64::new(0),
        })
        .collect();
    Claims(Box::leak(table.into_boxed_slice()))
}

#[test]
fn an_entry_is_16_bytes() {
    assert_eq!(core::mem::size_of::<Claim>(), 16);
}

#[test]
fn first_claims_then_others_skip_until_expiry() {
    let z = zone(64);
    let l = TestLock::default();
    assert_eq!(z.reserve(&l, b"k", 1000, 512), Ok(Reserved::New));
    assert_eq!(z.claim(&l, b"k", 10, 1000, 512, 1000), ClaimOutcome::Mine);
    assert_eq!(
        z.claim(&l, b"k", 11, 1200, 512, 1200),
        ClaimOutcome::Taken(10)
    );
    assert_eq!(z.reserve(&l, b"k", 1200, 512), Ok(Reserved::Live));
    assert_eq!(
        z.claim(&l, b"k", 10, 1400, 512, 1400),
        ClaimOutcome::Taken(10)
    );
    // expired: a late reader of that event still sees
    // its owner; a new post of the key opens a new window
    assert_eq!(
        z.claim(&l, b"k", 11, 1600, 512, 1000),
        ClaimOutcome::Taken(10)
    );
    assert_eq!(z.reserve(&l, b"k", 1600, 512), Ok(Reserved::New));
    assert_eq!(z.claim(&l, b"k", 11, 1600, 512, 1600), ClaimOutcome::Mine);
    assert_eq!(
        z.claim(&l, b"other", 12, 1600, 512, 1600),
        ClaimOutcome::Mine
    );
}

#[test]
fn a_reservation_nobody_read_is_claimed_once() {
    let z = zone(64);
    let l = TestLock::default();
    assert_eq!(z.reserve(&l, b"k", 0, 2000), Ok(Reserved::New));
    assert_eq!(z.reserve(&l, b"k", 10, 2000), Ok(Reserved::Live));
    assert_eq!(z.claim(&l, b"k", 7, 20, 2000, 20), ClaimOutcome::Mine);
    assert_eq!(z.claim(&l, b"k", 8, 20, 2000, 20), ClaimOutcome::Taken(7));
}

#[test]
fn a_full_window_refuses_and_never_takes_over_a_live_claim() {
    let z = zone(64);
    let l = TestLock::default();
    let mut held = Vec::new();
    for i in 0..1000 {
        let k = format!("key-{i}");
        match z.reserve(&l, k.as_bytes(), 0, 1_000_000) {
            Ok(Reserved::New) => held.push(k),
            Ok(Reserved::Live) => panic!("{k} was not reserved before"),
            Err(Full) => {}
        }
    }
    assert_eq!(held.len(), 64, "every entry holds a live claim");
    assert_eq!(z.live(10), 64);
    // Every held key is still there: none was taken over.
    for k in &held {
        assert_eq!(z.reserve(&l, k.as_bytes(), 10, 1), Ok(Reserved::Live));
        assert_eq!(
            z.claim(&l, k.as_bytes(), 3, 10, 1_000_000, 10),
            ClaimOutcome::Mine
        );
        assert_eq!(
            z.claim(&l, k.as_bytes(), 4, 10, 1_000_000, 10),
            ClaimOutcome::Taken(3)
        );
    }
    // A reader of a key that never got an entry runs nothing.
    assert_eq!(z.claim(&l, b"late", 5, 10, 1, 10), ClaimOutcome::Full);
    // Once they expire, room again.
    assert_eq!(z.reserve(&l, b"late", 3_000_000, 10), Ok(Reserved::New));
}

#[test]
fn a_table_holds_most_of_its_entries_live() {
    let z = zone(10_922); // a 1m zone
    let l = TestLock::default();
    let mut n = 0;
    while z.reserve(&l, format!("events-one:key-{n}").as_bytes(), 0, 30_000) == Ok(Reserved::New) {
        n += 1;
    }
    assert!(
        n > 8_095,
        "held {n}: a 1m lua_shared_dict holds 8095 such keys"
    );
}

#[test]
fn expiry_is_exact_to_the_millisecond() {
    let z = zone(64);
    let l = TestLock::default();
    // Kong's suites use 40 ms: a claim taken at any ms is live for
    // exactly 40 ms (under 64 ms ticks it was often dead on arrival)
    for t0 in [1u64, 63, 64, 65, 127, 1_000_001] {
        let k = format!("k{t0}");
        assert_eq!(z.reserve(&l, k.as_bytes(), t0, 40), Ok(Reserved::New));
        assert_eq!(z.claim(&l, k.as_bytes(), 1, t0, 40, t0), ClaimOutcome::Mine);
        for dt in [0, 1, 20, 39] {
            assert_eq!(
                z.reserve(&l, k.as_bytes(), t0 + dt, 40),
                Ok(Reserved::Live),
                "{t0}+{dt}"
            );
            assert_eq!(
                z.claim(&l, k.as_bytes(), 2, t0 + dt, 40, t0),
                ClaimOutcome::Taken(1)
            );
        }
        assert_eq!(
            z.reserve(&l, k.as_bytes(), t0 + 40, 40),
            Ok(Reserved::New),
            "{t0}+40"
        );
    }
    // 1 ms means 1 ms
    assert_eq!(z.reserve(&l, b"one", 500, 1), Ok(Reserved::New));
    assert_eq!(z.reserve(&l, b"one", 500, 1), Ok(Reserved::Live));
    assert_eq!(z.reserve(&l, b"one", 501, 1), Ok(Reserved::New));
    // a ttl of 0 is taken as 1 ms, never as "already expired"
    assert_eq!(z.reserve(&l, b"zero", 7, 0), Ok(Reserved::New));
    assert_eq!(z.reserve(&l, b"zero", 7, 0), Ok(Reserved::Live));
}

#[test]
fn owner_and_expiry_share_a_word_without_clobbering() {
    let z = zone(64);
    let l = TestLock::default();
    let max_pid: i32 = 1 << 22; // Linux PID_MAX_LIMIT
    assert_eq!(
        z.take(&l, b"w", max_pid, 10, 1000, NEVER, |_| true),
        TaskClaim::Mine
    );
    assert_eq!(
        z.take(&l, b"w", 5, 20, 1000, NEVER, |_| true),
        TaskClaim::Busy(max_pid)
    );
    z.finish(&l, b"w", 30, NEVER);
    assert_eq!(
        z.take(&l, b"w", 5, 1009, 1000, NEVER, |_| true),
        TaskClaim::Done
    );
    assert_eq!(
        z.take(&l, b"w", 5, 1010, 1000, NEVER, |_| true),
        TaskClaim::Mine
    );
    // an uptime of decades still compares right
    let late = 30 * 365 * 24 * 3600 * 1000u64;
    assert_eq!(z.reserve(&l, b"late", late, 5), Ok(Reserved::New));
    assert_eq!(z.reserve(&l, b"late", late + 4, 5), Ok(Reserved::Live));
    assert_eq!(z.reserve(&l, b"late", late + 5, 5), Ok(Reserved::New));
}

#[test]
fn hash_is_never_zero() {
    assert_ne!(hash(b""), 0);
    assert_ne!(hash(b"a"), hash(b"b"));
}

#[test]
fn a_late_reader_does_not_run_it_again_and_a_short_ttl_keeps_the_window() {
    let z = zone(64);
    let l = TestLock::default();
    // reserved for 5 s by the poster; claimed by a reader with a 2 s ttl
    assert_eq!(z.reserve(&l, b"k", 0, 5000), Ok(Reserved::New));
    assert_eq!(z.claim(&l, b"k", 10, 100, 2000, 100), ClaimOutcome::Mine);
    // at 3 s the key is still live (the poster's 5 s): a repeat is refused
    assert_eq!(z.reserve(&l, b"k", 3000, 5000), Ok(Reserved::Live));
    // at 9 s the claim expired: a stopped worker reading it now does not run it
    assert_eq!(
        z.claim(&l, b"k", 11, 9000, 2000, 0),
        ClaimOutcome::Taken(10)
    );
    // an event posted after that claim expired is a new window
    assert_eq!(z.claim(&l, b"k", 11, 9000, 2000, 8000), ClaimOutcome::Mine);
}

#[test]
fn task_windows_run_once_and_again_after_a_crash() {
    let z = zone(64);
    let l = TestLock::default();
    let alive = |p: i32| p != 7;
    assert_eq!(z.take(&l, b"w1", 5, 0, 1000, NEVER, alive), TaskClaim::Mine);
    assert_eq!(
        z.take(&l, b"w1", 6, 10, 1000, NEVER, alive),
        TaskClaim::Busy(5)
    );
    z.finish(&l, b"w1", 20, NEVER);
    assert_eq!(
        z.take(&l, b"w1", 6, 30, 1000, NEVER, alive),
        TaskClaim::Done
    );
    // owner 7 dies before finishing: taken over once
    assert_eq!(z.take(&l, b"w2", 7, 0, 1000, NEVER, alive), TaskClaim::Mine);
    assert_eq!(
        z.take(&l, b"w2", 6, 10, 1000, NEVER, alive),
        TaskClaim::Retry(7)
    );
    assert_eq!(
        z.take(&l, b"w2", 5, 20, 1000, NEVER, alive),
        TaskClaim::Busy(6)
    );
    // a released run lock is free again; an expired window too
    assert_eq!(
        z.take(&l, b"lock", 5, 0, 1000, NEVER, alive),
        TaskClaim::Mine
    );
    z.release(&l, b"lock", 5);
    assert_eq!(
        z.take(&l, b"lock", 6, 10, 1000, NEVER, alive),
        TaskClaim::Mine
    );
    assert_eq!(
        z.take(&l, b"w1", 6, 5000, 1000, NEVER, alive),
        TaskClaim::Mine
    );
}

#[test]
fn a_finished_window_expires_at_its_end_and_is_not_taken_again() {
    let z = zone(64);
    let l = TestLock::default();
    // window [1000, 1500): taken at 1100 for a long ttl, finished at 1200
    assert_eq!(
        z.take(&l, b"w", 5, 1100, 10_000, 1500, |_| true),
        TaskClaim::Mine
    );
    assert_eq!(
        z.take(&l, b"w", 6, 1150, 10_000, 1500, |_| true),
        TaskClaim::Busy(5)
    );
    z.finish(&l, b"w", 1200, 1500);
    assert_eq!(
        z.take(&l, b"w", 6, 1499, 10_000, 1500, |_| true),
        TaskClaim::Done
    );
    assert_eq!(z.live(1499), 1);
    // its entry is free at the window's end, and a late look is not a new window
    assert_eq!(z.live(1500), 0);
    assert_eq!(
        z.take(&l, b"w", 6, 1500, 10_000, 1500, |_| true),
        TaskClaim::Done
    );
    // a recheck of a held key (no new entry) after the owner finished late
    assert_eq!(
        z.take(&l, b"x", 5, 1100, 10_000, 1500, |_| true),
        TaskClaim::Mine
    );
    z.finish(&l, b"x", 1700, 1500);
    assert_eq!(
        z.take(&l, b"x", 6, 1700, 10_000, 0, |_| true),
        TaskClaim::Done
    );
    assert_eq!(z.live(1700), 0);
    // a full table: a look after the window's end is still just "over"
    let full = zone(64);
    for i in 0..64 {
        let k = format!("k{i}");
        assert_eq!(
            full.reserve(&l, k.as_bytes(), 0, 1_000_000),
            Ok(Reserved::New)
        );
    }
    assert_eq!(
        full.take(&l, b"w", 6, 10, 1000, 0, |_| true),
        TaskClaim::Done
    );
    assert_eq!(
        full.take(&l, b"w", 6, 10, 1000, 11, |_| true),
        TaskClaim::Full
    );
}

#[test]
fn a_1ms_task_on_two_workers_holds_a_few_entries() {
    // one task at interval 1 ms, 2 workers looking every ms for 2 s,
    // windows taken with the old ttl (2 * interval + 5 s)
    let z = zone(10_922);
    let l = TestLock::default();
    let mut most = 0;
    for now in 0..2_000u64 {
        for pid in [5, 6] {
            let key = format!("ngx_tasks:p:t:{now}");
            if z.take(&l, key.as_bytes(), pid, now, 5_002, now + 1, |_| true) == TaskClaim::Mine {
                z.finish(&l, key.as_bytes(), now, now + 1);
            }
        }
        most = most.max(z.live(now));
    }
    assert!(most <= 2, "held {most}");
}

#[test]
fn a_late_reader_of_an_earlier_window_does_not_take_the_next_one() {
    // Kong's 40 ms: worker 1 runs the event posted at 0; worker 2 is
    // busy and reads it at 120, after the key was posted again at 100
    let z = zone(64);
    let l = TestLock::default();
    assert_eq!(z.reserve(&l, b"k", 0, 40), Ok(Reserved::New));
    assert_eq!(z.claim(&l, b"k", 1, 2, 40, 0), ClaimOutcome::Mine);
    assert_eq!(z.reserve(&l, b"k", 100, 40), Ok(Reserved::New));
    assert_eq!(z.claim(&l, b"k", 2, 120, 40, 0), ClaimOutcome::Taken(1));
    // the new window is still open for its own event
    assert_eq!(z.claim(&l, b"k", 2, 121, 40, 100), ClaimOutcome::Mine);
    assert_eq!(z.claim(&l, b"k", 1, 122, 40, 100), ClaimOutcome::Taken(2));
}
