//! Native functions behind the Lua modules (the `core` table).
//!
//! `post` and `fetch` live in `hot.rs` (raw C API, per event); the rest here
//! use mlua. Each function validates what it is given (the Lua layer already raised
//! for programming errors) and reports runtime failures as `nil, err`. None
//! of them runs Lua code while holding the zone lock or the worker state.
//!
//! | function | returns |
//! |---|---|
//! | `attach(zone)` | `true` (first attach) / `false` (already) / `nil, err` |
//! | `post(source, event, data, unique?)` | `seq` / `nil, reason` |
//! | `fetch()` | `nil` (nothing) / `1, source, event, data, pid, unique?, seq` / `2, lost` / `3, reason, seq` |
//! | `claim(unique, ttl_s)` | `true` / `false, owner_pid` |
//! | `stats()` | table of zone counters |
//! | `now_us()` | CLOCK_MONOTONIC in microseconds |

use mlua::{Lua, LuaString, MultiValue, Table, Value};

use crate::worker::{self, AttachError};
use crate::zone::claims::ClaimOutcome;

/// Builds the `core` table.
pub fn create(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("attach", lua.create_function(attach)?)?;
    // The per-event functions are raw lua_CFunctions (see `hot`).
    // SAFETY: both follow the lua_CFunction protocol and never unwind a panic.
    unsafe {
        t.set("post", lua.create_c_function(super::hot::post)?)?;
        t.set("fetch", lua.create_c_function(super::hot::fetch)?)?;
    }
    t.set("claim", lua.create_function(claim)?)?;
    t.set("stats", lua.create_function(stats)?)?;
    t.set(
        "now_us",
        lua.create_function(|_, ()| Ok(crate::util::monotonic_us() as f64))?,
    )?;
    t.set("pid", lua.create_function(|_, ()| Ok(worker::pid()))?)?;
    Ok(t)
}

fn nil_err(lua: &Lua, msg: impl AsRef<str>) -> mlua::Result<MultiValue> {
    Ok(MultiValue::from_vec(vec![
        Value::Nil,
        Value::String(lua.create_string(msg.as_ref())?),
    ]))
}

fn attach(lua: &Lua, name: LuaString) -> mlua::Result<MultiValue> {
    let name = name.to_str()?.to_string();
    match worker::attach(&name) {
        Ok(first) => Ok(MultiValue::from_vec(vec![Value::Boolean(first)])),
        Err(AttachError::NotFound) => nil_err(lua, format!("shm \"{name}\" not found")),
        Err(AttachError::NotOurs) => nil_err(
            lua,
            format!(
                "shm \"{name}\" is not a worker_events_zone (a lua_shared_dict?); declare it in http {{}} with: worker_events_zone {name} 1m;"
            ),
        ),
        Err(AttachError::OtherZone(_)) => nil_err(lua, "Already started, cannot change shm"),
    }
}

fn claim(_: &Lua, (unique, ttl): (LuaString, f64)) -> mlua::Result<(bool, Option<i32>)> {
    let out = worker::with(|w| {
        let w = w?;
        let now_ms = crate::util::monotonic_us() / 1000;
        let ttl_ms = (ttl * 1000.0).clamp(1.0, 1e12) as u64;
        Some(
            w.handle
                .zone
                .claim(&w.handle, &unique.as_bytes(), w.pid, now_ms, ttl_ms),
        )
    });
    Ok(match out {
        Some(ClaimOutcome::Mine) | None => (true, None),
        Some(ClaimOutcome::Taken(pid)) => (false, Some(pid)),
    })
}

fn stats(lua: &Lua, (): ()) -> mlua::Result<Value> {
    use core::sync::atomic::Ordering::Relaxed;
    let Some((zone, cursor, slot)) = worker::with(|w| w.map(|w| (w.handle.zone, w.cursor, w.slot)))
    else {
        return Ok(Value::Nil);
    };
    let h = zone.header();
    let t = lua.create_table()?;
    t.set("head", h.head.load(Relaxed) as f64)?;
    t.set("tail", h.tail.load(Relaxed) as f64)?;
    t.set("next_seq", h.head_seq.load(Relaxed) as f64)?;
    t.set("posted", h.posted.load(Relaxed) as f64)?;
    t.set("evicted", h.evicted.load(Relaxed) as f64)?;
    t.set("log_size", zone.ring_cap() as f64)?;
    t.set("max_record", zone.max_record() as f64)?;
    t.set("cursor", cursor.pos as f64)?;
    t.set("slot", slot.map(|s| s as i64))?;
    t.set("workers", zone.slot_owners().len())?;
    Ok(Value::Table(t))
}

/// Worker exit: broadcast `stopping` (as lua-resty-worker-events does) and
/// free the slot. Runs from nginx's exit_process hook, outside any Lua code.
pub fn on_worker_exit() {
    crate::notify::disable();
    let Some((handle, pid)) = worker::detach() else {
        return;
    };
    let mut enc = crate::codec::Encoder::new();
    enc.nil();
    match handle.zone.append(
        &handle,
        pid,
        b"resty-worker-events",
        b"stopping",
        b"",
        enc.as_bytes(),
    ) {
        Ok(_) => crate::notify::wake_others(&handle, None),
        Err(e) => crate::wev_log!(ERR, "failed posting event \"stopping\": {:?}", e),
    }
}
