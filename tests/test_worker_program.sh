#!/usr/bin/env bash
# tempo-worker contains only the protocol, the operand cache and the GEMM backends: nm finds
# no model, optimizer, dataset, training, checkpoint, obfuscation-key or sealing symbol in it
# (and does find the worker core), and no fault injection (that is in the test-only
# tests/tempo-worker-faulty, which nm shows has it); its CLI refuses bad options with exit
# status 2, --fault among them.
set -u
cd "$(dirname "$0")/.."
B="${TEMPO_BUILD:-build}"
P="$B/tempo-worker"
[ -x "$P" ] || { echo "FAIL: $P not built"; exit 1; }
syms=$(nm -C "$P" | awk '$2 ~ /^[TtDdBbRr]$/ {print $3}')
echo "$syms" | grep -q '^tempo_worker_handle$' || { echo "FAIL: worker core missing"; exit 1; }
echo "$syms" | grep -q '^tempo_msg_decode$' || { echo "FAIL: protocol missing"; exit 1; }
bad=$(echo "$syms" | grep -E '^tempo_(model|optim|dataset|batcher|train|ckpt|obf|keygen|verify_product|seal|key|params|mm_|engine|audit|resnet|vit|mlp|conv|linear|attention)' || true)
[ -z "$bad" ] || { echo "FAIL: master-side symbols in tempo-worker:"; echo "$bad" | head; exit 1; }
faults='^(tempo_worker_set_fault|tempo_worker_set_bad_sum|tempo_worker_faults_injected|tempo_fault_name|cheat_payload|remember_stale|on_result|on_sum|on_relay|on_flood|due|injector_of)$'
fbad=$(nm -C "$P" | awk '{print $NF}' | grep -E "$faults" || true)
[ -z "$fbad" ] || { echo "FAIL: fault injection in tempo-worker:"; echo "$fbad"; exit 1; }
! grep -aq "TEST FAULT INJECTION" "$P" || { echo "FAIL: tempo-worker carries the fault-injection code"; exit 1; }
F="$B/tests/tempo-worker-faulty"
[ -x "$F" ] || { echo "FAIL: $F not built"; exit 1; }
nm -C "$F" | awk '{print $NF}' | grep -q '^tempo_worker_set_fault$' || { echo "FAIL: the nm check finds no fault symbol even in $F"; exit 1; }
"$P" --help | grep -q -- "--fault" && { echo "FAIL: tempo-worker --help offers --fault"; exit 1; }
"$F" --help | grep -q -- "--fault KIND" || { echo "FAIL: $F --help has no --fault"; exit 1; }
"$F" --fault bogus >/dev/null 2>&1; [ $? -eq 2 ] || { echo "FAIL: faulty --fault bogus not a usage error"; exit 1; }
n=$(echo "$syms" | grep -c '^tempo_')
"$P" --backend tpu >/dev/null 2>&1; [ $? -eq 2 ] || { echo "FAIL: --backend tpu not a usage error"; exit 1; }
"$P" --fault bogus >/dev/null 2>&1; [ $? -eq 2 ] || { echo "FAIL: --fault bogus not a usage error"; exit 1; }
"$P" --tf32 >/dev/null 2>&1; [ $? -eq 2 ] || { echo "FAIL: --tf32 without cuda not a usage error"; exit 1; }
"$P" --help | grep -q "mpirun .*-np 1 tempo train" || { echo "FAIL: help"; exit 1; }
echo "ok: $n tempo_ symbols, none of the master's, no fault injection (the test-only program has it)"
