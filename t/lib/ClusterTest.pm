# Cluster tests' setup (t/6xx): a real redis-server on a free port in the
# test's own directory, and a second nginx node ("B", 4 workers, the same
# nginx binary and module; NginxPlatform)
# next to the Test::Nginx instance ("A"). Both nodes get the same
# http config ($ClusterHttp, filled per node), so a block's requests go to A
# and reach B over HTTP through t/lib/t/cluster.lua.
#
#   use lib 't/lib';
#   use Test::Nginx::Socket 'no_plan';
#   use WorkerEventsTest;
#   use ClusterTest;
#   --- http_config eval: cluster_http("a")
#   --- init: start_node_b()
#
# Each block starts on an empty stream with node B stopped (a block
# preprocessor, run before node A starts).
package ClusterTest;

use strict;
use warnings;
use Cwd qw(cwd);
use File::Path qw(make_path remove_tree);
use IO::Socket::INET;
use Time::HiRes qw(sleep time);
use Exporter 'import';
use NginxPlatform;

our @EXPORT = qw(cluster_http start_node_b stop_node_b redis_cli redis_stop redis_start
                 fake_start fake_stop $RedisPort $NodeBPort $FakePort);

our $Pwd = cwd();
our $Dir = "$Pwd/t/servroot_cluster";
our $RedisPort = $ENV{TEST_NGINX_REDIS_PORT} // (($ENV{TEST_NGINX_PORT} // 1984) + 5400);
our $NodeBPort = ($ENV{TEST_NGINX_PORT} // 1984) + 1;
our $Stream = "t_events";
our $RedisPid;
our $FakePid;

# a free port for the scripted bad Redis (t/lib/fake_redis.py)
sub free_port {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 1,
                                  ReuseAddr => 1) or die "no free port: $!";
    my $p = $s->sockport;
    close $s;
    return $p;
}
our $FakePort = $ENV{TEST_NGINX_FAKE_REDIS_PORT} // free_port();
our $ExtraCluster = '';

$ENV{TEST_NGINX_REDIS_PORT} = $RedisPort;
$ENV{TEST_NGINX_NODE_B_PORT} = $NodeBPort;

sub redis_cli {
    my $out = `redis-cli -p $RedisPort @_ 2>&1`;
    chomp $out;
    return $out;
}

sub redis_up {
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$RedisPort", Timeout => 0.2) or return 0;
    print $s "PING\r\n";
    my $l = <$s> // '';
    return $l =~ /PONG/;
}

# starts redis-server, daemonized, with AOF and fsync always (a restart
# keeps everything it acknowledged); `$Dir/redis/restart` restarts it (for
# Lua's os.execute), `$Dir/redis/stop` stops it
sub redis_start {
    my %o = @_;
    make_path("$Dir/redis");
    my $args = "--port $RedisPort --bind 127.0.0.1 --dir $Dir/redis --save '' "
        . "--appendonly yes --appendfsync always --daemonize yes "
        . "--pidfile $Dir/redis/redis.pid --logfile $Dir/redis/redis.log";
    $args .= " --requirepass $o{password}" if $o{password};
    open my $fh, '>', "$Dir/redis/start" or die $!;
    # (close inherited descriptors: run from an nginx worker, the daemon
    # would keep the worker's client sockets open)
    print $fh "#!/bin/bash\nfor fd in \$(ls /proc/\$\$/fd); do [ \$fd -gt 2 ] && eval \"exec \$fd>&-\"; done 2>/dev/null\n"
        . "redis-server $args </dev/null >/dev/null 2>&1\n"
        . "for i in \$(seq 100); do redis-cli -p $RedisPort ping 2>/dev/null | grep -q -e PONG -e NOAUTH && exit 0; sleep 0.05; done; exit 1\n";
    close $fh;
    open $fh, '>', "$Dir/redis/stop" or die $!;
    print $fh "#!/bin/sh\n[ -f $Dir/redis/redis.pid ] || exit 0\npid=\$(cat $Dir/redis/redis.pid)\nkill \$pid 2>/dev/null\n"
        . "for i in \$(seq 100); do kill -0 \$pid 2>/dev/null || exit 0; sleep 0.05; done; kill -9 \$pid\n";
    close $fh;
    open $fh, '>', "$Dir/redis/restart" or die $!;
    print $fh "#!/bin/sh\n$Dir/redis/stop && $Dir/redis/start\n";
    close $fh;
    chmod 0755, "$Dir/redis/start", "$Dir/redis/stop", "$Dir/redis/restart";
    redis_stop();
    system("$Dir/redis/start") == 0 or die "redis-server did not start on port $RedisPort";
    $RedisPid = 1;
}

sub redis_stop {
    system("$Dir/redis/stop") if -x "$Dir/redis/stop";
}

# starts the scripted bad Redis on $FakePort in front of the real one: it
# forwards everything but the first command `on`, which gets the bad reply
# `fault` (t/lib/fake_redis.py); its report goes to $Dir/fake.json
sub fake_stop {
    return unless $FakePid;
    kill 'TERM', $FakePid;
    waitpid($FakePid, 0);
    undef $FakePid;
}

sub fake_start {
    my (%o) = @_;
    fake_stop();
    make_path($Dir);
    unlink "$Dir/fake.json";
    my @cmd = ("python3", "-B", "$Pwd/t/lib/fake_redis.py", "--port", $FakePort,
               "--upstream", $RedisPort, "--on", $o{on} // "XREAD",
               "--fault", $o{fault} // "line", "--state", "$Dir/fake.json");
    my $pid = fork() // die "fork: $!";
    if ($pid == 0) {
        exec(@cmd) or die "fake_redis.py: $!";
    }
    $FakePid = $pid;
    for (1 .. 100) {
        return 1 if -f "$Dir/fake.json"
            && IO::Socket::INET->new(PeerAddr => "127.0.0.1:$FakePort", Timeout => 0.2);
        sleep 0.05;
    }
    die "fake_redis.py did not start on port $FakePort";
}

# the http config of node `name`: the cluster directive, a recording
# handler in every worker (both APIs), and the /c/* locations of t.cluster
sub cluster_http {
    my ($name, %o) = @_;
    my $extra = $o{cluster} // '';
    my $maxlen = $o{maxlen} // 100000;
    my $url = $o{url} // "redis://127.0.0.1:$RedisPort";
    my $init = $o{init_worker} // '';
    my $pre = $o{pre_init} // '';
    return <<"_EOC_";
    worker_events_cluster $url node=$name stream=$Stream maxlen=$maxlen $extra;
    init_worker_by_lua_block {
        $pre
        require("t.cluster").init_worker("$name", $NodeBPort, "$Dir", $RedisPort,
                                         "$NginxPlatform::RedisModule")
        $init
    }
    server {
        listen 127.0.0.1:\$TEST_NGINX_CLUSTER_PORT;
        location /c/ { content_by_lua_block { require("t.cluster").serve() } }
    }
_EOC_
}

sub node_b_conf {
    my (%o) = @_;
    my $http = cluster_http("b", %o);
    $http =~ s/\$TEST_NGINX_CLUSTER_PORT/$NodeBPort/g;
    # the same nginx and module lines as node A (NginxPlatform)
    my $mods = $NginxPlatform::LuaLoadModules . "load_module $ENV{TEST_NGINX_WE_MODULE};";
    my $user = $> == 0 ? "user root;" : "";
    return <<"_EOC_";
$mods
$user
worker_processes 4;
daemon on;
error_log $Dir/b/logs/error.log info;
pid $Dir/b/logs/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $Dir/b/client_body_temp;
    proxy_temp_path $Dir/b/proxy_temp;
    fastcgi_temp_path $Dir/b/fastcgi_temp;
    uwsgi_temp_path $Dir/b/uwsgi_temp;
    scgi_temp_path $Dir/b/scgi_temp;
    lua_package_path "$Pwd/t/lib/?.lua;;";
    worker_events_zone ev 4m;
    lua_shared_dict out 8m;
$http
}
_EOC_
}

sub stop_node_b {
    my $pidf = "$Dir/b/logs/nginx.pid";
    return unless -f $pidf;
    chomp(my $pid = `cat $pidf`);
    unlink $pidf;
    return unless $pid;
    # a block may have stopped B's workers (SIGSTOP): wake them to exit
    system("pkill -CONT -P $pid 2>/dev/null");
    kill 'QUIT', $pid;
    for (1 .. 100) {
        last unless kill 0, $pid;
        sleep 0.05;
    }
    if (kill 0, $pid) {
        system("pkill -KILL -P $pid 2>/dev/null");
        kill 'KILL', $pid;
    }
}

# GET /c/<path> on 127.0.0.1:port (a node's t.cluster locations): the body,
# or undef when nothing answers
sub node_get {
    my ($port, $path) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Timeout => 0.2) or return undef;
    print $s "GET /c/$path HTTP/1.0\r\n\r\n";
    local $/;
    my $r = <$s> // '';
    return $r =~ /\r\n\r\n(.*)\z/s ? $1 : '';
}

# waits until the bridge of the node on `port` has joined the stream (its
# status has a last_id): a node receives only what is appended after that,
# so a block posting earlier would miss events by design
sub wait_joined {
    my ($port, $name) = @_;
    for (1 .. 200) {
        my $st = node_get($port, "status") // '';
        return 1 if $st =~ /"last_id":"\d+-\d+"/;
        sleep 0.05;
    }
    die "node $name did not join the stream in 10 s";
}

# (re)starts node B with `cluster_http("b", %o)`; waits for its 4 workers
# and for both nodes' bridges to join the stream
sub start_node_b {
    my (%o) = @_;
    stop_node_b();
    remove_tree("$Dir/b");
    make_path("$Dir/b/conf", "$Dir/b/logs");
    open my $fh, '>', "$Dir/b/conf/nginx.conf" or die $!;
    print $fh node_b_conf(%o);
    close $fh;
    # the nginx under test, as node A
    my $out = `$NginxPlatform::Binary -p $Dir/b/ -c $Dir/b/conf/nginx.conf -e $Dir/b/logs/error.log 2>&1`;
    die "node B failed to start: $out" if $?;
    my $ready;
    for (1 .. 100) {
        last if ($ready = (node_get($NodeBPort, "ready") // '') =~ /ready 4/);
        sleep 0.05;
    }
    die "node B did not get ready" unless $ready;
    wait_joined($NodeBPort, "B");
    # node A (the Test::Nginx instance, started before the block's init)
    wait_joined($ENV{TEST_NGINX_CLUSTER_PORT}, "A")
        if defined node_get($ENV{TEST_NGINX_CLUSTER_PORT}, "ready");
    return 1;
}

# a fresh stream (every block gets one, see below)
sub reset_stream { redis_cli("DEL", $Stream) }

# Every block starts with node B stopped and the stream deleted, before
# Test::Nginx starts node A: deleting it from `--- init` (after A started)
# races A's bridge, which may already have joined the previous block's
# stream and then rightly reports it reset (an [error] line).
Test::Nginx::Socket::add_block_preprocessor(sub {
    stop_node_b();
    reset_stream() if redis_up();
});

END {
    fake_stop();
    stop_node_b();
    redis_stop();
}

# Lua reaches the scripts through this environment variable
$ENV{TEST_NGINX_CLUSTER_DIR} = $Dir;

$ENV{TEST_NGINX_CLUSTER_PORT} = ($ENV{TEST_NGINX_PORT} // 1984) + 2;

redis_start() unless $ENV{CLUSTER_TEST_NO_REDIS};

1;
