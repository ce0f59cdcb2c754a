/* bench_resnet.c - ms per training step (forward + loss + backward; the optimizer step and
 * zeroing of gradients are included as in tools/peer_bench.py's SGD step) of the ResNets in
 * local mode (the pure-TEE baseline) at 1 and 2 BLAS threads, on random 3x32x32 data.
 * Checks first that a step gives a finite loss; warms up 2 steps, then times N steps and
 * prints a markdown table (median / min / max) to compare with peer-baselines.md.
 *
 *   build/bench/bench_resnet [--models resnet20,resnet18,resnet50] [--threads 1,2] [--steps N]
 * Batch: 64 (resnet50: 32), as the twin. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tempo/common.h"
#include "tempo/layers.h"
#include "tempo/model.h"
#include "tempo/optim.h"

static int cmp_double(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static int bench_one(const char *name, int threads, int steps) {
  const int batch = strcmp(name, "resnet50") == 0 ? 32 : 64;
  tempo_mm_config mc;
  tempo_mm_config_default(&mc);
  mc.mode = TEMPO_MODE_LOCAL;
  mc.threads = threads;
  tempo_mm *mm = NULL;
  tempo_model *m = NULL;
  tempo_optim opt = {0};
  float *x = NULL, *logits = NULL, *dlogits = NULL;
  int *labels = NULL, rc = 1;
  double *t = calloc((size_t)steps, sizeof *t);
  tempo_model_config cfg = {.in_c = 3, .in_h = 32, .in_w = 32, .num_classes = 10, .max_batch = batch};
  snprintf(cfg.name, sizeof cfg.name, "%s", name);
  tempo_optim_config oc;
  tempo_optim_config_default(&oc, TEMPO_OPTIM_SGD);
  if (!t || tempo_mm_create(&mc, &mm) || tempo_model_create(&cfg, mm, 1, &m) ||
      tempo_optim_init(&opt, &oc, &m->params)) {
    fprintf(stderr, "bench_resnet: %s: %s\n", name, tempo_errmsg());
    goto cleanup;
  }
  x = tempo_alloc_floats((size_t)batch * 3 * 32 * 32);
  logits = tempo_alloc_floats((size_t)batch * 10);
  dlogits = tempo_alloc_floats((size_t)batch * 10);
  labels = calloc((size_t)batch, sizeof *labels);
  if (!x || !logits || !dlogits || !labels) goto cleanup;
  for (size_t i = 0; i < (size_t)batch * 3 * 32 * 32; i++) x[i] = (float)tempo_rng_normal(&m->rng);
  for (int i = 0; i < batch; i++) labels[i] = (int)tempo_rng_below(&m->rng, 10);
  tempo_mm_set_training(mm, true);
  for (int s = -2; s < steps; s++) {
    const double t0 = tempo_now();
    tempo_params_zero_grad(&m->params);
    if (m->ops->forward(m, x, batch, logits)) goto fail;
    const double loss = tempo_softmax_xent(logits, labels, batch, 10, dlogits, NULL);
    if (!(loss == loss && loss < 1e3)) {
      fprintf(stderr, "bench_resnet: %s: loss %g is not finite\n", name, loss);
      goto cleanup;
    }
    if (m->ops->backward(m, dlogits, batch) || tempo_optim_step(&opt, &m->params)) goto fail;
    tempo_mm_step_end(mm);
    if (s >= 0) t[s] = (tempo_now() - t0) * 1e3;
  }
  double med;
  qsort(t, (size_t)steps, sizeof *t, cmp_double);
  med = steps % 2 ? t[steps / 2] : 0.5 * (t[steps / 2 - 1] + t[steps / 2]);
  printf("| %s | %d | %d | %.1f | %.1f | %.1f | %.1f |\n", name, batch, threads, med, t[0], t[steps - 1],
         batch * 1e3 / med);
  fflush(stdout);
  rc = 0;
  goto cleanup;
fail:
  fprintf(stderr, "bench_resnet: %s: %s\n", name, tempo_errmsg());
cleanup:
  tempo_optim_free(&opt);
  tempo_model_free(m);
  tempo_mm_free(mm);
  tempo_free_floats(x);
  tempo_free_floats(logits);
  tempo_free_floats(dlogits);
  free(labels);
  free(t);
  return rc;
}

int main(int argc, char **argv) {
  const char *models = "resnet20,resnet18,resnet50", *threads = "1,2";
  int steps = 5;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--models") == 0 && i + 1 < argc) models = argv[++i];
    else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) threads = argv[++i];
    else if (strcmp(argv[i], "--steps") == 0 && i + 1 < argc) steps = atoi(argv[++i]);
    else {
      fprintf(stderr, "usage: %s [--models a,b] [--threads 1,2] [--steps N]\n", argv[0]);
      return 2;
    }
  }
  if (steps < 1 || steps > 1000) {
    fprintf(stderr, "bench_resnet: --steps must be 1..1000\n");
    return 2;
  }
  printf("| model | batch | threads | ms/step median | min | max | images/s |\n|---|--:|--:|--:|--:|--:|--:|\n");
  int rc = 0;
  char tl[64];
  snprintf(tl, sizeof tl, "%s", threads);
  for (char *tsave = NULL, *ts = strtok_r(tl, ",", &tsave); ts; ts = strtok_r(NULL, ",", &tsave)) {
    char ml[256];
    snprintf(ml, sizeof ml, "%s", models);
    for (char *msave = NULL, *mname = strtok_r(ml, ",", &msave); mname; mname = strtok_r(NULL, ",", &msave))
      rc |= bench_one(mname, atoi(ts), steps);
  }
  return rc;
}
