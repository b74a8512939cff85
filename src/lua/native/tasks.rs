//! The native table's `tasks_*` functions, for `ngx_tasks` (see
//! `crate::runtime::tasks`). The loop's shutdown semaphore is registered
//! through FFI (`exports::ngx_worker_events_tasks_set_sema`).

use mlua::{Lua, LuaString, MultiValue, Table, Value};

use super::convert::{nil_err, secs_to_ms};
use crate::runtime::tasks;
use crate::zone::claims::TaskClaim;
use crate::zone::tasks::TaskEvent;

/// A monotonic time in seconds (`tasks.now()`'s clock) as ms, rounded up
/// (a window ending at 1.0005 s is live through ms 1000); none: never.
fn deadline_ms(secs: Option<f64>) -> u64 {
    match secs {
        Some(s) if s.is_finite() => (s * 1000.0).ceil().clamp(0.0, 1e15) as u64,
        Some(s) if s < 0.0 => 0,
        _ => u64::MAX,
    }
}

/// Adds the `tasks_*` functions to the native table `t`.
pub fn add(lua: &Lua, t: &Table) -> mlua::Result<()> {
    // tasks_resolve(zone) -> true | nil, err: the zone exists (no claim taken)
    t.set(
        "tasks_resolve",
        lua.create_function(|lua, zone: String| match tasks::resolve(&zone) {
            Ok(()) => Ok(MultiValue::from_vec(vec![Value::Boolean(true)])),
            Err(e) => nil_err(lua, e),
        })?,
    )?;
    // tasks_take(zone, key, ttl_s, new_before_s) -> "mine" | "retry", dead_pid
    //   | "done" | "busy", owner | "full" | nil, err; new_before_s: the
    //   window's end (monotonic s; nil: none), after which a key with no
    //   entry is over ("done"), not new
    t.set(
        "tasks_take",
        lua.create_function(
            |lua, (zone, key, ttl, new_before): (String, LuaString, f64, Option<f64>)| {
                let claim = match tasks::take(
                    &zone,
                    &key.as_bytes(),
                    secs_to_ms(ttl),
                    deadline_ms(new_before),
                ) {
                    Ok(c) => c,
                    Err(e) => return nil_err(lua, e),
                };
                let s = |v: &str| lua.create_string(v).map(Value::String);
                Ok(MultiValue::from_vec(match claim {
                    TaskClaim::Mine => vec![s("mine")?],
                    TaskClaim::Retry(pid) => vec![s("retry")?, Value::Integer(pid.into())],
                    TaskClaim::Done => vec![s("done")?],
                    TaskClaim::Busy(pid) => vec![s("busy")?, Value::Integer(pid.into())],
                    TaskClaim::Full => vec![s("full")?],
                }))
            },
        )?,
    )?;
    // tasks_finish(zone, key, keep_until_s): done, kept until the window's
    // end (monotonic s; nil: until its ttl)
    t.set(
        "tasks_finish",
        lua.create_function(|lua, (zone, key, keep): (String, LuaString, Option<f64>)| {
            match tasks::finish(&zone, &key.as_bytes(), deadline_ms(keep)) {
                Ok(()) => Ok(MultiValue::from_vec(vec![Value::Boolean(true)])),
                Err(e) => nil_err(lua, e),
            }
        })?,
    )?;
    t.set(
        "tasks_release",
        lua.create_function(|lua, (zone, key): (String, LuaString)| {
            match tasks::release(&zone, &key.as_bytes()) {
                Ok(()) => Ok(MultiValue::from_vec(vec![Value::Boolean(true)])),
                Err(e) => nil_err(lua, e),
            }
        })?,
    )?;
    // tasks_record(zone, name, "ran", duration_s, failed)
    //   | (zone, name, "retried" | "overlapped" | "skipped")
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
                    "skipped" => TaskEvent::Skipped,
                    _ => TaskEvent::Overlapped,
                };
                Ok(tasks::record(&zone, &name.as_bytes(), event).unwrap_or(false))
            },
        )?,
    )?;
    Ok(())
}
