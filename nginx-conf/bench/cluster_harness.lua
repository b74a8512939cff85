-- The nginx side of scripts/bench's `cluster` scenario (scripts/bench_cluster.py):
-- the same harness on node A and node B, two nginx instances whose zones
-- share one Redis stream (worker_events_cluster).
--
-- Every worker registers one handler for source "bench" through the API
-- under test (opts.api: "worker.events" = resty.worker.events, "events" =
-- resty.events) and counts what it gets; one worker of node A, picked by the
-- driver, runs the poster in a timer, posting with { cluster = true } (or
-- publish("cluster", ...)), so every worker of A gets each event locally and
-- every worker of B through Redis. The clock is CLOCK_MONOTONIC (LuaJIT FFI),
-- which every process on the host shares: a receive time on B minus the post
-- time carried in the payload is the cross-node latency.
--
-- Keys written to bench_results (lua_shared_dict, the harness's own
-- bookkeeping, never the measured events):
--   ready:<wid>   pid, once the worker's configure() / init_worker() succeeded
--   fail:<wid>    its error
--   cmd:<wid>     the driver's command for this worker (a query string; taken
--                 by the worker's 0.1 s command timer)
--   warm:<wid>    the last warm-up event's n this worker got
--   poster        "k=v ..." of the posting worker, after its last post
--   prog:<wid>    "k=v ..." progress snapshot (every 4096 events)
--   res:<wid>     "k=v ..." final counters, written on the "end" event
--   lat:<wid>     comma-separated receive-minus-post times (µs)
local ffi = require "ffi"
local cjson = require "cjson.safe"

local ngx = ngx
local dict = ngx.shared.bench_results
local format, concat, rep = string.format, table.concat, string.rep
local type, tonumber, tostring = type, tonumber, tostring

local ok_new_tab, new_tab = pcall(require, "table.new")
if not ok_new_tab then
  new_tab = function() return {} end
end

-- a private name bound to libc's clock_gettime (as bench_harness.lua), so
-- another cdef of it cannot clash with ours
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

local M = {}

local wid, pid
local S       -- this worker's counters
local api     -- "worker.events" | "events"
local post    -- post(event, data) -> ok, err: to every worker of every node
local status  -- () -> the zone's status document (stats().status)
local lost_of -- nil, or () -> this consumer's lost count (resty.events)

local function reset()
  S = {
    lat = new_tab(2048, 0), nlat = 0,
    seen = 0, first = 0, last = 0, last_n = 0, ooo = 0, gaps = 0, bad = 0,
    remote = 0, lost = 0, lost_cluster = 0, lost_reports = 0, end_t = 0, done = 0,
  }
end

local function snapshot()
  local s = S
  if lost_of then s.lost = lost_of() or s.lost end
  return format("wid=%d pid=%d seen=%d first=%.3f last=%.3f ooo=%d gaps=%d bad=%d remote=%d lost=%d "
                .. "lost_cluster=%d lost_reports=%d nlat=%d end_t=%.3f done=%d",
                wid, pid, s.seen, s.first, s.last, s.ooo, s.gaps, s.bad, s.remote, s.lost,
                s.lost_cluster, s.lost_reports, s.nlat, s.end_t, s.done)
end

local function flush()
  S.done = 1
  dict:set("res:" .. wid, snapshot())
  if S.nlat > 0 then
    dict:set("lat:" .. wid, concat(S.lat, ",", 1, S.nlat))
  end
end

-- handler for source "bench"; `from` is the posting worker's pid
-- (resty.worker.events) or id (resty.events): nil for another node's event
local function on_bench(data, event, from)
  local t = now_us()
  local s = S
  if event == "tp" then
    local n = s.seen + 1
    s.seen = n
    if n == 1 then s.first = t end
    s.last = t
    if from == nil then s.remote = s.remote + 1 end
    local dn = type(data) == "table" and data.n
    if type(dn) ~= "number" or type(data.p) ~= "string" or #data.p ~= data.z then
      s.bad = s.bad + 1
    elseif dn <= s.last_n then
      s.ooo = s.ooo + 1 -- a duplicate or out of order
    else
      if dn ~= s.last_n + 1 then s.gaps = s.gaps + 1 end
      s.last_n = dn
    end
    if n % 4096 == 0 then
      dict:set("prog:" .. wid, snapshot())
    end
  elseif event == "lat" then
    local n = s.nlat + 1
    s.nlat = n
    if from == nil then s.remote = s.remote + 1 end
    if type(data) == "table" and type(data.t) == "number" then
      s.lat[n] = format("%.1f", t - data.t)
    else
      s.bad = s.bad + 1
      s.lat[n] = "-1"
    end
  elseif event == "warm" then
    dict:set("warm:" .. wid, type(data) == "table" and data.n or -1)
  elseif event == "end" then
    s.end_t = t
    flush()
  end
end

local function on_lost(data)
  local s = S
  s.lost = s.lost + (type(data) == "table" and tonumber(data.count) or 0)
  if type(data) == "table" and data.cluster then
    s.lost_cluster = s.lost_cluster + (tonumber(data.count) or 0)
  end
  s.lost_reports = s.lost_reports + 1
  dict:set("prog:" .. wid, snapshot())
end

local function init_worker_events(opts)
  local ev = require "resty.worker.events"
  local evpost, cl = ev.post, { cluster = true }
  post = function(event, data) return evpost("bench", event, data, nil, cl) end
  status = function()
    local st = ev.stats()
    return st and st.status
  end
  ev.register(function(data, event, _, from) on_bench(data, event, from) end, "bench")
  ev.register(on_lost, "resty-worker-events", "lost")
  return ev.configure { shm = opts.shm }
end

-- resty.events: this module ignores `listening` (no broker); lost events are
-- only in the consumer's stats().lost (this API has no `lost` event)
local function init_events(opts)
  local ok, ev = pcall(require("resty.events").new, {
    listening = "unix:/nonexistent/events.sock", shm = opts.shm,
  })
  if not ok then return nil, ev end
  local publish = ev.publish
  post = function(event, data) return publish(ev, "cluster", "bench", event, data) end
  status = function()
    local st = ev:stats()
    return st and st.status
  end
  lost_of = function()
    local st = ev:stats()
    return st and st.lost
  end
  ev:subscribe("bench", "*", function(data, event, _, from) on_bench(data, event, from) end)
  return ev:init_worker()
end

---------------------------------------------------------------------------
-- posters (in a timer of the worker the driver picked)
---------------------------------------------------------------------------
local function payload(size)
  return { n = 0, z = size, p = rep("x", size) }
end

local function post_end(count)
  local ok, err = post("end", { count = count })
  if not ok then dict:set("poster_end_err", tostring(err)) end
end

-- one event every `period` s, each carrying its post time
local function poster_latency(p)
  local sleep = ngx.sleep
  local fails, ferr = 0, nil
  local t0 = now_us()
  for i = 1, p.count do
    local d = payload(p.size)
    d.n = i
    d.t = now_us()
    local ok, err = post("lat", d)
    if not ok then fails = fails + 1; ferr = ferr or err end
    sleep(p.period)
  end
  local t1 = now_us()
  post_end(p.count)
  dict:set("poster", format("wid=%d count=%d t0=%.3f t1=%.3f fails=%d", wid, p.count, t0, t1, fails))
  if ferr then dict:set("poster_err", tostring(ferr)) end
end

-- `count` events as fast as it goes: `batch` posts, then ngx.sleep(pause)
-- (0: yield once), so that this worker's event loop (and the bridge, when it
-- runs here) gets its turn
local function poster_throughput(p)
  local sleep = ngx.sleep
  local K, batch, pause = p.count, p.batch, p.pause
  local fails, ferr = 0, nil
  local d = payload(p.size)
  local t0 = now_us()
  for i = 1, K do
    d.n = i
    local ok, err = post("tp", d)
    if not ok then fails = fails + 1; ferr = ferr or err end
    if i % batch == 0 then sleep(pause) end
  end
  local t1 = now_us()
  post_end(K)
  dict:set("poster", format("wid=%d count=%d t0=%.3f t1=%.3f fails=%d", wid, K, t0, t1, fails))
  if ferr then dict:set("poster_err", tostring(ferr)) end
end

local POSTERS = { latency = poster_latency, throughput = poster_throughput }

local function run_cmd(premature, q)
  if premature then return end
  local a = ngx.decode_args(q)
  local fn = POSTERS[a.scenario]
  if not fn then
    dict:set("poster_err", "unknown scenario " .. tostring(a.scenario))
    return
  end
  fn {
    count = tonumber(a.count) or 0, size = tonumber(a.size) or 64,
    period = tonumber(a.period) or 0.005, batch = tonumber(a.batch) or 256,
    pause = tonumber(a.pause) or 0,
  }
end

-- the driver addresses a worker through the dict: an HTTP request may land
-- in any worker
local function check_cmd(premature)
  if premature then return end
  local k = "cmd:" .. wid
  local q = dict:get(k)
  if q then
    dict:delete(k)
    local ok, err = ngx.timer.at(0, run_cmd, q)
    if not ok then dict:set("poster_err", "failed to create timer: " .. tostring(err)) end
  end
end

function M.init_worker(opts)
  wid, pid = ngx.worker.id(), ngx.worker.pid()
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
  ngx.timer.every(0.1, check_cmd)
  dict:set("ready:" .. wid, pid)
end

---------------------------------------------------------------------------
-- locations
---------------------------------------------------------------------------

-- GET /bench/start?wid=1&scenario=latency&count=2000&size=64&period=0.005
-- GET /bench/start?wid=1&scenario=throughput&count=100000&size=64&batch=256&pause=0
function M.start()
  local a = ngx.req.get_uri_args()
  local target = tonumber(a.wid)
  if not target or not POSTERS[a.scenario] then
    ngx.status = 400
    ngx.say("need wid= and scenario=latency|throughput")
    return
  end
  if not dict:add("poster_wid", target) then
    ngx.status = 409
    ngx.say("a scenario already started in this nginx")
    return
  end
  dict:set("cmd:" .. target, ngx.var.args)
  ngx.say("poster=", target)
end

-- GET /bench/warm?n=3: one cluster "warm" event (every worker of every node
-- records the last n it got)
function M.warm()
  local ok, err = post("warm", { n = tonumber(ngx.var.arg_n) or 0 })
  if not ok then
    ngx.status = 500
    ngx.say("post failed: ", err)
    return
  end
  ngx.say("ok")
end

-- GET /bench/cluster: the zone's status `cluster` object as JSON
function M.cluster()
  local st = status()
  ngx.say(cjson.encode(type(st) == "table" and type(st.cluster) == "table" and st.cluster or {}))
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
