# Nothing a Lua caller passes crashes a worker or corrupts the zone: every
# entry point is called with every combination of odd arguments.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use WorkerEventsTest;

# several workers (and a master: reloads, kills) as the real Test::Nginx needs them
master_on();
workers(2);

log_level('warn');

run_tests();

__DATA__

=== TEST 1: all entry points, all odd arguments; the workers keep working
--- workers: 2
--- http_config
init_worker_by_lua_block {
    local we = require "t.we"
    local ev = require "resty.worker.events"
    ev.register(function(data, event) we.record(event, " ", data) end, "test", "probe")
    we.configure()
}
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        local ffi = require "ffi"
        assert(we.wait_ready())
        local cyc = {}
        cyc[1] = cyc
        local odd = { nil, false, true, 0, -1, 1e308, 0/0, "", "x", string.rep("y", 70000),
                      {}, cyc, print, ngx.null, io.stdout, ffi.new("int[1]"),
                      coroutine.create(function() end) }
        local n_odd = 17
        local funcs = { "configure", "configured", "event_list", "poll", "post", "post_local",
                        "register", "register_weak", "unregister", "stats" }
        local calls, raised, returned = 0, 0, 0
        for _, name in ipairs(funcs) do
            for i = 1, n_odd do
                for j = 1, n_odd do
                    for k = 1, 3 do
                        local ok = pcall(ev[name], odd[i], odd[j], odd[(i + j + k) % n_odd + 1], odd[k])
                        calls = calls + 1
                        if ok then returned = returned + 1 else raised = raised + 1 end
                    end
                end
            end
        end
        -- drain whatever the odd posts put into the log
        for _ = 1, 10 do ev.poll() end
        for id = 0, ngx.worker.count() - 1 do we.take(id) end
        ngx.say("calls: ", calls, ", all returned or raised: ", calls == raised + returned)
        assert(ev.post("test", "probe", "still fine"))
        ngx.say("every worker still gets events: ", we.wait_all(1, 3))
        ngx.say("configured: ", ev.configured())
    }
}
--- timeout: 10
--- response_body
calls: 8670, all returned or raised: true
every worker still gets events: true
configured: true
--- no_error_log
[alert]
[crit]
[emerg]
exited on signal
