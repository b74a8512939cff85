# A worker killed with SIGKILL in the middle of a stream of posts leaves
# neither a locked nor a corrupt zone: the others go on, the respawned one works.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use WorkerEventsTest;

# several workers (and a master: reloads, kills) as the real Test::Nginx needs them
master_on();
workers(2);

log_level('warn');

run_tests();

__DATA__

=== TEST 1: SIGKILL while posting, three times over
--- workers: 3
--- http_config
worker_events_zone ev 256k;
init_worker_by_lua_block {
    local we = require "t.we"
    local ev = require "resty.worker.events"
    ev.register(function(data, event)
        if event == "probe" then we.record("probe ", data) end
    end, "test")
    we.configure({ interval = 0.05 })
}
--- config
location = /kill {
    content_by_lua_block {
        local ev = require "resty.worker.events"
        local ffi = require "ffi"
        pcall(ffi.cdef, "int kill(int pid, int sig);")
        ngx.say("flooding")
        ngx.eof()
        -- post as fast as possible; die somewhere in the middle
        local blob = string.rep("k", 3000)
        local deadline = ngx.now() + 0.03 + math.random() * 0.05
        while true do
            for i = 1, 50 do ev.post("test", "flood", blob) end
            ngx.update_time()
            if ngx.now() > deadline then ffi.C.kill(ngx.worker.pid(), 9) end
        end
    }
}
location = /check {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        ngx.sleep(0.5) -- the master respawns the killed worker
        for id = 0, ngx.worker.count() - 1 do we.take(id) end
        assert(ev.post("test", "probe", "after the kill"))
        ngx.say("every worker got the probe: ", we.wait_all(1, 3))
        local lines = {}
        for id = 0, ngx.worker.count() - 1 do lines[#lines + 1] = we.take(id)[1] end
        ngx.say(table.concat(lines, "\n"))
    }
}
--- request eval
["GET /kill", "GET /check", "GET /kill", "GET /check", "GET /kill", "GET /check"]
--- response_body eval
["flooding\n", "every worker got the probe: true\nprobe after the kill\nprobe after the kill\nprobe after the kill\n",
 "flooding\n", "every worker got the probe: true\nprobe after the kill\nprobe after the kill\nprobe after the kill\n",
 "flooding\n", "every worker got the probe: true\nprobe after the kill\nprobe after the kill\nprobe after the kill\n"]
--- timeout: 6
--- no_error_log eval
[
qr/\[alert\](?!.*(?:exited on signal 9|was locked by))/,
"[crit]",
"[emerg]",
]



=== TEST 2: SIGKILL while holding the zone lock: the master frees it, the others go on
--- main_config
env NGX_WORKER_EVENTS_TEST_HOOKS=1;
--- workers: 2
--- http_config
worker_events_zone ev 256k;
init_worker_by_lua_block {
    local we = require "t.we"
    local ev = require "resty.worker.events"
    local ffi = require "ffi"
    -- the module declares its own FFI functions (once resty.worker.events is loaded)
    require "resty.worker.events"
    pcall(ffi.cdef, "int kill(int pid, int sig);")
    ev.register(function(data, event)
        if event == "hold" then
            if data ~= ngx.worker.pid() then
                -- the other worker: take the lock and die holding it
                ngx.shared.out:set("held", ffi.C.ngx_worker_events_test_hold_lock())
                ffi.C.kill(ngx.worker.pid(), 9)
            end
            return
        end
        we.record(event, " ", data)
    end, "test")
    we.configure({ interval = 0.05 })
}
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        assert(we.wait_ready())
        assert(ev.post("test", "hold", ngx.worker.pid()))
        ngx.sleep(0.3)
        ngx.say("the other worker held the lock: ", ngx.shared.out:get("held"))
        -- this post waits for the lock until the master frees it
        ngx.say(ev.post("test", "probe", "unlocked"))
        ngx.sleep(0.3) -- the respawned worker configures itself
        for id = 0, ngx.worker.count() - 1 do we.take(id) end
        ngx.say(ev.post("test", "probe", "again"))
        ngx.say("every worker got it: ", we.wait_all(1, 3))
        ngx.say(we.take(0)[1], "\n", we.take(1)[1])
    }
}
--- response_body
the other worker held the lock: 1
true
true
every worker got it: true
probe again
probe again
--- timeout: 6
--- error_log eval
[qr/\[alert\] .*exited on signal 9/, qr/shared memory zone "ev" was locked by \d+/]
--- no_error_log eval
[
qr/\[alert\](?!.*(?:exited on signal 9|was locked by))/,
"[crit]",
"[emerg]",
]



=== TEST 3: the test hook does nothing without its environment variable
--- http_config
worker_events_zone ev 256k;
--- config
location = /t {
    content_by_lua_block {
        local ev = require "resty.worker.events"
        assert(ev.configure({ shm = "ev" }))
        local ffi = require "ffi"
        require "resty.worker.events" -- declares the module's FFI functions
        ngx.say(ffi.C.ngx_worker_events_test_hold_lock())
        ngx.say(ev.post("s", "e", 1))
    }
}
--- response_body
0
true
