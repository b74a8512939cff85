//! What goes over a wire, pure: the event payload format (`payload`), the
//! Redis protocol the cluster bridge speaks (`resp`: commands and replies;
//! `resp_reader`: the bounded incremental reply reader; `stream_entry`: one
//! `XREAD` entry read in place) and the entries' signature (`sign`,
//! HMAC-SHA256 for `secret=`). No nginx and no Lua types; everything here
//! runs under `cargo test`.

pub mod payload;
pub mod resp;
pub mod resp_reader;
pub mod sign;
pub mod stream_entry;
