//! The zone's status counters a worker keeps (see `crate::status`):
//! deliveries and delays counted locally and added to the zone once per
//! drained batch, how far the worker's slowest consumer has read, handler
//! errors.

use crate::runtime::state::{State, STATE};
use crate::zone::slots::SlotCounter;

/// Deliveries counted locally between two flushes at most.
pub const FLUSH_EVERY: u64 = 256;

/// Adds zone `z`'s local counts to the zone: deliveries and delays, and how
/// far this worker's slowest consumer of it has read (the cluster bridge's
/// consumer reads only cluster records, and only in the lease holder: it
/// does not count).
pub fn flush(st: &mut State, z: usize) {
    let slowest = st
        .consumers
        .iter()
        .flatten()
        .filter(|c| c.zone == z && !c.bridge)
        .map(|c| c.cursor)
        .min_by_key(|c| c.pos);
    let a = &mut st.zones[z];
    let p = core::mem::take(&mut a.pending);
    let zone = a.handle.zone;
    if p.delay_count != 0 {
        zone.header()
            .add_delays(&p.delay_buckets, p.delay_sum_us, p.delay_count);
    }
    if let Some(s) = a.slot {
        if p.delivered != 0 {
            zone.slots().count(s, SlotCounter::Delivered, p.delivered);
        }
        if let Some(c) = slowest {
            zone.slots().set_read(s, c.pos, c.next_seq);
        }
    }
}

/// Counts a handler that raised in consumer `id`'s worker slot.
pub fn count_handler_error(id: u32) {
    let _ = STATE.with(|st| {
        if let Some((_, a)) = st.reader(id) {
            if let Some(s) = a.slot {
                a.handle
                    .zone
                    .slots()
                    .count(s, SlotCounter::HandlerErrors, 1);
            }
        }
    });
}
