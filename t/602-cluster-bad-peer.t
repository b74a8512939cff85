# The cluster bridge against a bad peer (issue 21): a scripted bad Redis
# (t/lib/fake_redis.py, a proxy in front of the real redis-server that
# answers one command with a bad reply) for what a real Redis never sends,
# and the real redis-server for bad stream contents (forged, malformed or
# unsigned entries, a stream that was reset). Node A is this Test::Nginx
# instance, node B the second nginx (t/lib/ClusterTest.pm).
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use WorkerEventsTest;
use ClusterTest;

master_on();
workers(4);

our $Fake = "redis://127.0.0.1:$ClusterTest::FakePort";

# every connect() of this worker's bridge after the first raises a Lua error once
our $Boom = q{
    for _, name in ipairs { "resty.redis", "nginx.redis" } do
        local ok, r = pcall(require, name)
        if ok and type(r) == "table" and not rawget(r, "boom") then
            local connect, n = r.connect, 0
            r.boom = true
            r.connect = function(self, ...)
                n = n + 1
                if n == 1 then error("injected fault", 2) end
                return connect(self, ...)
            end
        end
    end
};

run_tests();

__DATA__

=== TEST 1: XREAD answered with an endless line: the bridge stops reading at the line limit, reconnects, and gets B's events
--- http_config eval: ClusterTest::cluster_http("a", url => $::Fake)
--- init
ClusterTest::fake_start(on => "XREAD", fault => "line"); ClusterTest::start_node_b();
--- config
    location = /t {
        content_by_lua_block {
            local c = require "t.cluster"
            local bp = require "t.badpeer"
            assert(c.until_true(function() return bp.fake().sent end, 15))
            ngx.say(c.b("post?source=s&event=x&n=20"))
            ngx.say("A: ", c.wait("wev s/x", 20, 10), " ", c.counts("wev s/x"))
            local f = bp.fake()
            ngx.say("the bridge hung up: ", f.closed, ", flood below 32 MB: ", f.sent < 32 * 1024 * 1024)
            local st = c.cluster_status()
            ngx.say("connected: ", st.connected, ", errors: ", st.errors >= 1, ", lost_in: ", st.lost_in)
        }
    }
--- response_body
posted
A: true w0=20 w1=20 w2=20 w3=20
the bridge hung up: true, flood below 32 MB: true
connected: true, errors: true, lost_in: 0
--- error_log
XREAD failed: a reply larger than the limit
--- timeout: 40



=== TEST 2: XREAD answered with a giant bulk length and a flood: refused at its header; the bridge worker's memory stays small
--- http_config eval: ClusterTest::cluster_http("a", url => $::Fake)
--- init
ClusterTest::fake_start(on => "XREAD", fault => "bulk"); ClusterTest::start_node_b();
--- config
    location = /t {
        content_by_lua_block {
            local c = require "t.cluster"
            local bp = require "t.badpeer"
            assert(c.until_true(function() return bp.fake().sent end, 15))
            ngx.say(c.b("post?source=s&event=g&n=20"))
            ngx.say("A: ", c.wait("wev s/g", 20, 10), " ", c.counts("wev s/g"))
            local f = bp.fake()
            ngx.say("the bridge hung up: ", f.closed, ", flood below 32 MB: ", f.sent < 32 * 1024 * 1024)
            local st = c.cluster_status()
            local rss = bp.rss_mb(st.bridge_pid)
            ngx.say("bridge worker below 64 MB: ", rss < 64, rss < 64 and "" or (" " .. rss))
            ngx.say("connected: ", st.connected, ", errors: ", st.errors >= 1)
        }
    }
--- response_body
posted
A: true w0=20 w1=20 w2=20 w3=20
the bridge hung up: true, flood below 32 MB: true
bridge worker below 64 MB: true
connected: true, errors: true
--- error_log
XREAD failed: a reply larger than the limit
--- timeout: 40



=== TEST 3: XADD answered with "$1e300": an error, the batch goes again on a new connection; every event reaches B once
--- http_config eval: ClusterTest::cluster_http("a", url => $::Fake)
--- init
ClusterTest::fake_start(on => "XADD", fault => "badlen"); ClusterTest::start_node_b();
--- config
    location = /t {
        content_by_lua_block {
            local c = require "t.cluster"
            local bp = require "t.badpeer"
            local wev = require "resty.worker.events"
            assert(require("t.we").wait_ready())
            for i = 1, 20 do assert(wev.post("s", "a", { i = i }, nil, { cluster = true })) end
            ngx.say("B: ", c.b("wait?key=wev%20s/a&n=20&t=10"))
            ngx.say("B order: ", c.b("order?key=wev%20s/a&n=20"))
            ngx.say("fault fired: ", bp.fake().fired)
            assert(c.until_true(function() return c.cluster_status().waiting == 0 end))
            local st = c.cluster_status()
            ngx.say("connected: ", st.connected, ", waiting: ", st.waiting, ", out: ", st.events_out,
                    ", errors: ", st.errors >= 1, ", restarts: ", st.restarts)
            ngx.say(c.b("post?source=s&event=back&n=5"))
            ngx.say("A gets B's: ", c.wait("wev s/back", 5))
        }
    }
--- response_body
B: true w0=20 w1=20 w2=20 w3=20
B order: true
fault fired: true
connected: true, waiting: 0, out: 20, errors: true, restarts: 0
posted
A gets B's: true
--- error_log
XADD failed: a reply that is not RESP
--- timeout: 30



=== TEST 4: a Lua error kills a bridge thread: it is restarted and counted; both directions work and status says connected
--- http_config eval: ClusterTest::cluster_http("a", pre_init => $::Boom)
--- init
ClusterTest::start_node_b();
--- config
    location = /t {
        content_by_lua_block {
            local c = require "t.cluster"
            local wev = require "resty.worker.events"
            assert(c.until_true(function() return (c.cluster_status().restarts or 0) >= 1 end))
            for i = 1, 10 do assert(wev.post("s", "o", { i = i }, nil, { cluster = true })) end
            ngx.say("B: ", c.b("wait?key=wev%20s/o&n=10&t=10"))
            ngx.say(c.b("post?source=s&event=i&n=10"))
            ngx.say("A: ", c.wait("wev s/i", 10, 10), " ", c.counts("wev s/i"))
            local st = c.cluster_status()
            ngx.say("connected: ", st.connected, ", restarts: ", st.restarts, ", waiting: ", st.waiting)
        }
    }
--- response_body
B: true w0=10 w1=10 w2=10 w3=10
posted
A: true w0=10 w1=10 w2=10 w3=10
connected: true, restarts: 1, waiting: 0
--- error_log eval
qr/ngx_worker_events: cluster: the bridge's (in|out) thread died: .*injected fault; restarting it/
--- timeout: 30



=== TEST 5: a forged entry with ordinal 999999999999 between B's real 2 and 3: no giant loss reported, B's later events are not taken for duplicates
--- http_config eval: ClusterTest::cluster_http("a")
--- init
ClusterTest::start_node_b();
--- config
    location = /t {
        content_by_lua_block {
            local c = require "t.cluster"
            local bp = require "t.badpeer"
            ngx.say(c.b("post?source=s&event=p&n=2"))
            ngx.say("A: ", c.wait("wev s/p", 2))
            local red = bp.redis()
            local f = bp.entries(red, "b")[2]
            assert(red:xadd("t_events", "*", "n", "b", "e", f.e, "o", "999999999999", "s", "s",
                            "v", "forged", "d", f.d))
            assert(c.wait("wev s/forged", 1))
            ngx.say(c.b("post?source=s&event=p&n=2&from=3"))
            ngx.say("A: ", c.wait("wev s/p", 4), " ", c.counts("wev s/p"))
            ngx.say("A in order: ", c.in_order("wev s/p", 4))
            local st = c.cluster_status()
            ngx.say("lost_in: ", st.lost_in, ", duplicates: ", st.duplicates, ", ordinal_jumps: ", st.ordinal_jumps)
            ngx.say("lost events posted: ", c.counts("wev resty-worker-events/lost"))
        }
    }
--- response_body
posted
A: true
posted
A: true w0=4 w1=4 w2=4 w3=4
A in order: true
lost_in: 0, duplicates: 0, ordinal_jumps: 2
lost events posted: w0=0 w1=0 w2=0 w3=0
--- error_log
implausible ordinal jump(s) (node "b")
--- no_error_log
lost 999999999996



=== TEST 6: the stream goes backwards (an entry with a future id, then FLUSHALL): detected, counted, and reading resumes from the new stream's start
--- http_config eval: ClusterTest::cluster_http("a")
--- init
ClusterTest::start_node_b();
--- config
    location = /t {
        content_by_lua_block {
            local c = require "t.cluster"
            local bp = require "t.badpeer"
            ngx.say(c.b("post?source=s&event=r&n=2"))
            ngx.say("A: ", c.wait("wev s/r", 2))
            local red = bp.redis()
            local f = bp.entries(red, "b")[1]
            assert(red:xadd("t_events", "99999999999999-0", "n", "x", "e", "1", "o", "1", "s", "s",
                            "v", "future", "d", f.d))
            ngx.say("the future entry: ", c.wait("wev s/future", 1))
            assert(red:flushall())
            ngx.say(c.b("post?source=s&event=r&n=3&from=3"))
            ngx.say("A: ", c.wait("wev s/r", 5, 10), " ", c.counts("wev s/r"))
            ngx.say("A in order: ", c.in_order("wev s/r", 5))
            local st = c.cluster_status()
            ngx.say("stream_resets: ", st.stream_resets, ", lost_in: ", st.lost_in, ", connected: ", st.connected,
                    ", last id from the new stream: ", st.last_id:sub(1, 5) ~= "99999")
        }
    }
--- response_body
posted
A: true
the future entry: true
posted
A: true w0=5 w1=5 w2=5 w3=5
A in order: true
stream_resets: 1, lost_in: 0, connected: true, last id from the new stream: true
--- error_log
was reset: its last id
--- timeout: 30



=== TEST 7: entries with missing or unknown fields, an undecodable payload or a bad ordinal are dropped, counted by reason (JSON, Prometheus) and logged once a second, without their payload
--- http_config eval: ClusterTest::cluster_http("a")
--- init
ClusterTest::start_node_b();
--- config
    location = /status { worker_events_status; }
    location = /t {
        content_by_lua_block {
            local c = require "t.cluster"
            local bp = require "t.badpeer"
            local we = require "t.we"
            ngx.say(c.b("post?source=s&event=u&n=1"))
            ngx.say("A: ", c.wait("wev s/u", 1))
            local red = bp.redis()
            local f = bp.entries(red, "b")[1]
            local function add(...) assert(red:xadd("t_events", "*", ...)) end
            for _ = 1, 3 do add("n", "b", "e", f.e, "s", "s", "v", "u", "d", f.d) end
            add("n", "b", "e", f.e, "o", "2", "s", "s", "v", "u", "d", f.d, "zz", "1")
            add("n", "b", "e", f.e, "o", "2", "s", "s", "v", "u", "d", "secret-payload")
            add("n", "b", "e", f.e, "o", "x", "s", "s", "v", "u", "d", f.d)
            ngx.say(c.b("post?source=s&event=u&n=1&from=2"))
            ngx.say("A: ", c.wait("wev s/u", 2), " ", c.counts("wev s/u"))
            ngx.sleep(0.2)
            local d = c.cluster_status().dropped
            ngx.say("dropped: missing_field ", d.missing_field, ", unknown_field ", d.unknown_field,
                    ", bad_data ", d.bad_data, ", bad_field ", d.bad_field, ", bad_hmac ", d.bad_hmac,
                    ", duplicate ", d.duplicate)
            ngx.say("missing_field lines: ", bp.log_count("stream entr(y/ies) dropped (missing_field"))
            ngx.say("payload in the log: ", bp.log_count("secret-payload"))
            local _, prom = we.http_get("/status?format=prometheus")
            ngx.say(prom:match('ngx_worker_events_cluster_dropped_total{zone="ev",node="a",reason="missing_field"} %d+'))
            local path = ngx.config.prefix() .. "/metrics.txt"
            local fh = assert(io.open(path, "w"))
            fh:write(prom)
            fh:close()
            local p = io.popen("promtool check metrics < " .. path .. " 2>&1; echo rc=$?")
            local out = p:read("*a")
            p:close()
            ngx.say("promtool: ", out:match("rc=(%d+)"), (out:match("rc=0") and "" or (" " .. out)))
        }
    }
--- response_body
posted
A: true
posted
A: true w0=2 w1=2 w2=2 w3=2
dropped: missing_field 3, unknown_field 1, bad_data 1, bad_field 1, bad_hmac 0, duplicate 0
missing_field lines: 1
payload in the log: 0
ngx_worker_events_cluster_dropped_total{zone="ev",node="a",reason="missing_field"} 3
promtool: 0



=== TEST 8: secret=: entries carry an HMAC; a copy with a changed ordinal and an unsigned entry are dropped and counted; the secret is never shown
--- http_config eval: ClusterTest::cluster_http("a", cluster => "secret=s3cr3t")
--- init
ClusterTest::start_node_b(cluster => "secret=s3cr3t");
--- config
    location = /t {
        content_by_lua_block {
            local c = require "t.cluster"
            local bp = require "t.badpeer"
            ngx.say(c.b("post?source=s&event=h&n=2"))
            ngx.say("A: ", c.wait("wev s/h", 2))
            local red = bp.redis()
            local f = bp.entries(red, "b")[2]
            ngx.say("signed: ", #f.h)
            assert(red:xadd("t_events", "*", "n", "b", "e", f.e, "o", "3", "s", "s", "v", "h", "d", f.d, "h", f.h))
            assert(red:xadd("t_events", "*", "n", "b", "e", f.e, "o", "3", "s", "s", "v", "h", "d", f.d))
            ngx.say(c.b("post?source=s&event=h&n=1&from=3"))
            ngx.say("A: ", c.wait("wev s/h", 3), " ", c.counts("wev s/h"))
            ngx.say("A in order: ", c.in_order("wev s/h", 3))
            local st = c.cluster_status()
            ngx.say("bad_hmac: ", st.dropped.bad_hmac, ", lost_in: ", st.lost_in, ", duplicates: ", st.duplicates)
            ngx.say("configured secret: ", require("ngx_worker_events.cluster").configured().secret)
        }
    }
--- response_body
posted
A: true
signed: 64
posted
A: true w0=3 w1=3 w2=3 w3=3
A in order: true
bad_hmac: 2, lost_in: 0, duplicates: 0
configured secret: true
--- error_log
stream entr(y/ies) dropped (bad_hmac
--- no_error_log
s3cr3t



=== TEST 9: nginx -t refuses an empty secret=
--- http_config
    worker_events_cluster redis://127.0.0.1 secret=;
--- must_die
--- error_log
ngx_worker_events: invalid value in "secret="



=== TEST 10: replies that come in one read for two XADD batches in flight (the proxy holds them, then writes them at once): the second batch's replies are taken from what was read, not waited for; every event reaches B once
--- http_config eval: ClusterTest::cluster_http("a", url => $::Fake, cluster => "timeout=10000") . "\nlua_socket_buffer_size 64k;\n"
--- init
ClusterTest::fake_start(on => "XADD", fault => "hold"); ClusterTest::start_node_b();
--- config
    location = /bridge_posts {
        content_by_lua_block {
            local c = require "t.cluster"
            if ngx.worker.pid() ~= c.cluster_status().bridge_pid then return ngx.say("not here") end
            -- in the bridge's worker, without a yield: its first batch is
            -- full (1024) and the second (6) is ready when the first is
            -- written; their replies (~23 KB) fit in one read of 64 KB.
            -- (timeout=10000: the proxy forwards the 1030 XADDs one at a
            -- time and holds the replies 0.3 s; on a loaded host that took
            -- more than the default 1 s read timeout)
            local wev = require "resty.worker.events"
            for i = 1, 1030 do assert(wev.post("s", "h", { i = i }, nil, { cluster = true })) end
            ngx.say("posted")
        }
    }
    location = /t {
        content_by_lua_block {
            local c = require "t.cluster"
            local bp = require "t.badpeer"
            assert(require("t.we").wait_ready())
            local posted
            for _ = 1, 200 do
                local _, body = c.get(ngx.var.server_port, "/bridge_posts")
                if body == "posted\n" then posted = true break end
            end
            ngx.say("posted in the bridge's worker: ", posted)
            ngx.say("B: ", c.b("wait?key=wev%20s/h&n=1030&t=10"))
            ngx.say("B order: ", c.b("order?key=wev%20s/h&n=1030"))
            -- (its report is written after the write; a batch is 1024 at most)
            c.until_true(function() return bp.fake().held ~= nil end)
            local f = bp.fake()
            ngx.say("held: ", f.fired, ", two batches in one write: ", (f.held or 0) > 1024)
            assert(c.until_true(function() return c.cluster_status().waiting == 0 end))
            local st = c.cluster_status()
            ngx.say("connected: ", st.connected, ", waiting: ", st.waiting, ", out: ", st.events_out)
        }
    }
--- response_body
posted in the bridge's worker: true
B: true w0=1030 w1=1030 w2=1030 w3=1030
B order: true
held: true, two batches in one write: true
connected: true, waiting: 0, out: 1030
--- no_error_log
XADD failed
timed out
--- timeout: 30



=== TEST 11: XREAD entries in shapes no real Redis sends (not an array, a bad id, three parts, an odd field list, a null value) between real ones: each dropped and counted as not_an_entry, logged without payload; the real entries are delivered in order
--- http_config eval: ClusterTest::cluster_http("a", url => $::Fake)
--- init
ClusterTest::fake_start(on => "XREAD", fault => "shapes"); ClusterTest::start_node_b();
--- config
    location = /t {
        content_by_lua_block {
            local c = require "t.cluster"
            local bp = require "t.badpeer"
            ngx.say(c.b("post?source=s&event=m&n=3"))
            ngx.say("A: ", c.wait("wev s/m", 3, 10), " ", c.counts("wev s/m"))
            ngx.say("A in order: ", c.in_order("wev s/m", 3))
            local f = bp.fake()
            ngx.say("injected: ", f.injected)
            ngx.sleep(0.2)
            local st = c.cluster_status()
            ngx.say("not_an_entry: ", st.dropped.not_an_entry, ", lost_in: ", st.lost_in,
                    ", connected: ", st.connected)
            ngx.say(c.b("post?source=s&event=m&n=2&from=4"))
            ngx.say("A: ", c.wait("wev s/m", 5, 10), " ", c.counts("wev s/m"))
        }
    }
--- response_body
posted
A: true w0=3 w1=3 w2=3 w3=3
A in order: true
injected: 5
not_an_entry: 5, lost_in: 0, connected: true
posted
A: true w0=5 w1=5 w2=5 w3=5
--- error_log
stream entr(y/ies) dropped (not_an_entry; the last: a field that is not a string in entry 0-3)
--- no_error_log
XREAD failed
--- timeout: 30
