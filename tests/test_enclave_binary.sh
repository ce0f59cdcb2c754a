#!/usr/bin/env bash
# test_enclave_binary.sh - the binary the enclave runs holds only the master. nm finds in
# tempo no attack code (src/attack: the suite, model theft, weight matching, linking, patch
# recovery, Sinkhorn balancing, assignment, the trail reader), no privacy report over a trail
# and no owner-tool command (keygen, seal, unseal, export), but does find training, the owner
# key's provisioning and the unsealing that training on sealed data needs. The same patterns
# do match in tempo-owner and tempo-attack (so a pattern cannot go stale unnoticed). Asked
# for a moved command, tempo names the program that has it in one line, exit 2. The Gramine
# manifest runs and trusts tempo and no other program.
set -u
CHECK_NAME=enclave . "$(dirname "$0")/check_common.sh"
SRC="${TEMPO_SRC_DIR:-$PWD}"

syms() { nm "$1" 2>/dev/null | awk 'NF >= 2 {print $NF}' | sed 's/\..*//' | sort -u; }
# What the master must not hold. Public names, and a few static helpers of the tool programs
# (present if their object files are linked in).
FORBIDDEN='^(tempo_cmd_(keygen|seal|unseal|export|attack|privacy)|tempo_attack_[a-z_]+|tempo_trail_[a-z_]+'
FORBIDDEN+='|tempo_sinkhorn|tempo_balance|tempo_balance_apply|tempo_assign|tempo_privacy_report'
FORBIDDEN+='|seal_or_unseal|parse_seal_opts|derive_name)$'
has_none() { # name, symbols file
  n=$((n + 1))
  local bad; bad=$(grep -E "$FORBIDDEN" "$2" | tr '\n' ' ')
  if [ -z "$bad" ]; then echo "ok - $1"; else echo "not ok - $1: $bad"; fails=$((fails + 1)); fi
}
has_all() { # name, symbols file, symbol...
  local name=$1 f=$2 missing=""; shift 2
  n=$((n + 1))
  for s in "$@"; do grep -qx "$s" "$f" || missing="$missing $s"; done
  if [ -z "$missing" ]; then echo "ok - $name"; else echo "not ok - $name: missing$missing"; fails=$((fails + 1)); fi
}

syms "$T" >"$tmp/tempo.syms"
syms "$OWNER" >"$tmp/owner.syms"
syms "$ATTACK" >"$tmp/attack.syms"
has_all "tempo holds the master (training, key provisioning, unsealing inputs)" "$tmp/tempo.syms" \
  main tempo_train_run tempo_eval_checkpoint_sealed tempo_owner_key_provision tempo_unseal_read tempo_privacy_bits
has_none "tempo holds no attack, privacy-report or owner-tool code" "$tmp/tempo.syms"
has_all "tempo-owner holds the owner's commands" "$tmp/owner.syms" \
  tempo_cmd_keygen tempo_cmd_seal tempo_cmd_unseal tempo_cmd_export seal_or_unseal
has_all "tempo-attack holds the attacks and the privacy report" "$tmp/attack.syms" tempo_cmd_attack tempo_cmd_privacy \
  tempo_attack_run tempo_attack_match_weight tempo_attack_link tempo_attack_finetune tempo_trail_load_step \
  tempo_sinkhorn tempo_assign tempo_privacy_report
n=$((n + 1))
if grep -qE "$FORBIDDEN" "$tmp/owner.syms" && grep -qE "$FORBIDDEN" "$tmp/attack.syms"; then
  echo "ok - the forbidden patterns match the tools' symbols"
else echo "not ok - the forbidden patterns match nothing in the tools"; fails=$((fails + 1)); fi

# the moved commands: one line naming the program that has them, exit 2
for c in keygen seal unseal export attack privacy; do
  case $c in attack | privacy) p=tempo-attack ;; *) p=tempo-owner ;; esac
  check "tempo $c is a usage error" 2 "$T" "$c" --help
  grep_in "tempo $c names $p" "$tmp/err" "run '$p $c'"
  same "tempo $c: one line on stderr, nothing on stdout" "1 0" "$(wc -l <"$tmp/err") $(wc -c <"$tmp/out")"
done
check "tempo train still runs its help" 0 "$T" train --help

# the tools' programs: help, version, usage errors
for p in "$OWNER" "$ATTACK"; do
  name=$(basename "$p")
  check "$name --help exits 0" 0 "$p" --help
  grep_in "$name help names its program" "$tmp/out" "usage: $name <command>"
  check "$name --version exits 0" 0 "$p" --version
  grep_in "$name version names it" "$tmp/out" "^$name "
  check "$name without a command is a usage error" 2 "$p"
  check "$name unknown command" 2 "$p" frobnicate
  grep_in "$name unknown command hint" "$tmp/err" "Try '$name --help'"
  check "$name train is the master's" 2 "$p" train
  grep_in "$name train names tempo" "$tmp/err" "run 'tempo train'"
done

# the Gramine manifest: the entry point and the only program it mounts and trusts is tempo
# (every file:tempo... it names is the master; the tools are not mentioned at all)
M="$SRC/deploy/gramine/tempo.manifest.template"
grep_in "manifest runs /tempo" "$M" '^libos.entrypoint = "/tempo"$'
grep_in "manifest runs tempo train" "$M" '^loader.argv = \["tempo", "train"'
grep_in "manifest trusts the tempo binary" "$M" '^ *"file:tempo",$'
same "manifest names no program but tempo" "file:tempo file:tempo" \
  "$(grep -o 'file:tempo[^"]*' "$M" | tr '\n' ' ' | sed 's/ $//')"
n=$((n + 1))
if grep -qE 'tempo-(owner|attack)' "$SRC"/deploy/gramine/*; then
  echo "not ok - deploy/gramine names a tool program: $(grep -hE 'tempo-(owner|attack)' "$SRC"/deploy/gramine/* | head -3)"
  fails=$((fails + 1))
else echo "ok - deploy/gramine names no tool program"; fi

finish
