# resty.events.compat: the lua-resty-worker-events API over one resty.events
# instance, with the shim's bugs fixed: weak is weak, unregister honours
# source/event, register before configure works, post/poll before configure
# return nil, err, poll() works where the phase cannot yield, configure()
# again is harmless. 4 workers.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use WorkerEventsTest;

master_on();
workers(4);

our $HttpConfig = <<'_EOC_';
    init_worker_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.events.compat"
        -- lua-resty-worker-events code registers first, then configures
        ev.register(function(data, event, source, wid)
            we.record(source, " ", event, " ", we.show(data), " wid=", wid == ngx.worker.id() and "me" or wid)
        end, "t")
        local ok, err = ev.configure { listening = "unix:$TEST_NGINX_HTML_DIR/ev.sock" }
        if not ok then ngx.log(ngx.ERR, "configure: ", err) end
        ngx.shared.out:incr("ready", 1, 0)
    }
    server {
        listen unix:$TEST_NGINX_HTML_DIR/ev.sock;
        location / {
            content_by_lua_block {
                require("resty.events.compat").run()
            }
        }
    }
_EOC_

run_tests();

__DATA__

=== TEST 1: post() reaches every worker (handlers registered before configure), post_local() only this one; both return "done"
--- implicit_zone
--- http_config eval: $::HttpConfig
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.events.compat"
        assert(we.wait_ready())
        ngx.say("configured: ", ev.configured())
        ngx.say("post: ", ev.post("t", "all", { 1 }))
        ngx.say("post_local: ", ev.post_local("t", "local", "x"))
        assert(we.wait_all(1))
        ngx.sleep(0.1)
        ngx.say("me: ", table.concat(we.take(ngx.worker.id()), " | "))
        local n = 0
        for w = 0, ngx.worker.count() - 1 do
            if w ~= ngx.worker.id() then
                local l = we.take(w)
                if #l == 1 and l[1]:find("^t all {%[1%]=1} wid=%d$") then n = n + 1 end
            end
        end
        ngx.say("others with exactly the broadcast: ", n)
    }
}
--- response_body
configured: true
post: done
post_local: done
me: t local "x" wid=nil | t all {[1]=1} wid=me
others with exactly the broadcast: 3
--- no_error_log
[error]



=== TEST 2: post(source, event, data, unique) runs on one worker, once within unique_timeout
--- implicit_zone
--- http_config eval: $::HttpConfig
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.events.compat"
        assert(we.wait_ready())
        for i = 1, 5 do assert(ev.post("t", "u", i, "the-key") == "done") end
        ngx.sleep(0.3)
        local n = 0
        for w = 0, ngx.worker.count() - 1 do n = n + #we.take(w) end
        ngx.say("ran: ", n)
    }
}
--- response_body
ran: 1
--- no_error_log
[error]



=== TEST 3: register_weak is weak: a collected handler stops; a strong one stays
--- implicit_zone
--- http_config eval: $::HttpConfig
--- config
location = /t {
    content_by_lua_block {
        local ev = require "resty.events.compat"
        local hits = { weak = 0, strong = 0 }
        local weak = function() hits.weak = hits.weak + 1 end
        ev.register_weak(weak, "w")
        ev.register(function() hits.strong = hits.strong + 1 end, "w")
        ev.post_local("w", "e")
        ngx.sleep(0.05)
        weak = nil
        collectgarbage()
        collectgarbage()
        ev.post_local("w", "e")
        ngx.sleep(0.05)
        ngx.say("weak ran ", hits.weak, ", strong ran ", hits.strong)
    }
}
--- response_body
weak ran 1, strong ran 2
--- no_error_log
[error]



=== TEST 4: unregister(callback, source, event...) removes exactly what it names, returns true/false
--- implicit_zone
--- http_config eval: $::HttpConfig
--- config
location = /t {
    content_by_lua_block {
        local ev = require "resty.events.compat"
        local seen = {}
        local a = function(_, event, source) seen[#seen + 1] = "a:" .. source .. "/" .. event end
        local b = function(_, event, source) seen[#seen + 1] = "b:" .. source .. "/" .. event end
        ev.register(a)                    -- global
        ev.register(a, "s")               -- source-wide
        ev.register(a, "s", "e1", "e2")   -- two events
        ev.register(b, "s", "e1")
        local function round(label)
            seen = {}
            ev.post_local("s", "e1")
            ev.post_local("s", "e2")
            ngx.sleep(0.05)
            ngx.say(label, ": ", table.concat(seen, " "))
        end
        round("all")
        ngx.say("unregister a s e1: ", ev.unregister(a, "s", "e1"))
        round("a s/e1 gone")
        ngx.say("unregister a s: ", ev.unregister(a, "s"))
        round("a s/* gone")
        ngx.say("unregister a: ", ev.unregister(a))
        round("a global gone")
        ngx.say("unregister a again: ", ev.unregister(a))
        ngx.say("unregister b s e9: ", ev.unregister(b, "s", "e9"))
        round("b stays")
    }
}
--- response_body
all: a:s/e1 a:s/e1 a:s/e1 b:s/e1 a:s/e2 a:s/e2 a:s/e2
unregister a s e1: true
a s/e1 gone: a:s/e1 a:s/e1 b:s/e1 a:s/e2 a:s/e2 a:s/e2
unregister a s: true
a s/* gone: a:s/e1 b:s/e1 a:s/e2 a:s/e2
unregister a: true
a global gone: b:s/e1 a:s/e2
unregister a again: false
unregister b s e9: false
b stays: b:s/e1 a:s/e2
--- no_error_log
[error]



=== TEST 5: before configure(): register works, post/post_local/poll return nil, err, configured() is false
--- implicit_zone
--- http_config
    init_worker_by_lua_block {
        local ev = require "resty.events.compat"
        _G.r = {}
        local function note(label, a, b) _G.r[#_G.r + 1] = label .. ": " .. tostring(a) .. ", " .. tostring(b) end
        note("configured", ev.configured())
        note("register", ev.register(function() _G.got = true end, "s", "e"))
        note("post", ev.post("s", "e"))
        note("post_local", ev.post_local("s", "e"))
        note("poll", ev.poll())
        note("configure", ev.configure { listening = "unix:/x" })
        note("configured", ev.configured())
    }
--- config
location = /t {
    content_by_lua_block {
        local ev = require "resty.events.compat"
        ngx.say(table.concat(_G.r, "\n"))
        ev.post("s", "e")
        ngx.sleep(0.1)
        ngx.say("handler registered before configure ran: ", _G.got)
    }
}
--- response_body
configured: false, nil
register: true, nil
post: nil, events not configured, call configure() first
post_local: nil, events not configured, call configure() first
poll: nil, events not configured, call configure() first
configure: true, nil
configured: true, nil
handler registered before configure ran: true
--- no_error_log
[error]



=== TEST 6: poll() works where the phase cannot yield (header_filter, body_filter, log) and handles what is pending at once
--- implicit_zone
--- http_config eval: $::HttpConfig
--- config
location = /t {
    content_by_lua_block {
        local ev = require "resty.events.compat"
        ngx.ctx.seen = {}
        ev.register(function(_, event) table.insert(ngx.ctx.seen, event) end, "p")
        ngx.say("content")
    }
    header_filter_by_lua_block {
        local ev = require "resty.events.compat"
        ev.post_local("p", "in-header-filter")
        ngx.ctx.hf = ev.poll()
    }
    body_filter_by_lua_block {
        if ngx.arg[2] then
            local ev = require "resty.events.compat"
            ev.post_local("p", "in-body-filter")
            local r = ev.poll()
            ngx.arg[1] = (ngx.arg[1] or "") .. "header_filter poll: " .. tostring(ngx.ctx.hf)
                .. "\nbody_filter poll: " .. tostring(r)
                .. "\nhandled: " .. table.concat(ngx.ctx.seen, " ") .. "\n"
        end
    }
    log_by_lua_block {
        local ev = require "resty.events.compat"
        local r, err = ev.poll()
        if r ~= "done" then ngx.log(ngx.ERR, "poll in log: ", r, " ", err) end
    }
}
--- response_body
content
header_filter poll: done
body_filter poll: done
handled: in-header-filter in-body-filter
--- no_error_log
[error]



=== TEST 7: configure() again (some libraries call it from content handlers) keeps the instance and every registration
--- implicit_zone
--- http_config eval: $::HttpConfig
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.events.compat"
        assert(we.wait_ready())
        ngx.say("again: ", ev.configure { listening = "unix:/other" })
        ngx.say("again: ", ev.configure { listening = "unix:/other", unique_timeout = 1 })
        assert(ev.post("t", "after", 1))
        assert(we.wait_all(1))
        ngx.say("every worker still handles: ", we.count(0) == 1 and we.count(3) == 1)
    }
}
--- response_body
again: true
again: true
every worker still handles: true
--- no_error_log
[error]



=== TEST 8: event_list, run() location, and argument errors
--- implicit_zone
--- http_config eval: $::HttpConfig
--- config
location = /t {
    content_by_lua_block {
        local ev = require "resty.events.compat"
        local list = ev.event_list("src", "one", "two")
        ngx.say(list._source, " ", list.one, " ", list.two)
        ngx.say(pcall(function() return list.three end))
        ngx.say(pcall(ev.register, "nope"))
        ngx.say(pcall(ev.unregister, nil))
        local sock = ngx.socket.tcp()
        assert(sock:connect("unix:$TEST_NGINX_HTML_DIR/ev.sock"))
        assert(sock:send("GET / HTTP/1.0\r\n\r\n"))
        ngx.say(sock:receive("*l"))
    }
}
--- response_body_like
^src one two
falsecontent_by_lua\(nginx.conf:\d+\):\d+: event 'three' is an unknown event
falsecontent_by_lua\(nginx.conf:\d+\):\d+: expected function, got: string
falseexpected function, got: nil
HTTP/1.1 200 OK
--- no_error_log
[error]
