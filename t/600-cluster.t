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
