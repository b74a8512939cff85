-- ngx_worker_events.payload: the payload codec (crate::wire::payload's
-- format) in Lua over LuaJIT FFI, so that posting and delivering an event
-- walk and build its value without a Lua C API call per field and stay
-- inside compiled traces.
--
--   local payload = require "ngx_worker_events.payload"
--   local value, ok = payload.decode(ptr, len) -- ptr: const unsigned char *
--   local ptr, len = payload.encode(value)     -- nil: left to the native encoder
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

local ffi_string, ffi_cast, ffi_copy, tonumber = ffi.string, ffi.cast, ffi.copy, tonumber
local type, next, getmetatable = type, next, getmetatable
local floor = math.floor
local null = ngx.null
local i64_ptr = ffi.typeof("const int64_t *")
local f64_ptr = ffi.typeof("const double *")
local i64_out = ffi.typeof("int64_t *")
local f64_out = ffi.typeof("double *")

local ok_new, new_tab = pcall(require, "table.new")
if not ok_new then
  new_tab = function() return {} end
end

-- the native decoder refuses nesting past 1000 levels; stopping earlier
-- only hands such a payload to it
local MAX_DEPTH = 990

-- Every event's value is decoded on the dispatch loop's path, so the common
-- shapes (varints of 1 or 2 bytes, tables of up to UNROLLED array values and
-- UNROLLED pairs) are decoded without entering a loop: a loop of a few trips
-- per event aborts LuaJIT's traces of the dispatch loop ("loop unroll limit
-- reached"), which then runs interpreted. Longer varints and larger tables
-- take the loops below.

-- varint at p[i] (i < n) of 3 or more bytes: value, next index; nil past
-- the bytes or past 7 bytes (2^49: longer than any payload, left to the
-- native decoder)
local function varint_long(p, i, n)
  local b = p[i]
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

-- varint at p[i] (i < n): value, next index; nil as varint_long
local function varint(p, i, n)
  local b = p[i]
  if b < 128 then return b, i + 1 end
  if i + 1 < n then
    local b2 = p[i + 1]
    if b2 < 128 then return b - 128 + b2 * 128, i + 2 end
  end
  return varint_long(p, i, n)
end

local value

-- the array value j of t at p[i]: next index, nil when refused
local function item(t, j, p, i, n, depth)
  local v
  v, i = value(p, i, n, depth)
  if i then t[j] = v end
  return i
end

-- a key and its value at p[i], set in t: next index, nil when refused
local function pair(t, p, i, n, depth)
  local k, v
  k, i = value(p, i, n, depth)
  if not i then return nil end
  v, i = value(p, i, n, depth)
  if not i then return nil end
  -- nil and NaN keys cannot be set: left out, as the native decoder does
  if k ~= nil and k == k then t[k] = v end
  return i
end

-- the table after its tag at p[i]: table, next index; next index nil when refused
local function table_at(p, i, n, depth)
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
  depth = depth + 1
  -- UNROLLED = 4: straight-line code, then the loop only past it
  if na > 0 then
    i = item(t, 1, p, i, n, depth)
    if i and na > 1 then
      i = item(t, 2, p, i, n, depth)
      if i and na > 2 then
        i = item(t, 3, p, i, n, depth)
        if i and na > 3 then
          i = item(t, 4, p, i, n, depth)
          for j = 5, i and na or 0 do
            i = item(t, j, p, i, n, depth)
            if not i then break end
          end
        end
      end
    end
    if not i then return nil, nil end
  end
  if nh > 0 then
    i = pair(t, p, i, n, depth)
    if i and nh > 1 then
      i = pair(t, p, i, n, depth)
      if i and nh > 2 then
        i = pair(t, p, i, n, depth)
        if i and nh > 3 then
          i = pair(t, p, i, n, depth)
          for _ = 5, i and nh or 0 do
            i = pair(t, p, i, n, depth)
            if not i then break end
          end
        end
      end
    end
    if not i then return nil, nil end
  end
  return t, i
end

-- the value at p[i]: value, next index; next index nil when refused
value = function(p, i, n, depth)
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
    return table_at(p, i, n, depth)
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

-- The encoder takes the common case (strings, numbers, booleans, nil,
-- ngx.null and plain tables of them, up to ENC_CAP bytes and ENC_DEPTH
-- levels) and refuses everything else: a value it refuses goes to the
-- native encoder, which has the last word on what is refused and on the
-- error text, so this one never accepts what that one refuses (and writes
-- the same bytes for what both take: the same table walk, next()'s order).
local ENC_CAP = 16384
local ENC_DEPTH = 32
local ebuf = ffi.new("unsigned char[?]", ENC_CAP)

-- varint at ebuf[n] (the caller checked the room): next n
local function put_varint(n, v)
  while v >= 128 do
    ebuf[n] = 128 + v % 128
    v = floor(v / 128)
    n = n + 1
  end
  ebuf[n] = v
  return n + 1
end

-- a value that is no table at ebuf[n]: next n, or nil (refused)
local function scalar(v, n)
  local tv = type(v)
  if tv == "string" then
    local len = #v
    if n + len + 11 > ENC_CAP then return nil end
    ebuf[n] = 6
    n = put_varint(n + 1, len)
    ffi_copy(ebuf + n, v, len)
    return n + len
  elseif tv == "number" then
    if n + 9 > ENC_CAP then return nil end
    -- an integer when exact (not -0.0), as crate::wire::payload does
    if v == floor(v) and v >= -9e15 and v <= 9e15 and (v ~= 0 or 1 / v > 0) then
      ebuf[n] = 4
      ffi_cast(i64_out, ebuf + n + 1)[0] = v
    else
      ebuf[n] = 5
      ffi_cast(f64_out, ebuf + n + 1)[0] = v
    end
    return n + 9
  elseif n >= ENC_CAP then
    return nil
  elseif tv == "boolean" then
    ebuf[n] = v and 2 or 1
    return n + 1
  elseif v == nil then
    ebuf[n] = 0
    return n + 1
  elseif v == null then
    ebuf[n] = 3
    return n + 1
  end
  return nil
end

local encode_table

local function any(v, n, depth)
  if type(v) == "table" then return encode_table(v, n, depth + 1) end
  return scalar(v, n)
end

-- a table at ebuf[n]: next n, or nil (refused: a metatable, which the
-- native encoder does not consult but __len could bend here, a key that is
-- no string, number or boolean, too deep, too large)
encode_table = function(t, n, depth)
  if depth > ENC_DEPTH or n + 21 > ENC_CAP or getmetatable(t) ~= nil then
    return nil
  end
  -- the array part: keys 1..m without a hole
  local len, m = #t, 0
  while m < len and t[m + 1] ~= nil do m = m + 1 end
  ebuf[n] = 7
  n = put_varint(n + 1, m)
  -- the count of the other keys comes first, but one walk counts and
  -- writes them: one byte is kept for it, more made room for at the end
  local at = n
  n = n + 1
  for i = 1, m do
    n = any(t[i], n, depth)
    if not n then return nil end
  end
  local nh = 0
  for k, v in next, t do
    local tk = type(k)
    if tk == "string" or tk == "boolean"
       or (tk == "number" and (k < 1 or k > m or k ~= floor(k))) then
      nh = nh + 1
      n = scalar(k, n)
      if not n then return nil end
      n = any(v, n, depth)
      if not n then return nil end
    elseif tk ~= "number" then
      return nil
    end
  end
  if nh < 128 then
    ebuf[at] = nh
    return n
  end
  local wide, x = 0, nh -- bytes the count takes beyond one
  while x >= 128 do
    wide, x = wide + 1, floor(x / 128)
  end
  if n + wide > ENC_CAP then return nil end
  for i = n - 1, at + 1, -1 do ebuf[i + wide] = ebuf[i] end
  put_varint(at, nh)
  return n + wide
end

-- `v` encoded into this module's buffer: pointer, length (good until
-- the next encode); nil when it leaves the value to the native encoder
function _M.encode(v)
  local n = any(v, 0, 0)
  if n then return ebuf, n end
  return nil
end

-- the value encoded in the `len` bytes at `p`: value, true; or nil, false
-- (see above: leave those bytes to the native decoder)
function _M.decode(p, len)
  local v, i = value(p, 0, len, 0)
  if i == len then return v, true end
  return nil, false
end

return _M
