# resty.events (lua-resty-events 0.3.x API) on the bus: targets, callback
# arguments and order, subscriptions by id, raised errors, callback errors,
# is_ready, the broker location, and the library's log lines. 4 workers.
# The nginx.conf is the library's synopsis: new() in init_by_lua, a
# `server { listen unix:...; ev:run() }` block, no zone directive.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use WorkerEventsTest;

master_on();
workers(4);

our $HttpConfig = <<'_EOC_';
    init_by_lua_block {
        local opts = { listening = "unix:$TEST_NGINX_HTML_DIR/events.sock" }
        _G.ev = require("resty.events").new(opts)
    }
    init_worker_by_lua_block {
        local we = require "t.we"
        local ev = _G.ev
        ev:subscribe("*", "*", function(data, event, source, wid)
            if source == "t" then
                we.record(event, " ", we.show(data), " wid=", wid == ngx.worker.id() and "me" or wid)
            end
        end)
        local ok, err = ev:init_worker()
        if not ok then ngx.log(ngx.ERR, "failed to init events: ", err) end
        -- as the library's tests assert
        if ev:is_ready() then ngx.log(ngx.ERR, "ready inside init_worker") end
        ngx.shared.out:incr("ready", 1, 0)
    }
    server {
        listen unix:$TEST_NGINX_HTML_DIR/events.sock;
        location / {
            content_by_lua_block {
                _G.ev:run()
            }
        }
    }
_EOC_

run_tests();

__DATA__

=== TEST 1: "all" reaches every worker once, the publisher included, with the publisher's ngx.worker.id() as wid
--- implicit_zone
--- http_config eval: $::HttpConfig
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        assert(we.wait_ready())
        assert(_G.ev:is_ready())
        for i = 1, 3 do
            assert(_G.ev:publish("all", "t", "e" .. i, { n = i }) == true)
        end
        assert(we.wait_all(3))
        local me = ngx.worker.id()
        local others = {}
        for id = 0, ngx.worker.count() - 1 do
            local lines = table.concat(we.take(id), "|")
            if id == me then
                ngx.say("publisher: ", lines)
            else
                others[#others + 1] = lines:gsub("wid=" .. me, "wid=publisher")
            end
        end
        ngx.say("others: ", #others, " x ", others[1])
        for i = 2, #others do assert(others[i] == others[1], others[i]) end
    }
}
--- response_body
publisher: e1 {["n"]=1} wid=me|e2 {["n"]=2} wid=me|e3 {["n"]=3} wid=me
others: 3 x e1 {["n"]=1} wid=publisher|e2 {["n"]=2} wid=publisher|e3 {["n"]=3} wid=publisher
--- no_error_log
[error]
[warn]



=== TEST 2: "current" stays in the publisher, wid is nil and the data is the same Lua value (not serialised)
--- implicit_zone
--- http_config eval: $::HttpConfig
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        assert(we.wait_ready())
        local ev = _G.ev
        local value = { f = function() end }
        local same
        local id = ev:subscribe("t", "local", function(data) same = rawequal(data, value) end)
        assert(ev:publish("current", "t", "local", value) == true)
        ngx.sleep(0.2)
        ev:unsubscribe(id)
        ngx.say("same table: ", same)
        ngx.say("publisher: ", table.concat(we.take(ngx.worker.id()), "|"))
        local others = 0
        for w = 0, ngx.worker.count() - 1 do
            if w ~= ngx.worker.id() then others = others + #we.take(w) end
        end
        ngx.say("other workers got: ", others)
    }
}
--- response_body_like
^same table: true
publisher: local \{\["f"\]=function: (?:builtin: )?0x[0-9a-f]+\} wid=nil
other workers got: 0
--- no_error_log
[error]



=== TEST 3: a unique target runs on exactly one worker; the same key is dropped everywhere for unique_timeout, then runs again
--- implicit_zone
--- http_config eval: $::HttpConfig
--- log_level: debug
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        assert(we.wait_ready())
        local ev = _G.ev
        local runs = we.take_total
        -- the key is live for 5 s (the default): posted 3 times, runs once
        for i = 1, 3 do assert(ev:publish("key-1", "t", "u" .. i, i) == true) end
        ngx.sleep(0.3)
        ngx.say("key-1 x3: ran ", runs(), " time(s)")
        -- other keys are independent
        for i = 1, 20 do assert(ev:publish("k" .. i, "t", "many", i)) end
        ngx.sleep(0.3)
        ngx.say("20 keys: ran ", runs(), " time(s)")
    }
}
--- response_body
key-1 x3: ran 1 time(s)
20 keys: ran 20 time(s)
--- grep_error_log eval
qr/unique event is duplicate on worker #\d+: key-1|event published to \d+ workers/
--- grep_error_log_out eval
qr/\Aevent published to 1 workers\n(?:unique event is duplicate on worker #\d+: key-1\n){2}(?:event published to 1 workers\n){20}\z/
--- no_error_log
[error]



=== TEST 4: after unique_timeout the key runs again (unique_timeout = 0.2)
--- implicit_zone
--- http_config eval
my $c = $::HttpConfig;
$c =~ s/listening = /unique_timeout = 0.2, listening = /;
$c
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        assert(we.wait_ready())
        local ev = _G.ev
        local runs = we.take_total
        assert(ev:publish("k", "t", "a", 1))
        assert(ev:publish("k", "t", "b", 2))
        ngx.sleep(0.5)
        assert(ev:publish("k", "t", "c", 3))
        ngx.sleep(0.2)
        ngx.say("ran ", runs(), " time(s)")
    }
}
--- response_body
ran 2 time(s)
--- no_error_log
[error]



=== TEST 5: callbacks run "*"/"*", then source/"*", then source/event, in subscription order within a list; ids are "1", "2", ...
--- implicit_zone
--- http_config
    init_worker_by_lua_block {
        local ev = require("resty.events").new { listening = "unix:/x" }
        _G.ev = ev
        local seen = {}
        _G.seen = seen
        local function cb(name)
            return function(data, event, source, wid) seen[#seen + 1] = name end
        end
        _G.ids = {
            ev:subscribe("s", "e", cb("s/e #1")),
            ev:subscribe("s", "*", cb("s/* #1")),
            ev:subscribe("*", "*", cb("*/* #1")),
            ev:subscribe("s", "e", cb("s/e #2")),
            ev:subscribe("*", "*", cb("*/* #2")),
            ev:subscribe("s", "other", cb("s/other")),
            ev:subscribe("x", "*", cb("x/*")),
        }
        assert(ev:init_worker())
    }
--- config
location = /t {
    content_by_lua_block {
        ngx.say("ids: ", table.concat(_G.ids, ","))
        assert(_G.ev:publish("all", "s", "e"))
        ngx.sleep(0.2)
        ngx.say(table.concat(_G.seen, ", "))
    }
}
--- response_body
ids: 1,2,3,4,5,6,7
*/* #1, */* #2, s/* #1, s/e #1, s/e #2
--- no_error_log
[error]



=== TEST 6: unsubscribe(id) at each level, and from inside a callback; an unknown id is a no-op
--- implicit_zone
--- http_config
    init_worker_by_lua_block {
        local ev = require("resty.events").new { listening = "unix:/x" }
        _G.ev = ev
        assert(ev:init_worker())
    }
--- config
location = /t {
    content_by_lua_block {
        local ev = _G.ev
        local seen = {}
        local function cb(name) return function() seen[#seen + 1] = name end end
        local all = ev:subscribe("*", "*", cb("*/*"))
        local src = ev:subscribe("s", "*", cb("s/*"))
        local one = ev:subscribe("s", "e", cb("s/e"))
        local once
        once = ev:subscribe("s", "e", function()
            seen[#seen + 1] = "once"
            ev:unsubscribe(once)
        end)
        local function round(label)
            seen = {}
            assert(ev:publish("all", "s", "e"))
            ngx.sleep(0.1)
            ngx.say(label, ": ", table.concat(seen, " "))
        end
        round("all four")
        round("once is gone")
        ev:unsubscribe(all)
        round("without */*")
        ev:unsubscribe(src)
        round("without s/*")
        ev:unsubscribe(one)
        round("none")
        ev:unsubscribe("999")
        ev:unsubscribe(one)
        round("unknown ids")
    }
}
--- response_body
all four: */* s/* s/e once
once is gone: */* s/* s/e
without */*: s/* s/e
without s/*: s/e
none: 
unknown ids: 
--- no_error_log
[error]



=== TEST 7: programming errors raise the library's messages at the caller
--- implicit_zone
--- http_config
    init_worker_by_lua_block {
        _G.ev = require("resty.events").new { listening = "unix:/x" }
        assert(_G.ev:init_worker())
    }
--- config
location = /t {
    content_by_lua_block {
        local ev = _G.ev
        local cases = {
            { "publish", nil, "s", "e" }, { "publish", "", "s", "e" }, { "publish", 1, "s", "e" },
            { "publish", "all", nil, "e" }, { "publish", "all", "", "e" },
            { "publish", "all", "s", nil }, { "publish", "all", "s", "" },
            { "subscribe", nil, "e", print }, { "subscribe", "", "e", print },
            { "subscribe", "s", nil, print }, { "subscribe", "s", "", print },
            { "subscribe", "s", "e", nil }, { "subscribe", "s", "e", "f" },
            { "unsubscribe", nil }, { "unsubscribe", "" }, { "unsubscribe", 1 },
        }
        for _, c in ipairs(cases) do
            local ok, err = pcall(function()
                local r = ev[c[1]](ev, c[2], c[3], c[4])
                return r
            end)
            -- the position is the caller's line
            ngx.say(c[1], ": ", ok, " ", (err:gsub("^content_by_lua%(nginx%.conf:%d+%):%d+: ", "@caller: ")))
        end
    }
}
--- response_body
publish: false @caller: target is required
publish: false @caller: target is required
publish: false @caller: target is required
publish: false @caller: source is required
publish: false @caller: source is required
publish: false @caller: event is required
publish: false @caller: event is required
subscribe: false @caller: source is required
subscribe: false @caller: source is required
subscribe: false @caller: event is required
subscribe: false @caller: event is required
subscribe: false @caller: expected function, got: nil
subscribe: false @caller: expected function, got: string
unsubscribe: false @caller: id is required
unsubscribe: false @caller: id is required
unsubscribe: false @caller: id is required
--- no_error_log
[error]



=== TEST 8: a failing callback logs the library's line with a traceback (never the data); the others still run
--- implicit_zone
--- http_config
    init_worker_by_lua_block {
        local ev = require("resty.events").new { listening = "unix:/x" }
        _G.ev = ev
        _G.ran = {}
        ev:subscribe("s", "e", function() error("boom") end)
        ev:subscribe("s", "e", function() error(setmetatable({}, { __tostring = function() error("x") end })) end)
        ev:subscribe("s", "e", function() _G.ran[#_G.ran + 1] = "third" end)
        assert(ev:init_worker())
    }
--- config
location = /t {
    content_by_lua_block {
        assert(_G.ev:publish("all", "s", "e", "secret-payload"))
        assert(_G.ev:publish("current", "s", "e", "secret-payload"))
        ngx.sleep(0.2)
        ngx.say(table.concat(_G.ran, " "))
    }
}
--- response_body
third third
--- error_log eval
[
qr/\[error\] .*worker-events: event callback failed; source=s, event=e, wid=\d+ error='init_worker_by_lua\(nginx\.conf:\d+\):\d+: boom$/,
qr/\[error\] .*worker-events: event callback failed; source=s, event=e, wid=nil error='init_worker_by_lua\(nginx\.conf:\d+\):\d+: boom$/,
qr/^stack traceback:$/,
qr/worker-events: event callback failed; source=s, event=e, wid=\d+ error='\(an error object whose __tostring failed\)'/,
]
--- no_error_log
secret-payload



=== TEST 9: is_ready() is false inside init_worker_by_lua and true from the first event-loop turn on
--- implicit_zone
--- http_config
    init_worker_by_lua_block {
        local ev = require("resty.events").new { listening = "unix:/x" }
        _G.ev = ev
        _G.before = ev:is_ready()
        assert(ev:init_worker())
        _G.after_init = ev:is_ready()
        ngx.timer.at(0.1, function() _G.timer = ev:is_ready() end)
    }
--- config
location = /t {
    content_by_lua_block {
        ngx.sleep(0.2)
        ngx.say("before init_worker: ", _G.before)
        ngx.say("after init_worker, still inside it: ", _G.after_init)
        ngx.say("in a timer: ", _G.timer)
        ngx.say("in a request: ", _G.ev:is_ready())
    }
}
--- response_body
before init_worker: false
after init_worker, still inside it: false
in a timer: true
in a request: true
--- no_error_log
[error]



=== TEST 10: the broker location still answers (and closes); nothing connects to it, no broker errors at start
--- implicit_zone
--- http_config eval: $::HttpConfig
--- config
location = /t {
    content_by_lua_block {
        local sock = ngx.socket.tcp()
        assert(sock:connect("unix:$TEST_NGINX_HTML_DIR/events.sock"))
        assert(sock:send("GET / HTTP/1.0\r\nHost: x\r\n\r\n"))
        local status = sock:receive("*l")
        local body = sock:receive("*a")
        ngx.say(status)
        ngx.print((body:match("\r\n\r\n(.*)$")))
    }
}
--- response_body
HTTP/1.1 200 OK
no broker here: ngx_worker_events delivers resty.events through a shared zone

--- no_error_log
[error]
[warn]
connect() to unix



=== TEST 11: the library's debug lines: handling event (wid), event published to N workers
--- implicit_zone
--- http_config eval: $::HttpConfig
--- log_level: debug
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        assert(we.wait_ready())
        assert(_G.ev:publish("all", "t", "dbg", "x"))
        assert(_G.ev:publish("current", "t", "dbgl", "x"))
        assert(we.wait_all(1))
        ngx.sleep(0.1)
        ngx.say("ok")
    }
}
--- response_body
ok
--- error_log
event published to 4 workers
event published to 1 workers
worker-events: handling event; source=t, event=dbgl, wid=nil
--- grep_error_log eval
qr/worker-events: handling event; source=t, event=dbg, wid=\d+/
--- grep_error_log_out eval
qr/\A(?:worker-events: handling event; source=t, event=dbg, wid=\d+\n){4}\z/



=== TEST 12: publish() before init_worker() in init_worker_by_lua is delivered; "current" published there is handled after it
--- implicit_zone
--- http_config
    init_worker_by_lua_block {
        local we = require "t.we"
        local ev = require("resty.events").new { listening = "unix:/x" }
        _G.ev = ev
        ev:subscribe("*", "*", function(data, event) we.record(event) end)
        assert(ev:publish("all", "s", "before-init"))
        assert(ev:init_worker())
        assert(ev:publish("current", "s", "local-in-init"))
        ngx.shared.out:incr("ready", 1, 0)
    }
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        assert(we.wait_ready())
        ngx.sleep(0.3)
        -- every worker sees its own local event and the before-init events
        -- of the workers that published after it attached
        local me = we.take(ngx.worker.id())
        ngx.say("has local: ", table.concat(me, " "):find("local-in-init", 1, true) ~= nil)
        ngx.say("has own before-init: ", table.concat(me, " "):find("before-init", 1, true) ~= nil)
    }
}
--- response_body
has local: true
has own before-init: true
--- no_error_log
[error]
