# configure(): options, defaults, every error message, configured(),
# event_list() and the module's own events.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use WorkerEventsTest;

# several workers (and a master: reloads, kills) as the real Test::Nginx needs them
master_on();
workers(2);

run_tests();

__DATA__

=== TEST 1: every option error, verbatim
--- http_config
lua_shared_dict dict 1m;
--- config
location = /t {
    content_by_lua_block {
        local ev = require "resty.worker.events"
        local function try(opts) ngx.say(select(2, ev.configure(opts))) end
        try({})
        try({ shm = "missing" })
        try({ shm = "ev", timeout = "x" })
        try({ shm = "ev", timeout = 0 })
        try({ shm = "ev", timeout = -1 })
        try({ shm = "ev", interval = "x" })
        try({ shm = "ev", interval = -1 })
        try({ shm = "ev", wait_interval = {} })
        try({ shm = "ev", wait_interval = -0.1 })
        try({ shm = "ev", wait_max = true })
        try({ shm = "ev", wait_max = -1 })
        try({ shm = "ev", shm_retries = "x" })
        try({ shm = "ev", shm_retries = -1 })
        ngx.say("configured: ", ev.configured())
        ngx.say(ev.configure({ shm = "ev", timeout = 1, interval = 0, wait_interval = 0,
                               wait_max = 0, shm_retries = 0, debug = true }))
        ngx.say("configured: ", ev.configured())
        ngx.say("debug exposes _callbacks: ", type(ev._callbacks))
        try({ shm = "dict" })
        ngx.say(ev.configure({ shm = "ev" }))
        ngx.say(ev.configure({ interval = 2 }))
        try({ timeout = 0 })
    }
}
--- response_body
"shm" option required to start
shm "missing" not found
optional "timeout" option must be a number
"timeout" must be greater than 0
"timeout" must be greater than 0
optional "interval" option must be a number
"interval" must be greater than or equal to 0
optional "wait_interval" option must be a number
"wait_interval" must be greater than or equal to 0
optional "wait_max" option must be a number
"wait_max" must be greater than or equal to 0
optional "shm_retries" option must be a number
"shm_retries" must be 0 or greater
configured: false
true
configured: true
debug exposes _callbacks: table
Already started, cannot change shm
true
true
"timeout" must be greater than 0



=== TEST 2: a non-table argument is a programming error
--- http_config
--- config
location = /t {
    content_by_lua_block {
        local ev = require "resty.worker.events"
        for _, v in ipairs({ "ev", 1, true }) do
            local ok, err = pcall(ev.configure, v)
            ngx.say(ok, " ", err)
        end
        local ok, err = pcall(ev.configure)
        ngx.say(ok, " ", err)
    }
}
--- response_body
false Expected a table, got string
false Expected a table, got number
false Expected a table, got boolean
false Expected a table, got nil



=== TEST 3: started is broadcast by configure(); stopping when a worker exits
--- http_config
init_worker_by_lua_block {
    local we = require "t.we"
    local ev = require "resty.worker.events"
    ev.register(function(data, event, source, pid)
        we.record(event, " from ", pid == ngx.worker.pid() and "me" or "other")
    end, ev.events._source)
    we.configure()
}
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        assert(we.wait_ready())
        ngx.sleep(0.2)
        local mine = we.take(ngx.worker.id())
        table.sort(mine)
        ngx.say(table.concat(mine, "\n"))
        ngx.say(ev.events._source, " ", ev.events.started, " ", ev.events.stopping, " ", ev.events.lost)
    }
}
--- response_body_like chomp
\A(?:started from me\n|started from me\nstarted from other\n)resty-worker-events started stopping lost\n\z
--- shutdown_error_log eval
qr/worker-events: .*|\[notice\].*exit/
--- no_error_log
[error]



=== TEST 4: event_list
--- http_config
--- config
location = /t {
    content_by_lua_block {
        local ev = require "resty.worker.events"
        local list = ev.event_list("my-source", "created", "deleted")
        ngx.say(list._source, " ", list.created, " ", list.deleted)
        local ok, err = pcall(function() return list.updated end)
        ngx.say(ok, " ", err)
        ok, err = pcall(function() return ev.events.nope end)
        ngx.say(ok, " ", err)
    }
}
--- response_body_like chomp
\Amy-source created deleted
false content_by_lua\(nginx.conf:\d+\):\d+: event 'updated' is an unknown event
false content_by_lua\(nginx.conf:\d+\):\d+: event 'nope' is an unknown event
\z



=== TEST 5: a worker that exits broadcasts "stopping" to the others
--- http_config
init_worker_by_lua_block {
    local we = require "t.we"
    local ev = require "resty.worker.events"
    ev.register(function(data, event, source, pid)
        ngx.shared.out:set("stopping:" .. pid, "seen by " .. ngx.worker.pid())
    end, ev.events._source, ev.events.stopping)
    we.configure()
}
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        assert(we.wait_ready())
        local me = ngx.worker.pid()
        ngx.say("bye")
        ngx.eof()
        -- a graceful exit of this worker alone (os.execute would not do:
        -- system() ignores SIGQUIT in the caller while it waits)
        local ffi = require "ffi"
        pcall(ffi.cdef, "int kill(int pid, int sig);")
        ffi.C.kill(me, 3)
    }
}
location = /check {
    content_by_lua_block {
        ngx.sleep(0.3)
        local keys = ngx.shared.out:get_keys()
        local n = 0
        for _, k in ipairs(keys) do
            if k:match("^stopping:") then n = n + 1 end
        end
        ngx.say("stopping seen: ", n >= 1)
    }
}
--- request eval
["GET /t", "GET /check"]
--- response_body eval
["bye\n", "stopping seen: true\n"]
