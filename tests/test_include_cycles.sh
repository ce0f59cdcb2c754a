#!/usr/bin/env bash
# The modules under src/ and include/ form no include cycle (scripts/include-cycles.py: a
# module is a header with its same-named sources, so "a.c includes b.h, b.c includes a.h"
# counts). Also checks that the checker finds a planted cycle, so it cannot pass vacuously.
set -u
cd "$(dirname "$0")/.."
CHECK_NAME=include-cycles
. tests/check_common.sh
check "no include cycle in src/ and include/" 0 python3 scripts/include-cycles.py
grep_in "the checker counted the modules" "$tmp/out" "modules, .* dependencies, 0 cycles"
mkdir -p "$tmp/tree/src/a" "$tmp/tree/include/tempo"
printf '#include "tempo/beta.h"\n' > "$tmp/tree/src/a/alpha.c"
printf '#include "tempo/alpha.h"\n' > "$tmp/tree/src/a/beta.c"
printf '#pragma once\n' > "$tmp/tree/include/tempo/alpha.h"
printf '#pragma once\n' > "$tmp/tree/include/tempo/beta.h"
check "a planted cycle (alpha.c includes beta.h, beta.c includes alpha.h) fails the check" 1 \
  python3 scripts/include-cycles.py "$tmp/tree"
grep_in "the planted cycle is named" "$tmp/out" "include cycle: alpha -> beta -> alpha"
finish
