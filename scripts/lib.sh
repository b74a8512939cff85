# shellcheck shell=bash
# Shared helpers for scripts/*: dependency installation and the nginx build dir.
# Sourced, not run.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck disable=SC2034 # used by the scripts that source this file
MODULE_SO="$ROOT/build/ngx_http_worker_events_module.so"
NGINX_BIN=${NGINX_BIN:-/usr/sbin/nginx}
NGINX_MODULES_DIR=${NGINX_MODULES_DIR:-/usr/lib/nginx/modules}

# Debian packages the build, the tests and the benchmark need.
APT_PACKAGES=(
  nginx nginx-dev libnginx-mod-http-lua libnginx-mod-http-ndk lua-cjson
  libpcre2-dev libssl-dev zlib1g-dev clang libclang-dev libluajit2-5.1-dev pkg-config
  libtest-base-perl libtext-diff-perl libtest-longstring-perl liblist-moreutils-perl
  libipc-run-perl libwww-perl liburi-perl wrk curl procps binutils prometheus
  redis-server redis-tools lua-nginx-redis
  dpkg-dev lintian
  lua-check shellcheck pyflakes3
)

# What building the module for another nginx (scripts/build --src) needs, and
# what building OpenResty from sources (scripts/openresty) needs on top.
# shellcheck disable=SC2034 # used by scripts/build and scripts/openresty
BUILD_PACKAGES=(clang libclang-dev pkg-config binutils)
# shellcheck disable=SC2034
OPENRESTY_PACKAGES=(build-essential patch perl libpcre2-dev libssl-dev zlib1g-dev)

log() { printf '==> %s\n' "$*" >&2; }

# harness ARGS: the scripts' Python harness (scripts/harness/__main__.py), the
# wrappers' safety net: `harness stop-nginx LABEL PIDFILE...`, `harness
# stop-redis PIDFILE...`, `harness stop-redis --dirs DIR...`.
harness() { PYTHONPATH="$ROOT/scripts${PYTHONPATH:+:$PYTHONPATH}" python3 -B -m harness "$@"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# ensure_apt_packages [PACKAGE...]: the given packages (default: APT_PACKAGES).
# shellcheck disable=SC2120 # called with no arguments for the default list
ensure_apt_packages() {
  local missing=() p want=("$@")
  [ $# -gt 0 ] || want=("${APT_PACKAGES[@]}")
  for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    printf 'missing packages; run as root:\n  apt-get update && apt-get install -y %s\n' "${missing[*]}" >&2
    exit 1
  fi
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
}

ensure_rust() {
  if ! command -v cargo >/dev/null 2>&1; then
    [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
  fi
  command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust (https://rustup.rs) first"
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt >/dev/null 2>&1 || true
}

# A configured copy of Debian's nginx source, made with Debian's own configure
# flags, so the module's binary signature matches /usr/sbin/nginx.
#   ensure_nginx_build_dir [DIR [EXTRA CONFIGURE ARGS...]]
# DIR defaults to target/nginx-src (this module's build; exports NGINX_SOURCE_DIR
# and NGINX_BUILD_DIR for it); another DIR with extra arguments (e.g.
# --add-dynamic-module=...) is configured the same way, re-done when they change.
ensure_nginx_build_dir() {
  local src=/usr/share/nginx/src dir="${1:-$ROOT/target/nginx-src}"
  [ $# -gt 0 ] && shift
  local stamp extra
  extra=$(printf '%s\n' "$@" | md5sum | cut -c1-8)
  stamp="$dir/.configured-$(dpkg-query -W -f='${Version}' nginx-dev)"
  [ $# -gt 0 ] && stamp="$stamp-$extra"
  if [ ! -f "$stamp" ]; then
    log "configuring nginx sources in $dir"
    rm -rf "$dir"; mkdir -p "$dir"
    cp -r "$src"/. "$dir"/
    # shellcheck disable=SC1091
    ( cd "$dir" && source ./conf_flags && ./configure "${NGX_CONF_FLAGS[@]}" "$@" >configure.log 2>&1 ) \
      || die "nginx configure failed, see $dir/configure.log"
    touch "$stamp"
  fi
  if [ "$dir" = "$ROOT/target/nginx-src" ]; then
    export NGINX_SOURCE_DIR="$dir" NGINX_BUILD_DIR="$dir/objs"
  fi
}

nginx_signature() { strings "$1" | grep -E '^[0-9]+,[0-9]+,[0-9]+,[01]{30,}' | head -1; }

# nginx_version BIN: its nginx version (1.27.1 for openresty/1.27.1.2).
nginx_version() { "$1" -v 2>&1 | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -1; }

# nginx_luajit_dir BIN: the directory of the libluajit-5.1 BIN loads (empty
# when it loads none).
nginx_luajit_dir() {
  local lib
  lib=$(ldd "$1" 2>/dev/null | awk '/libluajit-5\.1\.so/ {print $3; exit}')
  [ -n "$lib" ] && [ -e "$lib" ] && dirname "$(readlink -f "$lib")"
}

# check_module SO BIN: SO loads into BIN (same signature) and links no Lua
# of its own; dies otherwise.
check_module() {
  local want got
  want=$(nginx_signature "$2")
  got=$(nginx_signature "$1")
  if [ -z "$got" ] || [ "$want" != "$got" ]; then
    die "module signature '$got' does not match $2 '$want': the module would be refused as not binary compatible"
  fi
  if nm -D --defined-only "$1" | grep -qE ' T lua_(pushinteger|call)$'; then
    die "the module defines lua_* itself: a second LuaJIT was linked in"
  fi
}
