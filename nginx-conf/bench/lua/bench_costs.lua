-- The nginx side of `scripts/bench costs` (scripts/bench_costs.py): the
-- per-event CPU of this module's post and receive paths inside one worker,
-- with no other process involved, and the parts of the receive path timed
-- alone (and the decoder over five kinds of payload in turn). One worker
-- posts `count` 64 B tables, then drains them with poll()
-- (resty.worker.events, interval 0: no background loop), `passes` times
-- over; the zone (sized by the driver) wraps after the first passes.
--
-- CPU time is this process' (os.clock): no wake-ups, no other worker, so it
-- moves less between rounds than the multi-worker scenarios (still 10-30 %
-- on a shared host); the drain includes fetch, decode, dispatch and a
-- counting handler, as every receiver of the bench's throughput scenario
-- pays.
--
-- GET /costs?count=N&passes=P -> one line per pass and per part:
--   pass=<i> post_ns=<per post> recv_ns=<per event drained> received=<n>
--   part=<name> ns=<per call>
local ffi = require "ffi"
local payload = require "ngx_worker_events.payload"

local ngx = ngx
local clock, format, rep = os.clock, string.format, string.rep
local ffi_string = ffi.string

local ok_new, new_tab = pcall(require, "table.new")
if not ok_new then
  new_tab = function() return {} end
end

local M = {}
local ev
local received = 0

function M.init_worker(shm)
  ev = require "resty.worker.events"
  local ok, err = ev.configure { shm = shm, interval = 0 }
  if not ok then
    ngx.log(ngx.ERR, "bench_costs: configure failed: ", err)
    return
  end
  ev.register(function() received = received + 1 end, "bench", "tp")
end

-- results escape here, so the JIT cannot sink what is being timed
local keep = new_tab(64, 0)

local function timed(n, f)
  f(1000) -- compile first
  collectgarbage()
  local t0 = clock()
  f(n)
  return (clock() - t0) * 1e9 / n
end

-- v encoded, in a buffer of its own: { bytes, length }
local function encoded(v)
  local p, len = payload.encode(v)
  local bytes = ffi.new("unsigned char[?]", len)
  ffi.copy(bytes, p, len)
  return { bytes, len }
end

local function parts(n, say)
  local s64 = rep("x", 64)
  local value = { n = 12345, z = 64, p = s64 }
  local one = encoded(value)
  local bytes, len = one[1], one[2]
  local names = ffi.new("unsigned char[8]")
  ffi.copy(names, "benchtp", 7)
  local kn, kz, kp = "n", "z", "p"
  say("encode", timed(n, function(m)
    for i = 1, m do
      value.n = i
      keep[i % 64 + 1] = payload.encode(value)
    end
  end))
  say("decode", timed(n, function(m)
    for i = 1, m do keep[i % 64 + 1] = payload.decode(bytes, len) end
  end))
  -- five kinds of payload in turn, as a worker that gets several kinds of
  -- event decodes them: a code path tuned to one kind shows here
  local kinds = {
    function(i) return { ["k" .. i] = 1, x = 2 } end,
    function(i) return { i, 2, 3 } end,
    function(i) return { a = { b = i }, c = 1 } end,
    function(i) return { a = i, b = 2, c = 3, d = 4, e = 5, f = 6, g = "x" } end,
    function(i) return { n = i, z = 64, p = s64 } end,
  }
  local mixed = {}
  for j = 1, 1024 do mixed[j] = encoded(kinds[(j - 1) % #kinds + 1](j)) end
  say("decode_mixed", timed(n, function(m)
    for i = 1, m do
      local e = mixed[i % 1024 + 1]
      keep[i % 64 + 1] = payload.decode(e[1], e[2])
    end
  end))
  say("table", timed(n, function(m)
    for i = 1, m do
      local t = new_tab(0, 3)
      t[kn], t[kz], t[kp] = i, 64, s64
      keep[i % 64 + 1] = t
    end
  end))
  say("names", timed(n, function(m)
    for i = 1, m do
      keep[i % 64 + 1] = ffi_string(names, 5)
      keep[(i + 1) % 64 + 1] = ffi_string(names + 5, 2)
    end
  end))
end

function M.run()
  local args = ngx.req.get_uri_args()
  local count = tonumber(args.count) or 100000
  local passes = tonumber(args.passes) or 10
  local s64 = rep("x", 64)
  local out = {}
  for pass = 1, passes do
    received = 0
    local t0 = clock()
    for i = 1, count do
      local ok, err = ev.post("bench", "tp", { n = i, z = 64, p = s64 })
      if not ok then
        ngx.say("error=", err)
        return
      end
    end
    local t1 = clock()
    -- poll() handles up to 10 000 events per call
    while received < count do
      local before = received
      ev.poll()
      if received == before then break end
    end
    local t2 = clock()
    out[#out + 1] = format("pass=%d post_ns=%.1f recv_ns=%.1f received=%d", pass,
                           (t1 - t0) * 1e9 / count, (t2 - t1) * 1e9 / count, received)
  end
  parts(count, function(name, ns) out[#out + 1] = format("part=%s ns=%.1f", name, ns) end)
  ngx.say(table.concat(out, "\n"))
end

return M
