package Test::Nginx::Socket::Lua;

# Same runner as Test::Nginx::Socket (see t/lib/README.md); many OpenResty
# test files say "use Test::Nginx::Socket::Lua".

use strict;
use warnings;

use Test::Nginx::Socket ();

our @ISA = ('Test::Nginx::Socket');
our @EXPORT = ();    # everything comes from Test::Nginx::Socket / Test::Base
our $VERSION = $Test::Nginx::Socket::VERSION;

1;
