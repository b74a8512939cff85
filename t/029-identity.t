# What a caller can read of each API is what the replaced library version
# reports: _VERSION, the own-events list, the defaults it fills in.
# lua-resty-healthcheck refuses a resty.worker.events whose _VERSION is not
# 1.0.0's "0.3.3" (its tag never bumped it) or 2.x's.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use WorkerEventsTest;

master_on(); # TEST 4 runs 2 workers; the others one

run_tests();

__DATA__

=== TEST 1: resty.worker.events 2.x: _VERSION, the events list (pairs sees the library's; "lost" resolves), the defaults
--- config
location = /t {
    content_by_lua_block {
        local ev = require "resty.worker.events"
        ngx.say("_VERSION ", ev._VERSION)
        local keys = {}
        for k, v in pairs(ev.events) do keys[#keys + 1] = k .. "=" .. v end
        table.sort(keys)
        ngx.say("events: ", table.concat(keys, " "))
        ngx.say("lost: ", ev.events.lost)
        local ok, e = pcall(function() return ev.events.nope end)
        ngx.say(ok, " ", e:match("event .*"))
        assert(ev.configure({ shm = "ev" }))
        local o = ev.stats().options
        ngx.say("timeout=", o.timeout, " interval=", o.interval, " wait_interval=", o.wait_interval,
                " wait_max=", o.wait_max, " shm_retries=", o.shm_retries)
    }
}
--- response_body
_VERSION 2.0.1
events: _source=resty-worker-events started=started stopping=stopping
lost: lost
false event 'nope' is an unknown event
timeout=2 interval=1 wait_interval=0.01 wait_max=0.5 shm_retries=999



=== TEST 2: worker_events_compat 1.x: _VERSION "0.3.3" (1.0.0's), shm_retries 5, the same events list
--- http_config
worker_events_compat 1.x;
--- config
location = /t {
    content_by_lua_block {
        local ev = require "resty.worker.events"
        ngx.say("_VERSION ", ev._VERSION)
        local keys = {}
        for k in pairs(ev.events) do keys[#keys + 1] = k end
        table.sort(keys)
        ngx.say("events: ", table.concat(keys, " "))
        assert(ev.configure({ shm = "ev" }))
        local o = ev.stats().options
        ngx.say("timeout=", o.timeout, " interval=", o.interval, " shm_retries=", o.shm_retries)
    }
}
--- response_body
_VERSION 0.3.3
events: _source started stopping
timeout=2 interval=1 shm_retries=5



=== TEST 3: resty.events and resty.events.compat: _VERSION 0.3.1, the options new() fills in
--- config
location = /t {
    content_by_lua_block {
        local events = require "resty.events"
        local compat = require "resty.events.compat"
        ngx.say("resty.events ", events._VERSION, ", compat ", compat._VERSION)
        local opts = { listening = "unix:/tmp/x.sock" }
        local ev = events.new(opts)
        ngx.say("broker_id=", opts.broker_id, " unique_timeout=", opts.unique_timeout,
                " max_queue_len=", opts.max_queue_len, " max_payload_len=", opts.max_payload_len,
                " testing=", opts.testing, " same table: ", ev.opts == opts)
    }
}
--- response_body
resty.events 0.3.1, compat 0.3.1
broker_id=0 unique_timeout=5 max_queue_len=10240 max_payload_len=65536 testing=false same table: true



=== TEST 4: resty.events: "cluster" is an ordinary unique key, as in lua-resty-events (one worker runs it; a repeat within unique_timeout is a duplicate)
--- workers: 2
--- log_level: debug
--- http_config
init_worker_by_lua_block {
    ev = require("resty.events").new { listening = "unix:/tmp/x.sock" }
    ev:subscribe("s", "*", function(data) ngx.shared.out:incr("ran:" .. data, 1, 0) end)
    assert(ev:init_worker())
    ngx.shared.out:incr("ready", 1, 0)
}
--- config
location = /t {
    content_by_lua_block {
        assert(require("t.we").wait_ready())
        ngx.say(ev:publish("cluster", "s", "e", "one"))
        ngx.say(ev:publish("cluster", "s", "e", "two"))
        assert(ev:publish("all", "s", "e", "marker"))
        for _ = 1, 500 do
            if (ngx.shared.out:get("ran:marker") or 0) >= 2 then break end
            ngx.sleep(0.01)
        end
        ngx.say("one ran ", ngx.shared.out:get("ran:one") or 0, ", two ran ", ngx.shared.out:get("ran:two") or 0)
    }
}
--- response_body
true
true
one ran 1, two ran 0
--- error_log eval
qr/unique event is duplicate on worker #\d: cluster/
