//! The Prometheus text format's pieces: label escaping and one metric
//! family (HELP, TYPE, samples).

use core::fmt::Write;

/// A label value in the text format: backslash, double quote and newline escaped.
pub fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Appends one metric family: HELP, TYPE, then its samples.
pub fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP ngx_worker_events_{name} {help}");
    let _ = writeln!(out, "# TYPE ngx_worker_events_{name} {kind}");
    for (labels, v) in samples {
        let _ = writeln!(out, "ngx_worker_events_{name}{{{labels}}} {v}");
    }
}

/// Appends one histogram family: HELP, TYPE, the cumulative `buckets`
/// (upper bound, `None` for +Inf, and count), the sum and the count.
pub fn histogram(
    out: &mut String,
    name: &str,
    help: &str,
    labels: &str,
    buckets: &[(Option<f64>, u64)],
    sum: f64,
    count: u64,
) {
    let _ = writeln!(out, "# HELP ngx_worker_events_{name} {help}");
    let _ = writeln!(out, "# TYPE ngx_worker_events_{name} histogram");
    for (le, n) in buckets {
        let le = le.map_or("+Inf".to_string(), |x| format!("{x}"));
        let _ = writeln!(
            out,
            "ngx_worker_events_{name}_bucket{{{labels},le=\"{le}\"}} {n}"
        );
    }
    let _ = writeln!(out, "ngx_worker_events_{name}_sum{{{labels}}} {sum}");
    let _ = writeln!(out, "ngx_worker_events_{name}_count{{{labels}}} {count}");
}
