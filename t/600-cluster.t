# Cluster events over Redis Streams (worker_events_cluster): a real
# redis-server started by the test in its own directory, node A (this
# Test::Nginx instance, 4 workers) and node B (a second nginx, 4 workers,
# t/lib/ClusterTest.pm). Both nodes run the same recording handlers
# (t/lib/t/cluster.lua) for both Kong APIs.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use WorkerEventsTest;
use ClusterTest;

workers(4);

our $HttpA = cluster_http("a");

run_tests();

__DATA__

=== TEST 1: an event posted on node A reaches every worker of A and B exactly once, in order
--- http_config eval: $::HttpA
--- init
ClusterTest::reset_stream(); ClusterTest::start_node_b();
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

=== TEST 2: resty.events publish("cluster") on node B reaches A's workers through both APIs; remote events carry no pid or wid
--- http_config eval: $::HttpA
--- init
ClusterTest::reset_stream(); ClusterTest::start_node_b();
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
ClusterTest::reset_stream(); ClusterTest::start_node_b();
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
ClusterTest::reset_stream(); ClusterTest::start_node_b();
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
ClusterTest::reset_stream(); ClusterTest::start_node_b();
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
