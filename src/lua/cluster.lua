-- ngx_worker_events.cluster: the Redis Streams bridge of one node.
--
-- Every worker runs a lease timer; the one worker holding the zone's lease
-- (see src/zone/cluster.rs) runs the bridge: two light threads, each with
-- its own Redis connection (cosockets; lua-resty-redis connects and
-- authenticates, the batches are RESP built and parsed natively):
--   out: cluster records of the local log -> XADD (or, for a cluster
--        `unique` event, SET NX PX: the node that gets the key runs it),
--        256 commands per write (native cluster_out);
--   in:  XREAD BLOCK from the last id handled -> the local log, exactly
--        once, other nodes' events only (native cluster_feed).
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
local ERR, WARN, NOTICE, INFO, DEBUG = ngx.ERR, ngx.WARN, ngx.NOTICE, ngx.INFO, ngx.DEBUG
local exiting = ngx.worker.exiting
local sleep = ngx.sleep
local tostring, tonumber, type, pairs = tostring, tonumber, type, pairs
local min, floor = math.min, math.floor
local byte, sub = string.byte, string.sub
local new_tab = require "table.new"
local fmt = string.format
local null = ngx.null

local ffi = require "ffi"
pcall(ffi.cdef, native.CDEF)
local c_set_sema = ffi.C.ngx_worker_events_set_sema
local semaphore = require "ngx.semaphore"

local PREFIX = native.LOG_PREFIX .. "cluster: "
local LEASE_EVERY = 0.25       -- lease check / renewal period (s); a lease lasts 1 s
local BATCH = 256              -- entries per XADD pipeline / XREAD
local BLOCK_MS = 1000          -- XREAD BLOCK
local BACKOFF_MIN, BACKOFF_MAX = 0.1, 5

local redis
do
  local ok, r = pcall(require, "resty.redis")
  if not ok then ok, r = pcall(require, "nginx.redis") end -- Debian's lua-nginx-redis
  redis = ok and r or nil
end

local _M = { _VERSION = "0.1.0" }

local conf, consumer, token, started
local outage -- { since, attempts } while Redis cannot be used

local function addr()
  return conf.host .. ":" .. conf.port
end

-- a connection to Redis, authenticated, on the configured db
local function connect(c, timeout)
  if not redis then
    return nil, "lua-resty-redis is not installed (Debian: apt-get install lua-nginx-redis)"
  end
  local red, err = redis:new()
  if not red then return nil, err end
  red:set_timeout(timeout or c.timeout)
  local ok
  ok, err = red:connect(c.host, c.port)
  if not ok then return nil, "connect: " .. tostring(err) end
  if c.tls and red:get_reused_times() == 0 then
    ok, err = rawget(red, "_sock"):sslhandshake(nil, c.host, false)
    if not ok then red:close() return nil, "tls: " .. tostring(err) end
  end
  if c.password and red:get_reused_times() == 0 then
    ok, err = red:auth(c.password)
    if not ok then red:close() return nil, "auth: " .. tostring(err) end
  end
  if c.db ~= 0 then
    ok, err = red:select(c.db)
    if not ok then red:close() return nil, "select: " .. tostring(err) end
  end
  -- a restarted server accepts connections while it loads its dataset and
  -- answers LOADING to every command until then: not ready yet
  if red:get_reused_times() == 0 then
    ok, err = red:ping()
    if not ok then red:close() return nil, "ping: " .. tostring(err) end
  end
  return red
end

-- error replies that say "not now" (the server is loading, busy, a replica,
-- failing over, out of memory or unable to persist): the batch is sent again
-- later, as after a broken connection
local TRANSIENT = { LOADING = true, BUSY = true, TRYAGAIN = true, READONLY = true,
                    MASTERDOWN = true, MISCONF = true, OOM = true, CLUSTERDOWN = true,
                    NOAUTH = true, NOREPLICAS = true }
local function transient(err)
  return TRANSIENT[tostring(err):match("^(%u+)")] == true
end

local function failed(what, err)
  native.cluster_count(consumer, "errors", 1)
  native.cluster_state(consumer, false)
  if not outage then
    outage = { since = ngx.now(), attempts = 0 }
    log(ERR, PREFIX, "redis ", addr(), ": ", what, " failed: ", tostring(err),
        " (retrying with backoff; logged once per outage)")
  end
  outage.attempts = outage.attempts + 1
end

local function recovered()
  if outage then
    log(NOTICE, PREFIX, "redis ", addr(), " is reachable again after ",
        fmt("%.1f", ngx.now() - outage.since), " s (", outage.attempts, " failed attempt(s))")
    native.cluster_count(consumer, "reconnects", 1)
    outage = nil
  end
  native.cluster_state(consumer, true)
end

local function holding(tok)
  return token == tok and not exiting() and native.cluster_holds(consumer, tok)
end

-- sleeps `secs` in steps, returning early when the lease is gone
local function pause(secs, tok)
  local t = 0
  while t < secs - 0.001 and holding(tok) do
    local step = min(0.1, secs - t)
    sleep(step)
    t = t + step
  end
end

---------------------------------------------------------------------------
-- out: local cluster records -> the stream
---------------------------------------------------------------------------

-- one reply of a command the bridge sent itself: a status or bulk string,
-- an integer, null (ngx.null), or false, msg for an error reply; nil, err
-- when the connection failed
local function read_reply(sock)
  local line, err = sock:receive()
  if not line then return nil, err end
  local p = byte(line)
  if p == 36 then -- "$": bulk
    local size = tonumber(sub(line, 2))
    if not size then return nil, "bad reply" end
    if size < 0 then return null end
    local data, derr = sock:receive(size + 2)
    if not data then return nil, derr end
    return sub(data, 1, size)
  elseif p == 43 then -- "+": status
    return sub(line, 2)
  elseif p == 45 then -- "-": error
    return false, sub(line, 2)
  elseif p == 58 then -- ":": integer
    return tonumber(sub(line, 2))
  elseif p == 42 then -- "*": an array (not sent by XADD or SET): read past it
    local n = tonumber(sub(line, 2)) or 0
    for _ = 1, n do
      local r, rerr = read_reply(sock)
      if r == nil then return nil, rerr end
    end
    return n < 0 and null or true
  end
  return nil, "bad reply"
end

local function out_loop(tok)
  local sema = semaphore.new(0)
  c_set_sema(consumer, sema.sem)
  local node, stream, maxlen = conf.node, conf.stream, conf.maxlen
  local epoch = native.cluster_epoch(consumer)
  local red, backoff = nil, BACKOFF_MIN
  while holding(tok) do
    if not red then
      local err
      red, err = connect(conf)
      if not red then
        failed("connect", err)
        pause(backoff, tok)
        backoff = min(backoff * 2, BACKOFF_MAX)
        goto continue
      end
      recovered()
      backoff = BACKOFF_MIN
    end
    do
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
      if n == 0 then
        if lost > 0 then native.cluster_ack(consumer, tok, last, 0) end
        sema:wait(1)
        goto continue
      end
      -- the batch, built natively, in one write; then its n replies
      local sock = rawget(red, "_sock")
      local res, err = sock:send(payload)
      if res then
        res = new_tab(n, 0)
        for i = 1, n do
          local r, rerr = read_reply(sock)
          if r == nil then res, err = nil, rerr break end
          res[i] = r == false and { false, rerr } or r
        end
      end
      if not res then
        failed("XADD", err)
        red:close()
        red = nil
        native.cluster_rewind(consumer) -- the batch goes again
        pause(backoff, tok)
        backoff = min(backoff * 2, BACKOFF_MAX)
        goto continue
      end
      -- an error reply that says "not now" fails the whole batch: it goes
      -- again (receivers drop what already reached the stream)
      local retry
      for i = 1, n do
        local r = res[i]
        if type(r) == "table" and r[1] == false and transient(r[2]) then
          retry = r[2]
          break
        end
      end
      if retry then
        failed("XADD", retry)
        red:close()
        red = nil
        native.cluster_rewind(consumer)
        pause(backoff, tok)
        backoff = min(backoff * 2, BACKOFF_MAX)
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
      if not native.cluster_ack(consumer, tok, last, sent) then break end
    end
    ::continue::
  end
  c_set_sema(consumer, nil)
  if red then red:close() end
end

---------------------------------------------------------------------------
-- in: the stream -> the local log
---------------------------------------------------------------------------

local function in_loop(tok)
  local node, stream = conf.node, conf.stream
  local red, backoff = nil, BACKOFF_MIN
  local last = native.cluster_last_id(consumer)
  while holding(tok) do
    if not red then
      local err
      red, err = connect(conf, conf.timeout + BLOCK_MS)
      if not red then
        failed("connect", err)
        pause(backoff, tok)
        backoff = min(backoff * 2, BACKOFF_MAX)
        goto continue
      end
      recovered()
      backoff = BACKOFF_MIN
    end
    if not last then
      -- the first bridge of this zone: start at the stream's end
      local r, err = red:xrevrange(stream, "+", "-", "COUNT", 1)
      if not r then
        failed("XREVRANGE", err)
        red:close()
        red = nil
        goto continue
      end
      last = (type(r) == "table" and r[1] and r[1][1]) or "0-0"
      native.cluster_skip(consumer, tok, last, false)
    end
    do
      -- XREAD, its reply parsed and its entries delivered natively as the
      -- bytes arrive (lua-resty-redis' reply tables cost ~15 µs an entry)
      local sock = rawget(red, "_sock")
      local state, a, n, lost, bad, why
      local ok, err = sock:send(native.cluster_xread(stream, last, BATCH, BLOCK_MS))
      while ok do
        local chunk
        chunk, err = sock:receiveany(65536)
        if not chunk then ok = false break end
        state, a, n, lost, bad, why = native.cluster_feed(consumer, tok, chunk, node)
        if state ~= "more" then break end
      end
      if not ok or state == "error" then
        native.cluster_feed(consumer, tok, nil, node) -- forget a partial reply
        failed("XREAD", ok and a or err)
        red:close()
        red = nil
        pause(backoff, tok)
        backoff = min(backoff * 2, BACKOFF_MAX)
        goto continue
      end
      if state == "null" then
        native.cluster_state(consumer, true, 0)
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
      if bad > 0 then
        log(WARN, PREFIX, bad, " stream entr", bad == 1 and "y" or "ies",
            " not delivered: ", tostring(why))
      end
      if state == "stale" then break end
      local ms = tonumber(last:match("^(%d+)")) or 0
      local lag = n >= BATCH and ngx.now() * 1000 - ms or 0
      native.cluster_state(consumer, true, lag > 0 and lag or 0)
    end
    ::continue::
  end
  if red then red:close() end
end

---------------------------------------------------------------------------
-- the lease
---------------------------------------------------------------------------

local function bridge(premature, tok)
  if premature then return end
  log(INFO, PREFIX, "this worker holds the bridge of node \"", conf.node, "\" (stream \"",
      conf.stream, "\" on ", addr(), ")")
  local t_out = ngx.thread.spawn(out_loop, tok)
  local t_in = ngx.thread.spawn(in_loop, tok)
  ngx.thread.wait(t_out)
  ngx.thread.wait(t_in)
  native.cluster_state(consumer, false)
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
