-- ngx_worker_events.cluster_link: the Redis side of the cluster bridge
-- (ngx_worker_events.cluster): connecting (lua-resty-redis: TLS, AUTH, SELECT,
-- a server still LOADING), replies read with receiveany and parsed natively
-- (linear, with a limit per reply: a peer we do not control may send
-- anything), failures counted and logged once per outage, and the backoff
-- between attempts while the lease holds.
--
--   local L = require "ngx_worker_events.cluster_link"
--   L.init(conf, consumer, holding)  -- once, from cluster.start()
--   L.link(dir, red, backoff, tok)   -- the direction's connection, or nil
--   L.read_replies(sock, which, n, limit, sparse)
--
-- Embedded in the nginx module; `native` is the module's native table.
local native = ...

local ngx = ngx
local log = ngx.log
local ERR, NOTICE = ngx.ERR, ngx.NOTICE
local exiting = ngx.worker.exiting
local sleep = ngx.sleep
local tostring, setmetatable = tostring, setmetatable
local min = math.min
local fmt = string.format

local PREFIX = native.LOG_PREFIX .. "cluster: "
local BACKOFF_MIN, BACKOFF_MAX = 0.1, 5
local YIELD_BYTES = 256 * 1024 -- bytes read before a reply's reader yields to the event loop

local redis
do
  local ok, r = pcall(require, "resty.redis")
  if not ok then ok, r = pcall(require, "nginx.redis") end -- Debian's lua-nginx-redis
  redis = ok and r or nil
end

local _M = { YIELD_BYTES = YIELD_BYTES }

local conf, consumer, holding
local conns = {} -- the bridge's connections by direction (closed when a loop dies)
local outage -- { since, attempts } while Redis cannot be used

-- Sets the node's settings, the bridge's consumer and its lease check
-- (`holding(tok)`: true while `tok` is the live lease of this worker).
function _M.init(c, id, holding_fn)
  conf, consumer, holding = c, id, holding_fn
end

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

-- `dir`: "out" or "in", the direction that failed; `tok`: the bridge's
-- lease (the state is the live holder's: a stale bridge changes nothing)
local function failed(what, err, dir, tok)
  native.cluster_count(consumer, "errors", 1)
  native.cluster_state(consumer, tok, dir, false)
  if not outage then
    outage = { since = ngx.now(), attempts = 0 }
    log(ERR, PREFIX, "redis ", addr(), ": ", what, " failed: ", tostring(err),
        " (retrying with backoff; logged once per outage)")
  end
  outage.attempts = outage.attempts + 1
end

local function recovered(dir, tok)
  if outage then
    log(NOTICE, PREFIX, "redis ", addr(), " is reachable again after ",
        fmt("%.1f", ngx.now() - outage.since), " s (", outage.attempts, " failed attempt(s))")
    native.cluster_count(consumer, "reconnects", 1)
    outage = nil
  end
  native.cluster_state(consumer, tok, dir, true)
end

-- at most one line a second per `key`, with the count since the last one
local ratelog_state = {}
local function ratelog(level, key, n, ...)
  local e = ratelog_state[key]
  if not e then
    e = { n = 0, at = 0 }
    ratelog_state[key] = e
  end
  e.n = e.n + n
  local now = ngx.now()
  if now - e.at >= 1 then
    log(level, PREFIX, e.n, " ", ...)
    e.n, e.at = 0, now
  end
end

-- the next `n` replies on `sock` (`which`: "out" or "in", its native
-- reader), as Lua values ({ false, msg } for an error reply, false for
-- null), or nil, err (the connection failed, or a bad or too large reply).
-- `sparse`: bulk string replies (XADD's ids) are left out (nil), so that a
-- batch of 1024 makes no Lua strings
local function read_replies(sock, which, n, limit, sparse)
  -- first what an earlier read already holds (with two XADD batches in
  -- flight, one chunk can end the first batch's replies and carry the next's)
  local r, rerr = native.cluster_read(which, "", n, limit, sparse)
  if r == nil then return nil, rerr end
  if r ~= "more" then return r end
  local bytes = 0
  while true do
    local chunk, err = sock:receiveany(65536)
    if not chunk then
      native.cluster_read(which, nil)
      return nil, err
    end
    r, rerr = native.cluster_read(which, chunk, n, limit, sparse)
    if r == nil then return nil, rerr end
    if r ~= "more" then return r end
    bytes = bytes + #chunk
    if bytes >= YIELD_BYTES then
      bytes = 0
      sleep(0)
      if exiting() then
        native.cluster_read(which, nil)
        return nil, "exiting"
      end
    end
  end
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

-- exponential backoff between failures: `wait` pauses and doubles it, a
-- success resets it
local Backoff = {}
Backoff.__index = Backoff
local function backoff_new()
  return setmetatable({ secs = BACKOFF_MIN }, Backoff)
end
function Backoff:wait(tok)
  pause(self.secs, tok)
  self.secs = min(self.secs * 2, BACKOFF_MAX)
end
function Backoff:reset()
  self.secs = BACKOFF_MIN
end

-- direction `dir`'s connection: `red` when there is one, else a new one
-- (recorded, the outage's end logged), or nil after a failure (logged once
-- per outage, and waited out)
local function link(dir, red, backoff, tok, timeout)
  if red then return red end
  local err
  red, err = connect(conf, timeout)
  if not red then
    failed("connect", err, dir, tok)
    backoff:wait(tok)
    return nil
  end
  conns[dir] = red
  recovered(dir, tok)
  backoff:reset()
  return red
end

_M.addr, _M.connect, _M.transient, _M.failed, _M.recovered = addr, connect, transient, failed,
  recovered
_M.ratelog, _M.read_replies, _M.pause, _M.backoff_new, _M.link = ratelog, read_replies, pause,
  backoff_new, link
_M.conns = conns

return _M
