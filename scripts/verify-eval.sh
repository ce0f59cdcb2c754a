#!/usr/bin/env bash
# verify-eval.sh - the integrity section's tables of docs/SECURITY.md (issue 16): the honest
# |residual| / bound of every check, by model, worker GEMM and product class, and the
# smallest single-element error the rogue worker of tests/rogue_worker.h gets caught.
#
# Honest: build/bench/bench_verify trains each model in tempo mode (--protect none: every
# product to the workers) with WORKERS in-process workers summing dW' along chains, for the
# steps that give about CHECKS check blocks, once per worker GEMM (openblas, dnnl), and the
# models in SPATIAL ("resnet20") once more under tempo's default --protect spatial. Rogue: for
# each error size in RELS, rogues (workers 1..8 of 9, two cheats each, key_range 1.0001 so the
# row's largest |value| is the plaintext row's) plant single-element errors in one class at a
# time; the line says how many were planted and how many checks failed.
# Environment: MODELS ("mlp resnet20 vit-mini"), GEMMS ("openblas dnnl"), RELS
# ("1e-3 3e-4 1e-4 3e-5"), SPATIAL, STEPS (training steps of every honest run instead of the defaults), OUT (the tables, default /tmp/tempo-verify-eval.md).
set -euo pipefail
cd "$(dirname "$0")/.."
B=${BENCH:-build/bench/bench_verify}
[ -x "$B" ] || { echo "verify-eval: build first (make -j2): $B missing" >&2; exit 1; }
MODELS=${MODELS:-"mlp resnet20 vit-mini"}
GEMMS=${GEMMS:-"openblas dnnl"}
RELS=${RELS:-"1e-3 3e-4 1e-4 3e-5"}
SPATIAL=${SPATIAL-resnet20}
OUT=${OUT:-/tmp/tempo-verify-eval.md}
export OPENBLAS_NUM_THREADS=1
steps_of() { [ -n "${STEPS:-}" ] && { echo "$STEPS"; return; }; case "$1" in mlp) echo 2500 ;; resnet20) echo 60 ;; *) echo 25 ;; esac; }
workers_of() { case "$1" in mlp) echo 8 ;; *) echo 4 ;; esac; }
{
  echo "| model | worker GEMM | class | checks | k | median | p99.99 | max | failed |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for m in $MODELS; do
    for g in $GEMMS; do
      "$B" --model "$m" --steps "$(steps_of "$m")" --workers "$(workers_of "$m")" --reduce 1 --gemm "$g" |
        sed -n 's/^MD|/|/p'
    done
  done
  for m in $SPATIAL; do
    "$B" --model "$m" --steps "$(steps_of "$m")" --workers "$(workers_of "$m")" --reduce 1 --gemm openblas \
      --protect spatial | sed -n 's/^MD| \([^|]*\) | \([^|]*\) |/| \1 (spatial) | \2 |/p'
  done
  echo
  echo "| model | class | element error (of the row's largest) | planted | caught |"
  echo "|---|---|---|---|---|"
  for m in $MODELS; do
    for c in 0 1 2 3; do
      name=$(echo "Y' dX' dW' dW'-sum" | cut -d' ' -f$((c + 1)))
      for r in $RELS; do
        # a dW' sum is one check per chain: 2 workers (one rogue) keep one cheat per chain
        line=$(ROGUE_CLASSES=$c "$B" --model "$m" --steps 3 --workers $([ $c = 3 ] && echo 2 || echo 9) \
                 --reduce $([ $c = 3 ] && echo 1 || echo 0) \
                 --rogue "$r" --skip 3 --key-range 1.0001 --kinds element 2>/dev/null | sed -n 's/^MD-ROGUE|//p')
        echo "$line" | awk -F'|' -v m="$m" -v c="$name" -v r="$r" '{printf "| %s | %s | %s | %d | %d |\n", m, c, r, $3, $4}'
      done
    done
  done
} | tee "$OUT"
