# Both APIs on one bus (Kong 3 with an older plugin): resty.worker.events and
# resty.events in the same workers and zone. An event posted through one is
# handled by the other's handlers too, each with its own 4th argument (pid vs
# wid); resty.worker.events keeps its own events (started, stopping, lost);
# local events stay in their API. Then HUP reloads and a killed worker:
# events keep flowing and nothing complains about a missing broker. 4 workers.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use WorkerEventsTest;

master_on();
workers(4);

our $HttpConfig = <<'_EOC_';
    lua_shared_dict process_events 1m;
    init_by_lua_block {
        _G.events = require("resty.events").new { listening = "unix:$TEST_NGINX_HTML_DIR/ev.sock" }
    }
    init_worker_by_lua_block {
        local we = require "t.we"
        local wev = require "resty.worker.events"
        wev.register(function(data, event, source, pid)
            we.record("wev ", source, "/", event, " ", we.show(data), " pid=", pid == ngx.worker.pid() and "me" or type(pid))
        end)
        assert(wev.configure { shm = "process_events" })
        local ev = _G.events
        ev:subscribe("*", "*", function(data, event, source, wid)
            we.record("ev ", source, "/", event, " ", we.show(data), " wid=", wid == ngx.worker.id() and "me" or type(wid))
        end)
        assert(ev:init_worker())
        ngx.shared.out:incr("ready", 1, 0)
    }
    server {
        listen unix:$TEST_NGINX_HTML_DIR/ev.sock;
        location / {
            content_by_lua_block { _G.events:run() }
        }
    }
_EOC_

run_tests();

__DATA__

=== TEST 1: each API's broadcasts reach the other's handlers, with pid for one and wid for the other; locals stay in their API
--- implicit_zone
--- http_config eval: $::HttpConfig
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local wev = require "resty.worker.events"
        assert(we.wait_ready())
        ngx.sleep(0.2) -- every worker's "started"
        for w = 0, ngx.worker.count() - 1 do we.take(w) end
        assert(wev.post("a", "from-wev", 1))
        assert(_G.events:publish("all", "b", "from-ev", 2))
        assert(wev.post_local("a", "wev-local", 3))
        assert(_G.events:publish("current", "b", "ev-local", 4))
        assert(we.wait_others(4))
        ngx.sleep(0.1)
        local mine = we.take(ngx.worker.id())
        table.sort(mine)
        ngx.say("publisher:\n", table.concat(mine, "\n"))
        local want
        for w = 0, ngx.worker.count() - 1 do
            if w ~= ngx.worker.id() then
                local l = we.take(w)
                table.sort(l)
                l = table.concat(l, "\n")
                if want == nil then want = l; ngx.say("others:\n", l) end
                assert(l == want, l)
            end
        end
    }
}
--- response_body
publisher:
ev a/from-wev 1 wid=me
ev b/ev-local 4 wid=nil
ev b/from-ev 2 wid=me
wev a/from-wev 1 pid=me
wev a/wev-local 3 pid=nil
wev b/from-ev 2 pid=me
others:
ev a/from-wev 1 wid=number
ev b/from-ev 2 wid=number
wev a/from-wev 1 pid=number
wev b/from-ev 2 pid=number
--- no_error_log
[error]
[warn]



=== TEST 2: resty.worker.events' own events (started, stopping) are not handed to resty.events callbacks
--- implicit_zone
--- http_config eval: $::HttpConfig
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        assert(we.wait_ready())
        ngx.sleep(0.2)
        local wev_started, ev_own = 0, 0
        for w = 0, ngx.worker.count() - 1 do
            for _, l in ipairs(we.take(w)) do
                if l:find("^wev resty%-worker%-events/started") then wev_started = wev_started + 1 end
                if l:find("^ev resty%-worker%-events/") then ev_own = ev_own + 1 end
            end
        end
        -- each worker's started reaches the workers that were already listening
        ngx.say("worker.events handlers saw started: ", wev_started >= 4)
        ngx.say("resty.events callbacks saw worker.events' own events: ", ev_own)
    }
}
--- response_body
worker.events handlers saw started: true
resty.events callbacks saw worker.events' own events: 0
--- no_error_log
[error]



=== TEST 3: a HUP reload, then a SIGKILLed worker: both APIs keep delivering to every worker, no broker or connect errors
--- implicit_zone
--- http_config eval: $::HttpConfig
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        assert(we.wait_ready())
        local function round(tag)
            for w = 0, ngx.worker.count() - 1 do we.take(w) end
            assert(_G.events:publish("all", "r", tag))
            assert(we.wait_all(2, 5), tag .. ": not every worker got it")
            local ok = 0
            for w = 0, ngx.worker.count() - 1 do
                local got = table.concat(we.take(w), ",")
                if got:find("ev r/" .. tag, 1, true) and got:find("wev r/" .. tag, 1, true) then ok = ok + 1 end
            end
            return ok
        end
        ngx.say("before: ", round("before"), " workers")
        ngx.shared.out:set("ready", 0)
        we.reload()
        ngx.sleep(1)
        assert(we.wait_ready(5))
        ngx.say("after HUP (from an old worker): ", round("after-hup"), " workers")
    }
}
--- response_body
before: 4 workers
after HUP (from an old worker): 4 workers
--- no_error_log
[error]
connect() to unix
broker



=== TEST 4: another worker SIGKILLed and respawned: the bus keeps delivering through both APIs
--- implicit_zone
--- http_config eval: $::HttpConfig
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        assert(we.wait_ready())
        local victim = we.other_worker_pid()
        ngx.shared.out:set("ready", 3)
        os.execute("kill -9 " .. victim)
        assert(we.wait_ready(5), "the respawned worker did not come up")
        ngx.sleep(0.1)
        for w = 0, ngx.worker.count() - 1 do we.take(w) end
        assert(_G.events:publish("all", "k", "after-kill"))
        assert(require("resty.worker.events").post("k", "after-kill-wev"))
        ngx.say("every worker got both APIs' events: ", we.wait_all(4, 5))
    }
}
--- response_body
every worker got both APIs' events: true
--- no_error_log
connect() to unix
broker
[crit]
[emerg]



=== TEST 5: a unique event runs once per API (each API's handlers in exactly one worker); a repeat within unique_timeout runs nowhere; the lifecycle manager's consumer takes no part
--- implicit_zone
--- http_config eval
my $c = $::HttpConfig;
$c =~ s/(_G\.events = require)/require("resty.worker.manager").on_init_by_lua({ interval = 0.2 })\n        $1/;
$c =~ s/(assert\(ev:init_worker\(\)\))/$1\n        assert(require("resty.worker.manager").on_init_worker_by_lua())/;
$c
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local wev = require "resty.worker.events"
        assert(we.wait_ready())
        ngx.sleep(0.2)
        for w = 0, ngx.worker.count() - 1 do we.take(w) end
        assert(_G.events:publish("key-a", "u", "via-ev", 1))
        assert(_G.events:publish("key-a", "u", "via-ev-again", 2)) -- dropped: the key is live
        assert(wev.post("u", "via-wev", 3, "key-b"))
        ngx.sleep(0.3)
        -- per unique event: the workers that ran it, and what ran there
        local by = {}
        for w = 0, ngx.worker.count() - 1 do
            for _, l in ipairs(we.take(w)) do
                local api, ev = l:match("^(%S+) u/(%S+)")
                by[ev] = by[ev] or {}
                by[ev][w] = by[ev][w] or {}
                table.insert(by[ev][w], api)
            end
        end
        for _, ev in ipairs({ "via-ev", "via-ev-again", "via-wev" }) do
            local runs = { ev = 0, wev = 0 }
            for _, apis in pairs(by[ev] or {}) do
                for _, api in ipairs(apis) do runs[api] = runs[api] + 1 end
            end
            ngx.say(ev, ": resty.events ran it ", runs.ev, " time(s), resty.worker.events ", runs.wev)
        end
    }
}
--- response_body
via-ev: resty.events ran it 1 time(s), resty.worker.events 1
via-ev-again: resty.events ran it 0 time(s), resty.worker.events 0
via-wev: resty.events ran it 1 time(s), resty.worker.events 1
--- no_error_log
[error]
