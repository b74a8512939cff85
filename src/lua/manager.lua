-- resty.worker.manager: Kong's lua-resty-worker-manager API (master and
-- worker start/exit callbacks with the previous, current and next
-- generation's worker counts), tracked natively in the zone's worker slots:
-- exact counts, no lock held while Lua runs, no polling, crashes and hung
-- workers reported as events (source "resty-worker-manager").
--
--   -- init_by_lua*
--   manager.on_init_by_lua({ shm = ..., interval = 10, failed = 5 },
--                          master_start_cb, master_exit_cb)
--   -- init_worker_by_lua*
--   manager.on_init_worker_by_lua(worker_start_cb, worker_exit_cb)
--
-- Where the callbacks run (see README "resty.worker.manager"):
-- master start: in the generation's first worker, in init_worker_by_lua*;
-- worker start: in each worker, in init_worker_by_lua*; worker exit and
-- master exit: in the exiting worker, in a timer nginx runs when the worker
-- exits (cosockets and ngx.sleep work there); the master exit of a
-- generation whose last worker crashed: in the worker that reported it.
local native = ...

local ngx = ngx
local log = ngx.log
local ERR, DEBUG = ngx.ERR, ngx.DEBUG
local type, error, tostring, xpcall = type, error, tostring, xpcall
local traceback = debug.traceback

local bus = require "ngx_worker_events.bus"
local error_text = bus.error_text

local SOURCE = "resty-worker-manager"
local PREFIX = native.LOG_PREFIX .. "resty.worker.manager: "
local EXIT_TIMER = 3600 -- seconds; nginx runs it early (premature) at exit

local _M = { _VERSION = "0.1.0" }

local config = {
  interval = 10, -- heartbeat, seconds
  failed = 5,    -- overdue after interval + failed seconds
}
local initialized = false
local worker_started = false
local master_id, worker_id, generation_time
local master_start_cb, master_exit_cb, worker_start_cb, worker_exit_cb

-- the library's log prefix, with the id of the generation or worker
local function tracker(id)
  return "[NODE_TRACKER " .. tostring(id) .. "] "
end

local function call(which, cb, ...)
  if not cb then return end
  local ok, err = xpcall(cb, traceback, ...)
  if not ok then
    log(ERR, PREFIX, which, " callback failed: ", error_text(err))
  end
end

local function debug_counts(id, what, prev, mine, nxt)
  if bus.refresh_debug() then
    log(DEBUG, tracker(id), what, " #workers; previous: ", prev, " mine: ", mine, " next: ", nxt)
  end
end

local function check_cb(cb, name)
  if cb ~= nil and type(cb) ~= "function" then
    error(name .. " must be a function, got: " .. type(cb), 3)
  end
end

--- init_by_lua*: options and the master (generation) callbacks.
function _M.on_init_by_lua(opts, master_start, master_exit)
  if ngx.get_phase() ~= "init" then
    error("This must be called in the `init_by_lua` phase", 2)
  end
  if initialized then
    error("Already initialized, only call once", 2)
  end
  opts = opts or {}
  if type(opts) ~= "table" then
    error("opts must be a table, got: " .. type(opts), 2)
  end
  if opts.shm ~= nil and type(opts.shm) ~= "string" then
    error("unknown shm `" .. tostring(opts.shm) .. "'", 2)
  end
  for _, name in ipairs({ "interval", "failed" }) do
    local v = opts[name]
    if v ~= nil and (type(v) ~= "number" or not (v >= 0) or v == math.huge
                     or (name == "interval" and v == 0)) then
      error('"' .. name .. '" must be a positive number, got: ' .. tostring(v), 2)
    end
  end
  check_cb(master_start, "master_start_cb")
  check_cb(master_exit, "master_exit_cb")
  config.shm = opts.shm
  config.interval = opts.interval or config.interval
  config.failed = opts.failed or config.failed
  master_start_cb, master_exit_cb = master_start, master_exit
  initialized = true
  return true
end

-- this worker exits: its exit callback, then the master exit if it is its
-- generation's last
local function exiting()
  local gen, prev, mine, nxt = native.manager_leave(bus.STREAM)
  if not gen then return end
  debug_counts(worker_id, "worker exiting", prev, mine, nxt)
  call("worker exit", worker_exit_cb, worker_id, prev, mine, nxt)
  if mine == 1 then
    call("master exit", master_exit_cb, master_id, prev, 0, nxt)
  end
end

local function exit_timer(premature)
  if premature then return exiting() end
  local ok = ngx.timer.at(EXIT_TIMER, exit_timer)
  if not ok then return exiting() end
end

-- lifecycle events reported by this worker: the library's lines, and the
-- master exit of a generation whose last worker crashed
local function on_event(source, event, data)
  if source ~= SOURCE or type(data) ~= "table" or data.by ~= ngx.worker.pid() then
    return
  end
  if event == "unresponsive" then
    log(ERR, tracker(worker_id), " worker with id '", data.id,
        "' failed its heartbeat, removing it")
  elseif event == "recovered" then
    log(ERR, tracker(worker_id), " worker with id '", data.id,
        "' recovered from previously missed heartbeat")
  elseif event == "crashed" then
    -- (the native side logged it)
    if data.last then
      local prev, _, nxt = native.manager_counts(data.generation)
      call("master exit", master_exit_cb, data.generation, prev, 0, nxt)
    end
  end
end

local _bus = bus.new {
  api_prefix = native.LOG_PREFIX,
  skip_own = true,
  skip_unique = true, -- its events are broadcasts; unique ones belong to the APIs
  dispatch = on_event,
}

--- init_worker_by_lua*: this worker's callbacks; runs the master start (in
--- the generation's first worker) and the worker start.
function _M.on_init_worker_by_lua(start_cb, exit_cb)
  if ngx.get_phase() ~= "init_worker" then
    error("This must be called in the `init_worker_by_lua` phase", 2)
  end
  if not initialized then
    error("You must first call 'on_init_by_lua' to initialize", 2)
  end
  if worker_started then
    error("This function can only be called once", 2)
  end
  check_cb(start_cb, "start_cb")
  check_cb(exit_cb, "exit_cb")
  if ngx.worker.id() == nil then
    -- a helper process (e.g. the privileged agent) is not a worker
    return true
  end

  local shm = config.shm or ""
  local gen, gen_time, first, mp, mm, mn, wp, wm, wn =
    native.manager_start(shm, config.interval, config.failed, bus.STREAM)
  if not gen then
    log(ERR, PREFIX, "error starting worker: ", gen_time)
    return nil, "Error starting worker: " .. tostring(gen_time)
  end
  worker_started = true
  master_id, worker_id = gen, gen .. "-" .. ngx.worker.pid()
  worker_start_cb, worker_exit_cb = start_cb, exit_cb
  generation_time = gen_time

  if first then
    debug_counts(master_id, "master started", mp, mm, mn)
    call("master start", master_start_cb, master_id, mp, mm, mn)
  end
  debug_counts(worker_id, "worker started", wp, wm, wn)
  call("worker start", worker_start_cb, worker_id, wp, wm, wn)

  -- this worker's reports reach it through the bus: open it first
  local ok, err = _bus.open(shm)
  if ok == nil then
    log(ERR, PREFIX, "no lifecycle events in this worker: ", err)
  else
    _bus.start()
  end
  -- workers that died without exiting (the one this worker replaces)
  native.manager_reap()

  ok, err = ngx.timer.at(EXIT_TIMER, exit_timer)
  if not ok then
    log(ERR, PREFIX, "no exit callbacks in this worker: ", err)
  end
  return true
end

--- The tracked workers: { { id, pid, worker, generation, started, state }, ... }
--- (state: "running", "exiting" or "unresponsive"); nil, err before start.
function _M.workers()
  local list = native.manager_workers()
  if not list then return nil, "not started in this worker" end
  return list
end

--- This worker's generation (the master_id of its callbacks) and when it
--- started (seconds since the epoch); nil, err before start.
function _M.generation()
  if not master_id then return nil, "not started in this worker" end
  return master_id, generation_time
end

--- The lifecycle events on the bus (resty.worker.events / resty.events).
_M.events = require("resty.worker.events").event_list(SOURCE, "crashed", "unresponsive",
                                                      "recovered")

return _M
