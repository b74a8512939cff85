# A worker that falls so far behind that its unread events were overwritten
# finds out, logs how many it lost, and gets a local "lost" event.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use WorkerEventsTest;

# several workers (and a master: reloads, kills) as the real Test::Nginx needs them
master_on();
workers(2);

log_level('warn');

run_tests();

__DATA__

=== TEST 1: a busy worker loses events and is told exactly how many
--- workers: 2
--- http_config
worker_events_zone ev 128k;
init_worker_by_lua_block {
    local we = require "t.we"
    local ev = require "resty.worker.events"
    local out = ngx.shared.out
    local id = ngx.worker.id()
    ev.register(function(data, event, source, pid)
        if event == "go" then
            if id == 1 then
                -- keep this worker's event loop busy for a while
                ngx.timer.at(0, function()
                    local stop = ngx.now() + 1
                    while ngx.now() < stop do ngx.update_time() end
                    out:set("busy-done", true)
                end)
            else
                ngx.timer.at(0.1, function()
                    local blob = string.rep("x", 1000)
                    for i = 1, 2000 do
                        assert(ev.post("flood", "n", blob))
                        if i % 20 == 0 then ngx.sleep(0.001) end
                    end
                    out:set("flood-done", true)
                end)
            end
        end
    end, "test")
    ev.register(function() out:incr("seen" .. id, 1, 0) end, "flood")
    ev.register(function(data)
        out:incr("lost" .. id, data.count, 0)
        out:incr("lost-events" .. id, 1, 0)
    end, ev.events._source, ev.events.lost)
    we.configure({ interval = 0.05 })
}
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        local out = ngx.shared.out
        assert(we.wait_ready())
        assert(ev.post("test", "go"))
        local deadline = ngx.now() + 6
        local function settled(id)
            return (out:get("seen" .. id) or 0) + (out:get("lost" .. id) or 0) >= 2000
        end
        while not (out:get("busy-done") and out:get("flood-done") and settled(0) and settled(1)) do
            if ngx.now() > deadline then break end
            ngx.sleep(0.05)
        end
        for id = 0, 1 do
            local seen, lost = out:get("seen" .. id) or 0, out:get("lost" .. id) or 0
            ngx.say("worker ", id, ": seen + lost = ", seen + lost,
                    ", lost anything: ", lost > 0,
                    ", told by a lost event: ", (out:get("lost-events" .. id) or 0) > 0 or lost == 0)
        end
    }
}
--- timeout: 10
--- response_body
worker 0: seen + lost = 2000, lost anything: false, told by a lost event: true
worker 1: seen + lost = 2000, lost anything: true, told by a lost event: true
--- error_log eval
qr/\[error\] .*ngx_worker_events: lost \d+ event\(s\): this worker fell behind and they were overwritten in zone "ev"/
