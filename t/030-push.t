# Push delivery: posts wake the other workers at once, whatever `interval`
# is; without push (disabled) the interval loop still delivers.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use WorkerEventsTest;

# several workers (and a master: reloads, kills) as the real Test::Nginx needs them
master_on();
workers(2);

run_tests();

__DATA__

=== TEST 1: delivered long before a 30 s interval would poll
--- workers: 4
--- http_config
init_worker_by_lua_block {
    local we = require "t.we"
    local ev = require "resty.worker.events"
    ev.register(function(data, event) we.record(event, " ", data) end, "test")
    we.configure({ interval = 30 })
}
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        assert(we.wait_ready())
        ngx.sleep(0.1)
        for i = 1, 3 do
            assert(ev.post("test", "push", i))
            ngx.say("round ", i, " reached all workers within 1 s: ", we.wait_all(i, 1))
        end
        local burst = 1000
        for i = 1, burst do assert(ev.post("test", "burst", i)) end
        ngx.say("a burst of ", burst, " reached all: ", we.wait_all(3 + burst, 2))
    }
}
--- response_body
round 1 reached all workers within 1 s: true
round 2 reached all workers within 1 s: true
round 3 reached all workers within 1 s: true
a burst of 1000 reached all: true
--- no_error_log
[error]
push wake-ups unavailable



=== TEST 2: with a 30 s interval, nginx still stops at once (the loop is woken)
--- http_config
init_worker_by_lua_block {
    require("t.we").configure({ interval = 30 })
}
--- config
location = /t {
    content_by_lua_block {
        assert(require("t.we").wait_ready())
        ngx.say("ok")
    }
}
--- response_body
ok
--- shutdown_error_log eval
qr/\[notice\] .*: exit$/
--- no_shutdown_error_log
[alert]
[crit]
open socket



=== TEST 3: push disabled: the interval loop delivers, and says why once
--- main_config
env NGX_WORKER_EVENTS_NO_PUSH=1;
--- http_config
init_worker_by_lua_block {
    local we = require "t.we"
    local ev = require "resty.worker.events"
    ev.register(function(data, event) we.record(event, " ", data) end, "test")
    we.configure({ interval = 0.1 })
}
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        assert(we.wait_ready())
        assert(ev.post("test", "polled", 1))
        ngx.say("delivered: ", we.wait_all(1, 2))
        we.say_common()
    }
}
--- response_body
delivered: true
all 2 workers:
polled 1
--- error_log
ngx_worker_events: push wake-ups unavailable (disabled by NGX_WORKER_EVENTS_NO_PUSH), falling back to the interval loop



=== TEST 4: push reaches respawned workers and the new generation after a reload
--- workers: 2
--- http_config
init_worker_by_lua_block {
    local we = require "t.we"
    local ev = require "resty.worker.events"
    ev.register(function(data, event) we.record(event, " ", data) end, "test")
    we.configure({ interval = 30 })
}
--- config
location = /kill {
    content_by_lua_block {
        ngx.say("killed")
        ngx.eof()
        local ffi = require "ffi"
        pcall(ffi.cdef, "int kill(int pid, int sig);")
        ffi.C.kill(ngx.worker.pid(), 9)
    }
}
location = /reload {
    content_by_lua_block {
        require("t.we").reload()
        ngx.sleep(0.5)
        ngx.say("reloaded")
    }
}
location = /probe {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        ngx.sleep(0.3) -- respawned / new workers configure themselves
        for id = 0, ngx.worker.count() - 1 do we.take(id) end
        assert(ev.post("test", "probe", ngx.var.arg_n))
        ngx.say("all got it within 1 s: ", we.wait_all(1, 1))
    }
}
--- request eval
["GET /probe?n=1", "GET /kill", "GET /probe?n=2", "GET /reload", "GET /probe?n=3"]
--- response_body eval
["all got it within 1 s: true\n", "killed\n", "all got it within 1 s: true\n",
 "reloaded\n", "all got it within 1 s: true\n"]
--- timeout: 6
--- no_error_log eval
[
qr/\[alert\](?!.*exited on signal 9)/,
"[crit]",
"push wake-ups unavailable",
]



=== TEST 5: a worker rings the workers of its own generation through their eventfds (it holds one per worker and a shared one, and watches copies of its own and the shared one); across a reload's generations it sends datagrams: a post from a worker of the old generation, while it finishes its request, wakes the new one at once
--- workers: 2
--- http_config
lua_shared_dict got 1m;
init_worker_by_lua_block {
    local ev = require "resty.worker.events"
    local got = ngx.shared.got
    got:set("started:" .. ngx.worker.pid(), ngx.now())
    ev.register(function(_, event) got:set("got:" .. event .. ":" .. ngx.worker.pid(), true) end, "test")
    require("t.we").configure({ interval = 30 })
}
--- config
location = /t {
    content_by_lua_block {
        local ffi = require "ffi"
        pcall(ffi.cdef, "long readlink(const char *path, char *buf, size_t len);")
        local buf = ffi.new("char[64]")
        local eventfds = 0
        for fd = 0, 1023 do
            local n = ffi.C.readlink("/proc/self/fd/" .. fd, buf, 64)
            if n > 0 and ffi.string(buf, n) == "anon_inode:[eventfd]" then eventfds = eventfds + 1 end
        end
        -- nginx's epoll module has one of its own (its notification channel)
        ngx.say("eventfds in this worker, one per worker, the shared one and the two it watches at least: ", eventfds >= 5)
        local we = require "t.we"
        local ev = require "resty.worker.events"
        local got = ngx.shared.got
        assert(we.wait_ready())
        ngx.sleep(0.1)
        -- same generation: every worker gets it at once (interval 30 s)
        assert(ev.post("test", "same"))
        local function all_got(what, pids)
            for _ = 1, 100 do
                local n = 0
                for _, pid in ipairs(pids) do
                    if got:get("got:" .. what .. ":" .. pid) then n = n + 1 end
                end
                if n == #pids then return true end
                ngx.sleep(0.01)
            end
            return false
        end
        local function started_after(t)
            local pids = {}
            for _, k in ipairs(got:get_keys(0)) do
                local pid = k:match("^started:(%d+)$")
                if pid and got:get(k) > t then pids[#pids + 1] = tonumber(pid) end
            end
            return pids
        end
        local old = started_after(0)
        ngx.say("same generation, all got it within 1 s: ", all_got("same", old))
        -- reload: this request keeps this (old) worker alive while it ends
        local t0 = ngx.now()
        ngx.update_time()
        we.reload()
        local new = {}
        for _ = 1, 300 do
            new = started_after(t0)
            if #new == 2 then break end
            ngx.sleep(0.01)
        end
        ngx.say("new generation started: ", #new)
        ngx.sleep(0.2) -- they configure themselves and wait
        assert(ev.post("test", "cross"))
        ngx.say("old worker's post, both new workers got it within 1 s: ", all_got("cross", new))
    }
}
--- response_body
eventfds in this worker, one per worker, the shared one and the two it watches at least: true
same generation, all got it within 1 s: true
new generation started: 2
old worker's post, both new workers got it within 1 s: true
--- timeout: 8
--- no_error_log
[error]
[crit]
push wake-ups unavailable
eventfd wake-ups unavailable
