# The module loads next to ndk + lua in any load_module order, and refuses
# to start without the lua module. Where lua is compiled into nginx
# (OpenResty; t/lib/NginxPlatform.pm) there is no order and no nginx
# without lua: TEST 1 loads our module alone, TESTs 2-4 are skipped.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use WorkerEventsTest;

# the platform's ndk + lua lines ('' where lua is compiled in), then ours
our $Platform = $NginxPlatform::LuaLoadModules . 'load_module $TEST_NGINX_WE_MODULE;';

# several workers (and a master: reloads, kills) as the real Test::Nginx needs them
master_on();
workers(2);

run_tests();

__DATA__

=== TEST 1: ndk, lua, then ours (lua compiled in: ours alone)
--- main_config eval: $::Platform
--- http_config
worker_events_zone ev 1m;
--- config
location = /t {
    content_by_lua_block {
        local ev = require "resty.worker.events"
        ngx.say(type(ev), " ", ev._VERSION)
    }
}
--- response_body
table 2.0.1



=== TEST 2: ours first
--- skip_eval: 5: $NginxPlatform::LuaBuiltin
--- main_config
load_module $TEST_NGINX_WE_MODULE;
load_module $TEST_NGINX_MODULES_DIR/ndk_http_module.so;
load_module $TEST_NGINX_MODULES_DIR/ngx_http_lua_module.so;
--- http_config
worker_events_zone ev 1m;
--- config
location = /t {
    content_by_lua_block {
        ngx.say(require("resty.worker.events")._VERSION)
    }
}
--- response_body
2.0.1



=== TEST 3: ours between ndk and lua
--- skip_eval: 5: $NginxPlatform::LuaBuiltin
--- main_config
load_module $TEST_NGINX_MODULES_DIR/ndk_http_module.so;
load_module $TEST_NGINX_WE_MODULE;
load_module $TEST_NGINX_MODULES_DIR/ngx_http_lua_module.so;
--- http_config
worker_events_zone ev 1m;
--- config
location = /t {
    content_by_lua_block {
        ngx.say(require("resty.worker.events")._VERSION)
    }
}
--- response_body
2.0.1



=== TEST 4: without the lua module nginx refuses to start, naming it
--- skip_eval: 3: $NginxPlatform::LuaBuiltin
--- main_config
load_module $TEST_NGINX_WE_MODULE;
--- http_config
--- config
--- must_die
--- error_log
ngx_http_lua_module is not loaded



=== TEST 5: the module works without any worker_events_zone (require only)
--- http_config
--- config
location = /t {
    content_by_lua_block {
        local ev = require "resty.worker.events"
        ngx.say(ev.configured())
        ngx.say(ev.configure({ shm = "nope" }))
    }
}
--- response_body
false
nilshm "nope" not found



=== TEST 6: the process hooks run in workers only, quietly elsewhere (cache manager/loader)
--- log_level: debug
--- http_config
worker_events_zone ev 1m;
proxy_cache_path $TEST_NGINX_SERVER_ROOT/cache keys_zone=c:1m;
--- config
location = /t {
    content_by_lua_block {
        ngx.sleep(0.2)
        local out = io.popen("ps -o args= --ppid " .. require("t.we").master_pid()):read("*a")
        ngx.say("cache manager alive: ", out:find("cache manager process", 1, true) ~= nil)
    }
}
--- response_body
cache manager alive: true
--- grep_error_log eval
qr/ngx_worker_events: worker (?=\d+ attached)/
--- grep_error_log_out
ngx_worker_events: worker 
ngx_worker_events: worker 
--- no_error_log
[alert]
[crit]
[error]
