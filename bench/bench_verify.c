/* bench_verify.c - the integrity check's honest ratios and the smallest cheats it catches
 * (docs/SECURITY.md, "Integrity"; issue 16).
 *
 *   bench_verify [--model mlp|resnet20|vit-mini] [--steps S] [--batch B] [--workers W]
 *                [--gemm auto|openblas|dnnl] [--reduce 0|1] [--key-range R] [--rogue REL] [--skip S] [--kinds LIST]
 *                [--protect none|spatial|all]
 *
 * Trains the model on Fashion-MNIST in tempo mode with W in-process workers and the chosen
 * worker GEMM (--protect: the policy, none by default: every product to the workers; spatial,
 * tempo's default, mixes most convolutions' rows, all mixes every product; --reduce 1: the workers sum dW' along chains, as MPI workers do), and records |residual| / bound of every check block (verify.c's recorder) by
 * product class. With --rogue REL, workers 1.. are rogues (tests/rogue_worker.h) that each
 * cheat twice (kinds cycled from --kinds element,zero,halve,negate; the element error is REL of
 * the row's largest |value| in the blinded result: --key-range 1.0001 makes that the plaintext
 * row's, as the keys' column scales then differ by 0.02% at most; ROGUE_CLASSES=0123 picks Y', dX', dW', sum), letting 0..S eligible
 * results pass before each cheat; the table counts the failed checks. Output:
 * one line per class, then the engine's totals. Not a test: a measurement. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tests/rogue_worker.h"
#include "obf/obf_internal.h"
#include "tempo/gemm.h"
#include "tempo/train.h"

typedef struct {
  double *r;
  size_t n, cap;
  double max;
  int kmin, kmax;
} series;

static series cls[TEMPO_VCLASS_COUNT];
static long fails[TEMPO_VCLASS_COUNT];
static double fail_min[TEMPO_VCLASS_COUNT]; /* the smallest ratio of a failed block */
static const char *const cls_name[TEMPO_VCLASS_COUNT] = {"after arrival", "Y' block", "dX' block", "dW' block",
                                                         "dW' all rows"};

static void record(void *ctx, int c, int k, int width, double worst) {
  (void)ctx;
  if (c < 0 || c >= TEMPO_VCLASS_COUNT) c = 0;
  series *s = &cls[c];
  const char *high = getenv("VERIFY_HIGH"); /* print the blocks above this ratio */
  if (high && worst > atof(high)) fprintf(stderr, "high: class %s k %d width %d ratio %.3g\n", cls_name[c], k, width, worst);
  if (worst > 1) {
    if (getenv("ROGUE_LOG")) fprintf(stderr, "failed: class %s k %d width %d ratio %.3g\n", cls_name[c], k, width, worst);
    if (!fails[c]++ || worst < fail_min[c]) fail_min[c] = worst;
    return; /* the honest distribution is of passing blocks */
  }
  if (s->n == s->cap) {
    size_t nc = s->cap ? 2 * s->cap : 4096;
    double *nr = realloc(s->r, nc * sizeof *nr);
    if (!nr) abort();
    s->r = nr, s->cap = nc;
  }
  s->r[s->n++] = worst;
  if (worst > s->max) s->max = worst;
  if (!s->kmin || k < s->kmin) s->kmin = k;
  if (k > s->kmax) s->kmax = k;
}

static int cmp(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double quantile(series *s, double q) {
  if (!s->n) return 0;
  size_t i = (size_t)(q * (double)(s->n - 1) + 0.5);
  return s->r[i];
}

int main(int argc, char **argv) {
  const char *model = "mlp", *gemm = "auto", *kinds = NULL;
  int steps = 20, batch = 32, workers = 2, skip = 0;
  double rogue = 0;
  bool reduce = false;
  double key_range = 0;
  tempo_protect protect = TEMPO_PROTECT_NONE;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--model")) model = argv[i + 1];
    else if (!strcmp(argv[i], "--steps")) steps = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--batch")) batch = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--workers")) workers = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--gemm")) gemm = argv[i + 1];
    else if (!strcmp(argv[i], "--rogue")) rogue = atof(argv[i + 1]);
    else if (!strcmp(argv[i], "--skip")) skip = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--kinds")) kinds = argv[i + 1];
    else if (!strcmp(argv[i], "--key-range")) key_range = atof(argv[i + 1]);
    else if (!strcmp(argv[i], "--reduce")) reduce = atoi(argv[i + 1]) != 0;
    else if (!strcmp(argv[i], "--protect")) {
      if (!tempo_protect_parse(argv[i + 1], &protect)) {
        fprintf(stderr, "bench_verify: unknown --protect %s\n", argv[i + 1]);
        return 2;
      }
    }
    else {
      fprintf(stderr, "bench_verify: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  tempo_gemm_set_backend(!strcmp(gemm, "openblas") ? TEMPO_GEMM_OPENBLAS
                         : !strcmp(gemm, "dnnl")   ? TEMPO_GEMM_DNNL
                                                   : TEMPO_GEMM_AUTO);
  rogue_plan plan;
  rogue_transport_ctx rc = {.plan = rogue > 0 ? &plan : NULL, .first_rogue = 1, .reduce = reduce};
  if (rogue > 0) {
    rogue_plan_init(&plan, rogue, 2, skip, 99);
    const char *classes = getenv("ROGUE_CLASSES");
    if (classes)
      for (int k = 0; k < ROGUE_CLASSES; k++) plan.classes[k] = strchr(classes, '0' + k) != NULL;
    if (kinds)
      for (int k = 0; k < ROGUE_KINDS; k++) plan.kinds[k] = strstr(kinds, rogue_kind_name[k]) != NULL;
  }
  tempo_train_config c;
  tempo_train_config_default(&c);
  snprintf(c.model, sizeof c.model, "%s", model);
  c.engine.mode = TEMPO_MODE_TEMPO;
  c.engine.workers = workers;
  c.engine.seed = 5;
  c.engine.key_range = key_range;
  c.engine.protect = protect; /* none: every product to the workers, the first layer and the head too */
  c.engine.transport = rogue_transport;
  c.engine.transport_ctx = &rc;
  char out[64];
  snprintf(out, sizeof out, "/tmp/bench_verify.%d", (int)getpid());
  c.out_dir = out;
  c.max_steps = steps;
  c.batch_size = batch;
  c.log_every = 1000000;
  c.quiet = true;
  c.progress = 0;
  c.no_eval = true;
  c.checkpoint_minutes = 0;
  tempo_verify_record(record, NULL);
  tempo_train_result r;
  tempo_status st = tempo_train_run(&c, &r);
  tempo_verify_record(NULL, NULL);
  if (st) {
    fprintf(stderr, "bench_verify: %s\n", tempo_errmsg());
    return 1;
  }
  printf("model %s, %ld steps of batch %d, %d workers%s, worker GEMM %s, protect %s%s\n", model, r.steps, batch,
         workers, reduce ? " (dW' chains)" : "", gemm, tempo_protect_name(protect),
         rogue > 0 ? " (rogues from worker 1)" : "");
  printf("%-14s %9s %8s %11s %11s %11s %8s %11s\n", "class", "checks", "k", "median", "p99.99", "max", "failed",
         "min failed");
  for (int i = 0; i < TEMPO_VCLASS_COUNT; i++) {
    series *s = &cls[i];
    if (!s->n && !fails[i]) continue;
    qsort(s->r, s->n, sizeof *s->r, cmp);
    char kr[32];
    snprintf(kr, sizeof kr, s->kmin == s->kmax ? "%d" : "%d-%d", s->kmin, s->kmax);
    printf("%-14s %9zu %8s %11.3g %11.3g %11.3g %8ld %11.3g\n", cls_name[i], s->n, kr, quantile(s, 0.5),
           quantile(s, 0.9999), s->max, fails[i], fails[i] ? fail_min[i] : 0.0);
    /* the same as a markdown row (scripts/verify-eval.sh collects them) */
    printf("MD| %s | %s | %s | %zu | %s | %.3g | %.3g | %.3g | %ld |\n", model, gemm, cls_name[i], s->n, kr,
           quantile(s, 0.5), quantile(s, 0.9999), s->max, fails[i]);
    free(s->r);
  }
  printf("engine: verify_failures %llu, recomputed %llu, evictions %llu\n", (unsigned long long)r.stats.verify_failures,
         (unsigned long long)r.stats.recomputed, (unsigned long long)r.stats.evictions);
  if (rogue > 0) {
    printf("planted (rel %g):", rogue);
    for (int ci = 0; ci < ROGUE_CLASSES; ci++)
      for (int k = 0; k < ROGUE_KINDS; k++)
        if (plan.done[ci][k]) printf(" %s/%s %d", rogue_class_name[ci], rogue_kind_name[k], plan.done[ci][k]);
    printf("; total %d\n", rogue_total(&plan));
    printf("MD-ROGUE| %s | %g | %d | %llu |\n", model, rogue, rogue_total(&plan), (unsigned long long)r.stats.verify_failures);
  }
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", out);
  if (system(cmd)) return 1;
  return 0;
}
