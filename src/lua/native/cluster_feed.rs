//! The cluster bridge's reading of Redis replies, for `cluster.lua`: the
//! `XREAD` reply read as it arrives, each stream entry checked (fields,
//! HMAC, payload) and delivered or dropped and counted as soon as it is
//! whole; and the replies of the other commands (`XADD` batches, `XINFO`,
//! `XREVRANGE`) as Lua values. Both go through `resp_reader::Reader`:
//! linear in the bytes received, and holding one value at a time, at most
//! the zone's largest record plus framing (issue 21).
//!
//! - `cluster_feed(c, token, chunk|nil, own_node, count)` -> `"more"`
//!   | `"done", last_id|nil, entries, { node, lost, ... }, drops|nil, jumps|nil`
//!   | `"null"` (XREAD BLOCK timed out) | `"stale"` (lease lost) | `"error", msg`;
//!   `drops`: `{ [reason] = { n, detail } }`; `jumps`: `{ node, ... }`.
//!   A nil chunk forgets a partial reply and frees the buffer.
//! - `cluster_read("in"|"out", chunk|nil, n, limit)` -> `"more"` | `{ n values }`
//!   | nil, err. Values: strings (status, bulk), numbers, `false` (null),
//!   `{ false, msg }` (error reply), tables (arrays).
//! - `cluster_limit(c)` -> the largest entry accepted (bytes).
//! - `cluster_check_reset(c, token, last_generated_id|nil)` -> true when
//!   the stream was found reset (reading starts again at its beginning).

use std::sync::Mutex;

use mlua::{Lua, LuaString, MultiValue, Table, Value};

use crate::runtime::cluster::{self, Entry, Incoming};
use crate::wire::payload;
use crate::wire::resp::{parse, Reply};
use crate::wire::resp_reader::{Reader, Step};
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
/// The sending connection's reader and the replies read so far.
static OUT: Mutex<Option<(Reader, Vec<Vec<u8>>)>> = Mutex::new(None);
/// The reading connection's replies to other commands (XINFO, XREVRANGE).
static IN_CMD: Mutex<Option<(Reader, Vec<Vec<u8>>)>> = Mutex::new(None);

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

/// Checks and delivers one whole entry (its bytes); false when the lease is lost.
fn feed_entry(r: &Rules<'_>, fed: &mut Fed, bytes: &[u8]) -> bool {
    let parts = match parse(bytes) {
        Ok(Some((Reply::Array(Some(parts)), _))) => parts,
        _ => return drop_entry(r, fed, None, DropReason::NotAnEntry, "not an array".into()),
    };
    let (Some(Reply::Bulk(Some(id))), Some(Reply::Array(Some(kv))), 2) =
        (parts.first(), parts.get(1), parts.len())
    else {
        return drop_entry(
            r,
            fed,
            None,
            DropReason::NotAnEntry,
            "not an id and fields".into(),
        );
    };
    let Some(sid) = parse_id(id) else {
        return drop_entry(
            r,
            fed,
            None,
            DropReason::NotAnEntry,
            format!("id \"{}\"", shown(id)),
        );
    };
    let at = |what: String| format!("{what} in entry {}", shown(id));
    if kv.len() % 2 != 0 {
        return drop_entry(
            r,
            fed,
            Some(sid),
            DropReason::NotAnEntry,
            at("an odd field list".into()),
        );
    }
    // n e o s v d h
    let mut f: [Option<&[u8]>; 7] = [None; 7];
    let mut unknown = None;
    for pair in kv.chunks(2) {
        let [Reply::Bulk(Some(k)), Reply::Bulk(Some(v))] = pair else {
            return drop_entry(
                r,
                fed,
                Some(sid),
                DropReason::NotAnEntry,
                at("a field that is not a string".into()),
            );
        };
        let slot = match *k {
            b"n" => 0,
            b"e" => 1,
            b"o" => 2,
            b"s" => 3,
            b"v" => 4,
            b"d" => 5,
            b"h" => 6,
            _ => {
                unknown.get_or_insert(*k);
                continue;
            }
        };
        f[slot] = Some(v);
    }
    if f[0] == Some(r.own) {
        return cluster::skip(r.c, r.tok, sid, true).unwrap_or(false);
    }
    if let Some(k) = unknown {
        return drop_entry(
            r,
            fed,
            Some(sid),
            DropReason::UnknownField,
            at(format!("field \"{}\"", shown(k))),
        );
    }
    let [Some(n), Some(e), Some(o), Some(s), Some(v), Some(d), h] = f else {
        let missing = ["n", "e", "o", "s", "v", "d"]
            .iter()
            .zip(f)
            .find(|(_, v)| v.is_none())
            .map_or("?", |(k, _)| *k);
        return drop_entry(
            r,
            fed,
            Some(sid),
            DropReason::MissingField,
            at(format!("no field \"{missing}\"")),
        );
    };
    let number = |b: &[u8]| {
        core::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
    };
    let (Some(epoch), Some(ordinal)) = (number(e), number(o)) else {
        return drop_entry(
            r,
            fed,
            Some(sid),
            DropReason::BadField,
            at("\"e\" or \"o\" not a number".into()),
        );
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
            return drop_entry(
                r,
                fed,
                Some(sid),
                DropReason::BadHmac,
                at(format!("{what} (node \"{}\")", shown(n))),
            );
        }
    }
    if let Err(err) = payload::check(d) {
        return drop_entry(
            r,
            fed,
            Some(sid),
            DropReason::BadData,
            at(format!("\"d\" does not decode: {err}")),
        );
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
        Ok(Incoming::Stale) => return false,
        Err(err) => {
            return drop_entry(r, fed, None, DropReason::TooLarge, at(err.to_string()));
        }
    }
    true
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
                let bytes = st.reader.slice(span);
                let id = match parse(bytes) {
                    Ok(Some((Reply::Array(Some(p)), _))) => match p.first() {
                        Some(Reply::Bulk(Some(id))) => Some(id.to_vec()),
                        _ => None,
                    },
                    _ => None,
                };
                let bytes = bytes.to_vec();
                if !feed_entry(r, &mut st.fed, &bytes) {
                    st.fed.stale = true;
                    return Some(());
                }
                st.fed.entries += 1;
                if id.is_some() {
                    st.fed.last = id;
                }
            }
        }
    }
}

fn values(lua: &Lua, r: &Reply<'_>) -> mlua::Result<Value> {
    Ok(match r {
        Reply::Status(s) | Reply::Bulk(Some(s)) => Value::String(lua.create_string(s)?),
        Reply::Bulk(None) | Reply::Array(None) => Value::Boolean(false),
        Reply::Int(i) => Value::Number(*i as f64),
        Reply::Error(e) => {
            let t = lua.create_table_with_capacity(2, 0)?;
            t.raw_set(1, false)?;
            t.raw_set(2, lua.create_string(e)?)?;
            Value::Table(t)
        }
        Reply::Array(Some(items)) => {
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, it) in items.iter().enumerate() {
                t.raw_set(i + 1, values(lua, it)?)?;
            }
            Value::Table(t)
        }
    })
}

fn err(lua: &Lua, msg: &str) -> mlua::Result<MultiValue> {
    Ok(MultiValue::from_vec(vec![
        Value::Nil,
        Value::String(lua.create_string(msg)?),
    ]))
}

/// Adds `cluster_feed`, `cluster_read` and `cluster_check_reset` to `t`.
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
    t.set(
        "cluster_read",
        lua.create_function(
            |lua,
             (which, chunk, n, limit): (
                String,
                Option<LuaString>,
                Option<usize>,
                Option<usize>,
            )| {
                let stat = if which == "in" { &IN_CMD } else { &OUT };
                let Ok(mut guard) = stat.lock() else {
                    return err(lua, "busy");
                };
                let limit = limit.unwrap_or(64 * 1024);
                let (reader, done) =
                    guard.get_or_insert_with(|| (Reader::new(0, limit), Vec::new()));
                let Some(chunk) = chunk else {
                    reader.reset();
                    *done = Vec::new();
                    return Ok(MultiValue::new());
                };
                let n = n.unwrap_or(1).max(1);
                if done.is_empty() {
                    reader.expect(0, limit);
                }
                reader.push(&chunk.as_bytes());
                while done.len() < n {
                    match reader.next() {
                        Ok(Step::More) => {
                            return Ok(MultiValue::from_vec(vec![Value::String(
                                lua.create_string("more")?,
                            )]))
                        }
                        Ok(Step::Value(span)) => done.push(reader.slice(span).to_vec()),
                        Ok(_) => {}
                        Err(e) => {
                            reader.reset();
                            *done = Vec::new();
                            return err(lua, &e.to_string());
                        }
                    }
                }
                let out = lua.create_table_with_capacity(n, 0)?;
                for (i, bytes) in done.iter().enumerate() {
                    let v = match parse(bytes) {
                        Ok(Some((r, _))) => values(lua, &r)?,
                        _ => Value::Boolean(false),
                    };
                    out.raw_set(i + 1, v)?;
                }
                *done = Vec::new();
                Ok(MultiValue::from_vec(vec![Value::Table(out)]))
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
