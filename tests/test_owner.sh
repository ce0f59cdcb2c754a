#!/usr/bin/env bash
# test_owner.sh - the model owner's workflow end to end (docs/confidential-io.md), with the
# owner's tools in tempo-owner ($OWNER) and the master in tempo ($T): keygen, seal the
# Fashion-MNIST files, train in the default tempo mode from sealed inputs
# (only sealed outputs appear), evaluate sealed, refuse flipped/truncated/swapped sealed files
# and checkpoints, resume from a sealed checkpoint, unseal, export safetensors; when
# /usr/bin/python3 has torch: the exported weights give PyTorch's twin the same test accuracy
# and loss as `tempo eval`, and PyTorch-written weights give Tempo the same as PyTorch.
set -u
SRC="${TEMPO_SRC_DIR:-$PWD}"
FM=/usr/share/datasets/fashion-mnist
CHECK_NAME=owner . "$(dirname "$0")/check_common.sh"

flip() { # file, offset: xor one byte with 0x01
  local b; b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
  printf "$(printf '\\%03o' $((b ^ 1)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
acc_of() { sed -n 's/^test accuracy \([0-9.]*%\) (loss \([0-9.]*\)).*/\1 \2/p' "$1"; }
K="$tmp/owner.key"

# --- keys
check "keygen" 0 "$OWNER" keygen "$K"
grep_in "keygen prints the key id" "$tmp/out" "id [0-9a-f]\{32\}"
n=$((n + 1)); if [ "$(stat -c %a "$K")" = 600 ]; then echo "ok - key file is 0600"; else echo "not ok - key mode $(stat -c %a "$K")"; fails=$((fails + 1)); fi
check "keygen refuses to overwrite" 1 "$OWNER" keygen "$K"
grep_in "overwrite hint" "$tmp/err" "--force"
check "seal needs a key" 2 "$OWNER" seal "$FM/t10k-labels-idx1-ubyte.gz"

# --- seal the dataset, train from sealed inputs (default mode: tempo)
check "seal Fashion-MNIST" 0 "$OWNER" seal --key-file "$K" --out-dir "$tmp/data" "$FM"/*-ubyte.gz
grep_in "seal names the label" "$tmp/out" "label data/train-labels-idx1-ubyte"
check "train from sealed inputs" 0 "$T" train --key-file "$K" --data-dir "$tmp/data" --max-steps 300 \
  --checkpoint-every 150 --log-every 100 --out "$tmp/run" --no-progress
grep_in "train says it seals" "$tmp/out" "sealed inputs and outputs"
n=$((n + 1))
if [ -f "$tmp/run/model.ckpt.sealed" ] && [ -f "$tmp/run/checkpoint.ckpt.sealed" ] && [ -f "$tmp/run/metrics.jsonl.sealed" ] &&
   [ -z "$(ls "$tmp/run" | grep -v '\.sealed$')" ]; then echo "ok - only sealed outputs"
else echo "not ok - outputs: $(ls "$tmp/run")"; fails=$((fails + 1)); fi
n=$((n + 1))
if grep -q -e TMPOCKPT -e '"loss"' "$tmp/run"/*; then echo "not ok - plaintext in outputs"; fails=$((fails + 1))
else echo "ok - no plaintext markers in outputs"; fi
check "train with a key ignores plain data" 1 "$T" train --key-file "$K" --data-dir "$FM" --max-steps 1 --out "$tmp/x"
grep_in "missing sealed data message" "$tmp/err" "tempo-owner seal"
# the evals compared exactly below run on the fp32 wire (the default bf16 one rounds blinded values
# differently under each run's fresh keys)
check "eval sealed" 0 "$T" eval --wire fp32 --key-file "$K" --data-dir "$tmp/data" "$tmp/run/model.ckpt.sealed"
eval_sealed=$(acc_of "$tmp/out")
check "key from a descriptor" 0 "$T" eval --key-file fd:3 --data-dir "$tmp/data" "$tmp/run/model.ckpt.sealed" 3<"$K"
check "eval of a sealed checkpoint needs the key" 2 "$T" eval "$tmp/run/model.ckpt.sealed" --mode local
grep_in "needs-key message" "$tmp/err" "key-file"
"$OWNER" keygen "$tmp/other.key" >/dev/null
check "wrong key refused" 1 "$T" eval --key-file "$tmp/other.key" --data-dir "$tmp/data" "$tmp/run/model.ckpt.sealed"
grep_in "wrong key message" "$tmp/err" "wrong --key-file"

# --- tampering: flipped bytes (header, first chunk, last byte), truncation, swapped files
size=$(stat -c %s "$tmp/run/model.ckpt.sealed")
for off in 0 20 30 50 200 70000 $((size - 1)); do
  cp "$tmp/run/model.ckpt.sealed" "$tmp/bad.ckpt.sealed"; flip "$tmp/bad.ckpt.sealed" "$off"
  check "checkpoint byte $off flipped refused" 1 "$T" eval --key-file "$K" --data-dir "$tmp/data" "$tmp/bad.ckpt.sealed"
  grep_in "refusal names the file ($off)" "$tmp/err" "bad.ckpt.sealed"
done
head -c $((size - 17)) "$tmp/run/model.ckpt.sealed" >"$tmp/bad.ckpt.sealed"
check "truncated checkpoint refused" 1 "$T" eval --key-file "$K" --data-dir "$tmp/data" "$tmp/bad.ckpt.sealed"
cp -r "$tmp/data" "$tmp/data2"
flip "$tmp/data2/t10k-labels-idx1-ubyte.gz.sealed" 3000
check "flipped dataset byte refused" 1 "$T" eval --key-file "$K" --data-dir "$tmp/data2" "$tmp/run/model.ckpt.sealed"
grep_in "dataset refusal names the file" "$tmp/err" "t10k-labels-idx1-ubyte.gz.sealed"
cp "$tmp/data/train-labels-idx1-ubyte.gz.sealed" "$tmp/data2/t10k-labels-idx1-ubyte.gz.sealed"
check "swapped dataset files refused" 1 "$T" eval --key-file "$K" --data-dir "$tmp/data2" "$tmp/run/model.ckpt.sealed"
grep_in "swap message" "$tmp/err" "swapped"

# --- resume from a sealed checkpoint: the same trajectory as an uninterrupted run (local mode: exact)
L=(--key-file "$K" --data-dir "$tmp/data" --mode local --log-every 100 --no-progress)
check "uninterrupted 300 steps (local)" 0 "$T" train "${L[@]}" --max-steps 300 --out "$tmp/full"
check "first 150 steps (local)" 0 "$T" train "${L[@]}" --max-steps 150 --out "$tmp/half"
check "resume 150 -> 300 from the sealed checkpoint" 0 "$T" train "${L[@]}" --max-steps 300 \
  --resume "$tmp/half/checkpoint.ckpt.sealed" --out "$tmp/half"
check "unseal both models" 0 "$OWNER" unseal --key-file "$K" --out-dir "$tmp/cmp" "$tmp/full/model.ckpt.sealed"
check "unseal resumed model" 0 "$OWNER" unseal --key-file "$K" --out "$tmp/cmp/resumed.ckpt" "$tmp/half/model.ckpt.sealed"
n=$((n + 1))
if cmp -s "$tmp/cmp/model.ckpt" "$tmp/cmp/resumed.ckpt"; then echo "ok - resumed model is bit-identical"
else echo "not ok - resumed model differs from the uninterrupted one"; fails=$((fails + 1)); fi
check "unseal resumed metrics" 0 "$OWNER" unseal --key-file "$K" --out-dir "$tmp/cmp" "$tmp/half/metrics.jsonl.sealed"
grep_in "resumed metrics kept the first run's lines" "$tmp/cmp/metrics.jsonl" '"step":100,'
grep_in "resumed metrics reach step 300" "$tmp/cmp/metrics.jsonl" '"step":300,'

# --- unseal and export on the owner side
check "unseal results" 0 "$OWNER" unseal --key-file "$K" --out-dir "$tmp/res" "$tmp/run/model.ckpt.sealed" "$tmp/run/metrics.jsonl.sealed"
grep_in "unsealed metrics are readable" "$tmp/res/metrics.jsonl" '"step":300'
cp "$tmp/run/model.ckpt.sealed" "$tmp/res/metrics.jsonl.sealed"
check "unseal refuses a renamed file" 1 "$OWNER" unseal --key-file "$K" "$tmp/res/metrics.jsonl.sealed"
check "plain eval of the unsealed model" 0 "$T" eval "$tmp/res/model.ckpt" --mode local
same "sealed and unsealed eval agree" "$eval_sealed" "$(acc_of "$tmp/out")"
check "export safetensors" 0 "$OWNER" export --format safetensors "$tmp/res/model.ckpt"
n=$((n + 1)); if [ -s "$tmp/res/model.safetensors" ]; then echo "ok - model.safetensors written"; else echo "not ok - no model.safetensors"; fails=$((fails + 1)); fi
check "export needs a format" 2 "$OWNER" export "$tmp/res/model.ckpt"
check "export round trip back to a checkpoint" 0 "$OWNER" export --format ckpt "$tmp/res/model.safetensors" --out "$tmp/rt.ckpt"
check "eval round trip" 0 "$T" eval "$tmp/rt.ckpt" --mode local
same "safetensors round trip keeps the accuracy" "$eval_sealed" "$(acc_of "$tmp/out")"

# --- PyTorch interop (needs torch in /usr/bin/python3)
if /usr/bin/python3 -c "import torch" >/dev/null 2>&1; then
  check "PyTorch loads the export" 0 /usr/bin/python3 "$SRC/tests/golden/interop_mlp.py" eval "$tmp/res/model.safetensors" "$FM"
  same "PyTorch accuracy and loss equal tempo eval" "$(acc_of "$tmp/out")" "$eval_sealed"
  check "PyTorch writes weights" 0 /usr/bin/python3 "$SRC/tests/golden/interop_mlp.py" make "$tmp/py.safetensors" "$FM"
  py=$(acc_of "$tmp/out")
  check "seal PyTorch weights" 0 "$OWNER" seal --key-file "$K" "$tmp/py.safetensors"
  check "import PyTorch weights (sealed)" 0 "$OWNER" export --format ckpt --key-file "$K" "$tmp/py.safetensors.sealed" --out "$tmp/py.ckpt.sealed"
  check "eval PyTorch weights in Tempo" 0 "$T" eval --wire fp32 --key-file "$K" --data-dir "$tmp/data" "$tmp/py.ckpt.sealed"
  same "Tempo accuracy and loss equal PyTorch's" "$(acc_of "$tmp/out")" "$py"
  check "train --init-from sealed PyTorch weights" 0 "$T" train --key-file "$K" --data-dir "$tmp/data" \
    --init-from "$tmp/py.safetensors.sealed" --max-steps 1 --lr 1e-9 --out "$tmp/init" --no-progress
else
  echo "skip - PyTorch interop: /usr/bin/python3 cannot import torch: skipped"
fi

finish
