# The status endpoint: `worker_events_status [zone];` answers from the zone
# in native code: JSON (default) or Prometheus text, 400 on bad arguments,
# 405 on other methods; counters move with posts, a killed worker, a reload,
# a forced loss; the Prometheus output passes `promtool check metrics`.
# 4 workers.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use WorkerEventsTest;

master_on();
workers(4);

our $HttpConfig = <<'_EOC_';
    init_worker_by_lua_block {
        local we = require "t.we"
        require("resty.worker.events").register(function(data, event)
            if event == "boom" then error("handler boom") end
            we.record(event)
        end, "t")
        we.configure()
    }
_EOC_

our $Status = <<'_EOC_';
location = /status {
    worker_events_status ev;
}
location = /status_default {
    worker_events_status;
}
_EOC_

run_tests();

__DATA__

=== TEST 1: JSON by default: it parses, and its counters move after posts
--- http_config eval: $::HttpConfig
--- config eval
$::Status . q{
location = /t {
    content_by_lua_block {
        local cjson = require "cjson.safe"
        local we = require "t.we"
        assert(we.wait_ready())
        local function get() return we.http_get("/status") end
        local head, body = get()
        local before = assert(cjson.decode(body))
        for i = 1, 50 do assert(require("resty.worker.events").post("t", "e", i)) end
        assert(require("resty.worker.events").post("t", "boom"))
        assert(we.wait_all(50))
        ngx.sleep(0.2)
        local head2, body2 = get()
        local after = assert(cjson.decode(body2))
        ngx.say("content type json: ", head:find("Content%-Type: application/json") ~= nil)
        ngx.say("zone: ", after.zone)
        ngx.say("posted +", after.events.posted - before.events.posted)
        ngx.say("bytes posted grew: ", after.events.bytes_posted > before.events.bytes_posted)
        ngx.say("workers: ", #after.workers)
        local delivered, errors, behind = 0, 0, 0
        for _, w in ipairs(after.workers) do
            delivered = delivered + w.delivered
            errors = errors + w.handler_errors
            behind = behind + (w.behind_events or 0)
        end
        local d0 = 0
        for _, w in ipairs(before.workers) do d0 = d0 + w.delivered end
        -- (deliveries of the workers' own started events may land after the first snapshot)
        ngx.say("delivered +204 (4 workers x 51): ", delivered - d0 >= 204 and delivered - d0 <= 204 + 16,
                ", handler errors ", errors, ", behind ", behind)
        local h = after.delivery_delay_seconds
        ngx.say("delay histogram counts: ", h.count >= 204, ", +Inf bucket = count: ", h.buckets[#h.buckets].count == h.count)
        ngx.say("wakeups sent grew: ", after.wakeups_sent > before.wakeups_sent)
        ngx.say("generation ", after.lifecycle.generation, ", reloads ", after.lifecycle.reloads)
        ngx.say("log used <= size: ", after.log.used_bytes <= after.log.size_bytes)
    }
}
}
--- response_body
content type json: true
zone: ev
posted +51
bytes posted grew: true
workers: 4
delivered +204 (4 workers x 51): true, handler errors 4, behind 0
delay histogram counts: true, +Inf bucket = count: true
wakeups sent grew: true
generation 1, reloads 0
log used <= size: true



=== TEST 2: ?format=prometheus and Accept: text/plain; version=0.0.4 give the text format; promtool check metrics passes
--- http_config eval: $::HttpConfig
--- config eval
$::Status . q{
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local function get(path, accept)
            return we.http_get(path, accept and ("Accept: " .. accept .. "\r\n"))
        end
        local head, body = get("/status?format=prometheus")
        ngx.say("content type: ", head:match("Content%-Type: ([^\r]+)"))
        local f = assert(io.open(ngx.config.prefix() .. "/metrics.txt", "w"))
        f:write(body)
        f:close()
        local p = io.popen("promtool check metrics < " .. ngx.config.prefix() .. "/metrics.txt 2>&1; echo rc=$?")
        local out = p:read("*a")
        p:close()
        ngx.say("promtool: ", out:match("rc=(%d+)"), (out:match("rc=0") and "" or (" " .. out)))
        ngx.say("has HELP and TYPE: ", body:find("# HELP ngx_worker_events_events_posted_total", 1, true) ~= nil
            and body:find("# TYPE ngx_worker_events_delivery_delay_seconds histogram", 1, true) ~= nil)
        local head2 = get("/status_default", "text/plain; version=0.0.4")
        ngx.say("Accept gives: ", head2:match("Content%-Type: ([^;\r]+)"))
        local _, b3 = get("/status_default")
        ngx.say("default zone document: ", b3:match('"zone": "(%w+)"'))
    }
}
}
--- response_body
content type: text/plain; version=0.0.4; charset=utf-8
promtool: 0
has HELP and TYPE: true
Accept gives: text/plain
default zone document: ev



=== TEST 3: bad arguments: 400 with a one-line reason; other methods: 405; HEAD: headers only
--- http_config eval: $::HttpConfig
--- config eval: $::Status
--- request eval
["GET /status?format=xml", "GET /status?foo=1", "POST /status\nx", "HEAD /status"]
--- error_code eval
[400, 400, 405, 200]
--- response_body eval
["bad format \"xml\": use format=json or format=prometheus\n", "unknown argument \"foo\": the only one is format=json|prometheus\n", qr/405 Not Allowed/, ""]



=== TEST 4: a stalled worker shows how far behind it is; after it resumes, its lost events are counted (small zone)
--- http_config eval
"worker_events_zone ev 128k;\n" . $::HttpConfig
--- config eval
$::Status . q{
location = /t {
    content_by_lua_block {
        local cjson = require "cjson.safe"
        local we = require "t.we"
        assert(we.wait_ready())
        local function doc()
            return assert(cjson.decode((select(2, we.http_get("/status")))))
        end
        local victim = we.other_worker_pid()
        os.execute("kill -STOP " .. victim)
        local ev = require "resty.worker.events"
        for i = 1, 20 do assert(ev.post("t", "x", i)) end
        ngx.sleep(0.3)
        local d = doc()
        local function slot(d)
            for _, w in ipairs(d.workers) do if w.pid == victim then return w end end
        end
        ngx.say("stalled worker behind by 20 events: ", slot(d).behind_events == 20)
        ngx.say("... and bytes: ", slot(d).behind_bytes > 0)
        -- overrun it: more than the 128k zone's log holds
        for i = 1, 2000 do ev.post("t", "big", string.rep("x", 200)) end
        os.execute("kill -CONT " .. victim)
        ngx.sleep(0.5)
        d = doc()
        ngx.say("its lost counted: ", slot(d).lost > 0, ", evicted: ", d.events.evicted > 0)
        ngx.say("caught up: ", slot(d).behind_events == 0)
    }
}
}
--- response_body
stalled worker behind by 20 events: true
... and bytes: true
its lost counted: true, evicted: true
caught up: true



=== TEST 5: lifecycle: a reload counts, a killed worker counts as a crash (resty.worker.manager), tasks report runs
--- http_config eval
q{
    init_by_lua_block {
        require("resty.worker.manager").on_init_by_lua({ interval = 0.2 })
    }
} . $::HttpConfig =~ s/we.configure\(\)/we.configure()
        assert(require("resty.worker.manager").on_init_worker_by_lua())
        local tasks = require "ngx_tasks"
        tasks:push { identifier = "tick", interval = 0.2, typ = "preemption", callback = function() end }
        tasks:push { identifier = "fail", interval = 0.2, typ = "normal", callback = function() error("x") end }
        assert(tasks:start())/r
--- config eval
$::Status . q{
location = /hup {
    content_by_lua_block { require("t.we").reload() ngx.say("hup") }
}
location = /t {
    content_by_lua_block {
        local cjson = require "cjson.safe"
        local we = require "t.we"
        ngx.sleep(1)
        local function doc()
            return assert(cjson.decode((select(2, we.http_get("/status")))))
        end
        local before = doc()
        local victim = we.other_worker_pid()
        os.execute("kill -9 " .. victim)
        ngx.sleep(1)
        local d = doc()
        ngx.say("generation ", d.lifecycle.generation, ", reloads ", d.lifecycle.reloads)
        ngx.say("crashes +", d.lifecycle.crashes - before.lifecycle.crashes)
        local tasks = {}
        for _, t in ipairs(d.tasks) do tasks[t.identifier] = t end
        ngx.say("tick runs: ", tasks.tick.runs > 2, ", fail failures = runs: ", tasks.fail.failures == tasks.fail.runs)
        local fresh = 0
        for _, w in ipairs(d.workers) do
            if w.alive and w.heartbeat_age_seconds and w.heartbeat_age_seconds < 1 then fresh = fresh + 1 end
        end
        ngx.say("live workers with a fresh heartbeat: ", fresh)
    }
}
}
--- request eval
["GET /hup", "GET /t"]
--- response_body eval
["hup\n", "generation 2, reloads 1\ncrashes +1\ntick runs: true, fail failures = runs: true\nlive workers with a fresh heartbeat: 4\n"]
--- timeout: 6
--- no_error_log
[crit]
[emerg]



=== TEST 6: the endpoint answers while every worker's Lua is busy (timers looping on CPU, yielding every 5 ms): no Lua runs for it
--- http_config eval
$::HttpConfig =~ s/we.configure\(\)/we.configure()
        ngx.timer.at(0.3, function()
            local t = ngx.now() + 2
            while ngx.now() < t do
                local s = ngx.now() + 0.005
                while ngx.now() < s do ngx.update_time() end
                ngx.sleep(0)
            end
        end)/r
--- config eval
$::Status . q{
location = /t {
    content_by_lua_block {
        ngx.sleep(0.5)
        local sock = ngx.socket.tcp()
        assert(sock:connect("127.0.0.1", ngx.var.server_port))
        ngx.update_time()
        local t0 = ngx.now()
        assert(sock:send("GET /status?format=prometheus HTTP/1.0\r\nHost: x\r\n\r\n"))
        local all = sock:receive("*a")
        ngx.update_time()
        ngx.say(all:match("^HTTP/1.1 (%d+)"), ", answered during the busy loops: ", ngx.now() - t0 < 1.5)
    }
}
}
--- response_body
200, answered during the busy loops: true



=== TEST 7: nginx -t refuses worker_events_status outside a location, twice in one, and with two zones
--- config
location = /t {
    content_by_lua_block {
        ngx.say("see the nginx_t checks")
    }
}
--- init
use WorkerEventsTest;
my @bad = (
    "worker_events_status;",
    "server { listen 127.0.0.1:1; worker_events_status; }",
    "server { listen 127.0.0.1:1; location / { worker_events_status; worker_events_status; } }",
    "server { listen 127.0.0.1:1; location / { worker_events_status a b; } }",
);
for my $http (@bad) {
    my ($rc, $out) = nginx_t($http);
    die "nginx -t accepted: $http\n$out" if $rc == 0;
}
my ($rc, $out) = nginx_t("worker_events_zone ev 1m; server { listen 127.0.0.1:1; location / { worker_events_status ev; } }");
die "nginx -t refused a good status location: $out" if $rc != 0;
--- response_body
see the nginx_t checks



=== TEST 8: the same snapshot from Lua: stats().status of resty.worker.events and of resty.events
--- http_config eval: $::HttpConfig
--- config eval
$::Status . q{
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        assert(we.wait_ready())
        local s = require("resty.worker.events").stats().status
        ngx.say("worker.events: zone ", s.zone, ", ", #s.workers, " workers, posted >= 4: ", s.events.posted >= 4)
        local ev = require("resty.events").new { listening = "unix:/x", shm = "ev" }
        assert(ev:init_worker())
        local s2 = ev:stats().status
        ngx.say("resty.events: zone ", s2.zone, ", same generation: ", s2.lifecycle.generation == s.lifecycle.generation)
        ngx.say("histogram buckets: ", #s.delivery_delay_seconds.buckets)
    }
}
}
--- response_body
worker.events: zone ev, 4 workers, posted >= 4: true
resty.events: zone ev, same generation: true
histogram buckets: 13



=== TEST 9: a long bad argument is quoted cut short in the 400, not echoed whole
--- http_config eval: $::HttpConfig
--- config eval: $::Status
--- request eval
["GET /status?format=" . ("x" x 5000), "GET /status?" . ("k" x 3000) . "=1"]
--- error_code eval
[400, 400]
--- response_body eval
["bad format \"" . ("x" x 32) . "...\" (5000 bytes): use format=json or format=prometheus\n",
 "unknown argument \"" . ("k" x 32) . "...\" (3000 bytes): the only one is format=json|prometheus\n"]
