package Test::Nginx::Socket::Client;

# The HTTP client side of the runner in Test::Nginx::Socket: builds the raw
# requests of a block (--- request, more_headers, pipelined_requests,
# raw_request), sends each on its own connection (connect retries, idle
# timeouts, packet delays) and parses responses (status line, headers,
# Content-Length and chunked bodies). It starts no nginx (Server.pm) and
# checks nothing beyond the chunked framing (Socket.pm does the checks).
# Settings ($ServerAddr, $ConnectRetry, ...) are Test::Nginx::Socket's package
# variables, used here fully qualified.

use strict;
use warnings;
no warnings 'once';    # the settings are declared in Test::Nginx::Socket

use Test::More ();
use Time::HiRes qw(sleep time);
use IO::Socket::INET ();
use IO::Select ();
use Errno qw(EAGAIN EWOULDBLOCK EINTR);

use Exporter 'import';
our @EXPORT_OK = qw(
    parse_more_headers build_request get_req_from_block send_request
    res_header parse_response
);

# bail out through the runner, which runs the cleanup handlers first
sub bail_out { Test::Nginx::Socket::bail_out(@_) }

# ------------------------------------------------------------- requests

sub parse_more_headers ($) {
    my ($in) = @_;
    my ($out, $is_chunked) = ('', 0);
    for my $header (split /\n+/, $in // '') {
        next if $header =~ /^\s*#/;
        my ($key, $val) = split /:\s*/, $header, 2;
        $val //= '';
        $val =~ s/\r$//;
        $is_chunked = 1 if lc($key) eq 'transfer-encoding' && $val eq 'chunked';
        $out .= "$key: $val\r\n";
    }
    return ($out, $is_chunked);
}

# Build one raw HTTP request from the Test::Nginx "METHOD URI [VER]\nbody" form.
sub build_request ($$$$$) {
    my ($name, $more_headers, $is_chunked, $conn, $req) = @_;
    $req //= '';
    bail_out("$name - Request line should be non-empty") if $req !~ /\S/;
    my ($first, $content) = split /\n/, $req, 2;
    $content //= '';
    $first =~ /^\s*(\S+)(?:\s+(\S+))?(?:\s+(\S+))?\s*$/
        or bail_out("$name - Request line is not valid. Should be 'meth [url [version]]' "
                    . "but got \"$first\".");
    my ($meth, $url, $ver) = ($1, $2 // '/', $3 // 'HTTP/1.1');
    my $headers = '';
    $headers .= "Host: $Test::Nginx::Socket::ServerName\r\n" if $more_headers !~ /(?:^|\n)Host:/i;
    $headers .= "Connection: $conn\r\n" if $more_headers !~ /(?:^|\n)Connection/i;
    $headers .= $more_headers;
    if (!$is_chunked && $content ne '' && $more_headers !~ /(?:^|\n)Content-Length:/i) {
        $content =~ s/^\s+|\s+$//gs;
        $headers .= "Content-Length: " . length($content) . "\r\n";
    }
    return "$meth $url $ver\r\n$headers\r\n$content";
}

# Returns a list of requests, each an arrayref of packets {value, delay_before}.
sub get_req_from_block ($) {
    my ($block) = @_;
    my $name = $block->name;
    my @list;
    if (defined(my $raw = $block->raw_request)) {
        push @list, [map { ref $_ ? $_ : { value => $_ } } (ref $raw eq 'ARRAY' ? @$raw : $raw)];
        return \@list;
    }
    my $request = $block->request;
    my $more = $block->more_headers // '';
    my $hdrs_for = sub {
        my $i = shift;
        if (ref $more eq 'ARRAY') {
            bail_out("$name - --- more_headers lacks data for request $i") unless defined $more->[$i];
            return parse_more_headers($more->[$i]);
        }
        return parse_more_headers($more);
    };
    if (my $reqs = $block->pipelined_requests) {
        bail_out("$name - invalid entries in --- pipelined_requests") unless ref $reqs eq 'ARRAY';
        my $all = '';
        for my $i (0 .. $#$reqs) {
            my ($h, $chunked) = $hdrs_for->($i);
            $all .= build_request($name, $h, $chunked, $i == $#$reqs ? 'close' : 'keep-alive',
                                  $reqs->[$i]);
        }
        return [[{ value => $all }]];
    }
    return [] unless defined $request;    # runner extension: no request at all
    if (!ref $request) {
        1 while $request =~ s/^\s*\#[^\n]+\s+|^\s+//gs;
        my ($h, $chunked) = $hdrs_for->(0);
        return [[{ value => build_request($name, $h, $chunked, 'close', $request) }]];
    }
    bail_out("$name - invalid --- request: MUST be a string or an array of requests")
        unless ref $request eq 'ARRAY';
    for my $i (0 .. $#$request) {
        my $one = $request->[$i];
        my ($h, $chunked) = $hdrs_for->($i);
        if (!ref $one) {
            push @list, [{ value => build_request($name, $h, $chunked, 'close', $one) }];
        } elsif (ref $one eq 'ARRAY') {
            # a request given as packets: the first packet carries the request line
            my @packets = map { ref $_ ? { %$_ } : { value => $_ } } @$one;
            my $whole = join '', map { $_->{value} } @packets;
            my $built = build_request($name, $h, $chunked, 'close', $whole);
            # keep the packet boundaries of the body part where possible
            my $body_len = 0;
            $body_len += length $_->{value} for @packets[1 .. $#packets];
            if (@packets > 1 && $body_len <= length $built) {
                my $pos = length($built) - $body_len;
                $packets[0]{value} = substr($built, 0, $pos);
                for my $p (@packets[1 .. $#packets]) {
                    my $len = length $p->{value};
                    $p->{value} = substr($built, $pos, $len);
                    $pos += $len;
                }
                push @list, \@packets;
            } else {
                push @list, [{ value => $built }];
            }
        } else {
            bail_out("$name - invalid request: $one should be a string or an array of packets");
        }
    }
    return \@list;
}

# Sends one request (list of packets) on a new connection and reads until the
# server closes it. Refused connects are retried for $ConnectRetry seconds
# (e.g. while nginx reloads). Returns ($raw_response, $error, $timed_out).
sub send_request ($$$$) {
    my ($packets, $middle_delay, $timeout, $block) = @_;
    my $name = $block->name;
    my $addr = $block->server_addr_for_client // $Test::Nginx::Socket::ServerAddr;
    my $port = $Test::Nginx::Socket::ServerPortForClient;
    my $sock;
    my $deadline = time + $Test::Nginx::Socket::ConnectRetry;
    while (1) {
        $sock = IO::Socket::INET->new(PeerAddr => $addr, PeerPort => $port,
                                      Proto => 'tcp', Timeout => $timeout);
        last if $sock;
        my $err = $@ || $!;
        return (undef, "cannot connect to $addr:$port: $err")
            if time >= $deadline;
        sleep 0.02;
    }
    $sock->blocking(0);
    binmode $sock;
    my $sel = IO::Select->new($sock);
    my @bits = @$packets;
    my ($resp, $err, $timed_out) = ('', undef, 0);

    # write all packets
    my $first = 1;
    PACKET: while (my $p = shift @bits) {
        my $delay = $p->{delay_before} // ($first ? undef : $middle_delay);
        sleep $delay if $delay;
        $first = 0;
        my ($buf, $off) = ($p->{value}, 0);
        while ($off < length $buf) {
            if (!$sel->can_write($timeout)) { $timed_out = 1; last PACKET }
            my $n = syswrite($sock, $buf, length($buf) - $off, $off);
            if (!defined $n) {
                next if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
                $err = "write failed: $!";
                last PACKET;
            }
            $off += $n;
        }
    }
    if (!$timed_out && !$err && defined(my $shutdown = $block->shutdown)) {
        shutdown($sock, $shutdown =~ /^\s*(\d+)\s*$/ ? $1 : 1);
    }

    # read until EOF (we send "Connection: close"); idle timeout like Test::Nginx
    while (!$timed_out) {
        if (!$sel->can_read($timeout)) { $timed_out = 1; last }
        my $n = sysread($sock, my $chunk, 65536);
        if (!defined $n) {
            next if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
            $err //= "read failed: $!";    # e.g. reset by a killed worker
            last;
        }
        last if $n == 0;
        $resp .= $chunk;
    }
    close $sock;
    return ($resp, $err, $timed_out);
}

sub res_header ($$) {
    my ($res, $key) = @_;
    return undef unless $res;
    my @v = map { $_->[1] } grep { lc $_->[0] eq lc $key } @{ $res->{headers} };
    return @v ? join(', ', @v) : undef;
}

# Parses one response from $raw; returns ($res, $raw_headers, $left).
sub parse_response ($$$) {
    my ($name, $raw, $head_req) = @_;
    my $raw_headers = $raw =~ /\A(.*?\r\n)\r\n/s ? $1 : '';
    my ($head, $body);
    if ($raw =~ /\A(.*?)\r?\n\r?\n(.*)\z/s) { ($head, $body) = ($1, $2) }
    else { ($head, $body) = ($raw, '') }
    my @lines = split /\r?\n/, $head;
    my $status = shift(@lines) // '';
    my $res = { code => undef, headers => [], content => $body };
    $res->{code} = $1 if $status =~ m{^HTTP/\d+(?:\.\d+)?\s+(\d+)};
    for (@lines) {
        push @{ $res->{headers} }, [$1, $2] if /^([^:\s]+)\s*:\s*(.*?)\s*$/;
    }
    my $code = $res->{code};
    return ($res, $raw_headers) if $code && ($code == 304 || $code == 101 || $head_req);
    my $enc = res_header($res, 'Transfer-Encoding');
    my $len = res_header($res, 'Content-Length');
    my $left;
    if (defined $enc && $enc eq 'chunked') {
        my $decoded = '';
        pos($body) = 0;
        while (1) {
            if ($body =~ /\G0[ \t]*\r\n\r\n/gc) {
                $left = $1 if $body =~ /\G(.+)/gcs;
                last;
            }
            if ($body =~ /\G[ \t]*([A-Fa-f0-9]+)[ \t]*\r\n/gc) {
                my $size = hex $1;
                my $start = pos $body;
                if (length($body) - $start < $size) {
                    chunk_fail("$name - invalid chunked data received "
                               . "(not enough octets for the data section)");
                    return ($res, $raw_headers);
                }
                $decoded .= substr($body, $start, $size);
                pos($body) = $start + $size;
                if ($body !~ /\G\r\n/gc) {
                    chunk_fail("$name - invalid chunked data received (expected CRLF).");
                    return ($res, $raw_headers);
                }
            } elsif ($body =~ /\G(.+)/gcs) {
                chunk_fail("$name - invalid chunked body received: "
                           . Test::Nginx::Socket::fmt_str($1));
                return ($res, $raw_headers);
            } else {
                chunk_fail("$name - no last chunk found - "
                           . Test::Nginx::Socket::fmt_str($body));
                return ($res, $raw_headers);
            }
        }
        $res->{content} = $decoded;
    } elsif (defined $len && $len =~ /^\d+$/) {
        if (length $body < $len) {
            warn "WARNING: $name - response body truncated: $len expected, but got "
                 . length($body) . "\n";
        } elsif (length $body > $len) {
            $left = substr($body, $len);
            $res->{content} = substr($body, 0, $len);
        }
    }
    return ($res, $raw_headers, $left);
}

sub chunk_fail { Test::More::fail(shift) }

1;
