/* tempo_attack.c - `tempo attack` and `tempo privacy` (docs/SECURITY.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tempo/attack.h"
#include "tempo/privacy.h"

int tempo_cmd_attack(int argc, char **argv);
int tempo_cmd_privacy(int argc, char **argv);

static const char attack_usage[] =
    "usage: tempo attack --audit DIR [options]\n"
    "Runs the security evaluation's attacks on one training step of an audit trail.\n"
    "  --audit DIR       the trail under attack (what the workers saw)\n"
    "  --model NAME      the architecture (public; default resnet20)\n"
    "  --prior CKPT      a checkpoint the attacker knows (default: the public init scheme, another seed)\n"
    "  --public DIR      plain-mode trail of the architecture on public data (input recovery)\n"
    "  --truth DIR       plain-mode trail of the same run, for scoring only\n"
    "  --data-dir DIR    Fashion-MNIST folder: enables model theft (test accuracy, 1%% fine-tuning)\n"
    "  --step N          training step of the trail (default 0)\n"
    "  --roles K --role R  shield mode: every product is K role products; attack role R's view\n"
    "  --finetune-steps N, --eval-samples N, --json FILE\n";

int tempo_cmd_attack(int argc, char **argv) {
  tempo_attack_config c;
  tempo_attack_config_default(&c);
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      fputs(attack_usage, stdout);
      return 0;
    }
    if (!v) {
      fprintf(stderr, "tempo attack: %s needs a value or is unknown\n%s", a, attack_usage);
      return 2;
    }
    if (!strcmp(a, "--audit")) c.audit_dir = v;
    else if (!strcmp(a, "--model")) c.model = v;
    else if (!strcmp(a, "--prior")) c.prior = v;
    else if (!strcmp(a, "--public")) c.public_dir = v;
    else if (!strcmp(a, "--truth")) c.truth_dir = v;
    else if (!strcmp(a, "--data-dir")) c.data_dir = v;
    else if (!strcmp(a, "--step")) c.step = atoi(v);
    else if (!strcmp(a, "--finetune-steps")) c.finetune_steps = atoi(v);
    else if (!strcmp(a, "--eval-samples")) c.eval_samples = atoi(v);
    else if (!strcmp(a, "--json")) c.json_out = v;
    else if (!strcmp(a, "--roles")) c.roles = atoi(v);
    else if (!strcmp(a, "--role")) c.role = atoi(v);
    else {
      fprintf(stderr, "tempo attack: unknown option %s\n%s", a, attack_usage);
      return 2;
    }
    i++;
  }
  if (!c.audit_dir) {
    fprintf(stderr, "tempo attack: --audit DIR is required\n%s", attack_usage);
    return 2;
  }
  if (tempo_attack_run(&c)) {
    fprintf(stderr, "tempo attack: %s\n", tempo_errmsg());
    return 1;
  }
  return 0;
}

int tempo_cmd_privacy(int argc, char **argv) {
  const char *dir = NULL;
  int step = 0;
  tempo_keyspace ks;
  tempo_keyspace_default(&ks);
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      puts("usage: tempo privacy --audit DIR [--step N] [--int-bits B | --loguniform R]\n"
           "Key-space entropy per forward product of a trail's step (shapes only).");
      return 0;
    }
    if (!v) {
      fprintf(stderr, "tempo privacy: %s needs a value or is unknown\n", a);
      return 2;
    }
    if (!strcmp(a, "--audit")) dir = v;
    else if (!strcmp(a, "--step")) step = atoi(v);
    else if (!strcmp(a, "--int-bits")) ks.kind = TEMPO_KEYSPACE_INT, ks.bits = atoi(v);
    else if (!strcmp(a, "--loguniform")) ks.kind = TEMPO_KEYSPACE_LOGUNIFORM, ks.range = atof(v);
    else {
      fprintf(stderr, "tempo privacy: unknown option %s\n", a);
      return 2;
    }
    i++;
  }
  if (!dir) {
    fprintf(stderr, "tempo privacy: --audit DIR is required\n");
    return 2;
  }
  if (tempo_privacy_report(dir, step, &ks, stdout)) {
    fprintf(stderr, "tempo privacy: %s\n", tempo_errmsg());
    return 1;
  }
  return 0;
}
