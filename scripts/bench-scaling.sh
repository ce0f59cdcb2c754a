#!/usr/bin/env bash
# Scaling of tempo mode over 1, 2 and 4 CPU tempo-worker ranks under mpirun (loopback), and the
# master's upload per step against the minimum. One JSON line per run (bench/bench_scaling.c).
#   scripts/bench-scaling.sh [MODEL] [STEPS]     (default resnet20, 8 steps)
set -u
cd "$(dirname "$0")/.."
B="${TEMPO_BUILD:-build}"
model="${1:-resnet20}"; steps="${2:-8}"
command -v mpirun >/dev/null && [ -x "$B/tempo-worker" ] || { echo '{"skip":"no mpirun or tempo-worker"}'; exit 0; }
MPIRUN=(mpirun --allow-run-as-root --oversubscribe -quiet --mca btl self,tcp --mca btl_tcp_if_include lo
        --mca oob_tcp_if_include lo)
OPENBLAS_NUM_THREADS=1 timeout 300 "$B/bench/bench_scaling" --model "$model" --mode local --steps "$steps"
# per worker count: W' relay and dW' reduction among the workers on (default), and both off
for n in 1 2 4; do
  for on in 1 0; do
    [ $n = 1 ] && [ $on = 0 ] && continue
    TEMPO_MPI_RELAY=$on TEMPO_MPI_REDUCE=$on OPENBLAS_NUM_THREADS=1 timeout 300 "${MPIRUN[@]}" -np 1 \
      "$B/bench/bench_scaling" --model "$model" --mode tempo --steps "$steps" : -np $n "$B/tempo-worker" --backend cpu |
      sed "s/}\$/,\"relay\":$on,\"reduce\":$on}/"
  done
done
