# The module's second (stream) module object is harmless wherever there is
# no stream-lua: on Debian's nginx a `stream {}` block (ngx_stream_module.so)
# starts with the module loaded and registers nothing, and http's bus works
# as before. On OpenResty (stream-lua compiled in) the same config runs too.
use lib 't/lib';
use Test::Nginx::Socket;
use WorkerEventsTest;
use NginxPlatform;

my $v = `$NginxPlatform::Binary -V 2>&1`;
my $dyn = "$NginxPlatform::ModulesDir/ngx_stream_module.so";
our $StreamModule = '';
if ($v =~ m{--with-stream(?:\s|$)}) {
    plan 'no_plan';
} elsif ($v =~ m{--with-stream=dynamic} && -f $dyn) {
    $StreamModule = "load_module $dyn;";
    plan 'no_plan';
} else {
    plan skip_all => "$NginxPlatform::Binary has no stream module";
}

our $Main = $NginxPlatform::LuaLoadModules . "load_module $WorkerEventsTest::Module;\n"
    . "$StreamModule\n" . <<'_EOC_';
stream {
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        return "stream here\n";
    }
}
_EOC_

run_tests();

__DATA__

=== TEST 1: a stream {} block without Lua next to http's bus: nginx starts, events flow, the stream server answers
--- main_config eval: $::Main
--- http_config
    init_worker_by_lua_block {
        local ev = require "resty.worker.events"
        ev.register(function(data) ngx.shared.out:set("got", data) end, "s")
        assert(ev.configure { shm = "ev" })
    }
--- config
location = /t {
    content_by_lua_block {
        assert(require("resty.worker.events").post("s", "e", "hello"))
        require("resty.worker.events").poll()
        ngx.say("got: ", ngx.shared.out:get("got"))
        local sock = ngx.socket.tcp()
        assert(sock:connect("127.0.0.1", $TEST_NGINX_RAND_PORT_1))
        ngx.say("stream: ", sock:receive("*l"))
    }
}
--- response_body
got: hello
stream: stream here
--- no_error_log
[error]
