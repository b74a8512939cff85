-- Cluster test helper (t/6xx, with t/lib/ClusterTest.pm): every node's
-- workers record what both APIs hand them in `ngx.shared.out`; /c/* lets
-- another node (or the test) read and drive this node over HTTP.
local cjson = require "cjson.safe"

local _M = {}

local function dict() return ngx.shared.out end

-- per worker: resty.worker.events and resty.events handlers that count
-- events by "api source/event" and keep the payloads' `i` in order;
-- `redis_module` is the platform's Redis client (t/lib/NginxPlatform.pm:
-- "resty.redis" on OpenResty, "nginx.redis" on Debian)
function _M.init_worker(node, b_port, dir, redis_port, redis_module)
  _M.node, _M.b_port, _M.dir, _M.redis_port = node, b_port, dir, redis_port
  _M.redis_module = redis_module
  dict():rpush("pids", ngx.worker.pid())
  local wev = require "resty.worker.events"
  wev.register(function(data, event, source, pid)
    if source == "resty-worker-events" and event ~= "lost" then return end
    local d = dict()
    local key = "wev " .. source .. "/" .. event
    d:incr("n:" .. ngx.worker.id() .. ":" .. key, 1, 0)
    if event == "lost" then
      d:incr("lost:" .. ngx.worker.id(), data and data.count or 0, 0)
      d:set("lost_node", data and data.node)
    end
    if type(data) == "table" and data.i then
      d:rpush("i:" .. ngx.worker.id() .. ":" .. key, data.i)
    end
    if type(data) == "table" and data.unique then
      d:incr("ran:" .. data.unique, 1, 0)
      d:rpush("ranon:" .. data.unique, node .. "/" .. ngx.worker.id())
    end
    d:set("pidtype:" .. ngx.worker.id(), type(pid))
  end)
  assert(wev.configure { shm = "ev" })
  local ev = require("resty.events").new { listening = "unix:/nonexistent/events.sock" }
  ev:subscribe("*", "*", function(data, event, source, wid)
    dict():incr("n:" .. ngx.worker.id() .. ":ev " .. source .. "/" .. event, 1, 0)
  end)
  assert(ev:init_worker())
  _G.test_events = ev
  dict():incr("ready", 1, 0)
end

-- how many events "api source/event" each worker got: "w0=3 w1=3 ..."
function _M.counts(key)
  local out = {}
  for id = 0, ngx.worker.count() - 1 do
    out[#out + 1] = "w" .. id .. "=" .. (dict():get("n:" .. id .. ":" .. key) or 0)
  end
  return table.concat(out, " ")
end

-- waits until every worker got `n` events of `key` (true) or timeout
function _M.wait(key, n, timeout)
  ngx.update_time()
  local deadline = ngx.now() + (timeout or 5)
  for id = 0, ngx.worker.count() - 1 do
    while (dict():get("n:" .. id .. ":" .. key) or 0) < n do
      if ngx.now() > deadline then return false end
      ngx.sleep(0.01)
      ngx.update_time()
    end
  end
  return true
end

-- true when every worker's `i` list for `key` is 1..n in order
function _M.in_order(key, n)
  for id = 0, ngx.worker.count() - 1 do
    local k = "i:" .. id .. ":" .. key
    if (dict():llen(k) or 0) ~= n then return false, "w" .. id .. " has " .. tostring(dict():llen(k)) end
    for want = 1, n do
      local got = tonumber(dict():lpop(k))
      if got ~= want then return false, "w" .. id .. " #" .. want .. " is " .. tostring(got) end
    end
  end
  return true
end

-- true when every worker's `i` list for `key` only goes up (and forgets it)
function _M.increasing(key)
  for id = 0, ngx.worker.count() - 1 do
    local k, last = "i:" .. id .. ":" .. key, 0
    while true do
      local v = tonumber(dict():lpop(k))
      if not v then break end
      if v <= last then return false, "w" .. id .. ": " .. v .. " after " .. last end
      last = v
    end
  end
  return true
end

-- redis-cli's answer to `args` (a string)
function _M.redis(args)
  local p = io.popen("redis-cli -p " .. _M.redis_port .. " " .. args .. " 2>&1")
  local out = p:read("*a")
  p:close()
  return (out:gsub("\n$", ""))
end

-- restarts / stops / starts redis-server (t/lib/ClusterTest.pm's scripts)
function _M.redis_ctl(what)
  return os.execute(_M.dir .. "/redis/" .. what)
end

-- the status document's cluster object of this node
function _M.cluster_status()
  local doc = require("resty.worker.events").stats().status or {}
  return type(doc.cluster) == "table" and doc.cluster or {}
end

-- waits until `cond()` is true (true) or timeout
function _M.until_true(cond, timeout)
  ngx.update_time()
  local deadline = ngx.now() + (timeout or 5)
  while not cond() do
    if ngx.now() > deadline then return false end
    ngx.sleep(0.02)
    ngx.update_time()
  end
  return true
end

-- the worker pids of this node
function _M.pids()
  local out = {}
  for _ = 0, (dict():llen("pids") or 0) - 1 do
    local v = dict():lpop("pids")
    if v then out[#out + 1] = v; dict():rpush("pids", v) end
  end
  return out
end

-- GET http://127.0.0.1:port/path: status, body
function _M.get(port, path)
  local sock = ngx.socket.tcp()
  sock:settimeout(10000)
  local ok, err = sock:connect("127.0.0.1", port)
  if not ok then return nil, err end
  sock:send("GET " .. path .. " HTTP/1.0\r\nHost: x\r\n\r\n")
  local all = sock:receive("*a") or ""
  sock:close()
  local status, body = all:match("^HTTP/1%.%d (%d+).-\r\n\r\n(.*)$")
  return tonumber(status), body
end

-- node B's answer to /c/<path>
function _M.b(path)
  local _, body = _M.get(_M.b_port, "/c/" .. path)
  return body and (body:gsub("\n$", ""))
end

-- /c/ready | /c/counts?key= | /c/wait?key=&n=&t= | /c/post?n=&source=&event=&unique=
-- | /c/ran?key= | /c/status | /c/lost
function _M.serve()
  local what = ngx.var.uri:match("^/c/(.*)$")
  local a = ngx.req.get_uri_args()
  if what == "ready" then
    ngx.say("ready ", dict():get("ready") or 0)
  elseif what == "counts" then
    ngx.say(_M.counts(a.key))
  elseif what == "wait" then
    ngx.say(_M.wait(a.key, tonumber(a.n), tonumber(a.t) or 5), " ", _M.counts(a.key))
  elseif what == "increasing" then
    ngx.say(_M.increasing(a.key))
  elseif what == "order" then
    ngx.say(_M.in_order(a.key, tonumber(a.n)))
  elseif what == "post" then
    local wev = require "resty.worker.events"
    local from = tonumber(a.from or 1)
    for i = from, from + tonumber(a.n or 1) - 1 do
      local ok, err = wev.post(a.source or "s", a.event or "e", { i = i, unique = a.unique },
                               a.unique, { cluster = true })
      if not ok then ngx.say("post failed: ", err) return end
    end
    ngx.say("posted")
  elseif what == "publish" then
    for i = 1, tonumber(a.n or 1) do
      local ok, err = _G.test_events:publish_cluster("all", a.source or "s", a.event or "e", { i = i })
      if not ok then ngx.say("publish failed: ", err) return end
    end
    ngx.say("published")
  elseif what == "ran" then
    ngx.say(dict():get("ran:" .. a.key) or 0)
  elseif what == "lost" then
    local n = 0
    for id = 0, ngx.worker.count() - 1 do n = n + (dict():get("lost:" .. id) or 0) end
    ngx.say(n)
  elseif what == "pids" then
    ngx.say(table.concat(_M.pids(), " "))
  elseif what == "lostw" then
    local out = {}
    for id = 0, ngx.worker.count() - 1 do
      out[#out + 1] = "w" .. id .. "=" .. (dict():get("lost:" .. id) or 0)
    end
    ngx.say(table.concat(out, " "))
  elseif what == "bridge" then
    ngx.say(_M.cluster_status().bridge_pid or "none")
  elseif what == "pidtype" then
    ngx.say(dict():get("pidtype:0"))
  elseif what == "tw" then
    local keys = dict():get_keys(0)
    local out = {}
    for _, k in ipairs(keys) do
      if k:match("^tw:") then out[#out + 1] = k:sub(4) .. "=" .. dict():get(k) end
    end
    table.sort(out)
    ngx.say(table.concat(out, " "))
  elseif what == "status" then
    ngx.say(cjson.encode(_M.cluster_status()))
  elseif what == "reset" then
    dict():flush_all()
    dict():set("ready", ngx.worker.count())
    ngx.say("ok")
  else
    ngx.status = 404
  end
end

return _M
