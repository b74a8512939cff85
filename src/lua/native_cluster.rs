//! The native table's `cluster_*` functions, for the Lua bridge
//! (`ngx_worker_events.cluster`, see `crate::runtime::cluster`). Stream ids
//! and epochs cross as strings (they do not fit a double).

use mlua::{Lua, LuaString, MultiValue, Table, Value};

use crate::resp::Reply;
use crate::runtime::cluster::{self, Entry, Incoming};
use crate::zone::cluster::parse_id;

fn fail(lua: &Lua, e: impl ToString) -> mlua::Result<MultiValue> {
    Ok(MultiValue::from_vec(vec![
        Value::Nil,
        Value::String(lua.create_string(e.to_string())?),
    ]))
}

fn one(v: Value) -> mlua::Result<MultiValue> {
    Ok(MultiValue::from_vec(vec![v]))
}

fn token(t: f64) -> u64 {
    t.clamp(0.0, 9e15) as u64
}

/// The XREAD reply read so far (this worker's bridge reads one at a time).
static FEED: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

/// What one whole XREAD reply did.
#[derive(Default)]
struct Fed {
    last: Option<Vec<u8>>,
    entries: usize,
    /// (node, count) per gap.
    lost: Vec<(Vec<u8>, u64)>,
    /// Entries that could not be delivered, and why (the last one).
    failed: usize,
    why: Option<String>,
    stale: bool,
}

/// Delivers the entries of a parsed XREAD reply (see `cluster.lua`'s in loop).
fn feed_entries(c: u32, tok: u64, own: &[u8], entries: &[Reply<'_>]) -> Fed {
    let mut fed = Fed::default();
    for e in entries {
        let Reply::Array(Some(parts)) = e else {
            continue;
        };
        let (Some(Reply::Bulk(Some(id))), Some(kv)) = (parts.first(), parts.get(1)) else {
            continue;
        };
        let Some(sid) = parse_id(id) else { continue };
        let mut f: [Option<&[u8]>; 6] = [None; 6];
        if let Reply::Array(Some(kv)) = kv {
            for pair in kv.chunks(2) {
                if let [Reply::Bulk(Some(k)), Reply::Bulk(Some(v))] = pair {
                    let slot = match *k {
                        b"n" => 0,
                        b"e" => 1,
                        b"o" => 2,
                        b"s" => 3,
                        b"v" => 4,
                        b"d" => 5,
                        _ => continue,
                    };
                    f[slot] = Some(v);
                }
            }
        }
        let number = |b: Option<&[u8]>| {
            b.and_then(|b| core::str::from_utf8(b).ok())
                .and_then(|s| s.parse::<u64>().ok())
        };
        let ok = match f {
            [Some(n), ..] if n == own => cluster::skip(c, tok, sid, true).unwrap_or(false),
            [Some(n), Some(_), Some(_), Some(s), Some(v), Some(d)] => {
                let entry = Entry {
                    id: sid,
                    node: n,
                    epoch: number(f[1]).unwrap_or(0),
                    ordinal: number(f[2]).unwrap_or(0),
                    source: s,
                    event: v,
                    unique: None,
                    data: d,
                };
                match cluster::deliver(c, tok, &entry) {
                    Ok(Incoming::Delivered { lost }) => {
                        if lost > 0 {
                            fed.lost.push((n.to_vec(), lost));
                        }
                        true
                    }
                    Ok(Incoming::Skipped) => true,
                    Ok(Incoming::Stale) => false,
                    Err(err) => {
                        fed.failed += 1;
                        fed.why = Some(err.to_string());
                        true
                    }
                }
            }
            _ => {
                fed.failed += 1;
                fed.why = Some("a stream entry that is not a cluster event".into());
                cluster::skip(c, tok, sid, false).unwrap_or(false)
            }
        };
        if !ok {
            fed.stale = true;
            break;
        }
        fed.entries += 1;
        fed.last = Some(id.to_vec());
    }
    fed
}

/// Adds the `cluster_*` functions to the native table `t`.
pub fn add(lua: &Lua, t: &Table) -> mlua::Result<()> {
    t.set(
        "cluster_config",
        lua.create_function(|lua, ()| {
            let (c, zone) = match cluster::config() {
                Ok(c) => c,
                Err(e) => return fail(lua, e),
            };
            let r = lua.create_table()?;
            r.set("host", c.host)?;
            r.set("port", c.port)?;
            r.set("db", c.db)?;
            r.set("password", c.password)?;
            r.set("tls", c.tls)?;
            r.set("stream", c.stream)?;
            r.set("maxlen", c.maxlen)?;
            r.set("node", c.node)?;
            r.set("zone", zone)?;
            r.set("queue", c.queue)?;
            r.set("timeout", c.timeout_ms)?;
            one(Value::Table(r))
        })?,
    )?;
    t.set(
        "cluster_bridge",
        lua.create_function(|_, c: u32| Ok(cluster::mark_bridge(c)))?,
    )?;
    // cluster_take(c) -> token | false
    t.set(
        "cluster_take",
        lua.create_function(|lua, c: u32| match cluster::take(c) {
            Ok(Some(t)) => one(Value::Number(t as f64)),
            Ok(None) => one(Value::Boolean(false)),
            Err(e) => fail(lua, e),
        })?,
    )?;
    t.set(
        "cluster_renew",
        lua.create_function(|_, (c, t): (u32, f64)| {
            Ok(cluster::renew(c, token(t)).unwrap_or(false))
        })?,
    )?;
    t.set(
        "cluster_holds",
        lua.create_function(|_, (c, t): (u32, f64)| {
            Ok(cluster::holds(c, token(t)).unwrap_or(false))
        })?,
    )?;
    t.set(
        "cluster_release",
        lua.create_function(|_, (c, t): (u32, f64)| Ok(cluster::release(c, token(t)).is_ok()))?,
    )?;
    t.set(
        "cluster_rewind",
        lua.create_function(|_, c: u32| Ok(cluster::rewind(c).is_ok()))?,
    )?;
    // cluster_out(c, max, stream, node, maxlen, epoch)
    //   -> n, payload, held, last_ordinal, lost
    // `payload`: n commands in RESP (XADD per event, SET NX PX per held
    // unique event); `held[i]` = { source, event, unique, data, ttl_ms } for
    // the held ones (the i-th reply decides them)
    t.set(
        "cluster_out",
        lua.create_function(
            |lua,
             (c, max, stream, node, maxlen, epoch): (
                u32,
                usize,
                LuaString,
                LuaString,
                f64,
                LuaString,
            )| {
                let (items, last, lost) = match cluster::next_out(c, max.clamp(1, 4096)) {
                    Ok(r) => r,
                    Err(e) => return fail(lua, e),
                };
                let (stream, node, epoch) = (stream.as_bytes(), node.as_bytes(), epoch.as_bytes());
                let st = crate::resp::Stream {
                    stream: &stream,
                    maxlen: maxlen.clamp(1.0, 9e15) as u64,
                    node: &node,
                    epoch: &epoch,
                };
                let mut payload = Vec::with_capacity(items.len() * 160);
                let held = lua.create_table()?;
                for (i, it) in items.iter().enumerate() {
                    match (it.hold, &it.unique) {
                        (Some(ttl), Some(u)) => {
                            st.unique_claim(&mut payload, u, ttl);
                            let e = lua.create_table_with_capacity(5, 0)?;
                            e.raw_set(1, lua.create_string(&it.source)?)?;
                            e.raw_set(2, lua.create_string(&it.event)?)?;
                            e.raw_set(3, lua.create_string(u)?)?;
                            e.raw_set(4, lua.create_string(&it.data)?)?;
                            e.raw_set(5, ttl as f64)?;
                            held.raw_set(i + 1, e)?;
                        }
                        _ => st.xadd(&mut payload, it.ordinal, &it.source, &it.event, &it.data),
                    }
                }
                Ok(MultiValue::from_vec(vec![
                    Value::Integer(items.len() as i64),
                    Value::String(lua.create_string(&payload)?),
                    Value::Table(held),
                    Value::Number(last as f64),
                    Value::Number(lost as f64),
                ]))
            },
        )?,
    )?;
    t.set(
        "cluster_ack",
        lua.create_function(|_, (c, t, acked, sent): (u32, f64, f64, f64)| {
            Ok(cluster::ack(c, token(t), token(acked), token(sent)).unwrap_or(false))
        })?,
    )?;
    // cluster_feed(c, token, chunk, own_node) -> "more"
    //   | "done", last_id|nil, entries, { node, lost, ... }, failed, why|nil
    //   | "null" (XREAD BLOCK timed out) | "stale" (lease lost) | "error", msg
    // Parses the XREAD reply as it arrives and delivers its entries natively.
    t.set(
        "cluster_feed",
        lua.create_function(
            |lua, (c, t, chunk, own): (u32, f64, Option<LuaString>, LuaString)| {
                let s = |v: &str| lua.create_string(v).map(Value::String);
                let Ok(mut buf) = FEED.lock() else {
                    return Ok(MultiValue::from_vec(vec![s("error")?, s("busy")?]));
                };
                let Some(chunk) = chunk else {
                    buf.clear();
                    return Ok(MultiValue::new());
                };
                buf.extend_from_slice(&chunk.as_bytes());
                let parsed = match crate::resp::parse(&buf) {
                    Ok(None) => return one(s("more")?),
                    Ok(Some((r, _))) => Ok(r),
                    Err(_) => Err("a reply that is not RESP"),
                };
                let own = own.as_bytes();
                let out = match parsed {
                    Err(e) => vec![s("error")?, s(e)?],
                    Ok(Reply::Array(None)) => vec![s("null")?],
                    Ok(Reply::Error(e)) => vec![s("error")?, s(&String::from_utf8_lossy(e))?],
                    Ok(Reply::Array(Some(streams))) => {
                        let entries = match streams.first() {
                            Some(Reply::Array(Some(st))) => match st.get(1) {
                                Some(Reply::Array(Some(e))) => e.as_slice(),
                                _ => &[],
                            },
                            _ => &[],
                        };
                        let fed = feed_entries(c, token(t), &own, entries);
                        let lost = lua.create_table()?;
                        for (node, n) in &fed.lost {
                            lost.raw_push(lua.create_string(node)?)?;
                            lost.raw_push(*n as f64)?;
                        }
                        let last = match &fed.last {
                            Some(l) => Value::String(lua.create_string(l)?),
                            None => Value::Nil,
                        };
                        let why = match &fed.why {
                            Some(w) => s(w)?,
                            None => Value::Nil,
                        };
                        vec![
                            s(if fed.stale { "stale" } else { "done" })?,
                            last,
                            Value::Integer(fed.entries as i64),
                            Value::Table(lost),
                            Value::Integer(fed.failed as i64),
                            why,
                        ]
                    }
                    Ok(_) => vec![s("error")?, s("unexpected reply to XREAD")?],
                };
                buf.clear();
                Ok(MultiValue::from_vec(out))
            },
        )?,
    )?;
    // cluster_xread(stream, last_id, count, block_ms) -> the command in RESP
    t.set(
        "cluster_xread",
        lua.create_function(
            |lua, (stream, last, count, block): (LuaString, LuaString, u32, u32)| {
                let mut out = Vec::with_capacity(96);
                let (count, block) = (count.to_string(), block.to_string());
                crate::resp::command(
                    &mut out,
                    &[
                        b"XREAD",
                        b"COUNT",
                        count.as_bytes(),
                        b"BLOCK",
                        block.as_bytes(),
                        b"STREAMS",
                        &stream.as_bytes(),
                        &last.as_bytes(),
                    ],
                );
                lua.create_string(&out)
            },
        )?,
    )?;
    t.set(
        "cluster_skip",
        lua.create_function(|_, (c, t, id, own): (u32, f64, LuaString, bool)| {
            let Some(sid) = parse_id(&id.as_bytes()) else {
                return Ok(false);
            };
            Ok(cluster::skip(c, token(t), sid, own).unwrap_or(false))
        })?,
    )?;
    t.set(
        "cluster_last_id",
        lua.create_function(|_, c: u32| {
            Ok(cluster::last_id(c)
                .ok()
                .flatten()
                .map(|(ms, seq)| format!("{ms}-{seq}")))
        })?,
    )?;
    t.set(
        "cluster_epoch",
        lua.create_function(|_, c: u32| Ok(cluster::epoch(c).ok().map(|e| e.to_string())))?,
    )?;
    t.set(
        "cluster_state",
        lua.create_function(|_, (c, up, lag): (u32, bool, Option<f64>)| {
            let lag = lag.map(|l| l.clamp(0.0, 9e15) as u64);
            Ok(cluster::set_state(c, up, lag).is_ok())
        })?,
    )?;
    t.set(
        "cluster_count",
        lua.create_function(|_, (c, name, n): (u32, String, Option<f64>)| {
            Ok(cluster::count(c, &name, token(n.unwrap_or(1.0))).unwrap_or(false))
        })?,
    )?;
    // cluster_post_won(c, source, event, unique, ttl_s, data) -> true | nil, err
    t.set(
        "cluster_post_won",
        lua.create_function(
            |lua,
             (c, source, event, unique, ttl, data): (
                u32,
                LuaString,
                LuaString,
                LuaString,
                f64,
                LuaString,
            )| {
                let ttl_ms = (ttl * 1000.0).clamp(1.0, 1e12) as u64;
                match cluster::post_won(
                    c,
                    &source.as_bytes(),
                    &event.as_bytes(),
                    &unique.as_bytes(),
                    ttl_ms,
                    &data.as_bytes(),
                ) {
                    Ok(()) => one(Value::Boolean(true)),
                    Err(e) => fail(lua, e),
                }
            },
        )?,
    )?;
    Ok(())
}
