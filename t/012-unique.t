# unique: exactly one worker runs the event; later events with the same
# unique value are skipped everywhere until the claim times out.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use WorkerEventsTest;

# several workers (and a master: reloads, kills) as the real Test::Nginx needs them
master_on();
workers(2);

run_tests();

__DATA__

=== TEST 1: one worker of four runs it; skipped, then runs again after the timeout
--- workers: 4
--- log_level: debug
--- http_config
init_worker_by_lua_block {
    local we = require "t.we"
    local ev = require "resty.worker.events"
    ev.register(function(data, event)
        ngx.shared.out:incr("ran:" .. data, 1, 0)
    end, "test", "refresh")
    ev.register(function(data, event)
        we.record("marker ", data)
    end, "test", "marker")
    we.configure({ timeout = 0.3 })
}
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        local out = ngx.shared.out
        assert(we.wait_ready())
        assert(ev.post("test", "refresh", "first", "cache-key"))
        assert(ev.post("test", "refresh", "second", "cache-key")) -- within the timeout: nobody
        assert(ev.post("test", "refresh", "other", "another-key")) -- another value: one runs it
        assert(ev.post("test", "marker", 1))
        assert(we.wait_all(1))
        ngx.say("first ran ", out:get("ran:first"), " time(s)")
        ngx.say("second ran ", out:get("ran:second") or 0, " time(s)")
        ngx.say("other ran ", out:get("ran:other"), " time(s)")
        ngx.sleep(0.4) -- the claim has expired
        assert(ev.post("test", "refresh", "third", "cache-key"))
        assert(ev.post("test", "marker", 2))
        assert(we.wait_all(2))
        ngx.say("third ran ", out:get("ran:third"), " time(s)")
        -- a number works as unique value too
        assert(ev.post("test", "refresh", "numeric", 42))
        assert(ev.post("test", "marker", 3))
        assert(we.wait_all(3))
        ngx.say("numeric ran ", out:get("ran:numeric"), " time(s)")
    }
}
--- response_body
first ran 1 time(s)
second ran 0 time(s)
other ran 1 time(s)
third ran 1 time(s)
numeric ran 1 time(s)
--- error_log eval
qr/worker-events: skipping event \d+ was handled by worker \d+/



=== TEST 2: many unique values at once, each runs exactly once
--- workers: 3
--- http_config
init_worker_by_lua_block {
    local we = require "t.we"
    local ev = require "resty.worker.events"
    ev.register(function(data)
        ngx.shared.out:incr("ran:" .. data, 1, 0)
        ngx.shared.out:incr("total", 1, 0)
    end, "test", "job")
    ev.register(function() we.record("done") end, "test", "marker")
    we.configure({ timeout = 5 })
}
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        assert(we.wait_ready())
        for i = 1, 500 do
            assert(ev.post("test", "job", i, "job-" .. i))
        end
        assert(ev.post("test", "marker"))
        assert(we.wait_all(1))
        local bad = 0
        for i = 1, 500 do
            if ngx.shared.out:get("ran:" .. i) ~= 1 then bad = bad + 1 end
        end
        ngx.say("total runs: ", ngx.shared.out:get("total"), ", jobs not run exactly once: ", bad)
    }
}
--- response_body
total runs: 500, jobs not run exactly once: 0
