#!/usr/bin/env bash
# The right worker is blamed, and flooding costs the flooder (issue 16.2, 16.3), under mpirun
# (1 master + CPU workers over loopback, every run timeout-guarded), each rogue the test-only
# worker program cheating in one way only:
#  1. 2 workers, the first relays W' to the second with one byte flipped (its own results
#     honest): the receiver's authenticator check fails, the master charges the relayer and
#     evicts it after 3; the honest receiver is never evicted;
#  2. the same with 3 workers, the rogue in the middle of the relay chain: its successor
#     complains, the last one (passed nothing) too and is forgiven; only the rogue is evicted;
#  2b. a relayer that is late once (3 s, past the receiver's 2 s relay timeout), honest
#     otherwise: one complaint, one recomputation, and the late W' is skipped when it comes, so
#     the link goes on working: nobody is evicted;
#  3. 3 workers, the middle one tampers with the dW' sums it passes on: the prefix sums name
#     it, it is evicted, the others never;
#  4. a worker that sends a 2 GiB frame nobody asked for before every step-end ACK: the master
#     refuses it from its 16-byte header (the request allows 1104 bytes), drops the
#     connection and evicts the flooder; its peak memory (VmHWM, sampled every 50 ms) stays
#     within 1.2x of an honest run's. With 2 workers, and with 3 where the flooder is also the
#     first relayer (the others go on without it).
set -u
cd "$(dirname "$0")/.."
. tests/mpi_common.sh
export TEMPO_WORKER_TIMEOUT=5
ARGS=(train --no-progress --log-every 5 --key-seed 7 --threads 1 --mode tempo --max-steps 12 --no-eval)
W=("$B/tempo-worker" --backend cpu --relay-timeout 2)
WF=("$B/tests/tempo-worker-faulty" --backend cpu --relay-timeout 2)
[ -x "${WF[0]}" ] || fail "${WF[0]} not built"

# run NAME RANKS...: the job under mpirun; the master's VmHWM (kB) sampled into $T/NAME.hwm
run() {
  local name=$1
  shift
  "${MPIRUN[@]}" --mca orte_abort_on_non_zero_status 0 -np 1 "$B/tempo" "${ARGS[@]}" --out "$T/$name" "$@" \
    > "$T/$name.log" 2>&1 &
  MPIPID=$!
  local hwm=0 pid="" v
  for _ in $(seq 2400); do # 120 s
    kill -0 "$MPIPID" 2>/dev/null || break
    [ -n "$pid" ] || pid=$(pgrep -P "$MPIPID" -x tempo | head -1)
    if [ -n "$pid" ]; then
      v=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null)
      [ -n "$v" ] && [ "$v" -gt "$hwm" ] && hwm=$v
    fi
    grep -q "^done: " "$T/$name.log" 2>/dev/null && [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null && break
    sleep 0.05
  done
  echo "$hwm" > "$T/$name.hwm"
  # what is left (an evicted worker idles until its job ends)
  for p in $(pgrep -P "$MPIPID" -x 'tempo-worker|tempo-worker-fa' 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
  kill "$MPIPID" 2>/dev/null
  wait "$MPIPID" 2>/dev/null
  MPIPID=
  grep -q "^done: 12 steps" "$T/$name.log" || { cat "$T/$name.log"; fail "$name: the run did not finish"; }
}
# only NAME's worker W was evicted, for WHY
evicted_only() {
  local name=$1 w=$2 why=$3
  grep -q "evicting worker $w: $why" "$T/$name.log" || { cat "$T/$name.log"; fail "$name: worker $w not evicted for '$why'"; }
  [ "$(grep -c "evicting worker" "$T/$name.log")" = 1 ] || { cat "$T/$name.log"; fail "$name: an honest worker was evicted"; }
}

run relay2 : -np 1 "${WF[@]}" --fault bad-relay : -np 1 "${W[@]}"
evicted_only relay2 0 "relayed a bad operand 3 times"
echo "1. 2 workers, the relayer flips a byte of W': the relayer is evicted, the receiver never"

run relay3 : -np 1 "${W[@]}" : -np 1 "${WF[@]}" --fault bad-relay : -np 1 "${W[@]}"
evicted_only relay3 1 "relayed a bad operand 3 times"
echo "2. 3 workers, the middle relayer flips a byte: only it is evicted"

run late : -np 1 "${WF[@]}" --fault late-relay:0:100000 : -np 1 "${W[@]}"
grep -q "evicting" "$T/late.log" && { cat "$T/late.log"; fail "late: a slow relayer (once) was evicted"; }
grep -Eq "recomputed 1,|recomputed 1$" "$T/late.log" || { cat "$T/late.log"; fail "late: not one recomputation"; }
echo "2b. a relayer late once: one recomputation, the link goes on, nobody evicted"

run sum3 : -np 1 "${W[@]}" : -np 1 "${WF[@]}" --fault bad-sum : -np 1 "${W[@]}"
evicted_only sum3 1 "passed on a wrong dW' sum 3 times"
echo "3. 3 workers, the middle chain member tampers with the dW' sums: only it is evicted"

run honest : -np 2 "${W[@]}"
grep -q "evicting" "$T/honest.log" && { cat "$T/honest.log"; fail "honest: a worker was evicted"; }
run flood : -np 1 "${W[@]}" : -np 1 "${WF[@]}" --fault flood
evicted_only flood 1 "lost its connection"
grep -q "worker 1: sent a reply longer than its request allows" "$T/flood.log" || { cat "$T/flood.log"; fail "flood not refused"; }
h=$(cat "$T/honest.hwm") f=$(cat "$T/flood.hwm")
echo "master peak memory (VmHWM): honest $h kB, with a 2 GiB flooder $f kB"
[ "$h" -gt 0 ] && [ "$f" -gt 0 ] || fail "no peak memory sampled"
[ $((f * 10)) -le $((h * 12)) ] || fail "the flooder raised the master's peak memory above 1.2x ($f vs $h kB)"
run honest3 : -np 3 "${W[@]}"
run flood3 : -np 1 "${WF[@]}" --fault flood : -np 2 "${W[@]}"
evicted_only flood3 0 "lost its connection"
h=$(cat "$T/honest3.hwm") f=$(cat "$T/flood3.hwm")
echo "3 workers: honest $h kB, with the flooder $f kB"
[ "$h" -gt 0 ] && [ $((f * 10)) -le $((h * 12)) ] || fail "3 workers: peak memory above 1.2x ($f vs $h kB)"
echo "4. a 2 GiB frame before an ACK: refused from its header, the flooder evicted, peak memory within 1.2x"
echo ok
