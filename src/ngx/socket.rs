//! Abstract-namespace unix datagram sockets: one bound socket per worker,
//! registered in nginx's event loop, and one unbound socket to send from.
//! Callers pick the names (see `runtime::notify`: random ones).
//!
//! Abstract names (`sun_path[0] == 0`) leave no file behind and vanish with
//! the socket, so a crashed worker leaves nothing to clean up.

use core::ptr;
use std::io;

use ngx::ffi::{
    ngx_close_connection, ngx_connection_t, ngx_event_actions, ngx_event_handler_pt,
    ngx_handle_read_event, ngx_int_t,
};

/// The socket address for abstract name `name`.
fn address(name: &str) -> (libc::sockaddr_un, libc::socklen_t) {
    // SAFETY: sockaddr_un is plain data; all-zero is valid.
    let mut sa: libc::sockaddr_un = unsafe { core::mem::zeroed() };
    sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let n = name.len().min(sa.sun_path.len() - 1);
    // sun_path[0] stays 0: abstract namespace.
    for (i, b) in name.bytes().take(n).enumerate() {
        sa.sun_path[i + 1] = b as libc::c_char;
    }
    let len = core::mem::size_of::<libc::sa_family_t>() + 1 + n;
    (sa, len as libc::socklen_t)
}

fn dgram_socket() -> io::Result<libc::c_int> {
    // SAFETY: creating a socket; the descriptor is owned by the caller.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(fd)
    }
}

/// A bound socket whose readability calls an nginx event handler.
pub struct Listener {
    conn: *mut ngx_connection_t,
}

impl Listener {
    /// Binds `name` and registers the socket for reading with `handler`
    /// (called with the connection's read event; the connection is marked
    /// idle, so graceful shutdown calls it with `close` set).
    pub fn open(name: &str, handler: ngx_event_handler_pt) -> io::Result<Listener> {
        let fd = dgram_socket()?;
        let (sa, len) = address(name);
        // SAFETY: `sa` is a valid sockaddr_un of `len` bytes; `fd` is ours.
        if unsafe { libc::bind(fd, &sa as *const _ as *const libc::sockaddr, len) } != 0 {
            let e = io::Error::last_os_error();
            // SAFETY: closing our own descriptor.
            unsafe { libc::close(fd) };
            return Err(e);
        }
        let c = super::event::read_connection(fd, handler, true)?;
        Ok(Listener { conn: c })
    }

    /// The connection (for a timer's `data`).
    pub fn connection(&self) -> *mut ngx_connection_t {
        self.conn
    }

    /// Stops read notifications (a flood); [`Listener::resume`] restarts
    /// them. Graceful shutdown still calls the handler (nginx calls idle
    /// connections' handlers directly).
    pub fn pause(&self) {
        // SAFETY: our open connection; `del` is the event module's, and the
        // event is registered (active) or the call is skipped.
        unsafe {
            let rev = (*self.conn).read;
            if (*rev).active() != 0 {
                if let Some(del) = ngx_event_actions.del {
                    del(rev, (libc::EPOLLIN | libc::EPOLLRDHUP) as ngx_int_t, 0);
                }
            }
        }
    }

    /// Restarts read notifications after [`Listener::pause`].
    pub fn resume(&self) {
        // SAFETY: our open connection; with `ready` cleared nginx adds the
        // read event again (edge-triggered, as `open` did).
        unsafe {
            let rev = (*self.conn).read;
            if (*rev).active() == 0 {
                (*rev).set_ready(0);
                ngx_handle_read_event(rev, 0);
            }
        }
    }

    /// Reads and discards every queued datagram, up to 64 per system call
    /// (a flood costs little); re-arms the read event. Returns how many it
    /// read, and true when nginx is closing the connection (shutdown).
    pub fn drain(&self) -> (usize, bool) {
        const BATCH: usize = 64;
        let mut bufs = [[0u8; 8]; BATCH];
        // SAFETY: plain C structs; all-zero is valid, filled in below.
        let mut iov: [libc::iovec; BATCH] = unsafe { core::mem::zeroed() };
        // SAFETY: as above.
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { core::mem::zeroed() };
        for i in 0..BATCH {
            iov[i].iov_base = bufs[i].as_mut_ptr().cast();
            iov[i].iov_len = bufs[i].len();
            msgs[i].msg_hdr.msg_iov = &mut iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        let mut read = 0usize;
        // SAFETY: `conn` is open until `close`; every message points at a
        // local buffer that outlives the call.
        unsafe {
            let c = self.conn;
            loop {
                let n = libc::recvmmsg(
                    (*c).fd,
                    msgs.as_mut_ptr(),
                    BATCH as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    ptr::null_mut(),
                );
                read += n.max(0) as usize;
                if n < BATCH as libc::c_int {
                    break; // drained (or an error: the next readiness retries)
                }
            }
            if (*c).close() != 0 {
                return (read, true);
            }
            if (*(*c).read).active() != 0 {
                ngx_handle_read_event((*c).read, 0);
            }
        }
        (read, false)
    }

    /// Closes the socket and its connection.
    pub fn close(self) {
        // SAFETY: our connection, still open (close consumes the listener).
        unsafe { ngx_close_connection(self.conn) };
    }
}

/// An unbound socket for sending one-byte datagrams.
pub struct Sender {
    fd: libc::c_int,
}

impl Sender {
    /// A new sending socket.
    pub fn new() -> io::Result<Sender> {
        dgram_socket().map(|fd| Sender { fd })
    }

    /// Sends one byte to `name` without blocking.
    pub fn send(&self, name: &str) -> io::Result<()> {
        let (sa, len) = address(name);
        // SAFETY: valid address and a one-byte static buffer.
        let sent = unsafe {
            libc::sendto(
                self.fd,
                b"!".as_ptr().cast(),
                1,
                libc::MSG_DONTWAIT,
                &sa as *const _ as *const libc::sockaddr,
                len,
            )
        };
        if sent == 1 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        // SAFETY: closing our own descriptor once.
        unsafe { libc::close(self.fd) };
    }
}
