//! Resolving zone names: which of our zones a name given to an API or a
//! directive stands for.
//!
//! The default-zone rule (zero-config drop-in): a name that is one of our
//! zones is that zone. A name that is some other module's shared zone (a
//! `lua_shared_dict`, as lua-resty-worker-events code passes in
//! `configure{shm = ...}`) means the **default zone**: the only
//! `worker_events_zone` declared, or when none is declared, the module's
//! implicit one (see `conf::zone`). The dict itself is left alone. The empty
//! name (an API given no zone, as resty.events code is) means the default
//! zone too. A name that is nothing fails. (`conf::refs` applies the same
//! rule at configuration time.)

use crate::ngx::shm::{self, Lookup, ZoneHandle};
use crate::runtime::cell::Reentered;

/// Why a zone name could not be resolved or a consumer opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachError {
    /// No shared zone of that name.
    NotFound(String),
    /// A `lua_shared_dict` name, and several of our zones to choose from.
    Ambiguous {
        dict: String,
        zones: Vec<String>,
    },
    /// A `lua_shared_dict` name, and none of our zones (cannot happen while
    /// the implicit zone exists).
    NoDefault(String),
    /// Called in `init_by_lua*` (the master): zones there belong to a
    /// configuration that a reload replaces.
    InInit,
    /// Called in a process that takes no part: a helper (the privileged
    /// agent, where the caller did not ask for events, or a cache process).
    NotAWorker,
    Reentered,
}

impl core::fmt::Display for AttachError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AttachError::NotFound(name) => write!(f, "shm \"{name}\" not found"),
            AttachError::Ambiguous { dict, zones } if dict.is_empty() => write!(
                f,
                "no shm given and there is no single default worker_events_zone (declared: {}): pass one of them as shm",
                zones.join(", ")
            ),
            AttachError::Ambiguous { dict, zones } => write!(
                f,
                "shm \"{dict}\" is a lua_shared_dict and there is no single default worker_events_zone (declared: {}): pass one of them as shm",
                zones.join(", ")
            ),
            AttachError::NoDefault(dict) => write!(
                f,
                "shm \"{dict}\" is a lua_shared_dict and no worker_events_zone exists: declare one in http {{}} with: worker_events_zone {dict}_events 1m;"
            ),
            AttachError::InInit => f.write_str(
                "configure() is for worker processes (init_worker_by_lua* or later), not init_by_lua*",
            ),
            AttachError::NotAWorker => f.write_str(
                "not in a worker process: this is a helper process (the privileged agent takes events through resty.worker.events and resty.events only)",
            ),
            AttachError::Reentered => Reentered.fmt(f),
        }
    }
}

impl From<Reentered> for AttachError {
    fn from(_: Reentered) -> Self {
        AttachError::Reentered
    }
}

/// The zone `name` stands for (see the module doc), and whether it was a
/// `lua_shared_dict` name mapped to the default zone.
pub fn resolve(name: &str) -> Result<(String, ZoneHandle, bool), AttachError> {
    let lookup = if name.is_empty() {
        Lookup::Foreign
    } else {
        shm::lookup(name.as_bytes())
    };
    match lookup {
        Lookup::Ours(h) => Ok((name.to_string(), h, false)),
        Lookup::Missing => Err(AttachError::NotFound(name.to_string())),
        Lookup::Foreign => {
            let mut ours = shm::ours();
            match ours.len() {
                1 => {
                    let (zone, h) = ours.remove(0);
                    Ok((zone, h, true))
                }
                0 => Err(AttachError::NoDefault(name.to_string())),
                _ => Err(AttachError::Ambiguous {
                    dict: name.to_string(),
                    zones: ours.into_iter().map(|(n, _)| n).collect(),
                }),
            }
        }
    }
}
