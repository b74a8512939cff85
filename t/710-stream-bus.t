# The stream subsystem on the same bus: resty.worker.events and resty.events
# required in stream {} Lua (init_worker_by_lua*, content_by_lua*) on the
# zone declared in http {}. An event posted from http reaches every
# worker's stream handlers and the reverse, through both APIs; a unique
# event runs once per API per subsystem; a HUP and a kill -9 change
# nothing. 4 workers. Needs stream-lua-nginx-module (OpenResty): run with
# TEST_NGINX_BINARY=target/openresty/nginx/sbin/nginx and
# TEST_NGINX_WE_MODULE=build/openresty/ngx_http_worker_events_module.so
# (scripts/openresty builds both); skipped elsewhere.
#
# http reaches the stream side through the stream server on
# $TEST_NGINX_RAND_PORT_1, which runs the Lua chunk sent on one line
# (t/lib/t/stream.lua: each subsystem records in its own dict, http's
# `out` and stream's `sout`).
use lib 't/lib';
use Test::Nginx::Socket;
use WorkerEventsTest;

my $bin = $ENV{TEST_NGINX_BINARY} // '/usr/sbin/nginx';
my $v = `$bin -V 2>&1`;
if ($v !~ m{--add-module=\S*stream-lua-nginx-module}) {
    plan skip_all => "$bin has no stream-lua-nginx-module (the stream subsystem's Lua)";
} else {
    plan 'no_plan';
}

master_on();
workers(4);

our $Stream = <<"_EOC_";
stream {
    lua_package_path "$WorkerEventsTest::Pwd/t/lib/?.lua;;";
    lua_shared_dict sout 8m;
    init_worker_by_lua_block {
        require("t.stream").start()
    }
    server {
        listen 127.0.0.1:\$TEST_NGINX_RAND_PORT_1;
        preread_by_lua_block {
            require("t.stream").set("preread", tostring(require("resty.worker.events").configured()))
        }
        content_by_lua_block { require("t.stream").serve() }
    }
}
_EOC_

our $Http = <<'_EOC_';
    init_worker_by_lua_block {
        require("t.stream").start()
    }
_EOC_

our $Port = '$TEST_NGINX_RAND_PORT_1';

run_tests();

__DATA__

=== TEST 1: http -> stream: a post from http reaches the handlers of every worker in both subsystems, through both APIs
--- main_config eval: $::Stream
--- http_config eval: $::Http
--- config eval
"location = /t {
    content_by_lua_block {
        local t, port = require 't.stream', $::Port
        assert(t.wait_ready(port))
        ngx.say('post: ', t.post('we', 'h1'), ' ', t.post('re', 'h2'))
        ngx.say('we: ', t.wait(port, 'we', 'h1=http'))
        ngx.say('re: ', t.wait(port, 're', 'h2=http'))
        -- each API's handlers see the other API's events too (one bus)
        ngx.say('we sees re: ', t.wait(port, 'we', 'h2=http'))
        ngx.say('re sees we: ', t.wait(port, 're', 'h1=http'))
    }
}"
--- response_body
post: true true
we: http=4/4 stream=4/4
re: http=4/4 stream=4/4
we sees re: http=4/4 stream=4/4
re sees we: http=4/4 stream=4/4
--- no_error_log
[error]



=== TEST 2: stream -> http: a post from stream Lua (content_by_lua*) reaches every worker in both subsystems, through both APIs
--- main_config eval: $::Stream
--- http_config eval: $::Http
--- config eval
"location = /t {
    content_by_lua_block {
        local t, port = require 't.stream', $::Port
        assert(t.wait_ready(port))
        ngx.say('post: ', t.remote(port, [[return require('t.stream').post('we', 's1')]]),
                ' ', t.remote(port, [[return require('t.stream').post('re', 's2')]]))
        ngx.say('we: ', t.wait(port, 'we', 's1=stream'))
        ngx.say('re: ', t.wait(port, 're', 's2=stream'))
    }
}"
--- response_body
post: true true
we: http=4/4 stream=4/4
re: http=4/4 stream=4/4
--- no_error_log
[error]



=== TEST 3: a unique event runs once per API per subsystem, whichever subsystem posted it
--- main_config eval: $::Stream
--- http_config eval: $::Http
--- config eval
"location = /t {
    content_by_lua_block {
        local t, port = require 't.stream', $::Port
        local function remote(code) return t.remote(port, code) end
        assert(t.wait_ready(port))
        t.post('we', 'u1', 'key-we-http')
        t.post('re', 'u2', 'key-re-http')
        remote([[return require('t.stream').post('we', 'u3', 'key-we-stream')]])
        remote([[return require('t.stream').post('re', 'u4', 'key-re-stream')]])
        -- a broadcast after them: once every consumer handled it, each has
        -- read (and claimed or skipped) the unique events before it
        t.post('we', 'fence')
        t.wait(port, 'we', 'fence=http')
        t.wait(port, 're', 'fence=http')
        for _, e in ipairs({ 'u1=http', 'u2=http', 'u3=stream', 'u4=stream' }) do
            ngx.say(e, ': we ', t.both(port, 'we', e), ', re ', t.both(port, 're', e))
        end
    }
}"
--- response_body
u1=http: we http=1/1 stream=1/1, re http=1/1 stream=1/1
u2=http: we http=1/1 stream=1/1, re http=1/1 stream=1/1
u3=stream: we http=1/1 stream=1/1, re http=1/1 stream=1/1
u4=stream: we http=1/1 stream=1/1, re http=1/1 stream=1/1
--- no_error_log
[error]



=== TEST 4: stream consumers get push wake-ups (their semaphores are stream-lua's), as http's do; every package loads in stream Lua, preread_by_lua* sees the API configured
--- main_config eval: $::Stream
--- http_config eval: $::Http
--- config eval
"location = /t {
    content_by_lua_block {
        local t, port = require 't.stream', $::Port
        assert(t.wait_ready(port))
        ngx.say('http: ', require('resty.worker.events').stats().push, ' ', _G.t_events:stats().push)
        ngx.say('stream: ', t.remote(port, [[return require('resty.worker.events').stats().push]]),
                ' ', t.remote(port, [[return _G.t_events:stats().push]]))
        ngx.say('stream packages: ', t.remote(port, 'local n = 0 '
            .. 'for _, p in ipairs({ [[resty.worker.events]], [[resty.events]], [[resty.events.compat]], '
            .. '[[resty.worker.manager]], [[ngx_tasks]] }) do '
            .. 'if type(require(p)) == [[table]] then n = n + 1 end end return n'))
        ngx.say('preread: ', t.remote(port, [[return require('t.stream').get('preread')]]))
    }
}"
--- response_body
http: true true
stream: true true
stream packages: 5
preread: true
--- no_error_log
[error]
push wake-ups unavailable



=== TEST 5: a HUP reload: the new workers of both subsystems are on the bus, both directions
--- main_config eval: $::Stream
--- http_config eval: $::Http
--- config eval
"location = /t {
    content_by_lua_block {
        local t, port = require 't.stream', $::Port
        local function remote(code) return t.remote(port, code) end
        local function ok(s) return s:match('^http=4/%d+ stream=4/%d+\$') ~= nil end
        assert(t.wait_ready(port))
        t.post('we', 'before')
        ngx.say('before: ', t.wait(port, 'we', 'before=http'))
        t.set('ready', 0)
        remote([[return require('t.stream').set('ready', 0)]])
        require('t.we').reload()
        ngx.say('ready after HUP: ', t.wait_ready(port))
        t.post('re', 'after-hup')
        ngx.say('http -> every worker: ', ok(t.wait(port, 're', 'after-hup=http')))
        remote([[return require('t.stream').post('we', 'after-hup-s')]])
        ngx.say('stream -> every worker: ', ok(t.wait(port, 'we', 'after-hup-s=stream')))
    }
}"
--- response_body
before: http=4/4 stream=4/4
ready after HUP: true
http -> every worker: true
stream -> every worker: true
--- no_error_log
[error]



=== TEST 6: a worker SIGKILLed and respawned: its http and stream Lua are back on the bus, both directions
--- main_config eval: $::Stream
--- http_config eval: $::Http
--- config eval
"location = /t {
    content_by_lua_block {
        local t, port = require 't.stream', $::Port
        local function remote(code) return t.remote(port, code) end
        local function ok(s) return s:match('^http=4/%d+ stream=4/%d+\$') ~= nil end
        assert(t.wait_ready(port))
        local victim = require('t.we').other_worker_pid()
        t.set('ready', 3)
        remote([[return require('t.stream').set('ready', 3)]])
        os.execute('kill -9 ' .. victim)
        ngx.say('respawned: ', t.wait_ready(port))
        t.post('we', 'after-kill')
        ngx.say('http -> every worker: ', ok(t.wait(port, 'we', 'after-kill=http')))
        remote([[return require('t.stream').post('re', 'after-kill-s')]])
        ngx.say('stream -> every worker: ', ok(t.wait(port, 're', 'after-kill-s=stream')))
    }
}"
--- response_body
respawned: true
http -> every worker: true
stream -> every worker: true
--- no_error_log
[crit]
[emerg]



=== TEST 7: push wake-ups reach stream Lua through stream-lua's own semaphore post: with a 60 s interval, an event posted from http reaches every worker's stream handlers within a second, again and again
--- main_config eval
(my $s = $::Stream) =~ s/require\("t.stream"\).start\(\)/require("t.stream").start(60)/;
$s
--- http_config
    init_worker_by_lua_block {
        require("t.stream").start(60)
    }
--- config eval
"location = /t {
    content_by_lua_block {
        local t, port = require 't.stream', $::Port
        assert(t.wait_ready(port))
        -- the loops have gone to sleep for their 60 s
        ngx.sleep(0.3)
        for i = 1, 3 do
            ngx.update_time()
            local t0 = ngx.now()
            t.post('we', 'p' .. i)
            local got = t.wait(port, 'we', 'p' .. i .. '=http')
            ngx.update_time()
            ngx.say(got, ' within a second: ', ngx.now() - t0 < 1)
            ngx.sleep(0.2)
        end
    }
}"
--- response_body
http=4/4 stream=4/4 within a second: true
http=4/4 stream=4/4 within a second: true
http=4/4 stream=4/4 within a second: true
--- no_error_log
[error]
push wake-ups unavailable
--- timeout: 40
