# resty.worker.manager and ngx_tasks used by both subsystems' Lua (see
# README "Stream subsystem"): the lifecycle is the worker's, tracked once;
# each subsystem runs its own callbacks with the same counts (worker start
# and exit in every worker, master start and exit once per generation).
# Task names are per subsystem: the same identifier in http and stream is
# two tasks, each window run once per node in each subsystem. 4 workers.
# Needs stream-lua-nginx-module (OpenResty), as t/710-stream-bus.t.
use lib 't/lib';
use Test::Nginx::Socket;
use WorkerEventsTest;

my $bin = $ENV{TEST_NGINX_BINARY} // '/usr/sbin/nginx';
my $v = `$bin -V 2>&1`;
if ($v !~ m{--add-module=\S*stream-lua-nginx-module}) {
    plan skip_all => "$bin has no stream-lua-nginx-module (the stream subsystem's Lua)";
} else {
    plan 'no_plan';
}

master_on();
workers(4);

# the same Lua in both subsystems: manager callbacks and a task record
# what they got in that subsystem's dict (t.stream)
our $Lua = <<'_EOC_';
    init_by_lua_block {
        local function rec(what, ...)
            local t = require "t.stream"
            local parts = { what }
            for i = 1, select("#", ...) do parts[#parts + 1] = tostring((select(i, ...))) end
            t.rec(ngx.config.subsystem .. ":mgr", table.concat(parts, " "))
        end
        require("resty.worker.manager").on_init_by_lua({ interval = 1 },
            function(_, p, m, n) rec("master-start", p, m, n) end,
            function(_, p, m, n) rec("master-exit", p, m, n) end)
        _G.rec = rec
        -- this subsystem's manager lines, sorted
        _G.summary = function()
            local d = ngx.shared[ngx.config.subsystem == "stream" and "sout" or "out"]
            local key = ngx.config.subsystem .. ":mgr"
            local lines = {}
            for i = 1, d:get(key .. "#n") or 0 do lines[#lines + 1] = d:get(key .. "#" .. i) end
            table.sort(lines)
            return table.concat(lines, "; ")
        end
        -- how many lines of this subsystem's manager start with `what`
        _G.count = function(what)
            local n = 0
            for l in (_G.summary() .. "; "):gmatch("(.-); ") do
                if l:sub(1, #what) == what then n = n + 1 end
            end
            return n
        end
        -- this subsystem's task runs, and windows run more than once
        _G.ticks = function()
            local d = ngx.shared[ngx.config.subsystem == "stream" and "sout" or "out"]
            local key = ngx.config.subsystem .. ":tick"
            local seen, dups, n = {}, 0, d:get(key .. "#n") or 0
            for i = 1, n do
                local w = d:get(key .. "#" .. i)
                if seen[w] then dups = dups + 1 end
                seen[w] = true
            end
            return n .. " " .. dups
        end
    }
    init_worker_by_lua_block {
        local t = require "t.stream"
        assert(require("resty.worker.manager").on_init_worker_by_lua(
            function(_, p, m, n)
                _G.rec("worker-start", p, m, n)
                t.set(ngx.config.subsystem .. ":mine:" .. ngx.worker.id(), m)
            end,
            function(_, p, m, n) _G.rec("worker-exit", p, m, n) end))
        local tasks = require "ngx_tasks"
        tasks:push { identifier = "tick", interval = 0.3, typ = "preemption",
                     callback = function()
                         t.rec(ngx.config.subsystem .. ":tick", math.floor(tasks.now() / 0.3))
                     end }
        assert(tasks:start())
        t.incr("ready")
    }
_EOC_

our $Stream = <<"_EOC_";
stream {
    lua_package_path "$WorkerEventsTest::Pwd/t/lib/?.lua;;";
    lua_shared_dict sout 8m;
$Lua
    server {
        listen 127.0.0.1:\$TEST_NGINX_RAND_PORT_1;
        content_by_lua_block { require("t.stream").serve() }
    }
}
_EOC_

our $Port = '$TEST_NGINX_RAND_PORT_1';

run_tests();

__DATA__

=== TEST 1: both subsystems get the master start once and a worker start in each worker, with the same counts per worker
--- main_config eval: $::Stream
--- http_config eval: $::Lua
--- config eval
"location = /t {
    content_by_lua_block {
        local t, port = require 't.stream', $::Port
        assert(t.wait_ready(port))
        ngx.say('http: ', _G.summary())
        ngx.say('stream: ', t.remote(port, [[return _G.summary()]]))
        local same = 0
        for w = 0, 3 do
            local h = t.get('http:mine:' .. w)
            local s = t.remote(port, 'return require(\"t.stream\").get(\"stream:mine:' .. w .. '\")')
            if h == s then same = same + 1 end
        end
        ngx.say('workers with the same count in both: ', same)
    }
}"
--- response_body
http: master-start nil 0 nil; worker-start nil 1 nil; worker-start nil 2 nil; worker-start nil 3 nil; worker-start nil 4 nil
stream: master-start nil 0 nil; worker-start nil 1 nil; worker-start nil 2 nil; worker-start nil 3 nil; worker-start nil 4 nil
workers with the same count in both: 4
--- no_error_log
[error]



=== TEST 2: the same task identifier in both subsystems is two tasks: each runs every window once per node, in each subsystem
--- main_config eval: $::Stream
--- http_config eval: $::Lua
--- config eval
"location = /t {
    content_by_lua_block {
        local t, port = require 't.stream', $::Port
        assert(t.wait_ready(port))
        local h, s
        for _ = 1, 200 do
            h, s = _G.ticks(), t.remote(port, [[return _G.ticks()]])
            if tonumber(h:match('^%d+')) >= 4 and tonumber(s:match('^%d+')) >= 4 then break end
            ngx.sleep(0.05)
        end
        local function show(x)
            local n, dups = x:match('^(%d+) (%d+)\$')
            return 'ran 4 windows or more: ' .. tostring(tonumber(n) >= 4) .. ', windows run twice: ' .. dups
        end
        ngx.say('http: ', show(h))
        ngx.say('stream: ', show(s))
    }
}"
--- response_body
http: ran 4 windows or more: true, windows run twice: 0
stream: ran 4 windows or more: true, windows run twice: 0
--- no_error_log
[error]



=== TEST 3: a HUP reload: each subsystem runs the old generation's worker exits (4) and master exit (1), and the new one's master start
--- main_config eval: $::Stream
--- http_config eval: $::Lua
--- config eval
"location = /t {
    content_by_lua_block {
        local t, port = require 't.stream', $::Port
        local function remote(code) return t.remote(port, code) end
        assert(t.wait_ready(port))
        t.set('ready', 0)
        remote([[return require('t.stream').set('ready', 0)]])
        require('t.we').reload()
        ngx.say('ready after HUP: ', t.wait_ready(port))
        local function counts(get)
            return get('master-start') .. ' master starts, ' .. get('worker-exit')
                   .. ' worker exits, ' .. get('master-exit') .. ' master exit'
        end
        local want = '2 master starts, 4 worker exits, 1 master exit'
        local h, s
        for _ = 1, 200 do
            h = counts(_G.count)
            s = counts(function(w) return remote('return _G.count(\"' .. w .. '\")') end)
            if h == want and s == want then break end
            ngx.sleep(0.05)
        end
        ngx.say('http: ', h)
        ngx.say('stream: ', s)
    }
}"
--- response_body
ready after HUP: true
http: 2 master starts, 4 worker exits, 1 master exit
stream: 2 master starts, 4 worker exits, 1 master exit
--- no_error_log
[error]



=== TEST 4: a worker SIGKILLed: its replacement runs its worker start in both subsystems; the crash is reported once
--- main_config eval: $::Stream
--- http_config eval: $::Lua
--- config eval
"location = /t {
    content_by_lua_block {
        local t, port = require 't.stream', $::Port
        local function remote(code) return t.remote(port, code) end
        assert(t.wait_ready(port))
        local victim = require('t.we').other_worker_pid()
        t.set('ready', 3)
        remote([[return require('t.stream').set('ready', 3)]])
        os.execute('kill -9 ' .. victim)
        ngx.say('respawned: ', t.wait_ready(port))
        ngx.say('http worker starts: ', _G.count('worker-start'))
        ngx.say('stream worker starts: ', remote([[return _G.count('worker-start')]]))
        ngx.sleep(1.5) -- a heartbeat tick or two: a second report would show
    }
}"
--- response_body
respawned: true
http worker starts: 5
stream worker starts: 5
--- grep_error_log eval: qr/resty.worker.manager: worker with id '[^']+' \(ngx.worker.id\(\) \d\) died without exiting/
--- grep_error_log_out eval: qr/\A[^\n]*died without exiting\n\z/
--- no_error_log
[crit]
[emerg]
