//! The nginx side of the status endpoint: the location configuration, the
//! snapshot of a zone, and the content handler.

use core::sync::atomic::{AtomicUsize, Ordering};

use ngx::ffi::{
    ngx_buf_t, ngx_chain_t, ngx_create_temp_buf, ngx_http_discard_request_body,
    ngx_http_output_filter, ngx_http_request_t, ngx_http_send_header, ngx_int_t, ngx_list_part_t,
    ngx_str_t, ngx_table_elt_t, NGX_DECLINED, NGX_ERROR, NGX_HTTP_GET, NGX_HTTP_HEAD,
    NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_HTTP_NOT_ALLOWED, NGX_OK,
};

use crate::ngx::process;
use crate::runtime::attach::{self, AttachError};
use crate::zone::stats::ZoneStats;

use super::{parse_args, render as view, wants_prometheus, Format};

/// `worker_events_status`' location configuration.
#[derive(Debug, Default)]
pub struct StatusConf {
    /// Set in a location with the directive: the zone it reports ("" for
    /// the default zone).
    pub zone: Option<String>,
}

/// This module's `ctx_index` (found at configuration time: the status
/// handler reads its location configuration with it).
static CTX_INDEX: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Records the module's `ctx_index`.
pub fn set_ctx_index(i: usize) {
    CTX_INDEX.store(i, Ordering::Relaxed);
}

/// The snapshot of zone `name` ("" for the default zone): its name, counters,
/// which worker pids are alive, live claims.
pub fn snapshot(name: &str) -> Result<(String, ZoneStats, Vec<bool>, u64), AttachError> {
    let (zone, handle, _) = attach::resolve(name)?;
    let stats = handle.zone.stats();
    let alive = stats
        .workers
        .iter()
        .map(|o| process::alive(o.pid))
        .collect();
    let live = live_claims(&handle);
    Ok((zone, stats, alive, live))
}

/// How long a worker reuses its count of live claims: counting scans the
/// whole claims table (millions of entries in a large zone), which must not
/// happen on every scrape.
const LIVE_CLAIMS_TTL_MS: u64 = 1000;

/// (zone region address, counted at (monotonic ms), count), per zone.
static LIVE_CLAIMS: std::sync::Mutex<Vec<(usize, u64, u64)>> = std::sync::Mutex::new(Vec::new());

/// The zone's live claims, counted at most once a second in this worker.
fn live_claims(handle: &crate::ngx::shm::ZoneHandle) -> u64 {
    let now = crate::ngx::monotonic_us() / 1000;
    let base = handle.zone.base() as usize;
    let Ok(mut cache) = LIVE_CLAIMS.lock() else {
        return handle.zone.claims().live(now) as u64;
    };
    if let Some(&(_, at, n)) = cache.iter().find(|&&(b, _, _)| b == base) {
        if now.saturating_sub(at) < LIVE_CLAIMS_TTL_MS {
            return n;
        }
    }
    let n = handle.zone.claims().live(now) as u64;
    cache.retain(|&(b, _, _)| b != base);
    cache.push((base, now, n));
    n
}

/// Renders zone `name`'s snapshot with `f`.
fn with_view<R>(name: &str, f: impl FnOnce(&view::View) -> R) -> Result<R, AttachError> {
    let (zone, stats, alive, claims_live) = snapshot(name)?;
    let conf = crate::cluster_conf::active();
    let cluster = conf.as_ref().and_then(|c| {
        let (cz, _, _) = crate::runtime::attach::resolve(&c.zone).ok()?;
        (cz == zone).then_some(super::cluster::ClusterInfo {
            node: &c.node,
            stream: &c.stream,
        })
    });
    let v = view::View {
        cluster,
        zone: &zone,
        stats: &stats,
        alive: &alive,
        claims_live,
        now_mono_ms: crate::ngx::monotonic_us() / 1000,
    };
    Ok(f(&v))
}

/// The JSON document of zone `name` (what Lua `stats().status` returns).
pub fn document(name: &str) -> Result<serde_json::Value, AttachError> {
    with_view(name, view::json)
}

/// The document for zone `name` in `format`.
pub fn render(name: &str, format: Format) -> Result<Vec<u8>, AttachError> {
    with_view(name, |v| match format {
        Format::Json => {
            let mut b = serde_json::to_vec_pretty(&view::json(v)).unwrap_or_default();
            b.push(b'\n');
            b
        }
        Format::Prometheus => view::prometheus(v).into_bytes(),
    })
}

/// The value of request header `name` (case-insensitive), if present.
///
/// # Safety
/// `r` is a valid request.
unsafe fn header_in<'a>(r: *mut ngx_http_request_t, name: &[u8]) -> Option<&'a [u8]> {
    // SAFETY: (whole function) walking the request's header list, valid for
    // the request's life.
    unsafe {
        let mut part: *const ngx_list_part_t = &(*r).headers_in.headers.part;
        while !part.is_null() {
            let elts = (*part).elts as *const ngx_table_elt_t;
            for i in 0..(*part).nelts {
                let h = &*elts.add(i);
                if h.key.as_bytes().eq_ignore_ascii_case(name) {
                    return Some(h.value.as_bytes());
                }
            }
            part = (*part).next;
        }
    }
    None
}

/// Sends `status` with `body` of `content_type`.
///
/// # Safety
/// `r` is a valid request in its content phase.
unsafe fn send(
    r: *mut ngx_http_request_t,
    status: usize,
    content_type: &'static str,
    body: &[u8],
) -> ngx_int_t {
    // SAFETY: (whole function) `r` is valid; the buffer comes from its pool
    // and lives as long as the request.
    unsafe {
        (*r).headers_out.status = status;
        (*r).headers_out.content_type = ngx_str_t {
            len: content_type.len(),
            data: content_type.as_ptr().cast_mut(),
        };
        (*r).headers_out.content_type_len = content_type.len();
        (*r).headers_out.content_length_n = body.len() as _;
        let rc = ngx_http_send_header(r);
        if rc == NGX_ERROR as ngx_int_t || rc > NGX_OK as ngx_int_t || (*r).header_only() != 0 {
            return rc;
        }
        let b: *mut ngx_buf_t = ngx_create_temp_buf((*r).pool, body.len().max(1));
        if b.is_null() {
            return NGX_ERROR as ngx_int_t;
        }
        core::ptr::copy_nonoverlapping(body.as_ptr(), (*b).pos, body.len());
        (*b).last = (*b).pos.add(body.len());
        (*b).set_last_buf(1);
        (*b).set_last_in_chain(1);
        let mut out = ngx_chain_t {
            buf: b,
            next: core::ptr::null_mut(),
        };
        ngx_http_output_filter(r, &mut out)
    }
}

/// The content handler of a `worker_events_status` location.
///
/// # Safety
/// nginx calls it with a valid request.
pub unsafe extern "C" fn handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    crate::ngx::catch_unwind_or(NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t, || {
        // SAFETY: (whole closure) nginx passes a valid request; our location
        // configuration sits at our ctx_index.
        unsafe {
            if (*r).method & (NGX_HTTP_GET | NGX_HTTP_HEAD) as usize == 0 {
                return NGX_HTTP_NOT_ALLOWED as ngx_int_t;
            }
            let rc = ngx_http_discard_request_body(r);
            if rc != NGX_OK as ngx_int_t {
                return rc;
            }
            let idx = CTX_INDEX.load(Ordering::Relaxed);
            if idx == usize::MAX {
                return NGX_DECLINED as ngx_int_t;
            }
            let conf = *(*r).loc_conf.add(idx) as *const StatusConf;
            let zone = (*conf).zone.clone().unwrap_or_default();
            let format = match parse_args((*r).args.as_bytes()) {
                Ok(Some(f)) => f,
                Ok(None) => match header_in(r, b"accept") {
                    Some(a) if wants_prometheus(a) => Format::Prometheus,
                    _ => Format::Json,
                },
                Err(reason) => {
                    let body = format!("{reason}\n");
                    return send(r, 400, "text/plain", body.as_bytes());
                }
            };
            match render(&zone, format) {
                Ok(body) => {
                    let ct = match format {
                        Format::Json => "application/json",
                        Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
                    };
                    send(r, 200, ct, &body)
                }
                Err(e) => {
                    let body = format!("{}{e}\n", crate::ngx::log::PREFIX);
                    send(r, 500, "text/plain", body.as_bytes())
                }
            }
        }
    })
}
