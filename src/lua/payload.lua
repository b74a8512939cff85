-- ngx_worker_events.payload: the payload decoder (crate::wire::payload's
-- format) in Lua over LuaJIT FFI, so that delivering an event builds its
-- value without a Lua C API call per field and stays inside compiled traces.
--
--   local payload = require "ngx_worker_events.payload"
--   local value, ok = payload.decode(ptr, len) -- ptr: const unsigned char *
--
-- ok is false when the bytes are anything but a well-formed payload this
-- decoder is sure about (truncated, an unknown tag, trailing bytes, very
-- deep nesting, a length past 2^49): the caller then hands the bytes to the
-- native decoder (native.decode), which has the last word on what they hold
-- and on the error text. So this decoder never accepts what the native one
-- refuses, and never builds another value from the same bytes.
--
-- value  := 0x00 nil | 0x01 false | 0x02 true | 0x03 null
--         | 0x04 i64-le | 0x05 f64-le | 0x06 varint(len) bytes
--         | 0x07 varint(n_array) varint(n_hash) value*n_array (value value)*n_hash
local ffi = require "ffi"

local ffi_string, ffi_cast, tonumber = ffi.string, ffi.cast, tonumber
local floor = math.floor
local null = ngx.null
local i64_ptr = ffi.typeof("const int64_t *")
local f64_ptr = ffi.typeof("const double *")

local ok_new, new_tab = pcall(require, "table.new")
if not ok_new then
  new_tab = function() return {} end
end

-- the native decoder refuses nesting past 1000 levels; stopping earlier
-- only hands such a payload to it
local MAX_DEPTH = 990

-- varint at p[i] (i < n): value, next index; nil past the bytes or past 7
-- bytes (2^49: longer than any payload, left to the native decoder)
local function varint(p, i, n)
  local b = p[i]
  if b < 128 then return b, i + 1 end
  local v, mul = b - 128, 128
  i = i + 1
  for _ = 2, 7 do
    if i >= n then return nil end
    b = p[i]
    i = i + 1
    if b < 128 then return v + b * mul, i end
    v = v + (b - 128) * mul
    mul = mul * 128
  end
  return nil
end

-- the value at p[i]: value, next index; next index nil when refused
local function value(p, i, n, depth)
  if i >= n then return nil, nil end
  local tag = p[i]
  i = i + 1
  if tag == 6 then
    if i >= n then return nil, nil end
    local len
    len, i = varint(p, i, n)
    if not len or len > n - i then return nil, nil end
    return ffi_string(p + i, len), i + len
  elseif tag == 7 then
    if depth >= MAX_DEPTH or i >= n then return nil, nil end
    local na, nh
    na, i = varint(p, i, n)
    if not na or i >= n then return nil, nil end
    nh, i = varint(p, i, n)
    if not nh then return nil, nil end
    -- every entry takes a byte at least (the native decoder's own check)
    local left = n - i
    if na > left or nh > floor(left / 2) then return nil, nil end
    local t = new_tab(na, nh)
    local v, k
    for j = 1, na do
      v, i = value(p, i, n, depth + 1)
      if not i then return nil, nil end
      t[j] = v
    end
    for _ = 1, nh do
      k, i = value(p, i, n, depth + 1)
      if not i then return nil, nil end
      v, i = value(p, i, n, depth + 1)
      if not i then return nil, nil end
      -- nil and NaN keys cannot be set: left out, as the native decoder does
      if k ~= nil and k == k then t[k] = v end
    end
    return t, i
  elseif tag == 4 then
    if n - i < 8 then return nil, nil end
    return tonumber(ffi_cast(i64_ptr, p + i)[0]), i + 8
  elseif tag == 5 then
    if n - i < 8 then return nil, nil end
    return ffi_cast(f64_ptr, p + i)[0], i + 8
  elseif tag == 0 then
    return nil, i
  elseif tag == 1 then
    return false, i
  elseif tag == 2 then
    return true, i
  elseif tag == 3 then
    return null, i
  end
  return nil, nil
end

local _M = {}

-- the value encoded in the `len` bytes at `p`: value, true; or nil, false
-- (see above: leave those bytes to the native decoder)
function _M.decode(p, len)
  local v, i = value(p, 0, len, 0)
  if i == len then return v, true end
  return nil, false
end

return _M
