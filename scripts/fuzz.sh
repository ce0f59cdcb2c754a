#!/usr/bin/env bash
# Builds the libFuzzer targets (clang) and runs each for SECONDS (default 30) on a copy of
# the committed corpus (tests/fuzz/corpus/<target>), so CI time is bounded. New inputs
# that crash are left in build/fuzz/ (crash-*) and make this script fail.
#   scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-30}"
B="${TEMPO_BUILD:-build}"
if ! command -v clang >/dev/null; then echo "fuzz: clang not installed; skipped"; exit 0; fi
make -s TEMPO_SKIP_SETUP=1 fuzz
rc=0
for t in worker master netfile; do
  work="$B/fuzz/corpus-$t"
  rm -rf "$work"; mkdir -p "$work"
  cp tests/fuzz/corpus/$t/* "$work/"
  echo "fuzz: fuzz_$t for $secs s"
  ( cd "$B/fuzz" && timeout $((secs + 60)) ./fuzz_$t -max_total_time="$secs" -max_len=4096 -rss_limit_mb=2048 \
      -timeout=10 -print_final_stats=1 "corpus-$t" > "fuzz_$t.log" 2>&1 ) || { rc=1; tail -30 "$B/fuzz/fuzz_$t.log"; }
  grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units)" "$B/fuzz/fuzz_$t.log" | tail -1 || true
done
exit $rc
