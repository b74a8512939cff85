# Cluster events over Redis Streams (worker_events_cluster): a real
# redis-server started by the test in its own directory, node A (this
# Test::Nginx instance, 4 workers) and node B (a second nginx, 4 workers,
# t/lib/ClusterTest.pm). Both nodes run the same recording handlers
# (t/lib/t/cluster.lua) for both Kong APIs.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use WorkerEventsTest;
use ClusterTest;

master_on();
workers(4);

our $HttpA = cluster_http("a");

run_tests();

__DATA__

=== TEST 1: an event posted on node A reaches every worker of A and B exactly once, in order
--- http_config eval: $::HttpA
--- init
ClusterTest::start_node_b();
--- config
    location = /t {
        content_by_lua_block {
            local c = require "t.cluster"
            local wev = require "resty.worker.events"
            for i = 1, 100 do
                assert(wev.post("cache", "purge", { i = i }, nil, { cluster = true }))
            end
            ngx.say("A: ", c.wait("wev cache/purge", 100), " ", c.counts("wev cache/purge"))
            ngx.say("B: ", c.b("wait?key=wev%20cache/purge&n=100"))
            ngx.sleep(0.3)
            ngx.say("A after: ", c.counts("wev cache/purge"))
            ngx.say("B after: ", c.b("counts?key=wev%20cache/purge"))
            ngx.say("B order: ", c.b("order?key=wev%20cache/purge&n=100"))
            ngx.say("A order: ", c.in_order("wev cache/purge", 100))
            ngx.say("B resty.events: ", c.b("counts?key=ev%20cache/purge"))
        }
    }
--- response_body
A: true w0=100 w1=100 w2=100 w3=100
B: true w0=100 w1=100 w2=100 w3=100
A after: w0=100 w1=100 w2=100 w3=100
B after: w0=100 w1=100 w2=100 w3=100
B order: true
A order: true
B resty.events: w0=100 w1=100 w2=100 w3=100
--- no_error_log
[error]

=== TEST 2: resty.events publish_cluster("all") on node B reaches A's workers through both APIs; remote events carry no pid or wid
--- http_config eval: $::HttpA
--- init
ClusterTest::start_node_b();
--- config
    location = /t {
        content_by_lua_block {
            local c = require "t.cluster"
            ngx.say(c.b("publish?n=50&source=conf&event=changed"))
            ngx.say("A wev: ", c.wait("wev conf/changed", 50), " ", c.counts("wev conf/changed"))
            ngx.say("A ev: ", c.wait("ev conf/changed", 50), " ", c.counts("ev conf/changed"))
            ngx.say("A order: ", c.in_order("wev conf/changed", 50))
            ngx.say("pid on A: ", ngx.shared.out:get("pidtype:0"))
            ngx.say("B wev: ", c.b("wait?key=wev%20conf/changed&n=50"))
            ngx.say("pid on B: ", c.b("pidtype"))
            ngx.sleep(0.2)
            ngx.say("A after: ", c.counts("wev conf/changed"))
        }
    }
--- response_body
published
A wev: true w0=50 w1=50 w2=50 w3=50
A ev: true w0=50 w1=50 w2=50 w3=50
A order: true
pid on A: nil
B wev: true w0=50 w1=50 w2=50 w3=50
pid on B: number
A after: w0=50 w1=50 w2=50 w3=50
--- no_error_log
[error]



=== TEST 3: a Redis restart in the middle of a stream of posts loses nothing Redis kept: every worker of B gets 1..300 once, in order
--- http_config eval: $::HttpA
--- init
ClusterTest::start_node_b();
--- config
    location = /t {
        content_by_lua_block {
            local c = require "t.cluster"
            local wev = require "resty.worker.events"
            for i = 1, 300 do
                assert(wev.post("s", "r", { i = i }, nil, { cluster = true }))
                if i == 100 then c.redis_ctl("stop") end
                if i == 200 then c.redis_ctl("start") end
                if i % 10 == 0 then ngx.sleep(0.01) end
            end
            ngx.say("B: ", c.b("wait?key=wev%20s/r&n=300&t=15"))
            ngx.say("B order: ", c.b("order?key=wev%20s/r&n=300"))
            ngx.say("B lost: ", c.b("lost"))
            ngx.say("A: ", c.counts("wev s/r"))
            local st = c.cluster_status()
            ngx.say("A reconnected: ", st.reconnects >= 1, ", connected: ", st.connected,
                    ", waiting: ", st.waiting, ", out: ", st.events_out)
        }
    }
--- response_body
B: true w0=300 w1=300 w2=300 w3=300
B order: true
B lost: 0
A: w0=300 w1=300 w2=300 w3=300
A reconnected: true, connected: true, waiting: 0, out: 300
--- grep_error_log eval: qr/cluster: redis \S+: \w+ failed|cluster: redis \S+ is reachable again/
--- grep_error_log_out eval
qr/^(?:cluster: redis 127.0.0.1:\d+: \w+ failed\n){1,2}cluster: redis 127.0.0.1:\d+ is reachable again\n$/
--- timeout: 30



=== TEST 4: killing node B's bridge worker twice hands the bridge over within a second each time; every worker of A gets 1..400 exactly once
--- http_config eval: $::HttpA
--- init
ClusterTest::start_node_b();
--- config
    location = /t {
        content_by_lua_block {
            local c = require "t.cluster"
            assert(c.until_true(function() return c.b("bridge") ~= "none" end))
            local first = c.b("bridge")
            local from = 1
            for round = 1, 4 do
                ngx.say(c.b("post?source=s&event=k&n=100&from=" .. from))
                from = from + 100
                if round == 2 or round == 3 then
                    local victim = c.b("bridge")
                    os.execute("kill -9 " .. victim)
                    ngx.update_time()
                    local t0 = ngx.now()
                    local moved = c.until_true(function()
                        local p = c.b("bridge")
                        return p ~= "none" and p ~= victim
                    end, 3)
                    ngx.update_time()
                    ngx.say("hand-over within 1.5 s: ", moved and ngx.now() - t0 < 1.5)
                end
            end
            ngx.say("A: ", c.wait("wev s/k", 400, 10), " ", c.counts("wev s/k"))
            ngx.sleep(0.3)
            ngx.say("A after: ", c.counts("wev s/k"))
            ngx.say("A order: ", c.in_order("wev s/k", 400))
            local b = c.b("status")
            ngx.say("B: bridge moved: ", c.b("bridge") ~= first, ", waiting: ", b:match('"waiting":(%d+)'),
                    ", lost_out: ", b:match('"lost_out":(%d+)'))
            ngx.say("A: lost_in: ", c.cluster_status().lost_in)
        }
    }
--- response_body
posted
posted
hand-over within 1.5 s: true
posted
hand-over within 1.5 s: true
posted
A: true w0=400 w1=400 w2=400 w3=400
A after: w0=400 w1=400 w2=400 w3=400
A order: true
B: bridge moved: true, waiting: 0, lost_out: 0
A: lost_in: 0
--- timeout: 30



=== TEST 5: HUP reloads of both nodes in the middle of a stream: the new generation takes the bridge over, each event reaches B's zone once
--- http_config eval: $::HttpA
--- init
ClusterTest::start_node_b();
--- config
    location = /t {
        content_by_lua_block {
            local c = require "t.cluster"
            local we = require "t.we"
            local wev = require "resty.worker.events"
            for i = 1, 300 do
                assert(wev.post("s", "h", { i = i }, nil, { cluster = true }))
                if i == 100 then we.reload() end
                if i == 200 then
                    os.execute("kill -HUP $(cat " .. c.dir .. "/b/logs/nginx.pid)")
                end
                if i % 20 == 0 then ngx.sleep(0.01) end
            end
            -- B's zone (it outlives the reload) got each event once: old and
            -- new workers both handle events while the old ones exit, so
            -- per-worker counts would count some twice
            local b
            c.until_true(function()
                b = c.b("status")
                return tonumber(b:match('"events_in":(%d+)')) >= 300
            end, 10)
            ngx.sleep(0.5)
            b = c.b("status")
            ngx.say("B events_in: ", b:match('"events_in":(%d+)'), ", lost_in: ", b:match('"lost_in":(%d+)'))
            local a = c.cluster_status()
            ngx.say("A waiting: ", a.waiting, ", lost_out: ", a.lost_out, ", takeovers >= 2: ", a.bridge_takeovers >= 2)
        }
    }
--- response_body
B events_in: 300, lost_in: 0
A waiting: 0, lost_out: 0, takeovers >= 2: true
--- timeout: 30



=== TEST 6: a cluster unique event posted 8 times on each node (4 workers x 2) runs once in the cluster; each key separately
--- http_config eval: $::HttpA
--- init
ClusterTest::start_node_b();
--- config
    location = /t {
        content_by_lua_block {
            local c = require "t.cluster"
            local wev = require "resty.worker.events"
            for k = 1, 5 do
                local key = "refresh:" .. k
                for n = 1, 8 do
                    assert(wev.post("s", "u", { unique = key }, key, { cluster = true }))
                end
                ngx.say(c.b("post?source=s&event=u&n=8&unique=" .. key))
            end
            ngx.sleep(1)
            for k = 1, 5 do
                local key = "refresh:" .. k
                local a = ngx.shared.out:get("ran:" .. key) or 0
                local b = tonumber(c.b("ran?key=" .. key))
                ngx.say(key, " ran ", a + b, " time(s)")
            end
            ngx.say("broadcast handlers saw none twice: ", (ngx.shared.out:get("ran:refresh:1") or 0) <= 1)
            local st = c.cluster_status()
            ngx.say("A: won + lost = ", st.unique_won + st.unique_lost, " (40 posts)")
        }
    }
--- response_body
posted
posted
posted
posted
posted
refresh:1 ran 1 time(s)
refresh:2 ran 1 time(s)
refresh:3 ran 1 time(s)
refresh:4 ran 1 time(s)
refresh:5 ran 1 time(s)
broadcast handlers saw none twice: true
A: won + lost = 40 (40 posts)
--- no_error_log
[error]



=== TEST 7: a cluster-wide preemption task runs once per window across both nodes (8 workers, windows of 0.4 s)
--- http_config eval
ClusterTest::cluster_http("a", init_worker => q{
    local tasks = require "ngx_tasks"
    tasks:push { identifier = "sweep", interval = 0.4, typ = "preemption", cluster = true,
                 callback = function()
                     ngx.shared.out:incr("tw:" .. math.floor(ngx.now() / 0.4), 1, 0)
                 end }
    tasks:start()
})
--- init
ClusterTest::start_node_b(init_worker => q{
    local tasks = require "ngx_tasks"
    tasks:push { identifier = "sweep", interval = 0.4, typ = "preemption", cluster = true,
                 callback = function()
                     ngx.shared.out:incr("tw:" .. math.floor(ngx.now() / 0.4), 1, 0)
                 end }
    tasks:start()
});
--- config
    location = /t {
        content_by_lua_block {
            local c = require "t.cluster"
            ngx.sleep(4.2)
            local runs = {}
            local function add(list)
                for w, n in list:gmatch("(%d+)=(%d+)") do
                    runs[tonumber(w)] = (runs[tonumber(w)] or 0) + tonumber(n)
                end
            end
            local mine = {}
            for _, k in ipairs(ngx.shared.out:get_keys(0)) do
                if k:match("^tw:") then mine[#mine + 1] = k:sub(4) .. "=" .. ngx.shared.out:get(k) end
            end
            add(table.concat(mine, " "))
            local b = c.b("tw")
            add(b)
            local lo, hi = math.huge, 0
            for w in pairs(runs) do lo = math.min(lo, w); hi = math.max(hi, w) end
            local bad = {}
            for w = lo, hi do
                if runs[w] ~= 1 then bad[#bad + 1] = w .. ":" .. tostring(runs[w]) end
            end
            ngx.say("windows: ", hi - lo + 1 >= 9, ", each run once: ", #bad == 0, " ", table.concat(bad, " "))
        }
    }
--- response_body
windows: true, each run once: true 
--- no_error_log
[error]
--- timeout: 20



=== TEST 8: a stream trimmed past node B's last id (B stopped while A posted 300, maxlen 20): B reports the exact number it lost, then gets the rest in order
--- http_config eval: ClusterTest::cluster_http("a", maxlen => 20)
--- init
ClusterTest::redis_cli("CONFIG", "SET", "stream-node-max-entries", "10");
ClusterTest::start_node_b(maxlen => 20);
--- config
    location = /t {
        content_by_lua_block {
            local c = require "t.cluster"
            local wev = require "resty.worker.events"
            for i = 1, 10 do assert(wev.post("s", "t", { i = i }, nil, { cluster = true })) end
            ngx.say("B before: ", c.b("wait?key=wev%20s/t&n=10"))
            local pids = c.b("pids")
            os.execute("kill -STOP " .. pids)
            for i = 11, 300 do
                assert(wev.post("s", "t", { i = i }, nil, { cluster = true }))
                if i % 50 == 0 then ngx.sleep(0.05) end
            end
            assert(c.until_true(function() return c.cluster_status().waiting == 0 end))
            local kept = tonumber(c.redis("XLEN t_events"))
            ngx.say("stream trimmed: ", kept < 290)
            os.execute("kill -CONT " .. pids)
            ngx.sleep(1.5)
            local counts, lost = c.b("counts?key=wev%20s/t"), c.b("lostw")
            local ok, got0 = true
            for id = 0, 3 do
                local got = tonumber(counts:match("w" .. id .. "=(%d+)"))
                local l = tonumber(lost:match("w" .. id .. "=(%d+)"))
                got0 = got0 or got
                if got + l ~= 300 or l == 0 or got ~= got0 then
                    ok = false
                    ngx.say("w", id, ": got ", got, ", lost ", l, ", kept ", kept)
                end
            end
            ngx.say("every B worker: received + lost = 300: ", ok)
            ngx.say("B lost_in = 300 - received: ", c.b("status"):match('"lost_in":(%d+)') == tostring(300 - got0))
            ngx.say("the rest in order: ", c.b("increasing?key=wev%20s/t"))
        }
    }
--- response_body
B before: true w0=10 w1=10 w2=10 w3=10
stream trimmed: true
every B worker: received + lost = 300: true
B lost_in = 300 - received: true
the rest in order: true
--- timeout: 30



=== TEST 9: Redis unreachable: one line per outage, no busy loop (a few attempts a second), cluster posts queue in the zone up to queue=50, then fail with nil, err
--- http_config eval: ClusterTest::cluster_http("a", url => "redis://127.0.0.1:1", cluster => "queue=50")
--- config
    location = /t {
        content_by_lua_block {
            local c = require "t.cluster"
            local wev = require "resty.worker.events"
            assert(require("t.we").wait_ready())
            local n, err = 0
            for i = 1, 60 do
                local ok, e = wev.post("s", "q", { i = i }, nil, { cluster = true })
                if not ok then err = e break end
                n = n + 1
            end
            ngx.say("queued: ", n)
            ngx.say("then: ", err)
            ngx.say("delivered here meanwhile: ", c.wait("wev s/q", 50), " ", c.counts("wev s/q"))
            ngx.sleep(2)
            local st = c.cluster_status()
            ngx.say("connected: ", st.connected, ", waiting: ", st.waiting, ", refused: ", st.refused)
            ngx.say("attempts in 2 s below 20: ", st.errors < 20, " (", st.errors > 0, ")")
        }
    }
--- response_body
queued: 50
then: failed posting event "q" by "s"; cluster queue full: 50 cluster events wait for redis
delivered here meanwhile: true w0=50 w1=50 w2=50 w3=50
connected: false, waiting: 50, refused: 1
attempts in 2 s below 20: true (true)
--- grep_error_log eval: qr/cluster: redis \S+: \w+ failed: [^(]+/
--- grep_error_log_out
cluster: redis 127.0.0.1:1: connect failed: connect: connection refused 
--- timeout: 10



=== TEST 10: a wrong password: a clear error, once, and no busy loop
--- http_config eval: ClusterTest::cluster_http("a", url => "redis://:wrong\@127.0.0.1:$ClusterTest::RedisPort")
--- config
    location = /t {
        content_by_lua_block {
            local c = require "t.cluster"
            ngx.sleep(2)
            local st = c.cluster_status()
            ngx.say("connected: ", st.connected, ", attempts in 2 s below 20: ", st.errors < 20)
        }
    }
--- response_body
connected: false, attempts in 2 s below 20: true
--- grep_error_log eval: qr/cluster: redis \S+: \w+ failed: auth: [^(]+/
--- grep_error_log_out eval
qr/^cluster: redis 127.0.0.1:\d+: connect failed: auth: (WRONGPASS|ERR AUTH)[^\n]*\n$/
--- no_error_log
wrong



=== TEST 11: a copy of an entry already delivered (what a bridge that died between XADD and saving its position makes) is dropped; an ordinal jump is reported as exactly that many lost
--- http_config eval: $::HttpA
--- init
ClusterTest::start_node_b();
--- config
    location = /t {
        content_by_lua_block {
            local c = require "t.cluster"
            local wev = require "resty.worker.events"
            for i = 1, 3 do assert(wev.post("s", "d", { i = i }, nil, { cluster = true })) end
            ngx.say("B: ", c.b("wait?key=wev%20s/d&n=3"))
            -- the stream as node A's bridge wrote it
            local redis = require "$TEST_NGINX_REDIS_MODULE"
            local red = redis:new()
            assert(red:connect("127.0.0.1", c.redis_port))
            local entries = assert(red:xrange("t_events", "-", "+"))
            local mine = {}
            for _, e in ipairs(entries) do
                local f = {}
                for k = 1, #e[2], 2 do f[e[2][k]] = e[2][k + 1] end
                if f.n == "a" and f.v == "d" then mine[#mine + 1] = f end
            end
            ngx.say("A's entries in the stream: ", #mine)
            local function xadd(f, ordinal)
                assert(red:xadd("t_events", "*", "n", f.n, "e", f.e, "o", ordinal, "s", f.s,
                                "v", f.v, "d", f.d))
            end
            -- resend ordinals 2 and 3: duplicates
            xadd(mine[2], mine[2].o)
            xadd(mine[3], mine[3].o)
            -- ordinal 3 + 5: 4 events of A "never reached the stream"
            xadd(mine[3], tonumber(mine[3].o) + 5)
            ngx.sleep(0.5)
            ngx.say("B after: ", c.b("counts?key=wev%20s/d"))
            ngx.say("B lost per worker: ", c.b("lostw"))
            local st = c.b("status")
            ngx.say("B duplicates: ", st:match('"duplicates":(%d+)'), ", lost_in: ", st:match('"lost_in":(%d+)'))
            local log = io.open(c.dir .. "/b/logs/error.log"):read("*a")
            local _, lines = log:gsub('ngx_worker_events: cluster: lost 4 event%(s%) from node "a": they are not in the stream', "")
            ngx.say("B logged the loss: ", lines, " line(s)")
        }
    }
--- response_body
B: true w0=3 w1=3 w2=3 w3=3
A's entries in the stream: 3
B after: w0=4 w1=4 w2=4 w3=4
B lost per worker: w0=4 w1=4 w2=4 w3=4
B duplicates: 2, lost_in: 4
B logged the loss: 1 line(s)



=== TEST 12: nginx -t refuses bad worker_events_cluster lines with a clear message
--- http_config
    worker_events_cluster redis://127.0.0.1:99999;
--- must_die
--- error_log
ngx_worker_events: invalid port in "redis://127.0.0.1:99999"



=== TEST 13: nginx -t refuses an unknown option
--- http_config
    worker_events_cluster redis://127.0.0.1 maxlen=10 sream=x;
--- must_die
--- error_log
ngx_worker_events: unknown option "sream=x" (known: stream=, maxlen=, node=, password=, tls, zone=, queue=, timeout=, secret=)



=== TEST 14: nginx -t refuses a URL that is not redis://
--- http_config
    worker_events_cluster http://127.0.0.1:6379;
--- must_die
--- error_log
ngx_worker_events: invalid redis URL "http://127.0.0.1:6379": expected redis://[:password@]host[:port][/db] or rediss://...



=== TEST 15: a bridge that hands over before the stream's first entry keeps the start it joined at: the next bridge of B gets what A posted meanwhile
--- http_config eval: $::HttpA
--- init
ClusterTest::start_node_b();
--- config
    location = /t {
        content_by_lua_block {
            local c = require "t.cluster"
            local wev = require "resty.worker.events"
            -- B's bridge joined the empty stream; then every B worker stops
            assert(c.until_true(function() return c.b("bridge") ~= "none" end))
            ngx.say("B joined at: ", c.b("status"):match('"last_id":"([%d-]+)"'))
            local victim, pids = c.b("bridge"), c.b("pids")
            os.execute("kill -STOP " .. pids)
            for i = 1, 10 do assert(wev.post("s", "e0", { i = i }, nil, { cluster = true })) end
            assert(c.until_true(function() return c.cluster_status().waiting == 0 end))
            -- the bridge dies with the 10 entries unread; another worker takes over
            os.execute("kill -9 " .. victim .. "; kill -CONT " .. pids)
            local b
            c.until_true(function()
                b = c.b("status")
                return tonumber(b:match('"events_in":(%d+)')) >= 10
            end, 5)
            ngx.sleep(0.3)
            b = c.b("status")
            ngx.say("B took over: ", c.b("bridge") ~= victim, ", takeovers: ", b:match('"bridge_takeovers":(%d+)'))
            ngx.say("B events_in: ", b:match('"events_in":(%d+)'), ", lost_in: ", b:match('"lost_in":(%d+)'),
                    ", duplicates: ", b:match('"duplicates":(%d+)'))
        }
    }
--- response_body
B joined at: 0-1
B took over: true, takeovers: 2
B events_in: 10, lost_in: 0, duplicates: 0
--- timeout: 20



=== TEST 16: a node receives what is appended after its bridge joined the stream, so start_node_b waits for that (Redis holds every client for 1.5 s while B starts): B gets all 20 events A posts at once
--- http_config eval: $::HttpA
--- init
ClusterTest::redis_cli("CLIENT", "PAUSE", "1500", "ALL"); ClusterTest::start_node_b();
--- config
    location = /t {
        content_by_lua_block {
            local c = require "t.cluster"
            local wev = require "resty.worker.events"
            for i = 1, 20 do assert(wev.post("s", "j", { i = i }, nil, { cluster = true })) end
            local b
            c.until_true(function()
                b = c.b("status")
                return tonumber(b:match('"events_in":(%d+)')) >= 20
            end, 5)
            ngx.say("B events_in: ", b:match('"events_in":(%d+)'), ", lost_in: ", b:match('"lost_in":(%d+)'))
            ngx.say("B: ", c.b("wait?key=wev%20s/j&n=20"))
        }
    }
--- response_body
B events_in: 20, lost_in: 0
B: true w0=20 w1=20 w2=20 w3=20
--- timeout: 20



=== TEST 17: after each of 3 HUP reloads, the new generation's bridge stays connected once the old generation's bridge has unwound (the old loops, ending after the lease changed hands, used to mark the new bridge's connections down)
--- http_config eval: $::HttpA
--- init
ClusterTest::start_node_b();
--- config
    location = /t {
        content_by_lua_block {
            local c = require "t.cluster"
            local we = require "t.we"
            local wev = require "resty.worker.events"
            local out = {}
            for round = 1, 3 do
                local before = c.cluster_status().bridge_pid
                we.reload()
                local taken = c.until_true(function()
                    local s = c.cluster_status()
                    return s.bridge_pid ~= nil and s.bridge_pid ~= before and s.connected
                end, 10)
                -- the old bridge's loops end within a second or two (a
                -- semaphore wait of 1 s, an XREAD that blocks 1 s)
                ngx.sleep(3)
                out[#out + 1] = tostring(taken) .. "/" .. tostring(c.cluster_status().connected)
            end
            ngx.say("taken over and connected / still connected: ", table.concat(out, " "))
            for i = 1, 10 do assert(wev.post("s", "k", { i = i }, nil, { cluster = true })) end
            ngx.say("B: ", c.b("wait?key=wev%20s/k&n=10"))
        }
    }
--- response_body
taken over and connected / still connected: true/true true/true true/true
B: true w0=10 w1=10 w2=10 w3=10
--- no_error_log
[error]
--- timeout: 40
