//! The per-event native functions, `native.post` and `native.fetch`, written
//! against the Lua C API directly (mlua's value handles cost more than the
//! rest of the path together).
//!
//! Protocol (the `FETCH_*` constants reach Lua through the native table):
//! - `post(consumer, source, event, data, unique?, unique_ttl_s, flags?, max_payload?)`
//!   -> `seq` | `false` (a live `unique` key, with `POST_DEDUP`) | `nil, reason`.
//!   `flags`: `POST_DEDUP`, `POST_OWN`, `POST_CLUSTER`, `POST_HOLD` (see [`crate::runtime::post::PostMode`]);
//!   `max_payload`: the API's limit on source + event + unique + encoded data, bytes
//! - `fetch(consumer)` -> nothing
//!   | `FETCH_EVENT, source, event, data, pid, unique|nil, seq, wid|nil, own`
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

use crate::lua::value;
use crate::runtime::cluster;
use crate::runtime::consumer::{self, Fetched};
use crate::runtime::post;
use crate::zone::record::RecordView;

/// `post` flag: drop the event when its `unique` key is live.
pub const POST_DEDUP: i64 = 1;
/// `post` flag: an API's own event.
pub const POST_OWN: i64 = 2;
/// `post` flag: a cluster event (every worker of every node).
pub const POST_CLUSTER: i64 = 4;
/// `post` flag, with `POST_CLUSTER` and a `unique` key: one worker in the
/// cluster runs it.
pub const POST_HOLD: i64 = 8;

/// `fetch` found a record: source, event, data, pid, unique, seq, wid, own follow.
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

/// `native.post(consumer, source, event, data, unique?, unique_ttl_s, flags?, max_payload?)`.
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
        let Some(zone_limit) = post::max_record(id) else {
            return nil_err(l, &post::PostError::NotOpen.to_string());
        };
        let (source, event) = (value::str_at(l, 2), value::str_at(l, 3));
        // A string, even an empty one, makes a unique event.
        let unique = (lua_type(l, 5) == LUA_TSTRING).then(|| value::str_at(l, 5));
        // The `unique` claim's lifetime, seconds (the API's `timeout`).
        let ttl_ms = super::convert::secs_to_ms(lua_tonumber(l, 6));
        let flags = lua_tointeger(l, 7) as i64;
        let cluster = if flags & POST_CLUSTER != 0 {
            match cluster::config() {
                Ok(c) => Some(c),
                Err(e) => return nil_err(l, &e.to_string()),
            }
        } else {
            None
        };
        let mode = post::PostMode {
            dedup: flags & POST_DEDUP != 0,
            own: flags & POST_OWN != 0,
            cluster: cluster.as_ref().map(|(c, zone)| post::ClusterPost {
                zone,
                queue: c.queue,
                hold: (flags & POST_HOLD != 0 && unique.is_some()).then_some(ttl_ms),
            }),
        };
        // The API's own limit (resty.events' max_payload_len) counts the
        // names too: what is left of it for the data, and the limit itself.
        let zone_limit = usize::try_from(zone_limit).unwrap_or(usize::MAX);
        let api = (lua_type(l, 8) == mlua::ffi::LUA_TNUMBER).then(|| {
            let max = lua_tonumber(l, 8).clamp(0.0, 1e15) as u64;
            let names = source.len() + event.len() + unique.map_or(0, <[u8]>::len);
            let room = usize::try_from(max.saturating_sub(names as u64)).unwrap_or(usize::MAX);
            (max, room)
        });
        // The encoder never writes past its limit, so the smaller limit decides.
        let api_binds = api.filter(|&(_, room)| room < zone_limit);
        let data_limit = api_binds.map_or(zone_limit, |(_, room)| room);
        // Borrow the encoder out of the state, encode (Lua API), put it back.
        let Ok(mut enc) = post::take_encoder() else {
            return nil_err(l, "internal error: busy");
        };
        // Stops at the limit: a huge value is refused without being copied.
        enc.set_limit(data_limit);
        let encoded = value::encode(l, 4, &mut enc).map_err(|e| match api_binds {
            _ if !enc.exceeded() => e,
            Some((max, _)) => format!("payload exceeds the limitation ({max})"),
            None => format!("payload too large: more than {zone_limit} bytes encoded, the limit for this zone is {zone_limit}"),
        });
        let res = encoded.and_then(|()| {
            catch_unwind(AssertUnwindSafe(|| {
                post::post(id, source, event, unique, ttl_ms, enc.as_bytes(), mode)
                    .map_err(|e| e.to_string())
            }))
            .unwrap_or_else(|_| Err("internal error".into()))
        });
        post::put_encoder(enc);
        match res {
            Ok(post::Posted::Seq(seq)) => {
                lua_pushnumber(l, seq as f64);
                1
            }
            Ok(post::Posted::Duplicate) => {
                mlua::ffi::lua_pushboolean(l, 0);
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
    let got = catch_unwind(AssertUnwindSafe(|| consumer::fetch(id))).unwrap_or(Fetched::Empty);
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
    // SAFETY: (rest of the function) valid state; at most 9 pushes (LUA_MINSTACK = 20), the
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
                        if v.remote {
                            lua_pushnil(l);
                        } else {
                            lua_pushinteger(l, v.pid as _);
                        }
                        match v.unique {
                            Some(u) => push_str(l, u),
                            None => lua_pushnil(l),
                        }
                        lua_pushnumber(l, v.seq as f64);
                        match v.wid.filter(|_| !v.remote) {
                            Some(w) => lua_pushinteger(l, w as _),
                            None => lua_pushnil(l),
                        }
                        mlua::ffi::lua_pushboolean(l, v.own as c_int);
                        9
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
    consumer::put_buffer(buf);
    n
}
