//! The `worker_events_cluster` directive: which Redis stream carries a
//! zone's cluster events, parsed and checked at configuration time so a bad
//! URL or option fails `nginx -t`.
//!
//! ```nginx
//! worker_events_cluster redis://[:password@]host[:port][/db] | rediss://...
//!                       [stream=name] [maxlen=N] [node=id] [password=secret]
//!                       [tls] [zone=name] [queue=N] [timeout=ms] [secret=key];
//! ```
//! The parsed line is published (`published::Settings::cluster`): the
//! bridge reads the committed cycle's, so a worker respawned after a failed
//! reload keeps the running configuration's.

use crate::published::ClusterConf;

/// Defaults.
pub const DEFAULT_PORT: u16 = 6379;
pub const DEFAULT_STREAM: &str = "ngx_worker_events";
pub const DEFAULT_MAXLEN: u64 = 100_000;
pub const DEFAULT_QUEUE: u64 = 10_000;
pub const DEFAULT_TIMEOUT_MS: u64 = 1_000;

/// A bad `worker_events_cluster` line.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClusterConfError {
    #[error(
        "invalid redis URL \"{0}\": expected redis://[:password@]host[:port][/db] or rediss://..."
    )]
    Url(String),
    #[error("invalid port in \"{0}\"")]
    Port(String),
    #[error("invalid database number in \"{0}\"")]
    Db(String),
    #[error("unknown option \"{0}\" (known: stream=, maxlen=, node=, password=, tls, zone=, queue=, timeout=, secret=)")]
    Unknown(String),
    #[error("invalid value in \"{0}\"")]
    Value(String),
    #[error("option \"{0}\" is given twice")]
    Duplicate(String),
}

fn number(opt: &str, v: &str, min: u64, max: u64) -> Result<u64, ClusterConfError> {
    v.parse::<u64>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| ClusterConfError::Value(opt.to_string()))
}

fn name_ok(v: &str) -> bool {
    !v.is_empty() && v.len() <= 200 && v.bytes().all(|b| b.is_ascii_graphic())
}

/// Parses the directive's arguments (without the directive name).
/// `hostname` is the default node name.
pub fn parse(args: &[&str], hostname: &str) -> Result<ClusterConf, ClusterConfError> {
    let url = args.first().copied().unwrap_or_default();
    let bad_url = || ClusterConfError::Url(url.to_string());
    let (tls, rest) = if let Some(r) = url.strip_prefix("redis://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("rediss://") {
        (true, r)
    } else {
        return Err(bad_url());
    };
    let (auth, rest) = match rest.rsplit_once('@') {
        Some((a, r)) => (Some(a), r),
        None => (None, rest),
    };
    let password = match auth {
        Some(a) => {
            let p = a.strip_prefix(':').unwrap_or(a);
            (!p.is_empty()).then(|| p.to_string())
        }
        None => None,
    };
    let (hostport, db) = match rest.split_once('/') {
        Some((hp, "")) => (hp, 0),
        Some((hp, d)) => (
            hp,
            d.parse::<u32>()
                .ok()
                .filter(|n| *n < 1_000_000)
                .ok_or_else(|| ClusterConfError::Db(url.to_string()))?,
        ),
        None => (rest, 0),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| ClusterConfError::Port(url.to_string()))?,
        ),
        None => (hostport, DEFAULT_PORT),
    };
    if !name_ok(host) || host.contains(['/', '@', '?']) {
        return Err(bad_url());
    }
    let mut c = ClusterConf {
        host: host.to_string(),
        port,
        db,
        password,
        tls,
        stream: DEFAULT_STREAM.to_string(),
        maxlen: DEFAULT_MAXLEN,
        node: hostname.to_string(),
        zone: String::new(),
        queue: DEFAULT_QUEUE,
        timeout_ms: DEFAULT_TIMEOUT_MS,
        secret: None,
    };
    let opts = &args[1.min(args.len())..];
    for (i, opt) in opts.iter().enumerate() {
        if *opt == "tls" {
            c.tls = true;
            continue;
        }
        let Some((k, v)) = opt.split_once('=') else {
            return Err(ClusterConfError::Unknown(opt.to_string()));
        };
        let given_before = |o: &&str| o.split_once('=').is_some_and(|(seen, _)| seen == k);
        if opts[..i].iter().any(given_before) {
            return Err(ClusterConfError::Duplicate(opt.to_string()));
        }
        let bad = || ClusterConfError::Value(opt.to_string());
        match k {
            "stream" if name_ok(v) => c.stream = v.to_string(),
            "node" if name_ok(v) => c.node = v.to_string(),
            "zone" if name_ok(v) => c.zone = v.to_string(),
            "password" if !v.is_empty() => c.password = Some(v.to_string()),
            "secret" if !v.is_empty() => c.secret = Some(v.to_string()),
            "maxlen" => c.maxlen = number(opt, v, 1, u64::from(u32::MAX))?,
            "queue" => c.queue = number(opt, v, 1, 100_000_000)?,
            "timeout" => c.timeout_ms = number(opt, v, 10, 600_000)?,
            "stream" | "node" | "zone" | "password" | "secret" => return Err(bad()),
            _ => return Err(ClusterConfError::Unknown(opt.to_string())),
        }
    }
    Ok(c)
}

#[cfg(not(test))]
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into the buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    match rc {
        0 if end > 0 => String::from_utf8_lossy(&buf[..end]).into_owned(),
        _ => "localhost".to_string(),
    }
}

/// Handler of `worker_events_cluster`.
///
/// # Safety
/// Called by nginx with the configuration being parsed, this directive's
/// arguments (NGX_CONF_1MORE), and our http main configuration as `conf`.
#[cfg(not(test))]
pub unsafe extern "C" fn set_cluster(
    cf: *mut ngx::ffi::ngx_conf_t,
    _cmd: *mut ngx::ffi::ngx_command_t,
    conf: *mut core::ffi::c_void,
) -> *mut core::ffi::c_char {
    use super::shell::{arg, directive, Refusal};
    let body = |cf: *mut ngx::ffi::ngx_conf_t,
                args: &[ngx::ffi::ngx_str_t],
                mcf: &mut super::main_conf::MainConf| {
        if mcf.cluster.is_some() {
            return Err(Refusal::Duplicate);
        }
        let owned: Vec<String> = args[1..].iter().map(arg).collect();
        let refs: Vec<&str> = owned.iter().map(String::as_str).collect();
        let c = parse(&refs, &hostname()).map_err(|e| Refusal::Error(e.to_string()))?;
        // SAFETY: inside this directive's handler.
        mcf.zone_refs
            .push(unsafe { super::shell::here(cf, "worker_events_cluster", c.zone.clone()) });
        mcf.cluster = Some(c);
        Ok(())
    };
    // SAFETY: nginx's directive handler contract, as this function's.
    unsafe { directive(cf, conf, body) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<ClusterConf, ClusterConfError> {
        parse(args, "box")
    }

    #[test]
    fn urls_and_defaults() {
        let c = p(&["redis://127.0.0.1"]).unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.db, c.tls),
            ("127.0.0.1", 6379, 0, false)
        );
        assert_eq!(
            (c.node.as_str(), c.stream.as_str()),
            ("box", DEFAULT_STREAM)
        );
        assert_eq!(
            (c.maxlen, c.queue, c.password),
            (DEFAULT_MAXLEN, DEFAULT_QUEUE, None)
        );
        let c = p(&["rediss://:s3cret@cache.local:6380/2"]).unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.db, c.tls),
            ("cache.local", 6380, 2, true)
        );
        assert_eq!(c.password.as_deref(), Some("s3cret"));
        let c = p(&[
            "redis://h:1/",
            "stream=s",
            "maxlen=10",
            "node=a",
            "password=x",
            "tls",
            "zone=ev",
            "queue=5",
            "timeout=200",
            "secret=k3y",
        ])
        .unwrap();
        assert_eq!(c.secret.as_deref(), Some("k3y"));
        assert_eq!(
            (
                c.stream.as_str(),
                c.maxlen,
                c.node.as_str(),
                c.zone.as_str()
            ),
            ("s", 10, "a", "ev")
        );
        assert_eq!(
            (c.password.as_deref(), c.tls, c.queue, c.timeout_ms),
            (Some("x"), true, 5, 200)
        );
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        let e = |a: &[&str]| p(a).unwrap_err().to_string();
        assert!(e(&["http://h"]).starts_with("invalid redis URL \"http://h\""));
        assert!(e(&["redis://"]).starts_with("invalid redis URL"));
        assert_eq!(
            e(&["redis://h:99999"]),
            "invalid port in \"redis://h:99999\""
        );
        assert_eq!(e(&["redis://h:0"]), "invalid port in \"redis://h:0\"");
        assert_eq!(
            e(&["redis://h/x"]),
            "invalid database number in \"redis://h/x\""
        );
        assert!(e(&["redis://h", "foo=1"]).starts_with("unknown option \"foo=1\""));
        assert!(e(&["redis://h", "tlss"]).starts_with("unknown option \"tlss\""));
        assert_eq!(
            e(&["redis://h", "maxlen=0"]),
            "invalid value in \"maxlen=0\""
        );
        assert_eq!(
            e(&["redis://h", "maxlen=x"]),
            "invalid value in \"maxlen=x\""
        );
        assert_eq!(e(&["redis://h", "stream="]), "invalid value in \"stream=\"");
        assert_eq!(e(&["redis://h", "secret="]), "invalid value in \"secret=\"");
        assert_eq!(
            e(&["redis://h", "timeout=1"]),
            "invalid value in \"timeout=1\""
        );
        assert_eq!(
            e(&["redis://h", "node=a", "stream=s", "node=b"]),
            "option \"node=b\" is given twice"
        );
    }
}
