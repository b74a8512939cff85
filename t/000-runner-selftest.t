# Self-test of the Test::Nginx::Socket-compatible runner in t/lib.
# Blocks 1-13 need plain nginx only; the Lua ones get the module loaded.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';

repeat_each(2);
master_on();
no_shuffle();

use NginxPlatform;

# ndk + lua load lines on Debian; none where lua is compiled in (OpenResty)
our $LuaModules = $NginxPlatform::LuaLoadModules;
our $LuaPresent = $NginxPlatform::LuaBuiltin
    || -f "$NginxPlatform::ModulesDir/ngx_http_lua_module.so";

# blocks using *_by_lua* directives get the module loads (and are skipped when
# the module is not installed)
add_block_preprocessor(sub {
    my $block = shift;
    if (join('', $block->config // '', $block->http_config // '') =~ /_by_lua/) {
        if (!$LuaPresent) {
            $block->set_value("skip_eval", "1: 1");
        }
        $block->set_value("main_config", $LuaModules . ($block->main_config // ''));
    }
    if (!defined $block->error_log && !defined $block->no_error_log
        && !defined $block->must_die)
    {
        $block->set_value("no_error_log", "[error]");
    }
});

run_tests();

__DATA__

=== TEST 1: response_body, default status 200
--- config
location = /t { return 200 "hi\n"; }
--- request
GET /t
--- response_body
hi



=== TEST 2: error_code and response_body_like (multi-line, /s)
--- config
location = /t { return 404; }
--- request
GET /t
--- error_code: 404
--- response_body_like chomp
<title>404 Not Found</title>.*</html>



=== TEST 3: more_headers + response_headers
--- config
location = /t {
    add_header X-Bar "bar-$http_x_foo" always;
    return 200 "foo=$http_x_foo\n";
}
--- more_headers
X-Foo: hello
# a comment line is ignored
--- request
GET /t
--- response_headers
X-Bar: bar-hello
!X-Missing
--- response_headers_like
Content-Type: text/.*
--- response_body
foo=hello



=== TEST 4: POST body reaches nginx ($request_body via an internal proxy)
--- config
location = /p {
    proxy_set_header X-Body $request_body;
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
}
location = /echo { return 200 "body=[$http_x_body] len=$http_content_length\n"; }
--- request
POST /p
hello world
--- response_body
body=[hello world] len=11



=== TEST 5: error_log / no_error_log (missing file is logged)
--- config
location /files/ { alias $TEST_NGINX_SERVER_ROOT/html/; }
--- request
GET /files/nothing.txt
--- error_code: 404
--- error_log
No such file or directory
nothing.txt
--- no_error_log
[crit]
[alert]



=== TEST 6: error_log eval with regexes, grep_error_log
--- config
location /files/ { alias $TEST_NGINX_SERVER_ROOT/html/; }
--- request
GET /files/nothing.txt
--- error_code: 404
--- error_log eval
[qr/open\(\) "[^"]+nothing\.txt" failed/, "[error]"]
--- grep_error_log eval: qr/\(2: No such file or directory\)/
--- grep_error_log_out
(2: No such file or directory)



=== TEST 7: request arrays, per-request expectations
--- config
location = /a { return 200 "a\n"; }
location = /b { return 201 "b\n"; }
location = /c { return 302 /a; }
--- request eval
["GET /a", "GET /b", "GET /c"]
--- error_code eval
[200, 201, 302]
--- response_body_like eval
["^a\n\\z", "^b\n\\z", "302 Found"]



=== TEST 8: pipelined requests
--- config
location = /a { return 200 "a\n"; }
location = /b { return 200 "b\n"; }
--- pipelined_requests eval
["GET /a", "GET /b"]
--- response_body eval
["a\n", "b\n"]



=== TEST 9: SKIP blocks are not run
--- SKIP
--- config
location = /t { return 500; }
--- request
GET /t
--- response_body
never



=== TEST 10: user_files, HEAD request, TEST_NGINX_* substitution
--- config
location = /port { return 200 "port=$TEST_NGINX_SERVER_PORT\n"; }
--- user_files
>>> sub/hello.txt
hello, file
--- request eval
["GET /sub/hello.txt", "HEAD /sub/hello.txt", "GET /port"]
--- response_body eval
["hello, file\n", "", "port=$ENV{TEST_NGINX_SERVER_PORT}\n"]



=== TEST 11: must_die on a config error
--- config
location = /t { no_such_directive_here; }
--- must_die
--- error_log
[emerg]
unknown directive "no_such_directive_here"



=== TEST 12: shutdown_error_log (nginx is stopped gracefully by the runner)
--- config
location = /t { return 200 "ok\n"; }
--- request
GET /t
--- response_body
ok
--- shutdown_error_log
gracefully shutting down



=== TEST 13: log_level per block, wait
--- log_level: warn
--- config
location = /t { return 200 "ok\n"; }
--- request
GET /t
--- wait: 0.05
--- response_body
ok
--- no_error_log
[debug]
[notice]



=== TEST 14: lua - POST body echo, chunked response, response_body eval
--- config
location = /echo {
    content_by_lua_block {
        ngx.req.read_body()
        ngx.say("got: ", ngx.req.get_body_data())
        ngx.flush(true)
        ngx.say("second chunk")
    }
}
--- request
POST /echo
hello
world
--- response_headers
Transfer-Encoding: chunked
--- response_body eval
"got: hello\nworld\nsecond chunk\n"



=== TEST 15: lua - kill -9 of a worker and HUP reload in the middle of a block
--- workers: 2
--- http_config
lua_shared_dict st 1m;
init_worker_by_lua_block { ngx.shared.st:incr("starts", 1, 0) }
--- config
# /t waits until the workers started by the last /reload have run init_worker
location = /t {
    content_by_lua_block {
        local st = ngx.shared.st
        local want = st:get("want") or 0
        for _ = 1, 200 do
            if st:get("starts") >= want then break end
            ngx.sleep(0.01)
        end
        ngx.say(st:get("starts") >= want and "ok" or "timed out")
    }
}
location = /reload {
    content_by_lua_block {
        local st = ngx.shared.st
        st:set("want", st:get("starts") + ngx.worker.count())
        local f = io.open(ngx.config.prefix() .. "logs/nginx.pid")
        local pid = f:read("*n")
        f:close()
        os.execute("kill -HUP " .. pid)
        ngx.say("reloaded")
    }
}
location = /kill_worker {
    content_by_lua_block {
        ngx.say("killed ", ngx.worker.pid())
        ngx.eof()
        os.execute("kill -9 " .. ngx.worker.pid())
    }
}
--- request eval
["GET /t", "GET /kill_worker", "GET /t", "GET /reload", "GET /t", "GET /kill_worker", "GET /t"]
--- response_body eval
["ok\n", qr/^killed \d+\n\z/, "ok\n", "reloaded\n", "ok\n", qr/^killed \d+\n\z/, "ok\n"]
--- no_error_log
[error]
