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
