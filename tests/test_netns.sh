#!/usr/bin/env bash
# Multi-host without a second host: the master in one network namespace, 2 CPU workers in
# another, joined only by a veth pair with non-loopback addresses (10.77.0.1/24 master,
# 10.77.0.2/24 workers), made here and removed on exit. Each rank advertises its address
# through TEMPO_NET_ADDR (src/mpi/net.c), MPI's own TCP traffic uses 10.77.0.0/24 too, and the
# PMIx server of mpirun (started in the master's namespace) takes its clients' connections on
# 10.77.0.1 (PMIX_MCA_ptl_tcp_*: a process in another namespace cannot reach its loopback).
# A 10-step tempo-mode run must log the same losses, bit for bit, as the same run over
# loopback, and the veth must have carried every reply the master downloaded (so the data did
# not take a shortcut).
# Skipped with a message where namespaces cannot be made (not root, no CAP_NET_ADMIN, no ip).
set -u
cd "$(dirname "$0")/.."
. tests/mpi_common.sh
command -v ip >/dev/null || { echo "skip: no 'ip' (iproute2)"; exit 0; }
[ "$(id -u)" = 0 ] || { echo "skip: network namespaces need root"; exit 0; }
NSM=tempo-m-$$ NSW=tempo-w-$$ VM=tvm$$ VW=tvw$$
netns_cleanup() {
  for ns in "$NSM" "$NSW"; do
    if ip netns list 2>/dev/null | grep -qw "$ns"; then
      for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done # only what this test started there
      ip netns del "$ns" 2>/dev/null
    fi
  done
  ip link del "$VM" 2>/dev/null || true # a veth never moved (it goes with its namespace otherwise)
  cleanup
}
trap netns_cleanup EXIT
if ! ip netns add "$NSM" 2>"$T/ns.err" || ! ip netns add "$NSW" 2>>"$T/ns.err" ||
   ! ip link add "$VM" type veth peer name "$VW" 2>>"$T/ns.err"; then
  echo "skip: cannot make network namespaces here ($(head -1 "$T/ns.err"))"; exit 0
fi
ip link set "$VM" netns "$NSM" && ip link set "$VW" netns "$NSW" &&
  ip -n "$NSM" addr add 10.77.0.1/24 dev "$VM" && ip -n "$NSW" addr add 10.77.0.2/24 dev "$VW" &&
  ip -n "$NSM" link set "$VM" up && ip -n "$NSW" link set "$VW" up &&
  ip -n "$NSM" link set lo up && ip -n "$NSW" link set lo up || fail "configuring the veth pair"
# bytes the workers' end of the veth received (rx) or sent (tx)
vbytes() { ip -n "$NSW" -s -j link show "$VW" | python3 -c "import json,sys; print(json.load(sys.stdin)[0]['stats64']['$1']['bytes'])"; }

ARGS=(train --max-steps 10 --log-every 1 --no-progress --no-eval --quiet --key-seed 7 --threads 1 --mode tempo)
timeout 120 "${MPIRUN[@]}" -np 1 "$B/tempo" "${ARGS[@]}" --out "$T/lo" : -np 2 "$B/tempo-worker" --backend cpu \
  > "$T/lo.log" 2>&1 || { cat "$T/lo.log"; fail "the loopback run"; }

NSRUN=(env PMIX_MCA_ptl_tcp_remote_connections=1 PMIX_MCA_ptl_tcp_if_include=10.77.0.0/24
       ip netns exec "$NSM" mpirun --allow-run-as-root --oversubscribe -quiet --mca btl self,tcp
       --mca btl_tcp_if_include 10.77.0.0/24 --mca oob_tcp_if_include lo)
rx0=$(vbytes rx) tx0=$(vbytes tx)
timeout 120 "${NSRUN[@]}" -np 1 env TEMPO_NET_ADDR=10.77.0.1 "$B/tempo" "${ARGS[@]}" --out "$T/ns" \
  : -np 2 ip netns exec "$NSW" env TEMPO_NET_ADDR=10.77.0.2 "$B/tempo-worker" --backend cpu \
  > "$T/ns.log" 2>&1 || { cat "$T/ns.log"; fail "the run across namespaces"; }
rx1=$(vbytes rx) tx1=$(vbytes tx)
[ "$(losses "$T/ns" | wc -l)" = 10 ] || fail "not 10 logged steps across namespaces"
diff <(losses "$T/lo") <(losses "$T/ns") || fail "the losses across namespaces differ from the loopback run's"
up=$(grep -o "uploaded [0-9.]* MB" "$T/ns.log" | grep -o "[0-9.]*")
down=$(grep -o "downloaded [0-9.]* MB" "$T/ns.log" | grep -o "[0-9.]*")
# Every reply crosses the veth; of the uploads, W' goes to the first worker only and is relayed
# to the second inside the workers' namespace, so at least half of what the engine counts.
awk -v down="$down" -v got=$((tx1 - tx0)) 'BEGIN {exit !(down > 0 && got >= down * 1e6 * 0.99)}' ||
  fail "the workers' veth sent $((tx1 - tx0)) bytes, the master downloaded $down MB"
awk -v up="$up" -v got=$((rx1 - rx0)) 'BEGIN {exit !(up > 0 && got >= up * 1e6 * 0.5)}' ||
  fail "the workers' veth received $((rx1 - rx0)) bytes, the master uploaded $up MB"
echo "master 10.77.0.1 ($NSM), 2 workers 10.77.0.2 ($NSW): 10 losses equal to the loopback run's" \
     "(last $(losses "$T/ns" | tail -1)); over the veth: $((rx1 - rx0)) bytes to the workers (the engine counts $up MB" \
     "uploaded, W' relayed among them), $((tx1 - tx0)) back (the master downloaded $down MB)"

echo ok
