# poll(): "done", "recursive" from inside a handler, cheap when idle, and the
# library's debug lines.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use WorkerEventsTest;

# several workers (and a master: reloads, kills) as the real Test::Nginx needs them
master_on();
workers(2);

run_tests();

__DATA__

=== TEST 1: done, and recursive when called from a handler
--- http_config
init_worker_by_lua_block {
    local ev = require "resty.worker.events"
    ev.register(function()
        ngx.shared.out:set("inner", ev.poll())
    end, "test")
    require("t.we").configure({ interval = 0 })
}
--- config
location = /t {
    content_by_lua_block {
        local ev = require "resty.worker.events"
        ngx.say(ev.poll())
        ngx.say(ev.poll())
        assert(ev.post("test", "x"))
        ngx.say(ev.poll())
        ngx.say("inside a handler: ", ngx.shared.out:get("inner"))
        local n = 0
        for i = 1, 100000 do if ev.poll() == "done" then n = n + 1 end end
        ngx.say("idle polls: ", n)
    }
}
--- response_body
done
done
done
inside a handler: recursive
idle polls: 100000



=== TEST 2: the library's debug lines
--- log_level: debug
--- http_config
init_worker_by_lua_block {
    local ev = require "resty.worker.events"
    ev.register(function() end, "test")
    require("t.we").configure({ interval = 0 })
}
--- config
location = /t {
    content_by_lua_block {
        local ev = require "resty.worker.events"
        assert(ev.post("test", "debugged", "secret-payload", "u1"))
        assert(ev.post("test", "debugged", "secret-payload", "u1"))
        ngx.say(ev.poll())
    }
}
--- response_body
done
--- error_log eval
[
qr/\[debug\] .*worker-events: handling event; source=test, event=debugged, pid=\d+/,
qr/\[debug\] .*worker-events: skipping event \d+ was handled by worker \d+/,
]
--- no_error_log
secret-payload
[error]



=== TEST 3: poll() in a hot request path stays JIT-compiled (no abort, no stitch)
--- http_config
init_worker_by_lua_block {
    require("t.we").configure({ interval = 0 })
}
--- config
location = /t {
    content_by_lua_block {
        local ev = require "resty.worker.events"
        local jutil = require "jit.util"
        -- every worker posts "started" in configure: let them all land and
        -- drain them first, so the measured loop only sees an idle bus
        assert(require("t.we").wait_ready(), "workers not ready")
        ngx.sleep(0.05)
        for _ = 1, 3 do assert(ev.poll() == "done") end
        local aborts, stitched, loops = 0, 0, 0
        jit.attach(function(what, tr)
            if what == "abort" then
                aborts = aborts + 1
            elseif what == "stop" then
                local info = jutil.traceinfo(tr)
                if info and info.linktype == "stitch" then stitched = stitched + 1 end
                if info and info.linktype == "loop" then loops = loops + 1 end
            end
        end, "trace")
        local n = 0
        for i = 1, 200000 do
            if ev.poll() == "done" then n = n + 1 end
        end
        jit.attach(function() end)
        ngx.say(n, " polls, trace aborts: ", aborts, ", stitched traces: ", stitched,
                ", compiled loop: ", loops > 0)
    }
}
--- response_body
200000 polls, trace aborts: 0, stitched traces: 0, compiled loop: true
