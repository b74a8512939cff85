//! Unique claims from a consumer: which worker runs a unique record, and
//! every API of that worker runs it (each once).

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
pub fn claim(id: u32, unique: &[u8], ttl_ms: u64, seq: u64) -> ClaimOutcome {
    STATE
        .with(|st| {
            let Some((c, a)) = st.reader(id) else {
                return ClaimOutcome::Mine;
            };
            let (zone, handle) = (c.zone, a.handle);
            if st.claimed.iter().any(|&(z, s)| z == zone && s == seq) {
                return ClaimOutcome::Mine;
            }
            let now_ms = crate::ngx::monotonic_us() / 1000;
            let out = handle
                .zone
                .claims()
                .claim(&handle, unique, process::pid(), now_ms, ttl_ms);
            if out == ClaimOutcome::Mine {
                if st.claimed.len() >= CLAIMED_KEPT {
                    st.claimed.pop_front();
                }
                st.claimed.push_back((zone, seq));
            }
            out
        })
        .unwrap_or(ClaimOutcome::Mine)
}
