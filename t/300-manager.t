# resty.worker.manager: lifecycle callbacks with exact counts. 4 workers.
# Every callback appends "<kind> <id> <n_prev> <n_mine> <n_next>" to the
# `out` dict's list "log" (the dict survives reloads) and logs it at NOTICE
# (for what happens after the dict is gone, at stop).
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use WorkerEventsTest;

master_on();
workers(4);

our $HttpConfig = <<'_EOC_';
    init_by_lua_block {
        local function rec(kind)
            return function(id, p, m, n)
                local line = table.concat({ kind, tostring(id), tostring(p), tostring(m), tostring(n) }, " ")
                ngx.shared.out:rpush("log", line)
                ngx.log(ngx.NOTICE, "lifecycle: ", line)
            end
        end
        _G.rec = rec
        require("resty.worker.manager").on_init_by_lua({ interval = 0.2, failed = 0.3 },
            rec("master-start"), rec("master-exit"))
    }
    init_worker_by_lua_block {
        -- EXTRA
        assert(require("resty.worker.manager").on_init_worker_by_lua(
            _G.rec("worker-start"), _G.rec("worker-exit")))
    }
_EOC_

# a resty.events subscriber to the manager's events in every worker, recording
# "<event> <pid or label> ..." with t.we
our $Subscriber = <<'_EOC_';
        local ev = require("resty.events").new { listening = "unix:/x" }
        ev:subscribe("resty-worker-manager", "*", function(data, event)
            local stuck = tonumber(ngx.shared.out:get("stuck"))
            require("t.we").record(event, " ", data.pid == stuck and "stuck" or data.pid, " ", ngx.now())
        end)
        assert(ev:init_worker())
_EOC_

our $Lib = <<'_EOC_';
    -- the "log" lines so far, ids made readable: generation g, worker pids as "g-*"
    function _G.lines()
        local d, out = ngx.shared.out, {}
        for i = 0, (d:llen("log") or 0) - 1 do
            local v = d:lpop("log")
            d:rpush("log", v)
            out[#out + 1] = (v:gsub("(%d+)%-%d+", "%1-*"))
        end
        return out
    end
    function _G.wait_lines(n, timeout)
        local deadline = ngx.now() + (timeout or 5)
        while (ngx.shared.out:llen("log") or 0) < n and ngx.now() < deadline do
            ngx.sleep(0.02)
            ngx.update_time()
        end
        return (ngx.shared.out:llen("log") or 0) >= n
    end
_EOC_

run_tests();

__DATA__

=== TEST 1: fresh start: one master start (n_prev nil), four worker starts with n_mine 1..4
--- implicit_zone
--- http_config eval: $::HttpConfig
--- config eval
"location = /t { content_by_lua_block { $::Lib
    assert(_G.wait_lines(5))
    -- callbacks run after the count is taken: their lines may land in any
    -- order, the counts are exact
    local l = _G.lines()
    table.sort(l)
    ngx.say(table.concat(l, '\\n'))
    local m = require('resty.worker.manager')
    local gen = m.generation()
    ngx.say('generation: ', gen, ', workers: ', #m.workers())
} }"
--- response_body
master-start 1 nil 0 nil
worker-start 1-* nil 1 nil
worker-start 1-* nil 2 nil
worker-start 1-* nil 3 nil
worker-start 1-* nil 4 nil
generation: 1, workers: 4
--- no_error_log
[error]



=== TEST 2: reload while an old worker is busy: the new generation starts with n_prev > 0; the old workers exit (the busy one too: exiting, its request still served) with n_next set and n_mine 4..1; the last runs the master exit with the new count
--- implicit_zone
--- http_config eval: $::HttpConfig
--- config eval
"location = /t { content_by_lua_block { $::Lib
    local we = require 't.we'
    assert(_G.wait_lines(5))
    ngx.shared.out:delete('log')
    we.reload()
    -- this request keeps its (old) worker busy through the reload
    assert(_G.wait_lines(10, 5))
    local mine_start, mine_exit, last_next = {}, {}, nil
    for _, l in ipairs(_G.lines()) do
        local kind, id, p, m, n = l:match('^(%S+) (%S+) (%S+) (%S+) (%S+)\$')
        if kind == 'master-start' then
            ngx.say('master start: generation ', id, ', n_prev>0 ', tonumber(p) > 0, ', n_mine ', m, ', n_next ', n)
        elseif kind == 'worker-start' then
            mine_start[#mine_start + 1] = m
            assert(id:find('^2%-') and tonumber(p) > 0 and n == 'nil', l)
        elseif kind == 'worker-exit' then
            mine_exit[#mine_exit + 1] = m
            last_next = n
            assert(id:find('^1%-') and p == 'nil' and n ~= 'nil', l)
        elseif kind == 'master-exit' then
            ngx.say('master exit: generation ', id, ', n_prev ', p, ', n_mine ', m,
                    ', n_next>0 ', tonumber(n) > 0, ', as the last worker exit saw ', n == last_next)
        end
    end
    table.sort(mine_start)
    table.sort(mine_exit)
    ngx.say('new workers started with n_mine ', table.concat(mine_start, ' '))
    ngx.say('old workers exited with n_mine ', table.concat(mine_exit, ' '))
    local st
    for _, w in ipairs(require('resty.worker.manager').workers()) do
        if w.pid == ngx.worker.pid() then st = w.state end
    end
    ngx.say('this busy old worker: ', st)
} }"
--- response_body
master start: generation 2, n_prev>0 true, n_mine 0, n_next nil
master exit: generation 1, n_prev nil, n_mine 0, n_next>0 true, as the last worker exit saw true
new workers started with n_mine 1 2 3 4
old workers exited with n_mine 1 2 3 4
this busy old worker: exiting
--- no_error_log
[error]



=== TEST 3: kill -9: the replacement starts with n_mine 5 (the dead one still counted), every worker gets `crashed` with its pid within 1 s, then 4 again; a worker start after the old generation is gone has n_prev 0
--- implicit_zone
--- http_config eval
my $c = $::HttpConfig; $c =~ s/-- EXTRA/$::Subscriber/; $c
--- config eval
"location = /t { content_by_lua_block { $::Lib
    local we = require 't.we'
    assert(_G.wait_lines(5))
    ngx.shared.out:delete('log')
    local victim = we.other_worker_pid()
    ngx.update_time()
    local t0 = ngx.now()
    os.execute('kill -9 ' .. victim)
    assert(_G.wait_lines(1, 5))
    ngx.say(_G.lines()[1])
    assert(we.wait_all(1, 3))
    local fast = 0
    for w = 0, ngx.worker.count() - 1 do
        local ev, pid, at = we.take(w)[1]:match('^(%S+) (%d+) (%S+)\$')
        if ev == 'crashed' and tonumber(pid) == victim and tonumber(at) - t0 < 1 then fast = fast + 1 end
    end
    ngx.say('workers told of the crash within 1 s: ', fast)
    ngx.sleep(0.1)
    local m = require('resty.worker.manager')
    ngx.say('workers now: ', #m.workers())
    local pids = {}
    for _, w in ipairs(m.workers()) do pids[#pids + 1] = w.pid == victim and 'victim' or 'ok' end
    ngx.say(table.concat(pids, ' '))
} }"
--- no_error_log
[crit]
[emerg]
--- response_body
worker-start 1-* nil 5 nil
workers told of the crash within 1 s: 4
workers now: 4
ok ok ok ok
--- error_log eval
qr/ngx_worker_events: resty.worker.manager: worker with id '1-\d+' \(ngx.worker.id\(\) \d\) died without exiting/



=== TEST 4: after a reload, once the old generation is gone, a crash replacement's worker start has n_prev 0 (not nil)
--- implicit_zone
--- http_config eval: $::HttpConfig
--- config eval
"location = /hup { content_by_lua_block {
    local we = require 't.we'
    ngx.shared.out:delete('log')
    we.reload()
    ngx.say('ok')
} }
location = /t { content_by_lua_block { $::Lib
    local we = require 't.we'
    ngx.sleep(1)
    assert(_G.wait_lines(10))
    ngx.shared.out:delete('log')
    local victim = we.other_worker_pid()
    os.execute('kill -9 ' .. victim)
    assert(_G.wait_lines(1, 5))
    ngx.say(_G.lines()[1])
} }"
--- request eval
["GET /hup", "GET /t"]
--- response_body eval
["ok\n", "worker-start 2-* 0 5 nil\n"]
--- no_error_log
[crit]
[emerg]



=== TEST 5: a worker stuck in a busy loop is reported unresponsive after interval + failed, then recovered (the library's log lines, events to every worker)
--- implicit_zone
--- http_config eval
my $c = $::HttpConfig; $c =~ s/-- EXTRA/$::Subscriber/; $c
--- config eval
"location = /t { content_by_lua_block { $::Lib
    local we = require 't.we'
    assert(_G.wait_lines(5))
    ngx.sleep(0.3)
    ngx.shared.out:set('stuck', ngx.worker.pid())
    ngx.update_time()
    local until_t = ngx.now() + 1.2
    while ngx.now() < until_t do ngx.update_time() end -- no event loop for 1.2 s
    ngx.sleep(0.6)
    local m = require('resty.worker.manager')
    local st
    for _, w in ipairs(m.workers()) do if w.pid == ngx.worker.pid() then st = w.state end end
    ngx.say('my state now: ', st)
    local seen = {}
    for w = 0, ngx.worker.count() - 1 do
        if w ~= ngx.worker.id() then
            local l = {}
            for _, x in ipairs(we.take(w)) do l[#l + 1] = x:match('^(%S+ %S+)') end
            seen[#seen + 1] = table.concat(l, ',')
        end
    end
    ngx.say('others saw: ', seen[1])
    assert(seen[2] == seen[1] and seen[3] == seen[1], table.concat(seen, ' | '))
} }"
--- response_body
my state now: running
others saw: unresponsive stuck,recovered stuck
--- error_log eval
[
qr/\[error\] .*\[NODE_TRACKER 1-\d+\]  worker with id '1-\d+' failed its heartbeat, removing it/,
qr/\[error\] .*\[NODE_TRACKER 1-\d+\]  worker with id '1-\d+' recovered from previously missed heartbeat/,
]



=== TEST 6: stop (nginx -s quit): every worker exits with n_next nil, the last one (n_mine 1) runs the master exit
--- implicit_zone
--- http_config eval: $::HttpConfig
--- config eval
"location = /t { content_by_lua_block { $::Lib
    assert(_G.wait_lines(5))
    ngx.say('started')
} }"
--- response_body
started
--- shutdown_error_log eval
[
qr/lifecycle: worker-exit 1-\d+ nil 4 nil/,
qr/lifecycle: worker-exit 1-\d+ nil 3 nil/,
qr/lifecycle: worker-exit 1-\d+ nil 2 nil/,
qr/lifecycle: worker-exit 1-\d+ nil 1 nil/,
qr/lifecycle: master-exit 1 nil 0 nil/,
]



=== TEST 7: a callback that raises is logged with a traceback and blocks nothing: the other callbacks run, and the next generation starts
--- implicit_zone
--- http_config
    init_by_lua_block {
        local function rec(kind)
            return function(id, p, m, n)
                ngx.shared.out:rpush("log", table.concat({ kind, tostring(id), tostring(p), tostring(m), tostring(n) }, " "))
            end
        end
        require("resty.worker.manager").on_init_by_lua({ interval = 0.2 },
            function() error("master start boom") end, rec("master-exit"))
        _G.rec = rec
    }
    init_worker_by_lua_block {
        local rec = _G.rec
        assert(require("resty.worker.manager").on_init_worker_by_lua(function(...)
            rec("worker-start")(...)
            error("worker start boom")
        end))
    }
--- config eval
"location = /t { content_by_lua_block { $::Lib
    assert(_G.wait_lines(4))
    -- the errors checked below are the next generation's
    require('t.we').reload()
    assert(_G.wait_lines(9))
    local n = { ['worker-start 1'] = 0, ['worker-start 2'] = 0, ['master-exit 1'] = 0 }
    for _, l in ipairs(_G.lines()) do
        local k = l:match('^(%S+ %d+)')
        if n[k] then n[k] = n[k] + 1 end
    end
    ngx.say('generation 1 worker starts: ', n['worker-start 1'])
    ngx.say('generation 2 worker starts: ', n['worker-start 2'])
    ngx.say('generation 1 master exit: ', n['master-exit 1'])
} }"
--- response_body
generation 1 worker starts: 4
generation 2 worker starts: 4
generation 1 master exit: 1
--- error_log eval
[
qr/\[error\] .*ngx_worker_events: resty.worker.manager: master start callback failed: init_by_lua\(nginx.conf:\d+\):\d+: master start boom$/,
qr/\[error\] .*ngx_worker_events: resty.worker.manager: worker start callback failed: init_worker_by_lua\(nginx.conf:\d+\):\d+: worker start boom$/,
qr/^stack traceback:$/,
]



=== TEST 8: the last worker of an old generation dies instead of exiting: the worker that reports the crash runs that generation's master exit
--- implicit_zone
--- http_config eval: $::HttpConfig
--- config eval
"location = /t { content_by_lua_block { $::Lib
    local we = require 't.we'
    assert(_G.wait_lines(5))
    ngx.shared.out:delete('log')
    local victim = we.other_worker_pid()
    -- stopped, it cannot exit on the reload's QUIT
    os.execute('kill -STOP ' .. victim)
    we.reload()
    ngx.sleep(1)
    os.execute('kill -9 ' .. victim)
    -- master start, 4 worker starts, 3 worker exits, the master exit
    assert(_G.wait_lines(9, 1.5))
    ngx.sleep(0.3)
    local exits, me = {}, {}
    for _, l in ipairs(_G.lines()) do
        local kind, id, pr, m, n = l:match('^(%S+) (%S+) (%S+) (%S+) (%S+)\$')
        if kind == 'worker-exit' then exits[#exits + 1] = m end
        if kind == 'master-exit' then me[#me + 1] = l end
    end
    table.sort(exits)
    ngx.say('old workers that exited: n_mine ', table.concat(exits, ' '))
    ngx.say(table.concat(me, ' | '))
} }"
--- response_body
old workers that exited: n_mine 2 3 4
master-exit 1 nil 0 4
--- error_log eval
qr/resty.worker.manager: worker with id '1-\d+' \(ngx.worker.id\(\) \d\) died without exiting/
--- no_error_log
[crit]
[emerg]
