//! The status endpoint (`worker_events_status [zone];` in a location): a
//! content handler that answers from the zone alone, in native code, with
//! no Lua and no lock beyond the zone's atomics, so it answers while the
//! workers' Lua is busy, as long as that Lua yields (a worker stuck in Lua
//! that never yields serves nothing until it returns to its event loop). JSON by default, the Prometheus text format with
//! `?format=prometheus` or `Accept: text/plain; version=0.0.4`.
//!
//! The document is made by `runtime::report` and rendered by `metrics`
//! (pure); this folder is the endpoint: its location configuration, the
//! query's checks (here, pure) and the content handler (`handler`, the
//! nginx edge). The directive is `conf::status`.

#[cfg(not(test))]
mod handler;
#[cfg(not(test))]
pub use handler::handler;

/// `worker_events_status`' location configuration.
#[derive(Debug, Default)]
pub struct StatusConf {
    /// Set in a location with the directive: the zone it reports ("" for
    /// the default zone).
    pub zone: Option<String>,
}

/// The output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Prometheus,
}

/// Bytes of a bad argument quoted back in a 400 (the rest is cut).
pub const QUOTED: usize = 32;

/// `v` as a 400 quotes it: its first [`QUOTED`] bytes, printable ASCII as
/// itself and other bytes as `\xNN`, then `..." (N bytes)` when cut.
fn quote(v: &[u8]) -> String {
    let mut out = String::from("\"");
    for &b in v.iter().take(QUOTED) {
        if (b.is_ascii_graphic() && b != b'"' && b != b'\\') || b == b' ' {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    if v.len() > QUOTED {
        out.push_str(&format!("...\" ({} bytes)", v.len()));
    } else {
        out.push('"');
    }
    out
}

/// The query string's verdict: a format (or none asked), or a one-line
/// reason for a 400.
pub fn parse_args(args: &[u8]) -> Result<Option<Format>, String> {
    let mut format = None;
    for pair in args.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let (k, v) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        match k {
            b"format" => {
                format = Some(match v {
                    b"json" => Format::Json,
                    b"prometheus" => Format::Prometheus,
                    _ => {
                        return Err(format!(
                            "bad format {}: use format=json or format=prometheus",
                            quote(v)
                        ))
                    }
                })
            }
            _ => {
                return Err(format!(
                    "unknown argument {}: the only one is format=json|prometheus",
                    quote(k)
                ))
            }
        }
    }
    Ok(format)
}

/// True for an Accept header asking for Prometheus' text format.
pub fn wants_prometheus(accept: &[u8]) -> bool {
    let a = String::from_utf8_lossy(accept).to_ascii_lowercase();
    a.contains("text/plain") && a.contains("version=0.0.4")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() {
        assert_eq!(parse_args(b""), Ok(None));
        assert_eq!(parse_args(b"format=json"), Ok(Some(Format::Json)));
        assert_eq!(
            parse_args(b"format=prometheus&"),
            Ok(Some(Format::Prometheus))
        );
        assert_eq!(
            parse_args(b"format=xml").unwrap_err(),
            "bad format \"xml\": use format=json or format=prometheus"
        );
        assert_eq!(
            parse_args(b"a=1").unwrap_err(),
            "unknown argument \"a\": the only one is format=json|prometheus"
        );
        // a long value is cut, odd bytes escaped
        let long = [b"x".as_slice(), &[b'y'; 5000]].concat();
        let e = parse_args(&[b"format=", long.as_slice()].concat()).unwrap_err();
        assert_eq!(
            e,
            format!(
                "bad format \"x{}...\" (5001 bytes): use format=json or format=prometheus",
                "y".repeat(QUOTED - 1)
            )
        );
        assert_eq!(
            parse_args(b"a\"\x01=1").unwrap_err(),
            "unknown argument \"a\\x22\\x01\": the only one is format=json|prometheus"
        );
        assert!(wants_prometheus(b"text/plain; version=0.0.4; q=1"));
        assert!(!wants_prometheus(b"application/json"));
    }
}
