# Defects the soak found once resty.events joined it (each block was red
# before its fix): unique events with two APIs in one worker, a reader's
# shorter claim ttl, a late reader, and dispatch loops that let the worker
# serve requests between batches even when handlers update the time.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use WorkerEventsTest;

master_on();
workers(2);

our $Both = <<'_EOC_';
    init_worker_by_lua_block {
        local we = require "resty.worker.events"
        we.register(function() ngx.shared.out:incr("we_runs", 1, 0) end, "u")
        assert(we.configure { shm = "ev" })
        local re = require("resty.events").new { listening = "unix:/x", shm = "ev" }
        re:subscribe("u", "*", function() ngx.shared.out:incr("re_runs", 1, 0) end)
        assert(re:init_worker())
        _G.re = re
    }
_EOC_

run_tests();

__DATA__

=== TEST 1: a unique key published through resty.events runs once in its callbacks and once in resty.worker.events' handlers (once per API)
--- http_config eval: $::Both
--- config
location = /t {
    content_by_lua_block {
        ngx.sleep(0.2)
        for i = 1, 100 do assert(_G.re:publish("key-" .. ngx.now() .. "-" .. i, "u", "e", i)) end
        ngx.sleep(0.5)
        ngx.say("resty.events callbacks: ", ngx.shared.out:get("re_runs"))
        ngx.say("resty.worker.events handlers: ", ngx.shared.out:get("we_runs"))
    }
}
--- response_body
resty.events callbacks: 100
resty.worker.events handlers: 100
--- no_error_log
[error]



=== TEST 2: the reverse: a unique post through resty.worker.events runs in its handlers when a resty.events instance that has no use for it reads the zone too
--- http_config
    init_worker_by_lua_block {
        local we = require "resty.worker.events"
        we.register(function() ngx.shared.out:incr("we_runs", 1, 0) end, "u")
        assert(we.configure { shm = "ev" })
        local re = require("resty.events").new { listening = "unix:/x", shm = "ev" }
        re:subscribe("other", "*", function() end)
        assert(re:init_worker())
    }
--- config
location = /t {
    content_by_lua_block {
        ngx.sleep(0.2)
        local we = require "resty.worker.events"
        for i = 1, 100 do assert(we.post("u", "e", i, "wkey-" .. ngx.now() .. "-" .. i)) end
        ngx.sleep(0.5)
        ngx.say("resty.worker.events handlers: ", ngx.shared.out:get("we_runs"))
    }
}
--- response_body
resty.worker.events handlers: 100
--- no_error_log
[error]



=== TEST 3: a reader's shorter claim ttl (resty.worker.events' timeout, 2 s) does not cut the publisher's unique_timeout (5 s) short
--- http_config eval: $::Both
--- config
location = /t {
    content_by_lua_block {
        ngx.sleep(0.2)
        assert(_G.re:publish("k", "u", "e", 1))
        ngx.sleep(2.5)
        assert(_G.re:publish("k", "u", "e", 2))
        ngx.sleep(0.3)
        ngx.say("resty.events runs: ", ngx.shared.out:get("re_runs"))
    }
}
--- timeout: 5
--- response_body
resty.events runs: 1
--- no_error_log
[error]



=== TEST 4: a worker that reads a unique event after its claim expired (it was stopped) does not run it again
--- http_config
    init_worker_by_lua_block {
        local re = require("resty.events").new { listening = "unix:/x", shm = "ev", unique_timeout = 1 }
        re:subscribe("u", "*", function() ngx.shared.out:incr("runs", 1, 0) end)
        assert(re:init_worker())
        _G.re = re
    }
--- config
location = /t {
    content_by_lua_block {
        ngx.sleep(0.2)
        local we = require "t.we"
        local other = we.other_worker_pid()
        os.execute("kill -STOP " .. other)
        assert(_G.re:publish("late-key", "u", "e", 1))
        ngx.sleep(2)
        os.execute("kill -CONT " .. other)
        ngx.sleep(0.5)
        ngx.say("runs: ", ngx.shared.out:get("runs"))
    }
}
--- timeout: 5
--- response_body
runs: 1
--- no_error_log
[error]



=== TEST 5: handlers that call ngx.update_time(): the worker still serves requests between two batches (two consumers draining 20 000 events)
--- workers: 1
--- http_config
    init_worker_by_lua_block {
        local function h()
            ngx.update_time()
            local t = ngx.now() + 0.00005
            while ngx.now() < t do ngx.update_time() end
            ngx.shared.out:incr("handled", 1, 0)
        end
        local we = require "resty.worker.events"
        we.register(h, "s")
        assert(we.configure { shm = "ev" })
        local re = require("resty.events").new { listening = "unix:/x", shm = "ev" }
        re:subscribe("s", "*", h)
        assert(re:init_worker())
    }
--- config
location = /ping {
    content_by_lua_block {
        ngx.say("handled so far: ", (ngx.shared.out:get("handled") or 0) < 40000 and "part" or "all")
    }
}
location = /t {
    content_by_lua_block {
        local we = require "resty.worker.events"
        for i = 1, 20000 do assert(we.post("s", "e", i)) end
        ngx.say("posted")
    }
}
--- request eval
["GET /t", "GET /ping"]
--- response_body eval
["posted\n", "handled so far: part\n"]
--- no_error_log
[error]
