-- wrk script of scripts/bench's status_load scenario: a scraper of the
-- status endpoint (wrk -s nginx-conf/bench/status_scrape.lua URL).
--
-- Environment (read in every wrk thread):
--   SCRAPE_PATHS     comma-separated paths, requested in turn
--                    (default "/status?format=prometheus,/status")
--   SCRAPE_DELAY_MS  pause before each request on a connection; 0 = full speed
--
-- Every response is counted in a 1 ms bucket of CLOCK_MONOTONIC (the clock
-- the bench harness stamps events with), so the driver can count the scrapes
-- answered while events were flowing. done() prints, after wrk's summary:
--   scrape_total n=<responses> non200=<n> bytes=<kind>:<avg body bytes>,...
--                (kind from the Content-Type: json, prometheus, other)
--   scrape_ms <ms>:<count>,<ms>:<count>,...   (one line per wrk thread)
local ffi = require "ffi"

pcall(ffi.cdef, [[
  typedef struct { long tv_sec; long tv_nsec; } scrape_timespec_t;
  int scrape_clock_gettime(int clk_id, scrape_timespec_t *tp) __asm__("clock_gettime");
]])
local C = ffi.C
local ts = ffi.new("scrape_timespec_t")

local function now_ms()
  C.scrape_clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + math.floor(tonumber(ts.tv_nsec) / 1000000)
end

local paths, reqs, nreq, i = {}, {}, 0, 0
for p in (os.getenv("SCRAPE_PATHS") or "/status?format=prometheus,/status"):gmatch("[^,]+") do
  paths[#paths + 1] = p
end
local delay_ms = tonumber(os.getenv("SCRAPE_DELAY_MS") or "0") or 0

-- per thread, copied out by done() through thread:get()
hist = {}      -- [ms] = responses
nresp = 0
non200 = 0
bytes = {}     -- [kind] = body bytes summed ("json", "prometheus", "other": from Content-Type)
counts = {}    -- [kind] = responses

function init(args)
  for k, p in ipairs(paths) do reqs[k] = wrk.format("GET", p) end
  nreq = #reqs
end

function request()
  i = i % nreq + 1
  return reqs[i]
end

if delay_ms > 0 then
  function delay() return delay_ms end
end

local function kind(headers)
  local ct = headers["Content-Type"] or headers["content-type"] or ""
  if ct:find("json", 1, true) then return "json" end
  if ct:find("version=0.0.4", 1, true) then return "prometheus" end
  return "other"
end

function response(status, headers, body)
  local ms = now_ms()
  hist[ms] = (hist[ms] or 0) + 1
  nresp = nresp + 1
  if status ~= 200 then non200 = non200 + 1 end
  local k = kind(headers)
  bytes[k] = (bytes[k] or 0) + #(body or "")
  counts[k] = (counts[k] or 0) + 1
end

local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

function done(summary, latency, requests)
  local n, bad, b, c, lines = 0, 0, {}, {}, {}
  for _, t in ipairs(threads) do
    n = n + (t:get("nresp") or 0)
    bad = bad + (t:get("non200") or 0)
    local tb, tc = t:get("bytes") or {}, t:get("counts") or {}
    for k, cnt in pairs(tc) do
      b[k] = (b[k] or 0) + (tb[k] or 0)
      c[k] = (c[k] or 0) + cnt
    end
    local h, out = t:get("hist") or {}, {}
    for ms, cnt in pairs(h) do out[#out + 1] = string.format("%d:%d", ms, cnt) end
    lines[#lines + 1] = "scrape_ms " .. table.concat(out, ",")
  end
  local avg = {}
  for k, cnt in pairs(c) do
    avg[#avg + 1] = string.format("%s:%d", k, math.floor(b[k] / cnt))
  end
  table.sort(avg)
  io.write(string.format("scrape_total n=%d non200=%d bytes=%s\n", n, bad, table.concat(avg, ",")))
  for _, l in ipairs(lines) do io.write(l, "\n") end
end
