//! Lua values <-> the payload codec (`crate::codec`).
//!
//! Encoding walks a Lua value depth-first and refuses what cjson refuses
//! (functions, userdata, cdata, threads, table keys that are not strings,
//! numbers or booleans, nesting beyond `codec::MAX_DEPTH`; a cycle ends as
//! excessive nesting, as in cjson). Decoding rebuilds tables with the right
//! array/hash sizes. Metatables are neither encoded nor consulted.

use mlua::{Lua, Table, Value};

use crate::codec::{DecodeError, Decoder, Encoder, Token, MAX_DEPTH};

/// Encodes `v` into `enc`; the error is a human-readable reason.
pub fn encode(enc: &mut Encoder, v: &Value) -> Result<(), String> {
    encode_at(enc, v, 0)
}

fn unsupported(v: &Value) -> String {
    let t = match v {
        Value::LightUserData(_) => "lightuserdata",
        Value::Other(_) => "cdata",
        v => v.type_name(),
    };
    format!("cannot serialise {t}: type not supported")
}

fn encode_at(enc: &mut Encoder, v: &Value, depth: usize) -> Result<(), String> {
    match v {
        Value::Nil => enc.nil(),
        Value::Boolean(b) => enc.boolean(*b),
        Value::LightUserData(p) if p.0.is_null() => enc.null(),
        Value::Integer(i) => enc.int(*i),
        Value::Number(n) => enc.number(*n),
        Value::String(s) => enc.string(&s.as_bytes()),
        Value::Table(t) => encode_table(enc, t, depth + 1)?,
        other => return Err(unsupported(other)),
    }
    Ok(())
}

fn encode_table(enc: &mut Encoder, t: &Table, depth: usize) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "cannot serialise table: excessive nesting ({depth})"
        ));
    }
    let n = t.raw_len();
    let mut array = Vec::with_capacity(n);
    for i in 1..=n {
        match t.raw_get::<Value>(i).map_err(|e| e.to_string())? {
            Value::Nil => break,
            v => array.push(v),
        }
    }
    let m = array.len();
    let in_array = |k: &Value| match k {
        Value::Integer(i) => *i >= 1 && (*i as usize) <= m,
        Value::Number(f) => f.fract() == 0.0 && *f >= 1.0 && (*f as usize) <= m,
        _ => false,
    };
    let mut hash = Vec::new();
    for pair in t.pairs::<Value, Value>() {
        let (k, v) = pair.map_err(|e| e.to_string())?;
        if in_array(&k) {
            continue;
        }
        match k {
            Value::String(_) | Value::Integer(_) | Value::Number(_) | Value::Boolean(_) => {
                hash.push((k, v))
            }
            other => {
                return Err(format!(
                    "cannot serialise {}: table key must be a number, string or boolean",
                    other.type_name()
                ))
            }
        }
    }
    enc.table(m, hash.len());
    for v in &array {
        encode_at(enc, v, depth)?;
    }
    for (k, v) in &hash {
        encode_at(enc, k, depth)?;
        encode_at(enc, v, depth)?;
    }
    Ok(())
}

/// Decodes a whole payload into a Lua value.
pub fn decode(lua: &Lua, bytes: &[u8]) -> Result<Value, String> {
    let mut d = Decoder::new(bytes);
    let v = decode_at(lua, &mut d, 0).map_err(|e| e.to_string())?;
    d.finish().map_err(|e| e.to_string())?;
    Ok(v)
}

#[derive(Debug)]
enum Error {
    Codec(DecodeError),
    Lua(mlua::Error),
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Codec(e) => write!(f, "{e}"),
            Error::Lua(e) => write!(f, "{e}"),
        }
    }
}

impl From<DecodeError> for Error {
    fn from(e: DecodeError) -> Self {
        Error::Codec(e)
    }
}

impl From<mlua::Error> for Error {
    fn from(e: mlua::Error) -> Self {
        Error::Lua(e)
    }
}

fn decode_at(lua: &Lua, d: &mut Decoder, depth: usize) -> Result<Value, Error> {
    if depth > MAX_DEPTH {
        return Err(DecodeError::TooDeep.into());
    }
    Ok(match d.next()? {
        Token::Nil => Value::Nil,
        Token::Bool(b) => Value::Boolean(b),
        Token::Null => Value::NULL,
        Token::Int(i) => Value::Number(i as f64),
        Token::Num(n) => Value::Number(n),
        Token::Str(s) => Value::String(lua.create_string(s)?),
        Token::Table { n_array, n_hash } => {
            let t = lua.create_table_with_capacity(n_array, n_hash)?;
            for i in 1..=n_array {
                t.raw_set(i, decode_at(lua, d, depth + 1)?)?;
            }
            for _ in 0..n_hash {
                let k = decode_at(lua, d, depth + 1)?;
                let v = decode_at(lua, d, depth + 1)?;
                if !k.is_nil() {
                    t.raw_set(k, v)?;
                }
            }
            Value::Table(t)
        }
    })
}
