//! The per-event native functions, `core.post` and `core.fetch`, written
//! against the Lua C API directly (mlua's value handles cost more than the
//! rest of the path together).
//!
//! Protocol (see `core.rs` for the table):
//! - `post(source, event, data, unique?)` -> `seq` | `nil, reason`
//! - `fetch()` -> nothing | `1, source, event, data, pid, unique|nil, seq`
//!   | `2, lost` | `3, reason, seq`
//!
//! Rust code that could panic runs inside `catch_unwind`; Lua API calls that
//! can raise (allocation) run outside it and outside any borrow of the worker
//! state or the zone lock, so a Lua error can never leave either held.

use core::ffi::{c_char, c_int};
use std::panic::{catch_unwind, AssertUnwindSafe};

use mlua::ffi::{
    lua_State, lua_pushinteger, lua_pushlstring_, lua_pushnil, lua_pushnumber, lua_type,
    LUA_TSTRING,
};

use super::value;
use crate::codec::Encoder;
use crate::worker;
use crate::zone::record::{RecordHeader, RecordView};
use crate::zone::ring::AppendError;
use crate::zone::ReadOutcome;

unsafe fn push_str(l: *mut lua_State, s: &[u8]) {
    // SAFETY: valid state; Lua copies the bytes.
    unsafe { lua_pushlstring_(l, s.as_ptr() as *const c_char, s.len()) }
}

unsafe fn nil_err(l: *mut lua_State, msg: &str) -> c_int {
    // SAFETY: valid state, two pushes (stack space: LUA_MINSTACK = 20).
    unsafe {
        lua_pushnil(l);
        push_str(l, msg.as_bytes());
    }
    2
}

/// `core.post(source, event, data, unique?)`.
pub unsafe extern "C-unwind" fn post(l: *mut lua_State) -> c_int {
    // SAFETY (whole function): called by Lua with `l` valid; arguments are
    // read at fixed indices, strings only after checking their type.
    unsafe {
        if lua_type(l, 1) != LUA_TSTRING || lua_type(l, 2) != LUA_TSTRING {
            return nil_err(l, "source and event must be strings");
        }
        let unique_is_str = lua_type(l, 4) == LUA_TSTRING;
        // Borrow the encoder out of the worker state, encode (Lua API), put it back.
        let Some(mut enc) = worker::with(|w| w.map(|w| core::mem::take(&mut w.enc))) else {
            return nil_err(l, "events not configured, call configure() first");
        };
        enc.clear();
        let encoded = value::encode(l, 3, &mut enc);
        let (source, event) = (value::str_at(l, 1), value::str_at(l, 2));
        let unique = if unique_is_str {
            value::str_at(l, 4)
        } else {
            &[][..]
        };
        let res = encoded.and_then(|()| {
            catch_unwind(AssertUnwindSafe(|| append(&enc, source, event, unique)))
                .unwrap_or_else(|_| Err("internal error".into()))
        });
        worker::with(|w| {
            if let Some(w) = w {
                w.enc = enc;
            }
        });
        match res {
            Ok(seq) => {
                lua_pushnumber(l, seq as f64);
                1
            }
            Err(reason) => nil_err(l, &reason),
        }
    }
}

fn append(enc: &Encoder, source: &[u8], event: &[u8], unique: &[u8]) -> Result<u64, String> {
    let (handle, slot, seq) = worker::with(|w| {
        let w = w.ok_or("events not configured, call configure() first")?;
        let seq = w
            .handle
            .zone
            .append(&w.handle, w.pid, source, event, unique, enc.as_bytes())
            .map_err(|e| match e {
                AppendError::TooLarge { size, limit } => {
                    format!("payload too large: {size} bytes encoded, the limit for this zone is {limit}")
                }
                AppendError::Format(f) => f.to_string(),
            })?;
        Ok::<_, String>((w.handle, w.slot, seq))
    })?;
    crate::notify::wake_others(&handle, slot);
    Ok(seq)
}

enum Fetched {
    Empty,
    Lost(u64),
    Record(RecordHeader, Vec<u8>),
}

/// `core.fetch()`.
pub unsafe extern "C-unwind" fn fetch(l: *mut lua_State) -> c_int {
    let got = catch_unwind(AssertUnwindSafe(|| {
        worker::with(|w| {
            let Some(w) = w else { return Fetched::Empty };
            match w
                .handle
                .zone
                .read_next(&w.handle, &mut w.cursor, &mut w.buf)
            {
                ReadOutcome::Empty => Fetched::Empty,
                ReadOutcome::Lost(n) => Fetched::Lost(n),
                ReadOutcome::Record(rh) => Fetched::Record(rh, core::mem::take(&mut w.buf)),
            }
        })
    }))
    .unwrap_or(Fetched::Empty);
    // SAFETY (rest): valid state; at most 7 pushes (LUA_MINSTACK = 20), the
    // decoder checks the stack for nested tables itself.
    unsafe {
        let (rh, buf) = match got {
            Fetched::Empty => return 0,
            Fetched::Lost(n) => {
                lua_pushinteger(l, 2);
                lua_pushnumber(l, n as f64);
                return 2;
            }
            Fetched::Record(rh, buf) => (rh, buf),
        };
        let n = match RecordView::parse(&rh, &buf) {
            None => {
                lua_pushinteger(l, 3);
                push_str(l, b"malformed record");
                lua_pushnumber(l, rh.seq as f64);
                3
            }
            Some(v) => {
                lua_pushinteger(l, 1);
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
                        mlua::ffi::lua_settop(l, -4);
                        lua_pushinteger(l, 3);
                        push_str(l, format!("failed decoding event data: {e}").as_bytes());
                        lua_pushnumber(l, v.seq as f64);
                        3
                    }
                }
            }
        };
        // Give the buffer back for reuse.
        worker::with(|w| {
            if let Some(w) = w {
                w.buf = buf;
            }
        });
        n
    }
}
