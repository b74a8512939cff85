//! Unique claims from a consumer: which worker runs a unique record, per
//! API. Each API claims under its own tag, so each API's handlers run the
//! event exactly once (in whichever worker's consumer of that API reads it
//! first), and a worker whose consumers of different APIs opened at
//! different moments cannot swallow it for the other API. Several consumers
//! of one API in the claiming worker all run it.

use crate::ngx::process;
use crate::runtime::state::STATE;
use crate::zone::claims::ClaimOutcome;

/// Unique records remembered as claimed by this worker (a consumer that
/// reads one later than this many claims runs it no more).
const CLAIMED_KEPT: usize = 4096;

/// Claims record `seq`'s `unique` key in consumer `id`'s zone for `ttl_ms`:
/// Mine when this worker handles the event (also when not open: nothing to
/// share with). A record this worker already claimed through another
/// consumer is Mine again: every API in the claiming worker runs it.
pub fn claim(id: u32, tag: &[u8], unique: &[u8], ttl_ms: u64, seq: u64) -> ClaimOutcome {
    STATE
        .with(|st| {
            let Some((c, a)) = st.reader(id) else {
                return ClaimOutcome::Mine;
            };
            let (zone, handle, posted_ms) = (c.zone, a.handle.clone(), c.last_posted_us / 1000);
            let t = crate::zone::claims::hash(tag);
            if st
                .claimed
                .iter()
                .any(|&(z, s, g)| z == zone && s == seq && g == t)
            {
                return ClaimOutcome::Mine;
            }
            let mut key = Vec::with_capacity(tag.len() + 1 + unique.len());
            key.extend_from_slice(tag);
            key.push(0);
            key.extend_from_slice(unique);
            let now_ms = crate::ngx::monotonic_us() / 1000;
            let out = handle.zone.claims().claim(
                &handle,
                &key,
                process::pid(),
                now_ms,
                ttl_ms,
                posted_ms,
            );
            if out == ClaimOutcome::Mine {
                if st.claimed.len() >= CLAIMED_KEPT {
                    st.claimed.pop_front();
                }
                st.claimed.push_back((zone, seq, t));
            }
            out
        })
        .unwrap_or(ClaimOutcome::Mine)
}
