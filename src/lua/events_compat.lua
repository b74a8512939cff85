-- resty.events.compat: lua-resty-events' shim of the lua-resty-worker-events
-- API over one resty.events instance, without the shim's bugs:
-- - register_weak holds its callback weakly;
-- - unregister(callback, source, event...) removes exactly those
--   registrations (the shim removed the last id whatever was asked);
-- - register, register_weak and unregister work before configure() (code
--   written for lua-resty-worker-events registers first); post, post_local
--   and poll before configure() return nil, err;
-- - poll() handles what is pending at once and never sleeps, so it works in
--   every phase;
-- - configure() again is harmless (the shim built a new instance and lost
--   every subscription).
-- Callbacks get (data, event, source, wid), as the shim's did.
local type, error, select, setmetatable, tremove = type, error, select, setmetatable, table.remove

local events = require "resty.events"

local NOT_CONFIGURED = "events not configured, call configure() first"
local WEAK_VALUES = { __mode = "v" }

local _M = { _VERSION = events._VERSION } -- as the library: resty.events' version

local ev -- the resty.events instance, from configure()
local _configured = false

-- every registration: { source =, event =, cb = <strong> | ref = <weak table>, fn =, id = }
local regs = {}

local function subscribe(reg)
  if ev and not reg.id then
    reg.id = ev:subscribe(reg.source, reg.event, reg.fn)
  end
end

local function drop(i)
  local reg = regs[i]
  if reg.id then ev:unsubscribe(reg.id) end
  tremove(regs, i)
end

local function callback_of(reg)
  if reg.ref then return reg.ref[1] end
  return reg.cb
end

local function register(weak, callback, source, event, ...)
  if type(callback) ~= "function" then
    error("expected function, got: " .. type(callback), 3)
  end
  source = source or "*"
  local names = { event or "*", ... }
  for i = 1, #names do
    local reg = { source = source, event = names[i] }
    if weak then
      local ref = setmetatable({ callback }, WEAK_VALUES)
      reg.ref = ref
      reg.fn = function(data, ev_name, src, wid)
        local f = ref[1]
        if f then return f(data, ev_name, src, wid) end
        -- collected: forget the registration
        for j = #regs, 1, -1 do
          if regs[j] == reg then drop(j) end
        end
      end
    else
      reg.cb = callback
      reg.fn = callback
    end
    regs[#regs + 1] = reg
    subscribe(reg)
  end
  return true
end

function _M.register(callback, source, event, ...)
  return register(false, callback, source, event, ...)
end

function _M.register_weak(callback, source, event, ...)
  return register(true, callback, source, event, ...)
end

-- removes `callback`'s registrations for `source` (nil: the global ones) and
-- the events given (none: the source-wide ones); true if any was removed
function _M.unregister(callback, source, ...)
  if type(callback) ~= "function" then
    error("expected function, got: " .. type(callback), 2)
  end
  source = source or "*"
  local names = select("#", ...) == 0 and { "*" } or { ... }
  local found = false
  for n = 1, #names do
    for i = #regs, 1, -1 do
      local reg = regs[i]
      if reg.source == source and reg.event == names[n] and callback_of(reg) == callback then
        drop(i)
        found = true
      end
    end
  end
  return found
end

function _M.configure(opts)
  if ev then
    -- again (some libraries configure from content handlers): harmless
    return true
  end
  local instance = events.new(opts)
  local ok, err = instance:init_worker()
  if not ok then return nil, err end
  ev = instance
  _configured = true
  for i = 1, #regs do subscribe(regs[i]) end
  return true
end

function _M.configured()
  return _configured
end

function _M.run()
  if ev then return ev:run() end
  return events.new { listening = "unix:" }:run()
end

function _M.poll()
  if not ev then return nil, NOT_CONFIGURED end
  local res, err = ev:poll()
  if res == nil then return nil, err end
  -- the shim's poll() was always "done" (a poll inside a callback is left
  -- to the running one)
  return "done"
end

function _M.post(source, event, data, unique)
  if not ev then return nil, NOT_CONFIGURED end
  local ok, err = ev:publish(unique or "all", source, event, data)
  if not ok then return nil, err end
  return "done"
end

function _M.post_local(source, event, data)
  if not ev then return nil, NOT_CONFIGURED end
  local ok, err = ev:publish("current", source, event, data)
  if not ok then return nil, err end
  return "done"
end

-- lua-resty-worker-events' event_list (the shim left it out)
_M.event_list = require("resty.worker.events").event_list

-- Extension: the instance's stats() (nil, err before configure)
function _M.stats()
  if not ev then return nil, NOT_CONFIGURED end
  return ev:stats()
end

return _M
