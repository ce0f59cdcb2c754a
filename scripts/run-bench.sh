#!/usr/bin/env bash
# run-bench.sh - `make bench`: runs the benchmarks and writes docs/BENCHMARKS.md.
#   1. local-mode training steps of each reference model against the PyTorch twin
#      (../shared/tools/peer_bench.py, same batch and threads, jemalloc as in peer-baselines.md),
#      measured in the same run, with ratios;
#   2. ms per step in local, plain and tempo modes (2 in-process workers), with ratios, plain and tempo
#      on the bf16 wire too (the offload ceiling per wire), and tempo mode under each protection policy
#      (--protect; BENCH_PROTECT_MODELS, default resnet20,vit-mini);
#   3. every other bench/bench_* program's own table (Enc/Dec vs memcpy, offload shapes, ...).
# Environment: BENCH_MODELS (default: all six), BENCH_STEPS (default 5), BENCH_BUDGET_S (per config, 40),
# BENCH_SKIP_PEER=1 to skip PyTorch, BENCH_OUT (default docs/BENCHMARKS.md), BENCH_PROGRAMS (comma list of
# the other bench programs to run, default all; e.g. bench_obf,bench_offload).
set -uo pipefail
cd "$(dirname "$0")/.."
B="${TEMPO_BUILD:-build}"
OUT="${BENCH_OUT:-docs/BENCHMARKS.md}"
MODELS="${BENCH_MODELS:-mlp,resnet20,resnet18,resnet50,vit-mini,vit-tiny}"
STEPS="${BENCH_STEPS:-5}"
BUDGET="${BENCH_BUDGET_S:-40}"
PEER="${TEMPO_SHARED:-../shared}/tools/peer_bench.py"
tmp=$(mktemp -d /tmp/tempo-bench-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

echo "bench: local mode, threads 1 and 2 ($MODELS)" >&2
for t in 1 2; do
  OPENBLAS_NUM_THREADS=$t "$B/bench/bench_step" --models "$MODELS" --modes local --threads $t --steps "$STEPS" \
    --budget-s "$BUDGET" | tee -a "$tmp/local.jsonl" >&2
done
if [ "${BENCH_SKIP_PEER:-0}" != 1 ] && [ -f "$PEER" ] && /usr/bin/python3 -c 'import torch' 2>/dev/null; then
  echo "bench: PyTorch twin" >&2
  malloc=system
  [ -e /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 ] && malloc=jemalloc
  /usr/bin/python3 "$PEER" --models "$MODELS" --threads 1,2/1,2 --malloc "$malloc" --steps "$STEPS" \
    --budget-s "$BUDGET" --json "$tmp/peer.json" >&2 || echo "bench: peer_bench failed" >&2
fi
echo "bench: modes local, plain, tempo with 2 workers" >&2
OPENBLAS_NUM_THREADS=1 "$B/bench/bench_step" --models "$MODELS" --modes local,plain,tempo --threads 1 --workers 2 \
  --steps "$STEPS" --budget-s "$BUDGET" | tee "$tmp/modes.jsonl" >&2
echo "bench: plain and tempo modes on the bf16 wire (the CLI's default), 2 workers" >&2
OPENBLAS_NUM_THREADS=1 "$B/bench/bench_step" --models "$MODELS" --modes plain,tempo --wire bf16 --threads 1 --workers 2 \
  --steps "$STEPS" --budget-s "$BUDGET" | tee "$tmp/wire16.jsonl" >&2
echo "bench: the offload ceiling with the master on 2 threads" >&2
OPENBLAS_NUM_THREADS=2 "$B/bench/bench_step" --models "$MODELS" --modes local,tempo --threads 2 --workers 2 \
  --steps "$STEPS" --budget-s "$BUDGET" | tee "$tmp/ceiling2.jsonl" >&2
echo "bench: tempo mode under each protection policy" >&2
OPENBLAS_NUM_THREADS=1 "$B/bench/bench_step" --models "${BENCH_PROTECT_MODELS:-resnet20,vit-mini}" --modes tempo \
  --protect none,default,ends,all --threads 1 --workers 2 --steps "$STEPS" --budget-s "$BUDGET" | tee "$tmp/protect.jsonl" >&2
echo "bench: tempo and shield modes with 4 workers" >&2
OPENBLAS_NUM_THREADS=1 "$B/bench/bench_step" --models "${BENCH_SHIELD_MODELS:-mlp,resnet20,vit-mini}" --modes tempo,shield \
  --threads 1 --workers 4 --steps "${BENCH_SHIELD_STEPS:-3}" --warmup 1 --budget-s "$BUDGET" | tee "$tmp/shield.jsonl" >&2
echo "bench: scaling over 1, 2, 4 CPU tempo-worker ranks (mpirun)" >&2
TEMPO_BUILD="$B" scripts/bench-scaling.sh resnet20 "$STEPS" 2>/dev/null | grep '^{' | tee "$tmp/scaling.jsonl" >&2
for b in "$B"/bench/bench_*; do
  case "$b" in *bench_step|*bench_scaling|*.log|*.d|*.o) continue ;; esac
  [ -x "$b" ] || continue
  if [ -n "${BENCH_PROGRAMS:-}" ] && ! [[ ",$BENCH_PROGRAMS," == *",$(basename "$b"),"* ]]; then continue; fi
  echo "bench: $(basename "$b")" >&2
  timeout 900 "$b" > "$tmp/$(basename "$b").md" 2>&1 || echo "(exit $?)" >> "$tmp/$(basename "$b").md"
done

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
{
  echo "# Benchmarks"
  echo
  echo "Written by \`make bench\` (scripts/run-bench.sh) on $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null)."
  echo "Machine: $cpu, $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}."
  echo "Medians of $STEPS timed steps after warm-up (fewer when a configuration exceeded ${BUDGET} s), min and max beside them."
  echo "Noise on this shared machine is 5-20%: compare ratios measured in the same run."
  echo
  python3 scripts/bench_tables.py "$tmp"
  # hand-kept results of long runs (accuracy after epochs, GPU runs): not re-measured by make bench
  for extra in docs/accuracy.md docs/gpu-results.md; do
    [ -f "$extra" ] && { echo; cat "$extra"; }
  done
} > "$OUT"
echo "bench: wrote $OUT" >&2
