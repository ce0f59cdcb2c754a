/* tempo_attack.c - the security evaluation's program tempo-attack: `tempo-attack attack` and
 * `tempo-attack privacy` on an audit trail (docs/SECURITY.md). It runs on an auditor's
 * machine and is not linked into the master (`tempo`, the enclave's binary).
 * Exit status: 0 ok, 1 runtime error, 2 usage error. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_common.h"
#include "tempo/attack.h"
#include "tempo/privacy.h"

#define ATTACK "tempo-attack attack"
#define PRIVACY "tempo-attack privacy"

static const char attack_usage[] =
    "usage: tempo-attack attack --audit DIR [options]\n"
    "Runs the security evaluation's attacks on one training step of an audit trail.\n"
    "  --audit DIR       the trail under attack (what the workers saw)\n"
    "  --model NAME      the architecture (public; default resnet20)\n"
    "  --prior CKPT      a checkpoint the attacker knows (default: the public init scheme, another seed)\n"
    "  --public DIR      plain-mode trail of the architecture on public data (input recovery)\n"
    "  --truth DIR       plain-mode trail of the same run, for scoring only\n"
    "  --data-dir DIR    Fashion-MNIST folder: enables model theft (test accuracy, 1%% fine-tuning)\n"
    "  --step N          training step of the trail (default 0)\n"
    "  --batch B         the run's batch size (default 32): the image attacks' geometry\n"
    "  --roles K --role R  shield mode: every product is K role products; attack role R's view\n"
    "  --finetune-steps N, --eval-samples N, --json FILE\n";

static const char privacy_usage[] =
    "usage: tempo-attack privacy --audit DIR [--step N] [--int-bits B | --loguniform R]\n"
    "Key-space entropy per forward product of a trail's step (shapes only).\n";

/* A whole number option of attack or privacy; false (after the message) when it is not. */
static bool int_opt(const char *who, const char *flag, const char *v, long lo, int *out, int *rc) {
  long x;
  if (!tempo_cli_parse_long(v, lo, INT_MAX, &x)) {
    *rc = tempo_cli_usage(who, "%s needs a whole number from %ld, got '%s'", flag, lo, v);
    return false;
  }
  *out = (int)x;
  return true;
}

static int tempo_cmd_attack(int argc, char **argv) {
  tempo_attack_config c;
  tempo_attack_config_default(&c);
  int rc = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      fputs(attack_usage, stdout);
      return 0;
    }
    if (!v) return tempo_cli_usage(ATTACK, "%s needs a value or is unknown", a);
    bool ok = true;
    if (!strcmp(a, "--audit")) c.audit_dir = v;
    else if (!strcmp(a, "--model")) c.model = v;
    else if (!strcmp(a, "--prior")) c.prior = v;
    else if (!strcmp(a, "--public")) c.public_dir = v;
    else if (!strcmp(a, "--truth")) c.truth_dir = v;
    else if (!strcmp(a, "--data-dir")) c.data_dir = v;
    else if (!strcmp(a, "--json")) c.json_out = v;
    else if (!strcmp(a, "--step")) ok = int_opt(ATTACK, a, v, 0, &c.step, &rc);
    else if (!strcmp(a, "--batch")) ok = int_opt(ATTACK, a, v, 1, &c.batch, &rc);
    else if (!strcmp(a, "--finetune-steps")) ok = int_opt(ATTACK, a, v, 0, &c.finetune_steps, &rc);
    else if (!strcmp(a, "--eval-samples")) ok = int_opt(ATTACK, a, v, 1, &c.eval_samples, &rc);
    else if (!strcmp(a, "--roles")) ok = int_opt(ATTACK, a, v, 1, &c.roles, &rc);
    else if (!strcmp(a, "--role")) ok = int_opt(ATTACK, a, v, 0, &c.role, &rc);
    else return tempo_cli_usage(ATTACK, "unknown option '%s'", a);
    if (!ok) return rc;
    i++;
  }
  if (!c.audit_dir) return tempo_cli_usage(ATTACK, "--audit DIR is required");
  return tempo_attack_run(&c) ? tempo_cli_error(ATTACK) : 0;
}

static int tempo_cmd_privacy(int argc, char **argv) {
  const char *dir = NULL;
  int step = 0, rc = 0;
  tempo_keyspace ks;
  tempo_keyspace_default(&ks);
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      fputs(privacy_usage, stdout);
      return 0;
    }
    if (!v) return tempo_cli_usage(PRIVACY, "%s needs a value or is unknown", a);
    if (!strcmp(a, "--audit")) {
      dir = v;
    } else if (!strcmp(a, "--step")) {
      if (!int_opt(PRIVACY, a, v, 0, &step, &rc)) return rc;
    } else if (!strcmp(a, "--int-bits")) {
      long bits;
      if (!tempo_cli_parse_long(v, 1, 16, &bits))
        return tempo_cli_usage(PRIVACY, "--int-bits needs a whole number from 1 to 16, got '%s'", v);
      ks.kind = TEMPO_KEYSPACE_INT, ks.bits = (int)bits;
    } else if (!strcmp(a, "--loguniform")) {
      if (!tempo_cli_parse_double(v, 1, 65536, &ks.range) || ks.range == 1)
        return tempo_cli_usage(PRIVACY, "--loguniform needs a range R with 1 < R <= 65536, got '%s'", v);
      ks.kind = TEMPO_KEYSPACE_LOGUNIFORM;
    } else {
      return tempo_cli_usage(PRIVACY, "unknown option '%s'", a);
    }
    i++;
  }
  if (!dir) return tempo_cli_usage(PRIVACY, "--audit DIR is required");
  return tempo_privacy_report(dir, step, &ks, stdout) ? tempo_cli_error(PRIVACY) : 0;
}

static void print_help(void) {
  printf("usage: tempo-attack <command> [options]\n"
         "\n"
         "The security evaluation (docs/SECURITY.md), on the audit trail of a run (tempo train --audit DIR):\n"
         "what the workers saw, attacked as a curious worker would.\n"
         "\n"
         "commands (tempo-attack <command> --help for their options):\n"
         "  attack --audit DIR    recover weights, inputs, labels and the model from one step of a trail\n"
         "  privacy --audit DIR   key-space entropy of every forward product of one step\n"
         "\n"
         "  -h, --help            this help\n"
         "  -V, --version         version\n");
}

int main(int argc, char **argv) {
  static const tempo_cli_command cmds[] = {
      {"attack", tempo_cmd_attack, NULL}, {"privacy", tempo_cmd_privacy, NULL},
      {"train", NULL, "tempo"},           {"eval", NULL, "tempo"},
      {"keygen", NULL, "tempo-owner"},    {"seal", NULL, "tempo-owner"},
      {"unseal", NULL, "tempo-owner"},    {"export", NULL, "tempo-owner"},
      {NULL, NULL, NULL},
  };
  static const tempo_cli_program p = {"tempo-attack", "OpenBLAS, libsodium", print_help, cmds};
  return tempo_cli_main(&p, argc, argv);
}
