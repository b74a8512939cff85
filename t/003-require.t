# require "resty.worker.events" works in every phase, with no .lua file
# installed, and again in the new Lua VM after a reload.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use WorkerEventsTest;

# several workers (and a master: reloads, kills) as the real Test::Nginx needs them
master_on();
workers(2);

run_tests();

__DATA__

=== TEST 1: init_by_lua, init_worker_by_lua, timer
--- http_config
init_by_lua_block {
    local ev = require "resty.worker.events"
    init_ok = type(ev.post) == "function"
}
init_worker_by_lua_block {
    local ev = require "resty.worker.events"
    ngx.shared.out:set("init_worker" .. ngx.worker.id(), type(ev.configure) == "function")
    ngx.timer.at(0, function()
        local ev = require "resty.worker.events"
        ngx.shared.out:set("timer" .. ngx.worker.id(), type(ev.register) == "function")
    end)
}
--- config
location = /t {
    content_by_lua_block {
        ngx.sleep(0.1)
        ngx.say("init: ", init_ok)
        ngx.say("init_worker: ", ngx.shared.out:get("init_worker" .. ngx.worker.id()))
        ngx.say("timer: ", ngx.shared.out:get("timer" .. ngx.worker.id()))
        ngx.say("same table: ", require("resty.worker.events") == package.loaded["resty.worker.events"])
    }
}
--- response_body
init: true
init_worker: true
timer: true
same table: true



=== TEST 2: set, rewrite, access, content, header_filter, body_filter, log
--- http_config
--- config
location = /t {
    set_by_lua_block $set_ok { return type(require("resty.worker.events").poll) }
    rewrite_by_lua_block { ngx.ctx.rewrite = type(require("resty.worker.events").poll) }
    access_by_lua_block { ngx.ctx.access = type(require("resty.worker.events").poll) }
    content_by_lua_block {
        ngx.say("set: ", ngx.var.set_ok)
        ngx.say("rewrite: ", ngx.ctx.rewrite)
        ngx.say("access: ", ngx.ctx.access)
        ngx.say("content: ", type(require("resty.worker.events").poll))
    }
    header_filter_by_lua_block { ngx.header["X-Header-Filter"] = type(require("resty.worker.events").poll) }
    body_filter_by_lua_block { local _ = require("resty.worker.events") }
    log_by_lua_block { ngx.log(ngx.WARN, "log phase: ", type(require("resty.worker.events").poll)) }
}
--- response_headers
X-Header-Filter: function
--- response_body
set: function
rewrite: function
access: function
content: function
--- wait: 0.1
--- error_log
log phase: function



=== TEST 3: after a reload (HUP) the new Lua VM has it too
--- http_config
init_worker_by_lua_block {
    local ev = require "resty.worker.events"
    ngx.shared.out:incr("inits", 1, 0)
    ngx.shared.out:set("version", ev._VERSION)
}
--- config
location = /reload {
    content_by_lua_block {
        require("t.we").reload()
        ngx.sleep(0.5)
        ngx.say("reloaded")
    }
}
location = /t {
    content_by_lua_block {
        -- 2 workers per generation: after the reload, new workers ran it again
        local want = tonumber(ngx.var.arg_min)
        ngx.say(ngx.shared.out:get("inits") >= want, " ", ngx.shared.out:get("version"))
    }
}
--- request eval
["GET /t?min=1", "GET /reload", "GET /t?min=3"]
--- response_body eval
["true 2.0.1\n", "reloaded\n", "true 2.0.1\n"]
