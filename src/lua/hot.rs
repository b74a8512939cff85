//! The per-event native functions, `native.post` and `native.fetch`, written
//! against the Lua C API directly (mlua's value handles cost more than the
//! rest of the path together).
//!
//! Protocol (the `FETCH_*` constants reach Lua through the native table):
//! - `post(consumer, source, event, data, unique?, unique_ttl_s)` -> `seq` | `nil, reason`
//! - `fetch(consumer)` -> nothing
//!   | `FETCH_EVENT, source, event, data, pid, unique|nil, seq`
//!   | `FETCH_LOST, count`
//!   | `FETCH_BAD, reason, seq`
//!
//! Rust code that could panic runs inside `catch_unwind`; Lua API calls that
//! can raise (allocation) run outside it and outside any borrow of the
//! per-process state or the zone lock, so a Lua error can never leave
//! either held.

use core::ffi::{c_char, c_int};
use std::panic::{catch_unwind, AssertUnwindSafe};

use mlua::ffi::{
    lua_State, lua_pushinteger, lua_pushlstring_, lua_pushnil, lua_pushnumber, lua_settop,
    lua_tointeger, lua_tonumber, lua_type, LUA_TSTRING,
};

use super::value;
use crate::runtime::attach::{self, Fetched};
use crate::zone::record::RecordView;

/// `fetch` found a record: source, event, data, pid, unique, seq follow.
pub const FETCH_EVENT: i64 = 1;
/// `fetch` found a gap: the number of lost records follows.
pub const FETCH_LOST: i64 = 2;
/// `fetch` found a record it cannot deliver: the reason and its seq follow.
pub const FETCH_BAD: i64 = 3;

/// Pushes a byte string.
///
/// # Safety
/// `l` is a valid state with room for one more value.
unsafe fn push_str(l: *mut lua_State, s: &[u8]) {
    // SAFETY: per the contract; Lua copies the bytes.
    unsafe { lua_pushlstring_(l, s.as_ptr() as *const c_char, s.len()) }
}

/// Pushes `nil, msg`; returns 2.
///
/// # Safety
/// `l` is a valid state with room for two more values.
unsafe fn nil_err(l: *mut lua_State, msg: &str) -> c_int {
    // SAFETY: per the contract.
    unsafe {
        lua_pushnil(l);
        push_str(l, msg.as_bytes());
    }
    2
}

/// The consumer id at stack index 1 (0 when not a number: no consumer).
///
/// # Safety
/// `l` is a valid state.
unsafe fn consumer_at(l: *mut lua_State) -> u32 {
    // SAFETY: reading an argument; lua_tointeger returns 0 for non-numbers.
    u32::try_from(unsafe { lua_tointeger(l, 1) }).unwrap_or(0)
}

/// `native.post(consumer, source, event, data, unique?, unique_ttl_s)`.
///
/// # Safety
/// Called by Lua as a `lua_CFunction`.
pub unsafe extern "C-unwind" fn post(l: *mut lua_State) -> c_int {
    // SAFETY: (whole function) called by Lua with `l` valid; arguments are
    // read at fixed indices, strings only after checking their type.
    unsafe {
        if lua_type(l, 2) != LUA_TSTRING || lua_type(l, 3) != LUA_TSTRING {
            return nil_err(l, "source and event must be strings");
        }
        let id = consumer_at(l);
        // Borrow the encoder out of the state, encode (Lua API), put it back.
        let Some(limit) = attach::max_record(id) else {
            return nil_err(l, &attach::PostError::NotOpen.to_string());
        };
        let Ok(mut enc) = attach::take_encoder() else {
            return nil_err(l, "internal error: busy");
        };
        // Stops at the zone's limit: a huge value is refused without being copied.
        enc.set_limit(usize::try_from(limit).unwrap_or(usize::MAX));
        let encoded = value::encode(l, 4, &mut enc).map_err(|e| {
            if enc.exceeded() {
                format!("payload too large: more than {limit} bytes encoded, the limit for this zone is {limit}")
            } else {
                e
            }
        });
        let (source, event) = (value::str_at(l, 2), value::str_at(l, 3));
        // A string, even an empty one, makes a unique event.
        let unique = (lua_type(l, 5) == LUA_TSTRING).then(|| value::str_at(l, 5));
        // The `unique` claim's lifetime, seconds (the API's `timeout`).
        let ttl_ms = (lua_tonumber(l, 6) * 1000.0).clamp(1.0, 1e12) as u64;
        let res = encoded.and_then(|()| {
            catch_unwind(AssertUnwindSafe(|| {
                attach::post(id, source, event, unique, ttl_ms, enc.as_bytes())
                    .map_err(|e| e.to_string())
            }))
            .unwrap_or_else(|_| Err("internal error".into()))
        });
        attach::put_encoder(enc);
        match res {
            Ok(seq) => {
                lua_pushnumber(l, seq as f64);
                1
            }
            Err(reason) => nil_err(l, &reason),
        }
    }
}

/// `native.fetch(consumer)`.
///
/// # Safety
/// Called by Lua as a `lua_CFunction`.
pub unsafe extern "C-unwind" fn fetch(l: *mut lua_State) -> c_int {
    // SAFETY: reading the argument.
    let id = unsafe { consumer_at(l) };
    let got = catch_unwind(AssertUnwindSafe(|| attach::fetch(id))).unwrap_or(Fetched::Empty);
    let (rh, buf) = match got {
        Fetched::Empty => return 0,
        Fetched::Lost(n) => {
            // SAFETY: valid state, two pushes.
            unsafe {
                lua_pushinteger(l, FETCH_LOST as _);
                lua_pushnumber(l, n as f64);
            }
            return 2;
        }
        Fetched::Record(rh, buf) => (rh, buf),
    };
    // SAFETY: (rest of the function) valid state; at most 7 pushes (LUA_MINSTACK = 20), the
    // decoder checks the stack for nested tables itself.
    let n = unsafe {
        match RecordView::parse(&rh, &buf) {
            None => {
                lua_pushinteger(l, FETCH_BAD as _);
                push_str(l, b"malformed record");
                lua_pushnumber(l, rh.seq as f64);
                3
            }
            Some(v) => {
                lua_pushinteger(l, FETCH_EVENT as _);
                push_str(l, v.source);
                push_str(l, v.event);
                match value::decode(l, v.data) {
                    Ok(()) => {
                        lua_pushinteger(l, v.pid as _);
                        match v.unique {
                            Some(u) => push_str(l, u),
                            None => lua_pushnil(l),
                        }
                        lua_pushnumber(l, v.seq as f64);
                        7
                    }
                    Err(e) => {
                        lua_settop(l, -4);
                        lua_pushinteger(l, FETCH_BAD as _);
                        push_str(l, format!("failed decoding event data: {e}").as_bytes());
                        lua_pushnumber(l, v.seq as f64);
                        3
                    }
                }
            }
        }
    };
    attach::put_buffer(buf);
    n
}
