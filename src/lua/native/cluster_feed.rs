//! The cluster bridge's reading of the stream, for `cluster.lua`: the
//! `XREAD` reply read as it arrives, each stream entry read in place
//! (`wire::stream_entry`), checked (fields, HMAC, payload) and delivered or
//! dropped and counted as soon as it is whole. The reply goes through
//! `resp_reader::Reader`: linear in the bytes received, and holding one
//! entry at a time, at most the zone's largest record plus framing (issue
//! 21). The replies to the other commands are `cluster_replies`'.
//!
//! - `cluster_feed(c, token, chunk|nil, own_node, count)` -> `"more"`
//!   | `"done", last_id|nil, entries, { node, lost, ... }, drops|nil, jumps|nil`
//!   | `"null"` (XREAD BLOCK timed out) | `"stale"` (lease lost) | `"error", msg`;
//!   `drops`: `{ [reason] = { n, detail } }`; `jumps`: `{ node, ... }`.
//!   A nil chunk forgets a partial reply and frees the buffer.
//! - `cluster_limit(c)` -> the largest entry accepted (bytes).
//! - `cluster_check_reset(c, token, last_generated_id|nil)` -> true when
//!   the stream was found reset (reading starts again at its beginning).

use std::sync::Mutex;

use mlua::{Lua, LuaString, MultiValue, Table, Value};

use crate::runtime::cluster::{self, Entry, Incoming};
use crate::wire::payload;
use crate::wire::resp::{parse, Reply};
use crate::wire::resp_reader::{Reader, Step};
use crate::wire::stream_entry;
use crate::zone::cluster::{parse_id, DropReason, DROPS};

/// Framing around a record in an entry (id, field names, lengths, HMAC).
const FRAMING: usize = 4096;

fn token(t: f64) -> u64 {
    t.clamp(0.0, 9e15) as u64
}

/// What one XREAD reply did so far.
#[derive(Default)]
struct Fed {
    last: Option<Vec<u8>>,
    entries: usize,
    /// (node, count) per gap.
    lost: Vec<(Vec<u8>, u64)>,
    /// Nodes whose ordinal jumped implausibly.
    jumps: Vec<Vec<u8>>,
    drops: [u64; DROPS],
    /// One example per reason (no payload: an id, a field name).
    detail: [Option<String>; DROPS],
    null: bool,
    stale: bool,
    error: Option<String>,
    /// Entries were delivered since the readers were last woken.
    unwoken: bool,
}

struct InState {
    reader: Reader,
    fed: Fed,
}

/// The reading connection's reader (one bridge per worker).
static IN: Mutex<Option<InState>> = Mutex::new(None);

/// Up to 40 printable bytes of a peer's text, for a log line.
fn shown(b: &[u8]) -> String {
    let mut s: String = b
        .iter()
        .take(40)
        .map(|c| {
            if c.is_ascii_graphic() {
                *c as char
            } else {
                '?'
            }
        })
        .collect();
    if b.len() > 40 {
        s.push_str("...");
    }
    s
}

/// The checks an entry needs.
struct Rules<'a> {
    c: u32,
    tok: u64,
    own: &'a [u8],
    secret: Option<&'a [u8]>,
    /// Without a secret: the largest plausible ordinal step.
    max_gap: u64,
}

fn drop_entry(
    r: &Rules<'_>,
    fed: &mut Fed,
    sid: Option<(u64, u64)>,
    why: DropReason,
    d: String,
) -> bool {
    if why != DropReason::TooLarge {
        let _ = cluster::dropped(r.c, why, 1);
    }
    fed.drops[why as usize] += 1;
    fed.detail[why as usize] = Some(d);
    match sid {
        Some(sid) => cluster::skip(r.c, r.tok, sid, false).unwrap_or(false),
        None => true,
    }
}

/// An entry's fields by name (`n e o s v d h`) and its first unknown one.
#[derive(Default)]
struct Fields<'a> {
    f: [Option<&'a [u8]>; 7],
    unknown: Option<&'a [u8]>,
}

impl<'a> Fields<'a> {
    /// One field (a later one of the same name wins).
    fn set(&mut self, k: &'a [u8], v: &'a [u8]) {
        let slot = match k {
            b"n" => 0,
            b"e" => 1,
            b"o" => 2,
            b"s" => 3,
            b"v" => 4,
            b"d" => 5,
            b"h" => 6,
            _ => {
                self.unknown.get_or_insert(k);
                return;
            }
        };
        self.f[slot] = Some(v);
    }
}

/// What is wrong with an entry's shape (read by `resp::parse`).
enum Shape {
    NotArray,
    NotIdAndFields,
    Odd,
    NotString,
}

/// Reads an entry that [`stream_entry::walk`] declined, with `resp::parse`:
/// its id (when its first part is a string) and its shape's verdict.
fn read_slow<'a>(
    bytes: &'a [u8],
    fields: &mut Fields<'a>,
) -> (Option<&'a [u8]>, Result<(), Shape>) {
    let parts = match parse(bytes) {
        Ok(Some((Reply::Array(Some(parts)), _))) => parts,
        _ => return (None, Err(Shape::NotArray)),
    };
    let id = match parts.first() {
        Some(Reply::Bulk(Some(id))) => Some(*id),
        _ => None,
    };
    let (Some(id), Some(Reply::Array(Some(kv))), 2) = (id, parts.get(1), parts.len()) else {
        return (id, Err(Shape::NotIdAndFields));
    };
    if parse_id(id).is_none() {
        return (Some(id), Ok(()));
    }
    if kv.len() % 2 != 0 {
        return (Some(id), Err(Shape::Odd));
    }
    for pair in kv.chunks(2) {
        let [Reply::Bulk(Some(k)), Reply::Bulk(Some(v))] = pair else {
            return (Some(id), Err(Shape::NotString));
        };
        fields.set(k, v);
    }
    (Some(id), Ok(()))
}

/// The lease was lost while an entry was delivered.
struct LeaseLost;

/// Checks and delivers (or drops and counts) one whole entry, its bytes:
/// the entry's id when it has one (what the next XREAD goes on from).
fn feed_entry<'a>(
    r: &Rules<'_>,
    fed: &mut Fed,
    bytes: &'a [u8],
) -> Result<Option<&'a [u8]>, LeaseLost> {
    let mut fields = Fields::default();
    let (id, shape) = match stream_entry::walk(bytes, |k, v| fields.set(k, v)) {
        Some(id) => (Some(id), Ok(())),
        None => {
            fields = Fields::default();
            read_slow(bytes, &mut fields)
        }
    };
    let kept = |alive: bool| if alive { Ok(id) } else { Err(LeaseLost) };
    let id = match (id, &shape) {
        (Some(id), Ok(()) | Err(Shape::Odd | Shape::NotString)) => id,
        (_, Err(Shape::NotArray)) => {
            return kept(drop_entry(
                r,
                fed,
                None,
                DropReason::NotAnEntry,
                "not an array".into(),
            ))
        }
        _ => {
            return kept(drop_entry(
                r,
                fed,
                None,
                DropReason::NotAnEntry,
                "not an id and fields".into(),
            ))
        }
    };
    let Some(sid) = parse_id(id) else {
        return kept(drop_entry(
            r,
            fed,
            None,
            DropReason::NotAnEntry,
            format!("id \"{}\"", shown(id)),
        ));
    };
    let at = |what: String| format!("{what} in entry {}", shown(id));
    if let Err(shape) = shape {
        let what = match shape {
            Shape::Odd => "an odd field list",
            _ => "a field that is not a string",
        };
        return kept(drop_entry(
            r,
            fed,
            Some(sid),
            DropReason::NotAnEntry,
            at(what.into()),
        ));
    }
    let Fields { f, unknown } = fields;
    if f[0] == Some(r.own) {
        return kept(cluster::skip(r.c, r.tok, sid, true).unwrap_or(false));
    }
    if let Some(k) = unknown {
        return kept(drop_entry(
            r,
            fed,
            Some(sid),
            DropReason::UnknownField,
            at(format!("field \"{}\"", shown(k))),
        ));
    }
    let [Some(n), Some(e), Some(o), Some(s), Some(v), Some(d), h] = f else {
        let missing = ["n", "e", "o", "s", "v", "d"]
            .iter()
            .zip(f)
            .find(|(_, v)| v.is_none())
            .map_or("?", |(k, _)| *k);
        return kept(drop_entry(
            r,
            fed,
            Some(sid),
            DropReason::MissingField,
            at(format!("no field \"{missing}\"")),
        ));
    };
    let number = |b: &[u8]| {
        core::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
    };
    let (Some(epoch), Some(ordinal)) = (number(e), number(o)) else {
        return kept(drop_entry(
            r,
            fed,
            Some(sid),
            DropReason::BadField,
            at("\"e\" or \"o\" not a number".into()),
        ));
    };
    if let Some(secret) = r.secret {
        let fields = crate::wire::sign::Fields {
            node: n,
            epoch: e,
            ordinal: o,
            source: s,
            event: v,
            data: d,
        };
        if !h.is_some_and(|h| crate::wire::sign::verify(secret, &fields, h)) {
            let what = if h.is_some() {
                "a wrong HMAC"
            } else {
                "no HMAC"
            };
            return kept(drop_entry(
                r,
                fed,
                Some(sid),
                DropReason::BadHmac,
                at(format!("{what} (node \"{}\")", shown(n))),
            ));
        }
    }
    if let Err(err) = payload::check(d) {
        return kept(drop_entry(
            r,
            fed,
            Some(sid),
            DropReason::BadData,
            at(format!("\"d\" does not decode: {err}")),
        ));
    }
    let entry = Entry {
        id: sid,
        node: n,
        epoch,
        ordinal,
        source: s,
        event: v,
        unique: None,
        data: d,
    };
    let max_gap = r.secret.is_none().then_some(r.max_gap);
    match cluster::deliver(r.c, r.tok, &entry, max_gap) {
        Ok(Incoming::Delivered { lost }) => {
            fed.unwoken = true;
            if lost > 0 {
                fed.lost.push((n.to_vec(), lost));
            }
        }
        Ok(Incoming::Jumped) => {
            fed.unwoken = true;
            fed.jumps.push(n.to_vec());
        }
        Ok(Incoming::Skipped) => {}
        Ok(Incoming::Stale) => return Err(LeaseLost),
        Err(err) => {
            return kept(drop_entry(
                r,
                fed,
                None,
                DropReason::TooLarge,
                at(err.to_string()),
            ));
        }
    }
    Ok(Some(id))
}

/// Reads `chunk` of an XREAD reply; `Some(step)` when the reply is over.
fn feed_chunk(st: &mut InState, r: &Rules<'_>, chunk: &[u8], count: i64) -> Option<()> {
    st.reader.push(chunk);
    loop {
        let step = match st.reader.next() {
            Ok(s) => s,
            Err(e) => {
                st.fed.error = Some(e.to_string());
                return Some(());
            }
        };
        let bad = |st: &mut InState, what: &str| {
            st.fed.error = Some(format!("unexpected reply to XREAD: {what}"));
            Some(())
        };
        match step {
            Step::More => return None,
            Step::End => return Some(()),
            Step::Array { depth: 0, n } if n < 0 => st.fed.null = true,
            Step::Array { depth: 0, n } if n != 1 => return bad(st, "streams"),
            Step::Array { depth: 1, n } if n != 2 => return bad(st, "a stream"),
            Step::Array { depth: 2, n } if n > count => return bad(st, "more entries than asked"),
            Step::Array { .. } => {}
            Step::Scalar { depth: 0, span } => {
                let msg = match parse(st.reader.slice(span)) {
                    Ok(Some((Reply::Error(e), _))) => String::from_utf8_lossy(e).into_owned(),
                    _ => "unexpected reply to XREAD".into(),
                };
                st.fed.error = Some(msg);
                return Some(());
            }
            Step::Scalar { .. } => {}
            Step::Value(span) => {
                let InState { reader, fed } = &mut *st;
                match feed_entry(r, fed, reader.slice(span)) {
                    Err(LeaseLost) => {
                        fed.stale = true;
                        return Some(());
                    }
                    Ok(id) => {
                        fed.entries += 1;
                        if let Some(id) = id {
                            let last = fed.last.get_or_insert_with(Vec::new);
                            last.clear();
                            last.extend_from_slice(id);
                        }
                    }
                }
            }
        }
    }
}

/// Adds `cluster_feed`, `cluster_limit` and `cluster_check_reset` to `t`.
pub fn add(lua: &Lua, t: &Table) -> mlua::Result<()> {
    t.set(
        "cluster_feed",
        lua.create_function(
            |lua, (c, t, chunk, own, count): (u32, f64, Option<LuaString>, LuaString, Option<i64>)| {
                let s = |v: &str| lua.create_string(v).map(Value::String);
                let Ok(mut guard) = IN.lock() else {
                    return Ok(MultiValue::from_vec(vec![s("error")?, s("busy")?]));
                };
                let limit = crate::runtime::post::max_record(c).unwrap_or(1 << 20) as usize + FRAMING;
                let st = guard.get_or_insert_with(|| InState {
                    reader: Reader::new(3, limit),
                    fed: Fed::default(),
                });
                let Some(chunk) = chunk else {
                    st.reader.reset();
                    st.fed = Fed::default();
                    return Ok(MultiValue::new());
                };
                st.reader.expect(3, limit);
                let conf = cluster::config().ok().map(|(c, _)| c);
                let secret = conf.as_ref().and_then(|c| c.secret.as_deref()).map(str::as_bytes);
                let max_gap = conf.as_ref().map_or(u64::MAX, |c| c.maxlen.saturating_add(c.queue));
                let own = own.as_bytes();
                let rules = Rules {
                    c,
                    tok: token(t),
                    own: &own,
                    secret,
                    max_gap,
                };
                let over = feed_chunk(st, &rules, &chunk.as_bytes(), count.unwrap_or(4096));
                // One wake-up for what this chunk delivered.
                if core::mem::take(&mut st.fed.unwoken) {
                    cluster::wake_readers(c);
                }
                if over.is_none() {
                    return Ok(MultiValue::from_vec(vec![s("more")?]));
                }
                let fed = core::mem::take(&mut st.fed);
                if fed.error.is_some() || fed.stale {
                    st.reader.reset();
                }
                if let Some(e) = &fed.error {
                    return Ok(MultiValue::from_vec(vec![s("error")?, s(e)?]));
                }
                if fed.null && !fed.stale {
                    return Ok(MultiValue::from_vec(vec![s("null")?]));
                }
                let lost = lua.create_table()?;
                for (node, n) in &fed.lost {
                    lost.raw_push(lua.create_string(node)?)?;
                    lost.raw_push(*n as f64)?;
                }
                let drops = if fed.drops.iter().any(|n| *n > 0) {
                    let d = lua.create_table()?;
                    for why in DropReason::ALL {
                        let n = fed.drops[why as usize];
                        if n > 0 {
                            let e = lua.create_table_with_capacity(2, 0)?;
                            e.raw_set(1, n as f64)?;
                            e.raw_set(2, fed.detail[why as usize].clone().unwrap_or_default())?;
                            d.raw_set(why.name(), e)?;
                        }
                    }
                    Value::Table(d)
                } else {
                    Value::Nil
                };
                let jumps = if fed.jumps.is_empty() {
                    Value::Nil
                } else {
                    let j = lua.create_table()?;
                    for n in &fed.jumps {
                        j.raw_push(lua.create_string(shown(n))?)?;
                    }
                    Value::Table(j)
                };
                Ok(MultiValue::from_vec(vec![
                    s(if fed.stale { "stale" } else { "done" })?,
                    match &fed.last {
                        Some(l) => Value::String(lua.create_string(l)?),
                        None => Value::Nil,
                    },
                    Value::Integer(fed.entries as i64),
                    Value::Table(lost),
                    drops,
                    jumps,
                ]))
            },
        )?,
    )?;
    // cluster_limit(c) -> the largest stream entry read (bytes)
    t.set(
        "cluster_limit",
        lua.create_function(|_, c: u32| {
            Ok(crate::runtime::post::max_record(c).unwrap_or(1 << 20) as usize + FRAMING)
        })?,
    )?;
    t.set(
        "cluster_check_reset",
        lua.create_function(|_, (c, t, generated): (u32, f64, Option<LuaString>)| {
            let generated = match generated {
                Some(g) => match parse_id(&g.as_bytes()) {
                    Some(id) => Some(id),
                    None => return Ok(false),
                },
                None => None,
            };
            Ok(cluster::check_reset(c, token(t), generated).unwrap_or(false))
        })?,
    )?;
    Ok(())
}
