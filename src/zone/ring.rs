//! The event log: appending records under the lock, reading them lock-free.
//!
//! Invariants (positions are monotonic byte counts, see the `zone` docs):
//! - `tail <= head` and `head - tail <= cap`;
//! - every byte in `[tail, head)` belongs to an intact, committed record;
//! - `head` only moves after the record below it is completely written, so a
//!   writer that dies mid-copy leaves nothing visible (and a seq gap at most);
//! - `tail` moves forward *before* the bytes it frees are overwritten.
//!
//! A reader copies a record out, then re-reads `tail`: if the tail passed the
//! record's start meanwhile, the copy may be torn and is discarded, and the
//! reader resynchronises (under the lock) at the oldest intact record,
//! reporting how many records it missed.

use core::sync::atomic::{fence, AtomicU64, Ordering};

use super::lock::{Guard, ZoneLock};
use super::record::{
    record_len, Origin, RecordError, RecordHeader, RecordView, HEADER_LEN, ORDINAL_LEN,
};

/// The largest record is this many quarters of the log: a 1m zone carries
/// a 500 KB event, as a 1m `lua_shared_dict` does for lua-resty-worker-events.
pub const MAX_RECORD_QUARTERS: u64 = 3;

/// A value on a cache line of its own (reads and writes through `Deref`).
#[repr(C, align(64))]
#[derive(Default)]
pub struct Line<T>(pub T);

impl<T> core::ops::Deref for Line<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// The log's positions and counters, inside the zone header, on three
/// cache lines by who touches them how often: a line that one process
/// writes and another loads moves between their caches on every pair of
/// accesses, and both wait for it (it was a quarter of the receive time and
/// half the post time in `perf` when they shared one line).
#[repr(C, align(64))]
#[derive(Default)]
pub struct RingHeader {
    /// One past the last committed record (log position). Written under the
    /// lock with Release on every post, loaded lock-free with Acquire by a
    /// reader once per run of records (see [`Cursor::head`]).
    pub head: Line<AtomicU64>,
    /// Position of the oldest intact record. Loaded by readers around every
    /// record they copy; written only when a post evicts.
    pub tail: Line<AtomicU64>,
    /// The poster's line: read by readers only to resynchronise and for the status.
    pub counters: Line<RingCounters>,
}

/// The counters only posts write (under the lock).
#[derive(Default)]
pub struct RingCounters {
    /// The seq the next record gets.
    pub head_seq: AtomicU64,
    /// Records appended since the zone was created.
    pub posted: AtomicU64,
    /// Records evicted from the log to make room since the zone was created.
    pub evicted: AtomicU64,
    /// Bytes of the records appended (headers and padding included).
    pub bytes_posted: AtomicU64,
}

impl core::ops::Deref for RingHeader {
    type Target = RingCounters;
    fn deref(&self) -> &RingCounters {
        &self.counters
    }
}

/// Adds `n` to a counter only written under the zone lock: a load and a
/// store, not a locked read-modify-write (readers load these lines all the
/// time; a locked instruction waits for the line, a store does not).
#[inline]
fn bump_locked(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// Asks the CPU to fetch the line at `p` ahead of its use (no effect on
/// other architectures).
#[inline]
fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it never faults and reads nothing the
    // program sees, whatever the address.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// A view of one zone's log: its counters and its bytes.
#[derive(Clone, Copy)]
pub struct Ring<'a> {
    hdr: &'a RingHeader,
    bytes: *mut u8,
    cap: u64,
}

// SAFETY: the bytes behind the pointer are shared between processes by
// design; every access follows the lock/seqlock protocol described above.
unsafe impl Send for Ring<'_> {}
// SAFETY: as above.
unsafe impl Sync for Ring<'_> {}

/// How far ahead of need a full log evicts: 1/64 of its bytes, at most
/// 16 KB. The tail line, which every reader loads twice per record, then
/// changes once per ~150 posts of 100 B rather than on each (a reader's
/// `read_next` was 28 % of its samples in a full 256 MB log, 67 % of that
/// on the tail load); the evicting post walks ~150 headers under the lock
/// (a few µs), and the history kept shrinks by 16 KB at most.
pub const EVICT_AHEAD: u64 = 16 * 1024;

/// A record's header and names up to this size are gathered on the stack
/// and copied into the ring at once (see [`Ring::append_ext`]).
const SMALL_PREFIX: usize = 256;

/// The bytes a full log of `cap` bytes frees beyond what a post needs.
pub fn evict_ahead(cap: u64) -> u64 {
    (cap / 64).min(EVICT_AHEAD)
}

/// A reader's position in the log.
#[derive(Clone, Copy, Debug)]
pub struct Cursor {
    /// Log position of the next record to read.
    pub pos: u64,
    /// The seq the next record should have.
    pub next_seq: u64,
    /// The head this reader loaded last: the records below it are committed,
    /// so it reads up to there before it loads the head again (the poster
    /// writes that line on every post). `pos` or less means "load it".
    pub head: u64,
}

impl Cursor {
    /// A cursor at `pos` expecting `next_seq` there (it loads the head on first use).
    pub fn new(pos: u64, next_seq: u64) -> Self {
        Self {
            pos,
            next_seq,
            head: pos,
        }
    }
}

/// Cursors are equal at the same place: the head they last saw is a cache.
impl PartialEq for Cursor {
    fn eq(&self, other: &Self) -> bool {
        (self.pos, self.next_seq) == (other.pos, other.next_seq)
    }
}

impl Eq for Cursor {}

/// Why an append failed.
#[derive(Debug, PartialEq, Eq)]
pub enum AppendError {
    /// The record is larger than the log accepts.
    TooLarge { size: u64, limit: u64 },
    /// A name or the payload exceeds the record format's limits.
    Format(RecordError),
    /// The [`Ext::gate`] said no.
    Refused,
}

/// What a cluster post adds to [`Ring::append`].
#[derive(Default)]
pub struct Ext<'a> {
    /// A cluster record: its ordinal is this counter's next value, taken
    /// under the lock and written in front of the data.
    pub ordinal: Option<&'a AtomicU64>,
    /// Held for the cluster claim (only the bridge reads it), with the
    /// claim's lifetime (ms), written after the ordinal.
    pub hold: Option<u64>,
    /// Runs under the lock before anything is written; `false` refuses
    /// the record (the cluster bridge checks its lease and the stream id).
    pub gate: Option<&'a mut dyn FnMut() -> bool>,
}

impl core::fmt::Display for AppendError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AppendError::TooLarge { size, limit } => write!(
                f,
                "payload too large: {size} bytes encoded, the limit for this zone is {limit}"
            ),
            AppendError::Format(e) => e.fmt(f),
            AppendError::Refused => f.write_str("refused"),
        }
    }
}

/// What one read attempt found.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// Nothing new.
    Empty,
    /// A record was copied into the buffer; parse it with [`Ring::view`].
    Record(RecordHeader),
    /// This many records were overwritten (or lost to a dead poster) before
    /// the reader got to them; the cursor now points past the gap.
    Lost(u64),
}

impl<'a> Ring<'a> {
    /// A view of the log whose counters are `hdr` and whose bytes are `cap`
    /// bytes at `bytes`.
    ///
    /// # Safety
    /// - `bytes` points to `cap` bytes, `cap` a non-zero multiple of 8, that
    ///   stay mapped for `'a`;
    /// - every process that touches those bytes does so through a `Ring` over
    ///   the same `hdr` (the append/read protocol above).
    pub unsafe fn new(hdr: &'a RingHeader, bytes: *mut u8, cap: u64) -> Ring<'a> {
        debug_assert!(cap > 0 && cap.is_multiple_of(8));
        Ring { hdr, bytes, cap }
    }

    /// Starts an empty log (seqs start at 1).
    pub fn reset(&self) {
        self.hdr.head_seq.store(1, Ordering::Relaxed);
    }

    /// The counters.
    pub fn header(&self) -> &'a RingHeader {
        self.hdr
    }

    /// Capacity of the log in bytes.
    pub fn cap(&self) -> u64 {
        self.cap
    }

    /// The largest record the log accepts, in bytes (header included).
    pub fn max_record(&self) -> u64 {
        (self.cap / 4 * MAX_RECORD_QUARTERS) & !7
    }

    /// Copies `dst.len()` bytes out of the ring starting at log position `pos`.
    fn copy_out(&self, pos: u64, dst: &mut [u8]) {
        let off = (pos % self.cap) as usize;
        let first = dst.len().min(self.cap as usize - off);
        // SAFETY:
        // - off + first <= cap and the rest (dst.len() <= max_record < cap)
        //   wraps to the ring start: both ranges lie inside the mapped bytes;
        // - concurrent writers may change these bytes: callers validate the
        //   copy against `tail` afterwards and discard a torn one (seqlock
        //   protocol), so the race is benign.
        unsafe {
            core::ptr::copy_nonoverlapping(self.bytes.add(off), dst.as_mut_ptr(), first);
            core::ptr::copy_nonoverlapping(
                self.bytes,
                dst.as_mut_ptr().add(first),
                dst.len() - first,
            );
        }
    }

    /// Copies `src` into the ring at log position `pos` (caller holds the lock).
    pub(super) fn copy_in(&self, pos: u64, src: &[u8]) {
        let off = (pos % self.cap) as usize;
        let first = src.len().min(self.cap as usize - off);
        // SAFETY:
        // - bounds as in `copy_out`;
        // - the caller holds the zone lock and has moved `tail` past these
        //   bytes, so no reader relies on them.
        unsafe {
            core::ptr::copy_nonoverlapping(src.as_ptr(), self.bytes.add(off), first);
            core::ptr::copy_nonoverlapping(src.as_ptr().add(first), self.bytes, src.len() - first);
        }
    }

    fn header_at(&self, pos: u64) -> Option<RecordHeader> {
        let off = (pos % self.cap) as usize;
        let b = if off + HEADER_LEN <= self.cap as usize {
            // SAFETY: `off + HEADER_LEN <= cap`: inside the ring's bytes; a
            // racing writer is handled as in `copy_out`. An inline read of a
            // fixed size, not a call to memcpy (the eviction loop's hot spot).
            unsafe {
                self.bytes
                    .add(off)
                    .cast::<[u8; HEADER_LEN]>()
                    .read_unaligned()
            }
        } else {
            let mut b = [0u8; HEADER_LEN];
            self.copy_out(pos, &mut b);
            b
        };
        RecordHeader::decode(&b).filter(|h| h.len as u64 <= self.max_record())
    }

    /// Appends one record; returns its seq. Takes the lock for the copy only.
    pub fn append(
        &self,
        lock: &(impl ZoneLock + ?Sized),
        origin: impl Into<Origin>,
        source: &[u8],
        event: &[u8],
        unique: Option<&[u8]>,
        data: &[u8],
    ) -> Result<u64, AppendError> {
        self.append_ext(lock, origin, source, event, unique, data, Ext::default())
    }

    /// [`Ring::append`] with the cluster extensions (see [`Ext`]).
    #[allow(clippy::too_many_arguments)]
    pub fn append_ext(
        &self,
        lock: &(impl ZoneLock + ?Sized),
        origin: impl Into<Origin>,
        source: &[u8],
        event: &[u8],
        unique: Option<&[u8]>,
        data: &[u8],
        mut ext: Ext<'_>,
    ) -> Result<u64, AppendError> {
        let hold_ttl = ext.hold.filter(|_| ext.ordinal.is_some());
        let ordinal_len = match (ext.ordinal, hold_ttl) {
            (None, _) => 0,
            (Some(_), None) => ORDINAL_LEN,
            (Some(_), Some(_)) => 2 * ORDINAL_LEN,
        };
        let mut probe = RecordHeader::new(origin, 0, source, event, unique, &data[..0])
            .map_err(AppendError::Format)?;
        let data_len = data.len() + ordinal_len;
        probe.data_len = u32::try_from(data_len)
            .map_err(|_| AppendError::Format(RecordError::DataTooLong(data_len)))?;
        probe.len = u32::try_from(record_len(
            source.len(),
            event.len(),
            unique.map_or(0, <[u8]>::len),
            data_len,
        ))
        .map_err(|_| AppendError::Format(RecordError::DataTooLong(data_len)))?;
        probe.cluster = ext.ordinal.is_some();
        probe.hold = hold_ttl.is_some();
        let len = probe.len as u64;
        if len > self.max_record() {
            return Err(AppendError::TooLarge {
                size: len,
                limit: self.max_record(),
            });
        }
        let h = self.hdr;
        let cap = self.cap;
        let _g = Guard::new(lock);
        if let Some(gate) = ext.gate.as_mut() {
            if !gate() {
                return Err(AppendError::Refused);
            }
        }

        let head = h.head.load(Ordering::Relaxed);
        let old_tail = h.tail.load(Ordering::Relaxed);
        let mut tail = old_tail;
        let mut evicted = 0;
        // A full log evicts a little ahead ([`EVICT_AHEAD`]), so that the
        // tail line, which every reader loads twice per record, changes
        // once per many posts rather than on each.
        let room = if head + len - tail > cap {
            cap - evict_ahead(cap)
        } else {
            cap
        };
        while head + len - tail > room {
            match self.header_at(tail) {
                Some(r) if tail + r.len as u64 <= head => tail += r.len as u64,
                // Cannot happen unless memory was scribbled on: drop everything.
                _ => tail = head,
            }
            evicted += 1;
        }
        if tail != old_tail {
            h.tail.store(tail, Ordering::Relaxed);
            bump_locked(&h.evicted, evicted);
            // Readers that see any byte written below also see the new tail.
            fence(Ordering::Release);
            // A full log evicts again soon: the next eviction reads the
            // header at the new tail, written long ago and out of every cache.
            // SAFETY: `tail % cap < cap`: inside the ring's bytes.
            prefetch(unsafe { self.bytes.add((tail % cap) as usize) });
        }

        let seq = h.head_seq.load(Ordering::Relaxed);
        let mut rh = probe;
        rh.seq = seq;
        // The ordinal is taken under the lock: ordinals follow log order.
        let mut ordinal = [0u8; 2 * ORDINAL_LEN];
        let n = ext
            .ordinal
            .map_or(0, |n| n.fetch_add(1, Ordering::Relaxed) + 1);
        ordinal[..ORDINAL_LEN].copy_from_slice(&n.to_le_bytes());
        ordinal[ORDINAL_LEN..].copy_from_slice(&hold_ttl.unwrap_or(0).to_le_bytes());
        let mut at = head;
        let parts = [
            &rh.encode()[..],
            source,
            event,
            unique.unwrap_or_default(),
            &ordinal[..ordinal_len],
        ];
        // The header and the names are small: gathered on the stack, they
        // take one copy into the ring instead of one per part.
        let mut small = [0u8; SMALL_PREFIX];
        let prefix_len: usize = parts.iter().map(|p| p.len()).sum();
        if prefix_len <= SMALL_PREFIX {
            let mut n = 0;
            for part in parts {
                small[n..n + part.len()].copy_from_slice(part);
                n += part.len();
            }
            self.copy_in(at, &small[..n]);
            at += n as u64;
        } else {
            for part in parts {
                self.copy_in(at, part);
                at += part.len() as u64;
            }
        }
        self.copy_in(at, data);
        at += data.len() as u64;
        let pad = (head + len - at) as usize;
        self.copy_in(at, &[0u8; 8][..pad]);

        h.head_seq.store(seq + 1, Ordering::Relaxed);
        bump_locked(&h.posted, 1);
        bump_locked(&h.bytes_posted, len);
        h.head.store(head + len, Ordering::Release);
        Ok(seq)
    }

    /// A cursor at the current head: the reader will see only future records.
    pub fn cursor_at_head(&self, lock: &(impl ZoneLock + ?Sized)) -> Cursor {
        let h = self.hdr;
        let _g = Guard::new(lock);
        Cursor::new(
            h.head.load(Ordering::Relaxed),
            h.head_seq.load(Ordering::Relaxed),
        )
    }

    /// True if records are waiting for this cursor (one atomic load).
    #[inline]
    pub fn has_pending(&self, cur: &Cursor) -> bool {
        self.header().head.load(Ordering::Acquire) != cur.pos
    }

    /// Reads the next record for `cur` into `buf` (reused between calls).
    pub fn read_next(
        &self,
        lock: &(impl ZoneLock + ?Sized),
        cur: &mut Cursor,
        buf: &mut Vec<u8>,
    ) -> ReadOutcome {
        let h = self.hdr;
        loop {
            if cur.head <= cur.pos {
                cur.head = h.head.load(Ordering::Acquire);
                if cur.head == cur.pos {
                    return ReadOutcome::Empty;
                }
            }
            let head = cur.head;
            let copied = if h.tail.load(Ordering::Acquire) > cur.pos || head < cur.pos {
                None
            } else {
                self.header_at(cur.pos).and_then(|rh| {
                    buf.clear();
                    buf.resize(rh.len as usize, 0);
                    self.copy_out(cur.pos, buf);
                    // Order the copy before the tail check (seqlock read side).
                    fence(Ordering::Acquire);
                    (h.tail.load(Ordering::Relaxed) <= cur.pos).then_some(rh)
                })
            };
            let Some(rh) = copied else {
                match self.resync(lock, cur) {
                    0 => continue,
                    lost => return ReadOutcome::Lost(lost),
                }
            };
            if rh.seq > cur.next_seq {
                // A poster died after taking a seq: report the gap now, and
                // deliver this record on the next call.
                let gap = rh.seq - cur.next_seq;
                cur.next_seq = rh.seq;
                return ReadOutcome::Lost(gap);
            }
            cur.pos += rh.len as u64;
            cur.next_seq = rh.seq + 1;
            return ReadOutcome::Record(rh);
        }
    }

    /// Splits a record that [`Ring::read_next`] copied into `buf`.
    pub fn view<'b>(&self, rh: &RecordHeader, buf: &'b [u8]) -> Option<RecordView<'b>> {
        RecordView::parse(rh, buf)
    }

    /// Moves an overrun cursor to the oldest intact record; returns the gap
    /// (0 when nothing was lost and the read can simply be retried).
    fn resync(&self, lock: &(impl ZoneLock + ?Sized), cur: &mut Cursor) -> u64 {
        let h = self.hdr;
        let _g = Guard::new(lock);
        let head = h.head.load(Ordering::Relaxed);
        let tail = h.tail.load(Ordering::Relaxed);
        let at_head = (head, h.head_seq.load(Ordering::Relaxed));
        // Not overtaken, yet the record under the cursor is unreadable (memory
        // was scribbled on), or nothing intact is left: skip to the head.
        let scribbled = tail <= cur.pos && cur.pos < head;
        let (pos, seq) = if scribbled || tail == head {
            at_head
        } else {
            self.header_at(tail).map_or(at_head, |r| (tail, r.seq))
        };
        let lost = seq.saturating_sub(cur.next_seq);
        *cur = Cursor {
            pos,
            next_seq: seq.max(cur.next_seq),
            head,
        };
        lost
    }
}
