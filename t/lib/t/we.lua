-- Test helper shared by t/*.t: collects what each worker's handlers saw in a
-- lua_shared_dict (declare `lua_shared_dict out 8m;`), so a request can wait
-- for every worker and print the result in a stable order.
local _M = {}

local function dict()
  return assert(ngx.shared.out, "declare lua_shared_dict out")
end

-- configure resty.worker.events and mark this worker ready
function _M.configure(opts)
  local ev = require "resty.worker.events"
  opts = opts or {}
  opts.shm = opts.shm or "ev"
  local ok, err = ev.configure(opts)
  if not ok then
    ngx.log(ngx.ERR, "configure failed: ", err)
    return nil, err
  end
  dict():incr("ready", 1, 0)
  return true
end

-- waits until every worker ran configure (true) or `timeout` s passed
function _M.wait_ready(timeout)
  ngx.update_time() -- ngx.now() is cached: after a long run of Lua it is stale
  local deadline = ngx.now() + (timeout or 5)
  while (dict():get("ready") or 0) < ngx.worker.count() do
    if ngx.now() > deadline then return false end
    ngx.sleep(0.01)
    ngx.update_time()
  end
  return true
end

-- waits until every other worker recorded at least n lines
function _M.wait_others(n, timeout)
  ngx.update_time() -- ngx.now() is cached: after a long run of Lua it is stale
  local deadline = ngx.now() + (timeout or 5)
  for id = 0, ngx.worker.count() - 1 do
    if id ~= ngx.worker.id() then
      while _M.count(id) < n do
        if ngx.now() > deadline then return false end
        ngx.sleep(0.01)
        ngx.update_time()
      end
    end
  end
  return true
end

-- says how many other workers recorded exactly `expected` (a list of lines),
-- and what the others recorded
function _M.say_others_equal(expected, label)
  local want = table.concat(expected, ",")
  local same, odd = 0, {}
  for id = 0, ngx.worker.count() - 1 do
    if id ~= ngx.worker.id() then
      local got = table.concat(_M.take(id), ",")
      if got == want then same = same + 1 else odd[#odd + 1] = id .. ": " .. got end
    end
  end
  ngx.say(label, ": ", same, " of ", ngx.worker.count() - 1, " other workers")
  for _, l in ipairs(odd) do ngx.say("  worker ", l) end
end

-- appends a line to this worker's record
function _M.record(...)
  local parts = { ... }
  for i = 1, select("#", ...) do parts[i] = tostring(parts[i]) end
  dict():rpush("w" .. ngx.worker.id(), table.concat(parts))
end

-- number of lines worker `id` recorded
function _M.count(id)
  return dict():llen("w" .. id) or 0
end

-- waits until every worker recorded at least n lines
function _M.wait_all(n, timeout)
  ngx.update_time() -- ngx.now() is cached: after a long run of Lua it is stale
  local deadline = ngx.now() + (timeout or 5)
  for id = 0, ngx.worker.count() - 1 do
    while _M.count(id) < n do
      if ngx.now() > deadline then return false end
      ngx.sleep(0.005)
      ngx.update_time()
    end
  end
  return true
end

-- the lines worker `id` recorded (and forgets them)
function _M.take(id)
  local d, key, out = dict(), "w" .. id, {}
  while true do
    local v = d:lpop(key)
    if v == nil then break end
    out[#out + 1] = v
  end
  return out
end

-- the number of lines all workers recorded (and forgets them)
function _M.take_total()
  local n = 0
  for id = 0, ngx.worker.count() - 1 do n = n + #_M.take(id) end
  return n
end

-- prints every worker's lines as "w<id>: line" (worker ids in order)
function _M.say_all()
  for id = 0, ngx.worker.count() - 1 do
    for _, line in ipairs(_M.take(id)) do
      ngx.say("w", id, ": ", line)
    end
  end
end

-- prints worker `id`'s lines when all workers saw the same, else all of them
function _M.say_common()
  local first
  local same = true
  local all = {}
  for id = 0, ngx.worker.count() - 1 do
    all[id] = table.concat(_M.take(id), "\n")
    first = first or all[id]
    if all[id] ~= first then same = false end
  end
  if same then
    ngx.say("all ", ngx.worker.count(), " workers:")
    ngx.say(first)
  else
    for id = 0, ngx.worker.count() - 1 do
      ngx.say("w", id, ":\n", all[id])
    end
  end
end

-- for every worker, says "worker <id> <label>: true" when its lines equal
-- `expected` (a list of lines), else false and what it got
function _M.say_each_equal(expected, label)
  local want = table.concat(expected, "\n")
  for id = 0, ngx.worker.count() - 1 do
    local got = table.concat(_M.take(id), "\n")
    ngx.say("worker ", id, " ", label, ": ", got == want)
    if got ~= want then ngx.say(got) end
  end
end

-- renders a value deterministically (sorted keys, %q strings)
function _M.show(v, seen)
  local t = type(v)
  if t == "string" then
    return string.format("%q", v)
  elseif t == "table" then
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b)
      local ta, tb = type(a), type(b)
      if ta ~= tb then return ta < tb end
      if ta == "boolean" then return tostring(a) < tostring(b) end
      return a < b
    end)
    local parts = {}
    for _, k in ipairs(keys) do
      parts[#parts + 1] = "[" .. _M.show(k) .. "]=" .. _M.show(v[k])
    end
    return "{" .. table.concat(parts, ",") .. "}"
  elseif v == ngx.null then
    return "ngx.null"
  else
    return tostring(v)
  end
end

-- this process' user + system CPU time, in clock ticks (/proc/self/stat)
function _M.cpu_ticks()
  local f = assert(io.open("/proc/self/stat"))
  local stat = f:read("*a")
  f:close()
  -- fields after the ")" that ends the command name: state is field 3
  local rest = stat:match("%) (.*)$")
  local fields = {}
  for x in rest:gmatch("%S+") do fields[#fields + 1] = x end
  return tonumber(fields[12]) + tonumber(fields[13]) -- utime, stime (14, 15)
end

-- signals: HUP to the master (reload), or SIGKILL to this worker
function _M.master_pid()
  local f = assert(io.open(ngx.config.prefix() .. "logs/nginx.pid"))
  local pid = f:read("*n")
  f:close()
  return pid
end

-- the pid of a worker other than this one (a child of the master)
function _M.other_worker_pid()
  local p = assert(io.popen("pgrep -P " .. _M.master_pid()))
  local other
  for pid in p:lines() do
    if tonumber(pid) ~= ngx.worker.pid() then other = tonumber(pid) end
  end
  p:close()
  return other
end

-- GET `path` from this server over a cosocket (`headers`: extra header
-- lines, each ending in \r\n): the response head and body
function _M.http_get(path, headers)
  local sock = ngx.socket.tcp()
  assert(sock:connect("127.0.0.1", ngx.var.server_port))
  assert(sock:send("GET " .. path .. " HTTP/1.0\r\nHost: x\r\n" .. (headers or "") .. "\r\n"))
  local all = assert(sock:receive("*a"))
  sock:close()
  return all:match("^(.-)\r\n\r\n(.*)$")
end

function _M.reload()
  os.execute("kill -HUP " .. _M.master_pid())
end

-- the bytes of s through the Lua payload decoder: value, ok (as
-- payload.decode returns them; its type and module looked up once)
local uchar, payload_decode
function _M.lua_decode(s)
  local ffi = require "ffi"
  if not uchar then
    uchar = ffi.typeof("const unsigned char *")
    payload_decode = require("ngx_worker_events.payload").decode
  end
  return payload_decode(ffi.cast(uchar, s), #s)
end

-- true when the native payload decoder accepts the bytes of s (the
-- module's test export; declared once, on first use)
local check_payload
function _M.native_accepts(s)
  if not check_payload then
    local ffi = require "ffi"
    pcall(ffi.cdef, "int ngx_worker_events_test_check_payload(const unsigned char *data, size_t len);")
    check_payload = ffi.C.ngx_worker_events_test_check_payload
  end
  return check_payload(s, #s) == 1
end

-- s with one random byte changed, inserted or removed (math.random): a
-- mutation for the payload decoders' tests
local MUTATION_BYTES = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 0x7f, 0x80, 0x81, 0xff }
function _M.mutate(s)
  local at = math.random(1, #s)
  local b = math.random() > 0.5 and MUTATION_BYTES[math.random(1, #MUTATION_BYTES)] or math.random(0, 255)
  local how = math.random(1, 3)
  if how == 1 then
    return s:sub(1, at - 1) .. string.char(b) .. s:sub(at + 1)
  elseif how == 2 then
    return s:sub(1, at - 1) .. string.char(b) .. s:sub(at)
  end
  return s:sub(1, at - 1) .. s:sub(at + 1)
end

return _M
