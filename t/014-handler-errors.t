# A failing handler never stops delivery: each call is protected and the
# failure is logged (with a traceback, without the payload).
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use WorkerEventsTest;

# several workers (and a master: reloads, kills) as the real Test::Nginx needs them
master_on();
workers(2);

run_tests();

__DATA__

=== TEST 1: errors are logged with a traceback and the next handlers still run
--- http_config
init_worker_by_lua_block {
    local we = require "t.we"
    local ev = require "resty.worker.events"
    ev.register(function(data, event) we.record("first ", event) end, "test")
    ev.register(function(data, event)
        if event == "bad" then error("handler exploded") end
        we.record("second ", event)
    end, "test")
    ev.register(function(data, event) we.record("third ", event) end, "test")
    ev.register(function() local x = nil; return x.field end, "test", "bad")
    we.configure()
}
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        assert(we.wait_ready())
        assert(ev.post("test", "bad", { secret = "do-not-log-me" }))
        assert(ev.post("test", "good"))
        assert(we.wait_all(5))
        we.say_common()
    }
}
--- response_body
all 2 workers:
first bad
third bad
first good
second good
third good
--- error_log eval
[
qr/\[error\] .*worker-events: event callback failed; source=test, event=bad, pid=\d+ error='init_worker_by_lua\(nginx.conf:\d+\):\d+: handler exploded$/,
"stack traceback:",
qr/worker-events: event callback failed; source=test, event=bad, pid=\d+ error='init_worker_by_lua\(nginx.conf:\d+\):\d+: attempt to index local 'x' \(a nil value\)/,
]
--- no_error_log
do-not-log-me
[alert]
[crit]



=== TEST 2: errors in local event handlers are logged with pid=nil
--- http_config
init_worker_by_lua_block {
    local ev = require "resty.worker.events"
    ev.register(function() error({ "a table error" }) end, "test")
    require("t.we").configure({ interval = 0 })
}
--- config
location = /t {
    content_by_lua_block {
        local ev = require "resty.worker.events"
        assert(ev.post_local("test", "oops"))
        ngx.say(ev.poll())
    }
}
--- response_body
done
--- error_log eval
qr/worker-events: event callback failed; source=test, event=oops, pid=nil error='table: 0x[0-9a-f]+'/



=== TEST 3: a handler that yields (ngx.sleep) works in the background loop
--- http_config
init_worker_by_lua_block {
    local we = require "t.we"
    local ev = require "resty.worker.events"
    ev.register(function(data, event)
        ngx.sleep(0.01)
        we.record("slept ", data)
    end, "test")
    we.configure()
}
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        assert(we.wait_ready())
        for i = 1, 3 do assert(ev.post("test", "nap", i)) end
        assert(we.wait_all(3))
        we.say_common()
    }
}
--- response_body
all 2 workers:
slept 1
slept 2
slept 3
