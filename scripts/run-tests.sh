#!/usr/bin/env bash
# Runs each test binary (with a timeout, so a hung test cannot hang CI), prints its
# output, and ends with one summary line "N passed, N failed". Exit status 1 if any failed.
# TEMPO_TEST_TIMEOUT (seconds, default 600) bounds each binary.
set -u
cd "$(dirname "$0")/.."
export TEMPO_SRC_DIR="$PWD"
passed=0 failed=0 failed_names=()
for t in "$@"; do
  name=$(basename "$t")
  start=$(date +%s.%N)
  log="${TEMPO_BUILD:-build}/tests/$name.log"
  mkdir -p "$(dirname "$log")"
  timeout "${TEMPO_TEST_TIMEOUT:-600}" "$t" > "$log" 2>&1
  rc=$?
  secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
  if [ $rc -eq 0 ]; then
    passed=$((passed + 1)); printf 'PASS %-36s %6ss\n' "$name" "$secs"
  else
    failed=$((failed + 1)); failed_names+=("$name")
    printf 'FAIL %-36s %6ss (exit %d)\n' "$name" "$secs" "$rc"
    sed 's/^/    /' "$log" | tail -n 40
  fi
done
[ $failed -gt 0 ] && echo "failed: ${failed_names[*]}"
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
