# Zone names given to directives are checked when the configuration is
# loaded (nginx -t fails, quoting them), not at run time: a cluster's
# zone=, a status location's zone (missing, or a lua_shared_dict when
# several worker_events_zone make the default ambiguous); a repeated
# worker_events_cluster option. Zones may be declared after the directive.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use WorkerEventsTest;

run_tests();

__DATA__

=== TEST 1: worker_events_cluster zone= naming no zone
--- http_config
    worker_events_cluster redis://127.0.0.1 zone=nope;
    worker_events_zone ev 1m;
--- must_die
--- error_log eval
qr/\[emerg\] .*ngx_worker_events: worker_events_cluster: zone "nope" is neither a worker_events_zone nor a lua_shared_dict in \S+nginx\.conf:\d+/



=== TEST 2: a repeated worker_events_cluster option
--- http_config
    worker_events_cluster redis://127.0.0.1 node=a stream=s node=b;
--- must_die
--- error_log
ngx_worker_events: option "node=b" is given twice



=== TEST 3: worker_events_status naming no zone
--- http_config
    worker_events_zone ev 1m;
--- config
    location = /status { worker_events_status nonexist; }
--- must_die
--- error_log eval
qr/\[emerg\] .*ngx_worker_events: worker_events_status: zone "nonexist" is neither a worker_events_zone nor a lua_shared_dict in \S+nginx\.conf:\d+/



=== TEST 4: worker_events_status naming a lua_shared_dict, or nothing, while two zones are declared
--- http_config
    lua_shared_dict cache 1m;
    worker_events_zone a 1m;
    worker_events_zone b 1m;
--- config
    location = /status { worker_events_status cache; }
    location = /status2 { worker_events_status; }
--- must_die
--- error_log
ngx_worker_events: worker_events_status: zone "cache" is a lua_shared_dict and there is no single default worker_events_zone (declared: a, b): name one of them
ngx_worker_events: worker_events_status: no zone named and there is no single default worker_events_zone (declared: a, b): name one of them



=== TEST 5: nginx -t itself fails on each, quoting the offending text; good lines pass, also with the zone declared after the directive
--- config
location = /t {
    content_by_lua_block {
        ngx.say(_G.checked or "see the init")
    }
}
--- init
use WorkerEventsTest;
my $srv = sub { "server { listen 127.0.0.1:1; location / { $_[0] } }" };
my @bad = (
    ["worker_events_cluster redis://127.0.0.1 zone=nope;", 'zone "nope" is neither'],
    ["worker_events_cluster redis://127.0.0.1 node=a node=b;", 'option "node=b" is given twice'],
    ["worker_events_zone ev 1m; " . $srv->("worker_events_status nonexist;"), 'zone "nonexist" is neither'],
    ["lua_shared_dict cache 1m; worker_events_zone a 1m; worker_events_zone b 1m; "
        . $srv->("worker_events_status cache;"), 'zone "cache" is a lua_shared_dict and there is no single default'],
    ["worker_events_zone a 1m; worker_events_zone b 1m; worker_events_cluster redis://127.0.0.1;",
        'worker_events_cluster: no zone named and there is no single default'],
);
for my $b (@bad) {
    my ($rc, $out) = nginx_t($b->[0]);
    die "nginx -t accepted: $b->[0]\n$out" if $rc == 0;
    die "nginx -t did not say '$b->[1]' for: $b->[0]\n$out" if index($out, $b->[1]) < 0;
    die "nginx -t did not say where for: $b->[0]\n$out" if $out !~ /\[emerg\] .* in \S+nginx\.conf:\d+/;
}
my @good = (
    $srv->("worker_events_status ev;") . " worker_events_zone ev 1m;",
    "worker_events_cluster redis://127.0.0.1 zone=ev; worker_events_zone ev 1m;",
    "worker_events_cluster redis://127.0.0.1 zone=cache; lua_shared_dict cache 1m;",
    "lua_shared_dict cache 1m; worker_events_zone ev 1m; " . $srv->("worker_events_status cache;"),
    $srv->("worker_events_status cache;") . " lua_shared_dict cache 1m;",
    $srv->("worker_events_status;"),
    "worker_events_zone a 1m; worker_events_zone b 1m; " . $srv->("worker_events_status b;"),
);
for my $g (@good) {
    my ($rc, $out) = nginx_t($g);
    die "nginx -t refused: $g\n$out" if $rc != 0;
}
--- response_body
see the init
