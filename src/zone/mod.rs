//! The shared zone's memory layout and the algorithms over it.
//!
//! Pure code over a byte region plus atomics: no nginx and no Lua types, so
//! all of it runs under `cargo test`. The nginx side (`crate::ngx::shm`)
//! hands us a region carved from the slab pool and a [`ZoneLock`] (the slab
//! pool mutex).
//!
//! Vocabulary, used the same way everywhere in the crate:
//! - **zone**: one `worker_events_zone` (declared, or the module's implicit
//!   default zone); its region holds a [`layout::Header`], the worker
//!   **slots**, the **claims** table and the event **log**.
//! - **log** ([`ring::Ring`]): a ring of bytes holding serialised **records**
//!   back to back. Positions in it (`pos`, `head`, `tail`) are monotonic
//!   64-bit byte counts; the byte offset is `pos % cap`. A record may wrap
//!   around the end.
//! - **record**: one posted event (header + source + event + unique + data).
//! - **seq**: the record's number in the zone's global order; gaps only appear
//!   when a poster died in the middle of a post.
//! - **cursor**: a reader's (`pos`, `next_seq`). Every **consumer** (one Lua
//!   API in one worker, see `crate::runtime`) has its own.
//! - **claim**: who handles a `unique` event, until it expires.
//! - **slot**: per-worker entry (pid, worker number, generation, wake-up flag).
//! - **generation**: how many configuration cycles (start, HUP reloads) have
//!   adopted the zone; a worker belongs to the generation it started in.
//!
//! Writers serialise on the zone lock, and hold it only while copying one
//! record in. Readers never take the lock on the normal path: they copy a
//! record out and then check that the writer did not reclaim it meanwhile
//! (seqlock style); only when a reader was overrun does it lock to resync.
//!
//! Files only look down: `layout` composes `ring`, `claims` and `slots`
//! (which know nothing of each other), `stats` reads a `layout::Zone`.

pub mod claims;
pub mod cluster;
pub mod layout;
pub mod lock;
pub mod manager;
pub mod record;
pub mod ring;
#[cfg(test)]
mod ring_tests;
#[cfg(test)]
mod ring_threads_tests;
#[cfg(test)]
mod ring_unit_tests;
pub mod slots;
pub mod stats;
pub mod tasks;

pub use layout::Zone;
pub use lock::{Guard, ZoneLock};
pub use ring::{AppendError, Cursor, ReadOutcome};
pub use stats::ZoneStats;
