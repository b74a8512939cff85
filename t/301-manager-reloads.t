# resty.worker.manager across many reloads, with nginx -t and nginx -s,
# helper processes, options and query functions. 4 workers. Callbacks
# append "<kind> <id> <n_prev> <n_mine> <n_next>" to the out dict's list
# "g<generation>".
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use WorkerEventsTest;

master_on();
workers(4);

our $HttpConfig = <<'_EOC_';
    init_by_lua_block {
        local function rec(kind)
            return function(id, p, m, n)
                local gen = tostring(id):match("^(%d+)")
                ngx.shared.out:rpush("g" .. gen, table.concat({ kind, tostring(id), tostring(p), tostring(m), tostring(n) }, " "))
                io.stderr:write("lifecycle callback ran: ", kind, "\n")
            end
        end
        _G.rec = rec
        require("resty.worker.manager").on_init_by_lua({ interval = 0.5 },
            rec("master-start"), rec("master-exit"))
    }
    init_worker_by_lua_block {
        assert(require("resty.worker.manager").on_init_worker_by_lua(
            _G.rec("worker-start"), _G.rec("worker-exit")))
    }
_EOC_

# /check?g=N waits for generation N to have started and N-1 to have ended,
# then checks every count of both
our $Check = <<'_EOC_';
location = /hup {
    content_by_lua_block {
        require("t.we").reload()
        ngx.say("hup")
    }
}
location = /check {
    content_by_lua_block {
        local d = ngx.shared.out
        local g = tonumber(ngx.var.arg_g)
        local function lines(gen)
            local out = {}
            for i = 0, (d:llen("g" .. gen) or 0) - 1 do
                local v = d:lpop("g" .. gen); d:rpush("g" .. gen, v); out[#out + 1] = v
            end
            return out
        end
        local deadline = ngx.now() + 10
        -- generation g: master start + 4 worker starts; g-1: 4 exits + master exit
        while (#lines(g) < 5 or (g > 1 and #lines(g - 1) < 10)) and ngx.now() < deadline do
            ngx.sleep(0.02); ngx.update_time()
        end
        local bad = {}
        local function expect(cond, l) if not cond then bad[#bad + 1] = l end end
        local ms, starts = 0, {}
        for _, l in ipairs(lines(g)) do
            local kind, id, p, m, n = l:match("^(%S+) (%S+) (%S+) (%S+) (%S+)$")
            if kind == "master-start" then
                ms = ms + 1
                expect(id == tostring(g) and m == "0" and n == "nil"
                       and (g == 1 and p == "nil" or tonumber(p) and tonumber(p) <= 4), l)
            elseif kind == "worker-start" then
                starts[#starts + 1] = tonumber(m)
                expect(n == "nil", l)
            end
        end
        table.sort(starts)
        expect(ms == 1, "master starts: " .. ms)
        expect(table.concat(starts, ",") == "1,2,3,4", "worker starts: " .. table.concat(starts, ","))
        if g > 1 then
            local me, exits = 0, {}
            for _, l in ipairs(lines(g - 1)) do
                local kind, id, p, m, n = l:match("^(%S+) (%S+) (%S+) (%S+) (%S+)$")
                if kind == "worker-exit" then
                    exits[#exits + 1] = tonumber(m)
                    expect(n ~= "nil", l)
                elseif kind == "master-exit" then
                    me = me + 1
                    expect(id == tostring(g - 1) and m == "0" and n ~= "nil", l)
                end
            end
            table.sort(exits)
            expect(me == 1, "master exits: " .. me)
            expect(table.concat(exits, ",") == "1,2,3,4", "worker exits: " .. table.concat(exits, ","))
            d:delete("g" .. (g - 1))
        end
        ngx.say("generation ", g, ": ", #bad == 0 and "exact" or table.concat(bad, "; "))
    }
}
_EOC_

our @Reqs;
our @Bodies;
for my $g (2 .. 51) {
    push @Reqs, "GET /hup", "GET /check?g=$g";
    push @Bodies, "hup\n", "generation $g: exact\n";
}

run_tests();

__DATA__

=== TEST 1: 50 reloads in a row: each generation starts once (n_mine 1..4) and ends once (exits n_mine 4..1, then the master exit); the zone ends as it began
--- implicit_zone
--- http_config eval: $::HttpConfig
--- config eval
$::Check . q{
location = /end {
    content_by_lua_block {
        ngx.sleep(0.5)
        local m = require "resty.worker.manager"
        local gens = {}
        for _, w in ipairs(m.workers()) do gens[w.generation] = (gens[w.generation] or 0) + 1 end
        local g = m.generation()
        ngx.say("tracked workers: ", #m.workers(), ", all of generation ", g, ": ", gens[g] == 4)
        local ev = require("resty.events").new { listening = "unix:/x" }
        assert(ev:init_worker())
        ngx.say("slots in use: ", ev:stats().workers)
    }
}
}
--- request eval
[@::Reqs, "GET /end"]
--- response_body eval
[@::Bodies, "tracked workers: 4, all of generation 51: true\nslots in use: 4\n"]
--- timeout: 20
--- no_error_log
[error]
[crit]



=== TEST 2: nginx -t and nginx -s reload parse the configuration (init_by_lua runs) but run no callback; the reload they send starts one generation
--- implicit_zone
--- http_config eval: $::HttpConfig
--- config eval
$::Check . q{
location = /t {
    content_by_lua_block {
        local bin = assert(os.getenv("TEST_NGINX_BINARY"), "the nginx under test")
        local prefix = ngx.config.prefix()
        local cmd = bin .. " -p " .. prefix .. " -c conf/nginx.conf"
        local p = io.popen(cmd .. " -t 2>&1")
        local out = p:read("*a"); p:close()
        ngx.say("nginx -t ran a callback: ", out:find("lifecycle callback ran", 1, true) ~= nil)
        p = io.popen(cmd .. " -s reload 2>&1")
        out = p:read("*a"); p:close()
        ngx.say("nginx -s reload ran a callback: ", out:find("lifecycle callback ran", 1, true) ~= nil)
    }
}
}
--- main_config
env TEST_NGINX_BINARY;
--- request eval
["GET /check?g=1", "GET /t", "GET /check?g=2"]
--- response_body eval
["generation 1: exact\n",
 "nginx -t ran a callback: false\nnginx -s reload ran a callback: false\n",
 "generation 2: exact\n"]



=== TEST 3: helper processes (cache manager and loader) are not workers: not counted, no callbacks
--- implicit_zone
--- http_config eval
"proxy_cache_path $ENV{TEST_NGINX_SERVER_ROOT}/cache keys_zone=c:1m;\n" . $::HttpConfig
--- config eval
$::Check . q{
location = /t {
    content_by_lua_block {
        local p = io.popen("pgrep -P " .. require("t.we").master_pid() .. " | wc -l")
        local n = tonumber(p:read("*a")); p:close()
        ngx.say("child processes: ", n, ", tracked workers: ", #require("resty.worker.manager").workers())
    }
}
}
--- request eval
["GET /check?g=1", "GET /t"]
--- response_body eval
["generation 1: exact\n", "child processes: 6, tracked workers: 4\n"]



=== TEST 4: workers() and generation(): ids, pids, worker numbers, generation, start times, state
--- implicit_zone
--- http_config eval: $::HttpConfig
--- config eval
$::Check . q{
location = /t {
    content_by_lua_block {
        local m = require "resty.worker.manager"
        local g, started = m.generation()
        ngx.update_time()
        ngx.say("generation ", g, ", started ", math.abs(ngx.now() - started) < 10 and "just now" or started)
        local nums = {}
        for _, w in ipairs(m.workers()) do
            assert(w.id == w.generation .. "-" .. w.pid, w.id)
            assert(math.abs(w.started - started) < 5)
            nums[#nums + 1] = w.worker .. ":" .. w.state
        end
        table.sort(nums)
        ngx.say(table.concat(nums, " "))
    }
}
}
--- request eval
["GET /check?g=1", "GET /t"]
--- response_body eval
["generation 1: exact\n", "generation 1, started just now\n0:running 1:running 2:running 3:running\n"]



=== TEST 5: programming errors raise the library's messages; options are checked
--- implicit_zone
--- http_config
    init_by_lua_block {
        local m = require "resty.worker.manager"
        local r = {}
        local function try(...) local ok, err = pcall(...) r[#r + 1] = tostring(ok) .. " " .. tostring(err) end
        try(m.on_init_by_lua, "x")
        try(m.on_init_by_lua, { interval = 0 })
        try(m.on_init_by_lua, { interval = -1 })
        try(m.on_init_by_lua, { failed = "5" })
        try(m.on_init_by_lua, { shm = 5 })
        try(m.on_init_by_lua, {}, "not a function")
        try(m.on_init_worker_by_lua)
        try(m.on_init_by_lua, { shm = "nope" })
        try(m.on_init_by_lua, {})
        _G.r = r
    }
    init_worker_by_lua_block {
        local m = require "resty.worker.manager"
        local r = _G.r
        local ok, err = m.on_init_worker_by_lua()
        r[#r + 1] = "init_worker: " .. tostring(ok) .. " " .. tostring(err)
        ok, err = m.on_init_worker_by_lua()
        r[#r + 1] = "a failed start can be retried: " .. tostring(ok) .. " " .. tostring(err)
    }
--- config
location = /t {
    content_by_lua_block {
        local m = require "resty.worker.manager"
        ngx.say(table.concat(_G.r, "\n"))
        ngx.say("in a request: ", select(2, pcall(m.on_init_by_lua, {})))
        ngx.say("workers: ", tostring(m.workers()), " ", select(2, m.workers()))
    }
}
--- response_body
false opts must be a table, got: string
false "interval" must be a positive number, got: 0
false "interval" must be a positive number, got: -1
false "failed" must be a positive number, got: 5
false unknown shm `5'
false master_start_cb must be a function, got: string
false This must be called in the `init_worker_by_lua` phase
true true
false Already initialized, only call once
init_worker: nil Error starting worker: shm "nope" not found
a failed start can be retried: nil Error starting worker: shm "nope" not found
in a request: This must be called in the `init_by_lua` phase
workers: nil not started in this worker
--- error_log
ngx_worker_events: resty.worker.manager: error starting worker: shm "nope" not found



=== TEST 6: on_init_worker_by_lua() twice raises; the first start stands
--- implicit_zone
--- http_config
    init_by_lua_block {
        require("resty.worker.manager").on_init_by_lua()
    }
    init_worker_by_lua_block {
        local m = require "resty.worker.manager"
        assert(m.on_init_worker_by_lua())
        _G.again = select(2, pcall(m.on_init_worker_by_lua))
    }
--- config
location = /t {
    content_by_lua_block {
        ngx.say(_G.again)
        local m = require "resty.worker.manager"
        for _ = 1, 100 do
            if #m.workers() == 4 then break end
            ngx.sleep(0.02)
        end
        ngx.say("tracked: ", #m.workers())
    }
}
--- response_body
This function can only be called once
tracked: 4
--- no_error_log
[error]



=== TEST 7: stopping while a worker is dead: the exits reap it first, so the last live worker still runs the master exit
--- implicit_zone
--- http_config
    init_by_lua_block {
        local function rec(kind)
            return function(id, p, m, n)
                ngx.log(ngx.NOTICE, "lifecycle: ", kind, " ", id, " ", tostring(p), " ", m, " ", tostring(n))
            end
        end
        _G.rec = rec
        -- a long interval: only an exit reaps the dead worker
        require("resty.worker.manager").on_init_by_lua({ interval = 60 }, nil, rec("master-exit"))
    }
    init_worker_by_lua_block {
        assert(require("resty.worker.manager").on_init_worker_by_lua(nil, _G.rec("worker-exit")))
    }
--- config
location = /t {
    content_by_lua_block {
        ngx.sleep(0.2)
        -- SIGSTOP the master so nothing respawns, SIGKILL a worker, SIGCONT
        local we = require "t.we"
        local master = we.master_pid()
        local victim = we.other_worker_pid()
        os.execute("kill -STOP " .. master .. "; kill -9 " .. victim .. "; sleep 0.2; kill -QUIT " .. master .. "; kill -CONT " .. master)
        ngx.say("stopping")
    }
}
--- response_body
stopping
--- no_error_log
[crit]
[emerg]
--- wait: 1
--- error_log eval
[
qr/lifecycle: master-exit 1 nil 0 nil/,
qr/resty.worker.manager: worker with id '1-\d+' \(ngx.worker.id\(\) \d\) died without exiting/,
qr/lifecycle: worker-exit 1-\d+ nil 1 nil/,
]



=== TEST 8: a reload whose new workers start slowly (0.3 s of CPU in init_worker, more than nginx's 100 ms before it signals the old ones): the old generation's exits still see a next generation (n_next a number, not nil as at a stop)
--- implicit_zone
--- http_config
    init_by_lua_block {
        local function rec(kind)
            return function(id, p, m, n)
                ngx.shared.out:rpush("log", table.concat({ kind, tostring(id), tostring(p), tostring(m), tostring(n) }, " "))
            end
        end
        _G.rec = rec
        require("resty.worker.manager").on_init_by_lua({ interval = 1, failed = 5 },
            rec("master-start"), rec("master-exit"))
    }
    init_worker_by_lua_block {
        local t = os.clock() + 0.3
        while os.clock() < t do end
        assert(require("resty.worker.manager").on_init_worker_by_lua(
            _G.rec("worker-start"), _G.rec("worker-exit")))
    }
--- config
location = /t { content_by_lua_block {
    local d = ngx.shared.out
    ngx.sleep(1.5)
    d:delete("log")
    require("t.we").reload()
    ngx.sleep(3)
    local exits = {}
    for i = 0, (d:llen("log") or 0) - 1 do
        local l = d:lpop("log")
        if l:match("exit") then exits[#exits + 1] = (l:gsub("^(%S+) (%d+)%-%d+", "%1 %2-*"):gsub(" %d+$", " N")) end
    end
    table.sort(exits)
    ngx.say(table.concat(exits, "\n"))
} }
--- timeout: 10
--- response_body
master-exit 1 nil 0 N
worker-exit 1-* nil 1 N
worker-exit 1-* nil 2 N
worker-exit 1-* nil 3 N
worker-exit 1-* nil 4 N
