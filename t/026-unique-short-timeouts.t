# unique with the short timeouts Kong's own suites use (0.04 s) and shorter:
# one worker runs a unique event, and a post of the key within the timeout
# is dropped, for 1, 2 and 4 workers, both APIs, posts back to back and
# across a sleep, and a worker that is blocked when the events arrive.
# (Under 64 ms claim ticks a 40 ms claim was often expired when written:
# every worker ran both events.) Single-process mode: t/027.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use WorkerEventsTest;

master_on();
workers(2);
run_tests();

__DATA__

=== TEST 1: resty.worker.events, timeout = 0.04, 2 workers: one worker runs each window, the second post is dropped
--- workers: 2
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



=== TEST 2: resty.worker.events, timeout = 0.01, 2 workers
--- workers: 2
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



=== TEST 3: resty.worker.events, timeout = 0.04, 4 workers
--- workers: 4
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



=== TEST 4: resty.worker.events, timeout = 0.01, 4 workers
--- workers: 4
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



=== TEST 5: resty.worker.events, timeout = 0.04, 1 worker: the second post within the timeout is dropped
--- workers: 1
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



=== TEST 6: resty.worker.events, timeout = 0.01, 1 worker
--- workers: 1
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



=== TEST 7: resty.worker.events, timeout = 0.04, 4 workers, one of them blocked 50 ms when the pair arrives (it reads it after the claim expired)
--- workers: 4
--- http_config
init_worker_by_lua_block { require("t.short_unique").init("we", 0.04) }
--- config
location = /t { content_by_lua_block { require("t.short_unique").run("one") } }
--- response_body
r1 ran 1
r2 ran 0
r3 ran 1
r4 ran 0
--- no_error_log
[error]



=== TEST 8: resty.worker.events, timeout = 0.01, 2 workers, one of them blocked 50 ms
--- workers: 2
--- http_config
init_worker_by_lua_block { require("t.short_unique").init("we", 0.01) }
--- config
location = /t { content_by_lua_block { require("t.short_unique").run("one") } }
--- response_body
r1 ran 1
r2 ran 0
r3 ran 1
r4 ran 0
--- no_error_log
[error]



=== TEST 9: resty.worker.events, timeout = 0.04, 2 workers, both blocked 50 ms (the reservation expires unread)
--- workers: 2
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



=== TEST 10: resty.worker.events, timeout = 0.01, 1 worker, blocked 50 ms
--- workers: 1
--- http_config
init_worker_by_lua_block { require("t.short_unique").init("we", 0.01) }
--- config
location = /t { content_by_lua_block { require("t.short_unique").run("all", 0.3) } }
--- response_body
r1 ran 1
r2 ran 0
r3 ran 1
r4 ran 0
--- no_error_log
[error]



=== TEST 11: resty.events, unique_timeout = 0.04, 2 workers: one worker runs each window, the second post is dropped
--- workers: 2
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



=== TEST 12: resty.events, unique_timeout = 0.01, 2 workers
--- workers: 2
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



=== TEST 13: resty.events, unique_timeout = 0.04, 4 workers
--- workers: 4
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



=== TEST 14: resty.events, unique_timeout = 0.01, 4 workers
--- workers: 4
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



=== TEST 15: resty.events, unique_timeout = 0.04, 1 worker: the second post within the timeout is dropped
--- workers: 1
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



=== TEST 16: resty.events, unique_timeout = 0.01, 1 worker
--- workers: 1
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



=== TEST 17: resty.events, unique_timeout = 0.04, 4 workers, one of them blocked 50 ms when the pair arrives (it reads it after the claim expired)
--- workers: 4
--- http_config
init_worker_by_lua_block { require("t.short_unique").init("events", 0.04) }
--- config
location = /t { content_by_lua_block { require("t.short_unique").run("one") } }
--- response_body
r1 ran 1
r2 ran 0
r3 ran 1
r4 ran 0
--- no_error_log
[error]



=== TEST 18: resty.events, unique_timeout = 0.01, 2 workers, one of them blocked 50 ms
--- workers: 2
--- http_config
init_worker_by_lua_block { require("t.short_unique").init("events", 0.01) }
--- config
location = /t { content_by_lua_block { require("t.short_unique").run("one") } }
--- response_body
r1 ran 1
r2 ran 0
r3 ran 1
r4 ran 0
--- no_error_log
[error]



=== TEST 19: resty.events, unique_timeout = 0.04, 2 workers, both blocked 50 ms (the reservation expires unread)
--- workers: 2
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



=== TEST 20: resty.events, unique_timeout = 0.01, 1 worker, blocked 50 ms
--- workers: 1
--- http_config
init_worker_by_lua_block { require("t.short_unique").init("events", 0.01) }
--- config
location = /t { content_by_lua_block { require("t.short_unique").run("all", 0.3) } }
--- response_body
r1 ran 1
r2 ran 0
r3 ran 1
r4 ran 0
--- no_error_log
[error]
