-- t/026 and t/027: unique events with Kong's short timeouts (0.01, 0.04 s).
-- One request posts r1 and r2 with one unique key back to back, sleeps
-- 0.1 s, posts r3 and r4 the same way, and says how often each ran in all
-- workers together: r1 and r3 once, r2 and r4 never (lua-resty-worker-events
-- 2.0.1 and lua-resty-events give exactly that). `busy`: before each pair,
-- a handler blocks one worker ("one", not the poster when there are
-- others) or every worker ("all") for 50 ms, so the pair reaches it late.
-- In every worker count and process mode (master off included).
local we = require "t.we"

local _M = {}

local function out() return ngx.shared.out end

-- blocks this worker (nothing else runs in it meanwhile)
local function spin(secs)
  ngx.update_time()
  local t = ngx.now() + secs
  while ngx.now() < t do ngx.update_time() end
end

local function on_event(data, event)
  if event == "block" then
    if data == "all" or data == ngx.worker.id() then spin(0.05) end
  elseif event == "marker" then
    out():incr("marker:" .. ngx.worker.id(), 1, 0)
  else
    out():incr("ran:" .. data, 1, 0)
  end
end

-- init_worker_by_lua*: `api` "we" (resty.worker.events) or "events"
-- (resty.events), with this unique timeout
function _M.init(api, timeout)
  _M.api = api
  if api == "we" then
    local ev = require "resty.worker.events"
    ev.register(on_event, "s")
    assert(we.configure({ timeout = timeout, interval = 0.1 }))
  else
    local ev = require("resty.events").new {
      listening = "unix:" .. ngx.config.prefix() .. "logs/events.sock",
      unique_timeout = timeout,
    }
    ev:subscribe("s", "*", on_event)
    assert(ev:init_worker())
    _M.ev = ev
    out():incr("ready", 1, 0)
  end
end

local function post(event, data, unique)
  if _M.api == "we" then
    return require("resty.worker.events").post("s", event, data, unique)
  end
  return _M.ev:publish(unique or "all", "s", event, data)
end

-- every worker handled marker `n` (and so everything posted before it)
local function wait_markers(n)
  ngx.update_time()
  local deadline = ngx.now() + 5
  for id = 0, ngx.worker.count() - 1 do
    while (out():get("marker:" .. id) or 0) < n do
      if ngx.now() > deadline then return false end
      ngx.sleep(0.005)
      ngx.update_time()
    end
  end
  return true
end

-- `gap`: the sleep between the pairs (default 0.1 s). With every worker
-- blocked, the key's window runs from when the first worker gets to handle
-- it (as in lua-resty-worker-events), so those blocks sleep longer.
function _M.run(busy, gap)
  assert(we.wait_ready())
  local victim = busy == "one" and (ngx.worker.id() + 1) % ngx.worker.count() or busy
  local pairs_ = { { "r1", "r2" }, { "r3", "r4" } }
  for i, p in ipairs(pairs_) do
    if busy then assert(post("block", victim)) end
    assert(post("r", p[1], "uk"))
    assert(post("r", p[2], "uk"))
    if i == 1 then ngx.sleep(gap or 0.1) end
  end
  assert(post("marker"))
  assert(wait_markers(1), "every worker handled everything")
  for _, r in ipairs { "r1", "r2", "r3", "r4" } do
    ngx.say(r, " ran ", out():get("ran:" .. r) or 0)
  end
end

return _M
