//! The native table's `cluster_*` functions, for the Lua bridge
//! (`ngx_worker_events.cluster`, see `crate::runtime::cluster`). Stream ids
//! and epochs cross as strings (they do not fit a double).

use mlua::{Lua, LuaString, MultiValue, Table, Value};

use super::convert::{nil_err, secs_to_ms};
use crate::runtime::cluster;
use crate::zone::cluster::parse_id;

fn one(v: Value) -> mlua::Result<MultiValue> {
    Ok(MultiValue::from_vec(vec![v]))
}

/// A held cluster unique event, copied out of the log (see `cluster_out`).
struct Held {
    source: Vec<u8>,
    event: Vec<u8>,
    unique: Vec<u8>,
    data: Vec<u8>,
    ttl: u64,
}

impl Held {
    fn copy(v: &crate::zone::record::RecordView<'_>, unique: &[u8], ttl: u64) -> Self {
        Held {
            source: v.source.to_vec(),
            event: v.event.to_vec(),
            unique: unique.to_vec(),
            data: v.data.to_vec(),
            ttl,
        }
    }
}

fn token(t: f64) -> u64 {
    t.clamp(0.0, 9e15) as u64
}

/// Adds the `cluster_*` functions to the native table `t`.
pub fn add(lua: &Lua, t: &Table) -> mlua::Result<()> {
    t.set(
        "cluster_config",
        lua.create_function(|lua, ()| {
            let (c, zone) = match cluster::config() {
                Ok(c) => c,
                Err(e) => return nil_err(lua, e),
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
            r.set("secret", c.secret.is_some())?;
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
            Err(e) => nil_err(lua, e),
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
                let (stream, node, epoch) = (stream.as_bytes(), node.as_bytes(), epoch.as_bytes());
                let secret = cluster::config().ok().and_then(|(c, _)| c.secret);
                let st = crate::wire::resp::Stream::new(
                    &stream,
                    maxlen.clamp(1.0, 9e15) as u64,
                    &node,
                    &epoch,
                    secret.as_deref().map(str::as_bytes),
                );
                let mut payload = Vec::with_capacity(16 * 1024);
                // the held ones (cluster unique events: rare) are copied out,
                // to become Lua tables once the runtime is no longer borrowed
                let mut held: Vec<(usize, Held)> = Vec::new();
                let mut i = 0;
                let next = cluster::next_out(c, max.clamp(1, 4096), |ordinal, v| {
                    i += 1;
                    match (v.hold, v.unique) {
                        (Some(ttl), Some(u)) => {
                            st.unique_claim(&mut payload, u, ttl);
                            held.push((i, Held::copy(v, u, ttl)));
                        }
                        _ => st.xadd(&mut payload, ordinal, v.source, v.event, v.data),
                    }
                });
                let (n, last, lost) = match next {
                    Ok(r) => r,
                    Err(e) => return nil_err(lua, e),
                };
                let t = lua.create_table()?;
                for (i, h) in held {
                    let e = lua.create_table_with_capacity(5, 0)?;
                    e.raw_set(1, lua.create_string(&h.source)?)?;
                    e.raw_set(2, lua.create_string(&h.event)?)?;
                    e.raw_set(3, lua.create_string(&h.unique)?)?;
                    e.raw_set(4, lua.create_string(&h.data)?)?;
                    e.raw_set(5, h.ttl as f64)?;
                    t.raw_set(i, e)?;
                }
                Ok(MultiValue::from_vec(vec![
                    Value::Integer(n as i64),
                    Value::String(lua.create_string(&payload)?),
                    Value::Table(t),
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
    // cluster_xread(stream, last_id, count, block_ms) -> the command in RESP
    t.set(
        "cluster_xread",
        lua.create_function(
            |lua, (stream, last, count, block): (LuaString, LuaString, u32, u32)| {
                let mut out = Vec::with_capacity(96);
                let (count, block) = (count.to_string(), block.to_string());
                crate::wire::resp::command(
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
    // cluster_state(c, tok, "out"|"in"|"both", up, lag_ms?): false when
    // `tok` is not the live lease (nothing changed)
    t.set(
        "cluster_state",
        lua.create_function(
            |_, (c, t, dir, up, lag): (u32, f64, String, bool, Option<f64>)| {
                use crate::zone::cluster::{IN_UP, OUT_UP};
                let bits = match dir.as_str() {
                    "out" => OUT_UP,
                    "in" => IN_UP,
                    _ => OUT_UP | IN_UP,
                };
                let lag = lag.map(|l| l.clamp(0.0, 9e15) as u64);
                Ok(cluster::set_state(c, token(t), bits, up, lag).unwrap_or(false))
            },
        )?,
    )?;
    // cluster_command(arg, ...) -> the command in RESP
    t.set(
        "cluster_command",
        lua.create_function(|lua, args: mlua::Variadic<LuaString>| {
            let owned: Vec<_> = args.iter().map(|a| a.as_bytes().to_vec()).collect();
            let refs: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
            let mut out = Vec::with_capacity(64);
            crate::wire::resp::command(&mut out, &refs);
            lua.create_string(&out)
        })?,
    )?;
    crate::lua::native::cluster_feed::add(lua, t)?;
    crate::lua::native::cluster_replies::add(lua, t)?;
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
                let ttl_ms = secs_to_ms(ttl);
                match cluster::post_won(
                    c,
                    &source.as_bytes(),
                    &event.as_bytes(),
                    &unique.as_bytes(),
                    ttl_ms,
                    &data.as_bytes(),
                ) {
                    Ok(()) => one(Value::Boolean(true)),
                    Err(e) => nil_err(lua, e),
                }
            },
        )?,
    )?;
    Ok(())
}
