-- ngx_worker_events.cluster: the Redis Streams bridge of one node.
--
-- Every worker runs a lease timer; the one worker holding the zone's lease
-- (see src/zone/cluster.rs) runs the bridge: two light threads, each with
-- its own Redis connection (cosockets; lua-resty-redis connects and
-- authenticates, the batches are RESP built and parsed natively):
--   out: cluster records of the local log -> XADD (or, for a cluster
--        `unique` event, SET NX PX: the node that gets the key runs it),
--        up to 1024 commands (or 1 MB of events) per write (native cluster_out);
--   in:  XREAD BLOCK from the last id handled -> the local log, exactly
--        once, other nodes' events only (native cluster_feed); while idle,
--        XINFO tells whether the stream was reset (its last id went back).
-- The Redis side (connections, replies read natively with a limit per
-- reply, failures logged once per outage, backoff) is cluster_link.lua; the
-- loops yield every YIELD_BYTES. A light thread that dies is restarted, and
-- the lease is released when the bridge itself ends.
-- Positions live in the zone, so a reload or a killed bridge worker hands
-- over without losing or repeating events. Started by the Lua APIs when
-- they open the cluster's zone in init_worker; start() may be called too.
--
--   local cluster = require "ngx_worker_events.cluster"
--   cluster.start()                 -- idempotent; nil, err without the directive
--   cluster.claim(key, ttl)         -- true | false | nil, err (cluster-wide NX key)
--   cluster.configured()            -- the directive's settings (no password) | nil
--
-- Embedded in the nginx module; `native` is the module's native table.
local native = ...

local ngx = ngx
local log = ngx.log
local ERR, WARN, INFO, DEBUG = ngx.ERR, ngx.WARN, ngx.INFO, ngx.DEBUG
local exiting = ngx.worker.exiting
local sleep = ngx.sleep
local tostring, tonumber, type, pairs = tostring, tonumber, type, pairs
local floor = math.floor
local null = ngx.null

local ffi = require "ffi"
pcall(ffi.cdef, native.CDEF)
local c_set_sema = ffi.C.ngx_worker_events_set_sema
local semaphore = require "ngx.semaphore"

local PREFIX = native.LOG_PREFIX .. "cluster: "
local LEASE_EVERY = 0.25       -- lease check / renewal period (s); a lease lasts 1 s
local BATCH = 1024             -- entries per XADD pipeline / XREAD
local PIPELINE = 2             -- XADD batches written before the first's replies are read
local BLOCK_MS = 1000          -- XREAD BLOCK
local OUT_LIMIT = 64 * 1024    -- one XADD / SET reply

local _M = { _VERSION = "0.1.0" }

local conf, consumer, token, started
local L = require "ngx_worker_events.cluster_link"
local addr, connect, transient, failed = L.addr, L.connect, L.transient, L.failed
local ratelog, read_replies, pause, backoff_new, link = L.ratelog, L.read_replies, L.pause,
  L.backoff_new, L.link
local conns = L.conns -- the bridge's connections by direction (closed when a loop dies)
local YIELD_BYTES = L.YIELD_BYTES

local function holding(tok)
  return token == tok and not exiting() and native.cluster_holds(consumer, tok)
end

---------------------------------------------------------------------------
-- out: local cluster records -> the stream
---------------------------------------------------------------------------

local function out_loop(tok)
  local sema = semaphore.new(0)
  c_set_sema(consumer, sema.sem)
  local node, stream, maxlen = conf.node, conf.stream, conf.maxlen
  local epoch = native.cluster_epoch(consumer)
  local red, backoff = nil, backoff_new()
  -- batches written whose replies are not read yet, oldest first: { n, held }
  -- (up to PIPELINE: Redis works on the next while this worker reads the
  -- replies of the one before; the zone's saved cursor follows the replies)
  local inflight = {}
  local function broken(what, err)
    failed(what, err, "out", tok)
    red:close()
    red = nil
    inflight = {}
    native.cluster_rewind(consumer) -- what was in flight goes again
    backoff:wait(tok)
  end
  while holding(tok) do
    red = link("out", red, backoff, tok)
    if not red then goto continue end
    do
      local sock = rawget(red, "_sock")
      if #inflight < PIPELINE then
        local n, payload, held, last, lost = native.cluster_out(consumer, BATCH, stream, node,
                                                               maxlen, epoch)
        if not n then
          log(ERR, PREFIX, "reading the local log failed: ", tostring(payload))
          pause(1, tok)
          goto continue
        end
        if lost > 0 then
          log(ERR, PREFIX, lost, " cluster event(s) were overwritten in the zone before",
              " they reached redis (the zone is too small for the outage or the rate)")
        end
        if n > 0 then
          -- the batch, built natively, in one write
          local ok, err = sock:send(payload)
          if not ok then
            broken("XADD", err)
            goto continue
          end
          inflight[#inflight + 1] = { n, held }
          -- more waiting: fill the pipeline before reading
          if #inflight < PIPELINE then goto continue end
        elseif #inflight == 0 then
          if lost > 0 then native.cluster_ack(consumer, tok, last, 0) end
          sema:wait(1)
          goto continue
        end
      end
      -- the oldest batch's n replies
      local batch = table.remove(inflight, 1)
      local n, held = batch[1], batch[2]
      -- (sparse: an XADD's id is not needed, only errors and SET NX's answers)
      local res, err = read_replies(sock, "out", n, OUT_LIMIT, true)
      -- an error reply that says "not now" fails the whole batch too: it
      -- goes again (receivers drop what already reached the stream)
      for i = 1, res and n or 0 do
        local r = res[i]
        if type(r) == "table" and r[1] == false and transient(r[2]) then
          res, err = nil, r[2]
          break
        end
      end
      if not res then
        broken("XADD", err)
        goto continue
      end
      local sent, refused, refusal = 0, 0, nil
      for i = 1, n do
        local h, r = held[i], res[i]
        if type(r) == "table" and r[1] == false then
          -- a permanent error reply (e.g. WRONGTYPE: the key is not a
          -- stream): dropping it is all that can be done; the receivers
          -- count the gap
          refused, refusal = refused + 1, r[2]
          if h then native.cluster_count(consumer, "unique_failed", 1) end
        elseif h then
          if r == "OK" then
            native.cluster_count(consumer, "unique_won", 1)
            local ok, perr = native.cluster_post_won(consumer, h[1], h[2], h[3], h[5] / 1000, h[4])
            if not ok then
              log(ERR, PREFIX, "posting a won cluster unique event failed: ", perr)
            end
          else
            native.cluster_count(consumer, "unique_lost", 1)
            log(DEBUG, PREFIX, "unique event taken by another node")
          end
        else
          sent = sent + 1
        end
      end
      if refused > 0 then
        native.cluster_count(consumer, "errors", refused)
        log(ERR, PREFIX, "redis refused ", refused, " cluster event(s) of a batch of ", n,
            ": ", tostring(refusal))
      end
      -- (the batch's ordinal and cursor are the native side's: the 0)
      if not native.cluster_ack(consumer, tok, 0, sent) then break end
    end
    ::continue::
  end
  c_set_sema(consumer, nil)
  if red then red:close() end
  conns.out = nil
end

---------------------------------------------------------------------------
-- in: the stream -> the local log
---------------------------------------------------------------------------

-- the last generated id of `stream` (nil: there is no such stream), or
-- false, err
local function last_generated(sock, stream, limit)
  local ok, err = sock:send(native.cluster_command("XINFO", "STREAM", stream))
  if not ok then return false, err end
  local r
  r, err = read_replies(sock, "in", 1, limit)
  if not r then return false, err end
  local info = r[1]
  if type(info) ~= "table" then return false, "unexpected reply to XINFO" end
  if info[1] == false then
    if tostring(info[2]):find("no such key", 1, true) then return nil end
    return false, info[2]
  end
  for k = 1, #info - 1, 2 do
    if info[k] == "last-generated-id" and type(info[k + 1]) == "string" then
      return info[k + 1]
    end
  end
  return false, "no last-generated-id in XINFO's reply"
end

local function in_loop(tok)
  local node, stream = conf.node, conf.stream
  local limit = native.cluster_limit(consumer)
  local red, backoff = nil, backoff_new()
  local last = native.cluster_last_id(consumer)
  local function broken(what, err)
    native.cluster_feed(consumer, tok, nil, node) -- forget a partial reply
    native.cluster_read("in", nil)
    failed(what, err, "in", tok)
    red:close()
    red, conns["in"] = nil, nil
    -- what was delivered before the failure moved the zone's id on
    last = native.cluster_last_id(consumer) or last
    backoff:wait(tok)
  end
  while holding(tok) do
    red = link("in", red, backoff, tok, conf.timeout + BLOCK_MS)
    if not red then goto continue end
    if not last then
      -- the first bridge of this zone: start at the stream's end
      local sock = rawget(red, "_sock")
      local ok, err = sock:send(native.cluster_command("XREVRANGE", stream, "+", "-", "COUNT", "1"))
      local r
      if ok then r, err = read_replies(sock, "in", 1, limit) end
      local v = r and r[1]
      if type(v) ~= "table" or v[1] == false then
        broken("XREVRANGE", r and (type(v) == "table" and v[2] or "unexpected reply") or err)
        goto continue
      end
      -- (an empty stream: "0-1", all of it, saved in the zone like any
      -- position, so a bridge that takes over later does not start at the
      -- end of what was posted meanwhile)
      last = (type(v[1]) == "table" and type(v[1][1]) == "string" and v[1][1]) or "0-1"
      native.cluster_skip(consumer, tok, last, false)
    end
    do
      -- XREAD, its reply parsed and its entries delivered natively as the
      -- bytes arrive (lua-resty-redis' reply tables cost ~15 µs an entry)
      local sock = rawget(red, "_sock")
      local state, a, n, lost, drops, jumps
      local ok, err = sock:send(native.cluster_xread(stream, last, BATCH, BLOCK_MS))
      local bytes = 0
      while ok do
        local chunk
        chunk, err = sock:receiveany(65536)
        if not chunk then ok = false break end
        state, a, n, lost, drops, jumps = native.cluster_feed(consumer, tok, chunk, node, BATCH)
        if state ~= "more" then break end
        bytes = bytes + #chunk
        if bytes >= YIELD_BYTES then
          -- a long reply (or a flood): let the worker's other work run
          bytes = 0
          sleep(0)
          if not holding(tok) then ok, err = false, "the lease was lost" break end
        end
      end
      if not ok or state == "error" then
        broken("XREAD", ok and a or err)
        goto continue
      end
      if state == "null" then
        native.cluster_state(consumer, tok, "in", true, 0)
        -- idle: is it still the stream we read? (FLUSHALL, a new Redis)
        local gen, gerr = last_generated(sock, stream, limit * 3)
        if gen == false then
          broken("XINFO", gerr)
        elseif native.cluster_check_reset(consumer, tok, gen) then
          log(ERR, PREFIX, "the stream \"", stream, "\" on ", addr(), " was reset: its last id ",
              gen or "(none: the stream is gone)", " is below the last one read here, ", last,
              "; reading it again from its start")
          last = native.cluster_last_id(consumer) or "0-1"
        end
        goto continue
      end
      last = a or last
      for k = 1, #lost - 1, 2 do
        local from, count = lost[k], lost[k + 1]
        log(ERR, PREFIX, "lost ", count, " event(s) from node \"", from,
            "\": they are not in the stream (trimmed by maxlen, or they never reached it)")
        local pok, perr = native.post(consumer, "resty-worker-events", "lost",
                                      { count = count, node = from, cluster = true },
                                      nil, 1, native.POST_OWN)
        if not pok then log(ERR, PREFIX, "posting the lost event failed: ", perr) end
      end
      if drops then
        for why, d in pairs(drops) do
          ratelog(WARN, "drop " .. why, d[1], "stream entr(y/ies) dropped (", why, "; the last: ",
                  d[2], "); logged at most once a second")
        end
      end
      if jumps then
        ratelog(WARN, "jump", #jumps, "implausible ordinal jump(s) (node \"", jumps[#jumps],
                "\"): taken as a new count, not as loss (a forged or corrupt entry?",
                " secret= makes nodes drop entries they did not sign); logged at most once a second")
      end
      if state == "stale" then break end
      local ms = tonumber(last:match("^(%d+)")) or 0
      local lag = n >= BATCH and ngx.now() * 1000 - ms or 0
      native.cluster_state(consumer, tok, "in", true, lag > 0 and lag or 0)
    end
    ::continue::
  end
  if red then red:close() end
  conns["in"] = nil
end

---------------------------------------------------------------------------
-- the lease
---------------------------------------------------------------------------

-- one direction's loop, its Lua errors caught: name, ok, err
local LOOPS = { out = out_loop, ["in"] = in_loop }
local function run(name, tok)
  local ok, err = pcall(LOOPS[name], tok)
  return name, ok, err
end

-- the bridge: both loops while the lease is ours; a loop that dies (a Lua
-- error) or ends while the lease is still ours is started again
local function supervise(tok)
  local threads, since, backoff = {}, {}, {}
  for name in pairs(LOOPS) do
    threads[name] = ngx.thread.spawn(run, name, tok)
    since[name], backoff[name] = ngx.now(), backoff_new()
  end
  while threads.out or threads["in"] do
    local wok, name, ok, err
    if threads.out and threads["in"] then
      wok, name, ok, err = ngx.thread.wait(threads.out, threads["in"])
    else
      wok, name, ok, err = ngx.thread.wait(threads.out or threads["in"])
    end
    if not wok then name, ok, err = nil, false, name end
    if not name then
      -- (cannot happen: run() catches errors) stop the bridge
      log(ERR, PREFIX, "a bridge thread failed: ", tostring(err))
      break
    end
    threads[name] = nil
    native.cluster_state(consumer, tok, name, false)
    local c = conns[name]
    if c then pcall(c.close, c) conns[name] = nil end
    if name == "out" then c_set_sema(consumer, nil) end
    native.cluster_read(name, nil)
    if name == "in" then native.cluster_feed(consumer, tok, nil, conf.node) end
    if not ok then
      native.cluster_count(consumer, "restarts", 1)
      log(ERR, PREFIX, "the bridge's ", name, " thread died: ", tostring(err),
          "; restarting it")
    end
    if holding(tok) then
      if ngx.now() - since[name] > 10 then backoff[name]:reset() end
      backoff[name]:wait(tok)
      if holding(tok) then
        if ok then native.cluster_count(consumer, "restarts", 1) end
        since[name] = ngx.now()
        threads[name] = ngx.thread.spawn(run, name, tok)
      end
    end
  end
  for _, t in pairs(threads) do ngx.thread.kill(t) end
end

local function bridge(premature, tok)
  if premature then return end
  log(INFO, PREFIX, "this worker holds the bridge of node \"", conf.node, "\" (stream \"",
      conf.stream, "\" on ", addr(), ")")
  local ok, err = pcall(supervise, tok)
  if not ok then log(ERR, PREFIX, "the bridge failed: ", tostring(err)) end
  native.cluster_state(consumer, tok, "both", false)
  -- the lease goes with the bridge (another worker, or this one, takes it)
  if token == tok then
    native.cluster_release(consumer, tok)
    token = nil
  end
end

local function tick(premature)
  if premature or exiting() then
    if token then
      native.cluster_release(consumer, token)
      token = nil
    end
    return
  end
  if token then
    if not native.cluster_renew(consumer, token) then
      log(WARN, PREFIX, "this worker lost the bridge lease (blocked for over a second);",
          " another worker takes over")
      token = nil
    end
    return
  end
  local t = native.cluster_take(consumer)
  if t then
    token = t
    local ok, err = ngx.timer.at(0, bridge, t)
    if not ok then
      log(ERR, PREFIX, "failed to start the bridge: ", err)
      native.cluster_release(consumer, t)
      token = nil
    end
  end
end

-- Starts this worker's lease timer (once). nil, err without the directive.
function _M.start()
  if started then return true end
  local c, err = native.cluster_config()
  if not c then return nil, err end
  if ngx.get_phase() == "init" then
    return nil, "cluster.start() must be called in init_worker_by_lua* or later"
  end
  local id, oerr = native.open(c.zone, false, false)
  if not id then return nil, oerr end
  native.cluster_bridge(id)
  conf, consumer = c, id
  L.init(c, id, holding)
  local ok, terr = ngx.timer.every(LEASE_EVERY, tick)
  if not ok then return nil, "failed to create timer: " .. tostring(terr) end
  started = true
  ngx.timer.at(0, tick)
  return true
end

-- The directive's settings (without the password), or nil, err.
function _M.configured()
  local c, err = native.cluster_config()
  if not c then return nil, err end
  local copy = {}
  for k, v in pairs(c) do copy[k] = v end
  copy.password = c.password and "(set)" or nil
  copy.secret = c.secret or nil
  return copy
end

-- Takes the cluster-wide key `key` for `ttl` seconds (SET NX PX):
-- true (this node's: new, or taken by this node before), false (another
-- node has it), or nil, err (Redis failed: the caller decides; ngx_tasks
-- skips the window).
function _M.claim(key, ttl)
  if type(key) ~= "string" or key == "" then
    error("key must be a non-empty string", 2)
  end
  if type(ttl) ~= "number" or not (ttl > 0) then
    error("ttl must be a positive number", 2)
  end
  local c, err = native.cluster_config()
  if not c then return nil, err end
  local red
  red, err = connect(c)
  if not red then return nil, err end
  local rkey = c.stream .. ":claim:" .. key
  local res
  res, err = red:set(rkey, c.node, "NX", "PX", floor(ttl * 1000))
  if res == null then
    res, err = red:get(rkey)
    res = res and res ~= null and (res == c.node and "OK" or null) or res
  end
  if res == nil then
    red:close()
    return nil, err
  end
  red:set_keepalive(10000, 16)
  return res ~= null
end

return _M
