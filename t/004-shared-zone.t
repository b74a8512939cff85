# The zone is one piece of memory shared by every worker, and it survives
# a reload (same name and size).
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use WorkerEventsTest;

# several workers (and a master: reloads, kills) as the real Test::Nginx needs them
master_on();
workers(2);

run_tests();

__DATA__

=== TEST 1: an event posted by one worker reaches all 4, with its data
--- workers: 4
--- http_config
worker_events_zone ev 1m;
init_worker_by_lua_block {
    local we = require "t.we"
    local ev = require "resty.worker.events"
    ev.register(function(data, event, source, pid)
        we.record(source, "/", event, " ", data.text, " from the poster: ", pid == tonumber(data.pid))
    end, "test")
    we.configure()
}
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        assert(we.wait_ready())
        assert(ev.post("test", "written", { text = "hello", pid = ngx.worker.pid() }))
        assert(we.wait_all(1))
        we.say_common()
    }
}
--- response_body
all 4 workers:
test/written hello from the poster: true



=== TEST 2: every worker reads the same zone counters
--- workers: 4
--- http_config
worker_events_zone ev 1m;
init_worker_by_lua_block {
    local we = require "t.we"
    local ev = require "resty.worker.events"
    ev.register(function(data)
        local s = ev.stats()
        we.record("posted>=", s.posted >= data, " log_size=", s.log_size, " workers=", s.workers)
    end, "test")
    we.configure()
}
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        assert(we.wait_ready())
        for i = 1, 10 do assert(ev.post("x", "y", i)) end
        assert(ev.post("test", "count", ev.stats().posted))
        assert(we.wait_all(1))
        local out = we.take(0)[1]
        for id = 1, 3 do assert(we.take(id)[1] == out, "worker " .. id .. " differs") end
        ngx.say((out:gsub("log_size=%d+", "log_size=N")))
    }
}
--- response_body
posted>=true log_size=N workers=4



=== TEST 3: the zone is reused across a reload: its log goes on
--- http_config
worker_events_zone ev 1m;
init_worker_by_lua_block {
    require("t.we").configure()
}
--- config
location = /reload {
    content_by_lua_block {
        local ev = require "resty.worker.events"
        for i = 1, 50 do assert(ev.post("s", "e", i)) end
        ngx.shared.out:set("before", ev.stats().posted)
        require("t.we").reload()
        ngx.sleep(0.5)
        ngx.say("reloaded")
    }
}
location = /t {
    content_by_lua_block {
        local ev = require "resty.worker.events"
        local before = ngx.shared.out:get("before")
        ngx.say("kept: ", ev.stats().posted >= before, " ", before >= 50)
    }
}
--- request eval
["GET /reload", "GET /t"]
--- response_body eval
["reloaded\n", "kept: true true\n"]
