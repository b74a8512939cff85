-- resty.worker.events: the lua-resty-worker-events API on the module's event
-- bus (ngx_worker_events.bus). This file keeps what is the library's: the
-- handler tree, argument checks, its own events and its messages.
--
-- Two semantics, chosen in nginx.conf by `worker_events_compat` (the
-- native table's COMPAT): 2.x (default), where every event is handled
-- later by poll(); and 1.x (1.0.0), where post() and post_local() poll
-- before they return and return what poll() returned. See "1.x code" in
-- README.md.
--
-- What it does not do: serialise payloads, wait, or read the zone (the bus
-- does), or keep any state in a lua_shared_dict.
local native = ...

local ngx = ngx
local log = ngx.log
local ERR, DEBUG = ngx.ERR, ngx.DEBUG
local type, tostring, error, select = type, tostring, error, select
local setmetatable, ipairs, pairs = setmetatable, ipairs, pairs
local huge = math.huge

local bus = require "ngx_worker_events.bus"
local run_handler = bus.run_handler

local SOURCE = "resty-worker-events"

-- 1.x: synchronous post/post_local (worker_events_compat 1.x)
local SYNC = native.COMPAT == "1.x"

local DEFAULTS = {
  timeout = 2, interval = 1, wait_interval = 0.010, wait_max = 0.5,
  shm_retries = SYNC and 5 or 999,
}

-- what each version reports: 1.0.0's tag never bumped its `_VERSION`, and
-- consumers (lua-resty-healthcheck) check for "0.3.3"
local _M = { _VERSION = SYNC and "0.3.3" or "2.0.1" }

-- configuration (per worker process)
local _shm, _opts

---------------------------------------------------------------------------
-- handler lists: level = { weak_count, weak_list, strong_count, strong_list, subs }
---------------------------------------------------------------------------
local function new_level()
  return {
    weak_count = 0, weak_list = setmetatable({}, { __mode = "v" }),
    strong_count = 0, strong_list = {},
    subs = {},
  }
end

local _callbacks = new_level()

local function level_for(source, event, create)
  local lvl = _callbacks
  if source == nil then return lvl end
  local s = lvl.subs[source]
  if not s then
    if not create then return nil end
    s = new_level()
    lvl.subs[source] = s
  end
  if event == nil then return s end
  local e = s.subs[event]
  if not e and create then
    e = new_level()
    s.subs[event] = e
  end
  return e
end

local function add_handler(lvl, mode, cb)
  local ck, lk = mode .. "_count", mode .. "_list"
  local n = lvl[ck] + 1
  lvl[ck] = n
  lvl[lk][n] = cb
end

-- runs one list (weak or strong) of a level; no allocation per call
local function run_mode(lvl, ck, list, data, event, source, pid)
  local n = lvl[ck]
  if n == 0 then return end
  local i = 1
  -- One handler, the common case, runs without entering the loop below:
  -- a loop of one trip on every event's path makes LuaJIT's traces of the
  -- dispatch loop fragile (aborted, then blacklisted: interpreted for the
  -- worker's life). The loop carries on if the handler registered more.
  if n == 1 then
    local handler = list[1]
    if type(handler) == "function" then
      run_handler(handler, "pid", data, event, source, pid)
      if lvl[ck] == 1 then return end
      i = 2
    end
  end
  while i <= lvl[ck] do
    local handler = list[i]
    if type(handler) ~= "function" then
      -- unregistered or collected: close the gap, keeping the order
      local last = lvl[ck]
      for j = i, last - 1 do list[j] = list[j + 1] end
      list[last] = nil
      lvl[ck] = last - 1
    else
      run_handler(handler, "pid", data, event, source, pid)
      i = i + 1
    end
  end
end

local function run_list(lvl, data, event, source, pid)
  if lvl then
    run_mode(lvl, "weak_count", lvl.weak_list, data, event, source, pid)
    run_mode(lvl, "strong_count", lvl.strong_list, data, event, source, pid)
  end
end

local function do_event(source, event, data, pid)
  if bus.debug_on then
    if SYNC then
      -- 1.0.0's line, payload included: 1.x code and its tests grep it
      -- (the only place the module logs a payload; README "1.x code")
      log(DEBUG, "worker-events: handling event; source=", source, ", event=", event,
          ", pid=", pid, ", data=", tostring(data))
    else
      log(DEBUG, "worker-events: handling event; source=", source, ", event=", event, ", pid=", pid)
    end
  end
  run_list(_callbacks, data, event, source, pid)
  local s = _callbacks.subs[source]
  if s then
    run_list(s, data, event, source, pid)
    run_list(s.subs[event], data, event, source, pid)
  end
end

local function check_handler(cb)
  if type(cb) ~= "function" then
    error("expected function, got: " .. type(cb), 3)
  end
end

local function register(mode, cb, source, ...)
  check_handler(cb)
  if source == nil then
    add_handler(_callbacks, mode, cb)
  elseif select("#", ...) == 0 then
    add_handler(level_for(source, nil, true), mode, cb)
  else
    for i = 1, select("#", ...) do
      local event = select(i, ...)
      add_handler(level_for(source, event, true), mode, cb)
    end
  end
  return true
end

function _M.register(cb, source, ...)
  return register("strong", cb, source, ...)
end

function _M.register_weak(cb, source, ...)
  return register("weak", cb, source, ...)
end

local function remove_from(lvl, cb)
  if not lvl then return false end
  local found = false
  for _, mode in ipairs({ "weak", "strong" }) do
    local list = lvl[mode .. "_list"]
    for i = 1, lvl[mode .. "_count"] do
      if list[i] == cb then
        list[i] = nil -- compacted by the next dispatch
        found = true
      end
    end
  end
  return found
end

function _M.unregister(cb, source, ...)
  check_handler(cb)
  if source == nil then
    return remove_from(_callbacks, cb)
  end
  if select("#", ...) == 0 then
    return remove_from(level_for(source, nil, false), cb)
  end
  local found = false
  for i = 1, select("#", ...) do
    if remove_from(level_for(source, select(i, ...), false), cb) then
      found = true
    end
  end
  return found
end

---------------------------------------------------------------------------
-- posting
---------------------------------------------------------------------------
local function check_names(source, event)
  if type(source) ~= "string" or source == "" then
    return nil, "source is required"
  end
  if type(event) ~= "string" or event == "" then
    return nil, "event is required"
  end
  return true
end

-- this API's consumer of the zone: the bus waits, reads, claims and counts
local _bus = bus.new {
  api_prefix = "worker-events: ",
  claim_tag = "resty.worker.events",
  dispatch = do_event,
  lost = function(n) do_event(SOURCE, "lost", { count = n }, nil) end,
  -- 1.x: a poll() handles every pending event, the one just posted included
  drain = SYNC,
}

_M.poll = _bus.poll

-- `flags`: bus.POST_OWN for this API's own events (the other APIs on the
-- bus leave them out)
local function post(source, event, data, unique, flags)
  local ok, err = check_names(source, event)
  if not ok then return nil, err end

  if unique ~= nil then
    local tu = type(unique)
    if tu ~= "string" and tu ~= "number" then
      return nil, 'failed posting event "' .. event .. '" by "' .. source
                  .. '"; unique must be a string or a number, got ' .. tu
    end
    unique = tostring(unique)
  end

  local seq
  seq, err = _bus.post(source, event, data, unique, flags)
  if not seq then
    err = 'failed posting event "' .. event .. '" by "' .. source .. '"; ' .. tostring(err)
    log(ERR, "worker-events: ", err)
    return nil, err
  end
  if SYNC then
    -- 1.x: handle all events up to and including this one ("recursive"
    -- when called from a handler: the running poll() gets to it)
    return _M.poll()
  end
  return true
end

-- `opts` (an addition): { cluster = true } posts to every worker of every
-- node of the cluster (worker_events_cluster); with `unique`, one worker in
-- the cluster runs it
function _M.post(source, event, data, unique, opts)
  local flags
  if opts ~= nil then
    if type(opts) ~= "table" then
      return nil, 'failed posting event "' .. tostring(event) .. '" by "' .. tostring(source)
                  .. '"; opts must be a table, got ' .. type(opts)
    end
    if opts.cluster then
      flags = bus.POST_CLUSTER + (unique ~= nil and bus.POST_HOLD or 0)
    end
  end
  return post(source, event, data, unique, flags)
end

function _M.post_local(source, event, data)
  local ok, err = check_names(source, event)
  if not ok then return nil, err end
  if SYNC then
    -- 1.x: this event's handlers run now (also from inside a handler),
    -- then every other pending event
    do_event(source, event, data, nil)
    return _M.poll()
  end
  return _bus.post_local(source, event, data)
end

---------------------------------------------------------------------------
-- configuration
---------------------------------------------------------------------------
local function opt_number(opts, name, current, positive)
  local v = opts[name]
  if v == nil then v = current[name] end
  if type(v) ~= "number" then
    return nil, 'optional "' .. name .. '" option must be a number'
  end
  if v ~= v or v == huge or v == -huge then
    return nil, '"' .. name .. '" must be a finite number'
  end
  if positive == "gt0" and v <= 0 then
    return nil, '"' .. name .. '" must be greater than 0'
  elseif positive == "ge0" and v < 0 then
    return nil, '"' .. name .. '" must be greater than or equal to 0'
  elseif positive == "retries" and v < 0 then
    return nil, '"' .. name .. '" must be 0 or greater'
  end
  return v
end

function _M.configure(opts)
  if type(opts) ~= "table" then
    error("Expected a table, got " .. type(opts), 2)
  end

  if not _bus.opened() then
    -- not configured in this process (or forked after an init_by_lua configure)
    _shm = nil
  end

  local shm = opts.shm
  if shm ~= nil and _shm ~= nil and shm ~= _shm then
    return nil, "Already started, cannot change shm"
  end
  if shm == nil and _shm == nil then
    return nil, '"shm" option required to start'
  end
  if shm ~= nil and type(shm) ~= "string" then
    return nil, 'shm "' .. tostring(shm) .. '" not found'
  end

  local current = _opts or DEFAULTS
  local new = {}
  local err
  new.timeout, err = opt_number(opts, "timeout", current, "gt0")
  if err then return nil, err end
  new.interval, err = opt_number(opts, "interval", current, "ge0")
  if err then return nil, err end
  new.wait_interval, err = opt_number(opts, "wait_interval", current, "ge0")
  if err then return nil, err end
  new.wait_max, err = opt_number(opts, "wait_max", current, "ge0")
  if err then return nil, err end
  new.shm_retries, err = opt_number(opts, "shm_retries", current, "retries")
  if err then return nil, err end

  local first = false
  if _shm == nil then
    local ok, oerr = _bus.open(shm)
    if ok == nil then return nil, oerr end
    first = true
    -- as the library's timer does when nginx stops this worker
    _bus.at_exit(SOURCE, "stopping")
  end
  _shm = _shm or shm
  _opts = new
  _bus.set_options(new)

  if first then
    -- we're live, let's celebrate it with an event
    local ok, perr = post(SOURCE, "started", nil, nil, bus.POST_OWN)
    if not ok then return nil, perr end
  end

  local ok, terr = _bus.start()
  if not ok then return nil, terr end
  if SYNC then
    -- as 1.x's first timer run, which polled from configure()
    _M.poll()
  end

  if opts.debug then
    _M._callbacks = _callbacks
  end
  return true
end

function _M.configured()
  return _shm ~= nil and _bus.opened()
end

-- Extension (not in lua-resty-worker-events): the zone's counters, for
-- monitoring: posted, evicted, log_size, max_record, next_seq, workers,
-- zone (the zone events use: the default zone when shm names a dict), ...,
-- plus compat ("1.x" or "2.x") and options (the configure() options in
-- effect, defaults filled in).
function _M.stats()
  if not _M.configured() then
    return nil, "not configured"
  end
  local t = _bus.stats()
  if t then
    t.compat = native.COMPAT
    local o = {}
    for k, v in pairs(_opts) do o[k] = v end
    t.options = o
  end
  return t
end

---------------------------------------------------------------------------
-- event lists
---------------------------------------------------------------------------
-- `hidden`: events that resolve but are not enumerated (pairs() sees what
-- the library's list holds)
local function event_list(source, events, hidden)
  local list = { _source = source }
  for _, event in pairs(events) do
    list[event] = event
  end
  return setmetatable(list, {
    __index = function(_, key)
      if hidden and hidden[key] then return key end
      error("event '" .. tostring(key) .. "' is an unknown event", 2)
    end,
  })
end

function _M.event_list(source, ...)
  return event_list(source, { ... })
end

-- the library's own events; "lost" is ours (see README), so it resolves
-- (events.lost) without showing up in pairs(events)
_M.events = event_list(SOURCE, { "started", "stopping" }, { lost = true })

return _M
