# One bus, several consumers: two APIs' consumers of one zone in the same
# worker, each with its own cursor, handlers and lost-event count (here the
# second is ngx_worker_events.bus itself, the core resty.events will use).
# And the module's own lifecycle (slots, generations), with no Lua API used.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use WorkerEventsTest;

# several workers (and a master: reloads, kills) as the real Test::Nginx needs them
master_on();
workers(2);

log_level('warn');

run_tests();

__DATA__

=== TEST 1: two consumers in every worker both get every event, whoever posts
--- workers: 3
--- http_config
init_worker_by_lua_block {
    local we = require "t.we"
    local ev = require "resty.worker.events"
    ev.register(function(data, event, source)
        we.record("A ", source, " ", event, " ", data)
    end, "test")
    local second = require("ngx_worker_events.bus").new {
        dispatch = function(source, event, data)
            if source == "test" then we.record("B ", source, " ", event, " ", data) end
        end,
    }
    assert(second.open("ev"))
    assert(second.start())
    package.loaded["t.second"] = second
    we.configure()
}
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        local second = package.loaded["t.second"]
        assert(we.wait_ready())
        assert(ev.post("test", "via-worker-events", 1))
        assert(we.wait_all(2))
        assert(second.post("test", "via-bus", 2))
        assert(we.wait_all(4))
        for id = 0, ngx.worker.count() - 1 do
            local got = we.take(id)
            table.sort(got)
            ngx.say("worker ", id, ": ", table.concat(got, ", "))
        end
    }
}
--- response_body
worker 0: A test via-bus 2, A test via-worker-events 1, B test via-bus 2, B test via-worker-events 1
worker 1: A test via-bus 2, A test via-worker-events 1, B test via-bus 2, B test via-worker-events 1
worker 2: A test via-bus 2, A test via-worker-events 1, B test via-bus 2, B test via-worker-events 1
--- no_error_log
[error]



=== TEST 2: each consumer has its own cursor and lost count: a lazy one loses, the other does not
--- workers: 2
--- http_config
worker_events_zone ev 128k;
init_worker_by_lua_block {
    local we = require "t.we"
    local ev = require "resty.worker.events"
    ev.register(function(data, event) we.record(event) end, "test")
    ev.register(function(data) we.record("A lost") end, "resty-worker-events", "lost")
    local seen, lost, lost_first = 0, 0, nil
    local lazy = require("ngx_worker_events.bus").new {
        dispatch = function() seen = seen + 1 end,
        lost = function(n)
            lost = lost + n
            -- the gap is reported before the events that come after it
            if lost_first == nil then lost_first = seen == 0 end
        end,
    }
    assert(lazy.open("ev"))
    local first_seq = lazy.stats().next_seq
    lazy.set_options({ interval = 0 }) -- no loop: it reads only when polled
    package.loaded["t.lazy"] = { bus = lazy, counts = function() return seen, lost, first_seq, lost_first end }
    we.configure()
}
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        local lazy = package.loaded["t.lazy"]
        assert(we.wait_ready())
        local blob = string.rep("x", 1000)
        local total = 0
        for _ = 1, 20 do
            for _ = 1, 40 do assert(ev.post("test", "e", blob)); total = total + 1 end
            assert(we.wait_all(total, 2)) -- resty.worker.events keeps up
        end
        for _ = 1, 50 do lazy.bus.poll() end -- a poll may stop after 20 ms: drain it all
        local seen, lost, first_seq, lost_first = lazy.counts()
        local posted = lazy.bus.stats().next_seq - first_seq -- since it opened
        ngx.say("resty.worker.events: ", we.count(ngx.worker.id()), " of ", total)
        ngx.say("lazy consumer lost some: ", lost > 0, "; seen + lost = posted: ", seen + lost == posted)
        ngx.say("told before the events after the gap: ", lost_first)
        ngx.say("its stats say so: ", lazy.bus.stats().lost == lost)
        local a_lost = 0
        for _, line in ipairs(we.take(ngx.worker.id())) do
            if line == "A lost" then a_lost = a_lost + 1 end
        end
        ngx.say("resty.worker.events lost: ", a_lost)
    }
}
--- response_body
resty.worker.events: 800 of 800
lazy consumer lost some: true; seen + lost = posted: true
told before the events after the gap: true
its stats say so: true
resty.worker.events lost: 0



=== TEST 3: without any Lua API, every worker holds a slot; a reload starts a new generation
--- workers: 4
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local b = require("ngx_worker_events.bus").new { dispatch = function() end }
        assert(b.open("ev"))
        local function wait_for(generation, workers)
            local s, deadline = nil, ngx.now() + 5
            repeat
                s = b.stats()
                if s.generation == generation and s.workers == workers then break end
                ngx.sleep(0.02)
                ngx.update_time()
            until ngx.now() > deadline
            return s
        end
        local s = wait_for(1, 4) -- (the runner does not wait for every worker)
        ngx.say("workers: ", s.workers, ", generation: ", s.generation)
        we.reload()
        -- the new generation's 4 workers start; the old ones exit, but this
        -- one, which is serving the request
        s = wait_for(2, 5)
        ngx.say("after HUP: workers: ", s.workers, ", generation: ", s.generation)
        b.close()
        ngx.say("closed: ", b.stats() == nil)
    }
}
--- response_body
workers: 4, generation: 1
after HUP: workers: 5, generation: 2
closed: true
