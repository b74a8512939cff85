//! Eventfd doorbells for the workers of one configuration cycle.
//!
//! When a cycle is committed (`init_module`, in the master, or the single
//! process), the module creates one eventfd per worker the cycle will fork
//! (`worker_processes`), and one more that they all watch, tagged with a
//! random group id; the workers inherit them all. Worker `n` watches
//! eventfd `n` and the shared one in its event loop (duplicate descriptors,
//! so closing its connections never closes the ones the others write to).
//! A worker of the same group rings one sleeping worker with one `write` to
//! its eventfd, and several with one `write` to the shared one, after it
//! has set every one's flag: the kernel wakes them all within that call,
//! and the last of 3 wakes about 30 µs sooner than after a write each
//! (`scripts/bench wake`). The shared counter is never read: a worker that
//! reset it before another worker's `epoll_wait` collected the ring would
//! hide the ring from that worker (edge-triggered epoll reports an eventfd
//! only while its counter is not 0); it grows by one per ring, far from its
//! 2^64 limit.
//! A crashed worker's replacement gets the same number, so it watches the
//! same eventfd. The master keeps one group: committing the next cycle
//! closes the previous group's descriptors in the master (the workers
//! forked before keep their own copies).
//!
//! Across groups (old and new generations during a reload) nobody shares an
//! eventfd: `runtime::notify` uses its datagram sockets there. What it
//! carries is a doorbell only, like the datagram: what wakes a consumer is
//! the flag in the zone. Nobody outside nginx's processes holds these
//! descriptors, so nobody else can ring them.

use core::ffi::c_int;
use core::ptr;
use std::io;
use std::sync::Mutex;

use ngx::ffi::{
    ngx_close_connection, ngx_connection_t, ngx_core_conf_t, ngx_core_module, ngx_cycle_t,
    ngx_event_handler_pt, ngx_event_t, ngx_handle_read_event,
};

/// More workers than this get no eventfds (datagrams only).
const MAX_WORKERS: usize = 1024;

/// One cycle's eventfds: index = `ngx_worker` number, then the shared one.
struct Group {
    id: u64,
    fds: Vec<c_int>,
}

impl Group {
    /// The workers' eventfds (without the shared one).
    fn workers(&self) -> &[c_int] {
        &self.fds[..self.fds.len().saturating_sub(1)]
    }
}

impl Group {
    fn close(self) {
        for fd in self.fds {
            // SAFETY: our own descriptors, closed once (the group is consumed).
            unsafe { libc::close(fd) };
        }
    }
}

/// This process' group: created in the master, inherited through fork.
static GROUP: Mutex<Option<Group>> = Mutex::new(None);

fn random_id() -> u64 {
    super::random_bytes().map_or(0, u64::from_ne_bytes)
}

/// The committed cycle's `worker_processes`.
///
/// # Safety
/// `cycle` is a committed cycle (its core module conf is set).
unsafe fn worker_processes(cycle: *const ngx_cycle_t) -> usize {
    // SAFETY: per the contract, `conf_ctx[ngx_core_module.index]` holds
    // the core module's ngx_core_conf_t.
    unsafe {
        let ctx = (*cycle).conf_ctx;
        if ctx.is_null() {
            return 0;
        }
        let ccf = *ctx.add(ngx_core_module.index) as *const ngx_core_conf_t;
        ccf.as_ref()
            .map_or(0, |c| usize::try_from(c.worker_processes).unwrap_or(0))
    }
}

/// Creates the group of `cycle`'s workers and closes the previous one
/// (call in `init_module`). Without eventfds (none left, too many workers)
/// there is no group, and wake-ups go by datagram.
///
/// # Safety
/// `cycle` is the committed cycle.
pub unsafe fn commit(cycle: *const ngx_cycle_t) {
    // SAFETY: per the contract.
    let n = unsafe { worker_processes(cycle) };
    let mut next = None;
    let id = random_id();
    if (2..=MAX_WORKERS).contains(&n) && id != 0 {
        let mut fds = Vec::with_capacity(n + 1);
        for _ in 0..=n {
            // SAFETY: creating a descriptor we own.
            let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
            if fd < 0 {
                break;
            }
            fds.push(fd);
        }
        let group = Group { id, fds };
        if group.fds.len() == n + 1 {
            next = Some(group);
        } else {
            group.close();
        }
    }
    let mut g = GROUP.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(old) = core::mem::replace(&mut *g, next) {
        old.close();
    }
}

/// This process' group, when worker `worker` has an eventfd in it: the
/// group's id, its eventfds by worker number, and the shared one.
pub fn lookup(worker: usize) -> Option<(u64, Vec<c_int>, c_int)> {
    let g = GROUP.lock().unwrap_or_else(|e| e.into_inner());
    let g = g.as_ref().filter(|g| worker < g.workers().len())?;
    Some((g.id, g.workers().to_vec(), *g.fds.last()?))
}

/// Rings `fd` (adds 1 to its counter) without blocking.
pub fn ring(fd: c_int) -> io::Result<()> {
    let one: u64 = 1;
    // SAFETY: writing 8 bytes from a local to an eventfd of our group.
    let n = unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
    if n == 8 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A duplicate of one of the group's eventfds, watched by nginx's event loop.
pub struct Watch {
    conn: *mut ngx_connection_t,
    /// Reset the counter on each event (not for the shared eventfd).
    consume: bool,
}

impl Watch {
    /// Watches eventfd `fd` for reading with `handler` (called with the
    /// connection's read event). Not an idle connection: shutdown does not
    /// call it (the datagram listener tells the loops). `consume`: each
    /// [`Watch::drain`] resets the counter (a worker's own eventfd; never
    /// the shared one, see the module docs).
    pub fn open(fd: c_int, handler: ngx_event_handler_pt, consume: bool) -> io::Result<Watch> {
        // SAFETY: duplicating a descriptor of our group; the copy is ours.
        let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
        if dup < 0 {
            return Err(io::Error::last_os_error());
        }
        let c = super::event::read_connection(dup, handler, false)?;
        Ok(Watch { conn: c, consume })
    }

    /// True when `ev` is this watch's read event.
    pub fn is(&self, ev: *const ngx_event_t) -> bool {
        // SAFETY: our open connection.
        unsafe { ptr::eq((*self.conn).read, ev) }
    }

    /// Resets the counter when the watch consumes it (the rings so far are
    /// seen) and re-arms the event.
    pub fn drain(&self) -> u64 {
        let mut n: u64 = 0;
        // SAFETY: our open connection; reading 8 bytes into a local.
        unsafe {
            let c = self.conn;
            if self.consume && libc::read((*c).fd, (&mut n as *mut u64).cast(), 8) != 8 {
                n = 0;
            }
            if (*(*c).read).active() != 0 {
                ngx_handle_read_event((*c).read, 0);
            }
        }
        n
    }

    /// Stops watching (closes the duplicate and its connection).
    pub fn close(self) {
        // SAFETY: our connection, still open (close consumes the watch).
        unsafe { ngx_close_connection(self.conn) };
    }
}
