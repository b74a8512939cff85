-- The soak's checking receiver and its bookkeeping writer (soak.lua).
--
-- A receiver (one stream in one worker lifetime) checks each event: CRC and
-- header (else bad), per poster lifetime sequence numbers (a repeat or a step
-- back = dup, a jump = missing), and whether the losses reported since that
-- poster's previous event cover the jump (else `late`: the gap was not
-- reported before the event after it). `r.lost` is what its API reported.
local ngx = ngx
local format, sub = string.format, string.sub
local type, tonumber = type, tonumber
local crc32 = ngx.crc32_long

local M = {}

-- set into soak_acc without evicting anything; a refusal is a harness failure
-- (counted in "accfail")
function M.save(key, value)
  local acc = ngx.shared.soak_acc
  local ok, err = acc:safe_set(key, value)
  if not ok then
    acc:incr("accfail", 1, 0)
    ngx.log(ngx.ERR, "soak: soak_acc: ", err)
  end
end

-- stream: the name in soak_acc's rx:<stream>:<token> records
function M.new_rx(stream)
  return { zone = stream, last = {}, lost_at = {},
           seen = 0, missing = 0, lost = 0, lostrep = 0, bad = 0, dup = 0, late = 0 }
end

function M.flush_rx(r, token)
  M.save("rx:" .. r.zone .. ":" .. token,
         format("seen=%d missing=%d lost=%d lostrep=%d bad=%d dup=%d late=%d",
                r.seen, r.missing, r.lost, r.lostrep, r.bad, r.dup, r.late))
end

-- n events reported lost (a lost event / callback: adds n)
function M.on_lost(r, n)
  r.lost = r.lost + (tonumber(n) or 0)
  r.lostrep = r.lostrep + 1
end

-- One received event of source "soak" (from: the pid the API says posted it).
function M.check(r, data, from)
  if type(data) ~= "table" then
    r.bad = r.bad + 1
    return
  end
  local p, b, s, c, d = data.p, data.b, data.s, data.c, data.d
  if type(p) ~= "number" or type(b) ~= "string" or type(s) ~= "number"
     or type(c) ~= "number" or type(d) ~= "string" or p ~= from or crc32(d) ~= c then
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
      local gap = s - last - 1
      r.missing = r.missing + gap
      -- the lost reports since this poster's previous event must cover it
      if gap > r.lost - r.lost_at[b] then r.late = r.late + 1 end
    end
  end
  r.last[b] = s
  r.lost_at[b] = r.lost
end

return M
