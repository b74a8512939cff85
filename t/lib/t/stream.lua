-- Test helper of t/710-stream-*.t: the same code runs in http {} and in
-- stream {} Lua, each with its own dict (zone names are global, dicts per
-- subsystem: http's `out`, stream's `sout`). Handlers record lines per (subsystem, API, worker) in their
-- subsystem's dict; http reads stream's through the stream server, which
-- runs the Lua chunk a client sends on one line and answers its result.
local _M = {}

local SUB = ngx.config.subsystem

local DICT = SUB == "stream" and "sout" or "out"

local function d()
  return assert(ngx.shared[DICT], "declare lua_shared_dict " .. DICT)
end

-- appends `line` to the list `key`
function _M.rec(key, line)
  local n = d():incr(key .. "#n", 1, 0)
  d():set(key .. "#" .. n, line)
end

local function lines(key)
  local t = {}
  for i = 1, d():get(key .. "#n") or 0 do t[i] = d():get(key .. "#" .. i) end
  return t
end

-- in this subsystem: how many workers' `api` handlers ("we", "re") recorded
-- `line`, and how many times in all
function _M.count(api, line)
  local workers, runs = 0, 0
  for w = 0, ngx.worker.count() - 1 do
    local n = 0
    for _, l in ipairs(lines(SUB .. ":" .. api .. ":" .. w)) do
      if l == line then n = n + 1 end
    end
    if n > 0 then workers = workers + 1 end
    runs = runs + n
  end
  return workers .. "/" .. runs
end

function _M.get(key) return tostring(d():get(key)) end
function _M.incr(key) return d():incr(key, 1, 0) end
function _M.set(key, v) return d():set(key, v) end

-- configures both APIs in this worker; their handlers of source "t" record
-- "<event>=<data>"; counts the worker in "ready". `interval`:
-- resty.worker.events' safety-net interval (default 1 s; a long one leaves
-- push wake-ups as the only way an event arrives soon)
function _M.start(interval)
  local wid = ngx.worker.id()
  local we = require "resty.worker.events"
  we.register(function(data, event)
    _M.rec(SUB .. ":we:" .. wid, event .. "=" .. tostring(data))
  end, "t")
  assert(we.configure { shm = "ev", interval = interval })
  local ev = require("resty.events").new {
    listening = "unix:/nonexistent/events.sock", shm = "ev",
  }
  ev:subscribe("t", "*", function(data, event)
    _M.rec(SUB .. ":re:" .. wid, event .. "=" .. tostring(data))
  end)
  assert(ev:init_worker())
  _G.t_events = ev
  d():incr("ready", 1, 0)
end

-- posts event `event` of source "t" (data: this subsystem's name) through
-- `api`, with the unique key `unique` if given
function _M.post(api, event, unique)
  if api == "we" then
    return tostring(assert(require("resty.worker.events").post("t", event, SUB, unique)))
  end
  return tostring(assert(_G.t_events:publish(unique or "all", "t", event, SUB)))
end

-- stream content handler: runs the chunk on the request's line
function _M.serve()
  local sock = assert(ngx.req.socket())
  local code = sock:receive("*l")
  local f, err = load(code or "", "=remote")
  if not f then
    ngx.say("load failed: ", err)
    return
  end
  local ok, res = pcall(f)
  ngx.say(ok and tostring(res) or ("failed: " .. tostring(res)))
end

-- from http: runs `code` in a stream worker, returns what it answered
function _M.remote(port, code)
  local sock = ngx.socket.tcp()
  sock:settimeout(5000)
  assert(sock:connect("127.0.0.1", port))
  assert(sock:send(code .. "\n"))
  local res = assert(sock:receive("*l"))
  sock:close()
  return res
end

-- from http: "http=<workers>/<runs> stream=<workers>/<runs>" for `line` of `api`
function _M.both(port, api, line)
  local q = string.format("%q", line)
  return "http=" .. _M.count(api, line) .. " stream="
         .. _M.remote(port, "return require('t.stream').count('" .. api .. "', " .. q .. ")")
end

-- from http: waits until every worker of both subsystems recorded `line`
-- through `api` (up to 10 s), then returns `both`
function _M.wait(port, api, line)
  local want = ngx.worker.count() .. "/"
  for _ = 1, 200 do
    local s = _M.both(port, api, line)
    local h, st = s:match("^http=(%d+/)%d+ stream=(%d+/)%d+$")
    if h == want and st == want then return s end
    ngx.sleep(0.05)
  end
  return _M.both(port, api, line)
end

-- from http: waits until both subsystems counted every worker in "ready"
function _M.wait_ready(port)
  local n = tostring(ngx.worker.count())
  for _ = 1, 200 do
    if _M.get("ready") == n
       and _M.remote(port, "return require('t.stream').get('ready')") == n then
      return true
    end
    ngx.sleep(0.05)
  end
  return false
end

return _M
