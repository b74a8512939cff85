//! The module's http main configuration: what the directives of one
//! `http {}` block set, and what it publishes.

use crate::published::{ClusterConf, Compat, Settings};

/// One declared zone.
#[derive(Debug, PartialEq, Eq)]
pub struct ZoneConf {
    pub name: String,
    pub size: usize,
}

/// The module's http main configuration.
#[derive(Debug, Default)]
pub struct MainConf {
    pub zones: Vec<ZoneConf>,
    /// The implicit zone's name, when the module declared it.
    pub implicit: Option<String>,
    /// `worker_events_compat`, when set.
    pub compat: Option<Compat>,
    /// `worker_events_cluster`, when set.
    pub cluster: Option<ClusterConf>,
    /// Zones named by directives, checked at the end of `http {}`.
    pub zone_refs: Vec<super::refs::ZoneRef>,
}

impl MainConf {
    /// What this `http {}` block publishes.
    pub fn settings(&self) -> Settings {
        Settings {
            compat: self.compat.unwrap_or_default(),
            cluster: self.cluster.clone(),
        }
    }
}
