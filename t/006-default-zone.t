# Zero-config drop-in: an nginx.conf written for lua-resty-worker-events
# (lua_shared_dict + configure{shm = ...}, no worker_events_zone) works with
# load_module as the only change. Events go to the module's implicit zone;
# the dict stays an ordinary dict.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use WorkerEventsTest;

# several workers (and a master: reloads, kills) as the real Test::Nginx needs them
master_on();
workers(2);

our $HttpConfig = <<'_EOC_';
    lua_shared_dict process_events 1m;
    init_worker_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        ev.register(function(data, event, source, pid)
            we.record(event, " ", data)
        end, "test")
        we.configure({ shm = "process_events" })
    }
_EOC_

run_tests();

__DATA__

=== TEST 1: an unchanged Lua-library nginx.conf: 4 workers get every event, one NOTICE per worker
--- workers: 4
--- implicit_zone
--- http_config eval: $::HttpConfig
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        assert(we.wait_ready())
        ngx.say("zone: ", ev.stats().zone)
        for i = 1, 3 do assert(ev.post("test", "n", i)) end
        assert(we.wait_all(3))
        we.say_each_equal({ "n 1", "n 2", "n 3" }, "got all")
    }
}
--- response_body
zone: worker_events
worker 0 got all: true
worker 1 got all: true
worker 2 got all: true
worker 3 got all: true
--- grep_error_log eval
qr/\[notice\] .*ngx_worker_events: shm "process_events" is a lua_shared_dict: events go to worker_events_zone "worker_events"/
--- grep_error_log_out eval
qr/\A(?:[^\n]*ngx_worker_events: shm "process_events"[^\n]*\n){4}\z/
--- no_error_log
[error]
[warn]



=== TEST 2: flush_all() on the dict does not disturb delivery; the dict stays a dict
--- workers: 2
--- implicit_zone
--- http_config eval: $::HttpConfig
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        assert(we.wait_ready())
        local dict = ngx.shared.process_events
        assert(dict:set("mine", "kept"))
        assert(ev.post("test", "before", 1))
        assert(we.wait_all(1))
        dict:flush_all()
        ngx.say("after flush_all: ", tostring(dict:get("mine")))
        assert(ev.post("test", "after", 2))
        assert(we.wait_all(2))
        we.say_each_equal({ "before 1", "after 2" }, "got both")
        assert(dict:set("k", "v"))
        ngx.say("dict works: ", dict:get("k"))
    }
}
--- response_body
after flush_all: nil
worker 0 got both: true
worker 1 got both: true
dict works: v
--- no_error_log
[error]



=== TEST 3: at debug level, every "worker-events: " line is one the Lua library prints
--- workers: 2
--- log_level: debug
--- implicit_zone
--- http_config eval: $::HttpConfig
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        assert(we.wait_ready())
        assert(ev.post("test", "n", 1))
        assert(we.wait_all(1))
        ngx.say("ok")
    }
}
--- response_body
ok
--- grep_error_log eval
qr/worker-events: (?!handling event; source=)[^\n]*/
--- grep_error_log_out
--- error_log eval
[
    qr/\[debug\] .*worker-events: handling event; source=test, event=n, pid=\d+/,
    qr/\[debug\] .*ngx_worker_events: worker \d+ attached/,
]



=== TEST 4: a declared worker_events_zone replaces the implicit one
--- implicit_zone
--- http_config
lua_shared_dict process_events 1m;
worker_events_zone mine 1m;
--- config
location = /t {
    content_by_lua_block {
        local ev = require "resty.worker.events"
        assert(ev.configure({ shm = "process_events" }))
        ngx.say("zone: ", ev.stats().zone)
        ngx.say(ev.configure({ shm = "worker_events" }))
    }
}
--- response_body
zone: mine
nilAlready started, cannot change shm



=== TEST 5: the implicit zone avoids a name another module took
--- implicit_zone
--- http_config
lua_shared_dict worker_events 1m;
--- config
location = /t {
    content_by_lua_block {
        local ev = require "resty.worker.events"
        assert(ev.configure({ shm = "worker_events" }))
        ngx.say("zone: ", ev.stats().zone)
    }
}
--- response_body
zone: worker_events_1



=== TEST 6: shm naming nothing at all still fails as the library does
--- implicit_zone
--- config
location = /t {
    content_by_lua_block {
        local ev = require "resty.worker.events"
        ngx.say(ev.configure({ shm = "nothing" }))
    }
}
--- response_body
nilshm "nothing" not found
