-- The resty.events side of scripts/soak (soak.lua has the rest).
--
-- Every worker also runs a resty.events instance on zone "ev", the zone its
-- resty.worker.events uses, and
--   * publishes through it (from soak.lua's poster): every `re_every`-th post
--     also as a broadcast ("all", source "soak-re"), the same payload as
--     soak.lua's plus u (how many unique keys this poster lifetime had
--     published before it) and t (publication time); and after every batch
--     `unique` fresh unique keys (target "<token>:<n>", source "soak-u"),
--     each published again at once and once more after the next batch (if
--     that comes within unique_timeout / 2): those repeats must be dropped at
--     publish (the key is live for unique_timeout; publish still returns true);
--   * receives with one subscription ("*", "*"):
--       stream re     resty.events broadcasts, checked as soak.lua's ev; its
--                     losses are stats().lost (resty.events delivers no lost
--                     event; when it is read: see read_lost below)
--       stream we2re  resty.worker.events' posts (source "soak"): cross-API
--       soak-u        a unique key ran here: counted in soak_u at once
--       anything else (resty.worker.events' own started/stopping, a lost
--                     event): `foreign`, must stay 0
-- resty.worker.events (soak.lua) receives the broadcasts too (stream re2we)
-- and, when its consumer claims a unique key first, runs it ("we:" below).
--
-- A unique payload: { p = pid, w = worker id, b = token, n = key number,
-- r = 1 (first publish) | 2 (a repeat), c = crc32(d), d = "<p>:<b>:u<n>:" .. bytes }.
--
-- lua_shared_dict soak_u (the driver reads it after the run):
--   ut:<token>           "keys=N fails=N" unique keys a poster lifetime published (1..N)
--   uf:<token>:<n>       a failed unique publish (its error)
--   re:<token>:<n>       runs of that key by resty.events callbacks (any worker)
--   we:<token>:<n>       runs of it by resty.worker.events handlers (any worker)
--   rep:re / rep:we      runs of a repeat (must be 0: dropped at publish)
--   bad:re / bad:we      unique payloads that failed their checks
--   uv:<stream>:<token>:<n>  keys read without loss (soak_rx.vouch)
local R = require "soak_rx"

local ngx = ngx
local udict = ngx.shared.soak_u
local crc32 = ngx.crc32_long
local format, sub, max = string.format, string.sub, math.max
local type, random = type, math.random

local M = {}

local re_ev        -- the resty.events instance
local pid, token, wid
local rx           -- soak.lua's streams (re and we2re are added)
local opts
local ustate = { n = 0, fails = 0, logged = false, at = 0 } -- at: when key n was published

-- a unique key ran in api ("re" | "we"): counted first (a SIGKILL right after
-- the claim should find as little as possible to lose), then checked
function M.run_unique(api, data, from, by)
  if type(data) ~= "table" or type(data.b) ~= "string" or type(data.n) ~= "number" then
    R.count(udict, "bad:" .. api)
    return
  end
  R.count(udict, api .. ":" .. data.b .. ":" .. data.n)
  if data.r ~= 1 then R.count(udict, "rep:" .. api) end
  local d, hdr = data.d, data.p .. ":" .. data.b .. ":u" .. data.n .. ":"
  if data[by] ~= from or type(d) ~= "string" or crc32(d) ~= data.c or sub(d, 1, #hdr) ~= hdr then
    R.count(udict, "bad:" .. api)
  end
end

-- this consumer's stats().lost (resty.events has no lost event). A read
-- costs ~15 us, so it is read at every `re_stats_every`-th event, at each gap
-- (the check then sees the exact count: unreported losses are exact), and at
-- each event that would vouch for unique keys (exact there; the value at the
-- poster's previous event may be older, hence lower, which only vouches less).
-- Between reads the count may be stale, which makes the late check looser.
local known_lost, n_events = 0, 0
local function read_lost()
  local st = re_ev:stats()
  if st and st.lost > known_lost then known_lost = st.lost end
  return known_lost
end
local function refresh(r) R.set_lost(r, read_lost()) end

local function on_event(data, _, source, from_wid)
  if source == "soak-re" or source == "soak" then
    local r = source == "soak-re" and rx.re or rx.we2re
    n_events = n_events + 1
    local read = n_events % opts.re_stats_every == 0
    if not read and r.vouch and type(data) == "table" and type(data.u) == "number" then
      local pu = r.u_last[data.b]
      read = pu ~= nil and data.u > pu
    end
    R.set_lost(r, read and read_lost() or known_lost)
    R.check(r, data, from_wid, "w")
  elseif source == "soak-u" then
    M.run_unique("re", data, from_wid, "w")
  else
    rx.re.foreign = rx.re.foreign + 1
  end
end

-- in init_worker_by_lua, after resty.worker.events' configure.
-- ctx: pid, token, rx (soak.lua's stream table), opts (the soak's options), prefix
function M.init_worker(ctx)
  pid, token, rx, opts = ctx.pid, ctx.token, ctx.rx, ctx.opts
  wid = ngx.worker.id()
  rx.re = R.with_vouch(R.new_rx("re"))
  rx.re.foreign = 0
  rx.we2re = R.new_rx("we2re")
  rx.re.refresh, rx.we2re.refresh = refresh, refresh
  local ok, ev = pcall(require("resty.events").new, {
    listening = "unix:" .. ctx.prefix .. "/events.sock", -- required; unused
    unique_timeout = opts.unique_timeout, shm = "ev",
  })
  if not ok then return nil, ev end
  re_ev = ev
  re_ev:subscribe("*", "*", on_event)
  return re_ev:init_worker()
end

function M.stats()
  return re_ev and re_ev:stats()
end

-- posts payload as a resty.events broadcast (soak.lua's try())
function M.publish_all(payload)
  payload.u, payload.t = ustate.n, ngx.now()
  local ok, err = re_ev:publish("all", "soak-re", "e", payload)
  payload.u, payload.t = nil, nil
  return ok, err
end

local upayload = {}
local function publish_key(key, n, r, rnd)
  local hdr = pid .. ":" .. token .. ":u" .. n .. ":"
  local d = hdr .. sub(rnd, 1, max(0, random(16, 256) - #hdr))
  upayload.p, upayload.w, upayload.b, upayload.n, upayload.r = pid, wid, token, n, r
  upayload.c, upayload.d = crc32(d), d
  return re_ev:publish(key, "soak-u", "u", upayload)
end

-- after each batch of the poster: `opts.unique` new keys, their repeats, and
-- a repeat of the previous batch's last key. SOAK_INJECT=ugap skips every
-- 5th key (read without loss, never run: must fail), udup publishes it
-- under a second key too (runs twice: must fail): a poster lifetime
-- publishes some 10 keys under the HUPs.
function M.publish_unique(rnd)
  local inject = opts.inject
  for _ = 1, opts.unique do
    local prev = ustate.n
    local n = prev + 1
    ustate.n = n
    local key = token .. ":" .. n
    if not (inject == "ugap" and n % 5 == 0) then
      local ok, err = publish_key(key, n, 1, rnd)
      if not ok then
        ustate.fails = ustate.fails + 1
        R.save("uf:" .. token .. ":" .. n, tostring(err), udict)
        if not ustate.logged then
          ustate.logged = true
          ngx.log(ngx.ERR, "soak: unique publish failed: ", err)
        end
      end
      publish_key(key, n, 2, rnd)
      if inject == "udup" and n % 5 == 0 then publish_key(key .. ":again", n, 1, rnd) end
    end
    -- the previous key again, if still surely live (a poster stopped or
    -- starved for longer than unique_timeout may publish it anew: it would run)
    local now = R.wall()
    if prev > 0 and not (inject == "ugap" and prev % 5 == 0) and now - ustate.at < opts.unique_timeout / 2 then
      publish_key(token .. ":" .. prev, prev, 2, rnd)
    end
    ustate.at = now
  end
  R.save("ut:" .. token, format("keys=%d fails=%d", ustate.n, ustate.fails), udict)
end

function M.flush()
  R.flush_vouch(rx.re, token, udict)
  R.flush_vouch(rx.re2we, token, udict)
end

return M
