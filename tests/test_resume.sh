#!/usr/bin/env bash
# test_resume.sh - interrupting and resuming `tempo train`, as the README promises: the resumed
# run continues in the checkpoint's folder and says where it resumes; in tempo mode it is
# exact (the checkpoint holds the engine's key and verification streams: 20 steps + resume to
# 40 gives the losses and the model file of 40 uninterrupted steps, bit for bit, even without
# --key-seed on resume); resuming a finished run says there is nothing to do; SIGINT/SIGTERM at
# a random step finish the step, write a checkpoint, say how to resume and exit 130/143, and
# the resumed run ends bit-identical to an uninterrupted one with every step once in
# metrics.jsonl; a second SIGINT aborts at once; after SIGKILL (periodic checkpoints by
# --checkpoint-minutes) metrics.jsonl is cut back to the checkpoint; stale temporary files of
# dead processes are removed; plain and shield mode resume exactly too. The issue names
# resnet20; this test uses the mlp to stay fast (the mechanism does not depend on the model).
# Skips without Fashion-MNIST.
set -u
cd "$(dirname "$0")/.."
CHECK_NAME=resume
. tests/check_common.sh
if [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  echo "ok - skipped: no Fashion-MNIST in /usr/share/datasets/fashion-mnist"
  finish
  exit
fi
C=(--mode tempo --workers 2 --batch-size 32 --log-every 1 --no-progress)
losses() { grep -o '^{"step":[0-9]*,"epoch":[0-9]*,"loss":[0-9.]*' "$1/metrics.jsonl" | md5sum | cut -c1-32; }
steps_once() { # dir, steps: step records 1..steps, each once
  local got
  got=$(grep -o '^{"step":[0-9]*' "$1/metrics.jsonl" | cut -d: -f2 | tr '\n' ' ')
  same "$1: step records 1..$2, each once" "$got" "$(seq -s ' ' 1 "$2") "
}
identical() { # name, file a, file b
  n=$((n + 1))
  if cmp -s "$2" "$3"; then echo "ok - $1"; else echo "not ok - $1: $2 and $3 differ"; fails=$((fails + 1)); fi
}
wait_step() { # pid, dir, step: waits until dir/metrics.jsonl records the step
  for _ in $(seq 1 3000); do
    grep -q "^{\"step\":$3," "$2/metrics.jsonl" 2>/dev/null && return 0
    kill -0 "$1" 2>/dev/null || return 1
    sleep 0.02
  done
  return 1
}

# --- exact resume in tempo mode, into the checkpoint's own folder
check "40 steps uninterrupted (--key-seed 7)" 0 "$T" train "${C[@]}" --key-seed 7 --max-steps 40 --out "$tmp/full"
check "the same run again" 0 "$T" train "${C[@]}" --key-seed 7 --max-steps 40 --out "$tmp/full2"
identical "two uninterrupted seeded runs are bit-identical" "$tmp/full/model.ckpt" "$tmp/full2/model.ckpt"
check "20 steps" 0 "$T" train "${C[@]}" --key-seed 7 --max-steps 20 --out "$tmp/half"
sh -c 'exit 0' & dead=$!
wait "$dead"
: >"$tmp/half/checkpoint.ckpt.tmp.$dead"
: >"$tmp/half/model.ckpt.tmp.$dead"
: >"$tmp/half/checkpoint.ckpt.tmp.$$"
# no --out (the checkpoint's folder) and no --key-seed (the checkpoint's streams), from another folder
mkdir -p "$tmp/cwd"
check "resume to 40" 0 env -C "$tmp/cwd" "$(cd "$(dirname "$T")" && pwd)/tempo" train --resume "$tmp/half/checkpoint.ckpt" --max-steps 40 \
  --log-every 1 --no-progress
grep_in "it says where it resumes" "$tmp/out" "resuming from step 20 (epoch 1"
grep_in "it writes into the checkpoint's folder" "$tmp/out" "out $tmp/half\$"
check "stale temporary files of a dead process are removed" 0 \
  test ! -e "$tmp/half/checkpoint.ckpt.tmp.$dead" -a ! -e "$tmp/half/model.ckpt.tmp.$dead"
check "a running process's temporary file stays" 0 test -e "$tmp/half/checkpoint.ckpt.tmp.$$"
rm -f "$tmp/half/checkpoint.ckpt.tmp.$$"
same "resumed losses equal the uninterrupted ones" "$(losses "$tmp/half")" "$(losses "$tmp/full")"
identical "resumed model.ckpt is bit-identical" "$tmp/half/model.ckpt" "$tmp/full/model.ckpt"
identical "resumed checkpoint.ckpt is bit-identical" "$tmp/half/checkpoint.ckpt" "$tmp/full/checkpoint.ckpt"
steps_once "$tmp/half" 40
check "nothing went to runs/MODEL" 0 test ! -e "$tmp/cwd/runs"

# --- the other offloaded modes: plain and shield (4 workers), 12 steps vs 6 + resume
for mode in plain shield; do
  M=(--mode $mode --workers 4 --batch-size 32 --key-seed 3 --no-progress --quiet)
  check "$mode: 12 steps" 0 "$T" train "${M[@]}" --max-steps 12 --out "$tmp/$mode-full"
  check "$mode: 6 steps" 0 "$T" train "${M[@]}" --max-steps 6 --out "$tmp/$mode-part"
  check "$mode: resume to 12" 0 "$T" train --resume "$tmp/$mode-part/checkpoint.ckpt" --mode $mode --workers 4 \
    --max-steps 12 --quiet
  identical "$mode: resumed model.ckpt is bit-identical" "$tmp/$mode-part/model.ckpt" "$tmp/$mode-full/model.ckpt"
done

# --- a finished run: nothing to do, said clearly, nothing written
cp "$tmp/half/checkpoint.ckpt" "$tmp/before.ckpt"
check "resume a finished run" 0 "$T" train --resume "$tmp/half/checkpoint.ckpt"
grep_in "it says there is nothing to do" "$tmp/out" "nothing to do: .* is at step 40"
grep_in "it says how to go on" "$tmp/out" "pass --max-steps N with N > 40"
identical "the checkpoint was not touched" "$tmp/before.ckpt" "$tmp/half/checkpoint.ckpt"

# --- SIGINT and SIGTERM at a random step, then resume: the uninterrupted run's model, each step once
check "120 steps uninterrupted" 0 "$T" train "${C[@]}" --max-steps 120 --key-seed 9 --out "$tmp/u120"
for sig in INT TERM; do
  want=$([ $sig = INT ] && echo 130 || echo 143)
  k=$((5 + RANDOM % 40))
  "$T" train "${C[@]}" --max-steps 120 --key-seed 9 --out "$tmp/$sig" >"$tmp/$sig.out" 2>"$tmp/$sig.err" &
  pid=$!
  wait_step "$pid" "$tmp/$sig" "$k"
  kill -$sig "$pid"
  wait "$pid"
  same "SIG$sig after step $k: exit status" "$?" "$want"
  grep_in "SIG$sig: the message says where and how to resume" "$tmp/$sig.err" \
    "interrupted at step [0-9]*; checkpoint written to $tmp/$sig/checkpoint.ckpt; resume with: tempo train --resume $tmp/$sig/checkpoint.ckpt"
  check "SIG$sig: no model.ckpt for an interrupted run" 0 test ! -e "$tmp/$sig/model.ckpt"
  check "SIG$sig: resume" 0 "$T" train --resume "$tmp/$sig/checkpoint.ckpt" --log-every 1 --no-progress
  identical "SIG$sig: resumed model.ckpt is the uninterrupted run's" "$tmp/$sig/model.ckpt" "$tmp/u120/model.ckpt"
  steps_once "$tmp/$sig" 120
done

# --- a second SIGINT aborts at once (slow steps: batch 8192), without a checkpoint. The
# process _exit()s with its buffers still allocated, on purpose; under make check's
# AddressSanitizer the leak check at _exit then turned exit status 130 into 1 in some runs, so
# this one run has leak detection off (the rest of the suite keeps it).
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" "$T" train --mode tempo --batch-size 8192 --max-steps 50 --log-every 1 --no-progress --out "$tmp/twice" \
  >"$tmp/twice.out" 2>"$tmp/twice.err" &
pid=$!
wait_step "$pid" "$tmp/twice" 1
kill -INT "$pid"
sleep 0.05
kill -INT "$pid"
wait "$pid"
rc=$?
same "two SIGINTs: exit status 130" "$rc" 130
[ "$rc" = 130 ] || sed 's/^/    /' "$tmp/twice.err" | tail -5 # what it printed (an abort says why)
grep_in "two SIGINTs: aborted at once" "$tmp/twice.err" "interrupted again: exiting at once"
check "two SIGINTs: no checkpoint" 0 test ! -e "$tmp/twice/checkpoint.ckpt"

# --- SIGKILL after periodic checkpoints (--checkpoint-minutes): metrics cut back, exact resume
k=$((20 + RANDOM % 40))
"$T" train "${C[@]}" --max-steps 120 --key-seed 9 --checkpoint-minutes 0.0002 --out "$tmp/kill" \
  >"$tmp/kill.out" 2>&1 &
pid=$!
wait_step "$pid" "$tmp/kill" "$k"
kill -KILL "$pid"
wait "$pid" 2>/dev/null
check "SIGKILL after step $k: resume from the last periodic checkpoint" 0 \
  "$T" train --resume "$tmp/kill/checkpoint.ckpt" --log-every 1 --no-progress
grep_in "it resumes past step 0" "$tmp/out" "resuming from step [1-9]"
identical "SIGKILL: resumed model.ckpt is the uninterrupted run's" "$tmp/kill/model.ckpt" "$tmp/u120/model.ckpt"
steps_once "$tmp/kill" 120

# --- the flag
check "--checkpoint-minutes in the help" 0 sh -c "'$T' train --help | grep -q -- --checkpoint-minutes"
check "--checkpoint-minutes needs a number >= 0" 2 "$T" train --checkpoint-minutes -1
finish
