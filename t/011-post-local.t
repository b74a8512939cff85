# post_local(): this worker only, data passed as is, and run before pending
# broadcast events within a poll.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use WorkerEventsTest;

# several workers (and a master: reloads, kills) as the real Test::Nginx needs them
master_on();
workers(2);

our $HttpConfig = <<'_EOC_';
    init_worker_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        ev.register(function(data, event, source, pid)
            we.record(event, " pid=", pid and "number" or "nil",
                      " same-table=", data ~= nil and rawequal(data, LAST_LOCAL))
        end, "test")
        we.configure({ interval = 0 })  -- only explicit polls
    }
_EOC_

run_tests();

__DATA__

=== TEST 1: only the posting worker runs it, with the very same table
--- http_config eval: $::HttpConfig
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        assert(we.wait_ready())
        LAST_LOCAL = { f = function() end } -- not serialisable: fine for local
        ngx.say(ev.post_local("test", "mine", LAST_LOCAL))
        ngx.say("before poll: ", we.count(ngx.worker.id()))
        ngx.say(ev.poll())
        for _, l in ipairs(we.take(ngx.worker.id())) do ngx.say(l) end
        ngx.sleep(0.2)
        local other = 1 - ngx.worker.id()
        ngx.say("other worker got: ", we.count(other))
    }
}
--- response_body
true
before poll: 0
done
mine pid=nil same-table=true
other worker got: 0



=== TEST 2: local events run before the broadcast ones of the same poll
--- http_config eval: $::HttpConfig
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        assert(ev.post("test", "broadcast-1"))
        assert(ev.post_local("test", "local-1"))
        assert(ev.post("test", "broadcast-2"))
        assert(ev.post_local("test", "local-2"))
        ngx.say(ev.poll())
        for _, l in ipairs(we.take(ngx.worker.id())) do ngx.say(l) end
    }
}
--- response_body
done
local-1 pid=nil same-table=false
local-2 pid=nil same-table=false
broadcast-1 pid=number same-table=false
broadcast-2 pid=number same-table=false



=== TEST 3: local events posted by a handler run in the same poll
--- http_config
init_worker_by_lua_block {
    local we = require "t.we"
    local ev = require "resty.worker.events"
    ev.register(function(data, event)
        we.record(event)
        if event == "first" then
            assert(ev.post_local("test", "from-handler"))
            we.record("poll inside handler: ", ev.poll())
        end
    end, "test")
    we.configure({ interval = 0 })
}
--- config
location = /t {
    content_by_lua_block {
        local we = require "t.we"
        local ev = require "resty.worker.events"
        assert(ev.post_local("test", "first"))
        ngx.say(ev.poll())
        for _, l in ipairs(we.take(ngx.worker.id())) do ngx.say(l) end
    }
}
--- response_body
done
first
poll inside handler: recursive
from-handler
