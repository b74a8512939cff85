# Shared setup for this project's t/*.t files (like lua-resty-mlcache's t/lib),
# so that a block states only what it tests. By default every block gets:
# - the module lines: ndk, lua and our module (unless main_config loads modules);
# - t/lib on lua_package_path, for the Lua helper `t.we` (t/lib/t/we.lua);
# - `worker_events_zone ev 4m;` (unless http_config declares a
#   worker_events_zone itself, or the block has `--- implicit_zone`, which
#   leaves nginx.conf as a lua-resty-worker-events user wrote it);
# - `lua_shared_dict out 8m;`, where `t.we` records what handlers saw
#   (unless http_config declares `out`, or the block has `--- no_shared_dict`:
#   with no lua_shared_dict at all, lua-nginx-module runs init_by_lua* while
#   ngx_cycle is still the cycle being replaced);
# - `--- request: GET /t` when the config has `location = /t` and the block
#   sends nothing else;
# - a failure on [alert], [crit] or [emerg].
# The process model stays Test::Nginx's default (master_process off, one
# process): a file that needs several workers, a reload or a killed worker
# calls `master_on(); workers(N);` itself, as under the real Test::Nginx.
#
#   use lib 't/lib';
#   use Test::Nginx::Socket 'no_plan';
#   use WorkerEventsTest;
package WorkerEventsTest;

use strict;
use warnings;
use Cwd qw(cwd);
use File::Temp qw(tempdir);
use Test::Nginx::Socket;
use NginxPlatform;
use Exporter 'import';

our @EXPORT = qw(nginx_t);

our $Pwd = cwd();
our $ModulesDir = $NginxPlatform::ModulesDir;
our $Module = $ENV{TEST_NGINX_WE_MODULE} // "$Pwd/build/ngx_http_worker_events_module.so";

# ndk and lua as dynamic modules (Debian), or nothing (compiled in: OpenResty)
our $LoadModules = $NginxPlatform::LuaLoadModules . "load_module $Module;\n";

$ENV{TEST_NGINX_WE_MODULE} = $Module;
$ENV{TEST_NGINX_MODULES_DIR} = $ModulesDir;

no_shuffle();
log_level('info');

add_block_preprocessor(sub {
    my $block = shift;

    my $main = $block->main_config // '';
    if ($main !~ /load_module/) {
        $block->set_value("main_config", $LoadModules . $main);
    }

    my $http = $block->http_config // '';
    if ($http !~ /lua_shared_dict\s+out\s/ && !defined $block->must_die
        && !defined $block->no_shared_dict)
    {
        $http = "lua_shared_dict out 8m;\n" . $http;
    }
    if ($http !~ /worker_events_zone/ && !defined $block->implicit_zone
        && !defined $block->must_die)
    {
        $http = "worker_events_zone ev 4m;\n" . $http;
    }
    if ($http !~ /lua_package_path/) {
        $http = qq{lua_package_path "$Pwd/t/lib/?.lua;;";\n} . $http;
    }
    $block->set_value("http_config", $http);

    if (!defined $block->config) {
        $block->set_value("config", "");
    }

    if ($block->config =~ m{location\s*=\s*/t\s*\{}
        && !defined $block->request && !defined $block->raw_request
        && !defined $block->pipelined_requests && !defined $block->no_request)
    {
        $block->set_value("request", "GET /t");
    }

    # a block that must fail to start expects its [emerg] line
    if (defined $block->must_die && defined $block->error_log && !ref $block->error_log
        && $block->error_log !~ /\[emerg\]/)
    {
        $block->set_value("error_log", $block->error_log . "[emerg]\n");
    }

    if (!defined $block->no_error_log && !defined $block->must_die) {
        $block->set_value("no_error_log", "[alert]\n[crit]\n[emerg]");
    }
});

# Runs the real `nginx -t` on a minimal nginx.conf: our module lines, then
# `$main` in the main context and `$http` inside http {}. Returns the exit
# code and what nginx printed. For directive checks that must hold for
# `nginx -t` itself, not only for a start that fails.
sub nginx_t {
    my ($http, $main) = @_;
    my $dir = tempdir(CLEANUP => 1);
    mkdir "$dir/$_" for qw(conf logs);
    my $user = $> == 0 ? "user root;\n" : '';
    my $temp = join '', map { "    ${_}_temp_path $dir/$_;\n" }
        qw(client_body proxy fastcgi uwsgi scgi);
    open my $fh, '>', "$dir/conf/nginx.conf" or die "nginx.conf: $!";
    print $fh "${LoadModules}${user}error_log $dir/logs/error.log;\npid $dir/logs/nginx.pid;\n"
        . ($main // '') . "\nevents {}\nhttp {\n$temp$http\n}\n";
    close $fh;
    my $bin = $NginxPlatform::Binary;
    my $out = `$bin -t -p $dir/ -c conf/nginx.conf -e $dir/logs/error.log 2>&1`;
    return ($? >> 8, $out);
}

1;
