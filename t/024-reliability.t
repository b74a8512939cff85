# Defects found by trying the module as a hostile user would (issue 9): each
# block failed before its fix.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use WorkerEventsTest;

# several workers (and a master: reloads, kills) as the real Test::Nginx needs them
master_on();
workers(2);

# a worker that spins serves nothing: this location answers only if the
# worker yields, and says how much CPU it burnt in 0.5 s
our $CpuConfig = <<'_EOC_';
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        assert(we.wait_ready())
        if RECONFIGURE then
            assert(require("resty.worker.events").configure({ interval = RECONFIGURE }))
            ngx.sleep(0.3) -- the loop's current wait ends and it takes the new interval
        end
        local t0 = we.cpu_ticks()
        ngx.sleep(0.5)
        local used = we.cpu_ticks() - t0
        ngx.say("served; CPU in 0.5 s below 0.1 s: ", used < 10)
    }
}
_EOC_

our $IntervalInit = <<'_EOC_';
init_worker_by_lua_block {
    assert(require("t.we").configure({ interval = INTERVAL }))
}
_EOC_

run_tests();

__DATA__

=== TEST 1: [9.1] NaN and infinities are refused for every numeric option
--- config
location = /t {
    content_by_lua_block {
        local ev = require "resty.worker.events"
        for _, name in ipairs({ "timeout", "interval", "wait_interval", "wait_max", "shm_retries" }) do
            for _, v in ipairs({ 0/0, math.huge, -math.huge }) do
                local ok, err = ev.configure({ shm = "ev", [name] = v })
                ngx.say(name, "=", v ~= v and "nan" or tostring(v), ": ", tostring(ok), " ", err)
            end
        end
        ngx.say("configured: ", ev.configured())
    }
}
--- response_body
timeout=nan: nil "timeout" must be a finite number
timeout=inf: nil "timeout" must be a finite number
timeout=-inf: nil "timeout" must be a finite number
interval=nan: nil "interval" must be a finite number
interval=inf: nil "interval" must be a finite number
interval=-inf: nil "interval" must be a finite number
wait_interval=nan: nil "wait_interval" must be a finite number
wait_interval=inf: nil "wait_interval" must be a finite number
wait_interval=-inf: nil "wait_interval" must be a finite number
wait_max=nan: nil "wait_max" must be a finite number
wait_max=inf: nil "wait_max" must be a finite number
wait_max=-inf: nil "wait_max" must be a finite number
shm_retries=nan: nil "shm_retries" must be a finite number
shm_retries=inf: nil "shm_retries" must be a finite number
shm_retries=-inf: nil "shm_retries" must be a finite number
configured: false



=== TEST 2: [9.1] interval = 0.0005 (below what a wait can express) does not spin
--- http_config eval: "init_by_lua_block { INTERVAL = 0.0005 }\n" . $::IntervalInit
--- config eval: $::CpuConfig
--- response_body
served; CPU in 0.5 s below 0.1 s: true



=== TEST 3: [9.1] interval = 1e-9 without push does not spin
--- main_config
env NGX_WORKER_EVENTS_NO_PUSH=1;
--- http_config eval: "init_by_lua_block { INTERVAL = 1e-9 }\n" . $::IntervalInit
--- config eval: $::CpuConfig
--- response_body
served; CPU in 0.5 s below 0.1 s: true



=== TEST 4: [9.1] interval = 3e6 (past what a wait can express) does not spin
--- http_config eval: "init_by_lua_block { INTERVAL = 3e6 }\n" . $::IntervalInit
--- config eval: $::CpuConfig
--- response_body
served; CPU in 0.5 s below 0.1 s: true



=== TEST 5: [9.1] configure() again from a request with interval = 0.0005 does not spin
--- http_config eval: "init_by_lua_block { INTERVAL = 0.2; RECONFIGURE = 0.0005 }\n" . $::IntervalInit
--- config eval: $::CpuConfig
--- response_body
served; CPU in 0.5 s below 0.1 s: true



=== TEST 6: [9.2] a handler that posts a local event for each one it gets runs a bounded batch per poll, and the worker still serves
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        assert(we.configure({ interval = 0.05 }))
        local n = 0
        local function again()
            n = n + 1
            ev.post_local("loc", "x")
        end
        ev.register(again, "loc", "x")
        ev.post_local("loc", "x")
        ngx.say("poll: ", ev.poll(), ", handled in that poll: ", n)
        local before = n
        ngx.sleep(0.2) -- the loop goes on with it, in batches
        ngx.say("this request was served meanwhile; the loop went on: ", n > before)
        ev.unregister(again, "loc", "x")
        ngx.sleep(0.1)
        local stopped = n
        ngx.sleep(0.1)
        ngx.say("stopped once unregistered: ", n == stopped)
    }
}
--- response_body
poll: done, handled in that poll: 10000
this request was served meanwhile; the loop went on: true
stopped once unregistered: true



=== TEST 7: [9.7] an error object whose __tostring throws does not stop the other handlers
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        assert(we.configure({ interval = 0 }))
        ev.register(function()
            error(setmetatable({}, { __tostring = function() error("tostring boom") end }))
        end, "test")
        ev.register(function(data, event) ngx.say("second handler ran for ", event) end, "test")
        ev.post_local("test", "e")
        ngx.say("poll: ", ev.poll())
    }
}
--- response_body
second handler ran for e
poll: done
--- error_log
worker-events: event callback failed; source=test, event=e, pid=nil error='(an error object whose __tostring failed)'
--- no_error_log
poll failed
[alert]



=== TEST 8: [9.4] unique = "" is a key like any other: one worker runs it, a repeat none
--- workers: 4
--- http_config
init_worker_by_lua_block {
    local we = require "t.we"
    local ev = require "resty.worker.events"
    ev.register(function(data, event) we.record(event, " ", data) end, "test")
    we.configure()
}
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        assert(we.wait_ready())
        assert(ev.post("test", "once", "first", ""))
        assert(ev.post("test", "once", "repeat", ""))
        assert(ev.post("test", "once", "zero", 0))
        assert(ev.post("test", "marker", "m"))
        assert(we.wait_all(1))
        ngx.sleep(0.2)
        local counts = {}
        for id = 0, ngx.worker.count() - 1 do
            for _, l in ipairs(we.take(id)) do counts[l] = (counts[l] or 0) + 1 end
        end
        ngx.say(we.show(counts))
    }
}
--- response_body
{["marker m"]=4,["once first"]=1,["once zero"]=1}



=== TEST 9: [9.5] a 200 MB payload is refused without being copied, and no buffer keeps its size
--- config
location = /t {
    content_by_lua_block {
        local ev = require "resty.worker.events"
        assert(ev.configure({ shm = "ev" }))
        local function rss_mb()
            local f = assert(io.open("/proc/self/status"))
            local kb = f:read("*a"):match("VmRSS:%s*(%d+)")
            f:close()
            return tonumber(kb) / 1024
        end
        local big = string.rep("x", 200 * 1024 * 1024)
        collectgarbage()
        local before = rss_mb() -- the string itself is counted here
        ngx.say(ev.post("s", "e", big))
        ngx.say(ev.post("s", "e", { a = { big } }))
        local grown = rss_mb() - before
        ngx.say("posting it grew RSS by less than 20 MB: ", grown < 20)
        ngx.say("still posts: ", ev.post("s", "small", "x"))
    }
}
--- response_body_like chomp
\Anilfailed posting event "e" by "s"; payload too large: more than \d+ bytes encoded, the limit for this zone is \d+
nilfailed posting event "e" by "s"; payload too large: more than \d+ bytes encoded, the limit for this zone is \d+
posting it grew RSS by less than 20 MB: true
still posts: true
\z



=== TEST 10: [9.6] lost is dispatched where the gap is, before the events after it, in every worker
--- workers: 2
--- http_config
worker_events_zone ev 1m;
init_worker_by_lua_block {
    local ev = require "resty.worker.events"
    local d = ngx.shared.out
    local id = ngx.worker.id()
    local seen, lost, lost_after_end = 0, 0, false
    local done = false
    ev.register(function(data, event)
        if event == "end" then
            d:set("result" .. id, string.format("seen %d + lost %d = %d; lost after end: %s",
                  seen, lost, seen + lost, tostring(lost_after_end)))
            done = true
        else
            seen = seen + 1
        end
    end, "test")
    ev.register(function(data)
        lost = lost + data.count
        if done then lost_after_end = true end
    end, "resty-worker-events", "lost")
    assert(require("t.we").configure())
}
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        assert(we.wait_ready())
        ngx.sleep(0.1) -- every worker read the others' "started" before the flood
        local blob = string.rep("x", 1024)
        for i = 1, 20000 do assert(ev.post("test", "e", blob)) end
        assert(ev.post("test", "end"))
        local d = ngx.shared.out
        for id = 0, ngx.worker.count() - 1 do
            for _ = 1, 300 do
                if d:get("result" .. id) then break end
                ngx.sleep(0.01)
            end
            ngx.say("worker ", id == ngx.worker.id() and "poster" or "other", ": ",
                    ((d:get("result" .. id) or "no end"):gsub("seen %d+ %+ lost %d+", "seen + lost")))
        end
    }
}
--- response_body_like chomp
\Aworker (poster|other): seen \+ lost = 20000; lost after end: false
worker (poster|other): seen \+ lost = 20000; lost after end: false
\z



=== TEST 11: [9.3] configure()/post() in init_by_lua, then HUP, a zone resize, HUP, HUP: the master survives
--- http_config
lua_shared_dict dict 1m;
worker_events_zone ev 1m;
init_by_lua_block {
    local ev = require "resty.worker.events"
    INIT = table.concat({ tostring(select(2, ev.configure({ shm = "ev" }))),
                          tostring(select(2, ev.post("s", "e"))) }, " / ")
    ngx.log(ngx.WARN, "init_by_lua: ", INIT)
}
init_worker_by_lua_block {
    local we = require "t.we"
    local ev = require "resty.worker.events"
    ev.register(function(data, event) we.record(event) end, "test")
    assert(we.configure())
}
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        ngx.say("in init_by_lua: ", INIT)
        local master = we.master_pid()
        local function rewrite(from, to)
            local path = ngx.config.prefix() .. "conf/nginx.conf"
            local f = assert(io.open(path))
            local conf = f:read("*a")
            f:close()
            f = assert(io.open(path, "w"))
            f:write((conf:gsub(from, to)))
            f:close()
        end
        we.reload()
        ngx.sleep(0.5)
        rewrite("worker_events_zone ev 1m;", "worker_events_zone ev 2m;")
        we.reload()
        ngx.sleep(0.5)
        we.reload()
        ngx.sleep(0.5)
        we.reload()
        ngx.sleep(0.5)
        -- os.execute gives the exit status (Lua 5.1), or true/nil where
        -- LuaJIT is built with LUAJIT_ENABLE_LUA52COMPAT (OpenResty)
        local alive = os.execute("kill -0 " .. master .. " 2>/dev/null")
        ngx.say("master alive: ", alive == 0 or alive == true)
    }
}
location = /check {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        assert(we.wait_ready())
        for id = 0, ngx.worker.count() - 1 do we.take(id) end
        assert(ev.post("test", "after"))
        ngx.say("every new worker got it: ", we.wait_all(1, 3))
        ngx.say("zone size now: ", ev.stats().log_size > 1024 * 1024)
        ngx.sleep(0.5) -- the old generations are gone
        ngx.say("slots taken: ", ev.stats().workers, " (the workers, not the master)")
    }
}
--- request eval
["GET /t", "GET /check"]
--- response_body eval
["in init_by_lua: configure() is for worker processes (init_worker_by_lua* or later), not init_by_lua* / failed posting event \"e\" by \"s\"; events not configured, call configure() first
master alive: true
", "every new worker got it: true
zone size now: true
slots taken: 2 (the workers, not the master)
"]
--- timeout: 10



=== TEST 12: [9.8] workers that found every push slot taken after a reload get one when the old generation's free
--- workers: 70
--- http_config
init_worker_by_lua_block {
    local we = require "t.we"
    local ev = require "resty.worker.events"
    ev.register(function(data, event)
        we.record(event, " slot=", ev.stats().slot ~= nil)
    end, "test")
    assert(we.configure({ interval = 30 })) -- only push can deliver within the test
}
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        we.reload()
        ngx.say("reloaded")
    }
}
location = /check {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        ngx.sleep(2) -- the old generation exits; the new one retries its slots
        for id = 0, ngx.worker.count() - 1 do we.take(id) end
        assert(ev.post("test", "pushed"))
        local all = we.wait_all(1, 3)
        local counts = {}
        for id = 0, ngx.worker.count() - 1 do
            local l = we.take(id)[1] or "nothing"
            counts[l] = (counts[l] or 0) + 1
        end
        ngx.say("every new worker got it by push: ", all, " ", we.show(counts))
    }
}
--- request eval
["GET /t", "GET /check"]
--- response_body eval
["reloaded\n", "every new worker got it by push: true {[\"pushed slot=true\"]=70}\n"]
--- timeout: 8



=== TEST 13: [9.10] a 1m zone deduplicates 2 000 live unique keys posted twice; a full table refuses posts, never runs one twice
--- workers: 2
--- http_config
worker_events_zone ev 1m;
worker_events_zone tiny 128k;
init_worker_by_lua_block {
    local we = require "t.we"
    local ev = require "resty.worker.events"
    local d = ngx.shared.out
    ev.register(function(data, event) d:incr("runs:" .. data, 1, 0) end, "test")
    assert(we.configure({ timeout = 30 }))
}
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        local d = ngx.shared.out
        assert(we.wait_ready())
        for round = 1, 2 do
            for i = 1, 2000 do
                -- small batches: the readers keep up, so nothing is lost
                assert(ev.post("test", "once", "k" .. i, "key-" .. i))
                if i % 200 == 0 then ngx.sleep(0.01) end
            end
        end
        assert(ev.post("test", "once", "last", "last"))
        for _ = 1, 200 do
            if d:get("runs:last") then break end
            ngx.sleep(0.01)
        end
        ngx.sleep(0.2)
        local runs, twice = 0, 0
        for i = 1, 2000 do
            local n = d:get("runs:k" .. i) or 0
            runs = runs + n
            if n > 1 then twice = twice + 1 end
        end
        ngx.say("1m: 2000 keys posted twice ran ", runs, " times; keys run twice: ", twice)
        local s = ev.stats()
        ngx.say("capacity at least a 1m dict's 8095: ", s.claims_capacity >= 8095, "; refused: ", s.claims_refused)

        -- a second API instance on the small zone, filled until it refuses
        local bus = require("ngx_worker_events.bus").new { dispatch = function() end }
        assert(bus.open("tiny"))
        bus.set_options({ timeout = 30, interval = 0 })
        local held, err = 0, nil
        while true do
            local ok, e = bus.post("test", "fill", nil, "fill-" .. held)
            if not ok then err = e break end
            held = held + 1
        end
        local ts = bus.stats()
        ngx.say("128k: held ", held >= 959 and "at least a 128k dict's 959" or held,
                " live keys, then: ", (err:gsub("%d+", "N")))
        ngx.say("counted: ", ts.claims_refused, "; a repeat of a held key still posts: ",
                bus.post("test", "fill", nil, "fill-0") ~= nil)
        bus.close()
    }
}
--- response_body
1m: 2000 keys posted twice ran 2000 times; keys run twice: 0
capacity at least a 1m dict's 8095: true; refused: 0
128k: held at least a 128k dict's 959 live keys, then: no room for this unique key: the zone holds N live unique keys at most (make the zone larger or the timeout shorter)
counted: 1; a repeat of a held key still posts: true
--- timeout: 10



=== TEST 14: [9.9] push names are random, and a flood from another user delays no real wake-up
--- workers: 2
--- http_config
init_worker_by_lua_block {
    local we = require "t.we"
    local ev = require "resty.worker.events"
    ngx.shared.out:set("pid:" .. ngx.worker.id(), ngx.worker.pid())
    ev.register(function(data, event, source, pid)
        if pid ~= ngx.worker.pid() then
            ngx.update_time()
            we.record(ngx.now() - data.t < 1 and "in time" or "late")
        end
    end, "test")
    assert(we.configure({ interval = 30 })) -- only push delivers within the test
}
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        assert(we.wait_ready())
        -- our workers' sockets (other nginx instances may run on this host)
        local inodes = {}
        for id = 0, ngx.worker.count() - 1 do
            local p = io.popen("ls -l /proc/" .. ngx.shared.out:get("pid:" .. id) .. "/fd 2>/dev/null")
            for ino in p:read("*a"):gmatch("socket:%[(%d+)%]") do inodes[ino] = true end
            p:close()
        end
        local names = {}
        for line in io.lines("/proc/net/unix") do
            local ino, n = line:match("%s(%d+)%s+(@ngx%-worker%-events/%S*)")
            if n and inodes[ino] then names[#names + 1] = n end
        end
        local random = 0
        for _, n in ipairs(names) do
            if n:match("^@ngx%-worker%-events/%x+$") and #n == 19 + 32 then random = random + 1 end
        end
        ngx.say("sockets: ", #names, ", with a 128-bit random name: ", random)
        -- 3 s of datagrams to every worker socket, as user nobody
        local args = {}
        for _, n in ipairs(names) do args[#args + 1] = "'" .. n:sub(2) .. "'" end
        os.execute([[perl -MSocket -MPOSIX -e 'POSIX::setgid(65534); POSIX::setuid(65534) or die;
            socket(my $s, AF_UNIX, SOCK_DGRAM, 0) or die; my @a = map { pack_sockaddr_un("\0$_") } @ARGV;
            my $end = time + 3; while (time < $end) { send($s, "x", MSG_DONTWAIT, $_) for @a }' ]]
            .. table.concat(args, " ") .. " >/dev/null 2>&1 &")
        ngx.sleep(0.5)
        local other = 1 - ngx.worker.id()
        for i = 1, 10 do
            ngx.update_time()
            assert(ev.post("test", "real", { t = ngx.now() }))
            ngx.sleep(0.1)
        end
        we.wait_others(10, 2)
        local counts = {}
        for _, l in ipairs(we.take(other)) do counts[l] = (counts[l] or 0) + 1 end
        ngx.say("during the flood, the other worker got: ", we.show(counts))
        ngx.sleep(2.5) -- the flood ends
    }
}
--- response_body
sockets: 2, with a 128-bit random name: 2
during the flood, the other worker got: {["in time"]=10}
--- timeout: 10



=== TEST 15: [9.9] binding the names of the next pids first does not take push from a respawned worker
--- workers: 2
--- http_config
init_worker_by_lua_block {
    local we = require "t.we"
    local ev = require "resty.worker.events"
    ngx.shared.out:set("pid:" .. ngx.worker.id(), ngx.worker.pid())
    ev.register(function() we.record("push=", ev.stats().push) end, "test", "report")
    assert(we.configure({ interval = 30 }))
}
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        assert(we.wait_ready())
        local other = 1 - ngx.worker.id()
        local victim = ngx.shared.out:get("pid:" .. other)
        -- as nobody, bind the names the next 300 pids would have had with
        -- pid-based names, and hold them while the victim is respawned
        os.execute([[perl -MSocket -MPOSIX -e 'POSIX::setgid(65534); POSIX::setuid(65534) or die; my @s;
            for my $p ($ARGV[0] + 1 .. $ARGV[0] + 300) { socket(my $s, AF_UNIX, SOCK_DGRAM, 0) or die;
            bind($s, pack_sockaddr_un("\0ngx-worker-events/$p")); push @s, $s } sleep 3' ]]
            .. victim .. " >/dev/null 2>&1 &")
        ngx.sleep(0.3)
        os.execute("kill -9 " .. victim)
        ngx.sleep(1) -- respawned
        for id = 0, ngx.worker.count() - 1 do we.take(id) end
        assert(ev.post("test", "report"))
        ngx.say("every worker got it: ", we.wait_all(1, 3))
        local lines = {}
        for id = 0, ngx.worker.count() - 1 do lines[#lines + 1] = we.take(id)[1] end
        ngx.say(table.concat(lines, " "))
        ngx.sleep(2)
    }
}
--- response_body
every worker got it: true
push=true push=true
--- no_error_log eval
[qr/\[alert\](?!.*exited on signal 9)/, "[crit]", "push wake-ups unavailable"]
--- timeout: 10



=== TEST 16: an empty source or event through the bare bus is refused, not written for readers to drop as garbage
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local got = {}
        local b = require("ngx_worker_events.bus").new {
            dispatch = function(source, event) got[#got + 1] = source .. "/" .. event end,
        }
        assert(b.open("ev"))
        b.set_options({ interval = 0 })
        ngx.say(b.post("", "e"))
        ngx.say(b.post("s", ""))
        assert(b.post("s", "after"))
        b.poll()
        ngx.say("read: ", table.concat(got, ","))
        b.close()
    }
}
--- response_body
nilsource is required
nilevent is required
read: s/after



=== TEST 17: at error_log debug, a --with-debug nginx shuts down cleanly (the wake-up kick timer has a connection to log)
--- log_level: debug
--- http_config
init_worker_by_lua_block {
    assert(require("t.we").configure())
}
--- config
location = /t {
    content_by_lua_block {
        ngx.say(require("resty.worker.events").configured())
    }
}
--- response_body
true
--- shutdown_error_log
gracefully shutting down
--- no_shutdown_error_log
exited on signal



=== TEST 18: a backlog of slow events is handled in batches of bounded time, not all in one poll
--- config
location = /t {
    content_by_lua_block {
        local handled = 0
        local slow = require("ngx_worker_events.bus").new {
            dispatch = function()
                handled = handled + 1
                local t = os.clock() + 0.0005 -- 0.5 ms of work per event
                while os.clock() < t do end
            end,
        }
        assert(slow.open("ev"))
        slow.set_options({ interval = 0 })
        local poster = require("ngx_worker_events.bus").new { dispatch = function() end }
        assert(poster.open("ev"))
        for i = 1, 2000 do assert(poster.post("test", "e", i)) end
        ngx.say(slow.poll())
        ngx.say("one poll handled part of the 1 s backlog: ", handled > 0 and handled < 1000)
        while handled < 2000 do slow.poll() end
        ngx.say("all handled over several polls: ", handled)
        slow.close()
        poster.close()
    }
}
--- response_body
done
one poll handled part of the 1 s backlog: true
all handled over several polls: 2000



=== TEST 19: stats().workers counts the workers that run, not the slots SIGKILLed ones left
--- workers: 2
--- http_config
init_worker_by_lua_block {
    ngx.shared.out:set("pid:" .. ngx.worker.id(), ngx.worker.pid())
    assert(require("t.we").configure())
}
--- config
location = /t {
    content_by_lua_block {
        local ev = require "resty.worker.events"
        require("t.we").reload()
        ngx.sleep(1) -- a new generation runs; the old one exited but for this worker
        os.execute("kill -9 " .. ngx.shared.out:get("pid:0"))
        ngx.sleep(0.5) -- respawned, in a slot the old generation freed
        ngx.say("workers: ", ev.stats().workers, " (this old worker and the two new ones)")
    }
}
--- response_body
workers: 3 (this old worker and the two new ones)
--- no_error_log eval
[qr/\[alert\](?!.*exited on signal 9)/, "[crit]"]
