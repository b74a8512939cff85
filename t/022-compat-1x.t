# worker_events_compat 1.x: lua-resty-worker-events 1.0.0 semantics.
# post() and post_local() poll before they return and return what poll()
# returned; the poster's handlers have run by then; "recursive" from inside
# a poll; the 1.x defaults. Each difference with 2 and with 4 workers.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use WorkerEventsTest;

# several workers (and a master: reloads, kills) as the real Test::Nginx needs them
master_on();
workers(2);

# `from`: local (post_local), me (this worker posted it), other
our $HttpConfig = <<'_EOC_';
    worker_events_compat 1.x;
    init_worker_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        ev.register(function(data, event, source, pid)
            we.record(event, " from=", pid == nil and "local"
                      or (pid == ngx.worker.pid() and "me" or "other"))
        end, "test")
        we.configure()
    }
_EOC_

# the poster's view of post() and post_local()
our $PostConfig = <<'_EOC_';
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        assert(we.wait_ready())
        local me = ngx.worker.id()
        ngx.say("post: ", ev.post("test", "b1", { n = 1 }))
        ngx.say("  handled when it returned: ", table.concat(we.take(me), ","))
        ngx.say("post_local: ", ev.post_local("test", "l1", { n = 2 }))
        ngx.say("  handled when it returned: ", table.concat(we.take(me), ","))
        assert(we.wait_others(1))
        we.say_others_equal({ "b1 from=other" }, "b1 only")
    }
}
_EOC_

# order in the poster: every event in posting order, local ones included;
# events another consumer posted before are handled first
our $OrderConfig = <<'_EOC_';
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        assert(we.wait_ready())
        local me = ngx.worker.id()
        -- a second consumer in this worker posts without polling ours
        local other = require("ngx_worker_events.bus").new { dispatch = function() end }
        assert(other.open("ev"))
        assert(other.post("test", "pending-1"))
        ngx.say(ev.post_local("test", "l1"))
        assert(other.post("test", "pending-2"))
        ngx.say(ev.post("test", "b1"))
        ngx.say(ev.post_local("test", "l2"))
        ngx.say(ev.post("test", "b2"))
        other.close()
        ngx.say(table.concat(we.take(me), "\n"))
        assert(we.wait_others(4))
        we.say_others_equal({ "pending-1 from=other", "pending-2 from=other", "b1 from=other",
                              "b2 from=other" }, "broadcast order")
    }
}
_EOC_

# "recursive": posting from a handler, and from another light thread while
# a handler yields
our $RecursiveHttpConfig = <<'_EOC_';
    worker_events_compat 1.x;
    init_worker_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        ev.register(function(data, event, source, pid)
            if pid ~= ngx.worker.pid() then return end -- the poster only
            we.record(event, " start")
            we.record("  post: ", ev.post("test", "inner"))
            we.record("  post_local: ", ev.post_local("test", "inner-local"))
            we.record(event, " end")
        end, "test", "outer")
        ev.register(function(data, event) we.record(event) end, "test", "inner",
                    "inner-local", "quick")
        ev.register(function(data, event, source, pid)
            if pid ~= ngx.worker.pid() then return end
            we.record(event, " start")
            ngx.sleep(0.1)
            we.record(event, " end")
        end, "test", "slow")
        we.configure()
    }
_EOC_

our $RecursiveConfig = <<'_EOC_';
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        assert(we.wait_ready())
        local me = ngx.worker.id()
        ngx.say("outer post: ", ev.post("test", "outer"))
        ngx.say(table.concat(we.take(me), "\n"))
        local t = ngx.thread.spawn(function() return ev.post("test", "slow") end)
        ngx.sleep(0.02) -- the slow handler is sleeping inside its poll
        ngx.say("post while a handler yields: ", ev.post("test", "quick"))
        ngx.say("poll while a handler yields: ", ev.poll())
        ngx.say("slow post: ", select(2, ngx.thread.wait(t)))
        ngx.say(table.concat(we.take(me), "\n"))
    }
}
_EOC_

# the defaults and the version
our $DefaultsConfig = <<'_EOC_';
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        assert(we.wait_ready())
        local s = assert(ev.stats())
        ngx.say(ev._VERSION, " ", s.compat)
        ngx.say(we.show(s.options))
        ngx.say(we.show(ngx.shared.out:get("started-before-configure-returned")))
    }
}
_EOC_

our $DefaultsHttpConfig = <<'_EOC_';
    worker_events_compat 1.x;
    init_worker_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        local seen = false
        ev.register(function() seen = true end, "resty-worker-events", "started")
        ev.configure({ shm = "ev" })
        -- 1.x: the worker's own "started" was handled inside configure()
        ngx.shared.out:incr("started-before-configure-returned", seen and 1 or 0, 0)
        ngx.shared.out:incr("ready", 1, 0)
    }
_EOC_

# the other workers block on their first event while one worker floods a
# small zone
our $LostHttpConfig = <<'_EOC_';
    worker_events_zone ev 256k;
    worker_events_compat 1.x;
    init_worker_by_lua_block {
        local ev = require "resty.worker.events"
        local d = ngx.shared.out
        local id = ngx.worker.id()
        ev.register(function(data, event, source, pid)
            if pid == ngx.worker.pid() then return end
            if event == "block" then ngx.sleep(0.5) else d:incr("seen" .. id, 1, 0) end
        end, "test")
        ev.register(function(data) d:incr("lost" .. id, data.count, 0) end,
                    "resty-worker-events", "lost")
        assert(require("t.we").configure())
    }
_EOC_

our $LostConfig = <<'_EOC_';
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        assert(we.wait_ready())
        local d = ngx.shared.out
        assert(ev.post("test", "block"))
        ngx.sleep(0.05)
        local blob, r = string.rep("x", 1000)
        for i = 1, 3000 do r = ev.post("test", "flood", blob) end
        ngx.say("posted 3000: ", r)
        local me, ok = ngx.worker.id(), false
        for _ = 1, 300 do
            ok = true
            for id = 0, ngx.worker.count() - 1 do
                if id ~= me and (d:get("seen" .. id) or 0) + (d:get("lost" .. id) or 0) ~= 3000 then
                    ok = false
                end
            end
            if ok then break end
            ngx.sleep(0.01)
        end
        ngx.say("every other worker: seen + lost = 3000: ", ok)
        local lost = true
        for id = 0, ngx.worker.count() - 1 do
            if id ~= me and (d:get("lost" .. id) or 0) == 0 then lost = false end
        end
        ngx.say("and each lost some: ", lost)
    }
}
_EOC_

run_tests();

__DATA__

=== TEST 1: post() and post_local() return "done" after this worker's handlers ran (2 workers)
--- http_config eval: $::HttpConfig
--- config eval: $::PostConfig
--- response_body
post: done
  handled when it returned: b1 from=me
post_local: done
  handled when it returned: l1 from=local
b1 only: 1 of 1 other workers



=== TEST 2: post() and post_local() return "done" after this worker's handlers ran (4 workers)
--- workers: 4
--- http_config eval: $::HttpConfig
--- config eval: $::PostConfig
--- response_body
post: done
  handled when it returned: b1 from=me
post_local: done
  handled when it returned: l1 from=local
b1 only: 3 of 3 other workers



=== TEST 3: in the poster, local and broadcast events run in posting order (2 workers)
--- http_config eval: $::HttpConfig
--- config eval: $::OrderConfig
--- response_body
done
done
done
done
l1 from=local
pending-1 from=me
pending-2 from=me
b1 from=me
l2 from=local
b2 from=me
broadcast order: 1 of 1 other workers



=== TEST 4: in the poster, local and broadcast events run in posting order (4 workers)
--- workers: 4
--- http_config eval: $::HttpConfig
--- config eval: $::OrderConfig
--- response_body
done
done
done
done
l1 from=local
pending-1 from=me
pending-2 from=me
b1 from=me
l2 from=local
b2 from=me
broadcast order: 3 of 3 other workers



=== TEST 5: "recursive" from a handler and while a handler yields (2 workers)
--- http_config eval: $::RecursiveHttpConfig
--- config eval: $::RecursiveConfig
--- response_body
outer post: done
outer start
  post: recursive
inner-local
  post_local: recursive
outer end
inner
post while a handler yields: recursive
poll while a handler yields: recursive
slow post: done
slow start
slow end
quick



=== TEST 6: "recursive" from a handler and while a handler yields (4 workers)
--- workers: 4
--- http_config eval: $::RecursiveHttpConfig
--- config eval: $::RecursiveConfig
--- response_body
outer post: done
outer start
  post: recursive
inner-local
  post_local: recursive
outer end
inner
post while a handler yields: recursive
poll while a handler yields: recursive
slow post: done
slow start
slow end
quick



=== TEST 7: the 1.x defaults and version; "started" is handled inside configure() (2 workers)
--- http_config eval: $::DefaultsHttpConfig
--- config eval: $::DefaultsConfig
--- response_body
0.3.3 1.x
{["interval"]=1,["shm_retries"]=5,["timeout"]=2,["wait_interval"]=0.01,["wait_max"]=0.5}
2



=== TEST 8: the 1.x defaults and version; "started" is handled inside configure() (4 workers)
--- workers: 4
--- http_config eval: $::DefaultsHttpConfig
--- config eval: $::DefaultsConfig
--- response_body
0.3.3 1.x
{["interval"]=1,["shm_retries"]=5,["timeout"]=2,["wait_interval"]=0.01,["wait_max"]=0.5}
4



=== TEST 9: handlers run inline in every phase that can post; a handler that yields where that is disabled fails as in 1.x (2 workers)
--- http_config
worker_events_compat 1.x;
init_worker_by_lua_block {
    local ev = require "resty.worker.events"
    -- counts, per request (or timer), the handlers run so far
    ev.register(function() ngx.ctx.handled = (ngx.ctx.handled or 0) + 1 end, "phase")
    ev.register(function(data, event, source, pid)
        if pid == ngx.worker.pid() then ngx.sleep(0) end
    end, "phase", "header_filter")
    assert(require("t.we").configure())
    _G.post_in_phase = function(name)
        local before = ngx.ctx.handled or 0
        local r, err = ev.post("phase", name)
        -- init_worker's line on its own: workers start in any order
        ngx.shared.out:rpush(name == "init_worker" and "init" or "phases", name .. ": "
                             .. tostring(r or err) .. ", handled: "
                             .. tostring((ngx.ctx.handled or 0) > before))
    end
    if ngx.worker.id() == 0 then post_in_phase("init_worker") end
}
--- config
location = /t {
    rewrite_by_lua_block { post_in_phase("rewrite") }
    access_by_lua_block { post_in_phase("access") }
    content_by_lua_block {
        post_in_phase("content")
        local ok = ngx.timer.at(0, function() post_in_phase("timer") end)
        ngx.sleep(0.05)
        ngx.say("ok")
    }
    header_filter_by_lua_block { post_in_phase("header_filter") }
    body_filter_by_lua_block { if ngx.arg[2] then post_in_phase("body_filter") end }
    log_by_lua_block { post_in_phase("log") }
}
location = /check {
    content_by_lua_block {
        local d = ngx.shared.out
        for _ = 1, 100 do
            if d:llen("phases") >= 7 and d:llen("init") >= 1 then break end
            ngx.sleep(0.01)
        end
        ngx.say(d:lpop("init"))
        for _ = 1, d:llen("phases") do ngx.say(d:lpop("phases")) end
        -- the handler that yielded in header_filter: logged as 1.x logs it
        local f = assert(io.open(ngx.config.prefix() .. "logs/error.log"))
        local n = 0
        for l in f:lines() do
            if l:find("worker-events: event callback failed; source=phase, event=header_filter, pid=", 1, true)
               and l:find("API disabled in the context of header_filter_by_lua*", 1, true) then
                n = n + 1
            end
        end
        f:close()
        ngx.say("yield in header_filter failed and was logged: ", n)
    }
}
--- request eval
["GET /t", "GET /check"]
--- response_body eval
["ok\n", "init_worker: done, handled: true
rewrite: done, handled: true
access: done, handled: true
content: done, handled: true
timer: done, handled: true
header_filter: done, handled: true
body_filter: done, handled: true
log: done, handled: true
yield in header_filter failed and was logged: 1
"]
--- no_error_log
[alert]
[crit]
[emerg]



=== TEST 10: push, unique and exact payloads stay with 1.x (4 workers, 10 s interval)
--- workers: 4
--- http_config
worker_events_compat 1.x;
init_worker_by_lua_block {
    local we = require "t.we"
    local ev = require "resty.worker.events"
    ev.register(function(data, event, source, pid)
        we.record(event, " ", we.show(data))
    end, "test")
    we.configure({ interval = 10 }) -- push, not the interval, delivers
}
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        assert(we.wait_ready())
        local payload = { s = "caf\u{e9} \0 bytes", n = 1.5, i = -7, list = { 1, "two", { three = 3 } },
                          t = true, f = false }
        ngx.say(ev.post("test", "data", payload))
        ngx.say(ev.post("test", "once", "x", "the-unique"))
        ngx.say(ev.post("test", "once", "x", "the-unique"))
        local t0 = ngx.now()
        assert(we.wait_others(1, 2))
        ngx.update_time()
        ngx.say("others got it well before the interval: ", ngx.now() - t0 < 5)
        ngx.sleep(0.2)
        local seen, once = 0, 0
        local want = "data " .. we.show(payload)
        for id = 0, ngx.worker.count() - 1 do
            for _, l in ipairs(we.take(id)) do
                if l == want then seen = seen + 1 elseif l:find("^once") then once = once + 1 end
            end
        end
        ngx.say("exact payload in ", seen, " workers; unique handled ", once, " time(s)")
    }
}
--- response_body
done
done
done
others got it well before the interval: true
exact payload in 4 workers; unique handled 1 time(s)



=== TEST 11: workers that fall behind report what they lost, exactly, also with 1.x (2 workers)
--- http_config eval: $::LostHttpConfig
--- config eval: $::LostConfig
--- response_body
posted 3000: done
every other worker: seen + lost = 3000: true
and each lost some: true



=== TEST 12: workers that fall behind report what they lost, exactly, also with 1.x (4 workers)
--- workers: 4
--- http_config eval: $::LostHttpConfig
--- config eval: $::LostConfig
--- response_body
posted 3000: done
every other worker: seen + lost = 3000: true
and each lost some: true
