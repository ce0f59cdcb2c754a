#!/usr/bin/env bash
# test_cli.sh - the tempo program as a user meets it: help and version, exit status 2 with a
# hint for usage errors, 1 with a one-line message for runtime errors (missing dataset,
# corrupt checkpoint, wrong model for a checkpoint), and a short real training run + eval.
set -u
CHECK_NAME=cli . "$(dirname "$0")/check_common.sh"

check "help exits 0" 0 "$T" --help
for flag in --model --data --data-dir --epochs --max-steps --batch-size --lr --optimizer --seed --out --resume \
            --mode --workers --wire --verify-rounds --audit --init-from --checkpoint-every --log-every --privacy-report --version; do
  grep_in "help explains $flag" "$tmp/out" "$flag"
done
check "version exits 0" 0 "$T" --version
grep_in "version names the build" "$tmp/out" "tempo "
check "no command is a usage error" 2 "$T"
check "unknown command" 2 "$T" frobnicate
check "unknown flag" 2 "$T" train --no-such-flag
grep_in "unknown flag hint" "$tmp/err" "Try 'tempo --help'"
check "bad number" 2 "$T" train --epochs zero
check "missing value" 2 "$T" train --lr
check "unknown mode" 2 "$T" train --mode secret
check "unknown model" 2 "$T" train --model nosuch --max-steps 1 --mode local --out "$tmp/x"
grep_in "unknown model lists names" "$tmp/err" "mlp"
check "missing dataset" 1 "$T" train --data-dir /nonexistent --mode local --out "$tmp/x"
grep_in "missing dataset says what to do" "$tmp/err" "dataset-fashion-mnist"
check "eval needs a checkpoint" 2 "$T" eval
check "unknown wire" 2 "$T" train --wire fp16
check "shield has its own dtypes" 2 "$T" train --mode shield --workers 4 --wire bf16
grep_in "shield wire hint" "$tmp/err" "--shield-dtype"
check "16-bit wire trains" 0 "$T" train --mode tempo --wire bf16 --max-steps 20 --log-every 10 --out "$tmp/w16" --no-progress
grep_in "16-bit wire in the config" "$tmp/w16/metrics.jsonl" '"wire":"bf16"'
grep_in "16-bit wire: no failed check" "$tmp/out" "verify failures 0"
# the master's threads split the mixed Enc/Dec passes and the mixing blocks' generation
# (docs/obfuscation.md "Mixing blocks"): the same model at 1 and 2 threads, on both wires
for w in fp32 bf16; do
  for th in 1 2; do
    check "resnet20 tempo $w on $th thread(s)" 0 "$T" train --model resnet20 --wire $w --threads $th --max-steps 2 \
      --batch-size 32 --no-progress --no-eval --key-seed 3 --out "$tmp/th-$w-$th"
  done
  same "resnet20 tempo $w: the same model at 1 and 2 threads" "$(md5sum < "$tmp/th-$w-1/model.ckpt")" \
    "$(md5sum < "$tmp/th-$w-2/model.ckpt")"
done
check "train runs" 0 "$T" train --mode local --max-steps 30 --log-every 10 --out "$tmp/run" --no-progress
grep_in "metrics has steps" "$tmp/run/metrics.jsonl" '"images_per_s"'
grep_in "metrics has a summary" "$tmp/run/metrics.jsonl" '"summary"'
check "privacy report" 0 "$T" train --mode tempo --max-steps 1 --privacy-report --quiet --out "$tmp/pr"
grep_in "privacy report lists products" "$tmp/out" "H/instance"
check "eval runs" 0 "$T" eval "$tmp/run/model.ckpt" --mode local
grep_in "eval prints accuracy" "$tmp/out" "test accuracy"
cp "$tmp/run/model.ckpt" "$tmp/bad.ckpt"
printf '\x55' | dd of="$tmp/bad.ckpt" bs=1 seek=300 conv=notrunc status=none
check "corrupt checkpoint refused" 1 "$T" eval "$tmp/bad.ckpt" --mode local
grep_in "corrupt checkpoint message" "$tmp/err" "corrupt"
head -c 1000 "$tmp/run/model.ckpt" > "$tmp/short.ckpt"
check "truncated checkpoint refused" 1 "$T" eval "$tmp/short.ckpt" --mode local
check "wrong model for checkpoint" 1 "$T" train --model resnet20 --resume "$tmp/run/checkpoint.ckpt" --mode local --out "$tmp/y"
grep_in "wrong model message" "$tmp/err" "drop --model"
check "missing checkpoint" 1 "$T" eval "$tmp/none.ckpt" --mode local

finish
