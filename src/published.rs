//! The published configuration: what the module's directives said, in one
//! store that every layer may read. The parsers (`conf/`) write it; nothing
//! imports a parser to read it.
//!
//! Two copies are kept, because Lua runs in two kinds of process:
//! - **parsed**: the `http {}` block nginx parsed last (written at its end,
//!   from `init_main_conf`). The master reads it in `init_by_lua*`, while
//!   that configuration is still being parsed.
//! - **active**: the cycle nginx committed (written from `init_module`,
//!   also under `nginx -t`). The processes forked from it read it, so a
//!   worker respawned after a failed reload keeps the running
//!   configuration's values.
//!
//! Pure: plain data behind a mutex, no nginx types.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Which lua-resty-worker-events semantics `resty.worker.events` has
/// (`worker_events_compat`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum Compat {
    /// 1.0.0: `post` and `post_local` poll before they return.
    V1 = 1,
    /// 2.x (the default): every event is handled asynchronously.
    #[default]
    V2 = 2,
}

impl Compat {
    /// The directive's spelling, also what Lua sees.
    pub fn as_str(self) -> &'static str {
        match self {
            Compat::V1 => "1.x",
            Compat::V2 => "2.x",
        }
    }
}

/// One `worker_events_cluster` line, parsed (see `conf::cluster`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConf {
    pub host: String,
    pub port: u16,
    pub db: u32,
    pub password: Option<String>,
    pub tls: bool,
    pub stream: String,
    /// `XADD ... MAXLEN ~ maxlen`.
    pub maxlen: u64,
    /// This node's name in the stream (default: the host name).
    pub node: String,
    /// The zone whose events go to the cluster ("": the default zone).
    pub zone: String,
    /// Cluster events that may wait in the zone for Redis before a post fails.
    pub queue: u64,
    /// Connect/read timeout (ms).
    pub timeout_ms: u64,
    /// The cluster's shared key: entries carry an HMAC-SHA256 made with it,
    /// and entries without the right one are dropped.
    pub secret: Option<String>,
}

/// Everything the directives of one `http {}` block publish.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// `worker_events_compat` (2.x when not set).
    pub compat: Compat,
    /// `worker_events_cluster`, when set.
    pub cluster: Option<ClusterConf>,
}

static PARSED: Mutex<Option<Settings>> = Mutex::new(None);
static ACTIVE: Mutex<Option<Settings>> = Mutex::new(None);

/// The cell, whatever a panicking holder left in it (the data is replaced
/// whole, so it is never half-written).
fn cell(m: &'static Mutex<Option<Settings>>) -> MutexGuard<'static, Option<Settings>> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Records the settings of the `http {}` block just parsed.
pub fn publish_parsed(s: Settings) {
    *cell(&PARSED) = Some(s);
}

/// Records the settings of the cycle nginx committed (defaults when it has
/// no `http {}` block).
pub fn commit(s: Settings) {
    *cell(&ACTIVE) = Some(s);
}

/// The settings Lua code loaded now sees: the committed cycle's when
/// `committed` (a process forked from it), else the configuration being
/// parsed (the master in `init_by_lua*`).
pub fn settings(committed: bool) -> Settings {
    let m = if committed { &ACTIVE } else { &PARSED };
    cell(m).clone().unwrap_or_default()
}

/// The committed cycle's settings.
pub fn active() -> Settings {
    settings(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsed_and_committed_are_separate() {
        assert_eq!(settings(false).compat, Compat::V2);
        publish_parsed(Settings {
            compat: Compat::V1,
            cluster: None,
        });
        assert_eq!(settings(false).compat, Compat::V1);
        // nothing committed yet: the defaults
        assert_eq!(active(), Settings::default());
        commit(settings(false));
        assert_eq!(active().compat, Compat::V1);
        // a failed reload's parse does not change what workers get
        publish_parsed(Settings::default());
        assert_eq!(active().compat, Compat::V1);
        assert_eq!(Compat::V1.as_str(), "1.x");
    }
}
