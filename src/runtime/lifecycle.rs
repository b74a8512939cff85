//! Worker start and exit, from nginx's process hooks, whether or not any
//! Lua API is used.
//!
//! Start: attach to every zone of the module (a slot each: pid, worker
//! number, generation) and open the push socket. lua-nginx-module's
//! `init_worker_by_lua` may run before this hook (module order), so every
//! step is idempotent and Lua calls that need it attach lazily.
//!
//! Exit: stop receiving wake-ups, post the events consumers asked for at
//! exit (`resty.worker.events` asks for `stopping`; in the privileged agent
//! too), free the slots.

use crate::ngx::process::{self, NgxProcess};
use crate::ngx::shm;
use crate::runtime::notify;
use crate::runtime::state::STATE;
use crate::runtime::{attach, post};
use crate::wire::payload::Encoder;

/// `init_process`: a worker attaches to all our zones.
pub fn on_worker_start() {
    if !NgxProcess::current().serves_requests() {
        return;
    }
    for (name, handle) in shm::ours() {
        let _ = attach::attach_zone(&name, handle);
    }
    if crate::ngx::log::enabled(crate::ngx::log::NGX_LOG_DEBUG) {
        crate::wev_log!(DEBUG, "worker {} attached", process::pid());
    }
}

/// `exit_process`: last posts, then free the slots. OpenResty's privileged
/// agent (a helper that runs this hook too) makes its consumers' last posts.
pub fn on_worker_exit() {
    let kind = NgxProcess::current();
    if kind.serves_requests() {
        notify::stop();
        super::manager::on_worker_exit();
    } else if kind != NgxProcess::Helper {
        return;
    }
    let Ok((posts, zones)) = STATE.with(|st| {
        (
            core::mem::take(&mut st.exit_posts),
            core::mem::take(&mut st.zones),
        )
    }) else {
        return;
    };
    let mut nil = Encoder::new();
    nil.nil();
    for p in &posts {
        let Some(a) = zones.get(p.zone) else { continue };
        match a.handle.zone.ring().append(
            &a.handle,
            post::origin(true),
            &p.source,
            &p.event,
            None,
            nil.as_bytes(),
        ) {
            Ok(_) => notify::wake_others(&a.handle, a.slot),
            Err(e) => crate::wev_log!(
                ERR,
                "failed posting event \"{}\" at worker exit: {}",
                String::from_utf8_lossy(&p.event),
                e
            ),
        }
    }
    for a in &zones {
        if let Some(s) = a.slot {
            a.handle.zone.slots().release(s, process::pid());
        }
    }
}
