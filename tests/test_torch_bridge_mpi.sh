#!/usr/bin/env bash
# test_torch_bridge_mpi.sh - the PyTorch bridge with MPI workers: /usr/bin/python3 as rank 0 of
# an mpirun job whose ranks 1 and 2 are build/tempo-worker (tests/test_torch_bridge_mpi.py).
# Skips with a message without torch, mpirun or build/libtempo_mpi.so, and in sanitizer builds.
set -u
cd "$(dirname "$0")/.."
. tests/mpi_common.sh
PY=/usr/bin/python3
if ! [ -x "$PY" ] || ! "$PY" -c "import torch" 2>/dev/null; then
  echo "SKIP: $PY has no torch (apt-get install python3-torch); the MPI bridge is not tested"; exit 0
fi
case "$B" in *san*)
  echo "SKIP: $B is a sanitizer build (its libraries need the sanitizer runtime in Python)"; exit 0 ;;
esac
lib=$(ls "$B"/libtempo.so.*.*.* 2>/dev/null | head -n 1)
if [ -z "$lib" ] || [ ! -f "$B/libtempo_mpi.so" ]; then echo "SKIP: no $B/libtempo_mpi.so (no mpicc?)"; exit 0; fi
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 PYTHONDONTWRITEBYTECODE=1
timeout 180 "${MPIRUN[@]}" --mca orte_abort_on_non_zero_status 0 \
  -np 1 env PYTHONPATH="$PWD/python" TEMPO_LIB="$lib" TEMPO_LIB_MPI="$B/libtempo_mpi.so" \
  "$PY" tests/test_torch_bridge_mpi.py \
  : -np 2 "$B/tempo-worker" --backend cpu > "$T/out" 2>&1 &
MPIPID=$!
wait "$MPIPID"
rc=$?
MPIPID=
cat "$T/out"
[ "$rc" = 0 ] || fail "mpirun exited $rc"
grep -q "passed, 0 failed" "$T/out" || fail "the bridge's MPI checks failed"
