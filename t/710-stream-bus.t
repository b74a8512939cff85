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
