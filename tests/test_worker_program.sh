#!/usr/bin/env bash
# tempo-worker contains only the protocol, the operand cache and the GEMM backends: nm finds
# no model, optimizer, dataset, training, checkpoint, obfuscation-key or sealing symbol in it
# (and does find the worker core); its CLI refuses bad options with exit status 2.
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
n=$(echo "$syms" | grep -c '^tempo_')
"$P" --backend tpu >/dev/null 2>&1; [ $? -eq 2 ] || { echo "FAIL: --backend tpu not a usage error"; exit 1; }
"$P" --fault bogus >/dev/null 2>&1; [ $? -eq 2 ] || { echo "FAIL: --fault bogus not a usage error"; exit 1; }
"$P" --tf32 >/dev/null 2>&1; [ $? -eq 2 ] || { echo "FAIL: --tf32 without cuda not a usage error"; exit 1; }
"$P" --help | grep -q "mpirun .*-np 1 tempo train" || { echo "FAIL: help"; exit 1; }
echo "ok: $n tempo_ symbols, none of the master's"
