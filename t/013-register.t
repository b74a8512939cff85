# register / register_weak / unregister at the three levels, handler order,
# weak handlers and argument checks.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use WorkerEventsTest;

# several workers (and a master: reloads, kills) as the real Test::Nginx needs them
master_on();
workers(2);

our $HttpConfig = <<'_EOC_';
    init_worker_by_lua_block {
        require("t.we").configure({ interval = 0 })
    }
_EOC_

run_tests();

__DATA__

=== TEST 1: order: global, source, source+event; weak before strong; registration order
--- http_config eval: $::HttpConfig
--- config
location = /t {
    content_by_lua_block {
        local ev = require "resty.worker.events"
        assert(require("t.we").wait_ready())
        ev.poll() -- drain the workers' own "started" events
        local out = {}
        local function h(name)
            return function(data, event, source, pid)
                out[#out + 1] = name .. "(" .. source .. "/" .. event .. ")"
            end
        end
        -- register in a scrambled order
        KEEP = {}
        local function weak(name, ...)
            local f = h(name)
            KEEP[#KEEP + 1] = f
            return ev.register_weak(f, ...)
        end
        ngx.say(ev.register(h("event-strong-1"), "src", "ev1"))
        ngx.say(weak("event-weak-1", "src", "ev1"))
        ev.register(h("source-strong-1"), "src")
        ev.register(h("global-strong-1"))
        weak("source-weak-1", "src")
        weak("global-weak-1")
        ev.register(h("global-strong-2"))
        ev.register(h("event-strong-2"), "src", "ev1", "ev2")
        ev.register(h("other-source"), "other")
        ev.register(h("other-event"), "src", "ev3")

        assert(ev.post_local("src", "ev1"))
        ev.poll()
        ngx.say(table.concat(out, "\n"))
        out = {}
        assert(ev.post_local("src", "ev2"))
        ev.poll()
        ngx.say(table.concat(out, "\n"))
    }
}
--- response_body
true
true
global-weak-1(src/ev1)
global-strong-1(src/ev1)
global-strong-2(src/ev1)
source-weak-1(src/ev1)
source-strong-1(src/ev1)
event-weak-1(src/ev1)
event-strong-1(src/ev1)
event-strong-2(src/ev1)
global-weak-1(src/ev2)
global-strong-1(src/ev2)
global-strong-2(src/ev2)
source-weak-1(src/ev2)
source-strong-1(src/ev2)
event-strong-2(src/ev2)



=== TEST 2: unregister at each level, true only when something was removed
--- http_config eval: $::HttpConfig
--- config
location = /t {
    content_by_lua_block {
        local ev = require "resty.worker.events"
        assert(require("t.we").wait_ready())
        ev.poll() -- drain the workers' own "started" events
        local out = {}
        local g = function(_, e) out[#out + 1] = "g:" .. e end
        local s = function(_, e) out[#out + 1] = "s:" .. e end
        local e = function(_, e) out[#out + 1] = "e:" .. e end
        ev.register(g)
        ev.register(s, "src")
        ev.register_weak(e, "src", "a", "b")
        local function run(tag)
            out = {}
            ev.post_local("src", "a")
            ev.post_local("src", "b")
            ev.poll()
            ngx.say(tag, ": ", table.concat(out, " "))
        end
        run("all")
        ngx.say("unregister e from a: ", ev.unregister(e, "src", "a"))
        run("no e:a")
        ngx.say("again: ", ev.unregister(e, "src", "a"))
        ngx.say("unregister s: ", ev.unregister(s, "src"))
        run("no s")
        ngx.say("unregister g as source handler: ", ev.unregister(g, "src"))
        ngx.say("unregister g: ", ev.unregister(g))
        run("no g")
        ngx.say("unregister e from a and b: ", ev.unregister(e, "src", "a", "b"))
        run("none")
        ngx.say("unknown source: ", ev.unregister(e, "nope"), " ", ev.unregister(e, "nope", "x"))
    }
}
--- response_body
all: g:a s:a e:a g:b s:b e:b
unregister e from a: true
no e:a: g:a s:a g:b s:b e:b
again: false
unregister s: true
no s: g:a g:b e:b
unregister g as source handler: false
unregister g: true
no g: e:b
unregister e from a and b: true
none: 
unknown source: false false



=== TEST 3: weak handlers disappear after garbage collection, strong ones stay
--- http_config eval: $::HttpConfig
--- config
location = /t {
    content_by_lua_block {
        local ev = require "resty.worker.events"
        assert(require("t.we").wait_ready())
        ev.poll() -- drain the workers' own "started" events
        local out = {}
        do
            ev.register_weak(function() out[#out + 1] = "weak-global" end)
            ev.register_weak(function() out[#out + 1] = "weak-source" end, "src")
            ev.register_weak(function() out[#out + 1] = "weak-event" end, "src", "e")
        end
        ev.register(function() out[#out + 1] = "strong" end, "src", "e")
        ev.post_local("src", "e")
        ev.poll()
        ngx.say("before gc: ", table.concat(out, " "))
        collectgarbage()
        collectgarbage()
        out = {}
        ev.post_local("src", "e")
        ev.poll()
        ngx.say("after gc: ", table.concat(out, " "))
    }
}
--- response_body
before gc: weak-global weak-source weak-event strong
after gc: strong



=== TEST 4: a non-function handler is a programming error, raised at the caller
--- http_config eval: $::HttpConfig
--- config
location = /t {
    content_by_lua_block {
        local ev = require "resty.worker.events"
        for _, f in ipairs({ "register", "register_weak", "unregister" }) do
            for _, bad in ipairs({ "nil", "string", "table" }) do
                local arg = bad == "string" and "x" or (bad == "table" and {} or nil)
                local ok, err = pcall(ev[f], arg, "src")
                ngx.say(f, "(", bad, "): ", ok, " ", err)
            end
        end
        local ok, err = pcall(function() ev.register(42) end)
        ngx.say("position: ", err)
    }
}
--- response_body_like chomp
\Aregister\(nil\): false expected function, got: nil
register\(string\): false expected function, got: string
register\(table\): false expected function, got: table
register_weak\(nil\): false expected function, got: nil
register_weak\(string\): false expected function, got: string
register_weak\(table\): false expected function, got: table
unregister\(nil\): false expected function, got: nil
unregister\(string\): false expected function, got: string
unregister\(table\): false expected function, got: table
position: content_by_lua\(nginx.conf:\d+\):\d+: expected function, got: number
\z



=== TEST 5: handlers registered for one worker only run in that worker
--- http_config eval: $::HttpConfig
--- config
location = /t {
    content_by_lua_block {
        local ev = require "resty.worker.events"
        local n = 0
        ev.register(function() n = n + 1 end, "src", "e")
        ev.register(function() n = n + 1 end, "src", "e")  -- the same twice: runs twice
        ev.post_local("src", "e")
        ev.poll()
        ngx.say(n)
    }
}
--- response_body
2



=== TEST 6: unregistering keeps the order of the remaining handlers
--- http_config eval: $::HttpConfig
--- config
location = /t {
    content_by_lua_block {
        local ev = require "resty.worker.events"
        assert(require("t.we").wait_ready())
        ev.poll()
        local out = {}
        local hs = {}
        for i = 1, 5 do
            hs[i] = function() out[#out + 1] = i end
            ev.register(hs[i], "src")
        end
        ev.unregister(hs[2], "src")
        ev.post_local("src", "e")
        ev.poll()
        ngx.say(table.concat(out, " "))
        out = {}
        ev.post_local("src", "e")
        ev.poll()
        ngx.say(table.concat(out, " "))
    }
}
--- response_body
1 3 4 5
1 3 4 5
