//! Conversions every native function shares: a runtime failure as Lua's
//! `nil, err`, and seconds from Lua as milliseconds.

use mlua::{Lua, MultiValue, Value};

/// `nil, err`: how a native function reports a runtime failure.
pub fn nil_err(lua: &Lua, e: impl ToString) -> mlua::Result<MultiValue> {
    Ok(MultiValue::from_vec(vec![
        Value::Nil,
        Value::String(lua.create_string(e.to_string())?),
    ]))
}

/// Seconds given to a Lua API (a timeout, a ttl, an interval) as
/// milliseconds: at least 1, and bounded (NaN becomes 1).
pub fn secs_to_ms(secs: f64) -> u64 {
    (secs * 1000.0).clamp(1.0, 1e12) as u64
}
