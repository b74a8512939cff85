-- The nginx side of the cluster soak (scripts/soak-cluster, scripts/soak_cluster.py):
-- node A and node B run this same module, with worker_events_cluster on zone
-- "ev" and one Redis stream.
--
-- Posters: workers with ngx.worker.id() < opts.posters post cluster events
-- (resty.worker.events, { cluster = true }) source "soak", event "seq",
-- data { node = <this node>, p = <poster pid>, seq = 1, 2, ..., t = <batch time> }
-- at opts.rate / opts.posters events/s each, in batches every 10 ms. A
-- poster's events are one stream ("node:pid"): its seqs are posted in order,
-- so they reach every receiving zone in order (one ordinal each).
--
-- Receivers: every worker's handler records per stream the runs of seqs it
-- got (a run: consecutive seqs), duplicates, reorderings, pid mistakes (pid
-- must be nil exactly for other nodes' events), and the `lost` events it got
-- (cluster ones per node, local ones apart).
--
-- Bookkeeping (lua_shared_dicts: they survive SIGKILLs and HUP reloads):
--   soak_tx  b:<pid>:<first seq>  "<n> <t>": a batch of n seqs, written before
--                                  its first post; t (ngx.now() after
--                                  ngx.update_time()) is <= every post's time
--            hw:<pid>             the poster's highest seq whose post returned ok
--            f:<pid>:<seq>        a post that returned nil, err (the err)
--            fails                their number
--   soak_rx  r:<pid>              the worker's receiver record, one JSON value
--                                  (a consistent snapshot; every 0.1 s and at
--                                  exit): { node, pid, t_attach (after configure:
--                                  its cursor is at the log's head by then), t,
--                                  exiting, bad, badpid, lost_local,
--                                  lost_events, lost_cluster = { node = n },
--                                  last_from = { node = { stream, seq } } (the
--                                  last event it got from each node),
--                                  streams = { ["a:123"] = { runs = { a1, b1, a2,
--                                  b2, ... }, dup, ooo } } }
--            accfail              writes that failed or evicted (harness error)
--   soak_ctl go / stop            the driver's switches
-- opts.inject (SOAK_CLUSTER_INJECT): a self-test; every 499th seq is skipped
-- but counted as posted ("gap"), posted twice ("dup") or swapped with the next
-- ("ooo"): the soak must then fail.
local cjson = require "cjson.safe"

local ngx = ngx
local tx, rx, ctl = ngx.shared.soak_tx, ngx.shared.soak_rx, ngx.shared.soak_ctl
local type, pairs, tostring, tonumber, floor, min = type, pairs, tostring, tonumber, math.floor, math.min
local fmt = string.format

local M = {}

local NODE, PID
local INJECT = "" -- self-test of the checks: "gap", "dup" or "ooo" every 499th seq
local ev
local CL = { cluster = true }
local R -- this worker's receiver record
local dirty = false

local function put(dict, k, v)
  local ok, err, forcible = dict:set(k, v)
  if not ok or forcible then
    rx:incr("accfail", 1, 0)
    ngx.log(ngx.ERR, "cluster soak: dict write failed: ", tostring(err), " forcible ", tostring(forcible))
  end
end

local function flush(exiting)
  if exiting then R.exiting = true end
  ngx.update_time()
  R.t = ngx.now()
  put(rx, "r:" .. PID, cjson.encode(R))
  dirty = false
end

local function in_runs(runs, q)
  for i = 1, #runs, 2 do
    if q >= runs[i] and q <= runs[i + 1] then return true end
  end
  return false
end

local function on_seq(data, event, source, from)
  dirty = true
  if type(data) ~= "table" or type(data.seq) ~= "number" or type(data.node) ~= "string"
      or type(data.p) ~= "number" then
    R.bad = R.bad + 1
    return
  end
  local remote = data.node ~= NODE
  -- pid: nil for another node's event, the poster's pid for this node's
  if (remote and from ~= nil) or (not remote and from ~= data.p) then
    R.badpid = R.badpid + 1
  end
  local key = data.node .. ":" .. data.p
  local s = R.streams[key]
  local q = data.seq
  R.last_from[data.node] = { key, q }
  if not s then
    R.streams[key] = { runs = { q, q }, dup = 0, ooo = 0 }
    return
  end
  local runs = s.runs
  local last = runs[#runs]
  if q == last + 1 then
    runs[#runs] = q
  elseif q > last then
    runs[#runs + 1] = q
    runs[#runs + 1] = q
  elseif in_runs(runs, q) then
    s.dup = s.dup + 1
  else
    s.ooo = s.ooo + 1 -- an earlier seq this worker had not seen, after a later one
  end
end

local function on_lost(data)
  dirty = true
  R.lost_events = R.lost_events + 1
  local n = type(data) == "table" and tonumber(data.count) or 0
  if type(data) == "table" and data.cluster then
    local node = tostring(data.node)
    R.lost_cluster[node] = (R.lost_cluster[node] or 0) + n
  else
    R.lost_local = R.lost_local + n
  end
  flush(false) -- a lost report goes to the record at once
end

-- one poster stream: batches every 10 ms, `per_s` events a second
local function poster(premature, per_s)
  if premature then return end
  local sleep, update_time, now = ngx.sleep, ngx.update_time, ngx.now
  local exiting = ngx.worker.exiting
  local post = ev.post
  local seq, credit, t_last = 0, 0, nil
  local cap = math.max(1, floor(per_s * 0.1)) -- at most 0.1 s worth at once
  while not exiting() and not ctl:get("stop") do
    if ctl:get("go") then
      update_time()
      local t = now()
      credit = min(cap, credit + (t_last and (t - t_last) or 0.01) * per_s)
      t_last = t
      local n = floor(credit)
      if n > 0 then
        credit = credit - n
        put(tx, "b:" .. PID .. ":" .. (seq + 1), fmt("%d %.3f", n, t))
        for _ = 1, n do
          seq = seq + 1
          local d = { node = NODE, p = PID, seq = seq, t = t }
          local ok, err
          if INJECT ~= "" and seq % 499 == 0 then
            if INJECT == "gap" then
              ok = true -- self-test: counted as posted, never posted
            elseif INJECT == "dup" then
              post("soak", "seq", d, nil, CL)
              ok, err = post("soak", "seq", d, nil, CL)
            elseif INJECT == "ooo" then
              ok, err = post("soak", "seq", { node = NODE, p = PID, seq = seq + 1, t = t }, nil, CL)
              put(tx, "hw:" .. PID, seq)
              seq = seq + 1
              ok, err = post("soak", "seq", { node = NODE, p = PID, seq = seq - 1, t = t }, nil, CL)
            end
          else
            ok, err = post("soak", "seq", d, nil, CL)
          end
          if ok then
            put(tx, "hw:" .. PID, seq)
          else
            put(tx, "f:" .. PID .. ":" .. seq, tostring(err))
            tx:incr("fails", 1, 0)
          end
        end
      end
    end
    sleep(0.01)
  end
end

function M.init_worker(opts)
  NODE, PID = opts.node, ngx.worker.pid()
  INJECT = opts.inject or ""
  ev = require "resty.worker.events"
  R = { node = NODE, pid = PID, wid = ngx.worker.id(), bad = 0, badpid = 0, lost_local = 0,
        lost_events = 0, lost_cluster = {}, last_from = {}, streams = {}, exiting = false }
  ev.register(on_seq, "soak", "seq")
  ev.register(on_lost, "resty-worker-events", "lost")
  local ok, err = ev.configure { shm = "ev" }
  if not ok then
    ngx.log(ngx.ERR, "cluster soak: configure failed: ", err)
    return
  end
  ngx.update_time()
  R.t_attach = ngx.now()
  flush(false)
  ngx.timer.every(0.1, function(premature)
    if premature then flush(true) elseif dirty then flush(false) end
  end)
  if ngx.worker.id() < opts.posters and opts.rate > 0 then
    ngx.timer.at(0, poster, opts.rate / opts.posters)
  end
end

-- GET /status: the zone's cluster status object (and who answered)
function M.status()
  local st = ev.stats()
  local c = st and st.status and st.status.cluster
  ngx.say(cjson.encode({ pid = PID, cluster = c or cjson.null }))
end

-- GET /ctl?k=go|stop
function M.ctl()
  local k = ngx.var.arg_k
  if k ~= "go" and k ~= "stop" then return ngx.exit(400) end
  ctl:set(k, true)
  ngx.say("ok")
end

-- GET /dump?dict=soak_tx|soak_rx: "key\tvalue" lines
function M.dump()
  local d = ngx.shared[ngx.var.arg_dict or ""]
  if not d then return ngx.exit(404) end
  local out = {}
  for _, k in pairs(d:get_keys(0)) do
    local v = d:get(k)
    if v ~= nil then out[#out + 1] = k .. "\t" .. tostring(v) end
  end
  ngx.print(table.concat(out, "\n"), "\n")
end

return M
