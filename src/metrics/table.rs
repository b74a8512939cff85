//! The metric table: each metric declared once, with its place in the JSON
//! document (or none), its Prometheus family (or none) and one getter; and
//! the two walks over a table that render it. `render` and `cluster` hold
//! the tables, one per scope (the zone, a worker, a task, the cluster).

use serde_json::{Map, Value};

use super::prom::{family, histogram};

/// A Prometheus metric kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    /// The kind's name on the `# TYPE` line.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A metric's Prometheus family: its name (after `ngx_worker_events_`),
/// kind and help text.
#[derive(Clone, Copy, Debug)]
pub struct Prom {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
}

/// A counter family.
pub const fn counter(name: &'static str, help: &'static str) -> Option<Prom> {
    Some(Prom {
        name,
        kind: Kind::Counter,
        help,
    })
}

/// A gauge family.
pub const fn gauge(name: &'static str, help: &'static str) -> Option<Prom> {
    Some(Prom {
        name,
        kind: Kind::Gauge,
        help,
    })
}

/// A histogram family.
pub const fn histo(name: &'static str, help: &'static str) -> Option<Prom> {
    Some(Prom {
        name,
        kind: Kind::Histogram,
        help,
    })
}

/// Not in the Prometheus text (a JSON-only field, or a label there).
pub const JSON_ONLY: Option<Prom> = None;

/// Cumulative histogram buckets: upper bound (`None`: +Inf) and count, then
/// the sum and the count of the observations.
#[derive(Clone, Debug, PartialEq)]
pub struct Buckets {
    pub le: Vec<(Option<f64>, u64)>,
    pub sum: f64,
    pub count: u64,
}

/// One metric's value in one row; its type decides the JSON value.
#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    /// JSON `null`; no sample in the Prometheus text.
    Null,
    U(u64),
    I(i64),
    F(f64),
    /// JSON `true`/`false`; 1 and 0 as a sample.
    B(bool),
    /// JSON only.
    S(String),
    /// A JSON object of counts by name; one sample each, labelled
    /// `label="name"`.
    By(&'static str, Vec<(&'static str, u64)>),
    /// A histogram.
    H(Buckets),
}

impl Val {
    /// An optional value: `Null` when absent.
    pub fn opt<T: Into<Val>>(v: Option<T>) -> Val {
        v.map_or(Val::Null, Into::into)
    }

    fn json(&self) -> Value {
        match self {
            Val::Null => Value::Null,
            Val::U(x) => (*x).into(),
            Val::I(x) => (*x).into(),
            Val::F(x) => (*x).into(),
            Val::B(x) => (*x).into(),
            Val::S(x) => x.as_str().into(),
            Val::By(_, xs) => {
                Value::Object(xs.iter().map(|(k, x)| ((*k).into(), (*x).into())).collect())
            }
            Val::H(b) => {
                let le = |le: Option<f64>| le.map_or_else(|| "+Inf".into(), Value::from);
                let buckets: Vec<Value> =
                    b.le.iter()
                        .map(|&(l, n)| {
                            let mut m = Map::new();
                            m.insert("le".into(), le(l));
                            m.insert("count".into(), n.into());
                            Value::Object(m)
                        })
                        .collect();
                let mut m = Map::new();
                m.insert("buckets".into(), buckets.into());
                m.insert("sum".into(), b.sum.into());
                m.insert("count".into(), b.count.into());
                Value::Object(m)
            }
        }
    }

    /// The samples of one row labelled `labels`.
    fn samples(&self, labels: &str, out: &mut Vec<(String, f64)>) {
        let x = match self {
            Val::Null | Val::S(_) | Val::H(_) => return,
            Val::U(x) => *x as f64,
            Val::I(x) => *x as f64,
            Val::F(x) => *x,
            Val::B(x) => u8::from(*x) as f64,
            Val::By(label, xs) => {
                out.extend(
                    xs.iter()
                        .map(|(k, x)| (format!("{labels},{label}=\"{k}\""), *x as f64)),
                );
                return;
            }
        };
        out.push((labels.to_string(), x));
    }
}

impl From<u64> for Val {
    fn from(x: u64) -> Val {
        Val::U(x)
    }
}

impl From<f64> for Val {
    fn from(x: f64) -> Val {
        Val::F(x)
    }
}

impl From<i32> for Val {
    fn from(x: i32) -> Val {
        Val::I(x.into())
    }
}

impl From<bool> for Val {
    fn from(x: bool) -> Val {
        Val::B(x)
    }
}

impl From<String> for Val {
    fn from(x: String) -> Val {
        Val::S(x)
    }
}

impl From<&str> for Val {
    fn from(x: &str) -> Val {
        Val::S(x.into())
    }
}

/// One metric of a scope whose rows are `R`: where it goes in the JSON
/// object of a row (a path of keys; empty: not in JSON), its Prometheus
/// family (or none), and its getter `G`, a `fn(&R) -> Val`.
pub struct Metric<G> {
    pub json: &'static [&'static str],
    pub prom: Option<Prom>,
    pub get: G,
}

/// The JSON object of one row: every metric with a JSON place, at it.
pub fn json_object<R, G: Fn(&R) -> Val>(table: &[Metric<G>], row: &R) -> Map<String, Value> {
    let mut obj = Map::new();
    for m in table {
        let Some((key, path)) = m.json.split_last() else {
            continue;
        };
        let mut at = &mut obj;
        for k in path {
            let v = at.entry(*k).or_insert_with(|| Value::Object(Map::new()));
            at = v.as_object_mut().expect("a JSON section is an object");
        }
        at.insert((*key).into(), (m.get)(row).json());
    }
    obj
}

/// The JSON array of rows.
pub fn json_array<R, G: Fn(&R) -> Val>(table: &[Metric<G>], rows: &[R]) -> Value {
    rows.iter()
        .map(|r| Value::Object(json_object(table, r)))
        .collect()
}

/// Appends one family per metric with a Prometheus name, in table order,
/// each with the samples of every row (`labels`, row), rows in order.
pub fn prometheus<R, G: Fn(&R) -> Val>(
    out: &mut String,
    table: &[Metric<G>],
    rows: &[(String, &R)],
) {
    for m in table {
        let Some(p) = m.prom else {
            continue;
        };
        if p.kind == Kind::Histogram {
            for (labels, r) in rows {
                if let Val::H(b) = (m.get)(r) {
                    histogram(out, p.name, p.help, labels, &b.le, b.sum, b.count);
                }
            }
            continue;
        }
        let mut samples = Vec::new();
        for (labels, r) in rows {
            (m.get)(r).samples(labels, &mut samples);
        }
        family(out, p.name, p.kind.as_str(), p.help, &samples);
    }
}

/// A table's JSON places and Prometheus names, for [`assert_sound`].
#[cfg(test)]
pub type Outline = Vec<(&'static [&'static str], Option<&'static str>)>;

/// The outline of `table`.
#[cfg(test)]
pub fn outline<G>(table: &[Metric<G>]) -> Outline {
    table
        .iter()
        .map(|m| (m.json, m.prom.map(|p| p.name)))
        .collect()
}

/// Panics unless the tables of one document are sound: every metric is
/// somewhere, no Prometheus name is there twice, and in each scope (the
/// outlines of the tables rendered into one JSON object) no JSON place is
/// there twice or both a value and a section.
#[cfg(test)]
pub fn assert_sound(scopes: &[Outline]) {
    let mut names = std::collections::HashSet::new();
    for scope in scopes {
        for (i, (a, name)) in scope.iter().enumerate() {
            assert!(!a.is_empty() || name.is_some(), "a metric nowhere");
            if let Some(name) = name {
                assert!(names.insert(*name), "{name} twice");
            }
            for (b, _) in scope[i + 1..].iter().filter(|_| !a.is_empty()) {
                let n = a.len().min(b.len());
                assert!(
                    n == 0 || a[..n] != b[..n],
                    "JSON places {a:?} and {b:?} collide"
                );
            }
        }
    }
}
