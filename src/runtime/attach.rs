//! Attaching this process to zones: its attachment (zone handle and worker
//! slot, taken on first use) in the per-process state.

use crate::ngx::process::{self, NgxProcess};
use crate::ngx::shm::ZoneHandle;
use crate::runtime::cell::Reentered;
use crate::runtime::notify;
use crate::runtime::resolve::{resolve, AttachError};
use crate::runtime::state::{Attachment, State, STATE};

/// Index of zone `name` in `st.zones`, attaching (and taking a slot, in a
/// worker) on first use.
pub(crate) fn attachment(st: &mut State, name: &str, handle: ZoneHandle) -> usize {
    if let Some(i) = st.zones.iter().position(|a| a.name == name) {
        return i;
    }
    let slot = take_slot(&handle);
    if slot.is_none() && NgxProcess::current().worker_number().is_some() {
        crate::wev_log!(
            WARN,
            "zone \"{}\": no free worker slot, push wake-ups disabled in this worker until one frees",
            name
        );
    }
    st.zones.push(Attachment {
        name: name.to_string(),
        handle,
        slot,
        pending: Default::default(),
    });
    st.zones.len() - 1
}

/// Attaches to the zone `name` stands for (see the module doc) and returns
/// its index in the process' attachments, its handle and this worker's slot.
pub fn attach_named(name: &str) -> Result<(usize, ZoneHandle, Option<usize>), AttachError> {
    match NgxProcess::current() {
        k if k.serves_requests() => {}
        // the master runs Lua only in init_by_lua*
        NgxProcess::Master => return Err(AttachError::InInit),
        _ => return Err(AttachError::NotAWorker),
    }
    let (zone, handle, _) = resolve(name)?;
    STATE
        .with(|st| {
            let i = attachment(st, &zone, handle);
            (i, st.zones[i].handle.clone(), st.zones[i].slot)
        })
        .map_err(AttachError::from)
}

/// Takes a slot of `handle`'s zone for this worker (none outside workers:
/// the master must not hold one for its whole life), push-enabled when this
/// worker listens.
pub(crate) fn take_slot(handle: &ZoneHandle) -> Option<usize> {
    let worker = NgxProcess::current().worker_number()?;
    let slots = handle.zone.slots();
    let pid = process::pid();
    let slot = slots.acquire(
        handle,
        pid,
        worker as i32,
        handle.generation,
        crate::ngx::wall_ms(),
        process::alive,
    )?;
    if notify::listen() {
        slots.set_token(slot, notify::token());
        slots.set_group(slot, notify::group());
        handle.zone.push_on(slot);
    }
    Some(slot)
}

/// Attaches to zone `name` (worker start: lifecycle, before any Lua API).
pub fn attach_zone(name: &str, handle: ZoneHandle) -> Result<(), Reentered> {
    STATE.with(|st| {
        attachment(st, name, handle);
    })
}

/// Test hook: takes the first attached zone's lock and never releases it.
pub fn hold_lock_forever() -> bool {
    STATE
        .with(|st| {
            st.zones
                .first()
                // never released: the held lock is leaked on purpose
                .map(|a| core::mem::forget(crate::zone::ZoneLock::lock(&a.handle)))
                .is_some()
        })
        .unwrap_or(false)
}
