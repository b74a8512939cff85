//! Every `extern "C"` function Lua calls through LuaJIT FFI, and [`CDEF`],
//! the one declaration of them (the native table hands it to Lua).
//!
//! A `lua_CFunction` call aborts the LuaJIT trace it sits in; an FFI call
//! does not. The per-request fast path (`poll()` with nothing to do) goes
//! through here so the caller's request handler stays compiled.

use core::ffi::c_void;

use crate::ngx::catch_unwind_or;
use crate::ngx::lua_module::Subsystem;
use crate::runtime::state::Sema;
use crate::runtime::{attach, consumer};

/// The `ffi.cdef` for the functions below.
pub const CDEF: &str = "
typedef struct {
  const unsigned char *source, *event, *unique, *data;
  uint32_t source_len, event_len, unique_len, data_len;
  double seq;
  int32_t pid, wid;
  uint8_t has_unique, own, has_wid;
} ngx_worker_events_record_t;
int ngx_worker_events_fetch(int consumer, ngx_worker_events_record_t *record);
typedef struct {
  const char *source, *event, *unique;
  const unsigned char *data;
  size_t source_len, event_len, unique_len, data_len;
  double ttl, max_payload, seq;
  const char *err;
  size_t err_len;
  int32_t flags;
  uint8_t has_unique, has_max;
} ngx_worker_events_post_t;
int ngx_worker_events_post(int consumer, ngx_worker_events_post_t *post);
int ngx_worker_events_pid(void);
int ngx_worker_events_pending(int consumer);
int ngx_worker_events_set_sema(int consumer, void *sema);
int ngx_worker_events_test_hold_lock(void);
int ngx_worker_events_test_check_payload(const unsigned char *data, size_t len);
int ngx_worker_events_tasks_set_sema(void *sema, int stream);
void ngx_worker_events_next_turn(void *sema, int stream);
";

fn id(consumer: libc::c_int) -> u32 {
    u32::try_from(consumer).unwrap_or(0)
}

/// Reads `consumer`'s next record into `record` (see
/// [`crate::lua::native::bus::fetch_into`]): 0 when none is waiting (or
/// `record` is NULL).
///
/// # Safety
/// `record` is NULL or points to a writable `ngx_worker_events_record_t`
/// (LuaJIT FFI allocates it from [`CDEF`]).
#[no_mangle]
pub unsafe extern "C" fn ngx_worker_events_fetch(
    consumer: libc::c_int,
    record: *mut crate::lua::native::bus::Record,
) -> libc::c_int {
    // SAFETY: per the contract, a valid exclusive pointer or NULL.
    let Some(r) = (unsafe { record.as_mut() }) else {
        return 0;
    };
    catch_unwind_or(0, || crate::lua::native::bus::fetch_into(id(consumer), r))
}

/// Posts for `consumer` what `post` holds (see
/// [`crate::lua::native::bus::post_ffi`]): 1 posted (`post->seq`), 0 a
/// duplicate, -1 "use `native.post`", -2 failed (`post->err`).
///
/// # Safety
/// `post` is NULL or points to a writable `ngx_worker_events_post_t` whose
/// byte pointers are valid for their lengths.
#[no_mangle]
pub unsafe extern "C" fn ngx_worker_events_post(
    consumer: libc::c_int,
    post: *mut crate::lua::native::bus::PostFfi,
) -> libc::c_int {
    // SAFETY: per the contract, a valid exclusive pointer or NULL.
    let Some(p) = (unsafe { post.as_mut() }) else {
        return crate::lua::native::bus::POST_FFI_NATIVE;
    };
    catch_unwind_or(crate::lua::native::bus::POST_FFI_NATIVE, || {
        // SAFETY: per the contract, the pointers in `p` are valid.
        unsafe { crate::lua::native::bus::post_ffi(id(consumer), p) }
    })
}

/// This process' pid (`native.pid` without leaving the trace).
#[no_mangle]
pub extern "C" fn ngx_worker_events_pid() -> libc::c_int {
    crate::ngx::process::pid()
}

/// 1 if records are waiting for `consumer`, else 0 (also when not open).
#[no_mangle]
pub extern "C" fn ngx_worker_events_pending(consumer: libc::c_int) -> libc::c_int {
    catch_unwind_or(0, || consumer::pending(id(consumer)) as libc::c_int)
}

/// Registers the semaphore `consumer`'s loop waits on (NULL to unregister):
/// an `ngx_http_lua_sema_t`, or an `ngx_stream_lua_sema_t` for a consumer
/// opened in the stream subsystem. The Lua side keeps the semaphore
/// referenced until it unregisters it. Returns 1 when push wake-ups reach
/// this worker, else 0.
#[no_mangle]
pub extern "C" fn ngx_worker_events_set_sema(
    consumer: libc::c_int,
    sema: *mut c_void,
) -> libc::c_int {
    catch_unwind_or(0, || consumer::set_sema(id(consumer), sema) as libc::c_int)
}

fn sema(ptr: *mut c_void, stream: libc::c_int) -> Sema {
    Sema {
        ptr,
        subsystem: Subsystem::from_stream(stream != 0),
    }
}

/// Registers a semaphore a task loop waits on (`stream` 0: an
/// `ngx_http_lua_sema_t`, else an `ngx_stream_lua_sema_t`), posted once when
/// nginx starts shutting down. Returns 1 when that will happen, else 0.
#[no_mangle]
pub extern "C" fn ngx_worker_events_tasks_set_sema(
    ptr: *mut c_void,
    stream: libc::c_int,
) -> libc::c_int {
    catch_unwind_or(0, || {
        crate::runtime::tasks::set_shutdown_sema(sema(ptr, stream)) as libc::c_int
    })
}

/// Posts the semaphore `ptr` (`stream` as above) on the event loop's next
/// turn (after nginx polled for I/O). The Lua side keeps it referenced.
#[no_mangle]
pub extern "C" fn ngx_worker_events_next_turn(ptr: *mut c_void, stream: libc::c_int) {
    catch_unwind_or((), || crate::runtime::notify::next_turn(sema(ptr, stream)))
}

/// Test hook: 1 when the `len` bytes at `data` are exactly one encoded
/// value the native decoder accepts ([`crate::wire::payload::check`]), else
/// 0; `t/010-post.t` holds the Lua decoder to it. Pure: no state, no gate.
///
/// # Safety
/// `data` is valid for `len` bytes (or NULL with `len` 0).
#[no_mangle]
pub unsafe extern "C" fn ngx_worker_events_test_check_payload(
    data: *const u8,
    len: usize,
) -> libc::c_int {
    let bytes = if data.is_null() || len == 0 {
        &[][..]
    } else {
        // SAFETY: per the contract, `len` readable bytes at `data`.
        unsafe { core::slice::from_raw_parts(data, len) }
    };
    catch_unwind_or(0, || {
        crate::wire::payload::check(bytes).is_ok() as libc::c_int
    })
}

/// Test hook: takes the lock of the first zone this worker is attached to
/// and never releases it, so a test can SIGKILL a worker that holds it. Does nothing (returns 0) unless
/// nginx's environment has `NGX_WORKER_EVENTS_TEST_HOOKS=1` (`env` directive).
#[no_mangle]
pub extern "C" fn ngx_worker_events_test_hold_lock() -> libc::c_int {
    catch_unwind_or(0, || {
        if std::env::var_os("NGX_WORKER_EVENTS_TEST_HOOKS").is_none_or(|v| v != "1") {
            return 0;
        }
        attach::hold_lock_forever() as libc::c_int
    })
}
