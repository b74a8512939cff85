//! The nginx side of the status endpoint: the content handler, over the
//! `ngx` crate's `Request`.

use ngx::core::{Buffer, Status};
use ngx::ffi::{ngx_chain_t, ngx_http_request_t, ngx_int_t, ngx_str_t};
use ngx::http::{HTTPStatus, HttpModuleLocationConf, Method, Request};

use super::{parse_args, wants_prometheus, Format, StatusConf};
use crate::runtime::report;

/// Sends `status` with `body` of `content_type`.
fn send(r: &mut Request, status: u16, content_type: &'static str, body: &str) -> ngx_int_t {
    r.set_status(HTTPStatus::from_u16(status).unwrap_or(HTTPStatus::INTERNAL_SERVER_ERROR));
    let ct = ngx_str_t {
        len: content_type.len(),
        data: content_type.as_ptr().cast_mut(),
    };
    let raw: &mut ngx_http_request_t = r.as_mut();
    raw.headers_out.content_type = ct;
    raw.headers_out.content_type_len = content_type.len();
    r.set_content_length_n(body.len());
    let rc = r.send_header();
    if rc == Status::NGX_ERROR || rc.0 > Status::NGX_OK.0 || r.header_only() {
        return rc.0;
    }
    let Some(mut buf) = r.pool().create_buffer_from_str(body) else {
        return Status::NGX_ERROR.0;
    };
    buf.set_last_buf(true);
    buf.set_last_in_chain(true);
    let mut out = ngx_chain_t {
        buf: buf.as_ngx_buf_mut(),
        next: core::ptr::null_mut(),
    };
    r.output_filter(&mut out).0
}

/// The content handler of a `worker_events_status` location of module `M`.
///
/// # Safety
/// nginx calls it with a valid request, in a location whose configuration
/// of `M` is a [`StatusConf`].
pub unsafe extern "C" fn handler<M>(r: *mut ngx_http_request_t) -> ngx_int_t
where
    M: HttpModuleLocationConf<LocationConf = StatusConf>,
{
    crate::ngx::catch_unwind_or(HTTPStatus::INTERNAL_SERVER_ERROR.0 as ngx_int_t, || {
        // SAFETY: nginx passes a valid request, which `Request` wraps.
        let r = unsafe { Request::from_ngx_http_request(r) };
        let m = r.method();
        if m != Method::GET && m != Method::HEAD {
            return HTTPStatus::NOT_ALLOWED.0 as ngx_int_t;
        }
        let rc = r.discard_request_body();
        if rc != Status::NGX_OK {
            return rc.0;
        }
        let Some(zone) = M::location_conf(r).and_then(|c| c.zone.clone()) else {
            return Status::NGX_DECLINED.0;
        };
        let args = r.as_ref().args;
        let format = match parse_args(args.as_bytes()) {
            Ok(Some(f)) => f,
            Ok(None) => {
                let accept = r
                    .headers_in_iterator()
                    .find(|(k, _)| k.as_bytes().eq_ignore_ascii_case(b"accept"));
                match accept {
                    Some((_, a)) if wants_prometheus(a.as_bytes()) => Format::Prometheus,
                    _ => Format::Json,
                }
            }
            Err(reason) => return send(r, 400, "text/plain", &format!("{reason}\n")),
        };
        match report::render(&zone, format == Format::Prometheus) {
            Ok(body) => {
                let ct = match format {
                    Format::Json => "application/json",
                    Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
                };
                send(r, 200, ct, &body)
            }
            Err(e) => {
                let body = format!("{}{e}\n", crate::ngx::log::PREFIX);
                send(r, 500, "text/plain", &body)
            }
        }
    })
}
