# worker_events_compat 1.x | 2.x: the default, what nginx -t refuses, and
# reloads (a new value reaches the new workers; a failed reload leaves the
# running value to respawned workers).
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use WorkerEventsTest;

# several workers (and a master: reloads, kills) as the real Test::Nginx needs them
master_on();
workers(2);

# `nginx -t` itself (not only a start that fails) on each bad line
for my $case (
    [ 'worker_events_compat 3.x;',
      qr/\[emerg\] ngx_worker_events: worker_events_compat: invalid value "3\.x", expected "1\.x" or "2\.x" in \S+nginx\.conf:\d+/ ],
    [ 'worker_events_compat;',
      qr/\[emerg\] invalid number of arguments in "worker_events_compat" directive/ ],
    [ 'worker_events_compat 1.x 2.x;',
      qr/\[emerg\] invalid number of arguments in "worker_events_compat" directive/ ],
    [ "worker_events_compat 1.x;\n    worker_events_compat 1.x;",
      qr/\[emerg\] "worker_events_compat" directive is duplicate/ ],
    [ "server { listen 127.0.0.1:1; worker_events_compat 1.x; }",
      qr/\[emerg\] "worker_events_compat" directive is not allowed here/ ],
) {
    my ($line, $want) = @$case;
    my ($code, $out) = nginx_t($line);
    isnt($code, 0, "nginx -t refuses: $line");
    like($out, $want, "nginx -t says why: $line");
    like($out, qr/test failed/, "nginx -t fails the test: $line");
}
{
    my ($code, $out) = nginx_t('', 'worker_events_compat 1.x;');
    isnt($code, 0, 'nginx -t refuses worker_events_compat outside http {}');
    like($out, qr/"worker_events_compat" directive is not allowed here/,
         'nginx -t says why outside http {}');
    for my $v (qw(1.x 2.x)) {
        ($code, $out) = nginx_t("worker_events_compat $v;");
        is($code, 0, "nginx -t accepts worker_events_compat $v");
        like($out, qr/test is successful/, "nginx -t is successful with $v");
    }
}

# what each new worker reports at start: version, compat, what post() returned
our $StartsConfig = <<'_EOC_';
    init_worker_by_lua_block {
        local ev = require "resty.worker.events"
        assert(ev.configure({ shm = "ev" }))
        ngx.shared.out:rpush("starts", ev._VERSION .. " " .. ev.stats().compat
                             .. " post=" .. tostring(ev.post("test", "probe")))
        ev.register(function(data, event, source, pid)
            if pid ~= ngx.worker.pid() then
                local ffi = require "ffi"
                pcall(ffi.cdef, "int kill(int pid, int sig);")
                ffi.C.kill(ngx.worker.pid(), 9)
            end
        end, "test", "die")
    }
_EOC_

our $Rewrite = <<'_EOC_';
    -- rewrites conf/nginx.conf with `edit`, then reloads
    local function rewrite_and_reload(edit)
        local path = ngx.config.prefix() .. "conf/nginx.conf"
        local f = assert(io.open(path))
        local conf = f:read("*a")
        f:close()
        f = assert(io.open(path, "w"))
        f:write(edit(conf))
        f:close()
        require("t.we").reload()
    end
    -- waits until `n` workers have reported and returns the reports
    local function starts(n)
        local d = ngx.shared.out
        for _ = 1, 300 do
            if d:llen("starts") >= n then break end
            ngx.sleep(0.01)
        end
        local out = {}
        for i = 1, d:llen("starts") do out[i] = d:lpop("starts") end
        return out
    end
_EOC_

run_tests();

__DATA__

=== TEST 1: no directive: 2.x, post() is asynchronous
--- http_config eval: $::StartsConfig
--- config eval
"location = /t { content_by_lua_block { $::Rewrite
    ngx.say(table.concat(starts(2), '\\n'))
} }"
--- response_body
2.0.1 2.x post=true
2.0.1 2.x post=true



=== TEST 2: worker_events_compat 2.x is the default, unchanged
--- http_config eval: "worker_events_compat 2.x;\n" . $::StartsConfig
--- config eval
"location = /t { content_by_lua_block { $::Rewrite
    ngx.say(table.concat(starts(2), '\\n'))
    local s = require('resty.worker.events').stats()
    ngx.say(s.options.shm_retries)
} }"
--- response_body
2.0.1 2.x post=true
2.0.1 2.x post=true
999



=== TEST 3: a start that fails on a bad value
--- http_config
worker_events_compat 1.0;
--- must_die
--- error_log
ngx_worker_events: worker_events_compat: invalid value "1.0", expected "1.x" or "2.x"



=== TEST 4: HUP from 2.x to 1.x: the new workers get 1.x
--- http_config eval: "worker_events_compat 2.x;\n" . $::StartsConfig
--- config eval
"location = /t { content_by_lua_block { $::Rewrite
    ngx.say('before: ', table.concat(starts(2), ', '))
    rewrite_and_reload(function(c)
        return (c:gsub('worker_events_compat 2%.x;', 'worker_events_compat 1.x;'))
    end)
    ngx.say('after: ', table.concat(starts(2), ', '))
} }"
--- response_body
before: 2.0.1 2.x post=true, 2.0.1 2.x post=true
after: 0.3.3 1.x post=done, 0.3.3 1.x post=done



=== TEST 5: a failed reload (to 2.x) leaves 1.x to a respawned worker
--- http_config eval: "worker_events_compat 1.x;\n" . $::StartsConfig
--- config eval
"location = /t { content_by_lua_block { $::Rewrite
    ngx.say('before: ', table.concat(starts(2), ', '))
    rewrite_and_reload(function(c)
        -- the http {} block parses (as 2.x), then the file fails
        return (c:gsub('worker_events_compat 1%.x;', 'worker_events_compat 2.x;'))
               .. '\\nno_such_directive_here;\\n'
    end)
    ngx.sleep(0.5)
    require('resty.worker.events').post('test', 'die')
    ngx.say('respawned: ', table.concat(starts(1), ', '))
} }"
--- response_body
before: 0.3.3 1.x post=done, 0.3.3 1.x post=done
respawned: 0.3.3 1.x post=done
--- no_error_log eval
[qr/\[alert\](?!.*exited on signal 9)/, "[crit]"]
--- error_log
unknown directive "no_such_directive_here"
