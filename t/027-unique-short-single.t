# t/026 in single-process mode (master_process off, Test::Nginx's default):
# unique with 0.01 and 0.04 s timeouts.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use WorkerEventsTest;

master_off();
workers(1);
run_tests();

__DATA__

=== TEST 1: resty.worker.events, timeout = 0.04, no master: the second post within the timeout is dropped
--- http_config
init_worker_by_lua_block { require("t.short_unique").init("we", 0.04) }
--- config
location = /t { content_by_lua_block { require("t.short_unique").run() } }
--- response_body
r1 ran 1
r2 ran 0
r3 ran 1
r4 ran 0
--- no_error_log
[error]



=== TEST 2: resty.worker.events, timeout = 0.01, no master
--- http_config
init_worker_by_lua_block { require("t.short_unique").init("we", 0.01) }
--- config
location = /t { content_by_lua_block { require("t.short_unique").run() } }
--- response_body
r1 ran 1
r2 ran 0
r3 ran 1
r4 ran 0
--- no_error_log
[error]



=== TEST 3: resty.worker.events, timeout = 0.04, no master, blocked 50 ms when the pair arrives
--- http_config
init_worker_by_lua_block { require("t.short_unique").init("we", 0.04) }
--- config
location = /t { content_by_lua_block { require("t.short_unique").run("all", 0.3) } }
--- response_body
r1 ran 1
r2 ran 0
r3 ran 1
r4 ran 0
--- no_error_log
[error]



=== TEST 4: resty.events, unique_timeout = 0.04, no master: the second post within the timeout is dropped
--- http_config
init_worker_by_lua_block { require("t.short_unique").init("events", 0.04) }
--- config
location = /t { content_by_lua_block { require("t.short_unique").run() } }
--- response_body
r1 ran 1
r2 ran 0
r3 ran 1
r4 ran 0
--- no_error_log
[error]



=== TEST 5: resty.events, unique_timeout = 0.01, no master
--- http_config
init_worker_by_lua_block { require("t.short_unique").init("events", 0.01) }
--- config
location = /t { content_by_lua_block { require("t.short_unique").run() } }
--- response_body
r1 ran 1
r2 ran 0
r3 ran 1
r4 ran 0
--- no_error_log
[error]



=== TEST 6: resty.events, unique_timeout = 0.04, no master, blocked 50 ms when the pair arrives
--- http_config
init_worker_by_lua_block { require("t.short_unique").init("events", 0.04) }
--- config
location = /t { content_by_lua_block { require("t.short_unique").run("all", 0.3) } }
--- response_body
r1 ran 1
r2 ran 0
r3 ran 1
r4 ran 0
--- no_error_log
[error]
