//! The native table's `tasks_*` functions, for `ngx_tasks` (see
//! `crate::runtime::tasks`). The loop's shutdown semaphore is registered
//! through FFI (`exports::ngx_worker_events_tasks_set_sema`).

use mlua::{Lua, LuaString, MultiValue, Table, Value};

use crate::runtime::tasks;
use crate::zone::claims::TaskClaim;
use crate::zone::tasks::TaskEvent;

fn ms(secs: f64) -> u64 {
    (secs * 1000.0).clamp(1.0, 1e12) as u64
}

fn fail(lua: &Lua, e: impl ToString) -> mlua::Result<MultiValue> {
    Ok(MultiValue::from_vec(vec![
        Value::Nil,
        Value::String(lua.create_string(e.to_string())?),
    ]))
}

/// Adds the `tasks_*` functions to the native table `t`.
pub fn add(lua: &Lua, t: &Table) -> mlua::Result<()> {
    // tasks_take(zone, key, ttl_s) -> "mine" | "retry", dead_pid | "done"
    //   | "busy", owner | "full" | nil, err
    t.set(
        "tasks_take",
        lua.create_function(|lua, (zone, key, ttl): (String, LuaString, f64)| {
            let claim = match tasks::take(&zone, &key.as_bytes(), ms(ttl)) {
                Ok(c) => c,
                Err(e) => return fail(lua, e),
            };
            let s = |v: &str| lua.create_string(v).map(Value::String);
            Ok(MultiValue::from_vec(match claim {
                TaskClaim::Mine => vec![s("mine")?],
                TaskClaim::Retry(pid) => vec![s("retry")?, Value::Integer(pid.into())],
                TaskClaim::Done => vec![s("done")?],
                TaskClaim::Busy(pid) => vec![s("busy")?, Value::Integer(pid.into())],
                TaskClaim::Full => vec![s("full")?],
            }))
        })?,
    )?;
    t.set(
        "tasks_finish",
        lua.create_function(|lua, (zone, key): (String, LuaString)| {
            match tasks::finish(&zone, &key.as_bytes()) {
                Ok(()) => Ok(MultiValue::from_vec(vec![Value::Boolean(true)])),
                Err(e) => fail(lua, e),
            }
        })?,
    )?;
    t.set(
        "tasks_release",
        lua.create_function(|lua, (zone, key): (String, LuaString)| {
            match tasks::release(&zone, &key.as_bytes()) {
                Ok(()) => Ok(MultiValue::from_vec(vec![Value::Boolean(true)])),
                Err(e) => fail(lua, e),
            }
        })?,
    )?;
    // tasks_record(zone, name, "ran", duration_s, failed) | (zone, name, "retried" | "overlapped")
    t.set(
        "tasks_record",
        lua.create_function(
            |_,
             (zone, name, kind, duration, failed): (
                String,
                LuaString,
                String,
                Option<f64>,
                Option<bool>,
            )| {
                let event = match kind.as_str() {
                    "ran" => TaskEvent::Ran {
                        duration_us: (duration.unwrap_or(0.0) * 1e6).clamp(0.0, 1e15) as u64,
                        failed: failed.unwrap_or(false),
                        pid: crate::ngx::process::pid(),
                        wall_ms: crate::ngx::wall_ms(),
                    },
                    "retried" => TaskEvent::Retried,
                    _ => TaskEvent::Overlapped,
                };
                Ok(tasks::record(&zone, &name.as_bytes(), event).unwrap_or(false))
            },
        )?,
    )?;
    Ok(())
}
