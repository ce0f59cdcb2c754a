#!/usr/bin/env bash
# One-call GPU check for a lent GPU machine: builds with CUDA, runs the GPU tests, and a short
# benchmark: for resnet50, vit-tiny and resnet20, ms/step in local mode on this machine's CPU
# (1 thread) against tempo mode with 1 GPU tempo-worker under mpirun, on the fp32 and the bf16
# wire, with the master's busy time (the offload ceiling with that worker). Writes everything to
# OUTDIR (default gpu-results/), and OUTDIR/gpu-results.md (scripts/gpu_table.py) to copy into
# docs/gpu-results.md. Skips cleanly (exit 0, SKIP in summary.txt) without nvcc or without a
# GPU. Every step has a timeout; the whole script stays under 5 minutes.
#   scripts/gpu-check.sh [OUTDIR]
# GPU_CHECK_DRY=1: the same run with CPU tempo-workers (--backend cpu) and without the GPU tests,
# to check the script where there is no GPU (the numbers then say nothing about GPUs);
# GPU_CHECK_MODELS="m1 m2": other models (default resnet50 vit-tiny resnet20).
set -u
cd "$(dirname "$0")/.."
OUT="${1:-gpu-results}"
mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
set -x
START=$(date +%s)
left() { echo $(( 290 - ($(date +%s) - START) )); }
summary() { echo "$*" | tee -a "$OUT/summary.txt"; }
: > "$OUT/summary.txt"
read -r NVCC CUDA_LIBDIR <<< "$(scripts/find-cuda.sh)"
if [ -z "${CUDA_LIBDIR:-}" ]; then summary "SKIP: no CUDA toolkit (nvcc + libcublas) here"; exit 0; fi
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
export TEMPO_SKIP_SETUP=1
timeout $(( $(left) - 120 )) make -j"$(nproc)" build/tempo build/tempo-worker build/tests/test_cuda build/tests/test_worker \
  build/bench/bench_scaling > "$OUT/build.txt" 2>&1 || { summary "FAIL: build (see build.txt)"; exit 1; }
summary "build: ok ($("$NVCC" --version | tail -1))"
BACKEND=cuda
if [ -n "${GPU_CHECK_DRY:-}" ]; then
  BACKEND=cpu
  summary "dry run: CPU tempo-workers, no GPU tests"
else
  timeout 60 build/tests/test_cuda > "$OUT/test_cuda.txt" 2>&1; rc=$?
  if grep -q "^skip:" "$OUT/test_cuda.txt"; then
    summary "SKIP: $(cat "$OUT/test_cuda.txt") - no GPU tests or GPU benchmark run"; exit 0
  fi
  [ $rc -eq 0 ] && summary "test_cuda: PASS" || summary "test_cuda: FAIL (exit $rc, see test_cuda.txt)"
fi
timeout 60 build/tests/test_worker > "$OUT/test_worker.txt" 2>&1 && summary "test_worker: PASS" || summary "test_worker: FAIL"
MPIRUN=(mpirun --allow-run-as-root --oversubscribe -quiet --mca btl self,vader,tcp)
: > "$OUT/bench.jsonl"
for model in ${GPU_CHECK_MODELS:-resnet50 vit-tiny resnet20}; do
  [ "$(left)" -gt 60 ] || { summary "bench: out of time before $model"; break; }
  timeout 90 build/bench/bench_scaling --model "$model" --mode local --steps 3 --warmup 1 >> "$OUT/bench.jsonl" \
    2>> "$OUT/bench.err" || summary "bench $model local: failed or timed out"
  for wire in fp32 bf16; do
    [ "$(left)" -gt 40 ] || { summary "bench: out of time before $model tempo $wire"; break 2; }
    timeout 90 "${MPIRUN[@]}" -np 1 build/bench/bench_scaling --model "$model" --mode tempo --wire "$wire" --steps 3 \
      --warmup 1 : -np 1 build/tempo-worker --backend "$BACKEND" >> "$OUT/bench.jsonl" 2>> "$OUT/bench.err" ||
      summary "bench $model tempo $wire + 1 $BACKEND worker: failed or timed out"
  done
done
grep -v '^\[' "$OUT/bench.jsonl" | sed 's/^/bench: /' | tee -a "$OUT/summary.txt"
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
machine="Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; GPU: ${gpu:-none}${GPU_CHECK_DRY:+ (dry run: CPU workers, not a GPU measurement)}."
python3 scripts/gpu_table.py "$OUT/bench.jsonl" "$machine" > "$OUT/gpu-results.md" 2>> "$OUT/bench.err" ||
  summary "gpu_table.py failed (bench.jsonl is the data)"
summary "done in $(( $(date +%s) - START )) s"
