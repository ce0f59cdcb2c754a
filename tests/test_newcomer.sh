#!/usr/bin/env bash
# test_newcomer.sh - what a newcomer trips over (issue 15), as a user meets it on the command line:
# per-command --help, the man page naming every command and flag, tempo-worker started alone,
# progress lines off a terminal (training and eval), the test accuracy of a run ended by
# --max-steps, metrics.jsonl's config record and timestamps, `tempo plot`, non-finite weights
# and a diverging run, and the messages for a wrong --init-from file, a sealed data folder
# without --key-file and a train option given to eval.
set -u
CHECK_NAME=newcomer . "$(dirname "$0")/check_common.sh"
SRC="${TEMPO_SRC_DIR:-$(dirname "$0")/..}"
W="${TEMPO_BUILD:-build}/tempo-worker"

# --help of each command is its own
check "train --help" 0 "$T" train --help
grep_in "train --help is the train help" "$tmp/out" "usage: tempo train"
grep_in "train --help lists --no-eval" "$tmp/out" "--no-eval"
grep_in "train --help lists --max-steps" "$tmp/out" "--max-steps"
grep_in "train --help lists the engine options" "$tmp/out" "--shield-dtype"
n=$((n + 1)); if grep -q "^commands:" "$tmp/out"; then echo "not ok - train --help is the global help"; fails=$((fails + 1)); else echo "ok - train --help is not the global help"; fi
check "eval --help" 0 "$T" eval --help
grep_in "eval --help is the eval help" "$tmp/out" "usage: tempo eval CHECKPOINT"
n=$((n + 1)); if grep -q -- "--epochs" "$tmp/out"; then echo "not ok - eval --help offers train options"; fails=$((fails + 1)); else echo "ok - eval --help has no train options"; fi
check "plot --help" 0 "$T" plot --help
grep_in "plot --help" "$tmp/out" "usage: tempo plot RUN_DIR"
check "global help names plot" 0 "$T" --help
grep_in "global help names plot" "$tmp/out" "plot RUN"

# the man page covers every command and every flag of programs/tempo.c's option tables
man="$SRC/docs/tempo.1"
for cmd in "tempo train" "tempo eval" "tempo plot" "tempo models"; do
  grep_in "man page: $cmd" "$man" "^\.B $cmd"
done
for prog in tempo-owner tempo-attack tempo-worker; do grep_in "man page names $prog" "$man" "$prog"; done
flags=$(grep -o '{"[a-z0-9-]*", *\(required\|no\)_argument' "$SRC/programs/tempo.c" | sed 's/{"\([^"]*\)".*/\1/' | sort -u)
[ -n "$flags" ] || { echo "not ok - no flags found in programs/tempo.c"; fails=$((fails + 1)); }
for f in $flags; do
  grep_in "man page documents --$f" "$man" "\\\\-\\\\-$(echo "$f" | sed 's/-/\\\\-/g')"
done

# the README: one "Pick tempo / pick shield" paragraph, no "float32 default", every src/ folder in
# its Layout paragraph, an mpirun line that runs as root on a small machine
readme="$SRC/README.md"
same "README: one pick-tempo paragraph" "$(grep -c 'Pick `tempo`' "$readme")" 1
n=$((n + 1)); if grep -q "float32 default" "$readme"; then echo "not ok - README says float32 default"; fails=$((fails + 1)); else echo "ok - README: no float32 default"; fi
sed -n '/^## Layout/,/^## /p' "$readme" > "$tmp/layout"
for d in "$SRC"/src/*/; do d=$(basename "$d"); grep_in "README Layout names src/$d" "$tmp/layout" "\`$d\`"; done
grep_in "README mpirun line runs as root, oversubscribed" "$readme" "^mpirun --allow-run-as-root --oversubscribe"

# tempo-worker alone says what to do itself (before MPI_Init, not an MPI_Abort notice)
if "$T" --version | grep -q MPI; then
  check "worker alone" 2 "$W"
  grep_in "worker alone: launch the master first" "$tmp/err" "launch the master first"
  grep_in "worker alone: the mpirun line" "$tmp/err" "mpirun -np 1 tempo train"
  n=$((n + 1)); if grep -q "MPI_ABORT" "$tmp/err" "$tmp/out"; then echo "not ok - worker alone aborts MPI"; fails=$((fails + 1)); else echo "ok - worker alone: no MPI_ABORT"; fi
fi

# a train option given to eval names the option, not its value
check "eval --data is a usage error" 2 "$T" eval x.ckpt --data cifar10
grep_in "eval --data names the option" "$tmp/err" "'--data' is a train option"

# off a terminal: a plain line every --progress-every seconds between the --log-every lines,
# eval progress too; a --max-steps run ends with a test evaluation
check "train with plain progress lines" 0 "$T" train --mode local --threads 1 --max-steps 40 --log-every 5 \
  --progress-every 0.001 --out "$tmp/run"
cp "$tmp/out" "$tmp/train.out"
n=$((n + 1))
if grep -Eq '^step ([1-9]|[1-3][0-9]) epoch 1 batch [0-9]+/938 ' "$tmp/train.out" &&
   [ "$(grep -Ec '^step [0-9]+ epoch' "$tmp/train.out")" -gt 8 ]; then
  echo "ok - progress lines between the logged steps"
else
  echo "not ok - no time-based progress lines"; sed 's/^/    /' "$tmp/train.out" | head -5; fails=$((fails + 1))
fi
grep_in "eval progress lines during training" "$tmp/train.out" "^eval [0-9]*/10000 images"
grep_in "max-steps run: done line has the test accuracy" "$tmp/train.out" "^done: 40 steps in .*, test accuracy [0-9.]*%"
grep_in "max-steps run: test record in metrics" "$tmp/run/metrics.jsonl" '"step":40,"test_loss":'
grep_in "max-steps run: summary has the test accuracy" "$tmp/run/metrics.jsonl" '"summary":{[^}]*"test_acc":0\.[0-9]'
# the bar (forced on without a terminal): redrawn in place between the logged steps, during eval too
check "train with the bar" 0 "$T" train --mode local --threads 1 --max-steps 40 --log-every 1000 --progress \
  --progress-every 0.001 --out "$tmp/bar"
same "the bar is redrawn during training" "$(tr '\r' '\n' < "$tmp/out" | grep -c '^\[epoch 1/1\] ' | awk '{print ($1 > 5)}')" 1
grep_in "the bar is drawn during eval" "$tmp/out" "\[eval\] "
check "quiet: no progress" 0 "$T" train --mode local --threads 1 --max-steps 10 --progress-every 0.001 --quiet --out "$tmp/q"
n=$((n + 1)); if grep -Eq '^(step|eval) ' "$tmp/out"; then echo "not ok - --quiet printed progress"; fails=$((fails + 1)); else echo "ok - --quiet prints no progress"; fi
check "--no-eval" 0 "$T" train --mode local --threads 1 --max-steps 10 --no-eval --no-progress --out "$tmp/ne"
n=$((n + 1)); if grep -q "test accuracy" "$tmp/out"; then echo "not ok - --no-eval evaluated"; fails=$((fails + 1)); else echo "ok - --no-eval: no test accuracy"; fi
check "eval with plain progress lines" 0 "$T" eval "$tmp/run/model.ckpt" --mode local --progress-every 0.001
grep_in "eval progress lines" "$tmp/out" "^eval [0-9]*/10000 images"
grep_in "eval result" "$tmp/out" "^test accuracy"

# metrics.jsonl: a first config record, a time on every record
head -1 "$tmp/run/metrics.jsonl" > "$tmp/first"
grep_in "metrics starts with the config" "$tmp/first" '^{"type":"config","time":"20'
for k in '"model":"mlp"' '"lr":' '"batch_size":64' '"mode":"local"' '"verify_rounds":1' '"seed":1' '"key_seed":null' \
         '"threads":1' '"tempo_version":"'; do
  grep_in "config record has $k" "$tmp/first" "$k"
done
same "every record has a time" "$(grep -c '"time":"20[0-9-]*T[0-9:.]*Z","elapsed":' "$tmp/run/metrics.jsonl")" \
  "$(wc -l < "$tmp/run/metrics.jsonl" | tr -d ' ')"

# tempo plot: an SVG that parses, one polyline point per logged step
check "plot" 0 "$T" plot "$tmp/run" -o "$tmp/curves.svg"
steps=$(grep -c '^{"step":' "$tmp/run/metrics.jsonl")
got=$(python3 -c '
import sys, xml.dom.minidom
d = xml.dom.minidom.parse(sys.argv[1])
pl = {p.getAttribute("class"): len(p.getAttribute("points").split()) for p in d.getElementsByTagName("polyline")}
print(pl.get("loss", 0), pl.get("acc", 0), pl.get("images_per_s", 0), pl.get("test_acc", 0), len(d.getElementsByTagName("text")) > 10)
' "$tmp/curves.svg" 2>&1)
same "plot: polylines of loss, accuracy, throughput and test accuracy" "$got" "$steps $steps $steps 1 True"
check "plot writes RUN/metrics.svg by default" 0 "$T" plot "$tmp/run"
n=$((n + 1)); if [ -s "$tmp/run/metrics.svg" ]; then echo "ok - default plot file"; else echo "not ok - no $tmp/run/metrics.svg"; fails=$((fails + 1)); fi
check "plot of a folder without metrics" 1 "$T" plot "$tmp/nothing"

# non-finite values: a NaN weight in --init-from is refused naming the tensor; a diverging run stops
check "export for a NaN file" 0 "$OWNER" export --format safetensors --out "$tmp/w.safetensors" "$tmp/run/model.ckpt"
python3 - "$tmp/w.safetensors" <<'EOF'
import json, struct, sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
off = 8 + n + h["fc2.weight"]["data_offsets"][0] + 4 * 5
b[off:off + 4] = struct.pack("<f", float("nan"))
open(p, "wb").write(b)
EOF
check "a NaN weight in --init-from is refused" 1 "$T" train --mode local --max-steps 1 --init-from "$tmp/w.safetensors" --out "$tmp/nan"
grep_in "NaN message names the tensor" "$tmp/err" "tensor 'fc2.weight' holds NaN at element 5"
check "a diverging run stops" 1 "$T" train --mode local --threads 1 --lr 100 --momentum 0 --max-steps 50 --out "$tmp/div"
grep_in "diverging run: loss is not finite" "$tmp/err" "loss is not finite at step [0-9]"

# --init-from with a checkpoint, a torch.save zip or a pickle: says what it is
check "--init-from a checkpoint" 2 "$T" train --mode local --max-steps 1 --init-from "$tmp/run/model.ckpt" --out "$tmp/x"
grep_in "checkpoint as init: what to use" "$tmp/err" "is a Tempo checkpoint, not a safetensors file: continue it with --resume"
printf 'PK\003\004\024\000\000\000\010\000archive/data.pkl' > "$tmp/model.pt"
check "--init-from a torch.save zip" 2 "$T" train --mode local --max-steps 1 --init-from "$tmp/model.pt" --out "$tmp/x"
grep_in "zip as init: convert it" "$tmp/err" "zip archive (the torch.save format)"
printf '\200\002\212\012l\374\234F\371 j\250' > "$tmp/old.pt"
check "--init-from a pickle" 2 "$T" train --mode local --max-steps 1 --init-from "$tmp/old.pt" --out "$tmp/x"
grep_in "pickle as init" "$tmp/err" "Python pickle"

# a sealed data folder without --key-file: says it is sealed, not "reinstall"
mkdir -p "$tmp/sealed"
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  : > "$tmp/sealed/$f.gz.sealed"
done
check "sealed Fashion-MNIST without a key" 2 "$T" train --mode local --max-steps 1 --data-dir "$tmp/sealed" --out "$tmp/x"
grep_in "sealed data: needs --key-file" "$tmp/err" "is sealed: pass the owner key with --key-file"
n=$((n + 1)); if grep -q "reinstall" "$tmp/err"; then echo "not ok - sealed data: suggests reinstalling"; fails=$((fails + 1)); else echo "ok - sealed data: no reinstall hint"; fi
mkdir -p "$tmp/csealed"
for f in data_batch_1 data_batch_2 data_batch_3 data_batch_4 data_batch_5 test_batch; do : > "$tmp/csealed/$f.bin.sealed"; done
check "sealed CIFAR-10 without a key" 2 "$T" train --data cifar10 --mode local --max-steps 1 --data-dir "$tmp/csealed" --out "$tmp/x"
grep_in "sealed CIFAR-10: needs --key-file" "$tmp/err" "is sealed: pass the owner key with --key-file"

finish
