#!/usr/bin/env bash
# 1 master + 2 CPU workers under mpirun (loopback, timeout-guarded) train 20 steps: the
# losses equal the in-process tempo run with the same key seed bit for bit, and local mode
# within 0.01 (blinding changes float rounding); with and without the W' relay.
set -u
cd "$(dirname "$0")/.."
. tests/mpi_common.sh
ARGS=(train --max-steps 20 --log-every 1 --no-progress --quiet --key-seed 7 --threads 1)
"$B/tempo" "${ARGS[@]}" --mode local --out "$T/local" >/dev/null || fail "local run"
"$B/tempo" "${ARGS[@]}" --mode tempo --workers 2 --out "$T/inproc" >/dev/null || fail "in-process run"
for relay in 1 0; do
  TEMPO_MPI_RELAY=$relay timeout 120 "${MPIRUN[@]}" -np 1 "$B/tempo" "${ARGS[@]}" --mode tempo --out "$T/mpi$relay" \
    : -np 2 "$B/tempo-worker" --backend cpu > "$T/mpi$relay.log" 2>&1 || { cat "$T/mpi$relay.log"; fail "mpirun relay=$relay"; }
  [ "$(losses "$T/mpi$relay" | wc -l)" = 20 ] || fail "relay=$relay: not 20 logged steps"
  diff <(losses "$T/inproc") <(losses "$T/mpi$relay") || fail "relay=$relay: MPI losses differ from in-process"
  paste <(losses "$T/local") <(losses "$T/mpi$relay") |
    awk '{d=$1-$2; if (d<0) d=-d; if (d>0.01) {print "step " NR ": " $1 " vs " $2; bad=1}} END {exit bad}' ||
    fail "relay=$relay: MPI losses differ from local mode"
  echo "relay=$relay: 20 losses equal to in-process tempo, within 0.01 of local (last $(losses "$T/mpi$relay" | tail -1))"
done
echo ok
