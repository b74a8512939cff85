//! The status document of a zone, as this worker sees it: the zone's
//! counters, which worker pids are alive, the live claims, the cluster
//! bridge's configuration; rendered by `metrics`. The status endpoint and
//! Lua's `stats().status` both come here.

use std::sync::Mutex;

use crate::metrics::cluster::ClusterInfo;
use crate::metrics::render::{self, View};
use crate::ngx::process;
use crate::ngx::shm::ZoneHandle;
use crate::runtime::resolve::{resolve, AttachError};

/// How long a worker reuses its count of live claims: counting scans the
/// whole claims table (millions of entries in a large zone), which must not
/// happen on every scrape.
const LIVE_CLAIMS_TTL_MS: u64 = 1000;

/// (zone region address, counted at (monotonic ms), count), per zone.
static LIVE_CLAIMS: Mutex<Vec<(usize, u64, u64)>> = Mutex::new(Vec::new());

/// The zone's live claims, counted at most once a second in this worker.
fn live_claims(handle: &ZoneHandle) -> u64 {
    let now = crate::ngx::monotonic_us() / 1000;
    let base = handle.zone.base() as usize;
    let Ok(mut cache) = LIVE_CLAIMS.lock() else {
        return handle.zone.claims().live(now) as u64;
    };
    if let Some(&(_, at, n)) = cache.iter().find(|&&(b, _, _)| b == base) {
        if now.saturating_sub(at) < LIVE_CLAIMS_TTL_MS {
            return n;
        }
    }
    let n = handle.zone.claims().live(now) as u64;
    cache.retain(|&(b, _, _)| b != base);
    cache.push((base, now, n));
    n
}

/// Renders zone `name`'s snapshot ("" for the default zone) with `f`.
fn with_view<R>(name: &str, f: impl FnOnce(&View) -> R) -> Result<R, AttachError> {
    let (zone, handle, _) = resolve(name)?;
    let stats = handle.zone.stats();
    let alive: Vec<bool> = stats
        .workers
        .iter()
        .map(|o| process::alive(o.pid))
        .collect();
    let claims_live = live_claims(&handle);
    let conf = crate::published::active().cluster;
    let cluster = conf.as_ref().and_then(|c| {
        let (cz, _, _) = resolve(&c.zone).ok()?;
        (cz == zone).then_some(ClusterInfo {
            node: &c.node,
            stream: &c.stream,
        })
    });
    let v = View {
        cluster,
        zone: &zone,
        stats: &stats,
        alive: &alive,
        claims_live,
        now_mono_ms: crate::ngx::monotonic_us() / 1000,
    };
    Ok(f(&v))
}

/// The JSON document of zone `name` (what Lua `stats().status` returns).
pub fn document(name: &str) -> Result<serde_json::Value, AttachError> {
    with_view(name, render::json)
}

/// The document of zone `name`: pretty JSON, or the Prometheus text format.
pub fn render(name: &str, prometheus: bool) -> Result<String, AttachError> {
    with_view(name, |v| {
        if prometheus {
            render::prometheus(v)
        } else {
            let mut b = serde_json::to_string_pretty(&render::json(v)).unwrap_or_default();
            b.push('\n');
            b
        }
    })
}
