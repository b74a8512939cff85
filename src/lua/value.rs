//! Lua values <-> the payload codec (`crate::codec`), on the raw C stack.
//!
//! This is the per-event hot path, so it talks to the Lua C API directly
//! rather than through mlua's value handles (which cost a registry/aux-stack
//! round trip per value).
//!
//! Encoding walks a value depth-first and refuses what cjson refuses
//! (functions, userdata, cdata, threads, table keys that are not strings,
//! numbers or booleans, nesting beyond `codec::MAX_DEPTH`; a cycle ends as
//! excessive nesting, as in cjson). It never runs Lua code: no metamethods
//! are consulted, and number keys are read with `lua_tonumber` (never
//! `lua_tolstring`, which would convert them in place under `lua_next`).
//! Decoding pushes exactly one value and rebuilds tables with their sizes.

use core::ffi::{c_char, c_int};

use mlua::ffi::{
    lua_State, lua_checkstack, lua_createtable, lua_gettop, lua_next, lua_objlen, lua_pushboolean,
    lua_pushlightuserdata, lua_pushlstring_, lua_pushnil, lua_pushnumber, lua_rawgeti_, lua_rawset,
    lua_rawseti_, lua_settop, lua_toboolean, lua_tolstring, lua_tonumber, lua_touserdata, lua_type,
    LUA_TBOOLEAN, LUA_TLIGHTUSERDATA, LUA_TNIL, LUA_TNUMBER, LUA_TSTRING, LUA_TTABLE,
};

use crate::codec::{Decoder, Encoder, Token, MAX_DEPTH};

fn type_name(t: c_int) -> &'static str {
    match t {
        LUA_TNIL => "nil",
        LUA_TBOOLEAN => "boolean",
        LUA_TLIGHTUSERDATA => "lightuserdata",
        LUA_TNUMBER => "number",
        LUA_TSTRING => "string",
        LUA_TTABLE => "table",
        6 => "function",
        7 => "userdata",
        8 => "thread",
        10 => "cdata",
        _ => "value",
    }
}

/// Bytes of the string at `idx` (which must be a string, not a number).
///
/// # Safety
/// `l` is a valid state and `idx` a valid index holding a string; the slice
/// lives as long as the string stays on the stack.
pub unsafe fn str_at<'a>(l: *mut lua_State, idx: c_int) -> &'a [u8] {
    let mut len = 0usize;
    // SAFETY: per the contract, a string: lua_tolstring does not convert it.
    let p = unsafe { lua_tolstring(l, idx, &mut len) };
    if p.is_null() {
        return &[];
    }
    // SAFETY: Lua guarantees `len` readable bytes at `p` while the string lives.
    unsafe { core::slice::from_raw_parts(p as *const u8, len) }
}

/// Encodes the value at absolute index `idx` into `enc`.
///
/// # Safety
/// `l` is a valid state on the event-loop thread and `idx` a valid absolute
/// index. The stack is left as it was.
pub unsafe fn encode(l: *mut lua_State, idx: c_int, enc: &mut Encoder) -> Result<(), String> {
    // SAFETY: forwarded contract.
    unsafe { encode_at(l, idx, enc, 0) }
}

unsafe fn encode_at(
    l: *mut lua_State,
    idx: c_int,
    enc: &mut Encoder,
    depth: usize,
) -> Result<(), String> {
    // SAFETY: (whole function) `idx` is a valid absolute index; every push
    // below is matched by a pop before returning, and lua_checkstack guards
    // the recursion's stack use.
    unsafe {
        match lua_type(l, idx) {
            LUA_TNIL => enc.nil(),
            LUA_TBOOLEAN => enc.boolean(lua_toboolean(l, idx) != 0),
            LUA_TNUMBER => enc.number(lua_tonumber(l, idx)),
            LUA_TSTRING => enc.string(str_at(l, idx)),
            LUA_TLIGHTUSERDATA if lua_touserdata(l, idx).is_null() => enc.null(),
            LUA_TTABLE => encode_table(l, idx, enc, depth + 1)?,
            t => {
                return Err(format!(
                    "cannot serialise {}: type not supported",
                    type_name(t)
                ))
            }
        }
    }
    Ok(())
}

fn is_array_key(l: *mut lua_State, idx: c_int, m: usize) -> bool {
    // SAFETY: `idx` is a valid index; reading a number does not convert it.
    unsafe {
        if lua_type(l, idx) != LUA_TNUMBER {
            return false;
        }
        let k = lua_tonumber(l, idx);
        k.fract() == 0.0 && k >= 1.0 && k <= m as f64
    }
}

unsafe fn encode_table(
    l: *mut lua_State,
    idx: c_int,
    enc: &mut Encoder,
    depth: usize,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "cannot serialise table: excessive nesting ({depth})"
        ));
    }
    // SAFETY: (whole function) as in `encode_at`; lua_next iterates the table
    // at `idx` with the key on top, and every loop leaves the stack balanced.
    unsafe {
        if lua_checkstack(l, 4) == 0 {
            return Err(format!(
                "cannot serialise table: excessive nesting ({depth})"
            ));
        }
        let top = lua_gettop(l);
        // The array part: keys 1..m without a hole.
        let n = lua_objlen(l, idx);
        let mut m = 0usize;
        while m < n {
            lua_rawgeti_(l, idx, (m + 1) as c_int);
            let present = lua_type(l, -1) != LUA_TNIL;
            lua_settop(l, top);
            if !present {
                break;
            }
            m += 1;
        }
        // Count (and check) the other keys.
        let mut n_hash = 0usize;
        lua_pushnil(l);
        while lua_next(l, idx) != 0 {
            let kt = lua_type(l, -2);
            if !matches!(kt, LUA_TSTRING | LUA_TNUMBER | LUA_TBOOLEAN) {
                lua_settop(l, top);
                return Err(format!(
                    "cannot serialise {}: table key must be a number, string or boolean",
                    type_name(kt)
                ));
            }
            if !is_array_key(l, -2, m) {
                n_hash += 1;
            }
            lua_settop(l, top + 1);
        }
        enc.table(m, n_hash);
        for i in 1..=m {
            lua_rawgeti_(l, idx, i as c_int);
            let r = encode_at(l, top + 1, enc, depth);
            lua_settop(l, top);
            r?;
        }
        lua_pushnil(l);
        while lua_next(l, idx) != 0 {
            if !is_array_key(l, -2, m) {
                let r = encode_at(l, top + 1, enc, depth)
                    .and_then(|()| encode_at(l, top + 2, enc, depth));
                if let Err(e) = r {
                    lua_settop(l, top);
                    return Err(e);
                }
            }
            lua_settop(l, top + 1);
        }
        Ok(())
    }
}

/// Decodes a whole payload and pushes it (exactly one value on success,
/// nothing on error).
///
/// # Safety
/// `l` is a valid state on the event-loop thread.
pub unsafe fn decode(l: *mut lua_State, bytes: &[u8]) -> Result<(), String> {
    // SAFETY: forwarded contract; on error the stack is restored.
    unsafe {
        let top = lua_gettop(l);
        let mut d = Decoder::new(bytes);
        let r = decode_at(l, &mut d, 0).and_then(|()| d.finish().map_err(|e| e.to_string()));
        if r.is_err() {
            lua_settop(l, top);
        }
        r
    }
}

unsafe fn decode_at(l: *mut lua_State, d: &mut Decoder, depth: usize) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err("nesting too deep".into());
    }
    // SAFETY: (whole function) pushes one value per call; lua_checkstack
    // guards the recursion; table counts were bounded by the payload size
    // in the decoder, so lua_createtable cannot be asked for absurd sizes.
    unsafe {
        if lua_checkstack(l, 4) == 0 {
            return Err("nesting too deep".into());
        }
        match d.next().map_err(|e| e.to_string())? {
            Token::Nil => lua_pushnil(l),
            Token::Bool(b) => lua_pushboolean(l, b as c_int),
            Token::Null => lua_pushlightuserdata(l, core::ptr::null_mut()),
            Token::Int(i) => lua_pushnumber(l, i as f64),
            Token::Num(n) => lua_pushnumber(l, n),
            Token::Str(s) => lua_pushlstring_(l, s.as_ptr() as *const c_char, s.len()),
            Token::Table { n_array, n_hash } => {
                lua_createtable(l, n_array as c_int, n_hash as c_int);
                for i in 1..=n_array {
                    decode_at(l, d, depth + 1)?;
                    lua_rawseti_(l, -2, i as c_int);
                }
                for _ in 0..n_hash {
                    decode_at(l, d, depth + 1)?;
                    decode_at(l, d, depth + 1)?;
                    // nil or NaN keys cannot be set (lua_rawset would raise).
                    let bad = match lua_type(l, -2) {
                        LUA_TNIL => true,
                        LUA_TNUMBER => lua_tonumber(l, -2).is_nan(),
                        _ => false,
                    };
                    if bad {
                        lua_settop(l, -3);
                    } else {
                        lua_rawset(l, -3);
                    }
                }
            }
        }
    }
    Ok(())
}
