-- resty.worker.events: the lua-resty-worker-events 2.x API over the
-- ngx-worker-events shared log. Embedded in the nginx module and registered
-- with package.preload; `core` holds the native functions (see core.rs).
--
-- What it does not do: serialise payloads (core does, once per post), or
-- keep any state in a lua_shared_dict.
local core = ...

local ngx = ngx
local log = ngx.log
local ERR, DEBUG = ngx.ERR, ngx.DEBUG
local type, tostring, error, pcall, xpcall, select = type, tostring, error, pcall, xpcall, select
local setmetatable, ipairs, pairs = setmetatable, ipairs, pairs
local traceback = debug.traceback
local timer_at = ngx.timer.at
local exiting = ngx.worker.exiting
local sleep = ngx.sleep
local min = math.min

local ffi = require "ffi"
pcall(ffi.cdef, [[
  int ngx_worker_events_pending(void);
  int ngx_worker_events_set_sema(void *sem);
]])
local C = ffi.C
local c_pending = C.ngx_worker_events_pending
local c_set_sema = C.ngx_worker_events_set_sema
local semaphore = require "ngx.semaphore"

local core_attach, core_post, core_fetch, core_claim = core.attach, core.post, core.fetch, core.claim
local core_pid = core.pid

local SOURCE = "resty-worker-events"

-- debug lines cost a C call per event: skip them unless error_log is at debug
-- (the level is fixed for the life of this Lua VM; a reload makes a new one)
local DEBUG_ON = true
do
  local ok, errlog = pcall(require, "ngx.errlog")
  if ok and errlog.get_sys_filter_level then
    local ok2, level = pcall(errlog.get_sys_filter_level)
    if ok2 and type(level) == "number" then DEBUG_ON = level >= DEBUG end
  end
end
local MAX_BATCH = 10000 -- broadcast events handled per poll() before yielding
local SLEEP_STEP = 0.5  -- the loop checks ngx.worker.exiting() this often

local DEFAULTS = {
  timeout = 2, interval = 1, wait_interval = 0.010, wait_max = 0.5, shm_retries = 999,
}

local _M = { _VERSION = "2.0.1" }

-- configuration (per worker process)
local _shm, _opts, _pid
local _loop_running = false

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
  local i = 1
  while i <= lvl[ck] do
    local handler = list[i]
    if type(handler) ~= "function" then
      -- unregistered or collected: close the gap, keeping the order
      local last = lvl[ck]
      for j = i, last - 1 do list[j] = list[j + 1] end
      list[last] = nil
      lvl[ck] = last - 1
    else
      local ok, err = xpcall(handler, traceback, data, event, source, pid)
      if not ok then
        -- never log `data`: payloads may hold secrets
        log(ERR, "worker-events: event callback failed; source=", source,
            ", event=", event, ", pid=", pid, " error='", tostring(err), "'")
      end
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
  if DEBUG_ON then
    log(DEBUG, "worker-events: handling event; source=", source, ", event=", event, ", pid=", pid)
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
local local_queue, local_n = {}, 0

local function check_names(source, event)
  if type(source) ~= "string" or source == "" then
    return nil, "source is required"
  end
  if type(event) ~= "string" or event == "" then
    return nil, "event is required"
  end
  return true
end

-- The background loop waits on this semaphore; posts in this worker and
-- (through the module's notifier) posts in other workers wake it up.
local _sema        -- kept referenced while native code may post it
local _sema_posted = false

local function wake_self()
  if _sema and not _sema_posted then
    _sema_posted = true
    _sema:post(1)
  end
end

function _M.post(source, event, data, unique)
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
  if not _shm then
    err = "events not configured, call configure() first"
  else
    seq, err = core_post(source, event, data, unique)
  end
  if not seq then
    err = 'failed posting event "' .. event .. '" by "' .. source .. '"; ' .. tostring(err)
    log(ERR, "worker-events: ", err)
    return nil, err
  end
  wake_self()
  return true
end

function _M.post_local(source, event, data)
  local ok, err = check_names(source, event)
  if not ok then return nil, err end
  local_n = local_n + 1
  local_queue[local_n] = { source, event, data }
  wake_self()
  return true
end

---------------------------------------------------------------------------
-- polling
---------------------------------------------------------------------------
local _busy = false

local function run_local()
  while local_n > 0 do
    local q, n = local_queue, local_n
    local_queue, local_n = {}, 0
    for i = 1, n do
      local e = q[i]
      do_event(e[1], e[2], e[3], nil)
    end
  end
end

-- Lost events: every batch that lost some delivers one local "lost" event
-- with the exact count; the ERR line is written at most once a second (a
-- worker that keeps being overtaken would otherwise flood the log), with
-- the total since the previous line.
local LOST_LOG_EVERY = 1
local _lost_unlogged, _lost_logged_at = 0, 0

local function log_lost(force)
  if _lost_unlogged == 0 then return end
  local now = ngx.now()
  if force or now - _lost_logged_at >= LOST_LOG_EVERY then
    log(ERR, "worker-events: lost ", _lost_unlogged, " event(s): this worker fell behind and they were ",
        "overwritten in zone \"", _shm, "\" (make the zone larger or poll more often)")
    _lost_unlogged, _lost_logged_at = 0, now
  end
end

local function report_lost(n)
  _lost_unlogged = _lost_unlogged + n
  log_lost(false)
  do_event(SOURCE, "lost", { count = n }, nil)
end

-- handles up to MAX_BATCH broadcast records; returns true if more may wait
local function run_broadcast()
  local lost = 0
  for _ = 1, MAX_BATCH do
    local kind, a, b, c, d, e, f = core_fetch()
    if kind == nil then
      if lost > 0 then report_lost(lost) end
      return false
    elseif kind == 1 then
      -- a=source b=event c=data d=pid e=unique f=seq
      if e == nil then
        do_event(a, b, c, d)
      else
        local mine, owner = core_claim(e, _opts.timeout)
        if mine then
          do_event(a, b, c, d)
        elseif DEBUG_ON then
          log(DEBUG, "worker-events: skipping event ", f, " was handled by worker ", owner)
        end
      end
    elseif kind == 2 then
      lost = lost + a
    else
      log(ERR, "worker-events: dropping event ", b, ": ", a)
    end
  end
  if lost > 0 then report_lost(lost) end
  return true
end

local function do_poll()
  run_local()
  local more = run_broadcast()
  -- handlers may have posted local events
  run_local()
  return more
end

local _more = false

function _M.poll()
  if _busy then
    return "recursive"
  end
  if local_n == 0 and (not _shm or c_pending() == 0) then
    _more = false
    return "done"
  end
  -- (not configured: local events only; fetch finds nothing)
  _busy = true
  local ok, more = pcall(do_poll)
  _busy = false
  if not ok then
    log(ERR, "worker-events: poll failed: ", tostring(more))
    return nil, tostring(more)
  end
  _more = more
  return "done"
end

---------------------------------------------------------------------------
-- background loop
---------------------------------------------------------------------------
-- waits up to `interval` for a wake-up; true if woken
local function wait(interval, push)
  _sema_posted = false
  if push then
    -- the notifier also wakes us when nginx starts shutting down
    return (_sema:wait(interval)) == true
  end
  local left = interval
  while left > 0 and not exiting() do
    local step = min(left, SLEEP_STEP)
    if (_sema:wait(step)) then return true end
    left = left - step
    if c_pending() ~= 0 then return true end
  end
  return false
end

local function loop(premature)
  if premature then
    _loop_running = false
    return
  end
  _sema = _sema or semaphore.new(0)
  local push = c_set_sema(_sema.sem) == 1
  while not exiting() do
    local interval = _opts.interval
    if interval == 0 then break end

    local ok, err = _M.poll()
    if not ok then
      log(ERR, "worker-events: timer-poll returned: ", err)
    end
    log_lost(false)

    if _more or local_n > 0 then
      -- let requests and other timers run, then carry on draining (on stock
      -- nginx a 0 s sleep re-expires in the same timer pass: use 1 ms)
      sleep(0.001)
    else
      wait(interval, push)
    end
  end
  c_set_sema(nil)
  _loop_running = false
end

local function start_loop()
  if _loop_running or _opts.interval == 0 then return true end
  local ok, err = timer_at(0, loop)
  if not ok then
    err = "failed to create timer: " .. tostring(err)
    log(ERR, "worker-events: ", err)
    return nil, err
  end
  _loop_running = true
  return true
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

  local pid = core_pid()
  if _pid ~= pid then
    -- new process (forked after an init_by_lua configure): start afresh
    _pid, _shm, _loop_running = pid, nil, false
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
    local ok, aerr = core_attach(shm)
    if ok == nil then return nil, aerr end
    first = true
  end
  _shm = _shm or shm
  _opts = new

  if first then
    -- we're live, let's celebrate it with an event
    local ok, perr = _M.post(SOURCE, "started")
    if not ok then return nil, perr end
  end

  local ok, terr = start_loop()
  if not ok then return nil, terr end

  if opts.debug then
    _M._callbacks = _callbacks
  end
  return true
end

function _M.configured()
  return _shm ~= nil and _pid == core_pid()
end

-- Extension (not in lua-resty-worker-events): the zone's counters, for
-- monitoring: posted, evicted, log_size, max_record, next_seq, workers, ...
function _M.stats()
  if not _M.configured() then
    return nil, "not configured"
  end
  local s = core.stats()
  s.zone = _shm
  return s
end

---------------------------------------------------------------------------
-- event lists
---------------------------------------------------------------------------
function _M.event_list(source, ...)
  local events = { _source = source }
  for _, event in pairs({ ... }) do
    events[event] = event
  end
  return setmetatable(events, {
    __index = function(_, key)
      error("event '" .. tostring(key) .. "' is an unknown event", 2)
    end,
  })
end

_M.events = _M.event_list(SOURCE, "started", "stopping", "lost")

return _M
