# OpenResty's privileged agent (ngx.process) on the bus: resty.worker.events'
# configure() works there as the library's does (it posts and receives);
# resty.events' agent receives with enable_privileged_agent = true and
# publishes either way. Only where nginx has the agent (OpenResty; t/lib/
# NginxPlatform.pm): run with TEST_NGINX_BINARY=target/openresty/nginx/sbin/nginx
# and TEST_NGINX_WE_MODULE=build/openresty/ngx_http_worker_events_module.so
# (scripts/openresty builds both; scripts/test runs t/ there too).
use lib 't/lib';
use Test::Nginx::Socket;
use WorkerEventsTest;

if (!$NginxPlatform::Agent) {
    plan skip_all => "$NginxPlatform::Binary has no privileged agent (not OpenResty's nginx)";
} else {
    plan 'no_plan';
}

master_on();
workers(2);

# the platform's lua lines (none where lua is compiled in), then ours
our $MainConfig = $NginxPlatform::LuaLoadModules . 'load_module $TEST_NGINX_WE_MODULE;';

# /t waits (up to 10 s each) until the agent and both workers are ready
# (configured: a consumer reads what is posted after it opened), runs the block's
# _G.kick(), and until every worker recorded what it got, then prints it all
our $Wait = <<'_EOC_';
    location = /t {
        content_by_lua_block {
            local out = ngx.shared.out
            local function wait(keys)
                for _ = 1, 200 do
                    local n = 0
                    for _, k in ipairs(keys) do if out:get(k) then n = n + 1 end end
                    if n == #keys then return end
                    ngx.sleep(0.05)
                end
            end
            wait({ "agent-ready", "ready0", "ready1" })
            _G.kick()
            local keys = { "w0", "w1" }
            wait(keys)
            for _, k in ipairs(keys) do ngx.say(k, "=", tostring(out:get(k))) end
            ngx.say("agent: ", tostring(out:get("agent")))
        }
    }
_EOC_

run_tests();

__DATA__

=== TEST 1: resty.worker.events in the agent: configure() succeeds; the agent receives a worker's event and its answer reaches every worker
--- main_config eval: $::MainConfig
--- http_config
    init_by_lua_block {
        assert(require("ngx.process").enable_privileged_agent())
    }
    init_worker_by_lua_block {
        local we = require "resty.worker.events"
        local out = ngx.shared.out
        if require("ngx.process").type() == "privileged agent" then
            we.register(function(data, event, source, pid)
                out:set("agent", source .. "/" .. event .. " " .. tostring(data))
                assert(we.post("from-agent", "answer", data))
            end, "to-agent")
            local ok, err = we.configure { shm = "ev" }
            ngx.log(ngx.NOTICE, "agent configure: ", tostring(ok), ", ", tostring(err))
            out:set("agent-ready", ok and true or false)
            return
        end
        we.register(function(data, event, source, pid)
            out:set("w" .. ngx.worker.id(), data)
        end, "from-agent")
        _G.kick = function() assert(we.post("to-agent", "ping", "hello")) end
        assert(we.configure { shm = "ev" })
        out:set("ready" .. ngx.worker.id(), true)
    }
--- config eval: $::Wait
--- timeout: 12
--- response_body
w0=hello
w1=hello
agent: to-agent/ping hello
--- error_log
agent configure: true, nil
--- no_error_log
[error]
configure() is for worker processes



=== TEST 2: resty.events with enable_privileged_agent = true: the agent receives and publishes
--- main_config eval: $::MainConfig
--- http_config
    init_by_lua_block {
        assert(require("ngx.process").enable_privileged_agent())
        _G.ev = require("resty.events").new {
            listening = "unix:$TEST_NGINX_HTML_DIR/ev.sock", enable_privileged_agent = true }
    }
    init_worker_by_lua_block {
        local ev, out = _G.ev, ngx.shared.out
        if require("ngx.process").type() == "privileged agent" then
            ev:subscribe("to-agent", "*", function(data, event, source, wid)
                out:set("agent", source .. "/" .. event .. " " .. tostring(data) .. " wid=" .. tostring(wid))
                assert(ev:publish("all", "from-agent", "answer", data))
            end)
            local ok, err = ev:init_worker()
            ngx.log(ngx.NOTICE, "agent init_worker: ", tostring(ok), ", ", tostring(err))
            out:set("agent-ready", true)
            return
        end
        ev:subscribe("from-agent", "answer", function(data, event, source, wid)
            out:set("w" .. ngx.worker.id(), data .. " wid=" .. tostring(wid))
        end)
        _G.kick = function() assert(ev:publish("all", "to-agent", "ping", "hello")) end
        assert(ev:init_worker())
        out:set("ready" .. ngx.worker.id(), true)
    }
--- config eval: $::Wait
--- timeout: 12
--- response_body_like
w0=hello wid=-1
w1=hello wid=-1
agent: to-agent/ping hello wid=[01]
--- error_log
agent init_worker: true, nil
--- no_error_log
[error]



=== TEST 3: resty.events without enable_privileged_agent: the agent publishes (every worker gets it) and takes no events
--- main_config eval: $::MainConfig
--- http_config
    init_by_lua_block {
        assert(require("ngx.process").enable_privileged_agent())
        _G.ev = require("resty.events").new { listening = "unix:$TEST_NGINX_HTML_DIR/ev.sock" }
    }
    init_worker_by_lua_block {
        local ev, out = _G.ev, ngx.shared.out
        if require("ngx.process").type() == "privileged agent" then
            ev:subscribe("*", "*", function(data, event, source)
                out:set("agent", source .. "/" .. event)
            end)
            local ok, err = ev:init_worker()
            ngx.log(ngx.NOTICE, "agent init_worker: ", tostring(ok), ", ", tostring(err))
            out:set("agent-ready", true)
            -- publishes once a worker says so (the workers have subscribed)
            local function go(premature)
                if premature then return end
                if not out:get("go") then return ngx.timer.at(0.05, go) end
                local pok, perr = ev:publish("all", "from-agent", "hi", "hello")
                ngx.log(ngx.NOTICE, "agent publish: ", tostring(pok), ", ", tostring(perr),
                        ", ready: ", tostring(ev:is_ready()))
            end
            ngx.timer.at(0, go)
            return
        end
        ev:subscribe("from-agent", "hi", function(data)
            out:set("w" .. ngx.worker.id(), data)
        end)
        _G.kick = function() out:set("go", true) end
        assert(ev:init_worker())
        out:set("ready" .. ngx.worker.id(), true)
    }
--- config eval: $::Wait
--- timeout: 12
--- response_body
w0=hello
w1=hello
agent: nil
--- error_log
agent init_worker: true, nil
agent publish: true, nil, ready: false
--- no_error_log
[error]



=== TEST 4: resty.worker.events: the agent posts "stopping" when it exits (QUIT; the master starts a new one)
--- main_config eval: $::MainConfig
--- http_config
    init_by_lua_block {
        assert(require("ngx.process").enable_privileged_agent())
    }
    init_worker_by_lua_block {
        local we = require "resty.worker.events"
        local out = ngx.shared.out
        if require("ngx.process").type() == "privileged agent" then
            assert(we.configure { shm = "ev" })
            -- the first agent only (the master starts another after the QUIT)
            out:add("agent-ready", ngx.worker.pid())
            return
        end
        we.register(function(data, event, source, pid)
            if pid == out:get("agent-ready") then
                out:set("w" .. ngx.worker.id(), source .. "/" .. event .. " from the agent")
            end
        end, "resty-worker-events", "stopping")
        _G.kick = function()
            local ffi = require "ffi"
            pcall(ffi.cdef, "int kill(int pid, int sig);")
            assert(ffi.C.kill(out:get("agent-ready"), 3) == 0) -- SIGQUIT
        end
        assert(we.configure { shm = "ev" })
        out:set("ready" .. ngx.worker.id(), true)
    }
--- config eval: $::Wait
--- timeout: 12
--- response_body
w0=resty-worker-events/stopping from the agent
w1=resty-worker-events/stopping from the agent
agent: nil
--- no_error_log
[error]
