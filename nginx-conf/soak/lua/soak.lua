-- The nginx side of scripts/soak: posters, checking receivers, heartbeats.
--
-- Every worker:
--   * posts CRC-checked events at full speed (a timer; a short sleep every
--     `batch` posts so requests and the receivers still run) to the main zone
--     through resty.worker.events, and every `slow_every`-th one also to the
--     small zone "slow" through a second, bare ngx_worker_events.bus instance;
--     every `re_every`-th one also through resty.events on the main zone, and
--     `unique` unique keys per batch (soak_re.lua);
--   * receives on both: resty.worker.events (push, interval 1) on the main
--     zone, and the bare bus on "slow", which polls only every `slow_poll`
--     seconds, so it falls behind and must get `lost` reports; and
--     resty.events on the main zone (soak_re.lua);
--   * checks each event (soak_rx.lua): CRC and header (else bad), per poster
--     lifetime sequence numbers (a repeat or a step back = dup, a jump =
--     missing), and whether the `lost` reports since that poster's previous
--     event cover the jump (else `late`: the gap was not reported before the
--     event after it).
--
-- Streams (a receiver per stream and worker lifetime):
--   ev     resty.worker.events posts (source "soak") to its handlers
--   slow   bare bus posts on zone "slow"
--   re     resty.events broadcasts (source "soak-re") to its callbacks
--   re2we  resty.events broadcasts to resty.worker.events handlers (cross-API)
--   we2re  resty.worker.events posts to resty.events callbacks (cross-API)
--
-- A payload: { p = poster pid, w = its ngx.worker.id(), b = poster lifetime
-- token, s = sequence (from 1, per lifetime and stream: ev, slow, re), c =
-- crc32(d), d = "<p>:<b>:<s>:" .. bytes }, 16 B .. 32 KB, log-uniform;
-- resty.events broadcasts also carry u and t (soak_re.lua).
--
-- lua_shared_dict soak_acc (the driver sums it after the run):
--   tx:<zone>:<token>   "posted=N fails=N"   per poster lifetime, after every batch
--                       (zone: ev, slow, re)
--   rx:<stream>:<token> "seen=N missing=N lost=N lostrep=N bad=N dup=N late=N"
--                       per receiver lifetime, one set (atomic), every `flush` s
--                       and at exit: a killed worker's last events after its
--                       last flush are in neither its missing nor its lost
--                       (re also: foreign=N)
--   slot:<token>        "pid=N ev=<slot> slow=<slot> order=N" at start (order: global counter)
--   go / stop           set by the driver: start / stop posting
--   accfail             incremented when soak_acc or soak_u is full (safe_set refused)
-- lua_shared_dict soak_hb (10 s expiry):
--   hb:<pid>            "t=<now> token=<token> seen=N slot=<ev slot> slowslot=<slow slot> posting=0|1
--                       reseen=N" (seen: ev and slow; reseen: re, re2we, we2re)
-- lua_shared_dict soak_u: unique keys (soak_re.lua)
local ev = require "resty.worker.events"
local bus = require "ngx_worker_events.bus"
local R = require "soak_rx"
local RE = require "soak_re"

local ngx = ngx
local acc, hbd = ngx.shared.soak_acc, ngx.shared.soak_hb
local crc32 = ngx.crc32_long
local format, sub, char, concat = string.format, string.sub, string.char, table.concat
local new_rx, check, on_lost, save = R.new_rx, R.check, R.on_lost, R.save
local floor, random, max = math.floor, math.random, math.max
local type, tostring = type, tostring
local sleep, exiting = ngx.sleep, ngx.worker.exiting

local M = {}

local pid, token, opts, wid
local slow_bus
local rx = {} -- stream name -> receiver state

local function slot_of(stats)
  return stats and stats.slot or -1
end

local posting = false

local function heartbeat(premature)
  for _, r in pairs(rx) do R.flush_rx(r, token) end
  RE.flush()
  if premature then return end
  ngx.update_time()
  local s1 = ev.stats()
  local s2 = slow_bus and slow_bus.stats()
  hbd:set("hb:" .. pid, format("t=%.3f token=%s seen=%d slot=%d slowslot=%d posting=%d reseen=%d",
                               ngx.now(), token, rx.ev.seen + rx.slow.seen,
                               slot_of(s1), slot_of(s2), posting and 1 or 0,
                               rx.re.seen + rx.re2we.seen + rx.we2re.seen), 10)
end

-- posts one event of `size` bytes with sequence s with `post`; true if posted
local payload = {}
local function post_one(post, rnd, s, size, fault)
  local hdr = pid .. ":" .. token .. ":" .. s .. ":"
  local d = hdr .. sub(rnd, 1, max(0, size - #hdr))
  payload.p, payload.w, payload.b, payload.s, payload.c, payload.d = pid, wid, token, s, crc32(d), d
  if fault == "bad" then payload.c = payload.c + 1 end
  return post(payload)
end

-- how each stream posts a payload
local posts = {
  ev = function(p) return ev.post("soak", "e", p) end,
  slow = function(p) return slow_bus.post("soak", "e", p) end,
  re = RE.publish_all,
}

local function poster(premature)
  if premature then return end
  -- 32 KB of random bytes; each event sends a prefix of it behind its header
  local bytes = {}
  for i = 1, 32768 do bytes[i] = char(random(0, 255)) end
  local rnd = concat(bytes)
  local batch, pause, slow_every, re_every = opts.batch, opts.pause, opts.slow_every, opts.re_every
  local seq = { ev = 0, slow = 0, re = 0 }
  local fails = { ev = 0, slow = 0, re = 0 }
  local logged = false
  local inject, n = opts.inject, 0
  local function try(zone, size)
    local s = seq[zone] + 1
    local fault
    n = n + 1
    -- SOAK_INJECT: the checks must notice (every 97th post: a poster lifetime
    -- makes a few hundred under the HUPs; a prime, so that it hits every stream)
    if inject ~= "" and n % 97 == 0 then
      fault = inject
      if fault == "gap" then s = s + 1 elseif fault == "dup" and s > 1 then s = s - 1 end
    end
    local ok, err = post_one(posts[zone], rnd, s, size, fault)
    if ok then
      seq[zone] = max(s, seq[zone])
    else
      fails[zone] = fails[zone] + 1
      if not logged then
        logged = true
        ngx.log(ngx.ERR, "soak: post to ", zone, " failed: ", err)
      end
    end
  end
  while not exiting() and not acc:get("go") do sleep(0.05) end
  while not exiting() and not acc:get("stop") do
    posting = true
    for _ = 1, batch do
      local size = floor(16 * 2 ^ (random() * 11)) -- 16 B .. 32 KB
      try("ev", size)
      local k = seq.ev + fails.ev
      if slow_every > 0 and k % slow_every == 0 then try("slow", size) end
      if re_every > 0 and k % re_every == 0 then try("re", size) end
    end
    if opts.unique > 0 then RE.publish_unique(rnd) end
    for zone, n in pairs(seq) do
      save("tx:" .. zone .. ":" .. token, format("posted=%d fails=%d", n, fails[zone]))
    end
    sleep(pause)
  end
  posting = false
end

local function slow_loop(premature)
  if premature then return end
  while not exiting() do
    slow_bus.poll()
    sleep(opts.slow_poll)
  end
end

function M.init_worker(o)
  opts = o
  pid, wid = ngx.worker.pid(), ngx.worker.id()
  math.randomseed(pid * 1000003 + floor(ngx.now() * 1000))
  token = format("%d-%x", pid, random(0, 0x3fffffff))
  rx.ev, rx.slow = new_rx("ev"), new_rx("slow")
  rx.re2we = R.with_vouch(new_rx("re2we"))

  ev.register(function(data, _, _, from) check(rx.ev, data, from) end, "soak")
  -- cross-API: resty.events' broadcasts and unique keys
  ev.register(function(data, _, _, from) check(rx.re2we, data, from) end, "soak-re")
  ev.register(function(data, _, _, from) RE.run_unique("we", data, from, "p") end, "soak-u")
  ev.register(function(data)
    local n = type(data) == "table" and data.count
    on_lost(rx.ev, n)
    on_lost(rx.re2we, n)
  end, ev.events._source, ev.events.lost)
  local ok, err = ev.configure { shm = "ev", interval = 1, timeout = opts.we_timeout }
  if not ok then
    ngx.log(ngx.ERR, "soak: configure failed: ", err)
    return
  end
  ok, err = RE.init_worker { pid = pid, token = token, rx = rx, opts = opts, prefix = ngx.config.prefix() }
  if not ok then
    ngx.log(ngx.ERR, "soak: configure failed: resty.events: ", err)
    return
  end

  slow_bus = bus.new {
    dispatch = function(source, _, data, from)
      if source == "soak" then check(rx.slow, data, from) end
    end,
    lost = function(n) on_lost(rx.slow, n) end,
  }
  assert(slow_bus.open("slow"))
  slow_bus.set_options { interval = 0 } -- no loop: read only when slow_loop polls
  -- which slots this lifetime took, in the order they were taken (the driver
  -- tells slots of SIGKILLed workers that nobody reused yet from leaked ones)
  save("slot:" .. token, format("pid=%d ev=%d slow=%d order=%d", pid, slot_of(ev.stats()),
                                slot_of(slow_bus.stats()), acc:incr("slotorder", 1, 0)))

  assert(ngx.timer.every(opts.flush, heartbeat))
  assert(ngx.timer.at(0, heartbeat))
  assert(ngx.timer.at(0, poster))
  assert(ngx.timer.at(0, slow_loop))
end

-- GET /ping: who answered
function M.ping()
  ngx.say(pid)
end

-- GET /stats: slots taken in both zones, as this worker sees them
function M.stats()
  local s1, s2 = ev.stats(), slow_bus and slow_bus.stats()
  local s3 = RE.stats()
  ngx.say(format("pid=%d ev_workers=%d slow_workers=%d ev_slot=%d slow_slot=%d ev_lost=%d generation=%d "
                 .. "re_workers=%d re_slot=%d re_lost=%d",
                 pid, s1 and s1.workers or -1, s2 and s2.workers or -1, slot_of(s1), slot_of(s2),
                 s1 and s1.lost or -1, s1 and s1.generation or -1,
                 s3 and s3.workers or -1, slot_of(s3), s3 and s3.lost or -1))
end

-- GET /set?k=go (or stop): tell every worker
function M.set()
  local k = ngx.var.arg_k
  acc:set(k, 1)
  ngx.say("ok")
end

-- GET /dump?dict=soak_acc|soak_hb: every key, "key<TAB>value" a line
function M.dump()
  local d = ngx.shared[ngx.var.arg_dict or "soak_acc"]
  local out = {}
  for _, k in ipairs(d:get_keys(0)) do
    local v = d:get(k)
    if v ~= nil then out[#out + 1] = k .. "\t" .. tostring(v) end
  end
  out[#out + 1] = ""
  ngx.print(concat(out, "\n"))
end

return M
