#!/usr/bin/env bash
# test_netfile_cli.sh - `--net FILE` as a user meets it: a network of one's own (not a built-in,
# no input shape declared: Fashion-MNIST's is taken) trains in tempo mode with 2 workers, its
# checkpoint evaluates, resumes and exports only with the same file, and the safetensors export
# holds its PyTorch names; malformed files and mismatches are refused with the file, line and
# column and a non-zero exit. The built-in files are installed by `make install` (test_install.sh).
set -u
CHECK_NAME=netcli . "$(dirname "$0")/check_common.sh"
SRC="${TEMPO_SRC_DIR:-$(cd "$(dirname "$0")/.." && pwd)}"
export OPENBLAS_NUM_THREADS=1

cat > "$tmp/tiny.net" <<'NET'
# a small CNN for 1x28x28 inputs
[net]
name = tiny-cnn

[conv]
name = c1
filters = 8
size = 3
stride = 2

[bn]
name = b1

[relu]

[residual]
name = r

[conv]
name = r.conv
filters = 8
size = 3
bias = false

[bn]
name = r.bn

[end]

[maxpool]
size = 2

[flatten]

[linear]
name = fc
NET

check "train --net in tempo mode" 0 "$T" train --net "$tmp/tiny.net" --mode tempo --workers 2 --max-steps 40 \
  --log-every 20 --out "$tmp/run" --no-progress
grep_in "the run is named after [net] name" "$tmp/run/metrics.jsonl" '"model":"tiny-cnn"'
grep_in "the run evaluated" "$tmp/run/metrics.jsonl" '"test_acc"'
acc=$(grep -o '"test_acc":[0-9.]*' "$tmp/run/metrics.jsonl" | tail -1 | cut -d: -f2)
n=$((n + 1))
if awk -v a="$acc" 'BEGIN { exit !(a > 0.5) }'; then echo "ok - it learns (test accuracy $acc)"; else
  echo "not ok - test accuracy $acc after 40 steps"; fails=$((fails + 1)); fi
check "eval without --net is refused" 2 "$T" eval "$tmp/run/model.ckpt" --mode local --quiet
grep_in "the refusal says --net" "$tmp/err" "a network of your own: --net FILE"
check "eval --net" 0 "$T" eval "$tmp/run/model.ckpt" --net "$tmp/tiny.net" --mode local --quiet
grep_in "eval prints the accuracy" "$tmp/out" "test accuracy"
check "resume --net continues" 0 "$T" train --resume "$tmp/run/checkpoint.ckpt" --net "$tmp/tiny.net" --max-steps 45 \
  --mode tempo --workers 2 --no-eval --quiet
check "export --net" 0 "$OWNER" export --format safetensors --net "$tmp/tiny.net" --out "$tmp/w.safetensors" \
  "$tmp/run/model.ckpt"
for t in c1.weight c1.bias b1.running_var b1.num_batches_tracked r.conv.weight r.bn.bias fc.weight fc.bias; do
  grep_in "export holds $t" "$tmp/w.safetensors" "\"$t\""
done
check "import back into a checkpoint" 0 "$OWNER" export --format ckpt --net "$tmp/tiny.net" --out "$tmp/back.ckpt" \
  "$tmp/w.safetensors"
check "the imported checkpoint evaluates" 0 "$T" eval "$tmp/back.ckpt" --net "$tmp/tiny.net" --mode local --quiet
same "same accuracy after export and import" "$(grep -o 'test accuracy [0-9.]*%' "$tmp/out")" \
  "$("$T" eval "$tmp/run/model.ckpt" --net "$tmp/tiny.net" --mode local --quiet | grep -o 'test accuracy [0-9.]*%')"
sed 's/name = tiny-cnn/name = other/' "$tmp/tiny.net" > "$tmp/other.net"
check "another network's file is refused" 1 "$T" eval "$tmp/run/model.ckpt" --net "$tmp/other.net" --mode local
grep_in "the refusal names both" "$tmp/err" "describes network 'other', not 'tiny-cnn'"

# refusals: malformed, --model with --net, a declared shape or class count the data lacks
check "a malformed file" 1 "$T" train --net "$SRC/tests/fixtures/bad-nets/02-unknown-key.net" --mode local --out "$tmp/x"
grep_in "FILE:LINE:COLUMN: reason" "$tmp/err" "02-unknown-key.net:6:1: unknown key 'fliters' in \[conv\]"
check "a missing file" 1 "$T" train --net "$tmp/none.net" --mode local --out "$tmp/x"
check "--model and --net" 2 "$T" train --model mlp --net "$tmp/tiny.net" --mode local --out "$tmp/x"
check "declared classes the data lacks" 1 "$T" train --net "$SRC/nets/examples/small-cnn.net" --mode local --out "$tmp/x"
grep_in "the mismatch is named" "$tmp/err" "small-cnn.net has 7 classes but the data has 10"
check "help names --net" 0 "$T" train --help
grep_in "train --help explains --net" "$tmp/out" "\-\-net FILE"
check "tempo models lists the six built-ins" 0 "$T" models
same "no test variant listed" "$(tr '\n' ' ' < "$tmp/out")" "mlp resnet20 resnet18 resnet50 vit-mini vit-tiny "
finish
