//! The native table every preloaded package gets as its chunk argument.
//!
//! Each function checks what it is given (the Lua layer already raised for
//! programming errors) and reports runtime failures as `nil, err`. None of
//! them runs Lua code while holding the zone lock or the per-process state.
//!
//! | field | what |
//! |---|---|
//! | `open(zone, in_init, agent, stream)` | `consumer, zone_name` / `nil, err` (a dict name or `""` maps to the default zone; refused in init_by_lua and outside workers, except the privileged agent with `agent`; `stream`: the caller is stream-lua's) |
//! | `close(consumer)` | forgets the consumer |
//! | `post`, `fetch` | per event, see `bus` |
//! | `claim(consumer, unique, ttl_s, seq, api_tag)` | `true` / `false, owner_pid` / `false` (no room: nobody runs it); per API tag; a record this worker claimed through another consumer of that API is `true` again |
//! | `status(zone)` | the status endpoint's snapshot of that zone as a table / `nil, err` |
//! | `handler_error(consumer)` | counts a handler that raised (status endpoint) |
//! | `at_exit(consumer, source, event)` | posts that event when the worker exits |
//! | `stats(consumer)` | table of zone and consumer counters / nil |
//! | `pid()`, `now_us()` | this process' pid, CLOCK_MONOTONIC in µs |
//! | `FETCH_EVENT`, `FETCH_LOST`, `FETCH_BAD` | `fetch` result kinds |
//! | `POST_DEDUP`, `POST_OWN`, `POST_CLUSTER`, `POST_HOLD` | `post` flags |
//! | `CDEF` | the `ffi.cdef` of `exports` |
//! | `LOG_PREFIX` | the prefix of the module's own log lines |
//! | `manager_*` | lifecycle tracking, see `manager` |
//! | `tasks_*` | interval task windows, see `tasks` |
//! | `cluster_*` | the Redis bridge, see `cluster` |
//! | `COMPAT` | `worker_events_compat` for this process: `"1.x"` or `"2.x"` |

pub mod bus;
mod cluster;
mod cluster_feed;
mod cluster_replies;
mod convert;
mod manager;
mod tasks;

use mlua::{Lua, LuaString, MultiValue, Table, Value};

use crate::ngx::lua_module::Subsystem;
use crate::ngx::process::{self, NgxProcess};
use crate::runtime::consumer;
use crate::zone::claims::ClaimOutcome;

/// Builds the native table.
pub fn create(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("open", lua.create_function(open)?)?;
    t.set(
        "close",
        lua.create_function(|_, id: u32| {
            consumer::close(id);
            Ok(())
        })?,
    )?;
    // SAFETY: both follow the lua_CFunction protocol and never unwind a panic.
    unsafe {
        t.set("post", lua.create_c_function(bus::post)?)?;
        t.set("decode", lua.create_c_function(bus::decode)?)?;
    }
    t.set("claim", lua.create_function(claim)?)?;
    t.set("status", lua.create_function(status)?)?;
    t.set(
        "handler_error",
        lua.create_function(|_, id: u32| {
            crate::runtime::counters::count_handler_error(id);
            Ok(())
        })?,
    )?;
    t.set("at_exit", lua.create_function(at_exit)?)?;
    t.set("stats", lua.create_function(stats)?)?;
    t.set("pid", lua.create_function(|_, ()| Ok(process::pid()))?)?;
    t.set(
        "now_us",
        lua.create_function(|_, ()| Ok(crate::ngx::monotonic_us() as f64))?,
    )?;
    t.set("POST_FFI_SEQ", bus::POST_FFI_SEQ)?;
    t.set("POST_FFI_DUPLICATE", bus::POST_FFI_DUPLICATE)?;
    t.set("POST_FFI_ERR", bus::POST_FFI_ERR)?;
    t.set("FETCH_EVENT", bus::FETCH_EVENT)?;
    t.set("FETCH_LOST", bus::FETCH_LOST)?;
    t.set("FETCH_BAD", bus::FETCH_BAD)?;
    t.set("POST_DEDUP", bus::POST_DEDUP)?;
    t.set("POST_OWN", bus::POST_OWN)?;
    t.set("POST_CLUSTER", bus::POST_CLUSTER)?;
    t.set("POST_HOLD", bus::POST_HOLD)?;
    t.set("CDEF", crate::lua::exports::CDEF)?;
    t.set("LOG_PREFIX", crate::ngx::log::PREFIX)?;
    manager::add(lua, &t)?;
    tasks::add(lua, &t)?;
    cluster::add(lua, &t)?;
    // The master loads packages in init_by_lua* while parsing; every other
    // process was forked from a committed cycle.
    let committed = !matches!(
        NgxProcess::current(),
        NgxProcess::Master | NgxProcess::Single
    );
    t.set(
        "COMPAT",
        crate::published::settings(committed).compat.as_str(),
    )?;
    Ok(t)
}

fn open(
    lua: &Lua,
    (name, in_init, agent, stream): (LuaString, Option<bool>, Option<bool>, Option<bool>),
) -> mlua::Result<MultiValue> {
    let name = name.to_str()?.to_string();
    let subsystem = Subsystem::from_stream(stream.unwrap_or(false));
    Ok(
        match consumer::open(
            &name,
            in_init.unwrap_or(false),
            agent.unwrap_or(false),
            subsystem,
        ) {
            Ok(o) => MultiValue::from_vec(vec![
                Value::Integer(o.id as _),
                Value::String(lua.create_string(&o.zone)?),
            ]),
            Err(e) => convert::nil_err(lua, e)?,
        },
    )
}

/// `serde_json` value to Lua (null: nil).
fn json_to_lua(lua: &Lua, v: &serde_json::Value) -> mlua::Result<Value> {
    use serde_json::Value as J;
    Ok(match v {
        J::Null => Value::Nil,
        J::Bool(b) => Value::Boolean(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i as _),
            None => Value::Number(n.as_f64().unwrap_or(0.0)),
        },
        J::String(s) => Value::String(lua.create_string(s)?),
        J::Array(a) => {
            let t = lua.create_table()?;
            for (i, x) in a.iter().enumerate() {
                t.raw_set(i + 1, json_to_lua(lua, x)?)?;
            }
            Value::Table(t)
        }
        J::Object(o) => {
            let t = lua.create_table()?;
            for (k, x) in o {
                t.raw_set(k.as_str(), json_to_lua(lua, x)?)?;
            }
            Value::Table(t)
        }
    })
}

fn status(lua: &Lua, zone: LuaString) -> mlua::Result<MultiValue> {
    let name = zone.to_str()?.to_string();
    Ok(match crate::runtime::report::document(&name) {
        Ok(doc) => MultiValue::from_vec(vec![json_to_lua(lua, &doc)?]),
        Err(e) => convert::nil_err(lua, e)?,
    })
}

fn claim(
    _: &Lua,
    (id, unique, ttl, seq, tag): (u32, LuaString, f64, f64, Option<LuaString>),
) -> mlua::Result<(bool, Option<i32>)> {
    let ttl_ms = convert::secs_to_ms(ttl);
    let tag = tag.map(|t| t.as_bytes().to_vec()).unwrap_or_default();
    Ok(
        match crate::runtime::claim::claim(id, &tag, &unique.as_bytes(), ttl_ms, seq as u64) {
            ClaimOutcome::Mine => (true, None),
            ClaimOutcome::Taken(pid) => (false, Some(pid)),
            ClaimOutcome::Full => (false, None),
        },
    )
}

fn at_exit(_: &Lua, (id, source, event): (u32, LuaString, LuaString)) -> mlua::Result<bool> {
    Ok(consumer::post_at_exit(
        id,
        &source.as_bytes(),
        &event.as_bytes(),
    ))
}

fn stats(lua: &Lua, id: u32) -> mlua::Result<Value> {
    let Some(s) = consumer::stats(id) else {
        return Ok(Value::Nil);
    };
    let z = &s.zone;
    let t = lua.create_table()?;
    t.set("zone", s.zone_name.as_str())?;
    t.set("head", z.head as f64)?;
    t.set("tail", z.tail as f64)?;
    t.set("next_seq", z.next_seq as f64)?;
    t.set("posted", z.posted as f64)?;
    t.set("evicted", z.evicted as f64)?;
    t.set("log_size", z.log_size as f64)?;
    t.set("max_record", z.max_record as f64)?;
    t.set("generation", z.generation as f64)?;
    t.set("cursor", s.cursor as f64)?;
    t.set("lost", s.lost as f64)?;
    t.set("slot", s.slot.map(|s| s as i64))?;
    t.set("push", s.push)?;
    t.set("workers", z.workers.len())?;
    t.set("claims_capacity", z.claims_capacity as f64)?;
    t.set("claims_refused", z.claims_refused as f64)?;
    Ok(Value::Table(t))
}
