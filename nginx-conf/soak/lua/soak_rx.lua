-- The soak's checking receiver and its bookkeeping writer, shared by soak.lua
-- (resty.worker.events, the bare bus) and soak_re.lua (resty.events).
--
-- A receiver (one stream in one worker lifetime) checks each event: CRC and
-- header (else bad), per poster lifetime sequence numbers (a repeat or a step
-- back = dup, a jump = missing), and whether the losses reported since that
-- poster's previous event cover the jump (else `late`: the gap was not
-- reported before the event after it). `r.lost` is what its API reported:
-- resty.worker.events' `lost` events, the bus' lost callback, or
-- resty.events' stats().lost read at each event.
local ngx = ngx
local format, sub = string.format, string.sub
local type, pairs, next, concat, tonumber = type, pairs, next, table.concat, tonumber
local crc32 = ngx.crc32_long

local M = {}

-- wall-clock time (s) that leaves nginx's cached time alone: ngx.update_time()
-- in a handler advances the clock of the timer pass it runs in, so the bus
-- loops' 1 ms sleeps expire again in that same pass and the worker does not
-- get back to its event loop (requests, reload signals) while a backlog lasts
local ffi = require "ffi"
pcall(ffi.cdef, "typedef struct { long tv_sec; long tv_usec; } soak_timeval_t;"
                .. " int gettimeofday(soak_timeval_t *tv, void *tz);")
local tv = ffi.new("soak_timeval_t")
function M.wall()
  ffi.C.gettimeofday(tv, nil)
  return tonumber(tv.tv_sec) + tonumber(tv.tv_usec) * 1e-6
end

-- set into a dict without evicting anything; a refusal is a harness failure
-- (counted in soak_acc's "accfail")
function M.save(key, value, dict)
  local ok, err = (dict or ngx.shared.soak_acc):safe_set(key, value)
  if not ok then
    ngx.shared.soak_acc:incr("accfail", 1, 0)
    ngx.log(ngx.ERR, "soak: ", dict and "soak_u" or "soak_acc", ": ", err)
  end
end

-- counts one more under key without evicting anything (safe_add, then incr)
function M.count(dict, key)
  local ok, err = dict:safe_add(key, 1)
  if ok then return 1 end
  if err == "exists" then return dict:incr(key, 1) end
  ngx.shared.soak_acc:incr("accfail", 1, 0)
  ngx.log(ngx.ERR, "soak: soak_u: ", err)
end

-- stream: the name in soak_acc's rx:<stream>:<token> records
function M.new_rx(stream)
  return { zone = stream, last = {}, lost_at = {},
           seen = 0, missing = 0, lost = 0, lostrep = 0, bad = 0, dup = 0, late = 0 }
end

function M.flush_rx(r, token)
  local s = format("seen=%d missing=%d lost=%d lostrep=%d bad=%d dup=%d late=%d",
                   r.seen, r.missing, r.lost, r.lostrep, r.bad, r.dup, r.late)
  if r.foreign then s = s .. format(" foreign=%d", r.foreign) end
  M.save("rx:" .. r.zone .. ":" .. token, s)
end

-- n events reported lost (a lost event / callback: adds n)
function M.on_lost(r, n)
  r.lost = r.lost + (tonumber(n) or 0)
  r.lostrep = r.lostrep + 1
end

-- the API's cumulative lost count now (resty.events' stats().lost)
function M.set_lost(r, total)
  if total and total > r.lost then
    r.lost = total
    r.lostrep = r.lostrep + 1
  end
end

-- One received event of a checked source. `from` is who the API says posted
-- it: the poster's pid (by = "p", resty.worker.events and the bus) or its
-- ngx.worker.id() (by = "w", resty.events' wid). `r.vouch`, when set, is
-- told of every event in order: vouch(r, token, previous seq, seq, data).
-- `r.refresh`, when set, updates r.lost before a gap is judged.
function M.check(r, data, from, by)
  if type(data) ~= "table" then
    r.bad = r.bad + 1
    return
  end
  local p, b, s, c, d = data.p, data.b, data.s, data.c, data.d
  if type(p) ~= "number" or type(b) ~= "string" or type(s) ~= "number"
     or type(c) ~= "number" or type(d) ~= "string" or data[by or "p"] ~= from or crc32(d) ~= c then
    r.bad = r.bad + 1
    return
  end
  local hdr = p .. ":" .. b .. ":" .. s .. ":"
  if sub(d, 1, #hdr) ~= hdr then
    r.bad = r.bad + 1
    return
  end
  r.seen = r.seen + 1
  local last = r.last[b]
  if last ~= nil then
    if s <= last then
      r.dup = r.dup + 1
      return
    end
    if s > last + 1 then
      if r.refresh then r.refresh(r) end -- a lost count read only now and then: read it now
      local gap = s - last - 1
      r.missing = r.missing + gap
      -- the lost reports since this poster's previous event must cover it
      if gap > r.lost - r.lost_at[b] then r.late = r.late + 1 end
    end
  end
  if r.vouch then r.vouch(r, b, last, s, data) end
  r.last[b] = s
  r.lost_at[b] = r.lost
end

-- Unique keys a receiver read without loss. A resty.events broadcast carries
-- u (how many unique keys its poster had published before it) and t (when it
-- was published). Two events of a poster in a row (seq s, s + 1) with no loss
-- reported in between mean this consumer read every record between them, so
-- also keys u_prev + 1 .. u, and claimed each (or found it claimed): some
-- consumer ran them. Intervals: { lo, hi, t0 (publication time of the event
-- before lo), t1 (when this receiver read the event after hi) }.
function M.vouch(r, b, prev, s, data)
  local u, t = data.u, data.t
  if type(u) ~= "number" or type(t) ~= "number" then return end
  local pu = r.u_last[b]
  if prev ~= nil and s == prev + 1 and r.lost == r.lost_at[b] and pu ~= nil and u > pu then
    local now = M.wall()
    local iv = r.open_iv[b]
    if iv and iv[2] == pu then
      iv[2], iv[4] = u, now
    else
      r.open_iv[b] = { pu + 1, u, r.t_last[b], now }
    end
  end
  r.u_last[b], r.t_last[b] = u, t
end

function M.with_vouch(r)
  r.vouch, r.u_last, r.t_last, r.open_iv, r.flushes = M.vouch, {}, {}, {}, 0
  return r
end

-- writes the open intervals (soak_u: uv:<stream>:<token>:<n> "b lo hi t0 t1;...")
function M.flush_vouch(r, token, dict)
  if not r.vouch or next(r.open_iv) == nil then return end
  local parts = {}
  for b, iv in pairs(r.open_iv) do
    parts[#parts + 1] = format("%s %d %d %.3f %.3f", b, iv[1], iv[2], iv[3], iv[4])
  end
  r.open_iv = {}
  r.flushes = r.flushes + 1
  M.save("uv:" .. r.zone .. ":" .. token .. ":" .. r.flushes, concat(parts, ";"), dict)
end

return M
