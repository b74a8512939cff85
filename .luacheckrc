-- luacheck (Debian's lua-check) for the module's embedded Lua and the test
-- helpers: LuaJIT under lua-nginx-module. `scripts/test` runs it.
std = "ngx_lua"
codes = true
max_line_length = 110
ignore = {
  "542", -- an empty if branch, with a comment saying why nothing is done
  "581", -- `not (x > y)`: written so that NaN fails the check too
}
-- the module's Lua files start with `local native = ...` (the native table
-- the loader passes in)
files["src/lua"] = { }
-- callbacks in the test helpers spell out the libraries' signatures
files["t/lib/t"] = { unused_args = false }
