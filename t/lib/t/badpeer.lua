-- Helpers for t/602 (the cluster bridge against a bad peer): the scripted
-- bad Redis' report, a connection to the test's real Redis, the stream's
-- entries, a worker's memory and the error log.
local c = require "t.cluster"
local cjson = require "cjson.safe"

local _M = {}

-- t/lib/fake_redis.py's report: { fired, sent, closed }
function _M.fake()
  local f = io.open(c.dir .. "/fake.json")
  if not f then return {} end
  local s = f:read("*a")
  f:close()
  return cjson.decode(s) or {}
end

-- a connection to the real redis-server (with the platform's client)
function _M.redis()
  local red = require(c.redis_module):new()
  red:set_timeout(3000)
  assert(red:connect("127.0.0.1", c.redis_port))
  return red
end

-- the stream's entries (of node `node`), each a table of its fields (+ id)
function _M.entries(red, node)
  local out = {}
  for _, e in ipairs(assert(red:xrange("t_events", "-", "+"))) do
    local f = { id = e[1] }
    for k = 1, #e[2], 2 do f[e[2][k]] = e[2][k + 1] end
    if not node or f.n == node then out[#out + 1] = f end
  end
  return out
end

-- resident memory of process `pid` (MB)
function _M.rss_mb(pid)
  local f = io.open("/proc/" .. pid .. "/status")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)")) / 1024
end

-- how many lines of this node's error log contain `plain`
function _M.log_count(plain)
  local f = io.open(ngx.config.prefix() .. "/logs/error.log")
  local n = 0
  for line in f:lines() do
    if line:find(plain, 1, true) then n = n + 1 end
  end
  f:close()
  return n
end

return _M
