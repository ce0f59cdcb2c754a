#!/usr/bin/env bash
# 1 master + 2 CPU workers under mpirun (loopback, timeout-guarded) train 20 steps: the
# losses equal the in-process tempo run with the same key seed bit for bit, and local mode
# within 0.01 (blinding changes float rounding); with and without the W' relay, and with and
# without adding the partial dW' among the workers (which must download less); and shield mode over
# 4 worker processes equals its in-process run (the MLP, and vit-mini for batched products).
set -u
cd "$(dirname "$0")/.."
. tests/mpi_common.sh
ARGS=(train --protect none --max-steps 20 --log-every 1 --no-progress --quiet --key-seed 7 --threads 1)
"$B/tempo" "${ARGS[@]}" --mode local --out "$T/local" >/dev/null || fail "local run"
"$B/tempo" "${ARGS[@]}" --mode tempo --workers 2 --out "$T/inproc" >/dev/null || fail "in-process run"
for cfg in 1:1 0:1 1:0; do
  relay=${cfg%:*} reduce=${cfg#*:}
  TEMPO_MPI_RELAY=$relay TEMPO_MPI_REDUCE=$reduce timeout 120 "${MPIRUN[@]}" -np 1 "$B/tempo" "${ARGS[@]}" --mode tempo --out "$T/mpi$relay$reduce" \
    : -np 2 "$B/tempo-worker" --backend cpu > "$T/mpi$relay$reduce.log" 2>&1 || { cat "$T/mpi$relay$reduce.log"; fail "mpirun relay=$relay"; }
  [ "$(losses "$T/mpi$relay$reduce" | wc -l)" = 20 ] || fail "relay=$relay reduce=$reduce: not 20 logged steps"
  diff <(losses "$T/inproc") <(losses "$T/mpi$relay$reduce") || fail "relay=$relay reduce=$reduce: MPI losses differ from in-process"
  paste <(losses "$T/local") <(losses "$T/mpi$relay$reduce") |
    awk '{d=$1-$2; if (d<0) d=-d; if (d>0.01) {print "step " NR ": " $1 " vs " $2; bad=1}} END {exit bad}' ||
    fail "relay=$relay reduce=$reduce: MPI losses differ from local mode"
  echo "relay=$relay reduce=$reduce: 20 losses equal to in-process tempo, within 0.01 of local (last $(losses "$T/mpi$relay$reduce" | tail -1))"
done
down() { grep -o "downloaded [0-9.]* MB" "$1" | grep -o "[0-9.]*"; }
awk -v a="$(down "$T/mpi11.log")" -v b="$(down "$T/mpi10.log")" 'BEGIN {exit !(a > 0 && a < 0.7 * b)}' ||
  fail "dW' reduction among the workers: downloaded $(down "$T/mpi11.log") MB, without it $(down "$T/mpi10.log") MB"
echo "master downloads $(down "$T/mpi11.log") MB with the dW' reduction among workers, $(down "$T/mpi10.log") MB without"
# same_over_mpi NAME W STEPS ARGS...: the run with W in-process workers and the run under
# mpirun with W worker processes log the same STEPS losses (the last in $LAST)
same_over_mpi() {
  local name=$1 w=$2 steps=$3
  shift 3
  "$B/tempo" "$@" --workers "$w" --out "$T/$name-inproc" >/dev/null || fail "in-process $name run"
  timeout 120 "${MPIRUN[@]}" -np 1 "$B/tempo" "$@" --out "$T/$name-mpi" : -np "$w" "$B/tempo-worker" --backend cpu \
    > "$T/$name-mpi.log" 2>&1 || { cat "$T/$name-mpi.log"; fail "mpirun $name"; }
  [ "$(losses "$T/$name-mpi" | wc -l)" = "$steps" ] || fail "$name: not $steps logged steps"
  diff <(losses "$T/$name-inproc") <(losses "$T/$name-mpi") || fail "$name: MPI losses differ from in-process"
  LAST=$(losses "$T/$name-mpi" | tail -1)
}
COMMON=(--log-every 1 --no-progress --quiet --key-seed 7 --threads 1)
# shield over MPI: the master keeps each role's reply message until it has combined the four
# (read in place, not copied); 4 worker processes, one per role: losses equal the in-process run
same_over_mpi shield 4 8 train --protect none --max-steps 8 "${COMMON[@]}" --mode shield
echo "shield over MPI, 4 worker processes: 8 losses equal to in-process shield (last $LAST)"
# and a model with batched products (vit-mini's attention): each role's instance blocks are kept too
same_over_mpi vit 4 2 train --model vit-mini --batch 8 --no-eval --protect none --max-steps 2 "${COMMON[@]}" \
  --mode shield
echo "vit-mini shield over MPI (batched products): 2 losses equal to in-process shield"
# resnet20 in tempo mode: each conv's dX goes onto the activation gradient by rows, block by
# block in order (a reply that arrives early is held), so whichever worker process answers
# first the sums are the in-process run's
same_over_mpi r20 2 3 train --model resnet20 --batch 8 --no-eval --max-steps 3 "${COMMON[@]}" --mode tempo
echo "resnet20 tempo over MPI (dX by rows): 3 losses equal to in-process tempo (last $LAST)"
echo ok
