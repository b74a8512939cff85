# The status endpoint's cluster counters (worker_events_cluster): the JSON
# `cluster` object and the Prometheus `cluster_*` families on both nodes,
# which pass `promtool check metrics`. Real redis-server and a second node
# (t/lib/ClusterTest.pm).
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use WorkerEventsTest;
use ClusterTest;

master_on();
workers(4);

our $HttpA = cluster_http("a");

run_tests();

__DATA__

=== TEST 1: after 20 events each way: connected, events out and in, no loss; Prometheus text passes promtool; no cluster object without the directive's zone
--- http_config eval: $::HttpA
--- init
ClusterTest::start_node_b();
--- config
    location = /status { worker_events_status; }
    location = /t {
        content_by_lua_block {
            local c = require "t.cluster"
            local we = require "t.we"
            local cjson = require "cjson"
            local wev = require "resty.worker.events"
            for i = 1, 20 do assert(wev.post("s", "m", { i = i }, nil, { cluster = true })) end
            ngx.say(c.b("post?source=s&event=b&n=20"))
            assert(c.wait("wev s/b", 20))
            ngx.say("B got A's: ", c.b("wait?key=wev%20s/m&n=20"))
            ngx.sleep(0.3)
            local _, body = we.http_get("/status")
            local doc = cjson.decode(body).cluster
            ngx.say("node ", doc.node, ", stream ", doc.stream, ", connected ", doc.connected,
                    ", bridge is a worker: ", type(doc.bridge_pid) == "number")
            ngx.say("out ", doc.events_out, ", in ", doc.events_in, ", own skipped ", doc.own_skipped,
                    ", lost ", doc.lost_in, "/", doc.lost_out, ", waiting ", doc.waiting,
                    ", duplicates ", doc.duplicates, ", nodes heard ", doc.nodes_heard)
            ngx.say("last id: ", doc.last_id:match("^%d+%-%d+$") ~= nil)
            local _, prom = we.http_get("/status?format=prometheus")
            local f = assert(io.open(ngx.config.prefix() .. "/metrics.txt", "w"))
            f:write(prom)
            f:close()
            local p = io.popen("promtool check metrics < " .. ngx.config.prefix() .. "/metrics.txt 2>&1; echo rc=$?")
            local out = p:read("*a")
            p:close()
            ngx.say("promtool: ", out:match("rc=(%d+)"), (out:match("rc=0") and "" or (" " .. out)))
            ngx.say(prom:match('ngx_worker_events_cluster_connected{zone="ev",node="a"} %d'))
            ngx.say(prom:match('ngx_worker_events_cluster_events_in_total{zone="ev",node="a"} %d+'))
            ngx.say(prom:match('ngx_worker_events_cluster_events_out_total{zone="ev",node="a"} %d+'))
        }
    }
--- response_body
posted
B got A's: true w0=20 w1=20 w2=20 w3=20
node a, stream t_events, connected true, bridge is a worker: true
out 20, in 20, own skipped 20, lost 0/0, waiting 0, duplicates 0, nodes heard 1
last id: true
promtool: 0
ngx_worker_events_cluster_connected{zone="ev",node="a"} 1
ngx_worker_events_cluster_events_in_total{zone="ev",node="a"} 20
ngx_worker_events_cluster_events_out_total{zone="ev",node="a"} 20
--- no_error_log
[error]



=== TEST 2: without worker_events_cluster the document's cluster is null, no cluster_* families; a cluster post fails with a clear error
--- config
    location = /status { worker_events_status; }
    location = /t {
        content_by_lua_block {
            local we = require "t.we"
            assert(we.configure())
            local _, body = we.http_get("/status")
            ngx.say("cluster: ", body:match('"cluster": (%w+)'))
            local _, prom = we.http_get("/status?format=prometheus")
            ngx.say("cluster families: ", prom:find("cluster_", 1, true) ~= nil)
            local wev = require "resty.worker.events"
            ngx.say(select(2, wev.post("s", "e", 1, nil, { cluster = true })))
            ngx.say(select(2, wev.post("s", "e", 1, nil, "cluster")))
            local ev = require("resty.events").new { listening = "unix:/x" }
            assert(ev:init_worker())
            ngx.say(select(2, ev:publish_cluster("all", "s", "e", 1)))
            -- as in lua-resty-events, "cluster" is just a unique key
            ngx.say("publish(\"cluster\"): ", ev:publish("cluster", "s", "e", 1))
            local ok, e = pcall(ev.publish_cluster, ev, "current", "s", "e")
            ngx.say(ok, " ", e)
        }
    }
--- response_body
cluster: null
cluster families: false
failed posting event "e" by "s"; no worker_events_cluster is configured
failed posting event "e" by "s"; opts must be a table, got string
failed to publish event: no worker_events_cluster is configured
publish("cluster"): true
false target "current" is not a cluster target (use "all" or a unique key)
