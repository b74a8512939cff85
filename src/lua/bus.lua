-- ngx_worker_events.bus: the core every Lua API of the module stands on.
-- One bus = one consumer of one zone in this worker: its own cursor, local
-- event queue, dispatch loop (woken by push, with `interval` as the safety
-- net), lost-event accounting and unique claims. An API (resty.worker.events,
-- resty.events) creates one with bus.new(spec) and keeps only its handler
-- tree, argument checks and messages.
--
--   local b = bus.new {
--     api_prefix = "worker-events: ",  -- log prefix of the library the API replaces
--     dispatch = function(source, event, data, pid, wid) end,
--     lost = function(count) end,       -- once per batch that lost events
--     drain = false,                    -- true: poll() handles everything pending
--                                       -- (the synchronous 1.x post), not one batch
--     skip_own = false,                 -- true: leave out other APIs' own events
--                                       -- (resty.worker.events' started/stopping)
--     skip_unique = false,              -- true: leave unique events alone (no
--                                       -- claim: for a consumer that has no use for them)
--     claim_tag = "...",                -- the API's name: a unique event runs
--   }                                   -- once per API (default: api_prefix) and
--                                       -- per subsystem (stream's tag gets "@stream")
--   b.open(zone_or_dict)  b.post(...)  b.post_local(...)  b.poll()  b.start()
--   b.ready()  -- true once the loop has run (the worker left init_worker)
--
-- Embedded in the nginx module; `native` is the module's native table.
local native = ...

local ngx = ngx
local log = ngx.log
local ERR, DEBUG = ngx.ERR, ngx.DEBUG
local tostring, tonumber, pcall, type = tostring, tonumber, pcall, type
local timer_at = ngx.timer.at
local exiting = ngx.worker.exiting
local min, max = math.min, math.max

local ffi = require "ffi"
pcall(ffi.cdef, native.CDEF)
local C = ffi.C
local c_pending = C.ngx_worker_events_pending
local c_set_sema = C.ngx_worker_events_set_sema
local c_next_turn = C.ngx_worker_events_next_turn
local semaphore = require "ngx.semaphore"

local c_fetch = C.ngx_worker_events_fetch
local ffi_string = ffi.string
local payload = require "ngx_worker_events.payload"
local decode, encode = payload.decode, payload.encode
local c_post, c_pid = C.ngx_worker_events_post, C.ngx_worker_events_pid
local n_open, n_close, n_post, n_decode, n_claim = native.open, native.close, native.post,
                                                   native.decode, native.claim
local n_pid, n_stats, n_at_exit = native.pid, native.stats, native.at_exit
local n_now_us = native.now_us
local n_status = native.status
local FETCH_EVENT, FETCH_LOST, FETCH_BAD = native.FETCH_EVENT, native.FETCH_LOST, native.FETCH_BAD
-- the record a fetch fills in (its byte pointers are good until the next
-- fetch, by any consumer of this worker: run_broadcast copies them first)
local rec = ffi.new("ngx_worker_events_record_t")
-- what a post hands to ngx_worker_events_post (strings and the encoder's
-- buffer: referenced by the caller for the call's length)
local pst = ffi.new("ngx_worker_events_post_t")
local POST_FFI_SEQ, POST_FFI_DUPLICATE, POST_FFI_ERR = native.POST_FFI_SEQ,
                                                       native.POST_FFI_DUPLICATE, native.POST_FFI_ERR

-- posts through FFI what the Lua encoder took: seq | false | nil, err |
-- nil, nil (only native.post can tell: call it)
local function post_ffi(consumer, source, event, data, unique, timeout, flags, max_payload)
  local p, len = encode(data)
  if not p then return nil, nil end
  pst.source, pst.source_len = source, #source
  pst.event, pst.event_len = event, #event
  if type(unique) == "string" then
    pst.unique, pst.unique_len, pst.has_unique = unique, #unique, 1
  else
    pst.unique, pst.unique_len, pst.has_unique = nil, 0, 0
  end
  pst.data, pst.data_len = p, len
  pst.ttl = tonumber(timeout) or 0
  pst.flags = flags or 0
  if type(max_payload) == "number" then
    pst.max_payload, pst.has_max = max_payload, 1
  else
    pst.has_max = 0
  end
  local rc = c_post(consumer, pst)
  pst.source, pst.event, pst.unique = nil, nil, nil
  if rc == POST_FFI_SEQ then return pst.seq end
  if rc == POST_FFI_DUPLICATE then return false end
  if rc == POST_FFI_ERR then return nil, ffi_string(pst.err, pst.err_len) end
  return nil, nil -- POST_FFI_NATIVE
end
local PREFIX = native.LOG_PREFIX
-- stream-lua's VM (stream {}): its semaphores are stream-lua's, its unique
-- claims and task keys its own (README "Stream subsystem")
local STREAM = ngx.config.subsystem == "stream"
local STREAM_FLAG = STREAM and 1 or 0

local MAX_BATCH = 10000 -- broadcast events handled per poll() before yielding
local BATCH_US = 20000  -- ... or this long (µs), whichever comes first
local MAX_DRAIN = 100   -- batches a draining poll() handles at most (a flood
                        -- posted faster than it is handled must not hold it)
local SLEEP_STEP = 0.5  -- the interval-only loop checks ngx.worker.exiting() this often
-- what ngx.semaphore:wait() can express: it truncates secs * 1000 to a C
-- int, so below 1 ms it returns at once without yielding (a loop that never
-- lets nginx run) and above ~24.8 days it overflows
local MIN_WAIT, MAX_WAIT = 0.001, 2147483
local LOST_LOG_EVERY = 1 -- seconds between two "lost" ERR lines

local _M = {
  LOG_PREFIX = PREFIX,
  STREAM = STREAM, -- this VM is the stream subsystem's
  -- what tags per-subsystem names in the zone (claims, task keys): "" in http
  SUBSYSTEM_TAG = STREAM and "@stream" or "",
  POST_DEDUP = native.POST_DEDUP, -- post flag: drop it when its unique key is live
  POST_OWN = native.POST_OWN,     -- post flag: the API's own event
  POST_CLUSTER = native.POST_CLUSTER, -- post flag: every worker of every node
  POST_HOLD = native.POST_HOLD,   -- with POST_CLUSTER and a unique key: one worker in the cluster
}

-- The libraries' debug lines: logged exactly when this process's error_log
-- lets debug through. The level is read from the running cycle, and only
-- outside init_by_lua* (there ngx_cycle is still the cycle being replaced,
-- whose level is not the configured one): when the bus opens a consumer or
-- starts its loop, once per process. The APIs read `bus.debug_on` per event
-- (a table field, no C call), so a worker not at debug pays nothing else.
_M.debug_on = false
local debug_pid -- the process whose level debug_on holds

function _M.refresh_debug()
  if ngx.get_phase() == "init" then return _M.debug_on end
  local p = n_pid()
  if debug_pid == p then return _M.debug_on end
  debug_pid = p
  local on = true -- no way to tell: log them, nginx filters them
  local ok, errlog = pcall(require, "ngx.errlog")
  if ok and errlog.get_sys_filter_level then
    local ok2, level = pcall(errlog.get_sys_filter_level)
    if ok2 and type(level) == "number" then on = level >= DEBUG end
  end
  _M.debug_on = on
  return on
end
_M.refresh_debug()

-- an error value as text: an error object whose __tostring throws must not
-- stop the other handlers
local function error_text(err)
  local ok, text = pcall(tostring, err)
  if ok and type(text) == "string" then return text end
  return "(an error object whose __tostring failed)"
end
_M.error_text = error_text

local xpcall, traceback = xpcall, debug.traceback
local n_handler_error = native.handler_error
local dispatching -- the consumer whose poll runs handlers now (for the counter)

-- runs one API handler under xpcall; a failure logs the libraries' line
-- (`origin` is "pid" or "wid"), never the data: payloads may hold secrets,
-- and counts in the zone (the status endpoint's handler_errors)
function _M.run_handler(handler, origin, data, event, source, id)
  local ok, err = xpcall(handler, traceback, data, event, source, id)
  if not ok then
    log(ERR, "worker-events: event callback failed; source=", source, ", event=", event,
        ", ", origin, "=", id, " error='", error_text(err), "'")
    if dispatching then n_handler_error(dispatching) end
  end
end

-- true in OpenResty's privileged agent (ngx.process), false elsewhere
-- (Debian's nginx has no agent and no ngx.process.type)
local process_type
do
  local ok, process = pcall(require, "ngx.process")
  process_type = ok and process.type or function() return nil end
end
function _M.is_agent()
  return ngx.worker.id() == nil and process_type() == "privileged agent"
end

function _M.new(spec)
  local dispatch, on_lost = spec.dispatch, spec.lost
  -- a draining (1.x) poll() handles everything up to the caller's event,
  -- without a time bound; the background loop's polls stay time-bound
  local drain = spec.drain
  local api_prefix = spec.api_prefix or PREFIX
  local skip_own, skip_unique = spec.skip_own, spec.skip_unique
  -- unique events run once per API and subsystem: each claims under its own tag
  local claim_tag = (spec.claim_tag or api_prefix) .. _M.SUBSYSTEM_TAG
  local self = {}
  local has_run = false -- the loop has run a turn (in this process)

  local consumer, zone, pid       -- consumer id, the zone it reads, the pid it lives in
  local timeout, interval = 2, 1  -- unique claims' ttl; the loop's safety-net interval
  local local_queue, local_n = {}, 0
  local busy, more = false, false
  local sema, sema_posted = nil, false -- the loop's semaphore (kept referenced)
  local loop_running = false
  local lost_unlogged, lost_logged_at = 0, 0

  local function wake_self()
    if sema and not sema_posted then
      sema_posted = true
      sema:post(1)
    end
  end

  -- true when open in this process (a fork leaves the parent's consumer behind)
  function self.opened()
    return consumer ~= nil and pid == c_pid()
  end

  -- opens the consumer of `name` (a zone, or a lua_shared_dict meaning the
  -- default zone): true on first open, false when already open. In the
  -- privileged agent too (no slot: its loop polls; see README "The
  -- privileged agent")
  function self.open(name)
    if self.opened() then return false end
    consumer, loop_running, sema, has_run = nil, false, nil, false
    local agent = _M.is_agent()
    local id, z = n_open(name, ngx.get_phase() == "init", agent, STREAM)
    if not id then return nil, z end
    consumer, zone, pid = id, z, n_pid()
    _M.refresh_debug()
    -- with worker_events_cluster on this zone, this worker joins the
    -- bridge's lease (once per worker, whichever API opens first); the
    -- agent is no worker and never bridges, and the bridge is http's (the
    -- stream subsystem's cluster events go through it)
    local cluster = not agent and not STREAM and native.cluster_config()
    if cluster and cluster.zone == z then
      local ok, err = require("ngx_worker_events.cluster").start()
      if not ok then log(ERR, PREFIX, "cluster: ", err) end
    end
    return true
  end

  function self.close()
    if self.opened() then
      c_set_sema(consumer, nil)
      n_close(consumer)
    end
    consumer = nil
  end

  function self.set_options(opts)
    timeout = opts.timeout or timeout
    interval = opts.interval or interval
  end

  -- seq | false (POST_DEDUP: its unique key is live, not posted) | nil, err
  function self.post(source, event, data, unique, flags, max_payload)
    if not self.opened() then
      return nil, "events not configured, call configure() first"
    end
    local seq, err
    if type(source) == "string" and type(event) == "string" then
      seq, err = post_ffi(consumer, source, event, data, unique, timeout, flags, max_payload)
    end
    if seq == nil and err == nil then
      -- what the Lua encoder leaves (or the limit leaves) to the native one
      seq, err = n_post(consumer, source, event, data, unique, timeout, flags, max_payload)
    end
    if seq then wake_self() end
    return seq, err
  end

  function self.ready()
    return has_run and self.opened()
  end

  function self.post_local(source, event, data)
    local_n = local_n + 1
    local_queue[local_n] = { source, event, data }
    wake_self()
    return true
  end

  function self.at_exit(source, event)
    return self.opened() and n_at_exit(consumer, source, event)
  end

  -- the consumer's counters, plus `status`: the status endpoint's snapshot
  -- of its zone, built when first read (it costs more than the counters)
  local STATUS_MT = {
    __index = function(t, k)
      if k ~= "status" then return nil end
      local s = n_status(rawget(t, "zone") or zone)
      rawset(t, "status", s)
      return s
    end,
  }
  function self.stats()
    if not self.opened() then return nil end
    local t = n_stats(consumer)
    if t then setmetatable(t, STATUS_MT) end
    return t
  end

  -- runs local events until none is left or `budget` ran (a handler that
  -- posts a local event for each one it gets must not hold the worker);
  -- returns what is left of the budget
  local function run_local(budget)
    while local_n > 0 and budget > 0 do
      local q, n = local_queue, local_n
      local_queue, local_n = {}, 0
      for i = 1, n do
        local e = q[i]
        dispatch(e[1], e[2], e[3], nil, nil)
      end
      budget = budget - n
    end
    return budget
  end

  -- our own diagnostic, not the library's: at most one line a second, with
  -- the total since the previous line
  local function log_lost(force)
    if lost_unlogged == 0 then return end
    local now = ngx.now()
    if force or now - lost_logged_at >= LOST_LOG_EVERY then
      log(ERR, PREFIX, "lost ", lost_unlogged, " event(s): this worker fell behind and they were ",
          "overwritten in zone \"", zone, "\" (make the zone larger or poll more often)")
      lost_unlogged, lost_logged_at = 0, now
    end
  end

  local function report_lost(n)
    lost_unlogged = lost_unlogged + n
    log_lost(false)
    if on_lost then on_lost(n) end
  end

  -- handles up to MAX_BATCH broadcast records; returns true if more may wait.
  -- A gap is reported where it is: before the first event after it.
  local function run_broadcast(timed)
    local lost = 0
    local t0 = timed and n_now_us()
    for i = 1, MAX_BATCH do
      -- a backlog of large events must not hold the worker for seconds:
      -- a batch also ends after BATCH_US of handling
      if timed and i % 64 == 0 and n_now_us() - t0 > BATCH_US then
        if lost > 0 then report_lost(lost) end
        return true
      end
      local kind = c_fetch(consumer, rec)
      local a, b, c, d, e, f, g, err
      if kind == FETCH_EVENT then
        -- a=source b=event c=data d=pid e=unique f=seq g=wid
        a, b = ffi_string(rec.source, rec.source_len), ffi_string(rec.event, rec.event_len)
        local ok
        c, ok = decode(rec.data, rec.data_len)
        if not ok then
          -- the native decoder has the last word (and the error text)
          c, err = n_decode(ffi_string(rec.data, rec.data_len))
          if err then kind = FETCH_BAD end
        end
        f = rec.seq
        if kind == FETCH_EVENT then
          d = rec.pid >= 0 and rec.pid or nil
          e = rec.has_unique ~= 0 and ffi_string(rec.unique, rec.unique_len) or nil
          g = rec.has_wid ~= 0 and rec.wid or nil
        end
      end
      if kind == 0 then
        if lost > 0 then report_lost(lost) end
        return false
      elseif kind == FETCH_EVENT then
        if lost > 0 then
          report_lost(lost)
          lost = 0
        end
        if skip_own and rec.own ~= 0 then
          -- another API's own event (e.g. resty.worker.events' started)
        elseif e == nil then
          dispatch(a, b, c, d, g)
        elseif skip_unique then
          -- not ours to claim
        else
          local mine, owner = n_claim(consumer, e, timeout, f, claim_tag)
          if mine then
            dispatch(a, b, c, d, g)
          elseif owner == nil then
            -- its reservation expired unread and the table is full: running
            -- it could run it twice
            log(ERR, PREFIX, "skipping unique event ", f, ": no room to record who runs it")
          elseif _M.debug_on then
            log(DEBUG, api_prefix, "skipping event ", f, " was handled by worker ", owner)
          end
        end
      elseif kind == FETCH_LOST then
        lost = lost + rec.seq
      else
        log(ERR, PREFIX, "dropping event ", rec.seq, ": ", err or "malformed record")
      end
    end
    if lost > 0 then report_lost(lost) end
    return true
  end

  local function do_poll(drain_now)
    local budget = run_local(MAX_BATCH)
    local m = false
    if consumer ~= nil then
      for _ = 1, drain_now and MAX_DRAIN or 1 do
        m = run_broadcast(not drain_now)
        if not m then break end
      end
    end
    -- handlers may have posted local events
    run_local(budget)
    return m or local_n > 0
  end

  local function poll_with(drain_now)
    if busy then
      return "recursive"
    end
    if local_n == 0 and (consumer == nil or c_pending(consumer) == 0) then
      more = false
      return "done"
    end
    busy = true
    local outer = dispatching
    dispatching = consumer
    local ok, m = pcall(do_poll, drain_now)
    dispatching = outer
    busy = false
    if not ok then
      m = error_text(m)
      log(ERR, PREFIX, "poll failed: ", m)
      return nil, m
    end
    more = m
    return "done"
  end

  function self.poll()
    return poll_with(drain)
  end

  -- waits up to `secs` for a wake-up; true if woken
  local function wait(secs, push)
    secs = max(MIN_WAIT, min(secs, MAX_WAIT))
    sema_posted = false
    if push then
      -- the notifier also wakes us when nginx starts shutting down
      return (sema:wait(secs)) == true
    end
    local left = secs
    while left > 0 and not exiting() do
      local step = max(MIN_WAIT, min(left, SLEEP_STEP))
      if (sema:wait(step)) then return true end
      left = left - step
      if consumer and c_pending(consumer) ~= 0 then return true end
      -- push became possible (a slot freed): the loop switches to it
      if consumer and c_set_sema(consumer, sema.sem) == 1 then return true end
    end
    return false
  end

  local function loop(premature)
    if premature then
      loop_running = false
      return
    end
    sema = sema or semaphore.new(0)
    has_run = true
    _M.refresh_debug()
    local me = consumer
    local push = c_set_sema(me, sema.sem) == 1
    while not exiting() and consumer == me do
      if interval == 0 then break end
      local ok, err = poll_with(false)
      if not ok then
        log(ERR, api_prefix, "timer-poll returned: ", err)
      end
      log_lost(false)
      if more or local_n > 0 then
        -- let requests, signals and other timers run, then carry on
        -- draining: wait for the event loop's next turn (a 1 ms sleep can
        -- re-expire in the same timer pass when handlers update the time)
        sema_posted = true
        -- posts made during the batch must not cut this wait short
        while sema:count() > 0 do sema:wait(0) end
        c_next_turn(sema.sem, STREAM_FLAG)
        sema:wait(1)
        sema_posted = false
      else
        wait(interval, push)
        -- no push yet (e.g. every slot was taken): a slot may have freed
        if not push then push = c_set_sema(me, sema.sem) == 1 end
      end
    end
    if consumer == me then c_set_sema(me, nil) end
    loop_running = false
  end

  -- starts the background loop (once; not with interval 0)
  function self.start()
    if loop_running or interval == 0 then return true end
    local ok, err = timer_at(0, loop)
    if not ok then
      err = "failed to create timer: " .. tostring(err)
      log(ERR, api_prefix, err)
      return nil, err
    end
    loop_running = true
    return true
  end

  return self
end

return _M
