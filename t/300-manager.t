# resty.worker.manager: lifecycle callbacks with exact counts. 4 workers.
# Every callback appends "<kind> <id> <n_prev> <n_mine> <n_next>" to the
# `out` dict's list "log" (the dict survives reloads) and logs it at NOTICE
# (for what happens after the dict is gone, at stop).
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use WorkerEventsTest;

workers(4);

our $HttpConfig = <<'_EOC_';
    init_by_lua_block {
        local function rec(kind)
            return function(id, p, m, n)
                local line = table.concat({ kind, tostring(id), tostring(p), tostring(m), tostring(n) }, " ")
                ngx.shared.out:rpush("log", line)
                ngx.log(ngx.NOTICE, "lifecycle: ", line)
            end
        end
        _G.rec = rec
        require("resty.worker.manager").on_init_by_lua({ interval = 0.2, failed = 0.3 },
            rec("master-start"), rec("master-exit"))
    }
    init_worker_by_lua_block {
        assert(require("resty.worker.manager").on_init_worker_by_lua(
            _G.rec("worker-start"), _G.rec("worker-exit")))
    }
_EOC_

our $Lib = <<'_EOC_';
    -- the "log" lines so far, ids made readable: generation g, worker pids as "g-*"
    function _G.lines()
        local d, out = ngx.shared.out, {}
        for i = 0, (d:llen("log") or 0) - 1 do
            local v = d:lpop("log")
            d:rpush("log", v)
            out[#out + 1] = (v:gsub("(%d+)%-%d+", "%1-*"))
        end
        return out
    end
    function _G.wait_lines(n, timeout)
        local deadline = ngx.now() + (timeout or 5)
        while (ngx.shared.out:llen("log") or 0) < n and ngx.now() < deadline do
            ngx.sleep(0.02)
            ngx.update_time()
        end
        return (ngx.shared.out:llen("log") or 0) >= n
    end
_EOC_

run_tests();

__DATA__

=== TEST 1: fresh start: one master start (n_prev nil), four worker starts with n_mine 1..4
--- implicit_zone
--- http_config eval: $::HttpConfig
--- config eval
"location = /t { content_by_lua_block { $::Lib
    assert(_G.wait_lines(5))
    local l = _G.lines()
    ngx.say(table.concat(l, '\\n'))
    local m = require('resty.worker.manager')
    local gen = m.generation()
    ngx.say('generation: ', gen, ', workers: ', #m.workers())
} }"
--- response_body
master-start 1 nil 0 nil
worker-start 1-* nil 1 nil
worker-start 1-* nil 2 nil
worker-start 1-* nil 3 nil
worker-start 1-* nil 4 nil
generation: 1, workers: 4
--- no_error_log
[error]
