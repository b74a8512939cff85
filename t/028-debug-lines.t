# The libraries' debug lines appear exactly when the worker's error_log lets
# debug through, wherever the module was first required: init_by_lua* (as
# Kong and lua-resty-events' own tests do), init_worker_by_lua*, or a
# request. (They were decided once, when first required, from the level of
# the cycle init_by_lua* runs in: the one being replaced.)
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use WorkerEventsTest;

master_on();
workers(2);
run_tests();

__DATA__

=== TEST 1: resty.events first required in init_by_lua with no lua_shared_dict (as lua-resty-events' own tests): published, handling and duplicate lines at debug
--- workers: 1
--- no_shared_dict
--- log_level: debug
--- http_config
init_by_lua_block {
    events_mod = require "resty.events"
}
init_worker_by_lua_block {
    seen = 0
    ev = events_mod.new { listening = "unix:" .. ngx.config.prefix() .. "logs/ev.sock" }
    ev:subscribe("s", "*", function() seen = seen + 1 end)
    assert(ev:init_worker())
}
--- config
location = /t {
    content_by_lua_block {
        assert(ev:publish("all", "s", "broadcast", 1))
        assert(ev:publish("the-key", "s", "once", 2))
        assert(ev:publish("the-key", "s", "once", 3))
        for _ = 1, 500 do
            if seen >= 2 then break end
            ngx.sleep(0.01)
        end
        ngx.say("seen ", seen)
    }
}
--- response_body
seen 2
--- error_log eval
[
    qr/event published to 1 workers/,
    qr/unique event is duplicate on worker #0: the-key/,
    qr/worker-events: handling event; source=s, event=broadcast, wid=0/,
]



=== TEST 2: resty.worker.events first required in init_by_lua with no lua_shared_dict: handling and skipping lines at debug
--- workers: 1
--- no_shared_dict
--- log_level: debug
--- http_config
init_by_lua_block {
    we_mod = require "resty.worker.events"
}
init_worker_by_lua_block {
    seen = 0
    we_mod.register(function() seen = seen + 1 end, "s")
    assert(we_mod.configure({ shm = "ev", timeout = 5 }))
}
--- config
location = /t {
    content_by_lua_block {
        assert(we_mod.post("s", "broadcast", 1))
        assert(we_mod.post("s", "once", 2, "the-key"))
        assert(we_mod.post("s", "once", 3, "the-key"))
        for _ = 1, 500 do
            if seen >= 2 then break end
            ngx.sleep(0.01)
        end
        ngx.sleep(0.05)
        ngx.say("seen ", seen)
    }
}
--- response_body
seen 2
--- error_log eval
[
    qr/worker-events: handling event; source=s, event=broadcast, pid=\d+$/m,
    qr/worker-events: skipping event \d+ was handled by worker \d+/,
]
--- no_error_log
data=



=== TEST 3: resty.events first required in init_by_lua, 2 workers: published, handling and duplicate lines at debug
--- log_level: debug
--- http_config
init_by_lua_block {
    events_mod = require "resty.events"
}
init_worker_by_lua_block {
    ev = events_mod.new { listening = "unix:" .. ngx.config.prefix() .. "logs/ev.sock" }
    ev:subscribe("s", "*", function(data, event)
        ngx.shared.out:incr("seen", 1, 0)
    end)
    assert(ev:init_worker())
    ngx.shared.out:incr("ready", 1, 0)
}
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        assert(we.wait_ready())
        assert(ev:publish("all", "s", "broadcast", 1))
        assert(ev:publish("the-key", "s", "once", 2))
        assert(ev:publish("the-key", "s", "once", 3))
        ngx.update_time()
        local deadline = ngx.now() + 5
        while (ngx.shared.out:get("seen") or 0) < 3 and ngx.now() < deadline do
            ngx.sleep(0.01)
            ngx.update_time()
        end
        ngx.say("seen ", ngx.shared.out:get("seen"))
    }
}
--- response_body
seen 3
--- error_log eval
[
    qr/event published to 2 workers/,
    qr/event published to 1 workers/,
    qr/unique event is duplicate on worker #\d: the-key/,
    qr/worker-events: handling event; source=s, event=broadcast, wid=\d/,
]



=== TEST 4: resty.worker.events first required in init_by_lua, 2 workers, configured in init_worker: handling and skipping lines at debug
--- log_level: debug
--- http_config
init_by_lua_block {
    we_mod = require "resty.worker.events"
}
init_worker_by_lua_block {
    we_mod.register(function(data, event)
        ngx.shared.out:incr("seen", 1, 0)
    end, "s")
    assert(require("t.we").configure({ timeout = 5 }))
}
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        assert(we.wait_ready())
        assert(we_mod.post("s", "broadcast", 1))
        assert(we_mod.post("s", "once", 2, "the-key"))
        ngx.update_time()
        local deadline = ngx.now() + 5
        while (ngx.shared.out:get("seen") or 0) < 3 and ngx.now() < deadline do
            ngx.sleep(0.01)
            ngx.update_time()
        end
        ngx.sleep(0.05)
        ngx.say("seen ", ngx.shared.out:get("seen"))
    }
}
--- response_body
seen 3
--- error_log eval
[
    qr/worker-events: handling event; source=s, event=broadcast, pid=\d+$/m,
    qr/worker-events: skipping event \d+ was handled by worker \d+/,
]
--- no_error_log
data=



=== TEST 5: first required in a request (one worker): the handling line at debug
--- workers: 1
--- log_level: debug
--- config
location = /t {
    content_by_lua_block {
        local ev = require "resty.worker.events"
        ev.register(function() ngx.say("handled") end, "s", "e")
        assert(ev.configure({ shm = "ev" }))
        assert(ev.post("s", "e", "x"))
        ev.poll()
    }
}
--- response_body
handled
--- error_log eval
qr/worker-events: handling event; source=s, event=e, pid=\d+/



=== TEST 6: at info, none of the libraries' debug lines, wherever first required
--- log_level: info
--- http_config
init_by_lua_block {
    events_mod = require "resty.events"
    we_mod = require "resty.worker.events"
}
init_worker_by_lua_block {
    ev = events_mod.new { listening = "unix:" .. ngx.config.prefix() .. "logs/ev.sock" }
    ev:subscribe("s", "*", function() ngx.shared.out:incr("seen", 1, 0) end)
    assert(ev:init_worker())
    we_mod.register(function() ngx.shared.out:incr("seen", 1, 0) end, "s")
    assert(require("t.we").configure())
}
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        assert(we.wait_ready())
        assert(ev:publish("all", "s", "e", 1))
        assert(ev:publish("k", "s", "e", 1))
        assert(ev:publish("k", "s", "e", 1))
        assert(we_mod.post("s", "e", 1))
        assert(we_mod.post("s", "e", 1, "k2"))
        ngx.update_time()
        local deadline = ngx.now() + 5
        -- one bus: each API's handlers get both APIs' events; a broadcast
        -- runs in 2 workers x 2 APIs, a unique key once per API
        while (ngx.shared.out:get("seen") or 0) < 12 and ngx.now() < deadline do
            ngx.sleep(0.01)
            ngx.update_time()
        end
        ngx.sleep(0.05)
        ngx.say("seen ", ngx.shared.out:get("seen"))
    }
}
--- response_body
seen 12
--- no_error_log
handling event
published to
is duplicate
skipping event
[debug]



=== TEST 7: worker_events_compat 1.x: 1.0.0's handling line, data= included (the one payload the module logs, at debug only)
--- log_level: debug
--- http_config
worker_events_compat 1.x;
init_by_lua_block {
    we_mod = require "resty.worker.events"
}
init_worker_by_lua_block {
    we_mod.register(function() end, "s")
    assert(require("t.we").configure())
}
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        assert(we.wait_ready())
        ngx.say(we_mod.post("s", "e", "hello"))
        ngx.say(we_mod.post_local("s", "l", 42))
    }
}
--- response_body
done
done
--- error_log eval
[
    qr/worker-events: handling event; source=s, event=e, pid=\d+, data=hello$/m,
    qr/worker-events: handling event; source=s, event=l, pid=nil, data=42$/m,
]
