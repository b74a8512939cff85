# Every API in Test::Nginx's default process model: master_process off, one
# process (no master, no other worker), as consumers' own suites run it
# (lua-resty-healthcheck's, lua-resty-events'). This file must not call
# master_on() or workers(N).
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use WorkerEventsTest;

our $HttpConfig = <<'_EOC_';
    init_worker_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        ev.register(function(data, event, source, pid)
            we.record(source, " ", event, " ", we.show(data),
                      " pid=", pid == ngx.worker.pid() and "me" or tostring(pid))
        end, "t")
        ev.register(function(data)
            ngx.shared.out:incr("lost", data.count, 0)
            ngx.shared.out:incr("lost-events", 1, 0)
        end, ev.events._source, ev.events.lost)
        ev.register(function() ngx.shared.out:incr("flood", 1, 0) end, "flood")
        we.configure({ interval = 0.05, timeout = 0.3 })
    }
_EOC_

run_tests();

__DATA__

=== TEST 1: the runner's default is Test::Nginx's: one process, no master, one worker
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        ngx.say("count ", ngx.worker.count(), ", id ", ngx.worker.id(),
                ", the pid file names this process: ", we.master_pid() == ngx.worker.pid())
        local p = io.popen("pgrep -x nginx -P " .. ngx.worker.pid())
        local children = p:read("*a")
        p:close()
        ngx.say("child processes: ", children == "" and "none" or children)
        ngx.say("process type: ", require("ngx.process").type())
    }
}
--- response_body
count 1, id 0, the pid file names this process: true
child processes: none
process type: single



=== TEST 2: resty.worker.events: post reaches this process once, post_local too (first, pid nil, as the library); poll; handlers at every level; stats
--- http_config eval: $::HttpConfig
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        assert(we.wait_ready())
        ngx.say("configured: ", ev.configured())
        local seen = {}
        local h1 = function(data, event) seen[#seen + 1] = "global " .. event end
        local h2 = function(data, event) seen[#seen + 1] = "source " .. event end
        local h3 = function(data, event) seen[#seen + 1] = "event " .. event end
        ev.register(h1)
        ev.register(h2, "t")
        ev.register(h3, "t", "e2")
        ngx.say("post: ", ev.post("t", "e1", { n = 1 }))
        ngx.say("post_local: ", ev.post_local("t", "e2", "x"))
        ngx.say("poll: ", ev.poll())
        assert(we.wait_all(2))
        ngx.sleep(0.1)
        we.say_all()
        table.sort(seen)
        ngx.say(table.concat(seen, ", "))
        ngx.say("unregister: ", ev.unregister(h1), " ", ev.unregister(h2, "t"),
                " ", ev.unregister(h3, "t", "e2"))
        local s = ev.stats()
        ngx.say("stats: workers ", s.workers, ", posted >= 1: ", s.posted >= 1, ", lost ", s.lost)
    }
}
--- response_body
configured: true
post: true
post_local: true
poll: done
w0: t e2 "x" pid=nil
w0: t e1 {["n"]=1} pid=me
event e2, global e1, global e2, source e1, source e2
unregister: true true true
stats: workers 1, posted >= 1: true, lost 0
--- no_error_log
[error]
[warn]



=== TEST 3: resty.worker.events unique: run once; a repost within the timeout is dropped; after the timeout it runs again
--- http_config eval: $::HttpConfig
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        assert(we.wait_ready())
        assert(ev.post("t", "u1", 1, "key"))
        assert(ev.post("t", "u2", 2, "key"))
        ngx.sleep(0.2)
        assert(ev.post("t", "u3", 3, "key"))
        ngx.sleep(0.4) -- the 0.3 s timeout has passed
        assert(ev.post("t", "u4", 4, "key"))
        assert(ev.post("t", "u5", 5, "key"))
        ngx.sleep(0.2)
        we.say_all()
    }
}
--- response_body
w0: t u1 1 pid=me
w0: t u4 4 pid=me
--- no_error_log
[error]
[warn]



=== TEST 4: resty.worker.events lost: this process falls behind its own flood (no poll while it posts) and is told exactly how many it lost
--- log_level: warn
--- http_config eval
"worker_events_zone ev 128k;\n" . $::HttpConfig
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        local out = ngx.shared.out
        assert(we.wait_ready())
        local blob = string.rep("x", 1000)
        for i = 1, 2000 do assert(ev.post("flood", "n", blob)) end
        ngx.sleep(0.3)
        ngx.say("poll: ", ev.poll())
        local seen, lost = out:get("flood") or 0, out:get("lost") or 0
        ngx.say("seen + lost = ", seen + lost, ", lost anything: ", lost > 0,
                ", lost events: ", out:get("lost-events"), ", stats().lost = lost: ", ev.stats().lost == lost)
    }
}
--- response_body
poll: done
seen + lost = 2000, lost anything: true, lost events: 1, stats().lost = lost: true
--- error_log eval
qr/\[error\] .*ngx_worker_events: lost \d+ event\(s\)/



=== TEST 5: resty.events: publish to all, current (first, wid nil, as the library), a unique key, and "others" (an ordinary unique key in lua-resty-events: one run); subscribe by source/event, unsubscribe
--- implicit_zone
--- http_config
init_by_lua_block {
    _G.ev = require("resty.events").new({ listening = "unix:$TEST_NGINX_HTML_DIR/events.sock",
                                          unique_timeout = 0.3 })
}
init_worker_by_lua_block {
    local we = require "t.we"
    _G.sub = _G.ev:subscribe("t", "*", function(data, event, source, wid)
        we.record(event, " ", we.show(data), " wid=", wid)
    end)
    assert(_G.ev:init_worker())
}
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local ev = _G.ev
        ngx.say("ready: ", ev:is_ready())
        local id = ev:subscribe("t", "only", function(data, event) we.record("only-handler ", event) end)
        assert(ev:publish("all", "t", "to-all", 1))
        assert(ev:publish("current", "t", "to-current", 2))
        assert(ev:publish("others", "t", "to-others", 3))
        assert(ev:publish("ukey", "t", "unique-1", 4))
        assert(ev:publish("ukey", "t", "unique-2", 5))
        assert(ev:publish("all", "t", "only", 6))
        ngx.sleep(0.2)
        we.say_all()
        ev:unsubscribe(id)
        ngx.sleep(0.2) -- past the unique timeout
        assert(ev:publish("ukey", "t", "unique-3", 7))
        assert(ev:publish("all", "t", "only", 8))
        ngx.sleep(0.2)
        we.say_all()
    }
}
--- response_body
ready: true
w0: to-current 2 wid=nil
w0: to-all 1 wid=0
w0: to-others 3 wid=0
w0: unique-1 4 wid=0
w0: only 6 wid=0
w0: only-handler only
w0: unique-3 7 wid=0
w0: only 8 wid=0
--- no_error_log
[error]
[warn]



=== TEST 6: the status endpoint: JSON (one worker, counters moved) and Prometheus text
--- http_config eval: $::HttpConfig
--- config
location = /status { worker_events_status; }
location = /status_ev { worker_events_status ev; }
location = /t {
    content_by_lua_block {
        local cjson = require "cjson.safe"
        local we = require "t.we"
        local ev = require "resty.worker.events"
        assert(we.wait_ready())
        for i = 1, 10 do assert(ev.post("t", "e", i)) end
        assert(we.wait_all(10))
        ngx.sleep(0.1)
        local head, body = we.http_get("/status_ev")
        local s = assert(cjson.decode(body))
        ngx.say("json: zone ", s.zone, ", workers ", #s.workers, ", posted >= 10: ", s.events.posted >= 10,
                ", delivered >= 10: ", s.workers[1].delivered >= 10,
                ", pid is mine: ", s.workers[1].pid == ngx.worker.pid())
        local head2, body2 = we.http_get("/status_ev?format=prometheus")
        ngx.say("prometheus: ", head2:match("Content%-Type: ([^;\r]+)"),
                ", worker samples: ", select(2, body2:gsub("\nngx_worker_events_worker_delivered_total{", "")))
        local head3, body3 = we.http_get("/status")
        ngx.say("default zone: ", head3:match("^HTTP/1%.%d (%d+)"))
    }
}
--- response_body
json: zone ev, workers 1, posted >= 10: true, delivered >= 10: true, pid is mine: true
prometheus: text/plain, worker samples: 1
default zone: 200
--- no_error_log
[error]



=== TEST 7: ngx_tasks: a 'normal' (every worker) and a 'preemption' (one worker) task each run once per window in this process
--- implicit_zone
--- http_config
init_worker_by_lua_block {
    local tasks = require "ngx_tasks"
    local d = ngx.shared.out
    local function count(self)
        local w = tasks.keys(nil, self, tasks.now())
        d:incr(self.identifier .. ":" .. w, 1, 0)
        d:incr(self.identifier .. ":wid" .. ngx.worker.id(), 1, 0)
    end
    tasks:push { identifier = "one", interval = 0.3, typ = "preemption", callback = count }
    tasks:push { identifier = "all", interval = 0.3, typ = "normal", callback = count }
    assert(tasks:start())
}
--- config
location = /t {
    content_by_lua_block {
        local tasks = require "ngx_tasks"
        local d = ngx.shared.out
        ngx.sleep(0.4)
        local w0 = math.floor(tasks.now() / 0.3)
        ngx.sleep(1.9)
        local runs = { one = {}, all = {} }
        for w = w0 + 1, w0 + 5 do
            for id in pairs(runs) do runs[id][#runs[id] + 1] = d:get(id .. ":" .. w) or 0 end
        end
        ngx.say("preemption per window: ", table.concat(runs.one, " "))
        ngx.say("normal per window: ", table.concat(runs.all, " "))
        ngx.say("ran in worker 0 only: ", d:get("one:wid0") > 0 and d:get("all:wid0") > 0)
    }
}
--- timeout: 5
--- response_body
preemption per window: 1 1 1 1 1
normal per window: 1 1 1 1 1
ran in worker 0 only: true
--- no_error_log
[error]



=== TEST 8: resty.worker.manager without a master: one generation, the process is its only worker; at stop, where nginx ends the single process at once (no exiting phase, no premature timers) no exit callback runs, where it exits gracefully (OpenResty) worker-exit and master-exit run as for a master's last worker; its slot is freed natively
--- implicit_zone
--- http_config
init_by_lua_block {
    local function rec(kind)
        return function(id, p, m, n)
            local line = table.concat({ kind, tostring(id), tostring(p), tostring(m), tostring(n) }, " ")
            ngx.shared.out:rpush("log", line)
            ngx.log(ngx.NOTICE, "lifecycle: ", line)
        end
    end
    _G.rec = rec
    require("resty.worker.manager").on_init_by_lua({ interval = 0.2, failed = 0.3 },
        rec("master-start"), rec("master-exit"))
}
init_worker_by_lua_block {
    assert(require("resty.worker.manager").on_init_worker_by_lua(
        _G.rec("worker-start"), _G.rec("worker-exit")))
}
--- config
location = /t {
    content_by_lua_block {
        local m = require "resty.worker.manager"
        ngx.sleep(0.6) -- a few heartbeats: nobody is unresponsive or crashed
        local d = ngx.shared.out
        for i = 1, d:llen("log") do
            ngx.say((d:lpop("log"):gsub(tostring(ngx.worker.pid()), "PID")))
        end
        local gen = m.generation()
        local ws = m.workers()
        ngx.say("generation ", gen, ", workers ", #ws, ": pid is mine ", ws[1].pid == ngx.worker.pid(),
                ", worker ", ws[1].worker, ", state ", ws[1].state)
    }
}
--- response_body
master-start 1 nil 0 nil
worker-start 1-PID nil 1 nil
generation 1, workers 1: pid is mine true, worker 0, state running
--- no_error_log
[error]
unresponsive
died without exiting
--- shutdown_error_log eval
[qr/\[notice\] \d+#\d+: exit$/,
 ($NginxPlatform::SingleGracefulExit
  ? (qr/lifecycle: worker-exit 1-\d+ nil 1 nil, context: ngx\.timer/,
     qr/lifecycle: master-exit 1 nil 0 nil, context: ngx\.timer/)
  : ())]
--- no_shutdown_error_log eval
[($NginxPlatform::SingleGracefulExit ? () : ("lifecycle: worker-exit", "lifecycle: master-exit")),
 "[error]", "[alert]"]
