# worker_events_zone: arguments, limits, placement, reuse.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use WorkerEventsTest;

run_tests();

__DATA__

=== TEST 1: a good zone
--- http_config
worker_events_zone ev 1m;
--- config
location = /t {
    content_by_lua_block {
        ngx.say(require("resty.worker.events").configure({ shm = "ev" }))
    }
}
--- response_body
true



=== TEST 2: wrong argument count
--- http_config
worker_events_zone ev;
--- must_die
--- error_log
invalid number of arguments in "worker_events_zone" directive



=== TEST 3: too many arguments
--- http_config
worker_events_zone ev 1m extra;
--- must_die
--- error_log
invalid number of arguments in "worker_events_zone" directive



=== TEST 4: unparsable size
--- http_config
worker_events_zone ev lots;
--- must_die
--- error_log
ngx_worker_events: invalid zone size for "ev"



=== TEST 5: size below the minimum
--- http_config
worker_events_zone ev 64k;
--- must_die
--- error_log
ngx_worker_events: zone "ev" is too small: 65536 bytes, at least 128k are needed



=== TEST 6: the minimum size works
--- http_config
worker_events_zone ev 128k;
--- config
location = /t {
    content_by_lua_block {
        local ev = require "resty.worker.events"
        ngx.say(ev.configure({ shm = "ev" }))
        ngx.say(ev.post("s", "e", string.rep("x", 1000)))
    }
}
--- response_body
true
true



=== TEST 7: the same name twice
--- http_config
worker_events_zone ev 1m;
worker_events_zone ev 1m;
--- must_die
--- error_log
ngx_worker_events: duplicate worker_events_zone "ev"



=== TEST 8: not allowed in server {}
--- http_config
--- config
worker_events_zone ev 1m;
--- must_die
--- error_log
"worker_events_zone" directive is not allowed here



=== TEST 9: not allowed outside http {}
--- main_config
worker_events_zone ev 1m;
--- must_die
--- error_log
"worker_events_zone" directive is not allowed here



=== TEST 10: a lua_shared_dict of the same name is refused by nginx
--- http_config
lua_shared_dict ev 1m;
worker_events_zone ev 1m;
--- must_die
--- error_log
the shared memory zone "ev" is already declared for a different use



=== TEST 11: configure() with a lua_shared_dict uses the only declared zone
--- http_config
lua_shared_dict dict 1m;
worker_events_zone ev 1m;
--- config
location = /t {
    content_by_lua_block {
        local ev = require "resty.worker.events"
        ngx.say(ev.configure({ shm = "dict" }))
        ngx.say(ev.stats().zone)
    }
}
--- response_body
true
ev
--- error_log
ngx_worker_events: shm "dict" is a lua_shared_dict: events go to worker_events_zone "ev" (for a dedicated zone, replace "lua_shared_dict dict ...;" with "worker_events_zone dict <size>;")



=== TEST 12: a lua_shared_dict and two declared zones: no default, a clear error
--- http_config
lua_shared_dict dict 1m;
worker_events_zone a 1m;
worker_events_zone b 1m;
--- config
location = /t {
    content_by_lua_block {
        local ev = require "resty.worker.events"
        ngx.say(ev.configure({ shm = "dict" }))
        ngx.say(ev.configure({ shm = "b" }))
        ngx.say(ev.stats().zone)
    }
}
--- response_body
nilshm "dict" is a lua_shared_dict and there is no single default worker_events_zone (declared: a, b): pass one of them as shm
true
b



=== TEST 13: several zones side by side
--- http_config
worker_events_zone one 1m;
worker_events_zone two 2m;
--- config
location = /t {
    content_by_lua_block {
        local ev = require "resty.worker.events"
        ngx.say(ev.configure({ shm = "two" }))
        ngx.say(ev.configure({ shm = "one" }))
        ngx.say(ev.stats().zone, " ", ev.stats().log_size > 1700000) -- 2m less the claims (a sixth)
    }
}
--- response_body
true
nilAlready started, cannot change shm
two true



=== TEST 14: nginx -t style check passes with the module
--- http_config
worker_events_zone ev 10m;
--- config
location = /t { return 200 "ok\n"; }
--- response_body
ok
