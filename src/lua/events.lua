-- resty.events: Kong's lua-resty-events API (0.3.x) on the module's event
-- bus (ngx_worker_events.bus). This file keeps what is the library's: its
-- options and their messages, targets ("all", "current", a unique key),
-- subscriptions by id, callback arguments (data, event, source, wid) and its
-- log lines. There is no broker, socket or queue: `publish` writes to the
-- shared zone and every worker's loop is pushed awake.
--
--   local ev = require("resty.events").new{ listening = "unix:/tmp/ev.sock" }
--   -- init_worker_by_lua*:
--   ev:subscribe("*", "*", function(data, event, source, wid) end)
--   ev:init_worker()
--   ev:publish("all", "source", "event", data)
--
-- Each instance is one consumer of its zone (opts.shm, or the default zone).
local native = ...

local ngx = ngx
local log = ngx.log
local DEBUG = ngx.DEBUG
local type, tostring, error, pcall, ipairs = type, tostring, error, pcall, ipairs
local setmetatable, pairs, tremove = setmetatable, pairs, table.remove
local worker_id, worker_count = ngx.worker.id, ngx.worker.count
local str_sub = string.sub

local bus = require "ngx_worker_events.bus"
local POST_DEDUP = bus.POST_DEDUP
local POST_CLUSTER, POST_HOLD = bus.POST_CLUSTER, bus.POST_HOLD
local post -- below
local run_handler = bus.run_handler

local UNIX_PREFIX = "unix:"
local DEFAULT_UNIQUE_TIMEOUT = 5
local DEFAULT_MAX_QUEUE_LEN = 1024 * 10
local DEFAULT_MAX_PAYLOAD_LEN = 1024 * 64      -- 64 KB
local LIMIT_MAX_PAYLOAD_LEN = 1024 * 1024 * 16 -- 16 MB

-- new() raises with a position prefix of the library's length: callers strip
-- `#"lualib/resty/events/init.lua:62: "` (33) characters off the message
local RAISE_PREFIX = "ngx_worker_events: resty.events: "
assert(#RAISE_PREFIX == 33)

local _M = { _VERSION = "0.3.1" }
local _MT = {}
_MT.__index = _MT

---------------------------------------------------------------------------
-- options (the library's checks and messages, in its order)
---------------------------------------------------------------------------
-- fills in a number option's default, then checks its type and value
local function number_option(opts, name, default, type_msg, valid, invalid_msg)
  opts[name] = opts[name] or default
  if type(opts[name]) ~= "number" then return nil, type_msg end
  if not valid(opts[name]) then return nil, invalid_msg end
  return true
end

local function positive(v) return v > 0 end -- false for NaN too
local function payload_len(v) return v > 0 and v <= LIMIT_MAX_PAYLOAD_LEN end
local function broker_id(v) return v >= 0 and v < worker_count() end

local function check_options(opts)
  if type(opts) ~= "table" then
    return nil, "Expected a table, got " .. type(opts)
  end

  local ok, err = number_option(opts, "broker_id", 0, '"broker_id" option must be a number',
    broker_id, '"broker_id" option is invalid')
  if not ok then return nil, err end

  if not opts.listening then
    return nil, '"listening" option required to start'
  end
  if type(opts.listening) ~= "string" then
    return nil, '"listening" option must be a string'
  end
  if str_sub(opts.listening, 1, #UNIX_PREFIX) ~= UNIX_PREFIX then
    return nil, '"listening" option must start with ' .. UNIX_PREFIX
  end

  ok, err = number_option(opts, "unique_timeout", DEFAULT_UNIQUE_TIMEOUT,
    'optional "unique_timeout" option must be a number', positive,
    '"unique_timeout" must be greater than 0')
  if not ok then return nil, err end
  ok, err = number_option(opts, "max_queue_len", DEFAULT_MAX_QUEUE_LEN,
    '"max_queue_len" option must be a number', positive, '"max_queue_len" option is invalid')
  if not ok then return nil, err end
  ok, err = number_option(opts, "max_payload_len", DEFAULT_MAX_PAYLOAD_LEN,
    '"max_payload_len" option must be a number', payload_len, '"max_payload_len" option is invalid')
  if not ok then return nil, err end

  for _, name in ipairs({ "enable_privileged_agent", "testing" }) do
    opts[name] = opts[name] or false
    if type(opts[name]) ~= "boolean" then
      return nil, '"' .. name .. '" option must be a boolean'
    end
  end

  -- ours: the zone (a worker_events_zone, or a lua_shared_dict meaning the
  -- default zone); none: the default zone
  if opts.shm ~= nil and type(opts.shm) ~= "string" then
    return nil, '"shm" option must be a string'
  end

  return true
end

---------------------------------------------------------------------------
-- callbacks: lists of ids per source/event, in subscription order
---------------------------------------------------------------------------
local function run_list(funcs, list, data, event, source, wid)
  if not list then return end
  -- callbacks subscribed by a callback start with the next event
  local i, n = 1, #list
  -- One callback, the common case, runs without entering the loop below
  -- (a loop of one trip on every event's path makes LuaJIT's traces of the
  -- dispatch loop fragile: see resty.worker.events' run_mode)
  if n == 1 then
    local handler = funcs[list[1]]
    if handler ~= nil then
      return run_handler(handler, "wid", data, event, source, wid)
    end
  end
  while i <= n do
    local id = list[i]
    local handler = funcs[id]
    if handler == nil then
      -- unsubscribed: drop the entry, keeping the order
      tremove(list, i)
      n = n - 1
    else
      run_handler(handler, "wid", data, event, source, wid)
      i = i + 1
    end
  end
end

local function do_event(self, source, event, data, wid)
  if bus.debug_on then
    log(DEBUG, "worker-events: handling event; source=", source, ", event=", event,
        ", wid=", wid)
  end
  local funcs, lists = self._funcs, self._lists
  local any = lists["*"]
  run_list(funcs, any and any["*"], data, event, source, wid)
  local s = lists[source]
  if s then
    run_list(funcs, s["*"], data, event, source, wid)
    run_list(funcs, s[event], data, event, source, wid)
  end
end

function _MT:subscribe(source, event, callback)
  if type(source) ~= "string" or source == "" then
    error("source is required", 2)
  end
  if type(event) ~= "string" or event == "" then
    error("event is required", 2)
  end
  if type(callback) ~= "function" then
    error("expected function, got: " .. type(callback), 2)
  end
  local lists = self._lists
  local s = lists[source]
  if not s then
    s = {}
    lists[source] = s
  end
  local list = s[event]
  if not list then
    list = {}
    s[event] = list
  end
  local n = self._counter + 1
  self._counter = n
  local id = tostring(n)
  self._funcs[id] = callback
  list[#list + 1] = id
  return id
end

function _MT:unsubscribe(id)
  if type(id) ~= "string" or id == "" then
    error("id is required", 2)
  end
  self._funcs[id] = nil
end

---------------------------------------------------------------------------
-- start
---------------------------------------------------------------------------
local NOT_IN_INIT = "init_worker() is for worker processes (init_worker_by_lua* or later), not init_by_lua*"

local is_agent = bus.is_agent

-- opens this instance's consumer (init_worker, or a publish before it; in
-- the privileged agent too: it publishes whatever enable_privileged_agent
-- says, which only decides whether it receives)
local function open(self)
  local b = self._bus
  if b.opened() then return true end
  if ngx.get_phase() == "init" then
    return nil, NOT_IN_INIT
  end
  local ok, err = b.open(self.opts.shm or "")
  if ok == nil then return nil, err end
  b.set_options { timeout = self.opts.unique_timeout, interval = 1 }
  return true
end

function _MT:init_worker()
  local opts = self.opts
  bus.refresh_debug()
  if opts.testing then
    -- the library's testing mode: events stay in this worker, handled at once
    if not self._testing_timer then
      local ok, err = ngx.timer.at(0, function() self._testing_ready = true end)
      if not ok then return nil, "failed to create timer: " .. tostring(err) end
      self._testing_timer = true
    end
    return true
  end
  if worker_id() == nil and not (is_agent() and opts.enable_privileged_agent) then
    if ngx.get_phase() == "init" then
      return nil, NOT_IN_INIT
    end
    -- a helper (the privileged agent without enable_privileged_agent): as
    -- the library, it takes no events
    return true
  end
  local ok, err = open(self)
  if not ok then return nil, err end
  return self._bus.start()
end

function _MT:is_ready()
  if self.opts.testing then
    return self._testing_ready == true
  end
  return self._bus.ready()
end

-- the library's broker location (`server { listen unix:...; ... ev:run() }`):
-- nothing connects to it any more; a stray client gets an answer
function _MT.run()
  pcall(function()
    ngx.status = 200
    ngx.header["Content-Type"] = "text/plain"
    ngx.say("no broker here: ngx_worker_events delivers resty.events through a shared zone")
  end)
  return ngx.exit(200)
end

---------------------------------------------------------------------------
-- publish
---------------------------------------------------------------------------
local function worker_name()
  local id = worker_id()
  return id and ("worker #" .. id) or "privileged agent"
end

-- the library's argument checks of publish(): the message, or nil
local function check_publish(target, source, event)
  if type(target) ~= "string" or target == "" then return "target is required" end
  if type(source) ~= "string" or source == "" then return "source is required" end
  if type(event) ~= "string" or event == "" then return "event is required" end
end

function _MT:publish(target, source, event, data)
  local bad = check_publish(target, source, event)
  if bad then error(bad, 2) end

  if self.opts.testing then
    if bus.debug_on then log(DEBUG, "event published to 1 workers") end
    do_event(self, source, event, data, nil)
    return true
  end

  if target == "current" then
    self._bus.post_local(source, event, data)
    if bus.debug_on then log(DEBUG, "event published to 1 workers") end
    return true
  end

  return post(self, target ~= "all" and target or nil, source, event, data, nil)
end

function post(self, unique, source, event, data, cluster)
  local ok, err = open(self)
  if not ok then
    return nil, "failed to publish event: " .. err
  end
  local flags = unique and POST_DEDUP or 0
  if cluster then flags = flags + POST_CLUSTER + (unique and POST_HOLD or 0) end
  local seq
  seq, err = self._bus.post(source, event, data, unique, flags ~= 0 and flags or nil,
                            self.opts.max_payload_len)
  if seq == nil then
    return nil, "failed to publish event: " .. tostring(err)
  end
  if bus.debug_on then
    if seq == false then
      log(DEBUG, "unique event is duplicate on ", worker_name(), ": ", unique)
    else
      log(DEBUG, "event published to ", unique and 1 or worker_count(), " workers")
    end
  end
  return true
end

-- Extension (not in lua-resty-events): publishes to the whole cluster
-- (worker_events_cluster): `target` "all" (every worker of every node) or a
-- unique key (one worker in the cluster). publish("cluster", ...) is, as
-- in the library, a unique key like any other.
function _MT:publish_cluster(target, source, event, data)
  local bad = check_publish(target, source, event)
  if bad then error(bad, 2) end
  if target == "current" then
    error('target "current" is not a cluster target (use "all" or a unique key)', 2)
  end
  return post(self, target ~= "all" and target or nil, source, event, data, true)
end

-- Extension (not in lua-resty-events): handles what is pending now, in any
-- phase (it never yields): "done" | "recursive" (from a callback) | nil, err.
-- resty.events.compat's poll() is this.
function _MT:poll()
  if self.opts.testing then return "done" end
  return self._bus.poll()
end

-- Extension (not in lua-resty-events): the zone's and this consumer's
-- counters (see resty.worker.events' stats()), plus the options in effect.
function _MT:stats()
  local t = self._bus.stats()
  if not t then return nil, "not initialized" end
  local o = {}
  for k, v in pairs(self.opts) do o[k] = v end
  t.options = o
  return t
end

---------------------------------------------------------------------------
-- constructor
---------------------------------------------------------------------------
function _M.new(opts)
  local ok, err = check_options(opts)
  if not ok then
    -- level 0 plus a prefix of the library's length (see RAISE_PREFIX)
    error(RAISE_PREFIX .. err, 0)
  end
  local self = setmetatable({
    opts = opts,
    _funcs = {},   -- id -> callback
    _lists = {},   -- source -> event -> { id, ... }
    _counter = 0,
  }, _MT)
  self._bus = bus.new {
    api_prefix = native.LOG_PREFIX,
    claim_tag = "resty.events",
    skip_own = true,
    dispatch = function(source, event, data, _, wid)
      do_event(self, source, event, data, wid)
    end,
  }
  return self
end


return _M
