# resty.events options: new()'s checks and messages (raised with a 33
# character prefix, which callers strip as the library's tests do), defaults,
# max_payload_len at and above the limit (up to 16 MiB in a large zone),
# testing mode, the shm option, and init_worker() where it cannot attach.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use WorkerEventsTest;

master_on();
workers(4);

run_tests();

__DATA__

=== TEST 1: every bad option raises the library's message; trimming #"lualib/resty/events/init.lua:62: " leaves it
--- implicit_zone
--- config
location = /t {
    content_by_lua_block {
        local function trim(str)
            return string.sub(str, #"lualib/resty/events/init.lua:62: " + 1)
        end
        local ev = require("resty.events")
        local cases = {
            "x", 1, false,
            { broker_id = "1" }, { broker_id = -1 }, { broker_id = 4 }, { broker_id = 0 / 0 },
            {}, { listening = 123 }, { listening = "/tmp/xxx.sock" },
            { listening = "unix:x", unique_timeout = "1" },
            { listening = "unix:x", unique_timeout = -1 },
            { listening = "unix:x", unique_timeout = 0 },
            { listening = "unix:x", unique_timeout = 0 / 0 },
            { listening = "unix:x", max_queue_len = "1" },
            { listening = "unix:x", max_queue_len = -1 },
            { listening = "unix:x", max_payload_len = "1" },
            { listening = "unix:x", max_payload_len = -1 },
            { listening = "unix:x", max_payload_len = 2^24 + 1 },
            { listening = "unix:x", enable_privileged_agent = "yes" },
            { listening = "unix:x", testing = 1 },
            { listening = "unix:x", shm = 5 },
        }
        for _, opts in ipairs(cases) do
            local ok, err = pcall(ev.new, opts)
            assert(not ok)
            ngx.say(trim(err))
        end
    }
}
--- response_body
Expected a table, got string
Expected a table, got number
Expected a table, got boolean
"broker_id" option must be a number
"broker_id" option is invalid
"broker_id" option is invalid
"broker_id" option is invalid
"listening" option required to start
"listening" option must be a string
"listening" option must start with unix:
optional "unique_timeout" option must be a number
"unique_timeout" must be greater than 0
"unique_timeout" must be greater than 0
"unique_timeout" must be greater than 0
"max_queue_len" option must be a number
"max_queue_len" option is invalid
"max_payload_len" option must be a number
"max_payload_len" option is invalid
"max_payload_len" option is invalid
"enable_privileged_agent" option must be a boolean
"testing" option must be a boolean
"shm" option must be a string
--- no_error_log
[error]



=== TEST 2: defaults are filled into opts, as the library does; _VERSION
--- implicit_zone
--- config
location = /t {
    content_by_lua_block {
        local events = require("resty.events")
        local opts = { listening = "unix:/x", broker_id = 3 }
        local ev = events.new(opts)
        ngx.say("same table: ", ev.opts == opts)
        for _, k in ipairs({ "broker_id", "unique_timeout", "max_queue_len", "max_payload_len",
                             "enable_privileged_agent", "testing" }) do
            ngx.say(k, " = ", tostring(opts[k]))
        end
        ngx.say("version: ", events._VERSION)
    }
}
--- response_body
same table: true
broker_id = 3
unique_timeout = 5
max_queue_len = 10240
max_payload_len = 65536
enable_privileged_agent = false
testing = false
version: 0.3.1
--- no_error_log
[error]



=== TEST 3: max_payload_len (default 64 KB) counts source, event, key and encoded data; above it: the library's error, nothing posted
--- implicit_zone
--- http_config
    init_worker_by_lua_block {
        local we = require "t.we"
        local ev = require("resty.events").new { listening = "unix:/x" }
        _G.ev = ev
        ev:subscribe("s", "*", function(data, event) we.record(event, " ", #data) end)
        assert(ev:init_worker())
    }
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local ev = _G.ev
        local function try(label, target, n)
            local ok, err = ev:publish(target, "s", label, string.rep("a", n))
            ngx.say(label, ": ", ok, " ", err)
        end
        -- the largest payload that fits, found by bisection: then one more byte fails
        local lo, hi = 0, 65536
        while lo < hi do
            local mid = math.ceil((lo + hi) / 2)
            -- same name lengths as the "exactly-at" post below, a source nobody subscribed to
            if ev:publish("all", "b", "exactly-at", string.rep("a", mid)) then
                lo = mid
            else
                hi = mid - 1
            end
        end
        ngx.say("largest string that fits: ", lo >= 65536 - 32 and lo < 65536 - 11)
        try("exactly-at", "all", lo)
        try("above-by-1", "all", lo + 1)
        try("at", "all", 65536)
        try("above", "all", 65537)
        try("key-above", "kkk", 65536)
        try("small", "all", 11)
        ngx.sleep(0.2)
        local got = {}
        for _, l in ipairs(we.take(ngx.worker.id())) do
            got[#got + 1] = l
        end
        ngx.say("handled: ", table.concat(got, ", "))
    }
}
--- response_body
largest string that fits: true
exactly-at: true nil
above-by-1: nil failed to publish event: payload exceeds the limitation (65536)
at: nil failed to publish event: payload exceeds the limitation (65536)
above: nil failed to publish event: payload exceeds the limitation (65536)
key-above: nil failed to publish event: payload exceeds the limitation (65536)
small: true nil
handled: exactly-at 65521, small 11
--- no_error_log
[error]



=== TEST 4: a custom max_payload_len of 100, as the library's test: 100 bytes fail, 11 bytes to a unique key pass
--- implicit_zone
--- http_config
    init_worker_by_lua_block {
        local we = require "t.we"
        local ev = require("resty.events").new { listening = "unix:/x", max_payload_len = 100 }
        _G.ev = ev
        ev:subscribe("*", "*", function(data, event) we.record(event, " ", data) end)
        assert(ev:init_worker())
    }
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local ev = _G.ev
        local ok, err = ev:publish("all", "content_by_lua", "request1", string.rep("a", 100))
        ngx.say(err)
        ok, err = ev:publish("unique_hash", "content_by_lua", "request2", string.rep("a", 100))
        ngx.say(err)
        ok, err = ev:publish("unique_hash", "content_by_lua", "request3", "01234567890")
        ngx.say(err)
        ngx.sleep(0.3)
        local all = {}
        for w = 0, ngx.worker.count() - 1 do
            for _, l in ipairs(we.take(w)) do all[#all + 1] = l end
        end
        ngx.say(table.concat(all, ", "))
    }
}
--- response_body
failed to publish event: payload exceeds the limitation (100)
failed to publish event: payload exceeds the limitation (100)
nil
request3 01234567890
--- no_error_log
[error]



=== TEST 5: 16 MiB payloads in a large enough zone reach all 4 workers intact; 16 MiB + 1 is refused
--- http_config
    worker_events_zone big 100m;
    init_worker_by_lua_block {
        local we = require "t.we"
        local ev = require("resty.events").new {
            listening = "unix:/x", shm = "big", max_payload_len = 16 * 1024 * 1024,
        }
        _G.ev = ev
        ev:subscribe("s", "*", function(data, event)
            we.record(event, " ", #data, " ", data:sub(1, 3) .. data:sub(-3))
        end)
        assert(ev:init_worker())
        ngx.shared.out:incr("ready", 1, 0)
    }
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        assert(we.wait_ready())
        local ev = _G.ev
        local big = "abc" .. string.rep("x", 16 * 1024 * 1024 - 64) .. "xyz"
        assert(ev:publish("all", "s", "big", big))
        local ok, err = ev:publish("all", "s", "too-big", big .. string.rep("y", 64))
        ngx.say("16 MiB + 1: ", err)
        assert(we.wait_all(1, 20))
        we.say_each_equal({ "big " .. #big .. " abcxyz" }, "got it")
    }
}
--- timeout: 30
--- response_body
16 MiB + 1: failed to publish event: payload exceeds the limitation (16777216)
worker 0 got it: true
worker 1 got it: true
worker 2 got it: true
worker 3 got it: true
--- no_error_log
[error]



=== TEST 6: max_payload_len above what the zone takes: the zone's limit answers
--- http_config
    worker_events_zone small 1m;
    init_worker_by_lua_block {
        local ev = require("resty.events").new {
            listening = "unix:/x", shm = "small", max_payload_len = 16 * 1024 * 1024,
        }
        _G.ev = ev
        assert(ev:init_worker())
    }
--- config
location = /t {
    content_by_lua_block {
        local ok, err = _G.ev:publish("all", "s", "e", string.rep("a", 4 * 1024 * 1024))
        ngx.say(ok, " ", (err:gsub("%d+", "N")))
    }
}
--- response_body
nil failed to publish event: payload too large: more than N bytes encoded, the limit for this zone is N
--- no_error_log
[error]



=== TEST 7: testing = true: handlers run inside publish(), in the publisher only, unique keys are not deduplicated, wid is nil
--- implicit_zone
--- http_config
    init_worker_by_lua_block {
        local ev = require("resty.events").new { listening = "unix:/x", testing = true }
        _G.ev = ev
        _G.seen = {}
        ev:subscribe("*", "*", function(data, event, source, wid)
            _G.seen[#_G.seen + 1] = event .. ":" .. tostring(data) .. ":" .. tostring(wid)
        end)
        assert(ev:init_worker())
        _G.ready_in_init = ev:is_ready()
    }
--- config
location = /t {
    content_by_lua_block {
        local ev = _G.ev
        assert(ev:publish("all", "s", "a", 1))
        ngx.say("after publish: ", table.concat(_G.seen, " "))
        assert(ev:publish("key", "s", "u", 2))
        assert(ev:publish("key", "s", "u", 3))
        assert(ev:publish("current", "s", "c", 4))
        ngx.say("all: ", table.concat(_G.seen, " "))
        ngx.say("ready in init: ", _G.ready_in_init, ", now: ", ev:is_ready())
    }
}
--- response_body
after publish: a:1:nil
all: a:1:nil u:2:nil u:3:nil c:4:nil
ready in init: false, now: true
--- no_error_log
[error]



=== TEST 8: init_worker() in init_by_lua returns nil, err; new() there is fine and the workers' init_worker() works
--- implicit_zone
--- http_config
    init_by_lua_block {
        local ev = require("resty.events").new { listening = "unix:/x" }
        _G.ev = ev
        _G.init_res = { ev:init_worker() }
        _G.pub_res = { ev:publish("all", "s", "e") }
    }
    init_worker_by_lua_block {
        assert(_G.ev:init_worker())
    }
--- config
location = /t {
    content_by_lua_block {
        ngx.say("init_worker in init_by_lua: ", tostring(_G.init_res[1]), ", ", _G.init_res[2])
        ngx.say("publish in init_by_lua: ", tostring(_G.pub_res[1]), ", ", _G.pub_res[2])
        ngx.sleep(0.1)
        ngx.say("in a worker: ", _G.ev:is_ready(), " ", _G.ev:publish("all", "s", "e"))
    }
}
--- response_body
init_worker in init_by_lua: nil, init_worker() is for worker processes (init_worker_by_lua* or later), not init_by_lua*
publish in init_by_lua: nil, failed to publish event: init_worker() is for worker processes (init_worker_by_lua* or later), not init_by_lua*
in a worker: true true
--- no_error_log
[error]



=== TEST 9: shm names a zone; a lua_shared_dict name means the default zone; an unknown name fails in init_worker()
--- http_config
    worker_events_zone mine 1m;
    lua_shared_dict dict 1m;
    init_worker_by_lua_block {
        local new = require("resty.events").new
        _G.r = {}
        for _, shm in ipairs({ "mine", "dict", "nope" }) do
            local ev = new { listening = "unix:/x", shm = shm }
            local ok, err = ev:init_worker()
            _G.r[#_G.r + 1] = shm .. ": " .. tostring(ok) .. " " .. tostring(err)
                              .. (ok and (" zone=" .. ev:stats().zone) or "")
        end
    }
--- config
location = /t {
    content_by_lua_block {
        ngx.say(table.concat(_G.r, "\n"))
    }
}
--- response_body
mine: true nil zone=mine
dict: true nil zone=mine
nope: nil shm "nope" not found
--- no_error_log
[error]



=== TEST 10: options the bus has no use for are accepted: broker_id, listening, max_queue_len, enable_privileged_agent
--- implicit_zone
--- http_config
    init_worker_by_lua_block {
        local we = require "t.we"
        local ev = require("resty.events").new {
            listening = "unix:/does/not/exist.sock", broker_id = 3, max_queue_len = 1,
            enable_privileged_agent = true,
        }
        _G.ev = ev
        ev:subscribe("s", "*", function(data, event) we.record(event) end)
        assert(ev:init_worker())
        ngx.shared.out:incr("ready", 1, 0)
    }
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        assert(we.wait_ready())
        -- max_queue_len = 1 is no queue limit: 1000 events all arrive
        for i = 1, 1000 do assert(_G.ev:publish("all", "s", "e")) end
        assert(we.wait_all(1000))
        ngx.say("every worker got 1000: ", we.count(0) == 1000 and we.count(3) == 1000)
    }
}
--- response_body
every worker got 1000: true
--- no_error_log
[error]
[warn]



=== TEST 11: ngx.process says whether the platform has a privileged agent (OpenResty: yes, Debian's nginx: no); enable_privileged_agent = true changes nothing for workers
--- implicit_zone
--- http_config
    init_by_lua_block {
        local process = require "ngx.process"
        _G.agent = { process.enable_privileged_agent() }
        _G.ev = require("resty.events").new { listening = "unix:/x", enable_privileged_agent = true }
    }
    init_worker_by_lua_block {
        assert(_G.ev:init_worker())
    }
--- config
location = /t {
    content_by_lua_block {
        ngx.say("enable_privileged_agent(): ", tostring(_G.agent[1]), ", ", _G.agent[2])
        ngx.say("process type: ", require("ngx.process").type())
        local got
        _G.ev:subscribe("s", "e", function(_, _, _, wid) got = wid end)
        assert(_G.ev:publish("all", "s", "e"))
        ngx.sleep(0.1)
        ngx.say("a worker still gets events: ", got == ngx.worker.id())
    }
}
--- response_body eval
($NginxPlatform::Agent ? "enable_privileged_agent(): true, nil\n"
 : "enable_privileged_agent(): nil, missing privileged agent process patch in the nginx core\n")
. "process type: worker\na worker still gets events: true\n"
--- no_error_log
[error]



=== TEST 12: near max_payload_len, the Lua encoder's post and the native one agree on every size (a metatable leaves a table to the native encoder), and the limit is exact: 300 - 7 B of names = 293 B of data = 6 + k (array), 31 + k (table), 30 + k (nested), whatever order a table is walked in
--- implicit_zone
--- http_config
    init_worker_by_lua_block {
        local ev = require("resty.events").new { listening = "unix:/x", max_payload_len = 300 }
        _G.ev = ev
        assert(ev:init_worker())
    }
--- config
location = /t {
    content_by_lua_block {
        local ev = _G.ev
        local mt = {}
        local mismatches, largest = 0, {}
        for k = 150, 300 do
            for _, shape in ipairs({ "array", "table", "nested" }) do
                local s = string.rep("a", k)
                local plain, native
                if shape == "array" then
                    plain, native = { s }, setmetatable({ s }, mt)
                elseif shape == "table" then
                    plain = { s = s, n = 1.5, 7, true }
                    native = setmetatable({ s = s, n = 1.5, 7, true }, mt)
                else
                    plain = { { { s } }, x = { y = -0.0 } }
                    native = setmetatable({ { { s } }, x = { y = -0.0 } }, mt)
                end
                local ok1, err1 = ev:publish("all", "nobody", "e", plain)
                local ok2, err2 = ev:publish("all", "nobody", "e", native)
                if ok1 ~= ok2 or err1 ~= err2 then
                    mismatches = mismatches + 1
                    ngx.say("mismatch at ", k, " ", shape, ": ", tostring(err1), " / ", tostring(err2))
                end
                if ok1 then largest[shape] = k end
            end
        end
        ngx.say("mismatches: ", mismatches)
        ngx.say("largest: ", largest.array, " ", largest.table, " ", largest.nested)
    }
}
--- response_body
mismatches: 0
largest: 287 262 263
--- no_error_log
[error]
