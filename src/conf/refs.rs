//! Zone names given to directives (`worker_events_status <zone>;`,
//! `worker_events_cluster ... zone=<zone>`), checked at the end of `http {}`
//! (zones may be declared after the directive that names them), by the same
//! rule `runtime::resolve::resolve` applies at run time: a bad name fails
//! `nginx -t` instead of every request or the bridge.

/// Where a directive named a zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneRef {
    /// The directive, as written in the message ("worker_events_status").
    pub directive: &'static str,
    /// The zone named ("": none, the default zone).
    pub name: String,
    /// The configuration file and line of the directive.
    pub file: String,
    pub line: usize,
}

/// Why a named zone would fail at run time.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ZoneRefError {
    #[error("{directive}: zone \"{name}\" is neither a worker_events_zone nor a lua_shared_dict")]
    NotFound {
        directive: &'static str,
        name: String,
    },
    #[error("{directive}: zone \"{name}\" is a lua_shared_dict and there is no single default worker_events_zone (declared: {declared}): name one of them")]
    AmbiguousDict {
        directive: &'static str,
        name: String,
        declared: String,
    },
    #[error("{directive}: no zone named and there is no single default worker_events_zone (declared: {declared}): name one of them")]
    AmbiguousDefault {
        directive: &'static str,
        declared: String,
    },
    #[error("{directive}: zone \"{name}\" is a lua_shared_dict and no worker_events_zone exists")]
    NoDefault {
        directive: &'static str,
        name: String,
    },
}

/// Checks `r` against our zones `ours` (declared, or the implicit one) and
/// `declared(name)`: any shared zone of that name exists (another module's).
pub fn check(
    r: &ZoneRef,
    ours: &[String],
    declared: impl Fn(&str) -> bool,
) -> Result<(), ZoneRefError> {
    let directive = r.directive;
    let name = r.name.clone();
    if !name.is_empty() {
        if ours.contains(&name) {
            return Ok(());
        }
        if !declared(&name) {
            return Err(ZoneRefError::NotFound { directive, name });
        }
    }
    match ours.len() {
        1 => Ok(()),
        0 => Err(ZoneRefError::NoDefault { directive, name }),
        _ if name.is_empty() => Err(ZoneRefError::AmbiguousDefault {
            directive,
            declared: ours.join(", "),
        }),
        _ => Err(ZoneRefError::AmbiguousDict {
            directive,
            name,
            declared: ours.join(", "),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(name: &str) -> ZoneRef {
        ZoneRef {
            directive: "worker_events_status",
            name: name.into(),
            file: "nginx.conf".into(),
            line: 3,
        }
    }

    #[test]
    fn names_resolve_as_at_run_time() {
        let one = ["ev".to_string()];
        let two = ["a".to_string(), "b".to_string()];
        let dict = |n: &str| n == "cache";
        assert_eq!(check(&r("ev"), &one, dict), Ok(()));
        assert_eq!(check(&r(""), &one, dict), Ok(()));
        assert_eq!(check(&r("cache"), &one, dict), Ok(()));
        assert_eq!(check(&r("b"), &two, dict), Ok(()));
        assert_eq!(
            check(&r("nope"), &one, dict).unwrap_err().to_string(),
            "worker_events_status: zone \"nope\" is neither a worker_events_zone nor a lua_shared_dict"
        );
        assert_eq!(
            check(&r("cache"), &two, dict).unwrap_err().to_string(),
            "worker_events_status: zone \"cache\" is a lua_shared_dict and there is no single default worker_events_zone (declared: a, b): name one of them"
        );
        assert_eq!(
            check(&r(""), &two, dict).unwrap_err().to_string(),
            "worker_events_status: no zone named and there is no single default worker_events_zone (declared: a, b): name one of them"
        );
        assert!(check(&r("cache"), &[], dict).is_err());
    }
}
