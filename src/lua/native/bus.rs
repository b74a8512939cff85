//! The per-event native functions: the FFI post and fetch of one record (no
//! Lua API call at all: the Lua side encodes, copies and decodes payloads
//! itself), and `native.post` / `native.decode`, written against the Lua C
//! API directly (mlua's value handles cost more than the rest of the path
//! together), for what the Lua codec leaves to them.
//!
//! Protocol (the `FETCH_*` constants reach Lua through the native table):
//! - `ngx_worker_events_post(consumer, post)` (LuaJIT FFI, see [`PostFfi`]):
//!   the data encoded on the Lua side (`ngx_worker_events.payload`), and for
//!   what that encoder leaves to this one,
//! - `post(consumer, source, event, data, unique?, unique_ttl_s, flags?, max_payload?)`
//!   -> `seq` | `false` (a live `unique` key, with `POST_DEDUP`) | `nil, reason`.
//!   `flags`: `POST_DEDUP`, `POST_OWN`, `POST_CLUSTER`, `POST_HOLD` (see [`crate::runtime::post::PostMode`]);
//!   `max_payload`: the API's limit on source + event + unique + encoded data, bytes
//! - `ngx_worker_events_fetch(consumer, record)` (LuaJIT FFI, see [`Record`])
//!   -> 0 | `FETCH_EVENT` | `FETCH_LOST` | `FETCH_BAD`; the payload is decoded
//!   on the Lua side (`ngx_worker_events.payload`), with
//! - `decode(bytes)` -> value | `nil, reason`: this decoder, for what that one
//!   leaves to it (and for its error text)
//!
//! Rust code that could panic runs inside `catch_unwind`; Lua API calls that
//! can raise (allocation) run outside it and outside any borrow of the
//! per-process state or the zone lock, so a Lua error can never leave
//! either held.

use core::ffi::{c_char, c_int};
use std::panic::{catch_unwind, AssertUnwindSafe};

use mlua::ffi::{
    lua_State, lua_pushlstring_, lua_pushnil, lua_pushnumber, lua_tointeger, lua_tonumber,
    lua_type, LUA_TSTRING,
};

use crate::lua::value;
use crate::runtime::cluster;
use crate::runtime::consumer::{self, Fetched};
use crate::runtime::post;
use crate::zone::record::{RecordHeader, RecordView};

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

/// A post's arguments, read from Lua by either path (`native.post` or the
/// FFI post), the data aside.
pub struct PostArgs<'a> {
    pub source: &'a [u8],
    pub event: &'a [u8],
    pub unique: Option<&'a [u8]>,
    /// The `unique` claim's lifetime (the API's `timeout`), ms.
    pub ttl_ms: u64,
    /// `POST_*` flags.
    pub flags: i64,
    /// The API's own limit on source + event + unique + encoded data
    /// (resty.events' `max_payload_len`), bytes.
    pub max_payload: Option<f64>,
}

/// How many bytes the encoded data may take, and how to say it did not fit.
struct DataLimit {
    /// The smaller of the zone's and the API's limit.
    bytes: usize,
    zone: usize,
    /// The API's limit when it is the smaller one.
    api: Option<u64>,
}

impl DataLimit {
    /// The limit for a post by consumer `id`, or why it cannot post.
    fn of(id: u32, a: &PostArgs<'_>) -> Result<Self, String> {
        let zone = post::max_record(id).ok_or_else(|| post::PostError::NotOpen.to_string())?;
        let zone = usize::try_from(zone).unwrap_or(usize::MAX);
        // The API's own limit counts the names too: what is left of it for
        // the data, and the limit itself.
        let api = a.max_payload.map(|max| {
            let max = max.clamp(0.0, 1e15) as u64;
            let names = a.source.len() + a.event.len() + a.unique.map_or(0, <[u8]>::len);
            let room = usize::try_from(max.saturating_sub(names as u64)).unwrap_or(usize::MAX);
            (max, room)
        });
        // The encoder never writes past its limit, so the smaller limit decides.
        let api = api.filter(|&(_, room)| room < zone);
        Ok(Self {
            bytes: api.map_or(zone, |(_, room)| room),
            zone,
            api: api.map(|(max, _)| max),
        })
    }

    /// The error when the data does not fit.
    fn exceeded(&self) -> String {
        match self.api {
            Some(max) => format!("payload exceeds the limitation ({max})"),
            None => format!(
                "payload too large: more than {0} bytes encoded, the limit for this zone is {0}",
                self.zone
            ),
        }
    }
}

/// Posts the encoded `data` (the tail both paths share): the post mode from
/// the flags, then [`post::post`] inside `catch_unwind`.
fn post_encoded(id: u32, a: &PostArgs<'_>, data: &[u8]) -> Result<post::Posted, String> {
    let cluster = if a.flags & POST_CLUSTER != 0 {
        Some(cluster::config().map_err(|e| e.to_string())?)
    } else {
        None
    };
    let mode = post::PostMode {
        dedup: a.flags & POST_DEDUP != 0,
        own: a.flags & POST_OWN != 0,
        cluster: cluster.as_ref().map(|(c, zone)| post::ClusterPost {
            zone,
            queue: c.queue,
            hold: (a.flags & POST_HOLD != 0 && a.unique.is_some()).then_some(a.ttl_ms),
        }),
    };
    catch_unwind(AssertUnwindSafe(|| {
        post::post(id, a.source, a.event, a.unique, a.ttl_ms, data, mode).map_err(|e| e.to_string())
    }))
    .unwrap_or_else(|_| Err("internal error".into()))
}

/// `native.post(consumer, source, event, data, unique?, unique_ttl_s, flags?, max_payload?)`:
/// the path for what the Lua encoder leaves to this one (see
/// [`post_ffi`]), so it has the last word on what a payload may hold.
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
        let args = PostArgs {
            source: value::str_at(l, 2),
            event: value::str_at(l, 3),
            // A string, even an empty one, makes a unique event.
            unique: (lua_type(l, 5) == LUA_TSTRING).then(|| value::str_at(l, 5)),
            ttl_ms: super::convert::secs_to_ms(lua_tonumber(l, 6)),
            flags: lua_tointeger(l, 7) as i64,
            max_payload: (lua_type(l, 8) == mlua::ffi::LUA_TNUMBER).then(|| lua_tonumber(l, 8)),
        };
        let limit = match DataLimit::of(id, &args) {
            Ok(limit) => limit,
            Err(e) => return nil_err(l, &e),
        };
        // Borrow the encoder out of the state, encode (Lua API), put it back.
        let Ok(mut enc) = post::take_encoder() else {
            return nil_err(l, "internal error: busy");
        };
        // Stops at the limit: a huge value is refused without being copied.
        enc.set_limit(limit.bytes);
        let encoded = value::encode(l, 4, &mut enc).map_err(|e| match enc.exceeded() {
            true => limit.exceeded(),
            false => e,
        });
        let res = encoded.and_then(|()| post_encoded(id, &args, enc.as_bytes()));
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

/// One post through LuaJIT FFI (`ngx_worker_events_post_t` in
/// [`crate::lua::exports::CDEF`]): the Lua side encoded the data
/// (`ngx_worker_events.payload`); the byte pointers are Lua strings and
/// that module's buffer, valid for the call.
#[repr(C)]
pub struct PostFfi {
    pub source: *const u8,
    pub event: *const u8,
    pub unique: *const u8,
    pub data: *const u8,
    pub source_len: usize,
    pub event_len: usize,
    pub unique_len: usize,
    pub data_len: usize,
    /// The `unique` claim's lifetime, seconds.
    pub ttl: f64,
    /// The API's limit (see [`PostArgs::max_payload`]) when `has_max`.
    pub max_payload: f64,
    /// Out: the seq, with [`POST_FFI_SEQ`].
    pub seq: f64,
    /// Out: the error, with [`POST_FFI_ERR`] (good until the next post).
    pub err: *const u8,
    pub err_len: usize,
    pub flags: i32,
    pub has_unique: u8,
    pub has_max: u8,
}

/// [`post_ffi`]: posted, `seq` holds the seq.
pub const POST_FFI_SEQ: c_int = 1;
/// [`post_ffi`]: not posted, its unique key is live (`POST_DEDUP`).
pub const POST_FFI_DUPLICATE: c_int = 0;
/// [`post_ffi`] (or its FFI wrapper): nothing done, the module is not
/// there to post (no pointer, a panic): use `native.post`, which says why.
pub const POST_FFI_NATIVE: c_int = -1;
/// [`post_ffi`]: failed, `err` says why.
pub const POST_FFI_ERR: c_int = -2;

thread_local! {
    /// The last FFI post's error text ([`PostFfi::err`] points into it).
    static POST_ERR: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Posts for consumer `id` what `p` holds (see [`PostFfi`] and the
/// `POST_FFI_*` results).
///
/// # Safety
/// The pointers in `p` are valid for their lengths (NULL with length 0).
pub unsafe fn post_ffi(id: u32, p: &mut PostFfi) -> c_int {
    let bytes = |ptr: *const u8, len: usize| -> &[u8] {
        if ptr.is_null() || len == 0 {
            &[]
        } else {
            // SAFETY: per the contract, `len` readable bytes at `ptr`.
            unsafe { core::slice::from_raw_parts(ptr, len) }
        }
    };
    let args = PostArgs {
        source: bytes(p.source, p.source_len),
        event: bytes(p.event, p.event_len),
        unique: (p.has_unique != 0).then(|| bytes(p.unique, p.unique_len)),
        ttl_ms: super::convert::secs_to_ms(p.ttl),
        flags: i64::from(p.flags),
        max_payload: (p.has_max != 0).then_some(p.max_payload),
    };
    let data = bytes(p.data, p.data_len);
    let res = DataLimit::of(id, &args).and_then(|limit| {
        // The native encoder's limit is exact (crate::wire::payload), so the
        // same bytes are refused or posted the same way on either path.
        if data.len() > limit.bytes {
            Err(limit.exceeded())
        } else {
            post_encoded(id, &args, data)
        }
    });
    match res {
        Ok(post::Posted::Seq(seq)) => {
            p.seq = seq as f64;
            POST_FFI_SEQ
        }
        Ok(post::Posted::Duplicate) => POST_FFI_DUPLICATE,
        Err(e) => POST_ERR.with(|s| {
            let mut s = s.borrow_mut();
            *s = e;
            p.err = s.as_ptr();
            p.err_len = s.len();
            POST_FFI_ERR
        }),
    }
}

/// One fetched record as LuaJIT FFI sees it (`ngx_worker_events_record_t`
/// in [`crate::lua::exports::CDEF`]). The byte pointers point into this
/// process' read buffer: valid until the next fetch, by any consumer, so the
/// Lua side copies what it keeps before it runs a handler.
#[repr(C)]
pub struct Record {
    pub source: *const u8,
    pub event: *const u8,
    pub unique: *const u8,
    pub data: *const u8,
    pub source_len: u32,
    pub event_len: u32,
    pub unique_len: u32,
    pub data_len: u32,
    /// The record's seq; with [`FETCH_LOST`], how many records were lost.
    pub seq: f64,
    /// The poster's pid; -1 for an event from another node.
    pub pid: i32,
    /// The poster's worker id; -1 when it has none (or came from another node).
    pub wid: i32,
    pub has_unique: u8,
    pub own: u8,
    pub has_wid: u8,
}

/// Reads consumer `id`'s next record into `r`: 0 (nothing), [`FETCH_EVENT`],
/// [`FETCH_LOST`] (`r.seq` lost records) or [`FETCH_BAD`] (`r.seq`: a record
/// whose parts do not fit it; the Lua side reports it as malformed).
pub fn fetch_into(id: u32, r: &mut Record) -> c_int {
    consumer::fetch(id, |fetched| match fetched {
        Fetched::Empty => 0,
        Fetched::Lost(n) => {
            r.seq = n as f64;
            FETCH_LOST as c_int
        }
        // The pointers below stay good until the next fetch (see
        // `consumer::fetch`).
        Fetched::Record(rh, buf) => fill(r, &rh, buf) as c_int,
    })
}

/// `r` pointing at the parts of the record `rh` in `buf`: [`FETCH_EVENT`],
/// or [`FETCH_BAD`] when they do not fit.
fn fill(r: &mut Record, rh: &RecordHeader, buf: &[u8]) -> i64 {
    let Some(v) = RecordView::parse(rh, buf) else {
        r.seq = rh.seq as f64;
        return FETCH_BAD;
    };
    let len = |b: &[u8]| u32::try_from(b.len()).unwrap_or(0);
    r.source = v.source.as_ptr();
    r.source_len = len(v.source);
    r.event = v.event.as_ptr();
    r.event_len = len(v.event);
    r.data = v.data.as_ptr();
    r.data_len = len(v.data);
    r.has_unique = v.unique.is_some() as u8;
    let unique = v.unique.unwrap_or_default();
    r.unique = unique.as_ptr();
    r.unique_len = len(unique);
    r.seq = v.seq as f64;
    r.pid = if v.remote { -1 } else { v.pid };
    let wid = v.wid.filter(|_| !v.remote);
    r.has_wid = wid.is_some() as u8;
    r.wid = wid.unwrap_or(-1);
    r.own = v.own as u8;
    FETCH_EVENT
}

/// `native.decode(bytes)` -> value | `nil, "failed decoding event data: ..."`:
/// the payload decoder on the Lua C API, for the records the Lua decoder
/// (`ngx_worker_events.payload`) leaves to it: it has the last word on
/// what a payload holds and on the error text.
///
/// # Safety
/// Called by Lua as a `lua_CFunction`.
pub unsafe extern "C-unwind" fn decode(l: *mut lua_State) -> c_int {
    // SAFETY: (whole function) called by Lua with `l` valid; the argument is
    // read only after checking its type; at most two pushes besides the
    // decoder's own (it checks the stack for nested tables itself).
    unsafe {
        if lua_type(l, 1) != LUA_TSTRING {
            return nil_err(l, "failed decoding event data: not a string");
        }
        let bytes = value::str_at(l, 1);
        match value::decode(l, bytes) {
            Ok(()) => 1,
            Err(e) => nil_err(l, &format!("failed decoding event data: {e}")),
        }
    }
}
