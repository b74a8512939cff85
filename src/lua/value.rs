//! Lua values <-> the payload codec (`crate::wire::payload`), on the raw C stack.
//!
//! This is the per-event hot path, so it talks to the Lua C API directly
//! rather than through mlua's value handles (which cost a registry/aux-stack
//! round trip per value).
//!
//! Encoding walks a value depth-first and refuses what cjson refuses
//! (functions, userdata, cdata, threads, table keys that are not strings,
//! numbers or booleans, nesting beyond `codec::MAX_DEPTH`; a cycle ends as
//! excessive nesting, as in cjson). It never runs Lua code: no metamethods
//! are consulted, and number keys are read with `lua_tonumber` (never
//! `lua_tolstring`, which would convert them in place under `lua_next`).
//! Decoding pushes exactly one value and rebuilds tables with their sizes.

use core::ffi::{c_char, c_int};

use mlua::ffi::{
    lua_State, lua_checkstack, lua_createtable, lua_gettop, lua_next, lua_objlen, lua_pushboolean,
    lua_pushlightuserdata, lua_pushlstring_, lua_pushnil, lua_pushnumber, lua_rawgeti_, lua_rawset,
    lua_rawseti_, lua_settop, lua_toboolean, lua_tolstring, lua_tonumber, lua_touserdata, lua_type,
    LUA_TBOOLEAN, LUA_TLIGHTUSERDATA, LUA_TNIL, LUA_TNUMBER, LUA_TSTRING, LUA_TTABLE,
};

use crate::wire::payload::{Decoder, Encoder, Token, MAX_DEPTH};

fn type_name(t: c_int) -> &'static str {
    match t {
        LUA_TNIL => "nil",
        LUA_TBOOLEAN => "boolean",
        LUA_TLIGHTUSERDATA => "lightuserdata",
        LUA_TNUMBER => "number",
        LUA_TSTRING => "string",
        LUA_TTABLE => "table",
        6 => "function",
        7 => "userdata",
        8 => "thread",
        10 => "cdata",
        _ => "value",
    }
}

/// Bytes of the string at `idx` (which must be a string, not a number).
///
/// # Safety
/// `l` is a valid state and `idx` a valid index holding a string; the slice
/// lives as long as the string stays on the stack.
pub unsafe fn str_at<'a>(l: *mut lua_State, idx: c_int) -> &'a [u8] {
    let mut len = 0usize;
    // SAFETY: per the contract, a string: lua_tolstring does not convert it.
    let p = unsafe { lua_tolstring(l, idx, &mut len) };
    if p.is_null() {
        return &[];
    }
    // SAFETY: Lua guarantees `len` readable bytes at `p` while the string lives.
    unsafe { core::slice::from_raw_parts(p as *const u8, len) }
}

/// Encodes the value at absolute index `idx` into `enc`.
///
/// # Safety
/// `l` is a valid state on the event-loop thread and `idx` a valid absolute
/// index. The stack is left as it was.
pub unsafe fn encode(l: *mut lua_State, idx: c_int, enc: &mut Encoder) -> Result<(), String> {
    // SAFETY: forwarded contract.
    unsafe { encode_at(l, idx, enc, 0) }.and_then(|()| within_limit(enc))
}

unsafe fn encode_at(
    l: *mut lua_State,
    idx: c_int,
    enc: &mut Encoder,
    depth: usize,
) -> Result<(), String> {
    // SAFETY: (whole function) `idx` is a valid absolute index; every push
    // below is matched by a pop before returning, and lua_checkstack guards
    // the recursion's stack use.
    unsafe {
        match lua_type(l, idx) {
            LUA_TNIL => enc.nil(),
            LUA_TBOOLEAN => enc.boolean(lua_toboolean(l, idx) != 0),
            LUA_TNUMBER => enc.number(lua_tonumber(l, idx)),
            LUA_TSTRING => enc.string(str_at(l, idx)),
            LUA_TLIGHTUSERDATA if lua_touserdata(l, idx).is_null() => enc.null(),
            LUA_TTABLE => encode_table(l, idx, enc, depth + 1)?,
            t => {
                return Err(format!(
                    "cannot serialise {}: type not supported",
                    type_name(t)
                ))
            }
        }
    }
    Ok(())
}

/// What [`encode`] returns once the encoder's limit is exceeded (it stops
/// walking the value there); the caller words the error, it knows the limit.
pub const TOO_LARGE: &str = "payload too large";

fn within_limit(enc: &Encoder) -> Result<(), String> {
    if enc.exceeded() {
        Err(TOO_LARGE.into())
    } else {
        Ok(())
    }
}

fn is_array_key(l: *mut lua_State, idx: c_int, m: usize) -> bool {
    // SAFETY: `idx` is a valid index; reading a number does not convert it.
    unsafe {
        if lua_type(l, idx) != LUA_TNUMBER {
            return false;
        }
        let k = lua_tonumber(l, idx);
        k.fract() == 0.0 && k >= 1.0 && k <= m as f64
    }
}

unsafe fn encode_table(
    l: *mut lua_State,
    idx: c_int,
    enc: &mut Encoder,
    depth: usize,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "cannot serialise table: excessive nesting ({depth})"
        ));
    }
    // SAFETY: (whole function) as in `encode_at`; lua_next iterates the table
    // at `idx` with the key on top, and every loop leaves the stack balanced.
    unsafe {
        if lua_checkstack(l, 4) == 0 {
            return Err(format!(
                "cannot serialise table: excessive nesting ({depth})"
            ));
        }
        let top = lua_gettop(l);
        // The array part: keys 1..m without a hole.
        let n = lua_objlen(l, idx);
        let mut m = 0usize;
        while m < n {
            lua_rawgeti_(l, idx, (m + 1) as c_int);
            let present = lua_type(l, -1) != LUA_TNIL;
            lua_settop(l, top);
            if !present {
                break;
            }
            m += 1;
        }
        // Count (and check) the other keys.
        let mut n_hash = 0usize;
        lua_pushnil(l);
        while lua_next(l, idx) != 0 {
            let kt = lua_type(l, -2);
            if !matches!(kt, LUA_TSTRING | LUA_TNUMBER | LUA_TBOOLEAN) {
                lua_settop(l, top);
                return Err(format!(
                    "cannot serialise {}: table key must be a number, string or boolean",
                    type_name(kt)
                ));
            }
            if !is_array_key(l, -2, m) {
                n_hash += 1;
            }
            lua_settop(l, top + 1);
        }
        enc.table(m, n_hash);
        for i in 1..=m {
            lua_rawgeti_(l, idx, i as c_int);
            let r = encode_at(l, top + 1, enc, depth).and_then(|()| within_limit(enc));
            lua_settop(l, top);
            r?;
        }
        lua_pushnil(l);
        while lua_next(l, idx) != 0 {
            if !is_array_key(l, -2, m) {
                let r = encode_at(l, top + 1, enc, depth)
                    .and_then(|()| encode_at(l, top + 2, enc, depth))
                    .and_then(|()| within_limit(enc));
                if let Err(e) = r {
                    lua_settop(l, top);
                    return Err(e);
                }
            }
            lua_settop(l, top + 1);
        }
        Ok(())
    }
}

/// Decodes a whole payload and pushes it (exactly one value on success,
/// nothing on error).
///
/// # Safety
/// `l` is a valid state on the event-loop thread.
pub unsafe fn decode(l: *mut lua_State, bytes: &[u8]) -> Result<(), String> {
    // SAFETY: forwarded contract; on error the stack is restored.
    unsafe {
        let top = lua_gettop(l);
        let mut d = Decoder::new(bytes);
        let r = decode_at(l, &mut d, 0).and_then(|()| d.finish().map_err(|e| e.to_string()));
        if r.is_err() {
            lua_settop(l, top);
        }
        r
    }
}

unsafe fn decode_at(l: *mut lua_State, d: &mut Decoder, depth: usize) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err("nesting too deep".into());
    }
    // SAFETY: (whole function) pushes one value per call; lua_checkstack
    // guards the recursion; table counts were bounded by the payload size
    // in the decoder, so lua_createtable cannot be asked for absurd sizes.
    unsafe {
        if lua_checkstack(l, 4) == 0 {
            return Err("nesting too deep".into());
        }
        match d.next().map_err(|e| e.to_string())? {
            Token::Nil => lua_pushnil(l),
            Token::Bool(b) => lua_pushboolean(l, b as c_int),
            Token::Null => lua_pushlightuserdata(l, core::ptr::null_mut()),
            Token::Int(i) => lua_pushnumber(l, i as f64),
            Token::Num(n) => lua_pushnumber(l, n),
            Token::Str(s) => lua_pushlstring_(l, s.as_ptr() as *const c_char, s.len()),
            Token::Table { n_array, n_hash } => {
                lua_createtable(l, n_array as c_int, n_hash as c_int);
                for i in 1..=n_array {
                    decode_at(l, d, depth + 1)?;
                    lua_rawseti_(l, -2, i as c_int);
                }
                for _ in 0..n_hash {
                    decode_at(l, d, depth + 1)?;
                    decode_at(l, d, depth + 1)?;
                    // nil or NaN keys cannot be set (lua_rawset would raise).
                    let bad = match lua_type(l, -2) {
                        LUA_TNIL => true,
                        LUA_TNUMBER => lua_tonumber(l, -2).is_nan(),
                        _ => false,
                    };
                    if bad {
                        lua_settop(l, -3);
                    } else {
                        lua_rawset(l, -3);
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! On a bare LuaJIT state (the system libluajit-5.1, as in nginx).
    use super::*;
    use mlua::ffi::{luaL_loadstring, luaL_newstate, luaL_openlibs, lua_close, lua_pcall};

    /// A fresh state, closed on drop.
    struct State(*mut lua_State);

    impl State {
        fn new() -> State {
            // SAFETY: creating a state; checked for null.
            let l = unsafe { luaL_newstate() };
            assert!(!l.is_null());
            // SAFETY: a fresh state.
            unsafe { luaL_openlibs(l) };
            State(l)
        }

        /// Runs `src` and leaves its one result on the stack.
        fn eval(&self, src: &str) {
            let c = std::ffi::CString::new(src).unwrap();
            // SAFETY: valid state and a NUL-terminated chunk.
            unsafe {
                assert_eq!(luaL_loadstring(self.0, c.as_ptr()), 0, "{src}");
                assert_eq!(lua_pcall(self.0, 0, 1, 0), 0, "{src}");
            }
        }

        /// Runs `src` with the value on top as its `...` (popped).
        fn run_with_top(&self, src: &str) {
            let c = std::ffi::CString::new(src).unwrap();
            // SAFETY: valid state with a value on top; the chunk takes it.
            unsafe {
                assert_eq!(luaL_loadstring(self.0, c.as_ptr()), 0, "{src}");
                mlua::ffi::lua_insert(self.0, -2);
                assert_eq!(lua_pcall(self.0, 1, 0, 0), 0, "{src}");
            }
        }

        fn top(&self) -> c_int {
            // SAFETY: valid state.
            unsafe { lua_gettop(self.0) }
        }

        /// Encodes the value on top (and pops it).
        fn encode_top(&self) -> Result<Vec<u8>, String> {
            let mut enc = Encoder::new();
            let top = self.top();
            // SAFETY: valid state, `top` a valid absolute index.
            let r = unsafe { encode(self.0, top, &mut enc) };
            assert_eq!(self.top(), top, "encode leaves the stack as it was");
            // SAFETY: popping the value we evaluated.
            unsafe { lua_settop(self.0, top - 1) };
            r.map(|()| enc.as_bytes().to_vec())
        }

        /// Decodes `bytes` into a global `v`, then runs `check` (a boolean
        /// expression over `v`).
        fn decode_check(&self, bytes: &[u8], check: &str) -> bool {
            let top = self.top();
            // SAFETY: valid state.
            unsafe { decode(self.0, bytes) }.unwrap();
            assert_eq!(self.top(), top + 1, "decode pushes one value");
            self.run_with_top("_G.v = ...");
            self.eval(&format!("return ({check})"));
            // SAFETY: valid state with the boolean on top.
            let ok = unsafe { lua_toboolean(self.0, -1) } != 0;
            // SAFETY: popping it.
            unsafe { lua_settop(self.0, top) };
            ok
        }
    }

    impl Drop for State {
        fn drop(&mut self) {
            // SAFETY: our state, closed once.
            unsafe { lua_close(self.0) };
        }
    }

    fn roundtrip(src: &str, check: &str) {
        let st = State::new();
        st.eval(src);
        let bytes = st.encode_top().unwrap();
        assert!(st.decode_check(&bytes, check), "{src} -> {check}");
    }

    #[test]
    fn scalars_roundtrip() {
        roundtrip("return nil", "v == nil");
        roundtrip("return true", "v == true");
        roundtrip("return false", "v == false");
        roundtrip("return 42", "v == 42");
        roundtrip("return -0.5", "v == -0.5");
        roundtrip("return 2^53", "v == 2^53");
        roundtrip("return 0/0", "v ~= v");
        roundtrip("return 1/0", "v == 1/0");
        roundtrip(r#"return "a\0b\255""#, r#"v == "a\0b\255""#);
        roundtrip("return ''", "v == ''");
    }

    #[test]
    fn tables_roundtrip_with_their_keys() {
        roundtrip("return {}", "type(v) == 'table' and next(v) == nil");
        roundtrip(
            "return {1, 'two', 3.5, false}",
            "#v == 4 and v[1] == 1 and v[2] == 'two' and v[3] == 3.5 and v[4] == false",
        );
        roundtrip("return {a = {b = {c = 'deep'}}}", "v.a.b.c == 'deep'");
        roundtrip(
            "return {10, 20, [100] = 's', [2.5] = 'f', [true] = 'b', x = 'y'}",
            "v[1] == 10 and v[2] == 20 and v[100] == 's' and v[2.5] == 'f' and v[true] == 'b' and v.x == 'y'",
        );
    }

    #[test]
    fn null_is_kept() {
        let st = State::new();
        // SAFETY: valid state; a NULL light userdata is ngx.null.
        unsafe { lua_pushlightuserdata(st.0, core::ptr::null_mut()) };
        let bytes = st.encode_top().unwrap();
        let top = st.top();
        // SAFETY: valid state.
        unsafe { decode(st.0, &bytes) }.unwrap();
        // SAFETY: the decoded value is on top.
        unsafe {
            assert_eq!(lua_type(st.0, -1), LUA_TLIGHTUSERDATA);
            assert!(lua_touserdata(st.0, -1).is_null());
            lua_settop(st.0, top);
        }
    }

    #[test]
    fn refuses_what_cjson_refuses_and_leaves_the_stack_alone() {
        let st = State::new();
        for (src, err) in [
            (
                "return print",
                "cannot serialise function: type not supported",
            ),
            (
                "return {f = print}",
                "cannot serialise function: type not supported",
            ),
            (
                "return coroutine.create(print)",
                "cannot serialise thread: type not supported",
            ),
            (
                "return {[{}] = 1}",
                "cannot serialise table: table key must be a number, string or boolean",
            ),
            (
                "local t = {} t.t = t return t",
                "cannot serialise table: excessive nesting (1001)",
            ),
        ] {
            st.eval(src);
            assert_eq!(st.encode_top().unwrap_err(), err, "{src}");
        }
        assert_eq!(st.top(), 0);
    }

    #[test]
    fn garbage_decodes_to_an_error_and_pushes_nothing() {
        let st = State::new();
        for bytes in [&b""[..], b"\x07\x05", b"\x06\x10ab", b"\x09", b"\x02\x02"] {
            // SAFETY: valid state.
            assert!(unsafe { decode(st.0, bytes) }.is_err(), "{bytes:?}");
            assert_eq!(st.top(), 0);
        }
    }

    #[test]
    fn nan_keys_are_dropped_on_decode() {
        // {[NaN] = 1, a = 2}, written by hand: a table with 0 array and 2 hash entries.
        let mut enc = Encoder::new();
        enc.table(0, 2);
        enc.number(f64::NAN);
        enc.number(1.0);
        enc.string(b"a");
        enc.number(2.0);
        let st = State::new();
        assert!(st.decode_check(
            enc.as_bytes(),
            "v.a == 2 and next(v, 'a') == nil and next(v) == 'a'"
        ));
    }

    /// payload.lua's encoder writes exactly the bytes of this one (so an
    /// event is the same in the log whichever encoder took it): random
    /// values, tables with array parts, holes, every kind of key, nesting,
    /// and up to 300 other keys (a count of 128 or more takes two bytes,
    /// which the Lua encoder makes room for after the fact).
    #[test]
    fn the_lua_encoder_writes_these_bytes() {
        let st = State::new();
        // SAFETY: valid state; a NULL light userdata is ngx.null.
        unsafe { lua_pushlightuserdata(st.0, core::ptr::null_mut()) };
        st.run_with_top("ngx = { null = ... }");
        st.eval(include_str!("payload.lua"));
        st.run_with_top("payload = ...");
        st.eval(
            r#"
            math.randomseed(20261207)
            local function str()
              local t = {}
              for i = 1, math.random(0, math.random() < 0.1 and 300 or 12) do
                t[i] = string.char(math.random(0, 255))
              end
              return table.concat(t)
            end
            local function value(depth)
              local r = math.random(1, depth > 2 and 7 or 10)
              if r == 1 then return math.random() < 0.5
              elseif r == 2 then return math.random(-2^40, 2^40)
              elseif r == 3 then return (math.random() - 0.5) * 10^math.random(-5, 20)
              elseif r == 4 then return ({ 0/0, 1/0, -1/0, -0.0, 2^53, -2^63, 2^63 })[math.random(1, 7)]
              elseif r == 5 then return str()
              elseif r == 6 then return ngx.null
              elseif r == 7 then return nil
              end
              local t = {}
              for i = 1, math.random(0, 5) do t[i] = value(depth + 1) end
              if math.random() < 0.2 then t[math.random(1, 6)] = nil end
              local keys = depth < 2 and math.random() < 0.15 and math.random(100, 300)
                or math.random(0, 5)
              for _ = 1, keys do
                local k = math.random(1, 5)
                local key = k == 1 and str() or k == 2 and math.random(-1000, 1000)
                  or k == 3 and math.random() * 100 or k == 4 and (math.random() < 0.5) or 2^60
                local v = value(depth + 1)
                if key ~= "" and v ~= nil then t[key] = v end
              end
              return t
            end
            cases = {}
            for i = 1, 2000 do cases[i] = { value(0) } end
            return #cases
            "#,
        );
        // SAFETY: the count is on top.
        let n = unsafe { mlua::ffi::lua_tointeger(st.0, -1) };
        // SAFETY: popping it.
        unsafe { lua_settop(st.0, 0) };
        let (mut wide, mut small) = (0, 0);
        for i in 1..=n {
            st.eval(&format!("return cases[{i}][1]"));
            let native = st.encode_top().unwrap();
            st.eval(&format!(
                "local p, n = payload.encode(cases[{i}][1]) return p and require('ffi').string(p, n)"
            ));
            // SAFETY: the Lua encoder's bytes (or nil) are on top.
            let lua =
                unsafe { (lua_type(st.0, -1) == LUA_TSTRING).then(|| str_at(st.0, -1).to_vec()) };
            // SAFETY: popping them.
            unsafe { lua_settop(st.0, 0) };
            match lua {
                Some(lua) => assert_eq!(lua, native, "case {i}"),
                // It leaves only values near or past its 16 KB to this one.
                None => assert!(native.len() > 16000, "case {i} not taken"),
            }
            small += i64::from(native.len() <= 16000);
            wide += usize::from(native.windows(2).any(|w| w[0] == 7 && w[1] >= 0x80));
        }
        assert!(
            small > n * 9 / 10,
            "only {small} of {n} cases fit the Lua encoder"
        );
        assert!(wide > 50, "only {wide} cases had a count of 128 or more");
    }
}
