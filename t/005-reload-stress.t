# 20 reloads (HUP) while requests and posts flow: no crash, no [alert],
# and the workers of the last generation still exchange events.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use WorkerEventsTest;

# several workers (and a master: reloads, kills) as the real Test::Nginx needs them
master_on();
workers(2);

log_level('warn');

run_tests();

__DATA__

=== TEST 1: 20 reloads under posting
--- workers: 2
--- http_config
worker_events_zone ev 1m;
lua_shared_dict out 4m;
init_worker_by_lua_block {
    local we = require "t.we"
    local ev = require "resty.worker.events"
    ev.register(function(data, event, source, pid)
        ngx.shared.out:incr("got", 1, 0)
        if event == "probe" then we.record("probe ", data) end
    end, "stress")
    we.configure({ interval = 0.05 })
    -- every worker of every generation posts in the background
    local function tick(premature)
        if premature or ngx.worker.exiting() then return end
        for i = 1, 5 do ev.post("stress", "tick", { i = i, s = string.rep("x", 200) }) end
        ngx.timer.at(0.01, tick)
    end
    ngx.timer.at(0, tick)
}
--- config
location = /reload {
    content_by_lua_block {
        local ev = require "resty.worker.events"
        for i = 1, 20 do assert(ev.post("stress", "req", i)) end
        require("t.we").reload()
        ngx.sleep(0.2)
        ngx.say("ok")
    }
}
location = /check {
    content_by_lua_block {
        local we = require "t.we"
        ngx.sleep(0.5) -- let the last generation settle
        for id = 0, ngx.worker.count() - 1 do we.take(id) end
        local ev = require "resty.worker.events"
        assert(ev.post("stress", "probe", "alive"))
        ngx.say("all got the probe: ", we.wait_all(1, 3))
        ngx.say("events flowed: ", ngx.shared.out:get("got") > 1000)
    }
}
--- request eval
[ (map { "GET /reload" } 1..20), "GET /check" ]
--- response_body eval
[ (map { "ok\n" } 1..20), "all got the probe: true\nevents flowed: true\n" ]
--- timeout: 10
--- no_error_log
[alert]
[crit]
[emerg]
[error]
exited on signal
