package Test::Nginx::Socket::Server;

# The nginx side of the runner in Test::Nginx::Socket: prepares the server
# root (conf/, html/, logs/), expands $TEST_NGINX_* variables, writes
# --- user_files and nginx.conf, starts nginx and stops it (pid file, QUIT,
# then KILL; END and INT/TERM cleanup), and reads new error.log lines.
# It sends no requests (Client.pm) and runs no checks (Socket.pm).
# Settings and paths are Test::Nginx::Socket's package variables ($ServRoot,
# $Workers, ...), used here fully qualified.

use strict;
use warnings;
no warnings 'once';    # the settings are declared in Test::Nginx::Socket

use Test::More ();    # loaded first: our END block then runs before its own
use POSIX qw(SIGQUIT SIGKILL);
use Time::HiRes qw(sleep time);
use IO::Socket::INET ();
use File::Path qw(make_path remove_tree);

use Exporter 'import';
our @EXPORT_OK = qw(
    is_running read_pid_file stop_nginx get_nginx_version setup_server_root
    gen_rand_port expand_env_in_text write_user_files write_config_file
    start_nginx slurp error_log_data
);

our %StartedPids;          # master pids started by this process
our $InSubprocess;         # set in the child that execs nginx

# bail out through the runner, which runs the cleanup handlers first
sub bail_out { Test::Nginx::Socket::bail_out(@_) }

# ------------------------------------------------------ process management

sub is_running ($) {
    my $pid = shift;
    return 0 unless $pid && kill(0, $pid);
    # a daemonized master is not our child; under a non-reaping pid 1 it may
    # linger as a zombie, which must count as gone
    if (open my $fh, '<', "/proc/$pid/stat") {
        my $stat = <$fh> // '';
        close $fh;
        return 0 if $stat =~ /^\d+ \(.*\) Z/s;
    }
    return 1;
}

sub read_pid_file () {
    open my $in, '<', $Test::Nginx::Socket::PidFile or return undef;
    my $pid = do { local $/; <$in> };
    close $in;
    return undef unless defined $pid && $pid =~ /^\s*(\d+)\s*$/;
    return $1;
}

# Stop nginx: QUIT, wait up to $wait seconds, then KILL the process group.
sub stop_nginx (;$$) {
    my ($name, $wait) = @_;
    $wait //= $Test::Nginx::Socket::QuitWait;
    my %pids = map { $_ => 1 } grep { $_ } (read_pid_file(), keys %StartedPids);
    for my $pid (keys %pids) {
        delete $StartedPids{$pid};
        next unless is_running($pid);
        kill SIGQUIT, $pid;
        my $deadline = time + $wait;
        sleep 0.005;
        while (is_running($pid) && time < $deadline) { sleep 0.01 }
        if (is_running($pid)) {
            warn "WARNING: ", ($name // 'cleanup'),
                 " - nginx master $pid did not exit within ${wait}s; killing it\n";
            kill SIGKILL, -$pid;
            kill SIGKILL, $pid;
            my $d2 = time + 2;
            while (is_running($pid) && time < $d2) { sleep 0.01 }
        }
    }
    my $pid_file = $Test::Nginx::Socket::PidFile;
    unlink $pid_file if -f $pid_file && !is_running(read_pid_file());
}

sub get_nginx_version () {
    my $out = `$Test::Nginx::Socket::NginxBinary -V 2>&1`;
    if (defined $out && $out =~ m{(?:nginx|openresty)[^/]*/(\d+)\.(\d+)\.(\d+)}s) {
        $Test::Nginx::Socket::NginxRawVersion = "$1.$2.$3";
        return sprintf "%d.%03d%03d", $1, $2, $3;
    }
    return undef;
}

END {
    return if $InSubprocess;
    local $?;
    Test::Nginx::Socket::cleanup();
    stop_nginx('END') unless $ENV{TEST_NGINX_NO_CLEAN};
}

for my $sig (qw(INT TERM)) {
    $SIG{$sig} = sub { stop_nginx('signal') unless $InSubprocess; exit 1 };
}

# ------------------------------------------------------------ server root

sub setup_server_root () {
    my $root = $Test::Nginx::Socket::ServRoot;
    my ($conf_dir, $html_dir, $log_dir) = ($Test::Nginx::Socket::ConfDir,
        $Test::Nginx::Socket::HtmlDir, $Test::Nginx::Socket::LogDir);
    remove_tree($conf_dir, $html_dir, $log_dir, glob("$root/*_temp"),
                glob("$root/*_cache"));
    for my $d ($root, $log_dir, $html_dir, $conf_dir) {
        next if -d $d;
        make_path($d) or bail_out("Failed to mkdir $d: $!");
    }
    open my $out, '>', "$html_dir/index.html" or bail_out("Can't write index.html: $!");
    print $out '<html><head><title>It works!</title></head><body>It works!</body></html>';
    close $out;
}

sub gen_rand_port ($) {
    my $used = shift;
    for (1 .. 1000) {
        my $port = int(rand 63550) + 1985;
        next if $used->{$port};
        my $sock = IO::Socket::INET->new(LocalAddr => $Test::Nginx::Socket::ServerAddr,
                                         LocalPort => $port, Proto => 'tcp',
                                         ReuseAddr => 1, Listen => 1);
        next unless $sock;
        close $sock;
        $used->{$port} = 1;
        return $port;
    }
    return undef;
}

sub expand_env_in_text ($$$) {
    my ($text, $name, $rand_ports) = @_;
    return $text unless defined $text;
    $text =~ s{\$(TEST_NGINX_[_A-Z0-9]+)}{
        my $var = $1;
        if ($var =~ /^TEST_NGINX_RAND_PORT_\d+$/) {
            $rand_ports->{$var} //= gen_rand_port({ $Test::Nginx::Socket::ServerPort => 1,
                                                    map { $_ => 1 } values %$rand_ports })
                // bail_out("$name - cannot find a free port for $var");
        } else {
            bail_out("$name - No environment $var defined.\n") unless defined $ENV{$var};
            $ENV{$var};
        }
    }ge;
    return $text;
}

sub write_user_files ($$) {
    my ($block, $rand_ports) = @_;
    my $name = $block->name;
    my $files = $block->user_files;
    return unless $files;
    if (!ref $files) {
        my @list;
        my ($fname, $body, $date);
        for my $line (split /^/m, $files) {
            if ($line =~ /^>>> (\S+)(?:\s+(.+))?/) {
                push @list, [$fname, $body, $date] if $fname;
                ($fname, $date, $body) = ($1, $2, undef);
            } else {
                $body .= $line;
            }
        }
        push @list, [$fname, $body, $date] if $fname;
        $files = \@list;
    } elsif (ref $files ne 'ARRAY') {
        bail_out("$name - --- user_files: only a string or an ARRAY is accepted");
    }
    for my $file (@$files) {
        my ($fname, $body, $date) = @$file;
        $body //= '';
        my $path = $fname =~ m{^/} ? $fname : "$Test::Nginx::Socket::HtmlDir/$fname";
        if ($path =~ m{(.*)/} && !-d $1) {
            make_path($1) or bail_out("$name - cannot create directory $1");
        }
        $body = expand_env_in_text($body, $name, $rand_ports);
        open my $out, '>', $path or bail_out("$name - cannot open $path for writing: $!");
        binmode $out;
        print $out $body;
        close $out;
        if ($date) {
            system("TZ=GMT touch -t '$date' '$path'") == 0
                or bail_out("$name - failed to set the date of $path");
        }
    }
}

sub write_config_file ($$$) {
    my ($block, $config, $rand_ports) = @_;
    my $name = $block->name;
    my $http_config = expand_env_in_text($block->http_config // '', $name, $rand_ports);
    my $main_config = expand_env_in_text($block->main_config // '', $name, $rand_ports);
    my $post_main_config = expand_env_in_text($block->post_main_config // '', $name, $rand_ports);
    if (my $mods = $ENV{TEST_NGINX_LOAD_MODULES}) {
        $main_config = join('', map { "load_module $_;\n" } grep { length } split /\s+/, $mods)
                       . $main_config;
    }
    my $workers = Test::Nginx::Socket::block_workers($block);    # runner extension
    my $master  = Test::Nginx::Socket::block_master($block);
    my $log_level = $block->log_level || $Test::Nginx::Socket::LogLevel;
    $log_level =~ s/^\s+|\s+$//g;
    my $server_name = $block->server_name // $Test::Nginx::Socket::ServerName;
    my $env = join '', map { my $v = /\s/ ? "'$_'" : $_; "env $v;\n" }
                       @Test::Nginx::Socket::EnvToNginx;
    my $user = $> == 0 ? "user root;\n" : '';

    my $root      = $Test::Nginx::Socket::ServRoot;
    my $html_dir  = $Test::Nginx::Socket::HtmlDir;
    my $conf_file = $Test::Nginx::Socket::ConfFile;
    my $err_log   = $Test::Nginx::Socket::ErrLogFile;
    my $pid_file  = $Test::Nginx::Socket::PidFile;
    my $listen    = "$Test::Nginx::Socket::ServerAddr:$Test::Nginx::Socket::ServerPort";
    my $preamble  = $Test::Nginx::Socket::ConfigPreamble;
    my $worker_connections = $Test::Nginx::Socket::WorkerConnections;

    my $root_loc = $Test::Nginx::Socket::NoRootLocation ? '' : <<"_EOC_";
        location / {
            root $html_dir;
            index index.html index.htm;
        }
_EOC_

    open my $out, '>', $conf_file or bail_out("Can't open $conf_file for writing: $!");
    print $out <<"_EOC_";
worker_processes  $workers;
daemon on;
master_process $master;
error_log $err_log $log_level;
pid       $pid_file;
$user$env
$main_config

http {
    access_log off;
    default_type text/plain;
    keepalive_timeout  68;
    client_body_temp_path $root/client_body_temp;
    proxy_temp_path $root/proxy_temp;
    fastcgi_temp_path $root/fastcgi_temp;
    uwsgi_temp_path $root/uwsgi_temp;
    scgi_temp_path $root/scgi_temp;

$http_config

    server {
        listen          $listen;
        server_name     '$server_name';

        client_max_body_size 30M;

        # Begin preamble config...
$preamble
        # End preamble config...

        # Begin test case config...
$config
        # End test case config.

$root_loc    }
}

$post_main_config

events {
    accept_mutex off;
    worker_connections  $worker_connections;
}
_EOC_
    close $out;
}

# Start nginx; returns ($ok, $exit_status, $stderr_text).
sub start_nginx ($) {
    my ($name) = @_;
    my $version = $Test::Nginx::Socket::NginxVersion;
    my $err_file = $Test::Nginx::Socket::StartErrFile;
    my @cmd = ($Test::Nginx::Socket::NginxBinary, '-p', "$Test::Nginx::Socket::ServRoot/",
               '-c', $Test::Nginx::Socket::ConfFile);
    # nginx >= 1.19.5: send startup (config parsing) messages to our error.log
    # too, as OpenResty's prefix-relative default error log does.
    push @cmd, '-e', $Test::Nginx::Socket::ErrLogFile if defined $version && $version >= 1.019005;
    my ($status, $err);
    my $start_wait = $Test::Nginx::Socket::StartWait;
    my $deadline = time + $start_wait;
    while (1) {
        my $pid = fork();
        bail_out("$name - fork() failed: $!") unless defined $pid;
        if ($pid == 0) {
            $InSubprocess = 1;
            open STDOUT, '>', '/dev/null';
            open STDERR, '>', $err_file;
            exec { $cmd[0] } @cmd or POSIX::_exit(127);
        }
        waitpid($pid, 0);
        $status = $?;
        $err = slurp($err_file) // '';
        last if $status == 0;
        # the previous nginx may still hold the port for a moment
        last unless $err =~ /Address already in use/ && time < $deadline;
        sleep 0.05;
    }
    return (0, $status, $err) if $status != 0;

    # daemon on: the master writes its pid file after forking
    my $pid;
    my $d = time + $start_wait;
    until (($pid = read_pid_file()) || time > $d) { sleep 0.005 }
    if (!$pid) {
        return (0, $status, "$err\n(no pid file $Test::Nginx::Socket::PidFile after $start_wait s)");
    }
    $StartedPids{$pid} = 1;
    return (1, 0, $err);
}

sub slurp ($) {
    my $f = shift;
    open my $in, '<', $f or return undef;
    local $/;
    my $s = <$in>;
    close $in;
    return $s;
}

# --------------------------------------------------------------- error.log

# Error-log lines written since the previous call (position is reset to 0 at
# the start of every block, where error.log is recreated anyway).
sub error_log_data (;$) {
    my $no_sleep = shift;
    my $accum = $Test::Nginx::Socket::CheckAccumErrLog;
    sleep $Test::Nginx::Socket::Sleep unless $no_sleep;    # lines logged after the close
    open my $in, '<', $Test::Nginx::Socket::ErrLogFile or return [];
    seek $in, $Test::Nginx::Socket::ErrLogFilePos, 0
        if !$accum && $Test::Nginx::Socket::ErrLogFilePos > 0;
    my @lines = <$in>;
    $Test::Nginx::Socket::ErrLogFilePos = tell($in) unless $accum;
    close $in;
    return \@lines;
}

1;
