# ngx_tasks: interval tasks on every worker ('normal') or on one worker of
# the node ('preemption'), windows of the monotonic clock claimed in the
# zone. 4 workers. Callbacks count runs per window in the out dict:
# "<identifier>:<window>" -> runs, and "<identifier>:w<window>:<worker id>".
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use WorkerEventsTest;

master_on();
workers(4);

our $Rules = <<'_EOC_';
    init_worker_by_lua_block {
        local tasks = require "ngx_tasks"
        local d = ngx.shared.out
        local function count(self)
            local w = require("ngx_tasks").keys(nil, self, require("ngx_tasks").now())
            d:incr(self.identifier .. ":" .. w, 1, 0)
            d:incr(self.identifier .. ":w" .. w .. ":" .. ngx.worker.id(), 1, 0)
            d:incr(self.identifier .. ":total", 1, 0)
        end
        _G.count = count
        -- EXTRA
        assert(tasks:start())
    }
_EOC_

our $Lib = <<'_EOC_';
    local d = ngx.shared.out
    local tasks = require "ngx_tasks"
    -- windows w0 < w < w1 (whole windows inside the observation), their run counts
    local function per_window(id, interval, w0, w1)
        local out = {}
        for w = w0 + 1, w1 - 1 do out[#out + 1] = d:get(id .. ":" .. w) or 0 end
        return table.concat(out, " ")
    end
    local function window(interval) return math.floor(tasks.now() / interval) end
_EOC_

run_tests();

__DATA__

=== TEST 1: preemption: exactly one run per window over 10 windows of 0.5 s, by some worker; normal: once per worker per window
--- implicit_zone
--- http_config eval
my $c = $::Rules;
$c =~ s/-- EXTRA/tasks:push { identifier = "one", interval = 0.5, typ = "preemption", callback = count }
        tasks.push { identifier = "all", interval = 0.5, typ = "normal", callback = count }/;
$c
--- config eval
"location = /t { content_by_lua_block { $::Lib
    ngx.sleep(0.6)
    local w0 = window(0.5)
    ngx.sleep(5.6)
    local w1 = window(0.5)
    ngx.say('preemption per window: ', per_window('one', 0.5, w0, w0 + 11))
    ngx.say('normal per window: ', per_window('all', 0.5, w0, w0 + 11))
} }"
--- timeout: 10
--- response_body
preemption per window: 1 1 1 1 1 1 1 1 1 1
normal per window: 4 4 4 4 4 4 4 4 4 4
--- no_error_log
[error]



=== TEST 2: two HUP reloads during the run: no window doubled or skipped (preemption 1 per window, normal 4 per window)
--- implicit_zone
--- http_config eval
my $c = $::Rules;
$c =~ s/-- EXTRA/tasks:push { identifier = "one", interval = 1, typ = "preemption", callback = count }
        tasks:push { identifier = "all", interval = 1, typ = "normal", callback = count }/;
$c
--- config eval
"location = /t { content_by_lua_block { $::Lib
    local we = require 't.we'
    ngx.sleep(1.1)
    local w0 = window(1)
    ngx.sleep(2.5)
    we.reload()
    ngx.sleep(3)
    we.reload()
    ngx.sleep(3.5)
    ngx.say('preemption per window: ', per_window('one', 1, w0, w0 + 10))
    ngx.say('normal per window: ', per_window('all', 1, w0, w0 + 10))
} }"
--- timeout: 15
--- response_body
preemption per window: 1 1 1 1 1 1 1 1 1
normal per window: 4 4 4 4 4 4 4 4 4
--- no_error_log
[error]



=== TEST 3: kill -9 of the worker inside a long preemption callback: another worker runs that window again (at least once, counted and logged)
--- implicit_zone
--- http_config eval
my $c = $::Rules;
# The callbacks name their window by the clock, so the victim must be one
# that starts early in its window: a worker that starts in the last
# millisecond of a window runs that window (it is not done yet), and its
# rerun would fall in the next one.
$c =~ s/-- EXTRA/tasks:push { identifier = "long", interval = 4, typ = "preemption", callback = function(self)
            count(self)
            local now = require("ngx_tasks").now()
            local w = require("ngx_tasks").keys(nil, self, now)
            if now - w * 4 < 1 and d:add("victim", ngx.worker.pid()) then
                d:set("victim_w", w)
                ngx.sleep(2)
            end
            d:incr("finished:" .. w, 1, 0)
        end,
        -- not in the worker that serves the test's request (it kills the victim)
        filter = function() local r = d:get("req_wid"); return r ~= nil and r ~= ngx.worker.id() end }/;
$c
--- config eval
"location = /t { content_by_lua_block { $::Lib
    d:set('req_wid', ngx.worker.id())
    local deadline = ngx.now() + 10
    while not d:get('victim_w') and ngx.now() < deadline do ngx.sleep(0.05); ngx.update_time() end
    local victim = d:get('victim')
    local w = d:get('victim_w') -- the window it was running
    os.execute('kill -9 ' .. victim)
    -- another worker looks at a held window every 0.5 s: wait for the rerun
    -- to end (a loaded host delays timers; a fixed 1.2 s wait failed once)
    ngx.sleep(1.2)
    ngx.update_time()
    deadline = ngx.now() + 4
    while not d:get('finished:' .. w) and ngx.now() < deadline do ngx.sleep(0.05); ngx.update_time() end
    ngx.say('runs of the window: ', d:get('long:' .. w))
    ngx.say('finished: ', d:get('finished:' .. w))
} }"
--- timeout: 20
--- response_body
runs of the window: 2
finished: 1
--- error_log eval
qr/\[warn\] .*ngx_worker_events: ngx_tasks: task 'long': worker \d+ died before it finished ngx_tasks:p:long:\d+, running it again/
--- no_error_log
[crit]
[emerg]



=== TEST 4: a failing task is logged with a traceback and stops nothing: the healthy one next to it runs every window
--- implicit_zone
--- http_config eval
my $c = $::Rules;
$c =~ s/-- EXTRA/tasks:push { identifier = "bad", interval = 0.5, typ = "normal", callback = function() error("task boom") end }
        tasks:push { identifier = "good", interval = 0.5, typ = "normal", callback = count }/;
$c
--- config eval
"location = /t { content_by_lua_block { $::Lib
    ngx.sleep(0.6)
    local w0 = window(0.5)
    ngx.sleep(2.1)
    ngx.say('good per window: ', per_window('good', 0.5, w0, w0 + 5))
    local s = tasks.stats()
    ngx.say('this worker: bad failures ', s.bad.failures == s.bad.runs and s.bad.runs > 0, ', good failures ', s.good.failures)
} }"
--- response_body
good per window: 4 4 4 4
this worker: bad failures true, good failures 0
--- error_log eval
[
qr/\[error\] .*ngx_worker_events: ngx_tasks: task 'bad' failed: init_worker_by_lua\(nginx.conf:\d+\):\d+: task boom$/,
qr/^stack traceback:$/,
]



=== TEST 5: overlap: a run still going when its next window comes is not started twice (skipped and counted), in a worker and across workers
--- implicit_zone
--- http_config eval
my $c = $::Rules;
$c =~ s/-- EXTRA/local function slow(self)
            local n = d:incr(self.identifier .. ":now", 1, 0)
            local m = d:get(self.identifier .. ":max") or 0
            if n > m then d:set(self.identifier .. ":max", n) end
            ngx.sleep(1.2)
            d:incr(self.identifier .. ":now", -1)
            d:incr(self.identifier .. ":total", 1, 0)
        end
        tasks:push { identifier = "p", interval = 0.5, typ = "preemption", callback = slow }
        tasks:push { identifier = "n", interval = 0.5, typ = "normal", callback = slow }/;
$c
--- config eval
"location = /t { content_by_lua_block { $::Lib
    ngx.sleep(3)
    ngx.say('preemption at once, at most: ', d:get('p:max'))
    ngx.say('normal at once, at most: ', d:get('n:max'), ' (one per worker)')
    local s = tasks.stats()
    ngx.say('this worker counted overlaps: ', (s.n and s.n.overlaps or 0) > 0)
} }"
--- timeout: 6
--- response_body
preemption at once, at most: 1
normal at once, at most: 4 (one per worker)
this worker counted overlaps: true
--- no_error_log
[error]



=== TEST 6: request-driven, the rules-module pattern: setmetatable(rules, { __index = ngx_tasks }); tasks:run() in rewrite_by_lua
--- implicit_zone
--- http_config
    init_worker_by_lua_block {
        local rules = {
            { name = "ding", identifier = "ding", interval = 0.3, typ = "normal",
              callback = function(self) ngx.ctx.ran = (ngx.ctx.ran or "") .. self.identifier end },
            { identifier = "dong", interval = 0.3, typ = "preemption",
              callback = function(self) ngx.shared.out:incr("dong", 1, 0) end },
        }
        _G.tasks = setmetatable(rules, { __index = require("ngx_tasks") })
        _G.tasks.dict = "out" -- a lua_shared_dict name: the default zone serves
    }
--- config
location = /t {
    rewrite_by_lua_block {
        _G.tasks:run()
    }
    content_by_lua_block {
        ngx.say("rewrite ran: ", ngx.ctx.ran or "nothing")
        ngx.ctx.ran = nil
        _G.tasks:run() -- the same window: already run in this worker
        ngx.say("content ran: ", ngx.ctx.ran or "nothing")
        ngx.sleep(0.35)
        _G.tasks:run() -- the next window
        ngx.say("next window ran: ", ngx.ctx.ran or "nothing")
        ngx.say("dong (one per node per window) so far: ", ngx.shared.out:get("dong"))
    }
}
--- response_body
rewrite ran: ding
content ran: nothing
next window ran: ding
dong (one per node per window) so far: 2
--- no_error_log
[error]



=== TEST 7: the timer-call shape: ngx.timer.every(n, tasks.run, tasks) passes premature first; tasks.push(rule) and tasks.remove(id) as functions
--- implicit_zone
--- http_config
    init_worker_by_lua_block {
        local tasks = require "ngx_tasks"
        tasks.push { identifier = "t", interval = 0.2, typ = "normal",
                     callback = function() ngx.shared.out:incr("t:" .. ngx.worker.id(), 1, 0) end }
        tasks.push { identifier = "gone", interval = 0.2, typ = "normal",
                     callback = function() ngx.shared.out:incr("gone", 1, 0) end }
        _G.removed = tasks.remove("gone")
        assert(ngx.timer.every(0.2, tasks.run, tasks))
    }
--- config
location = /t {
    content_by_lua_block {
        ngx.sleep(1)
        local n = ngx.shared.out:get("t:" .. ngx.worker.id()) or 0
        ngx.say("removed: ", _G.removed, ", ran in this worker: ", n >= 3, ", removed one ran: ", ngx.shared.out:get("gone"))
    }
}
--- response_body
removed: 1, ran in this worker: true, removed one ran: nil
--- no_error_log
[error]



=== TEST 8: filter: false skips in that worker only; a preemption window goes to a worker whose filter passes
--- implicit_zone
--- http_config eval
my $c = $::Rules;
$c =~ s/-- EXTRA/local function not0() return ngx.worker.id() ~= 0 end
        tasks:push { identifier = "fp", interval = 0.5, typ = "preemption", callback = count, filter = not0 }
        tasks:push { identifier = "fn", interval = 0.5, typ = "normal", callback = count, filter = not0 }/;
$c
--- config eval
"location = /t { content_by_lua_block { $::Lib
    ngx.sleep(0.6)
    local w0 = window(0.5)
    ngx.sleep(2.6)
    ngx.say('preemption per window: ', per_window('fp', 0.5, w0, w0 + 5))
    ngx.say('normal per window: ', per_window('fn', 0.5, w0, w0 + 5))
    local zero = 0
    for w = w0 + 1, w0 + 4 do zero = zero + (d:get('fp:w' .. w .. ':0') or 0) + (d:get('fn:w' .. w .. ':0') or 0) end
    ngx.say('runs in worker 0: ', zero)
} }"
--- timeout: 6
--- response_body
preemption per window: 1 1 1 1
normal per window: 3 3 3 3
runs in worker 0: 0
--- no_error_log
[error]



=== TEST 9: a custom keys generator is honoured (window numbers and names are its own)
--- implicit_zone
--- http_config
    init_worker_by_lua_block {
        local tasks = require "ngx_tasks"
        -- one window for the whole test: runs once per node
        tasks.keys = function(self, task, now) return 42, task.identifier .. "Preemption" end
        tasks:push { identifier = "k", interval = 0.2, typ = "preemption",
                     callback = function() ngx.shared.out:incr("k", 1, 0) end }
        assert(tasks:start())
    }
--- config
location = /t {
    content_by_lua_block {
        ngx.sleep(1.2)
        ngx.say("runs: ", ngx.shared.out:get("k"))
    }
}
--- response_body
runs: 1
--- no_error_log
[error]



=== TEST 10: rules are checked at push; stats() fields
--- implicit_zone
--- http_config
    init_worker_by_lua_block {
        local tasks = require "ngx_tasks"
        local r = {}
        local cb = function() end
        for _, rule in ipairs({
            "x", { interval = 1, typ = "normal", callback = cb },
            { identifier = "a", interval = 0, typ = "normal", callback = cb },
            { identifier = "a", interval = 1, typ = "other", callback = cb },
            { identifier = "a", interval = 1, typ = "normal" },
            { identifier = "a", interval = 1, typ = "normal", callback = cb, filter = 1 },
        }) do
            local ok, err = pcall(tasks.push, tasks, rule)
            r[#r + 1] = tostring(ok) .. " " .. tostring(err)
        end
        _G.r = r
        tasks:push { identifier = "s", interval = 0.2, typ = "normal", callback = function() ngx.sleep(0.01) end }
        assert(tasks:start())
        assert(tasks:start()) -- again: harmless
    }
--- config
location = /t {
    content_by_lua_block {
        ngx.say(table.concat(_G.r, "\n"))
        ngx.sleep(0.7)
        local s = require("ngx_tasks").stats().s
        ngx.say("runs>=2 ", s.runs >= 2, ", failures ", s.failures, ", retries ", s.retries,
                ", last pid is mine ", s.last.pid == ngx.worker.pid(), ", duration>0 ", s.last.duration > 0,
                ", max>=last ", s.max_duration >= s.last.duration)
    }
}
--- response_body_like
^false rule must be a table, got: string
false rule.identifier is required \(a string or a number\)
false rule.interval must be a positive number of seconds, got: 0
false rule.typ must be 'normal' or 'preemption', got: other
false rule.callback must be a function, got: nil
false rule.filter must be a function, got: number
runs>=2 true, failures 0, retries 0, last pid is mine true, duration>0 true, max>=last true
--- no_error_log
[error]



=== TEST 11: a rule pushed after start() (from a request) runs at once, not at the loop's next wake-up
--- implicit_zone
--- http_config
    init_worker_by_lua_block {
        assert(require("ngx_tasks"):start())
    }
--- config
location = /t {
    content_by_lua_block {
        local tasks = require "ngx_tasks"
        tasks:push { identifier = "late" .. ngx.worker.id(), interval = 30, typ = "normal",
                     callback = function() ngx.shared.out:set("late", ngx.worker.pid()) end }
        ngx.sleep(0.2)
        ngx.say("ran in this worker: ", ngx.shared.out:get("late") == ngx.worker.pid())
    }
}
--- response_body
ran in this worker: true
--- no_error_log
[error]



=== TEST 12: preemption, 4 workers: a worker that finds the window taken counts no overlap (the holder runs it); a run still going at the next window is one overlap per window
--- implicit_zone
--- http_config eval
my $c = $::Rules;
$c =~ s/-- EXTRA/tasks:push { identifier = "quick", interval = 0.5, typ = "preemption", callback = count }
        tasks:push { identifier = "nap", interval = 0.5, typ = "preemption", callback = function(self) count(self); ngx.sleep(0.1) end }
        tasks:push { identifier = "slow", interval = 0.5, typ = "preemption", callback = function(self)
            local w = require("ngx_tasks").keys(nil, self, require("ngx_tasks").now())
            d:add("slow:first", w)
            ngx.sleep(1.2)
        end }/;
$c
--- config eval
"location = /status { worker_events_status; }
location = /t { content_by_lua_block { $::Lib
    local cjson = require 'cjson.safe'
    local function tasks_now()
        local _, body = require('t.we').http_get('/status')
        local t = {}
        for _, x in ipairs(cjson.decode(body).tasks) do t[x.identifier] = x end
        return t
    end
    -- from the second window on (the first run may start late in its window)
    ngx.sleep(1.1)
    local t0 = tasks_now()
    ngx.sleep(2.6)
    local t = tasks_now()
    local w = window(0.5)
    for _, id in ipairs({ 'quick', 'nap' }) do
        ngx.say(id, ': runs>=4 ', t[id].runs - t0[id].runs >= 4, ', overlaps ', t[id].overlaps - t0[id].overlaps)
    end
    local windows = w - d:get('slow:first') + 1
    ngx.say('slow: overlaps>=2 ', t.slow.overlaps >= 2, ', runs + overlaps <= windows ',
            t.slow.runs + t.slow.overlaps <= windows,
            (t.slow.runs + t.slow.overlaps <= windows) and '' or (' ' .. t.slow.runs .. '+' .. t.slow.overlaps .. ' > ' .. windows))
} }"
--- timeout: 8
--- response_body
quick: runs>=4 true, overlaps 0
nap: runs>=4 true, overlaps 0
slow: overlaps>=2 true, runs + overlaps <= windows true
--- no_error_log
[error]



=== TEST 13: a task's claims are bounded whatever its interval: 1 ms tasks (preemption and normal) on 4 workers hold a few entries of the claims table
--- implicit_zone
--- http_config eval
my $c = $::Rules;
$c =~ s/-- EXTRA/tasks:push { identifier = "p", interval = 0.001, typ = "preemption", callback = function() d:incr("p", 1, 0) end }
        tasks:push { identifier = "n", interval = 0.001, typ = "normal", callback = function() d:incr("n", 1, 0) end }/;
$c
--- config eval
"location = /status { worker_events_status; }
location = /t { content_by_lua_block { $::Lib
    ngx.sleep(2)
    local _, body = require('t.we').http_get('/status')
    local s = require('cjson.safe').decode(body)
    ngx.say('ran: ', d:get('p') > 100, ' ', d:get('n') > 100)
    ngx.say('live claims at most 20: ', s.claims.live <= 20, s.claims.live <= 20 and '' or (' ' .. s.claims.live))
} }"
--- timeout: 6
--- response_body
ran: true true
live claims at most 20: true
--- no_error_log
[error]



=== TEST 14: no room in the claims table: each window skipped is counted per task (stats(), status JSON and Prometheus) and in claims.refused, logged at most once a second with a count
--- http_config
    worker_events_zone tiny 128k;
    init_worker_by_lua_block {
        local tasks = require "ngx_tasks"
        tasks.dict = "tiny"
        assert(tasks:start())
    }
--- config
location = /status { worker_events_status tiny; }
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local cjson = require "cjson.safe"
        -- fill the claims table: unique keys held 30 s, until 500 refusals in a row
        local bus = require("ngx_worker_events.bus").new { dispatch = function() end }
        assert(bus.open("tiny"))
        bus.set_options({ timeout = 30, interval = 0 })
        local i, refusals = 0, 0
        while refusals < 500 do
            i = i + 1
            if bus.post("test", "fill", nil, "fill-" .. i) then refusals = 0 else refusals = refusals + 1 end
        end
        local function status(fmt)
            local _, body = we.http_get("/status" .. (fmt or ""))
            return body
        end
        local r0 = cjson.decode(status()).claims.refused
        local tasks = require "ngx_tasks"
        tasks:push { identifier = "starved", interval = 0.02, typ = "normal",
                     callback = function() ngx.shared.out:incr("starved", 1, 0) end }
        ngx.sleep(1.5)
        tasks:remove("starved")
        ngx.sleep(0.05)
        local s = cjson.decode(status())
        local t
        for _, x in ipairs(s.tasks) do if x.identifier == "starved" then t = x end end
        local mine = tasks.stats().starved
        ngx.say("ran: ", ngx.shared.out:get("starved"))
        ngx.say("skipped > 20: ", t.skipped > 20, "; stats() the same: ", mine.skipped == t.skipped)
        ngx.say("claims.refused grew by the skipped windows: ", s.claims.refused - r0 == t.skipped,
                s.claims.refused - r0 == t.skipped and "" or (" " .. (s.claims.refused - r0) .. " vs " .. t.skipped))
        local prom = status("?format=prometheus")
        ngx.say("prometheus: ", prom:match('ngx_worker_events_task_skipped_total{zone="tiny",task="starved"} (%d+)') == tostring(t.skipped))
        local path = ngx.config.prefix() .. "/metrics.txt"
        local f = assert(io.open(path, "w"))
        f:write(prom)
        f:close()
        local p = io.popen("promtool check metrics < " .. path .. " 2>&1; echo rc=$?")
        local out = p:read("*a")
        p:close()
        ngx.say("promtool: ", out:match("rc=(%d+)"), (out:match("rc=0") and "" or (" " .. out)))
        -- the log: a line when the first window is skipped, then at most one a second
        local lines, counts = 0, {}
        for l in io.lines(ngx.config.prefix() .. "/logs/error.log") do
            local n = l:match("ngx_tasks: task 'starved': no room in the zone's claims table, (%d+) window%(s%) skipped since the last such line %(logged at most once a second per task%)")
            if n then lines = lines + 1; counts[#counts + 1] = tonumber(n) end
        end
        ngx.say("log lines (1.5 s): 1 or 2: ", lines == 1 or lines == 2, ", first counts 1: ", counts[1] == 1,
                ", then more: ", counts[2] == nil or counts[2] > 1)
    }
}
--- timeout: 8
--- response_body
ran: nil
skipped > 20: true; stats() the same: true
claims.refused grew by the skipped windows: true
prometheus: true
promtool: 0
log lines (1.5 s): 1 or 2: true, first counts 1: true, then more: true
