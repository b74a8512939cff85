//! The cluster bridge's replies to its commands other than `XREAD`
//! (`XADD` batches, `XINFO`, `XREVRANGE`), for `cluster_link.lua`: read as
//! they arrive through `resp_reader::Reader` (linear in the bytes received,
//! each reply bounded by `limit`) and handed to Lua as values when all `n`
//! are in.
//!
//! - `cluster_read("in"|"out", chunk|nil, n, limit, sparse)` -> `"more"` |
//!   `{ n values }` | nil, err. Values: strings (status, bulk), numbers,
//!   `false` (null), `{ false, msg }` (error reply), tables (arrays). With
//!   `sparse`, bulk string replies are left out (nil): an `XADD` batch's
//!   1024 ids make no Lua strings. A nil chunk forgets a partial read and
//!   frees the buffers.
//!
//! The replies read so far wait in one buffer (`resp_reader::Collected`:
//! no allocation per reply, and an `XADD` batch is 1024 replies).

use std::sync::Mutex;

use mlua::{Lua, LuaString, MultiValue, Table, Value};

use crate::wire::resp::{parse, Reply};
use crate::wire::resp_reader::{Collected, Reader, Step};

/// One connection's reader and the whole replies read so far.
struct Replies {
    reader: Reader,
    done: Collected,
}

/// The sending connection's replies (`XADD` batches).
static OUT: Mutex<Option<Replies>> = Mutex::new(None);
/// The reading connection's replies to other commands (`XINFO`, `XREVRANGE`).
static IN_CMD: Mutex<Option<Replies>> = Mutex::new(None);

fn values(lua: &Lua, r: &Reply<'_>) -> mlua::Result<Value> {
    Ok(match r {
        Reply::Status(s) | Reply::Bulk(Some(s)) => Value::String(lua.create_string(s)?),
        Reply::Bulk(None) | Reply::Array(None) => Value::Boolean(false),
        Reply::Int(i) => Value::Number(*i as f64),
        Reply::Error(e) => {
            let t = lua.create_table_with_capacity(2, 0)?;
            t.raw_set(1, false)?;
            t.raw_set(2, lua.create_string(e)?)?;
            Value::Table(t)
        }
        Reply::Array(Some(items)) => {
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, it) in items.iter().enumerate() {
                t.raw_set(i + 1, values(lua, it)?)?;
            }
            Value::Table(t)
        }
    })
}

fn err(lua: &Lua, msg: &str) -> mlua::Result<MultiValue> {
    Ok(MultiValue::from_vec(vec![
        Value::Nil,
        Value::String(lua.create_string(msg)?),
    ]))
}

/// Adds `cluster_read` to `t`.
pub fn add(lua: &Lua, t: &Table) -> mlua::Result<()> {
    t.set(
        "cluster_read",
        lua.create_function(
            |lua,
             (which, chunk, n, limit, sparse): (
                String,
                Option<LuaString>,
                Option<usize>,
                Option<usize>,
                Option<bool>,
            )| {
                let stat = if which == "in" { &IN_CMD } else { &OUT };
                let Ok(mut guard) = stat.lock() else {
                    return err(lua, "busy");
                };
                let limit = limit.unwrap_or(64 * 1024);
                let st = guard.get_or_insert_with(|| Replies {
                    reader: Reader::new(0, limit),
                    done: Collected::default(),
                });
                let Some(chunk) = chunk else {
                    st.reader.reset();
                    st.done.free();
                    return Ok(MultiValue::new());
                };
                let n = n.unwrap_or(1).max(1);
                if st.done.is_empty() {
                    st.reader.expect(0, limit);
                }
                st.reader.push(&chunk.as_bytes());
                while st.done.len() < n {
                    match st.reader.next() {
                        Ok(Step::More) => {
                            return Ok(MultiValue::from_vec(vec![Value::String(
                                lua.create_string("more")?,
                            )]))
                        }
                        Ok(Step::Value(span)) => st.done.push(st.reader.slice(span)),
                        Ok(_) => {}
                        Err(e) => {
                            st.reader.reset();
                            st.done.free();
                            return err(lua, &e.to_string());
                        }
                    }
                }
                let sparse = sparse.unwrap_or(false);
                let out = lua.create_table_with_capacity(if sparse { 0 } else { n }, 0)?;
                for (i, bytes) in st.done.iter().enumerate() {
                    let v = match parse(bytes) {
                        Ok(Some((Reply::Bulk(Some(_)), _))) if sparse => continue,
                        Ok(Some((r, _))) => values(lua, &r)?,
                        _ => Value::Boolean(false),
                    };
                    out.raw_set(i + 1, v)?;
                }
                st.done.clear();
                Ok(MultiValue::from_vec(vec![Value::Table(out)]))
            },
        )?,
    )
}
