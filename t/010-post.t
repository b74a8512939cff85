# post(): asynchronous broadcast to every worker (the poster included), one
# global order, payloads that arrive equal, clear errors.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use WorkerEventsTest;

# several workers (and a master: reloads, kills) as the real Test::Nginx needs them
master_on();
workers(2);

our $HttpConfig = <<'_EOC_';
    init_worker_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        ev.register(function(data, event, source, pid)
            we.record(event, " ", we.show(data))
        end, "test")
        we.configure()
    }
_EOC_

run_tests();

__DATA__

=== TEST 1: post is asynchronous; the poster gets it on its next poll
--- http_config eval: $::HttpConfig
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        assert(we.wait_ready())
        ngx.say(ev.post("test", "hello", "world"))
        ngx.say("right after post: ", we.count(ngx.worker.id()))
        ngx.say(ev.poll())
        ngx.say("after poll: ", we.count(ngx.worker.id()))
        assert(we.wait_all(1))
        we.say_common()
    }
}
--- response_body
true
right after post: 0
done
after poll: 1
all 2 workers:
hello "world"



=== TEST 2: payloads arrive equal in every worker
--- workers: 3
--- http_config eval: $::HttpConfig
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        assert(we.wait_ready())
        local bin = {}
        for i = 0, 255 do bin[#bin + 1] = string.char(i) end
        local values = {
            { "nil", nil },
            { "true", true },
            { "false", false },
            { "int", 42 },
            { "neg", -7 },
            { "float", 3.25 },
            { "big", 2^53 },
            { "huge", 1e300 },
            { "empty_string", "" },
            { "binary", table.concat(bin) },
            { "utf8", "h\195\169llo" },
            { "null", ngx.null },
            { "empty_table", {} },
            { "array", { 1, "two", 3.5, false } },
            { "map", { a = 1, b = { c = { d = "deep" } } } },
            { "mixed", { 10, 20, x = "y", [100] = "sparse", [2.5] = "float key", [true] = "bool key" } },
            { "nulls", { ngx.null, ngx.null, k = ngx.null } },
        }
        for _, v in ipairs(values) do
            assert(ev.post("test", v[1], v[2]))
        end
        assert(we.wait_all(#values))
        -- what the poster sent, rendered the same way
        local sent = {}
        for _, v in ipairs(values) do sent[#sent + 1] = v[1] .. " " .. we.show(v[2]) end
        we.say_each_equal(sent, "got what was sent")
    }
}
--- response_body
worker 0 got what was sent: true
worker 1 got what was sent: true
worker 2 got what was sent: true



=== TEST 3: one global order: three workers post at once, all see the same sequence
--- workers: 3
--- http_config
init_worker_by_lua_block {
    local we = require "t.we"
    local ev = require "resty.worker.events"
    ev.register(function(data, event, source, pid)
        if event == "go" then
            -- every worker posts a burst as soon as it hears "go"
            ngx.timer.at(0, function()
                for i = 1, 200 do
                    ev.post("order", "n", ngx.worker.id() .. ":" .. i)
                    if i % 20 == 0 then ngx.sleep(0) end
                end
            end)
        else
            we.record(data)
        end
    end, "order")
    we.configure({ interval = 0.01 })
}
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        assert(we.wait_ready())
        assert(ev.post("order", "go"))
        ngx.say("all delivered: ", we.wait_all(600, 5))
        local ref = table.concat(we.take(0), ",")
        for id = 1, 2 do
            ngx.say("worker ", id, " same order as worker 0: ", table.concat(we.take(id), ",") == ref)
        end
        -- each poster's own events stay in its posting order
        local last = {}
        local in_order = true
        for item in ref:gmatch("[^,]+") do
            local w, i = item:match("(%d+):(%d+)")
            i = tonumber(i)
            if (last[w] or 0) + 1 ~= i then in_order = false end
            last[w] = i
        end
        ngx.say("per-poster order kept: ", in_order)
    }
}
--- timeout: 8
--- response_body
all delivered: true
worker 1 same order as worker 0: true
worker 2 same order as worker 0: true
per-poster order kept: true



=== TEST 4: data that cannot be serialised is refused with nil, err
--- http_config eval: $::HttpConfig
--- config
location = /t {
    content_by_lua_block {
        local ffi = require "ffi"
        local ev = require "resty.worker.events"
        local cycle = {}
        cycle.self = cycle
        local deep = {}
        local t = deep
        for i = 1, 1100 do t.next = {}; t = t.next end
        local cases = {
            { "function", function() end },
            { "userdata", io.stdout },
            { "cdata", ffi.new("int[1]") },
            { "thread", coroutine.create(function() end) },
            { "in a table", { ok = 1, bad = { print } } },
            { "table key", { [{}] = 1 } },
            { "cycle", cycle },
            { "too deep", deep },
        }
        for _, c in ipairs(cases) do
            local ok, err = ev.post("test", "bad", c[2])
            ngx.say(c[1], ": ", ok, " ", err)
        end
        ngx.say("still works: ", ev.post("test", "good", 1))
    }
}
--- response_body
function: nil failed posting event "bad" by "test"; cannot serialise function: type not supported
userdata: nil failed posting event "bad" by "test"; cannot serialise userdata: type not supported
cdata: nil failed posting event "bad" by "test"; cannot serialise cdata: type not supported
thread: nil failed posting event "bad" by "test"; cannot serialise thread: type not supported
in a table: nil failed posting event "bad" by "test"; cannot serialise function: type not supported
table key: nil failed posting event "bad" by "test"; cannot serialise table: table key must be a number, string or boolean
cycle: nil failed posting event "bad" by "test"; cannot serialise table: excessive nesting (1001)
too deep: nil failed posting event "bad" by "test"; cannot serialise table: excessive nesting (1001)
still works: true
--- error_log
worker-events: failed posting event "bad" by "test"; cannot serialise function
--- no_error_log
[alert]
[crit]



=== TEST 5: source and event are required
--- http_config eval: $::HttpConfig
--- config
location = /t {
    content_by_lua_block {
        local ev = require "resty.worker.events"
        ngx.say(ev.post(nil, "e"))
        ngx.say(ev.post("", "e"))
        ngx.say(ev.post(1, "e"))
        ngx.say(ev.post("s", nil))
        ngx.say(ev.post("s", ""))
        ngx.say(ev.post("s", {}))
        ngx.say(ev.post_local("", "e"))
        ngx.say(ev.post_local("s", false))
        ngx.say(ev.post("s", "e", nil, {}))
    }
}
--- response_body
nilsource is required
nilsource is required
nilsource is required
nilevent is required
nilevent is required
nilevent is required
nilsource is required
nilevent is required
nilfailed posting event "e" by "s"; unique must be a string or a number, got table



=== TEST 6: posting before configure is a nil, err (no crash)
--- http_config
--- config
location = /t {
    content_by_lua_block {
        local ev = require "resty.worker.events"
        ngx.say(ev.configured())
        ngx.say(ev.post("s", "e", "data"))
        ngx.say(ev.poll())
        ngx.say(ev.post_local("s", "e", "data"))
        ngx.say(ev.poll())
    }
}
--- response_body
false
nilfailed posting event "e" by "s"; events not configured, call configure() first
done
true
done



=== TEST 7: the payload is never written to the log
--- http_config eval: $::HttpConfig
--- log_level: debug
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        assert(we.wait_ready())
        assert(ev.post("test", "secret", { password = "hunter2-SECRET" }))
        assert(ev.post("test", "bad", { password = "hunter2-SECRET", f = print }) == nil)
        ev.register(function() error("boom") end, "test", "secret")
        assert(we.wait_all(1))
        ngx.say("ok")
    }
}
--- response_body
ok
--- no_error_log
hunter2-SECRET



=== TEST 8: names longer than 65535 bytes are refused
--- http_config eval: $::HttpConfig
--- config
location = /t {
    content_by_lua_block {
        local ev = require "resty.worker.events"
        local long = string.rep("s", 70000)
        local ok, err = ev.post(long, "e")
        ngx.say(ok, " ", err:match("; ([^;]*)$"))
        ok, err = ev.post("s", long)
        ngx.say(ok, " ", err:match("; ([^;]*)$"))
        ok, err = ev.post("s", "e", nil, long)
        ngx.say(ok, " ", err:match("; ([^;]*)$"))
    }
}
--- response_body
nil source is too long: 70000 bytes, at most 65535
nil event is too long: 70000 bytes, at most 65535
nil unique is too long: 70000 bytes, at most 65535
--- error_log
is too long



=== TEST 9: 300 random nested values arrive equal in every worker, from the Lua encoder and from the native one
--- workers: 3
--- http_config eval: $::HttpConfig
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        assert(we.wait_ready())
        math.randomseed(20261123)
        local function rnd_string()
            local t = {}
            for i = 1, math.random(0, 40) do t[i] = string.char(math.random(0, 255)) end
            return table.concat(t)
        end
        local function rnd_value(depth)
            local r = math.random(1, depth > 4 and 6 or 9)
            if r == 1 then return true
            elseif r == 2 then return false
            elseif r == 3 then return math.random(-1e6, 1e6)
            elseif r == 4 then return math.random() * 1e6
            elseif r == 5 then return rnd_string()
            elseif r == 6 then return ngx.null
            else
                local t = {}
                for i = 1, math.random(0, 5) do t[i] = rnd_value(depth + 1) end
                for _ = 1, math.random(0, 5) do
                    local k = math.random(1, 3)
                    local key = k == 1 and rnd_string() or (k == 2 and math.random(-100, 100) or (math.random() > 0.5))
                    if key ~= "" then t[key] = rnd_value(depth + 1) end
                end
                return t
            end
        end
        local sent = {}
        for _ = 1, 300 do
            local v = rnd_value(0)
            assert(ev.post("test", "rnd", v))
            sent[#sent + 1] = "rnd " .. we.show(v)
            if type(v) == "table" then
                -- the same value again, left to the native encoder by a metatable
                assert(ev.post("test", "rnd", setmetatable(v, {})))
                sent[#sent + 1] = "rnd " .. we.show(v)
            end
        end
        assert(we.wait_all(#sent))
        we.say_each_equal(sent, "got what was sent")
    }
}
--- response_body
worker 0 got what was sent: true
worker 1 got what was sent: true
worker 2 got what was sent: true



=== TEST 10: edge payloads arrive equal: 1000 levels deep (the deepest post accepts), multi-byte lengths, integers past 2^53, NaN keys left out
--- workers: 2
--- http_config eval: $::HttpConfig
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        assert(we.wait_ready())
        local deep = "bottom"
        for _ = 1, 1000 do deep = { deep } end
        local values = {
            deep,
            string.rep("x", 127), string.rep("y", 128), string.rep("z", 70000), "",
            2^53 + 2, -2^63, 2^63, 1/0, -1/0, 0.1, -0.0,
            { [1/0] = "inf key", [2^60] = "big key", [true] = false, [ngx.null] = nil },
            { 1, nil, 3, n = ngx.null },
        }
        local sent = {}
        for i, v in ipairs(values) do
            assert(ev.post("test", "edge", v))
            sent[i] = "edge " .. we.show(v)
        end
        assert(we.wait_all(#values))
        we.say_each_equal(sent, "got what was sent")
    }
}
--- response_body
worker 0 got what was sent: true
worker 1 got what was sent: true
--- no_error_log
[error]
[alert]



=== TEST 11: the Lua decoder never accepts bytes the native one refuses: random values (tables around the 4 entries it decodes without a loop, 1- and 2-byte lengths; mutations make longer ones), every truncation and 20000 mutations of them
--- workers: 1
--- http_config eval: $::HttpConfig
--- config
location = /t {
    content_by_lua_block {
        local ffi = require "ffi"
        local payload = require "ngx_worker_events.payload"
        local we = require "t.we"
        local native_ok = we.native_accepts
        local lua_ok = function(s) return select(2, we.lua_decode(s)) end
        math.randomseed(20261206)
        local function rnd_value(depth)
            local r = math.random(1, depth > 3 and 6 or 9)
            if r == 1 then return math.random() > 0.5
            elseif r == 2 then return math.random(-1e6, 1e6)
            elseif r == 3 then return math.random() * 1e6
            elseif r == 4 then return string.rep("s", ({ 0, 5, 127, 128, 300 })[math.random(1, 5)])
            elseif r == 5 then return ngx.null
            elseif r == 6 then return string.rep("k", math.random(0, 3))
            else
                local t = {}
                for i = 1, math.random(0, 6) do t[i] = rnd_value(depth + 1) end
                for _ = 1, math.random(0, 6) do t["k" .. math.random(1, 50)] = rnd_value(depth + 1) end
                return t
            end
        end
        local good, accepted, refused, wrong = 0, 0, 0, 0
        local function try(s)
            local l, n = lua_ok(s), native_ok(s)
            if l and not n then
                wrong = wrong + 1
                if wrong <= 3 then ngx.say("Lua accepts what native refuses: ", ngx.encode_base64(s)) end
            end
            if l then accepted = accepted + 1 else refused = refused + 1 end
        end
        local samples = {}
        while #samples < 200 do
            local p, len = payload.encode(rnd_value(0))
            if p then
                local s = ffi.string(p, len)
                if lua_ok(s) and native_ok(s) then good = good + 1 end
                samples[#samples + 1] = s
            end
        end
        for _, s in ipairs(samples) do
            for cut = 0, math.min(#s - 1, 400) do try(s:sub(1, cut)) end
        end
        local mutate = require("t.we").mutate
        for _ = 1, 20000 do try(mutate(samples[math.random(1, #samples)])) end
        ngx.say("samples both decoders accept: ", good, " of ", #samples)
        ngx.say("Lua accepts what native refuses: ", wrong)
        ngx.say("some accepted, some refused: ", accepted > 100 and refused > 1000)
    }
}
--- response_body
samples both decoders accept: 200 of 200
Lua accepts what native refuses: 0
some accepted, some refused: true
--- no_error_log
[error]
[alert]



=== TEST 12: payloads nesting tables 900 deep decode in linear time, as the native decoder judges them: a bad byte at the bottom, a nil value at every level, a key that differs at every level, well formed
--- workers: 1
--- http_config eval: $::HttpConfig
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local native_ok, decode = we.native_accepts, we.lua_decode
        local int = "\4\1\0\0\0\0\0\0\0"
        -- a level: {a = inner, b = last} in the payload's bytes
        local function nest(depth, bottom, last, key_b)
            local parts = {}
            for _ = 1, depth do parts[#parts + 1] = "\7\0\2\6\1a" end
            parts[#parts + 1] = bottom
            for _ = 1, depth do parts[#parts + 1] = "\6\1" .. key_b .. last end
            return table.concat(parts)
        end
        local cases = {
            { "a bad byte at the bottom", nest(900, "\9", int, "b") },
            { "a nil value at every level", nest(900, int, "\0", "b") },
            { "a key that differs at every level", nest(900, int, int, "c") },
            { "well formed", nest(900, int, int, "b") },
        }
        for _, c in ipairs(cases) do
            local v, ok = decode(c[2])
            local native = native_ok(c[2])
            local depth = 0
            while type(v) == "table" do
                depth = depth + 1
                v = v.a
            end
            ngx.say(c[1], ": ", ok, " (native: ", native, "), ", depth, " levels")
        end
    }
}
--- response_body
a bad byte at the bottom: false (native: false), 0 levels
a nil value at every level: true (native: true), 900 levels
a key that differs at every level: true (native: true), 900 levels
well formed: true (native: true), 900 levels
--- timeout: 10
--- no_error_log
[error]
[alert]
