#!/usr/bin/env bash
# test_install.sh - `make install DESTDIR=... PREFIX=/usr` gives what an embedding program
# needs: the headers, libtempo.so (versioned soname) beside libtempo.a, and a tempo.pc whose
# plain --libs links (the dependencies are the shared library's own; --static adds them).
# tests/fixtures/embed.c, built with pkg-config against the staged copy, runs one
# tempo-mode training step of the mlp model with LD_LIBRARY_PATH into DESTDIR. Then
# `make uninstall` removes what was installed.
set -u
cd "$(dirname "$0")/.."
CHECK_NAME=install
. tests/check_common.sh
B="${TEMPO_BUILD:-build}"
SAN=""
case "$B" in *san*) SAN="address,undefined" ;; esac # the sanitizer build's objects need its runtime
d="$tmp/dest"
mk() { TEMPO_SKIP_SETUP=1 make --no-print-directory O="$B" ${SAN:+SANITIZE=$SAN} DESTDIR="$d" PREFIX=/usr "$@"; }
unset MAKEFLAGS MFLAGS
check "make install DESTDIR PREFIX=/usr" 0 mk install
lib="$d/usr/lib"
check "libtempo.a installed" 0 test -f "$lib/libtempo.a"
check "libtempo.so.0.1.0 installed" 0 test -f "$lib/libtempo.so.0.1.0"
check "libtempo.so.0 -> libtempo.so.0.1.0" 0 test "$(readlink "$lib/libtempo.so.0")" = libtempo.so.0.1.0
check "libtempo.so -> libtempo.so.0" 0 test "$(readlink "$lib/libtempo.so")" = libtempo.so.0
check "the soname is libtempo.so.0" 0 sh -c "readelf -d '$lib/libtempo.so.0.1.0' | grep -q 'SONAME.*libtempo.so.0]'"
check "headers installed" 0 test -f "$d/usr/include/tempo/matmul.h"
check "tempo.pc installed" 0 test -f "$lib/pkgconfig/tempo.pc"
grep_in "tempo.pc has the prefix" "$lib/pkgconfig/tempo.pc" "^prefix=/usr$"
export PKG_CONFIG_PATH="$lib/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$d"
check "pkg-config --cflags --libs tempo" 0 pkg-config --cflags --libs tempo
flags=$(cat "$tmp/out")
grep_in "plain --libs is -L... -ltempo" "$tmp/out" "-L$lib -ltempo"
check "pkg-config --static --libs tempo" 0 pkg-config --static --libs tempo
static_flags=$(cat "$tmp/out")
grep_in "--static adds libsodium" "$tmp/out" "-lsodium"
grep_in "--static adds the math library" "$tmp/out" "-lm"
# shellcheck disable=SC2086
check "cc embed.c \$(pkg-config --cflags --libs tempo)" 0 \
  cc ${SAN:+-fsanitize=$SAN} -o "$tmp/embed" tests/fixtures/embed.c $flags
check "the embedding program runs a tempo-mode step (LD_LIBRARY_PATH)" 0 env LD_LIBRARY_PATH="$lib" "$tmp/embed"
grep_in "it trained in tempo mode" "$tmp/out" "embedded tempo step: mode tempo, loss"
check "it links the shared library" 0 sh -c "LD_LIBRARY_PATH='$lib' ldd '$tmp/embed' | grep -q '$lib/libtempo.so.0'"
# a static link: libtempo.a by name, the rest from --static
# shellcheck disable=SC2086
check "static link with pkg-config --static" 0 \
  cc ${SAN:+-fsanitize=$SAN} -o "$tmp/embed-static" tests/fixtures/embed.c $(pkg-config --cflags tempo) \
  ${static_flags/-ltempo/-l:libtempo.a}
check "the static program runs" 0 "$tmp/embed-static"
check "make uninstall" 0 mk uninstall
check "uninstall removed the libraries" 0 sh -c "! ls '$lib'/libtempo* 2>/dev/null | grep -q ."
check "uninstall removed tempo.pc" 0 test ! -e "$lib/pkgconfig/tempo.pc"
finish
