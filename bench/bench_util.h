/* bench_util.h - what the benchmark programs share (header-only): a reference model on a
 * random batch with plain SGD (the "rig"), one training step, and medians. */
#ifndef TEMPO_BENCH_UTIL_H
#define TEMPO_BENCH_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tempo/common.h"
#include "tempo/layers.h"
#include "tempo/model.h"
#include "tempo/optim.h"

typedef struct {
  tempo_mm *mm;
  tempo_model *m;
  tempo_optim opt;
  float *x, *logits, *dl; /* (batch, in), (batch, 10), (batch, 10) */
  int *y;
  int batch;
} bench_rig;

/* The PyTorch twin's batch sizes: 64, resnet50 32. */
static inline int bench_default_batch(const char *model) { return strcmp(model, "resnet50") ? 64 : 32; }

static inline void bench_rig_close(bench_rig *r) {
  tempo_free_floats(r->x);
  tempo_free_floats(r->logits);
  tempo_free_floats(r->dl);
  free(r->y);
  tempo_optim_free(&r->opt);
  tempo_model_free(r->m);
  tempo_mm_free(r->mm);
  memset(r, 0, sizeof *r);
}

/* Model `name` (1x28x28 inputs for the mlp, 3x32x32 otherwise; 10 classes) on an engine made
 * from ec, SGD (lr 0.01, momentum 0.9, no weight decay, constant rate) and a random batch,
 * in training mode. -1 with tempo_errmsg() set on failure (then nothing is left to close). */
static inline int bench_rig_open(bench_rig *r, const char *name, const tempo_mm_config *ec, int batch) {
  memset(r, 0, sizeof *r);
  r->batch = batch;
  const bool mlp = !strcmp(name, "mlp");
  tempo_model_config mc = {.in_c = mlp ? 1 : 3, .in_h = mlp ? 28 : 32, .in_w = mlp ? 28 : 32, .num_classes = 10,
                           .max_batch = batch};
  snprintf(mc.name, sizeof mc.name, "%s", name);
  tempo_optim_config oc;
  tempo_optim_config_default(&oc, TEMPO_OPTIM_SGD);
  oc.lr = 0.01f;
  oc.weight_decay = 0.0f;
  oc.schedule = TEMPO_SCHED_CONSTANT;
  if (tempo_mm_create(ec, &r->mm) || tempo_model_create(&mc, r->mm, 1, &r->m) ||
      tempo_optim_init(&r->opt, &oc, &r->m->params)) {
    bench_rig_close(r);
    return -1;
  }
  const size_t in = (size_t)batch * mc.in_c * mc.in_h * mc.in_w;
  r->x = tempo_alloc_floats(in);
  r->logits = tempo_alloc_floats((size_t)batch * 10);
  r->dl = tempo_alloc_floats((size_t)batch * 10);
  r->y = calloc((size_t)batch, sizeof *r->y);
  if (!r->x || !r->logits || !r->dl || !r->y) {
    bench_rig_close(r);
    tempo_set_error(TEMPO_STATUS_NO_MEMORY, "bench: out of memory for a batch of %d", batch);
    return -1;
  }
  tempo_rng rng;
  tempo_rng_seed(&rng, 3, 0);
  for (size_t i = 0; i < in; i++) r->x[i] = (float)tempo_rng_normal(&rng);
  for (int i = 0; i < batch; i++) r->y[i] = (int)tempo_rng_below(&rng, 10);
  tempo_mm_set_training(r->mm, true);
  return 0;
}

/* One training step: forward, cross-entropy (into *loss unless NULL), backward, SGD step,
 * step end. -1 with tempo_errmsg() set on failure. */
static inline int bench_rig_step(bench_rig *r, double *loss) {
  tempo_params_zero_grad(&r->m->params);
  if (r->m->ops->forward(r->m, r->x, r->batch, r->logits)) return -1;
  const double l = tempo_softmax_xent(r->logits, r->y, r->batch, 10, r->dl, NULL);
  if (loss) *loss = l;
  if (r->m->ops->backward(r->m, r->dl, r->batch) || tempo_optim_step(&r->opt, &r->m->params)) return -1;
  tempo_mm_step_end(r->mm);
  return 0;
}

static inline int bench_cmp_double(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Sorts t[0..n) (n >= 1) ascending and returns its median. */
static inline double bench_median(double *t, int n) {
  qsort(t, (size_t)n, sizeof *t, bench_cmp_double);
  return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

/* This machine's memcpy rate in GB/s of bytes copied (each copied byte is read once and
 * written once), median of 7 copies of 64 MiB between buffers touched beforehand. The
 * offload-ceiling table measures the master's crypto passes against it. */
static inline double bench_memcpy_gbps(void) {
  const size_t n = (size_t)64 << 20;
  char *a = malloc(n), *b = malloc(n);
  if (!a || !b) {
    free(a), free(b);
    return 0;
  }
  memset(a, 1, n), memset(b, 2, n);
  double t[7];
  for (int i = 0; i < 7; i++) {
    double t0 = tempo_now();
    memcpy(i % 2 ? a : b, i % 2 ? b : a, n);
    t[i] = tempo_now() - t0;
  }
  free(a), free(b);
  return (double)n / bench_median(t, 7) / 1e9;
}

#endif
