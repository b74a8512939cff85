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
