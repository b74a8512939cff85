# Large payloads: up to three quarters of the zone's log (a 1m zone carries a
# 500 KB event, as a 1m lua_shared_dict does for the Lua library); beyond that
# a clear error.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use WorkerEventsTest;

# several workers (and a master: reloads, kills) as the real Test::Nginx needs them
master_on();
workers(2);

log_level('warn');

run_tests();

__DATA__

=== TEST 1: 1 KB, 64 KB and 1 MB payloads arrive intact in every worker
--- workers: 3
--- http_config
worker_events_zone ev 8m;
init_worker_by_lua_block {
    local we = require "t.we"
    local ev = require "resty.worker.events"
    ev.register(function(data, event)
        we.record(event, " ", #data.blob, " ", ngx.md5(data.blob), " ", data.n)
    end, "test")
    we.configure()
}
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        assert(we.wait_ready())
        local sizes = { ["1k"] = 1024, ["64k"] = 65536, ["1m"] = 1048576 }
        local expect = {}
        for _, name in ipairs({ "1k", "64k", "1m" }) do
            local parts = {}
            for i = 1, sizes[name] / 16 do parts[i] = string.format("%015d\0", i) end
            local blob = table.concat(parts)
            assert(ev.post("test", name, { blob = blob, n = #parts }))
            expect[#expect + 1] = name .. " " .. #blob .. " " .. ngx.md5(blob) .. " " .. #parts
        end
        assert(we.wait_all(3))
        we.say_each_equal(expect, "intact")
    }
}
--- response_body
worker 0 intact: true
worker 1 intact: true
worker 2 intact: true
--- no_error_log
[error]



=== TEST 2: a 500 KB event in a 1m zone reaches every worker
--- workers: 3
--- http_config
worker_events_zone ev 1m;
init_worker_by_lua_block {
    local we = require "t.we"
    local ev = require "resty.worker.events"
    ev.register(function(data, event)
        we.record(event, " ", #data, " ", ngx.md5(data))
    end, "test")
    we.configure()
}
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        assert(we.wait_ready())
        local blob = string.rep("0123456789abcdef", 500 * 1024 / 16)
        ngx.say("posted: ", ev.post("test", "500k", blob))
        ngx.say("limit is at least half the zone: ", ev.stats().max_record >= 512 * 1024)
        assert(we.wait_all(1))
        we.say_each_equal({ "500k " .. #blob .. " " .. ngx.md5(blob) }, "intact")
    }
}
--- response_body
posted: true
limit is at least half the zone: true
worker 0 intact: true
worker 1 intact: true
worker 2 intact: true
--- no_error_log
[error]



=== TEST 3: too large a payload fails with the size and the limit
--- http_config
worker_events_zone ev 1m;
--- config
location = /t {
    content_by_lua_block {
        local ev = require "resty.worker.events"
        assert(ev.configure({ shm = "ev" }))
        local limit = ev.stats().max_record
        ngx.say(ev.post("test", "big", string.rep("x", 2 * limit)))
        ngx.say("still works: ", ev.post("test", "small", "x"))
        -- the largest that fits
        local ok = ev.post("test", "fits", string.rep("x", limit - 100))
        ngx.say("just below the limit: ", ok)
    }
}
--- response_body_like chomp
\Anilfailed posting event "big" by "test"; payload too large: (?:more than )?\d+ bytes encoded, the limit for this zone is \d+
still works: true
just below the limit: true
\z
--- error_log
payload too large
