package Test::Nginx::Socket;

# A compact, drop-in replacement for the subset of Test::Nginx::Socket
# (https://github.com/openresty/test-nginx) that this project uses.
# Block parsing, filters (eval, chomp, ...), blocks(), ONLY/SKIP/LAST and the
# Test::More re-exports all come from Test::Base, exactly as in the original.
# See t/lib/README.md for what is supported and how it differs.
#
# This file is the public package: the exports and settings (run_tests,
# repeat_each, workers, ... and the package variables behind them), the
# per-block driver loop, and the checks on responses and error.log.
# It does not touch nginx itself (Test::Nginx::Socket::Server: servroot,
# nginx.conf, start/stop, error.log reading) nor speak HTTP
# (Test::Nginx::Socket::Client: building, sending and parsing requests).

use strict;
use warnings;

use Test::Base ();    # no import: our own import is Test::Base's (inherited)
use Test::More ();
use Test::Builder ();
use Time::HiRes qw(sleep);
use File::Spec ();
use Text::Diff ();

use Test::Nginx::Socket::Server qw(
    get_nginx_version stop_nginx setup_server_root expand_env_in_text
    write_user_files write_config_file start_nginx error_log_data
);
use Test::Nginx::Socket::Client qw(
    get_req_from_block send_request parse_response res_header
);

our @ISA = ('Test::Base');
our $VERSION = '0.29';

our @EXPORT = qw(
    run_tests run_test repeat_each workers master_on master_off
    master_process_enabled log_level no_shuffle no_long_string
    no_root_location add_block_preprocessor env_to_nginx is_str
    server_root html_dir server_port server_port_for_client server_addr
    server_name timeout worker_connections config_preamble bail_out
    add_cleanup_handler add_response_body_check no_nginx_manager use_hup
    check_accum_error_log
);

# ---------------------------------------------------------------- settings

our $RepeatEach        = 1;
our $Workers           = 1;
our $WorkerConnections = 1024;
# Test::Nginx's defaults: one process, no master (master_on() and
# workers(N) in a file, or TEST_NGINX_MASTER_PROCESS=on, change them)
our $MasterProcess     = $ENV{TEST_NGINX_MASTER_PROCESS} || 'off';
our $LogLevel          = $ENV{TEST_NGINX_LOG_LEVEL} || 'debug';
our $Timeout           = $ENV{TEST_NGINX_TIMEOUT} || 3;
our $ServerAddr        = '127.0.0.1';
our $ServerName        = 'localhost';
our $ServerPort        = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT} || 1984;
our $ServerPortForClient = $ENV{TEST_NGINX_CLIENT_PORT} || $ServerPort;
our $NginxBinary       = $ENV{TEST_NGINX_BINARY}
                         || (-x '/usr/sbin/nginx' ? '/usr/sbin/nginx' : 'nginx');
our $NoLongString;
our $NoRootLocation    = 0;
our $NoNginxManager    = $ENV{TEST_NGINX_NO_NGINX_MANAGER} || 0;
our $CheckAccumErrLog  = $ENV{TEST_NGINX_CHECK_ACCUM_ERR_LOG};
our $ConfigPreamble    = '';
our $Sleep             = $ENV{TEST_NGINX_SLEEP} || 0.015;
# seconds to retry a refused connect / to wait for a graceful stop / for the
# pid file after a start (ours: raised by scripts/valgrind, nginx being slow there)
our $ConnectRetry      = $ENV{TEST_NGINX_CONNECT_RETRY} || 2;
our $QuitWait          = $ENV{TEST_NGINX_QUIT_WAIT} || 10;
our $StartWait         = $ENV{TEST_NGINX_START_WAIT} || 5;
# ours: multiplies every client timeout, a block's `--- timeout` included
our $TimeoutScale      = $ENV{TEST_NGINX_TIMEOUT_SCALE} || 1;
our (@BlockPreprocessors, @EnvToNginx, @CleanupHandlers, @ResponseBodyChecks);
our ($NginxVersion, $NginxRawVersion);

our $ServRoot = File::Spec->rel2abs($ENV{TEST_NGINX_SERVROOT} || 't/servroot');
$ServRoot =~ s{/+$}{};
our $LogDir     = "$ServRoot/logs";
our $ErrLogFile = "$LogDir/error.log";
our $StartErrFile = "$LogDir/nginx-start.stderr";
our $HtmlDir    = "$ServRoot/html";
our $ConfDir    = "$ServRoot/conf";
our $ConfFile   = "$ConfDir/nginx.conf";
our $PidFile    = "$LogDir/nginx.pid";

$ENV{TEST_NGINX_SERVER_ROOT} = $ServRoot;
$ENV{TEST_NGINX_HTML_DIR}    = $HtmlDir;
$ENV{TEST_NGINX_SERVER_PORT} = $ServerPort unless defined $ENV{TEST_NGINX_SERVER_PORT};

our $ErrLogFilePos = 0;     # where error_log_data() continues reading
our $PrevBlock;
my %Warned;

# ---------------------------------------------------------- global helpers

sub repeat_each (@)   { $RepeatEach = shift if @_; $RepeatEach }
sub workers (@)       { $Workers = shift if @_; $Workers }
sub worker_connections (@) { $WorkerConnections = shift if @_; $WorkerConnections }
sub log_level (@)     { $LogLevel = shift if @_; $LogLevel }
sub timeout (@)       { $Timeout = shift if @_; $Timeout }
sub server_addr (@)   { $ServerAddr = shift if @_; $ServerAddr }
sub server_name (@)   { $ServerName = shift if @_; $ServerName }
sub server_port (@)   { $ServerPort = shift if @_; $ServerPort }
sub server_port_for_client (@) { $ServerPortForClient = shift if @_; $ServerPortForClient }
sub server_root ()    { $ServRoot }
sub html_dir ()       { $HtmlDir }
sub master_on ()      { $MasterProcess = 'on' }
sub master_off ()     { $MasterProcess = 'off' }
sub master_process_enabled (@) {
    $MasterProcess = (shift() ? 'on' : 'off') if @_;
    $MasterProcess;
}
sub no_shuffle ()     { 1 }    # we never shuffle
sub no_long_string () { $NoLongString = 1 }
sub no_root_location () { $NoRootLocation = 1 }
sub no_nginx_manager () { $NoNginxManager = 1 }
sub use_hup ()        { warn "WARNING: use_hup() is not supported by this runner; ignored\n" }
sub check_accum_error_log () { $CheckAccumErrLog = 1 }
sub config_preamble ($) { $ConfigPreamble = shift }
sub add_block_preprocessor (&) { unshift @BlockPreprocessors, shift }
sub add_cleanup_handler ($) { unshift @CleanupHandlers, shift }
sub add_response_body_check ($) { push @ResponseBodyChecks, shift }

sub env_to_nginx (@) {
    die "env_to_nginx: no arguments specified\n" unless @_;
    for my $v (@_) {
        die "env_to_nginx: bad argument value: $v\n" if $v !~ /^[A-Za-z_]/ || $v =~ /\n/;
        push @EnvToNginx, $v;
    }
}

sub bail_out (@) {
    cleanup();
    Test::More::BAIL_OUT(join '', @_);
}

sub is_str (@) {
    my ($got, $expected, $desc) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    return Test::More::like($got, $expected, $desc) if ref $expected && ref $expected eq 'Regexp';
    return is_text($got, $expected, $desc);
}

# Exact string comparison; on failure print a unified diff for multi-line or
# long values (plain got/expected otherwise).
sub is_text {
    my ($got, $expected, $desc) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    if (!defined $got || !defined $expected || $ENV{TEST_SHOW_NO_DIFFS}
        || ($got !~ /\n./s && $expected !~ /\n./s
            && length($got) < 200 && length($expected) < 200))
    {
        return Test::More::is($got, $expected, $desc);
    }
    my $ok = Test::More::ok($got eq $expected, $desc);
    Test::More::diag("--- expected\n+++ got\n"
                     . Text::Diff::diff(\$expected, \$got, { STYLE => 'Unified' }))
        unless $ok;
    return $ok;
}

sub parse_time ($) {
    my $tm = shift;
    return undef unless defined $tm;
    $tm =~ s/^\s+|\s+$//g;
    if ($tm =~ s/([^_a-zA-Z])ms$/$1/) { $tm /= 1000 }
    else { $tm =~ s/([^_a-zA-Z])s$/$1/ }
    return $tm;
}

sub fmt_str ($) {
    my $str = shift;
    chomp $str;
    $str =~ s/"/\\"/g;
    $str =~ s/\r/\\r/g;
    $str =~ s/\n/\\n/g;
    $str;
}

sub trim_summary ($) {
    my $s = shift;
    return '' unless defined $s;
    $s =~ s/^\s+|\s+$//g;
    $s =~ s/\n/ /g;
    $s =~ s/\s{2,}/ /g;
    $s = substr($s, 0, 60) . '...' if length $s > 63;
    $s;
}

# Runs the add_cleanup_handler() handlers (also from Server.pm's END block).
sub cleanup () {
    $_->() for @CleanupHandlers;
}

# --------------------------------------------------------------- main loop

sub run_tests () {
    my $tb = Test::More->builder;
    $tb->plan('no_plan') unless $tb->has_plan;

    my $bin = $NginxBinary;
    if ($bin !~ m{/}) {
        ($bin) = grep { -x } map { "$_/$NginxBinary" } split /:/, $ENV{PATH} // '';
    }
    bail_out("Cannot find the nginx executable $NginxBinary (set TEST_NGINX_BINARY)")
        unless $bin && -x $bin;
    $NginxBinary = $bin;
    $NginxVersion = get_nginx_version();

    my @blocks = Test::Base::blocks();
    for my $i (0 .. $#blocks) {
        my $block = $blocks[$i];
        $_->($block) for @BlockPreprocessors;
        run_test($block, $i == $#blocks);
        $PrevBlock = $block;
    }
    cleanup();
}

sub run_test ($;$) {
    my ($block, $is_last) = @_;
    return if defined $block->SKIP;
    my $name = $block->name;
    my $tb = Test::More->builder;
    my $failed_before = grep { !$_ } $tb->summary;
    my $rand_ports = {};
    my $config = expand_env_in_text($block->config // '', $name, $rand_ports);

    # --- skip_nginx / skip_eval / todo
    my ($tests_to_skip, $should_skip, $skip_reason, $should_todo, $todo_reason);
    if (defined(my $s = $block->skip_eval)) {
        if ($s =~ /^\s*(\d+)\s*:\s*(.*)/s) {
            ($tests_to_skip, $skip_reason) = ($1, 'skip_eval');
            $should_skip = eval $2;
            bail_out("$name - skip_eval - failed to eval \"$2\": $@") if $@;
        }
    }
    if (defined(my $s = $block->skip_nginx)) {
        if ($s =~ /^\s*(\d+)\s*:\s*([<>]=?)\s*(\d+)\.(\d+)\.(\d+)(?:\s*:\s*(.*))?\s*$/) {
            $tests_to_skip = $1;
            my ($op, $ver) = ($2, sprintf("%d.%03d%03d", $3, $4, $5));
            $skip_reason = $6 || "nginx version $op $3.$4.$5";
            $should_skip = 1 if (!defined $NginxVersion && $op =~ /^</)
                                || (defined $NginxVersion && eval "$NginxVersion $op $ver");
        } else {
            bail_out("$name - Invalid --- skip_nginx spec: $s");
        }
    }
    if (defined(my $t = $block->todo)) {
        if ($t =~ /^\s*(\d+)\s*:\s*(.*)/s) {
            ($should_todo, $tests_to_skip, $todo_reason) = (1, $1, $2);
        } else {
            bail_out("$name - Invalid --- todo spec: $t");
        }
    }
    $skip_reason //= 'various reasons';

    check_master_for_workers($block);

    my $started;
    if (!$NoNginxManager && !$should_skip) {
        stop_nginx($name);
        setup_server_root();
        write_user_files($block, $rand_ports);
        write_config_file($block, $config, $rand_ports);

        if (defined(my $must_die = $block->must_die)) {
            $ErrLogFilePos = 0;
            for my $i (0 .. $RepeatEach - 1) {
                my ($ok, $status, $err) = start_nginx($name);
                my $exit_code = $status >> 8;
                if (!(defined $NginxVersion && $NginxVersion >= 1.019005) && length $err
                    && open my $log, '>>', $ErrLogFile)
                {   # no "nginx -e": make the startup messages visible to error_log
                    print $log $err;
                    close $log;
                }
                if ($status & 127) {
                    Test::More::fail("$name - nginx died of a signal ($status)");
                } elsif ($must_die =~ /^\s*(\d+)\s*$/) {
                    Test::More::is($exit_code, $1, "$name - die with the expected exit code");
                } else {
                    Test::More::isnt($status, 0, "$name - die as expected");
                }
                check_error_log($block, undef, $i, 0);
                if ($ok) {
                    warn "WARNING: $name - nginx must die but it does not; killing it\n";
                    stop_nginx($name, 1);
                }
            }
            report_failure($name, $failed_before);
            return;
        }

        my ($ok, $status, $err) = start_nginx($name);
        if (!$ok) {
            Test::More::fail("$name - failed to start nginx (status $status)");
            Test::More::diag("nginx stderr:\n$err") if length $err;
            Test::More::diag("nginx.conf: $ConfFile");
            report_failure($name, $failed_before);
            return;
        }
        $started = 1;
        warn "$name - nginx: $err" if $err =~ /\S/;    # as Test::Nginx shows nginx's stderr
    }

    if (defined(my $init = $block->init)) {
        eval $init;
        bail_out("$name - init failed: $@") if $@;
    }

    $ErrLogFilePos = 0;
    for my $i (0 .. $RepeatEach - 1) {
        write_user_files($block, $rand_ports) if $i > 0;
        if ($should_skip && defined $tests_to_skip) {
            SKIP: { Test::More::skip("$name - $skip_reason", $tests_to_skip); }
        } elsif ($should_todo) {
            TODO: { Test::More::todo_skip("$name - $todo_reason", $tests_to_skip); }
        } else {
            run_test_helper($block, $i);
        }
    }

    if ($started) {
        if (defined $block->shutdown_error_log) {
            stop_nginx($name);
            check_shutdown_error_log($block);
        } else {
            if (defined $block->no_shutdown_error_log && !$Warned{"nsel$name"}++) {
                warn "WARNING: $name - --- no_shutdown_error_log is only checked together "
                     . "with --- shutdown_error_log (as in Test::Nginx)\n";
            }
            stop_nginx($name) unless $is_last && $ENV{TEST_NGINX_NO_CLEAN};
        }
    }
    report_failure($name, $failed_before);
}

# The worker count of a block: `--- workers: N` (runner extension) or the
# file's workers(N).
sub block_workers ($) {
    my $block = shift;
    my $n = $block->workers // $Workers;
    $n =~ s/^\s+|\s+$//g;
    return $n;
}

# `master_process` for a block: the file's (master_on()/master_off(), or
# TEST_NGINX_MASTER_PROCESS), except that a block asking for several
# workers with `--- workers: N` gets a master (runner extension).
sub block_master ($) {
    my $block = shift;
    my $n = $block->workers;
    return 'on' if defined $n && $n =~ /^\s*(\d+)\s*$/ && $1 > 1;
    return $MasterProcess;
}

# Several workers need a master; the real Test::Nginx knows neither
# `--- workers` nor a master unless the file calls master_on(). A block
# with `--- workers: N > 1` in a file without master_on() fails (it would
# run as one process under the real one); workers(N > 1) without a master
# is what the real one runs too (one process, ngx.worker.count() == N),
# so that only warns.
sub check_master_for_workers ($) {
    my $block = shift;
    return if $MasterProcess eq 'on';
    my $name = $block->name;
    my $n = $block->workers;
    if (defined $n && $n =~ /^\s*(\d+)\s*$/ && $1 > 1) {
        Test::More::fail("$name - --- workers: $1 needs master_on() in the file "
                         . "(the real Test::Nginx runs master_process off: one process)");
    } elsif (!defined $n && $Workers > 1 && !$Warned{"workers$Workers"}++) {
        warn "WARNING: workers($Workers) without master_on(): nginx runs one process "
             . "(as under the real Test::Nginx), ngx.worker.count() still says $Workers\n";
    }
}

sub report_failure ($$) {
    my ($name, $failed_before) = @_;
    my $failed = grep { !$_ } Test::More->builder->summary;
    if ($failed > $failed_before) {
        my $rel = File::Spec->abs2rel($ServRoot);
        $rel = $ServRoot if $rel =~ m{^\.\./};
        Test::More::diag("$name - failed; server root kept at $rel "
                         . "(see $rel/logs/error.log, $rel/conf/nginx.conf)");
    }
}

# ------------------------------------------------- requests of one repeat

sub get_indexed_value ($$$$) {
    my ($name, $value, $req_idx, $need_array) = @_;
    if (ref $value && ref $value eq 'ARRAY') {
        return $value->[$need_array ? $req_idx : 0];
    }
    if ($need_array && !$Warned{"arr$name"}++) {
        # runner leniency: Test::Nginx itself bails out here
        Test::More::diag("$name - NOTE: a scalar expected value with several requests applies "
                         . "to each; the real Test::Nginx requires an array");
    }
    return $value;
}

sub run_test_helper ($$) {
    my ($block, $repeated_idx) = @_;
    my $name = $block->name;
    my $reqs = get_req_from_block($block);
    my $wait = parse_time($block->wait);

    if (!@$reqs) {    # runner extension: no --- request, only log checks
        sleep $wait if $wait;
        check_error_log($block, undef, $repeated_idx, 0);
        return;
    }

    my $timeout = (parse_time($block->timeout) // $Timeout) * $TimeoutScale;
    my $middle_delay = parse_time($block->raw_request_middle_delay);
    my $n = 0;
    my $need_array;
    my $req_idx = 0;
    for my $one (@$reqs) {
        my $head_req = join('', map { $_->{value} } @$one) =~ /^\s*HEAD\s+/ ? 1 : 0;
        my ($raw, $err, $timed_out) = send_request($one, $middle_delay, $timeout, $block);
        if ($timed_out && !defined $block->abort) {
            Test::More::fail("ERROR: client socket timed out - $name (req $req_idx)");
        }
        Test::More::diag("$name - req $req_idx: $err") if $err && length($raw // '') == 0;
        if ($block->pipelined_requests) {
            $n = @{ $block->pipelined_requests };
            $need_array = 1;
        } else {
            $need_array = @$reqs > 1;
        }
        $raw //= '';
        while (1) {
            my ($res, $raw_headers, $left);
            if (!defined $block->ignore_response) {
                ($res, $raw_headers, $left) = parse_response($name, $raw, $head_req);
            }
            if ($n) {
                $raw = $left // '';
                $n--;
            } elsif (defined $left && length $left) {
                warn "WARNING: $name - unexpected extra bytes after the response: \""
                     . fmt_str($left) . "\"\n";
            }
            if (!defined $block->ignore_response) {
                check_error_code($block, $res, $req_idx, $need_array);
                check_raw_response_headers($block, $raw_headers, $req_idx, $need_array);
                check_response_headers($block, $res, $raw_headers, $req_idx, $need_array);
                transform_response_body($block, $res, $req_idx);
                check_response_body($block, $res, $req_idx, $repeated_idx, $need_array);
            }
            if ($n || $req_idx < @$reqs - 1) {
                sleep $wait if $wait;
                check_error_log($block, $res, $repeated_idx, $need_array);
            }
            $req_idx++;
            last unless $n;
        }
    }
    sleep $wait if $wait;
    check_error_log($block, undef, $repeated_idx, $need_array);
}

# --------------------------------------------------------------- checks

sub check_error_code ($$$$) {
    my ($block, $res, $req_idx, $need_array) = @_;
    my $name = $block->name;
    my $code = ($res && $res->{code}) || '';
    if (defined $block->error_code_like) {
        my $val = get_indexed_value($name, $block->error_code_like, $req_idx, $need_array);
        Test::More::like($code, qr/$val/sm, "$name - status code ok");
    } elsif (defined $block->error_code) {
        my $val = get_indexed_value($name, $block->error_code, $req_idx, $need_array);
        $val =~ s/^\s+|\s+$//g if defined $val;
        Test::More::is($code, $val, "$name - status code ok");
    } else {
        Test::More::is($code, 200, "$name - status code ok");
    }
}

sub check_raw_response_headers ($$$$) {
    my ($block, $raw_headers, $req_idx, $need_array) = @_;
    my $name = $block->name;
    $raw_headers //= '';
    if (defined $block->raw_response_headers_like) {
        my $e = get_indexed_value($name, $block->raw_response_headers_like, $req_idx, $need_array);
        Test::More::like($raw_headers, qr/$e/s, "$name - raw resp headers like");
    }
    if (defined $block->raw_response_headers_unlike) {
        my $e = get_indexed_value($name, $block->raw_response_headers_unlike, $req_idx, $need_array);
        Test::More::unlike($raw_headers, qr/$e/s, "$name - raw resp headers unlike");
    }
}

sub parse_headers ($) {
    my $s = shift // '';
    my @h;
    for (split /\n/, $s) {
        s/^\s+|\s+$//g;
        next unless length;
        if (s/^!\s*//) { push @h, [$_, undef] }
        else { my ($k, $v) = split /\s*:\s*/, $_, 2; push @h, [$k, $v // ''] }
    }
    return \@h;
}

sub check_response_headers ($$$$$) {
    my ($block, $res, $raw_headers, $req_idx, $need_array) = @_;
    my $name = $block->name;
    if (defined $block->response_headers) {
        my $h = parse_headers(get_indexed_value($name, $block->response_headers, $req_idx, $need_array));
        for (@$h) {
            my ($key, $val) = @$_;
            if (!defined $val) {
                Test::More::unlike($raw_headers // '', qr/^\s*\Q$key\E\s*:/ms,
                                   "$name - header $key not present in the raw headers");
                next;
            }
            $val =~ s/\$ServerPort\b/$ServerPort/g;
            $val =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
            Test::More::is(res_header($res, $key) // '', $val, "$name - header $key ok");
        }
    } elsif (defined $block->response_headers_like) {
        my $h = parse_headers(get_indexed_value($name, $block->response_headers_like, $req_idx, $need_array));
        for (@$h) {
            my ($key, $val) = @$_;
            $val //= '';
            Test::More::like(res_header($res, $key) // '', qr/^$val$/,
                             "$name - header $key like ok");
        }
    }
}

sub transform_response_body ($$$) {
    my ($block, $res, $req_idx) = @_;
    my $filters = $block->response_body_filters;
    return unless $res && defined $filters;
    if (!ref $filters) {
        $filters =~ s/^\s+|\s+$//g;
        $filters = [split /\s+/, $filters];
    } elsif (ref $filters ne 'ARRAY') {
        $filters = [$filters];
    }
    $filters = $filters->[$req_idx] if ref $filters->[0] eq 'ARRAY';
    my $content = $res->{content};
    for my $f (ref $filters eq 'ARRAY' ? @$filters : ($filters)) {
        if (ref $f eq 'CODE') { $content = $f->($content) }
        elsif ($f eq 'md5_hex') { require Digest::MD5; $content = Digest::MD5::md5_hex($content) }
        elsif ($f eq 'sha1_hex') { require Digest::SHA; $content = Digest::SHA::sha1_hex($content) }
        elsif ($f eq 'uc') { $content = uc $content }
        elsif ($f eq 'lc') { $content = lc $content }
        elsif ($f eq 'ucfirst') { $content = ucfirst $content }
        elsif ($f eq 'lcfirst') { $content = lcfirst $content }
        elsif ($f eq 'length') { $content = length $content }
        else { bail_out($block->name . " - unknown response_body_filters filter \"$f\"") }
    }
    $res->{content} = $content;
}

sub check_response_body ($$$$$) {
    my ($block, $res, $req_idx, $repeated_idx, $need_array) = @_;
    my $name = $block->name;
    my $content = $res ? $res->{content} : undef;
    if (defined $block->response_body || defined $block->response_body_eval) {
        my $expected;
        if (defined $block->response_body_eval) {
            $expected = eval get_indexed_value($name, $block->response_body_eval, $req_idx, $need_array);
            warn $@ if $@;
        } else {
            $expected = get_indexed_value($name, $block->response_body, $req_idx, $need_array);
        }
        if (defined $expected && !ref $expected) {
            $expected =~ s/\$ServerPort\b/$ServerPort/g;
            $expected =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
        }
        my $desc = "$name - response_body - response is expected (repeated req $repeated_idx, req $req_idx)";
        if (ref $expected) {
            Test::More::like($content, $expected,
                "$name - response_body - like (repeated req $repeated_idx, req $req_idx)");
        } else {
            is_text($content, $expected, $desc);
        }
    } elsif (defined $block->response_body_like || defined $block->response_body_unlike) {
        my ($type, $pats) = defined $block->response_body_like
            ? ('like', $block->response_body_like) : ('unlike', $block->response_body_unlike);
        my $pat = get_indexed_value($name, $pats, $req_idx, $need_array);
        $pat //= '';
        if (!ref $pat) {
            $pat =~ s/\$ServerPort\b/$ServerPort/g;
            $pat =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
        }
        my $desc = "$name - response_body_$type - response is expected (" . trim_summary($content) . ")";
        if ($type eq 'like') { Test::More::like($content, qr/$pat/s, $desc) }
        else { Test::More::unlike($content, qr/$pat/s, $desc) }
    }
    $_->($block, $content, $req_idx, $repeated_idx, 0) for @ResponseBodyChecks;
}

sub to_patterns ($) {
    my $pats = shift;
    if (!ref $pats) {
        chomp $pats;
        return [split /\n+/, $pats];
    }
    return [$pats] if ref $pats eq 'Regexp';
    return [@$pats];
}

sub line_matches ($$) {
    my ($line, $pat) = @_;
    return ref $pat ? $line =~ /$pat/ : index($line, $pat) >= 0;
}

sub value_contains {
    my ($val, $pat) = @_;
    return 0 unless defined $val;
    return scalar grep { value_contains($_, $pat) } @$val if ref $val eq 'ARRAY';
    return index("$val", $pat) >= 0;
}

sub check_error_log ($$$$) {
    my ($block, $res, $repeated_idx, $need_array) = @_;
    my $name = $block->name;
    my $lines;
    my %warn_for = map { $_ => 1 } ('[alert', '[crit', '[emerg');

    my $grep_pats = $block->grep_error_log;
    if (defined $grep_pats) {
        my $grep_pat = ref $grep_pats eq 'ARRAY' ? $grep_pats->[$repeated_idx] : $grep_pats;
        my $expected = $block->grep_error_log_out;
        bail_out("$name - No --- grep_error_log_out defined but --- grep_error_log is defined")
            unless defined $expected;
        $expected = $expected->[$repeated_idx] if ref $expected eq 'ARRAY';
        $lines ||= error_log_data();
        my $matched = '';
        for my $line (@$lines) {
            if (ref $grep_pat ? $line =~ /$grep_pat/ : $line =~ /\Q$grep_pat\E/) {
                $matched .= "$&\n" if $& !~ /\n/;
            }
        }
        if (ref $expected eq 'Regexp') {
            Test::More::like($matched, $expected, "$name - grep_error_log_out (req $repeated_idx)");
        } else {
            is_text($matched, $expected, "$name - grep_error_log_out (req $repeated_idx)");
        }
    } elsif (defined $block->grep_error_log_out) {
        bail_out("$name - No --- grep_error_log defined but --- grep_error_log_out is defined");
    }

    if (defined $block->error_log) {
        my $pats = $block->error_log;
        for my $k (keys %warn_for) { delete $warn_for{$k} if value_contains($pats, $k) }
        $pats = to_patterns($pats);
        $lines ||= error_log_data();
        for my $line (@$lines) {
            for my $pat (@$pats) {
                next unless defined $pat;
                if (line_matches($line, $pat)) {
                    Test::More::pass("$name - pattern \"$pat\" matches a line in error.log (req $repeated_idx)");
                    undef $pat;
                }
            }
        }
        for my $pat (grep { defined } @$pats) {
            Test::More::fail("$name - pattern \"$pat\" should match a line in error.log (req $repeated_idx)");
            Test::More::diag("  (only lines logged since the previous check count; see $ErrLogFile)");
        }
    }

    if (defined $block->no_error_log) {
        my $pats = $block->no_error_log;
        for my $k (keys %warn_for) { delete $warn_for{$k} if value_contains($pats, $k) }
        $pats = to_patterns($pats);
        $lines ||= error_log_data();
        my %found;
        for my $i (0 .. $#$lines) {
            my $line = $lines->[$i];
            for my $pat (grep { defined } @$pats) {
                next unless line_matches($line, $pat);
                $found{$pat}++;
                my @more = @$lines[$i + 1 .. ($i + 9 < $#$lines ? $i + 9 : $#$lines)];
                Test::More::fail("$name - pattern \"" . fmt_str($pat) . "\" should not match any "
                     . "line in error.log but matches line \"" . fmt_str($line)
                     . "\" (req $repeated_idx)\n" . join('', @more));
            }
        }
        for my $pat (grep { defined && !$found{$_} } @$pats) {
            Test::More::pass("$name - pattern \"" . fmt_str($pat)
                             . "\" does not match a line in error.log (req $repeated_idx)");
        }
    }

    # like Test::Nginx: loudly report alert/crit/emerg lines nobody asked about
    if (%warn_for) {
        $lines ||= error_log_data(1);
        for my $line (@$lines) {
            for my $k (keys %warn_for) {
                warn "WARNING: $name - " . fmt_str($line) . "\n" if index($line, "$k]") >= 0;
            }
        }
    }
}

sub check_shutdown_error_log ($) {
    my ($block) = @_;
    my $name = $block->name;
    my $lines = error_log_data();
    if (defined $block->no_shutdown_error_log) {
        my $pats = to_patterns($block->no_shutdown_error_log);
        my %found;
        for my $line (@$lines) {
            for my $pat (grep { defined } @$pats) {
                next unless line_matches($line, $pat);
                $found{$pat}++;
                Test::More::fail("$name - pattern \"" . fmt_str($pat) . "\" should not match any "
                                 . "line in error.log but matches line \"" . fmt_str($line) . "\"");
            }
        }
        for my $pat (grep { defined && !$found{$_} } @$pats) {
            Test::More::pass("$name - pattern \"" . fmt_str($pat) . "\" does not match a line in error.log");
        }
    }
    my $pats = to_patterns($block->shutdown_error_log);
    for my $line (@$lines) {
        for my $pat (@$pats) {
            next unless defined $pat;
            if (line_matches($line, $pat)) {
                Test::More::pass("$name - pattern \"$pat\" matches a line in error.log");
                undef $pat;
            }
        }
    }
    for my $pat (grep { defined } @$pats) {
        Test::More::fail("$name - pattern \"$pat\" should match a line in error.log");
    }
}

1;
