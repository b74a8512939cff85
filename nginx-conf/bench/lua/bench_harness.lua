-- The nginx side of scripts/bench.
--
-- Runs against any implementation of one of two Lua APIs (opts.api):
--   "worker.events": `resty.worker.events` (register / configure / post / poll);
--   "events": `resty.events`, lua-resty-events 0.3.x (new / subscribe /
--     init_worker / publish to "all" or a unique key / run), plus the
--     module's extensions poll() and stats() when the implementation has them
--     (stats().lost is how this API learns of lost events: it has no `lost`
--     event).
-- plus LuaJIT FFI for a microsecond monotonic clock. `lua_shared_dict
-- bench_results` is used for the harness's own bookkeeping only (ready flags,
-- counters, latency samples), never to carry the events being measured.
--
-- Keys written to bench_results:
--   ready:<wid>   pid, once the worker's configure() succeeded
--   fail:<wid>    configure() error
--   poster        "k=v ..." of the posting worker, after its last post
--   prog:<wid>    "k=v ..." progress snapshot (every 4096 events / lost report)
--   res:<wid>     "k=v ..." final counters, written on the "end" event
--   lat:<wid>     comma-separated receive-minus-send times (µs)
--   keys:<wid>    unique scenario: one digit per key 1..count, how many times
--                 this worker ran it (9 = 9 or more)
--   go            contend scenario: "t=<start µs> count=K size=S", written by
--                 /bench/start; every worker (opts.contend) waits for it
--   cpost:<wid>   contend scenario: "t0=.. t1=.. fails=.." of each poster
local ffi = require "ffi"

local ngx = ngx
local dict = ngx.shared.bench_results
local format, concat, rep = string.format, table.concat, string.rep
local type, tonumber, tostring, next = type, tonumber, tostring, next

local ok_new_tab, new_tab = pcall(require, "table.new")
if not ok_new_tab then
  new_tab = function() return {} end
end

-- A private name bound to the libc symbol, so another cdef of clock_gettime
-- (with struct timespec) cannot clash with ours.
pcall(ffi.cdef, [[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec_t;
  int bench_clock_gettime(int clk_id, bench_timespec_t *tp) __asm__("clock_gettime");
]])
local C = ffi.C
local CLOCK_MONOTONIC = 1
local tsbuf = ffi.new("bench_timespec_t")

local function now_us()
  C.bench_clock_gettime(CLOCK_MONOTONIC, tsbuf)
  return tonumber(tsbuf.tv_sec) * 1000000 + tonumber(tsbuf.tv_nsec) / 1000
end

-- resty.events caps max_payload_len at 16 MiB (default 64 KB, which a 64 KB
-- payload plus its names exceeds); the harness sets the cap so that every
-- throughput size fits
local EVENTS_MAX_PAYLOAD = 16 * 1024 * 1024

-- M.ev: the API under test (the resty.worker.events module, or the
-- resty.events instance); M.poll: its poll()
local M = { now_us = now_us }

local wid, pid
local S -- this worker's counters
local api   -- "worker.events" | "events"
local post  -- post(source, event, data, unique?) -> ok, err: a broadcast, or one run by one worker
local stats -- nil, or a function returning the zone's and this consumer's counters
local contend_wait -- contend scenario: the timer of every worker (defined with the posters)

local function reset()
  S = {
    lat = new_tab(1024, 0), nlat = 0,
    seen = 0, first = 0, last = 0, last_n = 0, ooo = 0, bad = 0,
    lost = 0, lost_reports = 0, end_t = 0, done = 0, size = -1,
    keys = {}, cends = 0,
  }
end

local DIGITS = { [0] = "0", "1", "2", "3", "4", "5", "6", "7", "8", "9" }

-- unique scenario: "0"/"1"/... for keys 1..count (handled here 0, 1, ... times)
local function keys_string(keys, count)
  local buf = new_tab(count, 0)
  for i = 1, count do
    local c = keys[i] or 0
    buf[i] = DIGITS[c > 9 and 9 or c]
  end
  return concat(buf)
end

local function snapshot()
  local s = S
  if api == "events" and stats then
    -- this API has no `lost` event: the consumer's counter (it counts a gap
    -- before the first event after it, so it is exact when "end" arrives)
    local t = stats()
    if t and t.lost then s.lost = t.lost end
  end
  return format("wid=%d pid=%d seen=%d first=%.3f last=%.3f ooo=%d bad=%d lost=%d lost_reports=%d "
                .. "nlat=%d end_t=%.3f done=%d",
                wid, pid, s.seen, s.first, s.last, s.ooo, s.bad, s.lost, s.lost_reports,
                s.nlat, s.end_t, s.done)
end

-- opts.jit_profile: LuaJIT's profiler runs in this worker until the first flush
local jit_profiling = false

local function flush(count)
  if jit_profiling then
    jit_profiling = false
    require("jit.p").stop()
  end
  S.done = 1
  dict:set("res:" .. wid, snapshot())
  if S.nlat > 0 then
    dict:set("lat:" .. wid, concat(S.lat, ",", 1, S.nlat))
  end
  if next(S.keys) ~= nil and count then
    dict:set("keys:" .. wid, keys_string(S.keys, count))
  end
end

-- handler for source "bench": keep it cheap, no allocation on the hot path
local function on_bench(data, event)
  local t = now_us()
  local s = S
  if event == "tp" then
    local n = s.seen + 1
    s.seen = n
    if n == 1 then
      s.first = t
      s.size = dict:get("size") or -1
    end
    s.last = t
    local td = type(data)
    if td == "string" then
      -- BENCH_PAYLOAD=string: the payload is just SIZE bytes, no sequence number
      if #data ~= s.size then s.bad = s.bad + 1 end
    elseif td ~= "table" then
      s.bad = s.bad + 1
    else
      local dn, p = data.n, data.p
      if type(p) ~= "string" or #p ~= data.z or type(dn) ~= "number" then
        s.bad = s.bad + 1
      elseif dn <= s.last_n then
        s.ooo = s.ooo + 1 -- duplicate or out of order
      else
        s.last_n = dn
      end
    end
    if n % 4096 == 0 then
      dict:set("prog:" .. wid, snapshot())
    end
  elseif event == "lat" then
    local n = s.nlat + 1
    s.nlat = n
    if type(data) == "table" and type(data.t) == "number" then
      s.lat[n] = t - data.t
    else
      s.bad = s.bad + 1
      s.lat[n] = -1
    end
  elseif event == "uq" then
    -- unique scenario: which keys ran here (the driver sums the workers)
    local n = s.seen + 1
    s.seen = n
    if n == 1 then s.first = t end
    s.last = t
    local dn = type(data) == "table" and data.n
    if type(dn) ~= "number" then
      s.bad = s.bad + 1
    else
      s.keys[dn] = (s.keys[dn] or 0) + 1
    end
    if n % 4096 == 0 then
      dict:set("prog:" .. wid, snapshot())
    end
  elseif event == "fill" then
    -- throughput_full: the log filled before the measurement
    dict:incr("fill:" .. wid, 1, 0)
  elseif event == "fillend" then
    -- what the fill lost (the poster's own worker may fall behind) is
    -- not the measurement's
    s.lost, s.lost_reports = 0, 0
    dict:set("filled:" .. wid, 1)
  elseif event == "end" then
    s.end_t = t
    flush(type(data) == "table" and tonumber(data.count) or nil)
  elseif event == "cend" then
    -- contend: every worker posts one after its events; the last one ends it here
    s.cends = s.cends + 1
    if s.cends == ngx.worker.count() then
      s.end_t = t
      flush()
    end
  end
end

local function on_lost(data)
  local s = S
  s.lost = s.lost + (type(data) == "table" and tonumber(data.count) or 0)
  s.lost_reports = s.lost_reports + 1
  dict:set("prog:" .. wid, snapshot())
end

local function init_worker_events(opts)
  local ev = require "resty.worker.events"
  M.ev, M.poll, post, stats = ev, ev.poll, ev.post, ev.stats
  ev.register(on_bench, "bench")
  ev.register(on_lost, "resty-worker-events", "lost")
  return ev.configure { shm = opts.shm, interval = opts.interval }
end

-- resty.events has no interval option: opts.interval is not used
local function init_events(opts)
  local ok, ev = pcall(require("resty.events").new, {
    listening = opts.listening,
    shm = opts.shm ~= "" and opts.shm or nil,
    max_payload_len = EVENTS_MAX_PAYLOAD,
  })
  if not ok then return nil, ev end
  local publish = ev.publish
  M.ev = ev
  M.poll = function() return ev:poll() end
  post = function(source, event, data, unique)
    return publish(ev, unique or "all", source, event, data)
  end
  stats = ev.stats and function() return ev:stats() end
  ev:subscribe("bench", "*", on_bench)
  return ev:init_worker()
end

function M.init_worker(opts)
  wid, pid = ngx.worker.id(), ngx.worker.pid()
  if opts.jit_profile then
    require("jit.p").start(opts.jit_profile_mode, opts.jit_profile .. "-" .. wid .. ".txt")
    jit_profiling = true
  end
  api = opts.api or "worker.events"
  reset()
  local ok, err
  if api == "events" then
    ok, err = init_events(opts)
  else
    ok, err = init_worker_events(opts)
  end
  if not ok then
    ngx.log(ngx.ERR, "bench: ", api, " start failed: ", err)
    dict:set("fail:" .. wid, tostring(err))
    return
  end
  if opts.contend then
    assert(ngx.timer.at(0, contend_wait))
  end
  dict:set("ready:" .. wid, pid)
end

-- resty.events' broker location (lua-resty-events' workers connect to it;
-- the module answers a stray client)
function M.broker()
  M.ev:run()
end

---------------------------------------------------------------------------
-- posters (run in a timer of the worker that handled /bench/start)
---------------------------------------------------------------------------
-- an implementation with a bounded publish queue (lua-resty-events) refuses
-- posts while it is full: the end marker is retried for up to 20 s
local function post_end(count, event)
  local ok, err
  for _ = 1, 400 do
    ok, err = post("bench", event or "end", { count = count })
    if ok then return end
    ngx.sleep(0.05)
  end
  dict:set("poster_end_err", tostring(err))
end

local function poster_latency(premature, p)
  if premature then return end
  local post, sleep = post, ngx.sleep
  local fails, ferr = 0, nil
  local t0 = now_us()
  for i = 1, p.count do
    local t = now_us()
    local ok, err = post("bench", "lat", { t = t, n = i })
    if not ok then fails = fails + 1; ferr = ferr or err end
    sleep(p.period)
  end
  local t1 = now_us()
  post_end(p.count)
  dict:set("poster", format("wid=%d count=%d t0=%.3f t1=%.3f fails=%d", wid, p.count, t0, t1, fails))
  if ferr then dict:set("poster_err", tostring(ferr)) end
end

local function poster_throughput(premature, p)
  if premature then return end
  local K, size = p.count, p.size
  local post = post
  local fails, ferr = 0, nil
  local t0, t1
  if p.payload == "string" then
    local payload = rep("x", size)
    t0 = now_us()
    for _ = 1, K do
      local ok, err = post("bench", "tp", payload)
      if not ok then fails = fails + 1; ferr = ferr or err end
    end
    t1 = now_us()
  else
    local payload = { n = 0, z = size, p = rep("x", size) }
    t0 = now_us()
    for i = 1, K do
      payload.n = i
      local ok, err = post("bench", "tp", payload)
      if not ok then fails = fails + 1; ferr = ferr or err end
    end
    t1 = now_us()
  end
  post_end(K)
  dict:set("poster", format("wid=%d count=%d t0=%.3f t1=%.3f fails=%d", wid, K, t0, t1, fails))
  if ferr then dict:set("poster_err", tostring(ferr)) end
end

-- contend: every worker posts K plain strings of `size` bytes at the same
-- monotonic time (so posts and receives overlap in every worker), then "cend"
local function contend_post(p)
  local K, publish = p.count, post
  local payload = rep("x", p.size)
  local fails, ferr = 0, nil
  local t0 = now_us()
  for _ = 1, K do
    local ok, err = publish("bench", "tp", payload)
    if not ok then fails = fails + 1; ferr = ferr or err end
  end
  local t1 = now_us()
  dict:set("cpost:" .. wid, format("t0=%.3f t1=%.3f fails=%d", t0, t1, fails))
  post_end(K, "cend")
  if dict:incr("cposted", 1, 0) == ngx.worker.count() then
    dict:set("poster", format("wid=%d count=%d t0=%.3f t1=%.3f fails=%d", wid, K, t0, t1, fails))
  end
  if ferr then dict:set("poster_err", tostring(ferr)) end
end

-- started in every worker of a contend run (opts.contend): waits for "go"
contend_wait = function(premature)
  if premature then return end
  local sleep, get = ngx.sleep, dict.get
  local deadline = now_us() + 600e6
  while not ngx.worker.exiting() and now_us() < deadline do
    local go = get(dict, "go")
    if go then
      local p = {}
      for k, v in go:gmatch("(%w+)=([%d.]+)") do p[k] = tonumber(v) end
      local wait = (p.t - now_us()) / 1e6
      if wait > 0 then sleep(wait) end
      return contend_post(p)
    end
    sleep(0.005)
  end
end

-- every key distinct ("k1", "k2", ...): each must run exactly once, in one worker
local function poster_unique(premature, p)
  if premature then return end
  local K, size = p.count, p.size
  local post = post
  local fails, ferr = 0, nil
  local payload = { n = 0, z = size, p = rep("x", size) }
  local t0 = now_us()
  for i = 1, K do
    payload.n = i
    local ok, err = post("bench", "uq", payload, "k" .. i)
    if not ok then fails = fails + 1; ferr = ferr or err end
  end
  local t1 = now_us()
  post_end(K)
  local st = stats and stats() or {}
  dict:set("poster", format("wid=%d count=%d t0=%.3f t1=%.3f fails=%d claims_capacity=%d claims_refused=%d",
                            wid, K, t0, t1, fails, st.claims_capacity or -1, st.claims_refused or -1))
  if ferr then dict:set("poster_err", tostring(ferr)) end
end

-- GET /bench/start?scenario=latency&count=200&period=0.02
-- GET /bench/start?scenario=throughput&count=100000&size=64
-- GET /bench/start?scenario=unique&count=100000&size=64
-- GET /bench/start?scenario=contend&count=100000&size=64 (nginx started with contend = true)
function M.start()
  local a = ngx.req.get_uri_args()
  local scenario = a.scenario
  local p = {
    count = tonumber(a.count) or 0,
    size = tonumber(a.size) or 0,
    period = tonumber(a.period) or 0.02,
    payload = a.payload == "string" and "string" or "table",
  }
  -- receivers check string payloads against this size
  dict:set("size", p.size)
  local fn
  if scenario == "latency" then
    fn = poster_latency
  elseif scenario == "throughput" then
    fn = poster_throughput
  elseif scenario == "unique" then
    fn = poster_unique
  elseif scenario == "contend" then
    -- every worker starts 50 ms from now (each polls "go" every 5 ms)
    dict:set("go", format("t=%.3f count=%d size=%d", now_us() + 50000, p.count, p.size))
    ngx.say("poster=", wid, " pid=", pid)
    return
  else
    ngx.status = 400
    ngx.say("unknown scenario ", tostring(scenario))
    return
  end
  if not dict:add("poster_wid", wid) then
    ngx.status = 409
    ngx.say("a scenario already started in this nginx")
    return
  end
  local ok, err = ngx.timer.at(0, fn, p)
  if not ok then
    ngx.status = 500
    ngx.say("failed to create timer: ", err)
    return
  end
  ngx.say("poster=", wid, " pid=", pid)
end

-- GET /bench/pollcost?n=1000000: average cost of M.poll() with nothing pending
-- (JIT-compiled loop, and the same loop with the JIT off for it: requests run
-- a handler once, so their cost lies between the two)
local function poll_loop(poll, n)
  for _ = 1, n do poll() end
end
local function poll_loop_interp(poll, n)
  for _ = 1, n do poll() end
end
if jit and jit.off then jit.off(poll_loop_interp, true) end

function M.pollcost()
  local n = tonumber(ngx.req.get_uri_args().n) or 1000000
  local t0 = now_us()
  poll_loop(M.poll, n)
  local t1 = now_us()
  poll_loop_interp(M.poll, n)
  local t2 = now_us()
  ngx.say(format("ns_per_call=%.1f ns_per_call_nojit=%.1f", (t1 - t0) * 1000 / n, (t2 - t1) * 1000 / n))
end

-- GET /bench/fill?bytes=B: posts B bytes of 4 KB strings ("bench", "fill")
-- from this worker, then "fillend", so that the log has wrapped before a
-- measurement (a production log is always full: every post evicts); sleeps
-- 1 ms every 64 posts. Answers "filled=N"; each worker counts them in
-- "fill:<wid>" and sets "filled:<wid>" on "fillend".
function M.fill()
  local bytes = tonumber(ngx.req.get_uri_args().bytes) or 0
  local payload = rep("x", 4096)
  local n = math.ceil(bytes / 4096)
  local fails = 0
  for i = 1, n do
    if not post("bench", "fill", payload) then fails = fails + 1 end
    if i % 64 == 0 then ngx.sleep(0.001) end
  end
  post("bench", "fillend", "")
  ngx.say("filled=", n - fails)
end

-- GET /bench/results: every key of bench_results, "key<TAB>value" a line
function M.results()
  local keys = dict:get_keys(0)
  local out = new_tab(#keys, 0)
  for i, k in ipairs(keys) do
    out[i] = k .. "\t" .. tostring(dict:get(k))
  end
  out[#out + 1] = ""
  ngx.print(concat(out, "\n"))
end

return M
