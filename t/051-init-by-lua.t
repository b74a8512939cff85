# Kong's pattern: every API is first required in init_by_lua* (in the
# master, or the single process, before any worker exists) and configured
# in init_worker_by_lua*. Test::Nginx's default process model (one process,
# no master), as consumers' suites run it.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use WorkerEventsTest;

run_tests();

__DATA__

=== TEST 1: resty.worker.events required in init_by_lua, configured in init_worker: post, post_local, unique, handlers, lost, stats
--- http_config
lua_shared_dict process_events 1m;
init_by_lua_block {
    _G.we_ev = require "resty.worker.events"
    _G.we_ev_loaded_in = ngx.get_phase()
}
init_worker_by_lua_block {
    local we = require "t.we"
    local ev = _G.we_ev
    assert(ev == require("resty.worker.events"), "one module table")
    ev.register(function(data, event, source, pid)
        we.record(event, " ", we.show(data))
    end, "t")
    ev.register(function(data) ngx.shared.out:incr("lost", data.count, 0) end,
                ev.events._source, ev.events.lost)
    assert(ev.configure({ shm = "process_events", interval = 0.05, timeout = 0.3 }))
    ngx.shared.out:set("configured", ev.configured())
}
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        ngx.say("loaded in ", _G.we_ev_loaded_in, ", configured in init_worker: ",
                ngx.shared.out:get("configured"))
        assert(ev.post("t", "e1", { n = 1 }))
        assert(ev.post_local("t", "local", "x"))
        assert(ev.post("t", "u1", 1, "key"))
        assert(ev.post("t", "u2", 2, "key"))
        ngx.say("poll: ", ev.poll())
        ngx.sleep(0.1)
        we.say_all()
        local s = ev.stats()
        ngx.say("workers ", s.workers, ", lost ", s.lost, ", lost events: ", ngx.shared.out:get("lost"))
    }
}
--- response_body
loaded in init, configured in init_worker: true
poll: done
w0: local "x"
w0: e1 {["n"]=1}
w0: u1 1
workers 1, lost 0, lost events: nil
--- no_error_log
[error]
[warn]



=== TEST 2: resty.events new() in init_by_lua, subscribe and init_worker() in init_worker: all, current, a unique key; is_ready
--- implicit_zone
--- http_config
init_by_lua_block {
    _G.ev = require("resty.events").new({ listening = "unix:$TEST_NGINX_HTML_DIR/events.sock",
                                          unique_timeout = 0.3 })
    -- (ready only after init_worker)
    _G.ready_in_init = _G.ev:is_ready()
}
init_worker_by_lua_block {
    local we = require "t.we"
    _G.ev:subscribe("t", "*", function(data, event, source, wid)
        we.record(event, " ", we.show(data), " wid=", wid)
    end)
    assert(_G.ev:init_worker())
}
server {
    listen unix:$TEST_NGINX_HTML_DIR/events.sock;
    location / { content_by_lua_block { _G.ev:run() } }
}
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local ev = _G.ev
        ngx.say("ready in init: ", _G.ready_in_init, ", now: ", ev:is_ready())
        assert(ev:publish("all", "t", "to-all", 1))
        assert(ev:publish("current", "t", "to-current", 2))
        assert(ev:publish("ukey", "t", "unique-1", 3))
        assert(ev:publish("ukey", "t", "unique-2", 4))
        ngx.sleep(0.2)
        we.say_all()
    }
}
--- response_body
ready in init: false, now: true
w0: to-current 2 wid=nil
w0: to-all 1 wid=0
w0: unique-1 3 wid=0
--- no_error_log
[error]
[warn]



=== TEST 3: ngx_tasks required and pushed in init_by_lua, started in init_worker: both task types run
--- implicit_zone
--- http_config
init_by_lua_block {
    _G.tasks = require "ngx_tasks"
    local d = ngx.shared.out
    local function count(self) d:incr(self.identifier, 1, 0) end
    _G.tasks:push { identifier = "one", interval = 0.2, typ = "preemption", callback = count }
    _G.tasks:push { identifier = "all", interval = 0.2, typ = "normal", callback = count }
}
init_worker_by_lua_block {
    assert(_G.tasks:start())
}
--- config
location = /t {
    content_by_lua_block {
        ngx.sleep(1.1)
        local d = ngx.shared.out
        ngx.say("preemption ran: ", (d:get("one") or 0) >= 3, ", normal ran: ", (d:get("all") or 0) >= 3)
    }
}
--- response_body
preemption ran: true, normal ran: true
--- no_error_log
[error]



=== TEST 4: resty.worker.manager (on_init_by_lua in init_by_lua, as it must) and the status endpoint with every API required in init_by_lua
--- http_config
init_by_lua_block {
    require("resty.worker.events")
    require("resty.events")
    require("ngx_tasks")
    local function rec(kind)
        return function(id, p, m, n)
            ngx.shared.out:rpush("log", table.concat({ kind, tostring(id), tostring(p), tostring(m), tostring(n) }, " "))
        end
    end
    _G.rec = rec
    require("resty.worker.manager").on_init_by_lua({ shm = "ev" }, rec("master-start"), rec("master-exit"))
}
init_worker_by_lua_block {
    assert(require("resty.worker.manager").on_init_worker_by_lua(
        _G.rec("worker-start"), _G.rec("worker-exit")))
    assert(require("resty.worker.events").configure({ shm = "ev" }))
}
--- config
location = /status { worker_events_status ev; }
location = /t {
    content_by_lua_block {
        local cjson = require "cjson.safe"
        local d = ngx.shared.out
        for i = 1, d:llen("log") do
            ngx.say((d:lpop("log"):gsub(tostring(ngx.worker.pid()), "PID")))
        end
        ngx.say("manager workers: ", #require("resty.worker.manager").workers())
        local head, body = require("t.we").http_get("/status")
        local s = assert(cjson.decode(body))
        ngx.say("status: workers ", #s.workers, ", generation ", s.lifecycle.generation)
    }
}
--- response_body
master-start 1 nil 0 nil
worker-start 1-PID nil 1 nil
manager workers: 1
status: workers 1, generation 1
--- no_error_log
[error]
