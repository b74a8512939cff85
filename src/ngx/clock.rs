//! The clocks: CLOCK_MONOTONIC and CLOCK_REALTIME in the units the module
//! uses, and [`StampClock`], the post time stamped into every record.

/// Microseconds of clock `clock`.
fn clock_us(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec; both clocks used here always exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}

/// Microseconds of CLOCK_MONOTONIC (shared by all processes of the host).
pub fn monotonic_us() -> u64 {
    clock_us(libc::CLOCK_MONOTONIC)
}

/// Milliseconds since the Unix epoch (CLOCK_REALTIME), for times shown to
/// people; intervals use [`monotonic_us`].
pub fn wall_ms() -> u64 {
    clock_us(libc::CLOCK_REALTIME) / 1000
}

/// Time-stamp counter ticks within which [`StampClock`] hands out its last
/// reading again: at most 4 µs on any x86-64 whose counter runs at 1 GHz or
/// more, a twenty-fifth of the smallest delivery delay bucket (100 µs).
const STAMP_TICKS: u64 = 4096;

/// The monotonic µs a post stamps into its record (for the delivery delay
/// histogram). A burst of posts would read the clock once per post (about
/// 23 ns in a VM's vDSO, 8 % of a post): this reads it again only when the
/// CPU's time-stamp counter says [`STAMP_TICKS`] have passed since the last
/// reading, so a stamp is early by at most that. Elsewhere than x86-64 it
/// reads the clock every time.
#[derive(Debug, Default)]
pub struct StampClock {
    /// The counter at the last reading (x86-64 only).
    ticks: u64,
    /// The last reading (0: none yet).
    us: u64,
}

impl StampClock {
    /// Now, in monotonic µs, early by at most [`STAMP_TICKS`].
    pub fn now_us(&mut self) -> u64 {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: RDTSC exists on every x86-64 CPU and reads no memory.
            let ticks = unsafe { core::arch::x86_64::_rdtsc() };
            // wrapping_sub: a counter that reads lower (another CPU's, not
            // in step) gives a huge difference, hence a fresh reading
            if self.us == 0 || ticks.wrapping_sub(self.ticks) >= STAMP_TICKS {
                self.ticks = ticks;
                self.us = monotonic_us();
            }
            self.us
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            monotonic_us()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_is_never_later_than_the_clock_nor_far_behind_it() {
        let mut c = StampClock::default();
        let mut last = 0;
        for _ in 0..100_000 {
            let before = monotonic_us();
            let s = c.now_us();
            let after = monotonic_us();
            assert!(s <= after, "stamp {s} after the clock {after}");
            // early by at most STAMP_TICKS: a few µs; 1 ms leaves room for
            // a preempted test thread
            assert!(s + 1000 >= before, "stamp {s} far behind {before}");
            assert!(s >= last, "stamps go back: {s} < {last}");
            last = s;
        }
    }
}
