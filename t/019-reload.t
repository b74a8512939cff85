# Reload (HUP): the new workers start at the head of the log (no replay of
# old events); the old ones keep delivering until they exit.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use WorkerEventsTest;

# several workers (and a master: reloads, kills) as the real Test::Nginx needs them
master_on();
workers(2);

run_tests();

__DATA__

=== TEST 1: no replay for the new generation; the old one still hears the new
--- http_config
init_worker_by_lua_block {
    local we = require "t.we"
    local ev = require "resty.worker.events"
    ev.register(function(data, event, source, pid)
        we.record(source, "/", event, " ", source == "test" and data or "")
    end)
    we.configure()
}
--- config
location = /before {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        assert(we.wait_ready())
        for i = 1, 5 do assert(ev.post("test", "old", i)) end
        assert(we.wait_all(5))
        for id = 0, ngx.worker.count() - 1 do we.take(id) end
        we.reload()
        ngx.sleep(0.5)
        -- this (old) worker still delivers: it heard the new workers start
        local heard = 0
        for _, l in ipairs(we.take(ngx.worker.id())) do
            if l:find("resty-worker-events/started", 1, true) then heard = heard + 1 end
        end
        ngx.say("old worker heard the new generation start: ", heard >= 2)
    }
}
location = /after {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        ngx.sleep(0.2)
        assert(ev.post("test", "new", 1))
        assert(we.wait_all(1))
        ngx.sleep(0.1)
        -- the new workers saw only what came after they started
        for id = 0, ngx.worker.count() - 1 do
            local old = 0
            for _, l in ipairs(we.take(id)) do
                if l:find("test/old", 1, true) then old = old + 1 end
            end
            ngx.say("worker ", id, " replayed old events: ", old)
        end
    }
}
--- request eval
["GET /before", "GET /after"]
--- response_body eval
["old worker heard the new generation start: true\n",
 "worker 0 replayed old events: 0\nworker 1 replayed old events: 0\n"]
--- no_error_log
[error]
[alert]
