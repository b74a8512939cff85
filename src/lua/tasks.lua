-- ngx_tasks: aimingoo/ngx_tasks' API (rules with an interval, run on every
-- worker ('normal') or on one worker of the node ('preemption')), on the
-- module's zone: windows of the monotonic clock, claimed in the zone's
-- claims table before a run and marked done after it, so a window runs
-- once per node (preemption) or once per worker (normal), across reloads;
-- a window whose worker died mid-run is run again by another.
--
--   local tasks = require "ngx_tasks"
--   tasks:push { identifier = "refresh", interval = 60, typ = "preemption",
--                callback = function(self) ... end }
--   tasks:start()          -- in init_worker_by_lua*: runs them on schedule
--   -- or drive them yourself: tasks:run() (rewrite_by_lua*, a timer)
local native = ...

local ngx = ngx
local log = ngx.log
local ERR, WARN, NOTICE = ngx.ERR, ngx.WARN, ngx.NOTICE
local type, error, tostring, xpcall, pcall, next = type, error, tostring, xpcall, pcall, next
local setmetatable, ipairs, pairs, tinsert, tremove = setmetatable, ipairs, pairs, table.insert,
                                                      table.remove
local floor, min, huge = math.floor, math.min, math.huge
local traceback = debug.traceback
local exiting = ngx.worker.exiting

local ffi = require "ffi"
pcall(ffi.cdef, native.CDEF)
local C = ffi.C
local semaphore = require "ngx.semaphore"
local bus = require "ngx_worker_events.bus"
local error_text = bus.error_text
-- task names are per subsystem: stream {} Lua's keys and status entries
-- carry "@stream" (README "Stream subsystem")
local TAG = bus.SUBSYSTEM_TAG
local KEY = "ngx_tasks" .. TAG .. ":"
local STREAM_FLAG = bus.STREAM and 1 or 0

local n_take, n_finish, n_release = native.tasks_take, native.tasks_finish, native.tasks_release
local n_record, n_resolve = native.tasks_record, native.tasks_resolve
local now_us = native.now_us

local PREFIX = native.LOG_PREFIX .. "ngx_tasks: "
local DEFAULT_DICT = "PreemptionTasks" -- the library's default name
local RECHECK = 0.5 -- seconds between two looks at a window another worker holds
local RUN_LOCK_TTL = 86400

local _M = { _VERSION = "0.1.0", dict = DEFAULT_DICT }

-- per rule (weak keys): last window this worker looked at, a run in flight,
-- windows held by another worker (to take over if it dies)
local state = setmetatable({}, { __mode = "k" })
-- per identifier, this worker's counters
local counters = {}
-- per identifier, the "no room" log's state: { at = last line, n = since }
local skip_log = {}
-- per rules table: its loop's semaphore (false while the loop starts)
local loops = setmetatable({}, { __mode = "k" })

function _M.now()
  return now_us() / 1e6
end
local function now_s()
  return now_us() / 1e6
end

--- The default window generator: windows of `interval` seconds of the
--- monotonic clock (CLOCK_MONOTONIC is one clock for every process of the
--- host, so every worker and every generation numbers windows alike).
function _M.keys(_, task, now)
  return floor(now / task.interval), tostring(task.identifier)
end
local default_keys = _M.keys

---------------------------------------------------------------------------
-- rules
---------------------------------------------------------------------------
local function check_rule(rule)
  if type(rule) ~= "table" then
    return "rule must be a table, got: " .. type(rule)
  end
  local id = rule.identifier
  if (type(id) ~= "string" or id == "") and type(id) ~= "number" then
    return "rule.identifier is required (a string or a number)"
  end
  if type(rule.interval) ~= "number" or not (rule.interval > 0) or rule.interval == huge then
    return "rule.interval must be a positive number of seconds, got: " .. tostring(rule.interval)
  end
  if rule.typ ~= "normal" and rule.typ ~= "preemption" then
    return "rule.typ must be 'normal' or 'preemption', got: " .. tostring(rule.typ)
  end
  if type(rule.callback) ~= "function" then
    return "rule.callback must be a function, got: " .. type(rule.callback)
  end
  if rule.filter ~= nil and type(rule.filter) ~= "function" then
    return "rule.filter must be a function, got: " .. type(rule.filter)
  end
  if rule.cluster ~= nil and rule.cluster ~= false and rule.typ ~= "preemption" then
    return "rule.cluster needs typ 'preemption'"
  end
end

--- tasks:push(rule) or tasks.push(rule)
function _M.push(self, rule)
  if rule == nil and type(self) == "table" and self.callback ~= nil then
    self, rule = _M, self
  end
  local err = check_rule(rule)
  if err then error(err, 2) end
  tinsert(self, rule)
  -- a running loop looks at it now, not at its next wake-up
  local sema = loops[self]
  if sema then sema:post(1) end
  return true
end

--- tasks:remove(identifier) or tasks.remove(identifier): how many were removed
function _M.remove(self, id)
  if id == nil and type(self) ~= "table" then
    self, id = _M, self
  end
  local n = 0
  for i = #self, 1, -1 do
    if self[i].identifier == id then
      tremove(self, i)
      n = n + 1
    end
  end
  return n
end

---------------------------------------------------------------------------
-- runs
---------------------------------------------------------------------------
local function counter(id)
  local c = counters[id]
  if not c then
    c = { runs = 0, failures = 0, overlaps = 0, retries = 0, filtered = 0, skipped = 0,
          max_duration = 0 }
    counters[id] = c
  end
  return c
end

-- the zone tasks.dict stands for ("" = the default zone)
local resolved = {}
local function zone_of(self)
  local dict = self.dict
  if type(dict) ~= "string" then return "" end -- a shared dict object: the default zone
  local z = resolved[dict]
  if z then return z end
  local ok, err = n_resolve(dict)
  if ok then
    z = dict
  elseif dict == DEFAULT_DICT then
    z = "" -- the library's default name, declared or not: the default zone
  else
    return nil, err
  end
  resolved[dict] = z
  return z
end

-- runs one window of `task` (its keys are taken); `lock`: the run lock of a
-- preemption task, released after; `ends`: the window's end (monotonic s,
-- nil for a custom keys generator), when its finished key expires
local function execute(task, zone, key, lock, ends)
  local st = state[task]
  local c = counter(task.identifier)
  st.running = true
  ngx.update_time()
  local t0 = now_s()
  local ok, err = xpcall(task.callback, traceback, task)
  local dur = now_s() - t0
  st.running = false
  c.runs = c.runs + 1
  if not ok then
    c.failures = c.failures + 1
    log(ERR, PREFIX, "task '", tostring(task.identifier), "' failed: ", error_text(err))
  end
  c.last = { time = ngx.now(), pid = ngx.worker.pid(), duration = dur }
  if dur > c.max_duration then c.max_duration = dur end
  n_record(zone, tostring(task.identifier) .. TAG, "ran", dur, not ok)
  n_finish(zone, key, ends)
  if lock then n_release(zone, lock) end
end

local function start_run(task, zone, key, lock, threaded, ends)
  if threaded then
    local co, err = ngx.thread.spawn(execute, task, zone, key, lock, ends)
    if not co then
      log(ERR, PREFIX, "task '", tostring(task.identifier), "' not started: ", err)
      n_release(zone, key)
      if lock then n_release(zone, lock) end
    end
  else
    execute(task, zone, key, lock, ends)
  end
end

-- a window of `task` skipped: no room for a key in the zone's claims table
-- (counted there in claims.refused); logged at most once a second per task
local function skipped(task, zone)
  local id = tostring(task.identifier)
  local c = counter(task.identifier)
  c.skipped = c.skipped + 1
  n_record(zone, id .. TAG, "skipped")
  local l = skip_log[task.identifier]
  if not l then
    l = { at = -huge, n = 0 }
    skip_log[task.identifier] = l
  end
  l.n = l.n + 1
  local now = now_s()
  if now - l.at >= 1 then
    log(ERR, PREFIX, "task '", id, "': no room in the zone's claims table, ", l.n,
        " window(s) skipped since the last such line (logged at most once a second per task)")
    l.at, l.n = now, 0
  end
end

-- a cluster task's window (wall clock, so nodes agree): true when this
-- node got it in Redis. Redis unreachable: the window is skipped (at most
-- once in the cluster), logged once per outage.
local cluster_outage = false
local function cluster_window(task, key)
  local ok, err = require("ngx_worker_events.cluster").claim(key, 2 * task.interval + 5)
  if ok == nil then
    if not cluster_outage then
      cluster_outage = true
      log(ERR, PREFIX, "task '", tostring(task.identifier), "': cluster window ", key,
          " not run: redis: ", tostring(err), " (logged once per outage)")
    end
    counter(task.identifier).cluster_skipped = (counter(task.identifier).cluster_skipped or 0) + 1
    return false
  end
  if cluster_outage then
    cluster_outage = false
    log(NOTICE, PREFIX, "cluster tasks: redis answers again")
  end
  return ok
end

-- takes `key` (a window of `task`, ending at `ends`) and runs it if this
-- worker gets it. `held`: a window another worker held, looked at again in
-- case it died (its key is never taken as new). A preemption task also
-- takes its run lock, after the window: a worker that finds the window held
-- runs nothing and counts nothing (its owner runs it); one that gets the
-- window but finds the lock held skips the window: an earlier one still
-- runs (an overlap, counted once: the window is marked done).
local function try_window(task, zone, key, threaded, held, ends)
  local st = state[task]
  local c = counter(task.identifier)
  local id = tostring(task.identifier)
  local got, owner = n_take(zone, key, 2 * task.interval + 5, held and -1 or ends)
  if got == "busy" then
    -- another worker runs it: look again later, in case it dies
    st.held[key] = ends or false
    return
  end
  if held then st.held[key] = nil end
  if got == "done" then return end
  if got == "full" then return skipped(task, zone) end
  if got ~= "mine" and got ~= "retry" then
    log(ERR, PREFIX, "task '", id, "': ", owner)
    return
  end
  local lock
  if task.typ == "preemption" then
    lock = KEY .. "run:" .. id
    local l, err = n_take(zone, lock, RUN_LOCK_TTL)
    if l == "busy" then
      -- an earlier window still runs (here or in another worker)
      c.overlaps = c.overlaps + 1
      n_record(zone, id .. TAG, "overlapped")
      n_finish(zone, key, ends)
      return
    elseif l == "full" then
      n_finish(zone, key, ends)
      return skipped(task, zone)
    elseif l ~= "mine" and l ~= "retry" then
      n_release(zone, key)
      log(ERR, PREFIX, "task '", id, "': ", err)
      return
    end
  end
  if got == "retry" then
    c.retries = c.retries + 1
    n_record(zone, id .. TAG, "retried")
    log(WARN, PREFIX, "task '", id, "': worker ", owner, " died before it finished ", key,
        ", running it again")
  end
  if task.cluster and not cluster_window(task, key) then
    -- another node runs this window, or Redis could not say: not here
    n_finish(zone, key, ends)
    if lock then n_release(zone, lock) end
    return
  end
  return start_run(task, zone, key, lock, threaded, ends)
end

-- looks at `task` now; returns seconds until it wants another look
local function consider(self, task, zone, threaded)
  local st = state[task]
  if not st then
    st = { held = {} }
    state[task] = st
  end
  -- windows another worker held: taken over if it died
  local again = huge
  for key, ends in pairs(st.held) do
    try_window(task, zone, key, threaded, true, ends or nil)
    again = RECHECK
  end

  local w, name, wait, ends
  if self.keys == default_keys then
    -- cluster tasks count windows on the wall clock: every node the same
    if task.cluster then ngx.update_time() end
    local mono = now_s()
    local now = task.cluster and ngx.now() or mono
    w, name = default_keys(self, task, now)
    ends = (w + 1) * task.interval
    wait = ends - now
    if task.cluster then ends = mono + wait end
  else
    w, name = self:keys(task, ngx.time())
    wait = min(task.interval, 1)
  end
  if st.last == w then return min(again, wait) end
  st.last = w
  local c = counter(task.identifier)
  if st.running and task.typ == "normal" then
    -- its previous window is still running here (preemption: its run lock
    -- says so, to whichever worker takes the window)
    c.overlaps = c.overlaps + 1
    n_record(zone, tostring(task.identifier) .. TAG, "overlapped")
    return min(again, wait)
  end
  if task.filter then
    local ok, pass = xpcall(task.filter, traceback, task)
    if not ok then
      log(ERR, PREFIX, "task '", tostring(task.identifier), "' filter failed: ", error_text(pass))
    end
    if not (ok and pass) then
      c.filtered = c.filtered + 1
      return min(again, wait)
    end
  end
  local key
  if task.typ == "preemption" then
    key = KEY .. "p:" .. tostring(name) .. ":" .. tostring(w)
  else
    key = KEY .. "n:" .. tostring(name) .. ":" .. tostring(ngx.worker.id()) .. ":" .. tostring(w)
  end
  try_window(task, zone, key, threaded, false, ends)
  -- a window just found held is looked at again soon, in case its worker dies
  if again == huge and next(st.held) then again = RECHECK end
  return min(again, wait)
end

local function tick(self, threaded)
  local zone, err = zone_of(self)
  if not zone then
    log(ERR, PREFIX, "tasks.dict: ", err)
    return 1
  end
  local wait = huge
  for _, task in ipairs(self) do
    local ok, w = pcall(consider, self, task, zone, threaded)
    if not ok then
      log(ERR, PREFIX, "task '", tostring(type(task) == "table" and task.identifier), "': ",
          error_text(w))
      w = 1
    end
    if w < wait then wait = w end
  end
  return wait
end

--- tasks:run(): runs the rules that are due, in this request or timer.
--- Also works as a timer callback: ngx.timer.every(n, tasks.run, tasks).
function _M.run(self, arg)
  if type(self) == "boolean" then
    -- a timer callback: (premature, tasks)
    if self then return end
    self = arg
  end
  self = self or _M
  if ngx.worker.id() == nil then return end -- not a worker
  tick(self, false)
end

---------------------------------------------------------------------------
-- native driving: one loop per worker, asleep until the next window
---------------------------------------------------------------------------
local function loop(premature, self)
  if premature then return end
  local sema = semaphore.new(0)
  -- woken when nginx starts shutting down (else: look every RECHECK s)
  local woken_at_exit = C.ngx_worker_events_tasks_set_sema(sema.sem, STREAM_FLAG) == 1
  local cap = woken_at_exit and 60 or RECHECK
  loops[self] = sema
  while not exiting() do
    local wait = tick(self, true)
    sema:wait(min(wait, cap) + 0.001)
  end
end

--- tasks:start() or tasks.start(): runs every pushed rule on schedule in
--- this worker (call it in init_worker_by_lua*), with no traffic and no
--- timer of yours; stops when the worker exits.
function _M.start(self)
  self = self or _M
  if loops[self] ~= nil then return true end
  if ngx.worker.id() == nil then return true end -- not a worker
  local ok, err = ngx.timer.at(0, loop, self)
  if not ok then
    return nil, "failed to create timer: " .. tostring(err)
  end
  loops[self] = false
  return true
end

--- Counters of this worker, per identifier: runs, failures, overlaps
--- (windows skipped: the previous run still going), retries (windows run
--- again: their worker died), filtered, skipped (windows skipped: no room
--- in the zone's claims table), last = { time, pid, duration },
--- max_duration.
function _M.stats()
  local out = {}
  for id, c in pairs(counters) do
    local t = {}
    for k, v in pairs(c) do t[k] = v end
    out[id] = t
  end
  return out
end

return _M
