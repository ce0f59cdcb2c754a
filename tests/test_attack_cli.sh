#!/usr/bin/env bash
# test_attack_cli.sh - `tempo-attack attack` and `tempo-attack privacy` end to end on a tiny run: one
# MLP step in tempo mode and the same step in plain mode (the truth). Asserts that the
# scoring aligns every blinded weight to the plaintext (truth_alignable 1: the trail holds
# exactly permuted scalings, so both runs pin the fp32 wire: the default bf16 one rounds them), that the weight attack ran on all 3 layers, that the label
# attack groups the batch by class exactly, that the
# privacy report lists the products with the documented coefficient entropy, and the
# exit codes for bad usage.
set -euo pipefail
T="${TEMPO_BUILD:-build}/tempo"
A="${TEMPO_BUILD:-build}/tempo-attack"
D=$(mktemp -d /tmp/tempo_attack_cli.XXXXXX)
trap 'rm -rf "$D"' EXIT
mkdir -p "$D/t" "$D/p"
"$T" train --model mlp --mode tempo --wire fp32 --protect none --audit "$D/t" --max-steps 1 --no-eval --batch-size 16 --key-seed 3 --out "$D/rt" --quiet >/dev/null
"$T" train --model mlp --mode plain --wire fp32 --audit "$D/p" --max-steps 1 --no-eval --batch-size 16 --out "$D/rp" --quiet >/dev/null
out=$("$A" attack --audit "$D/t" --truth "$D/p" --model mlp)
echo "$out" | grep -q '^result truth_alignable 1$' || { echo "FAIL: truth not aligned: $out"; exit 1; }
echo "$out" | grep -q '^result weights_attacked 3$' || { echo "FAIL: weights_attacked: $out"; exit 1; }
echo "$out" | grep -q '^result weight_perm_recovered ' || { echo "FAIL: no weight result"; exit 1; }
# label attack: every row of the head's dY* has one negative entry, and grouping the
# batch by it matches the true labels (read from the plain trail) exactly
echo "$out" | grep -q '^result label_rows_one_negative 1$' || { echo "FAIL: label invariant: $out"; exit 1; }
echo "$out" | grep -q '^result label_recovered_up_to_renaming 1$' || { echo "FAIL: labels: $out"; exit 1; }
# the default policy (ends) keeps fc1 and the head on the master: the trail holds fc2 alone,
# the suite aligns it to the truth's middle product and says that the head is not there
mkdir -p "$D/e"
"$T" train --model mlp --mode tempo --wire fp32 --audit "$D/e" --max-steps 1 --no-eval --batch-size 16 --key-seed 3 --out "$D/re" --quiet >/dev/null
out=$("$A" attack --audit "$D/e" --truth "$D/p" --model mlp)
echo "$out" | grep -q '^result weights_attacked 1$' || { echo "FAIL: ends trail: $out"; exit 1; }
echo "$out" | grep -q '^result truth_alignable 1$' || { echo "FAIL: ends trail not aligned: $out"; exit 1; }
echo "$out" | grep -q '^result label_head_in_trail 0$' || { echo "FAIL: ends trail head: $out"; exit 1; }
priv=$("$A" privacy --audit "$D/t")
echo "$priv" | grep -q 'h(K) = 25.97 bits' || { echo "FAIL: privacy: $priv"; exit 1; }
[ "$(echo "$priv" | grep -c '^ *[0-9] ')" = 3 ] || { echo "FAIL: privacy rows: $priv"; exit 1; }
set +e
"$A" attack >/dev/null 2>&1; [ $? = 2 ] || { echo "FAIL: attack without --audit must exit 2"; exit 1; }
"$A" attack --audit "$D/nowhere" >/dev/null 2>&1; [ $? = 1 ] || { echo "FAIL: missing trail must exit 1"; exit 1; }
"$A" privacy --bogus 1 >/dev/null 2>&1; [ $? = 2 ] || { echo "FAIL: bad option must exit 2"; exit 1; }
echo "test_attack_cli: ok"
