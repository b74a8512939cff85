//! Lifecycle counts (`resty.worker.manager`), pure: how many live workers
//! the previous, this and the next generation have, from the slot table.
//!
//! A worker counts from its first heartbeat (it runs the manager) until it
//! starts exiting; a dead worker counts until it is reaped (reported as
//! crashed). "Previous" is every older generation, "next" every newer one.

use super::slots::SlotOwner;

/// The library's `n_prev, n_mine, n_next`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counts {
    /// Live workers of older generations; `None` in the zone's first
    /// generation (nginx started; nothing came before).
    pub prev: Option<u32>,
    /// Live workers of this generation.
    pub mine: u32,
    /// Live workers of newer generations; `None` while no newer generation
    /// has started (no reload under way).
    pub next: Option<u32>,
}

/// The counts for generation `generation`, given the slot table and the
/// newest generation that started (`Header::managed_generation`, or
/// `Header::committed_generation` when nginx committed a newer cycle).
pub fn counts(owners: &[SlotOwner], generation: u64, newest: u64) -> Counts {
    let (mut prev, mut mine, mut next) = (0u32, 0u32, 0u32);
    for o in owners.iter().filter(|o| o.counted()) {
        match o.generation.cmp(&generation) {
            core::cmp::Ordering::Less => prev += 1,
            core::cmp::Ordering::Equal => mine += 1,
            core::cmp::Ordering::Greater => next += 1,
        }
    }
    Counts {
        prev: (generation > 1).then_some(prev),
        mine,
        next: (next > 0 || newest > generation).then_some(next),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zone::slots::SlotState;

    fn w(generation: u64, beat_ms: u64, state: SlotState) -> SlotOwner {
        SlotOwner {
            slot: 0,
            pid: 1,
            worker: 0,
            generation,
            push: false,
            state,
            beat_ms,
            started_ms: 0,
        }
    }

    #[test]
    fn first_generation_has_no_previous_and_no_next() {
        let t = [w(1, 5, SlotState::Running), w(1, 0, SlotState::Running)];
        let c = counts(&t, 1, 1);
        assert_eq!(
            (c.prev, c.mine, c.next),
            (None, 1, None),
            "unmanaged slots do not count"
        );
    }

    #[test]
    fn a_reload_sees_old_and_new() {
        let t = [
            w(2, 5, SlotState::Running),
            w(2, 5, SlotState::Unresponsive),
            w(2, 5, SlotState::Exiting),
            w(4, 5, SlotState::Running),
        ];
        // generation 3 failed to start: 4 is the new one
        assert_eq!(
            counts(&t, 2, 4),
            Counts {
                prev: Some(0),
                mine: 2,
                next: Some(1)
            }
        );
        assert_eq!(
            counts(&t, 4, 4),
            Counts {
                prev: Some(2),
                mine: 1,
                next: None
            }
        );
        // the new generation started, none of its workers counted yet
        assert_eq!(counts(&t[..3], 2, 4).next, Some(0));
    }
}
