//! What kind of nginx process this is, and its pid.

use ngx::ffi::{
    ngx_pid, ngx_process, ngx_worker, NGX_PROCESS_HELPER, NGX_PROCESS_MASTER,
    NGX_PROCESS_SIGNALLER, NGX_PROCESS_SINGLE, NGX_PROCESS_WORKER,
};

/// The kind of the current process (as nginx-acme's `NgxProcess`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NgxProcess {
    /// `master_process off`: one process does everything.
    Single,
    /// The master (also the process running `init_by_lua` before it forks).
    Master,
    /// `nginx -s ...`.
    Signaller,
    /// A worker, with its `ngx_worker` number.
    Worker(usize),
    /// Cache manager or cache loader.
    Helper,
}

impl NgxProcess {
    /// The current process.
    pub fn current() -> NgxProcess {
        // SAFETY: nginx process globals, written by nginx right after fork and
        // read here on the event-loop thread.
        let (kind, worker) = unsafe { (ngx_process as u32, ngx_worker) };
        match kind {
            NGX_PROCESS_SINGLE => NgxProcess::Single,
            NGX_PROCESS_MASTER => NgxProcess::Master,
            NGX_PROCESS_SIGNALLER => NgxProcess::Signaller,
            NGX_PROCESS_WORKER => NgxProcess::Worker(worker),
            NGX_PROCESS_HELPER => NgxProcess::Helper,
            _ => NgxProcess::Helper,
        }
    }

    /// True for a process that serves requests (a worker, or single mode).
    pub fn serves_requests(self) -> bool {
        matches!(self, NgxProcess::Single | NgxProcess::Worker(_))
    }

    /// The `ngx_worker` number (0 in single mode), if this serves requests.
    pub fn worker_number(self) -> Option<usize> {
        match self {
            NgxProcess::Worker(n) => Some(n),
            NgxProcess::Single => Some(0),
            _ => None,
        }
    }
}

/// The current pid (nginx's `ngx_pid`, set in every process right after
/// fork: a memory read, unlike `getpid()`, which is a system call).
pub fn pid() -> i32 {
    // SAFETY: reading an nginx process-global integer.
    unsafe { ngx_pid }
}

/// True while the process with this pid exists (signal 0 only checks).
pub fn alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 sends nothing.
    unsafe { libc::kill(pid, 0) == 0 || *libc::__errno_location() != libc::ESRCH }
}
