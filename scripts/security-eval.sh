#!/usr/bin/env bash
# security-eval.sh - the security evaluation of docs/SECURITY.md, from one command.
#
# For each model (resnet20, vit-mini on Fashion-MNIST): trains a public "prior" model
# (local mode), fine-tunes it into the secret model, then records ONE training step of the
# secret model in every mode (tempo with --protect none, tempo with its default policy,
# shield) with --audit, and a plain-mode trail of the same step for scoring only. Runs `tempo-attack attack` on every trail with and without the
# prior (and, in shield mode, on each worker role's view), `tempo-attack privacy` on the tempo
# trail, and writes the tables between the markers of docs/SECURITY.md.
# Environment: TEMPO (the master, default build/tempo), TEMPO_ATTACK (the attacks, default
# build/tempo-attack), WORK (scratch, default
# /tmp/tempo-security; trails are deleted after use), DATA_DIR, PRE_STEPS (60), FT_STEPS
# (60), THEFT_STEPS (60), EVAL_SAMPLES (1000), MODELS ("resnet20 vit-mini"),
# MODES ("tempo:none tempo shield"; MODE:POLICY runs --mode MODE --protect POLICY, MODE alone
# its default policy), DOC (docs/SECURITY.md; "-" = do not write), ASSEMBLE_ONLY=1
# (rewrite the tables from the results already in WORK, running nothing), REUSE=1 (keep WORK's
# prior and secret models and the other modes' results: rerun only the MODES given), TABLE_MODES
# (the columns of the table, default MODES).
set -euo pipefail
cd "$(dirname "$0")/.."
T=${TEMPO:-build/tempo}
A=${TEMPO_ATTACK:-build/tempo-attack}
W=${WORK:-/tmp/tempo-security}
DATA=${DATA_DIR:-/usr/share/datasets/fashion-mnist}
PRE=${PRE_STEPS:-60}
FT=${FT_STEPS:-60}
THEFT=${THEFT_STEPS:-60}
EVALN=${EVAL_SAMPLES:-1000}
MODELS=${MODELS:-"resnet20 vit-mini"}
MODES=${MODES:-"tempo:none tempo shield"}
DOC=${DOC:-docs/SECURITY.md}
B=32
for b in "$T" "$A"; do [ -x "$b" ] || { echo "security-eval: build first (make -j2): $b missing" >&2; exit 1; }; done
mkdir -p "$W"
cp "$T" "$W/tempo-bin" && T=$W/tempo-bin # a rebuild during the run must not change them
cp "$A" "$W/tempo-attack-bin" && A=$W/tempo-attack-bin
log() { echo "security-eval: $*" >&2; }
run() { log "$*"; "$@"; }

for model in $MODELS; do
  [ "${ASSEMBLE_ONLY:-0}" = 1 ] && break
  D=$W/$model
  S1=$((PRE + FT)); S2=$((S1 + 1))
  if [ "${REUSE:-0}" = 1 ] && [ -f "$D/secret/checkpoint.ckpt" ]; then
    log "$model: reusing the prior and secret models of $D"; rm -rf "$D"/{truth,public,truth_run,public_run}
    mkdir -p "$D"/{truth,public}
  else
    rm -rf "$D" && mkdir -p "$D"/{truth,public}
    run "$T" train --model "$model" --mode local --schedule constant --max-steps "$PRE" --batch-size $B --seed 11 \
      --no-eval --out "$D/pre" --quiet
    run "$T" train --resume "$D/pre/checkpoint.ckpt" --mode local --max-steps "$S1" --no-eval --out "$D/secret" --quiet
    "$T" eval "$D/secret/model.ckpt" --mode local --batch-size 256 > "$D/secret_eval.txt" 2>&1 || true
    "$T" eval "$D/pre/model.ckpt" --mode local --batch-size 256 > "$D/pre_eval.txt" 2>&1 || true
  fi
  # every trail on the fp32 wire: the scoring aligns blinded values to the truth exactly, and a bf16
  # trail is the fp32 one rounded, so it cannot tell an attacker more than the fp32 trail measured here
  WIRE=(--wire fp32)
  run "$T" train --resume "$D/secret/checkpoint.ckpt" --mode plain "${WIRE[@]}" --max-steps "$S2" --no-eval --audit "$D/truth" \
    --out "$D/truth_run" --quiet
  run "$T" train --model "$model" --mode plain "${WIRE[@]}" --max-steps 1 --batch-size $B --seed 7 --no-eval --audit "$D/public" \
    --out "$D/public_run" --quiet
  for spec in $MODES; do
    mode=${spec%%:*}; pol=(); name=$mode
    if [ "$spec" != "$mode" ]; then pol=(--protect "${spec#*:}"); name=$mode-${spec#*:}; fi
    workers=2; roles=1; wire=("${WIRE[@]}")
    if [ "$mode" = shield ]; then workers=4; roles=4; wire=(); fi
    mkdir -p "$D/$name"
    if ! run "$T" train --resume "$D/secret/checkpoint.ckpt" --mode "$mode" "${pol[@]}" "${wire[@]}" --workers $workers --key-seed 5 \
      --max-steps "$S2" --no-eval --audit "$D/$name" --out "$D/${name}_run" --quiet; then
      log "$name failed on $model: left out of the table"; continue
    fi
    [ "$spec" = tempo:none ] && "$A" privacy --audit "$D/$name" > "$D/privacy.txt"
    for prior in none public; do
      pa=(); [ $prior = public ] && pa=(--prior "$D/pre/model.ckpt")
      for ((r = 0; r < roles; r++)); do
        theft=(); [ $r = 0 ] && theft=(--data-dir "$DATA" --finetune-steps "$THEFT" --eval-samples "$EVALN")
        run "$A" attack --audit "$D/$name" --model "$model" --truth "$D/truth" --public "$D/public" --batch $B \
          --roles $roles --role $r "${pa[@]}" "${theft[@]}" --json "$D/${name}_${prior}_$r.json" \
          > "$D/${name}_${prior}_$r.txt"
      done
    done
    rm -f "$D/$name/trail.tat"
  done
  rm -f "$D/truth/trail.tat" "$D/public/trail.tat"
done

DEFAULT_POLICY=$("$T" train --help 2>&1 | sed -n 's/.*(default: \([a-z]*\) in.*/\1/p' | head -1)
python3 - "$W" "$DOC" "$PRE" "$FT" "$THEFT" "$EVALN" "${TABLE_MODES:-$MODES}" "${DEFAULT_POLICY:-?}" $MODELS <<'PY'
import glob, json, os, re, sys
w, doc, pre, ft, theft, evaln = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
specs, default_policy, models = sys.argv[7].split(), sys.argv[8], sys.argv[9:]
rows = [
  ("image_l0_in_trail", "Whole images: a 3x3 im2col of the raw images (resnet20's first layer input) is in the trail", "%"),
  ("image_l0_psnr_db", "Whole images from the first layer's input: PSNR, dB (public mean image in brackets)", "db"),
  ("image_l0_over_30db", "Whole images: share of the batch's images recovered above 30 dB", "%"),
  ("fmap_layers", "Feature maps: later 3x3 conv inputs in the trail", "n"),
  ("fmap_list", "Feature maps: share of samples above 30 dB per conv input where the attack applies (product: share)", "list"),
  ("label_head_in_trail", "Labels: the head's products are in the trail", "%"),
  ("weight_perm_recovered", "Weight matching: share of the secret permutations (in and out units) recovered", "%"),
  ("weight_rel_error", "Weight matching: relative error of the recovered weights (prior alone: in brackets)", "e"),
  ("weight_perm_recovered_cosine", "Direction matching (ArrowMatch-style cosine): share of the permutations recovered", "%"),
  ("weight_rel_error_cosine", "Direction matching: relative error of the recovered weights", "e"),
  ("theft_acc_prior", "Theft reference: accuracy of the attacker's prior itself (no prior: a fresh init)", "%"),
  ("theft_acc_blinded", "Theft: test accuracy of the model assembled from blinded weights as they are", "%"),
  ("theft_acc_recovered", "Theft: test accuracy after weight matching", "%"),
  ("theft_acc_blinded_ft1pct", "Theft: blinded weights fine-tuned on 1% of the train split", "%"),
  ("theft_acc_recovered_ft1pct", "Theft: recovered weights fine-tuned on 1%", "%"),
  ("theft_acc_scratch_1pct", "Theft baseline: trained from scratch on the same 1%", "%"),
  ("label_rows_one_negative", "Labels: rows of the head's dY* with exactly one negative entry (the label sign invariant)", "%"),
  ("label_recovered_up_to_renaming", "Labels: batch samples grouped by class from the head's dY* signs", "%"),
  ("label_recovered", "Labels: recovered outright (head's unit permutation from weight matching)", "%"),
  ("link_recovered", "Linking: input columns linked to their unit of the previous output (chance in brackets)", "%"),
  ("input_colperm_recovered", "Input recovery: share of the first layer's column permutation recovered", "%"),
  ("input_patch_psnr_db", "Input recovery: PSNR of recovered input patches, dB (mean-patch guess in brackets)", "db"),
  ("input_patches_over_20db", "Input recovery: share of patches recovered above 20 dB", "%"),
  ("truth_alignable", "Scoring check: share of weights the plaintext can be aligned to (1 = permuted scaling)", "%"),
]
def load(m, mode, prior):
    best = None
    for f in sorted(glob.glob(os.path.join(w, m, "%s_%s_*.json" % (mode, prior)))):
        d = json.load(open(f))
        if best is None: best = d; continue
        for k, v in d.items():  # the best role for the attacker
            if "error" in k: best[k] = min(best.get(k, v), v)
            elif not k.startswith("theft"): best[k] = max(best.get(k, v), v)
    return best
cols = []
def label(spec):
    mode, _, pol = spec.partition(":")
    if pol: return "%s --protect %s" % (mode, pol)
    return "tempo (default, --protect %s)" % default_policy if mode == "tempo" else mode
for m in models:
    for spec in specs:
        name = spec.replace(":", "-")
        for prior in ("none", "public"):
            d = load(m, name, prior)
            if d is None: continue
            fl = sorted((int(k[6:k.index("_", 6)]), v) for k, v in d.items() if k.startswith("fmap_p") and k.endswith("_over_30db"))
            d["fmap_list"] = ", ".join("p%d: %.0f%%" % (k, 100 * v) for k, v in fl) or "none"
            cols.append(("%s %s %s" % (m, label(spec), "prior" if prior == "public" else "no prior"), d))
# figures scored through the true permutations need a view that aligns to the plaintext
NEEDS_ALIGN = {"weight_perm_recovered", "link_recovered", "input_colperm_recovered", "label_recovered",
               "label_recovered_up_to_renaming", "input_patches_over_20db", "input_patch_psnr_db",
               "weight_perm_recovered_cosine", "fmap_list"}
def fmt(key, kind, d):
    if key not in d: return "n/a"
    if key in NEEDS_ALIGN and d.get("truth_alignable", 1) < 1:
        return "not scorable*"
    v = d[key]
    if kind == "list": return v
    if kind == "n": return "%d" % v
    s = "%.1f%%" % (100 * v) if kind == "%" else "%.1f" % v if kind == "db" else "%.3f" % v
    extra = {"weight_rel_error": "weight_rel_error_of_prior", "link_recovered": "link_chance",
             "input_patch_psnr_db": "input_patch_psnr_mean_guess_db",
             "image_l0_psnr_db": "image_l0_psnr_mean_guess_db"}.get(key)
    if extra and extra in d:
        e = d[extra]
        s += " (%s)" % ("%.1f%%" % (100 * e) if kind == "%" else "%.1f" % e if kind == "db" else "%.3f" % e)
    return s
out = ["| attack | " + " | ".join(c[0] for c in cols) + " |", "|---|" + "---|" * len(cols)]
for key, label, kind in rows:
    out.append("| %s | %s |" % (label, " | ".join(fmt(key, kind, d) for _, d in cols)))
accs = []
for m in models:
    for name, what in (("secret", "secret model"), ("pre", "public prior")):
        p = os.path.join(w, m, name + "_eval.txt")
        t = open(p).read().strip().splitlines()[-1] if os.path.exists(p) and open(p).read().strip() else "n/a"
        accs.append("- %s %s: `%s`" % (m, what, t))
table = "\n".join(out)
if any(d.get("truth_alignable", 1) < 1 for _, d in cols):
    table += ("\n\n*not scorable: the view cannot be aligned to the plaintext at all (scoring check 0%), so there is "
              "no true permutation to score against; the direct measures (relative error, label signs, theft accuracy) apply.")
text = ("Run: `scripts/security-eval.sh` (prior: %s local steps; secret: %s more steps; theft fine-tuning: %s SGD "
        "steps on 1%% of the train split; accuracies on the first %s test images).\n\n" % (pre, ft, theft, evaln)) + table + "\n\nReference accuracies (full test split):\n" + "\n".join(accs) + "\n"
priv = []
for m in models:
    p = os.path.join(w, m, "privacy.txt")
    if os.path.exists(p): priv.append("`tempo-attack privacy --audit` on %s (one step, batch 32):\n\n```\n%s```\n" % (m, open(p).read()))
if doc != "-":
    s = open(doc).read()
    s = re.sub(r"(<!-- results begin -->\n).*?(<!-- results end -->)", lambda mm: mm.group(1) + text + mm.group(2), s, flags=re.S)
    s = re.sub(r"(<!-- privacy begin -->\n).*?(<!-- privacy end -->)", lambda mm: mm.group(1) + "\n".join(priv) + mm.group(2), s, flags=re.S)
    open(doc, "w").write(s)
print(text)
print("\n".join(priv))
PY
