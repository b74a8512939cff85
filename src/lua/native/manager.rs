//! The native table's `manager_*` functions, for `resty.worker.manager`
//! (see `crate::runtime::manager`). Counts travel as `prev, mine, next`
//! (`prev` and `next` may be nil, as the library's). `stream`: the caller
//! is stream-lua's (the lifecycle is tracked once per worker; each
//! subsystem gets the counts).

use super::convert::secs_to_ms;
use mlua::{Lua, MultiValue, Table, Value};

use crate::ngx::lua_module::Subsystem;
use crate::runtime::manager;
use crate::zone::manager::Counts;

fn push_counts(out: &mut Vec<Value>, c: Counts) {
    out.push(c.prev.map_or(Value::Nil, |n| Value::Integer(n.into())));
    out.push(Value::Integer(c.mine.into()));
    out.push(c.next.map_or(Value::Nil, |n| Value::Integer(n.into())));
}

fn err(lua: &Lua, e: impl ToString) -> mlua::Result<MultiValue> {
    Ok(MultiValue::from_vec(vec![
        Value::Nil,
        Value::String(lua.create_string(e.to_string())?),
    ]))
}

/// Adds the `manager_*` functions to the native table `t`.
pub fn add(lua: &Lua, t: &Table) -> mlua::Result<()> {
    // manager_start(zone, interval_s, failed_s, stream?) -> generation, generation_time,
    //   is_first, m_prev, m_mine, m_next, w_prev, w_mine, w_next | nil, err
    t.set(
        "manager_start",
        lua.create_function(
            |lua, (zone, interval, failed, stream): (String, f64, f64, Option<bool>)| {
                match manager::start(
                    &zone,
                    secs_to_ms(interval),
                    secs_to_ms(failed),
                    Subsystem::from_stream(stream.unwrap_or(false)),
                ) {
                    Err(e) => err(lua, e),
                    Ok(s) => {
                        let mut out = vec![
                            Value::Integer(s.generation as i64),
                            Value::Number(s.generation_ms as f64 / 1000.0),
                            Value::Boolean(s.master.is_some()),
                        ];
                        push_counts(&mut out, s.master.unwrap_or(s.worker));
                        push_counts(&mut out, s.worker);
                        Ok(MultiValue::from_vec(out))
                    }
                }
            },
        )?,
    )?;
    // manager_leave(stream?) -> generation, prev, mine, next | nothing
    t.set(
        "manager_leave",
        lua.create_function(|_, stream: Option<bool>| {
            let mut out = Vec::new();
            if let Some((g, c)) = manager::leave(Subsystem::from_stream(stream.unwrap_or(false))) {
                out.push(Value::Integer(g as i64));
                push_counts(&mut out, c);
            }
            Ok(MultiValue::from_vec(out))
        })?,
    )?;
    t.set(
        "manager_reap",
        lua.create_function(|_, ()| Ok(manager::reap() as i64))?,
    )?;
    // manager_counts(generation) -> prev, mine, next | nothing
    t.set(
        "manager_counts",
        lua.create_function(|_, g: i64| {
            let mut out = Vec::new();
            if let Some(c) = manager::counts_for(g.max(0) as u64) {
                push_counts(&mut out, c);
            }
            Ok(MultiValue::from_vec(out))
        })?,
    )?;
    // manager_workers() -> { { id, pid, worker, generation, started, state }, ... } | nil
    t.set(
        "manager_workers",
        lua.create_function(|lua, ()| {
            let Some(list) = manager::workers() else {
                return Ok(Value::Nil);
            };
            let out = lua.create_table()?;
            for (i, o) in list.iter().enumerate() {
                let w = lua.create_table()?;
                w.set("id", format!("{}-{}", o.generation, o.pid))?;
                w.set("pid", o.pid)?;
                w.set("worker", o.worker)?;
                w.set("generation", o.generation as i64)?;
                w.set("started", o.started_ms as f64 / 1000.0)?;
                w.set("state", o.state.as_str())?;
                out.raw_set(i + 1, w)?;
            }
            Ok(Value::Table(out))
        })?,
    )?;
    Ok(())
}
