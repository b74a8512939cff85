# What the nginx under test is made of, so that t/ runs unchanged on
# Debian's nginx (lua as dynamic modules in /usr/lib/nginx/modules) and on
# OpenResty (lua, NDK and stream-lua compiled in). Read once from
# `nginx -V` of $TEST_NGINX_BINARY; each fact can be forced by a variable.
#
#   use NginxPlatform;
#   $NginxPlatform::Binary          # the nginx under test (absolute)
#   $NginxPlatform::LuaBuiltin      # lua compiled in: no load_module lines
#   $NginxPlatform::LuaLoadModules  # the ndk + lua load_module lines ('' when built in)
#   $NginxPlatform::Agent           # the privileged agent patch (OpenResty)
#   $NginxPlatform::RedisModule     # "resty.redis" (OpenResty) or "nginx.redis" (Debian)
#   $NginxPlatform::SingleGracefulExit  # master_process off exits gracefully on QUIT (OpenResty)
#
# Config sections and Lua see them as $TEST_NGINX_BINARY,
# $TEST_NGINX_REDIS_MODULE (`require "$TEST_NGINX_REDIS_MODULE"`) and
# $TEST_NGINX_MODULES_DIR (Debian's only: a block should not need it).
package NginxPlatform;

use strict;
use warnings;

our $Binary = $ENV{TEST_NGINX_BINARY} // '/usr/sbin/nginx';
$ENV{TEST_NGINX_BINARY} = $Binary; # for blocks that run it (env TEST_NGINX_BINARY;)
our $V = `$Binary -V 2>&1` // '';

# TEST_NGINX_LUA_BUILTIN=1/0 forces it; else: a lua-nginx-module given to
# --add-module (stream-lua-nginx-module does not count)
our $LuaBuiltin = $ENV{TEST_NGINX_LUA_BUILTIN}
    // ($V =~ m{--add-module=(?:\S*/)?(?:ngx_lua-|lua-nginx-module)} ? 1 : 0);

our $ModulesDir = $ENV{TEST_NGINX_MODULES_DIR} // '/usr/lib/nginx/modules';

our $LuaLoadModules = $LuaBuiltin ? '' : <<"_EOC_";
load_module $ModulesDir/ndk_http_module.so;
load_module $ModulesDir/ngx_http_lua_module.so;
_EOC_

# OpenResty's nginx reports itself as openresty/x.y.z and has the agent patch
our $Agent = $ENV{TEST_NGINX_PRIVILEGED_AGENT} // ($V =~ m{openresty/} ? 1 : 0);

# OpenResty's single_process_graceful_exit patch: with master_process off a
# QUIT gives an exiting phase (premature timers run) before exit_process;
# plain nginx exits at once
our $SingleGracefulExit = $ENV{TEST_NGINX_SINGLE_GRACEFUL_EXIT} // ($V =~ m{openresty/} ? 1 : 0);

# the Redis client the platform ships: OpenResty's lualib has resty.redis,
# Debian's lua-nginx-redis installs nginx.redis
our $RedisModule = $ENV{TEST_NGINX_REDIS_MODULE}
    // ($V =~ m{--prefix=(\S+)} && -f "$1/../lualib/resty/redis.lua" ? 'resty.redis'
        : -f '/usr/share/lua/5.1/nginx/redis.lua' ? 'nginx.redis' : 'resty.redis');
$ENV{TEST_NGINX_REDIS_MODULE} = $RedisModule;

1;
