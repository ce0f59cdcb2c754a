/* bench_scaling.c - training-step time and master upload per step for one model over the
 * workers at hand: in-process threads (--workers N), or, under mpirun, the tempo-worker
 * ranks (scripts/bench-scaling.sh runs 1, 2, 4 CPU workers; scripts/gpu-check.sh one GPU
 * worker). One JSON line: ms per step (median), the bytes the master put on the wire per
 * step (wire_up, after the W' relay), the engine's logical upload (every message as
 * addressed), and the minimum: each blinded operand once plus one header per message.
 *
 * usage: bench_scaling [--model NAME] [--mode local|plain|tempo] [--workers N] [--steps N]
 *                      [--warmup N] [--batch N] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "offload/engine.h"
#include "tempo/common.h"
#include "tempo/layers.h"
#include "tempo/model.h"
#include "tempo/optim.h"
#if TEMPO_HAVE_MPI
#include "mpi/mpi.h"
#endif

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  const char *name = "mlp", *mode = "tempo";
  int workers = 2, steps = 10, warmup = 2, batch = 0, mpi_workers = 0;
#if TEMPO_HAVE_MPI
  if (tempo_mpi_launched() && tempo_mpi_master_init(&argc, &argv, &mpi_workers)) {
    fprintf(stderr, "bench_scaling: %s\n", tempo_errmsg());
    return 1;
  }
#endif
  for (int i = 1; i + 1 < argc; i += 2) {
    const char *a = argv[i], *v = argv[i + 1];
    if (!strcmp(a, "--model")) name = v;
    else if (!strcmp(a, "--mode")) mode = v;
    else if (!strcmp(a, "--workers")) workers = atoi(v);
    else if (!strcmp(a, "--steps")) steps = atoi(v);
    else if (!strcmp(a, "--warmup")) warmup = atoi(v);
    else if (!strcmp(a, "--batch")) batch = atoi(v);
    else {
      fprintf(stderr, "usage: bench_scaling [--model M] [--mode MODE] [--workers N] [--steps N] [--warmup N] [--batch N]\n");
      return 2;
    }
  }
  if (steps < 1 || steps > 1000 || warmup < 0 || workers < 1) return 2;
  tempo_mm_config ec;
  tempo_mm_config_default(&ec);
  if (!tempo_mode_parse(mode, &ec.mode)) return 2;
  ec.workers = mpi_workers ? mpi_workers : workers;
  ec.threads = 1;
  const bool mlp = !strcmp(name, "mlp");
  if (!batch) batch = !strcmp(name, "resnet50") ? 32 : 64;
  tempo_model_config mc = {.in_c = mlp ? 1 : 3, .in_h = mlp ? 28 : 32, .in_w = mlp ? 28 : 32, .num_classes = 10,
                           .max_batch = batch};
  snprintf(mc.name, sizeof mc.name, "%s", name);
  tempo_mm *mm = NULL;
  tempo_model *m = NULL;
  tempo_optim opt = {0};
  tempo_optim_config oc;
  tempo_optim_config_default(&oc, TEMPO_OPTIM_SGD);
  oc.schedule = TEMPO_SCHED_CONSTANT;
  if (tempo_mm_create(&ec, &mm) || tempo_model_create(&mc, mm, 1, &m) || tempo_optim_init(&opt, &oc, &m->params)) {
    fprintf(stderr, "bench_scaling: %s\n", tempo_errmsg());
    return 1;
  }
  const size_t in = (size_t)batch * mc.in_c * mc.in_h * mc.in_w;
  float *x = tempo_alloc_floats(in), *logits = tempo_alloc_floats((size_t)batch * 10),
        *dl = tempo_alloc_floats((size_t)batch * 10);
  int *y = calloc((size_t)batch, sizeof(int));
  double *t = calloc((size_t)steps, sizeof(double));
  if (!x || !logits || !dl || !y || !t) return 1;
  tempo_rng rng;
  tempo_rng_seed(&rng, 3, 0);
  for (size_t i = 0; i < in; i++) x[i] = (float)tempo_rng_normal(&rng);
  for (int i = 0; i < batch; i++) y[i] = (int)tempo_rng_below(&rng, 10);
  tempo_transport *tr = tempo_mm_test_transport(mm);
  uint64_t wire0 = 0, min0 = 0;
  tempo_mm_stats st;
  tempo_mm_set_training(mm, true);
  double loss = 0;
  int rc = 0;
  for (int s = 0; s < warmup + steps; s++) {
    if (s == warmup) {
      tempo_mm_stats_step(mm, &st);
      if (tr) wire0 = tr->wire_up, min0 = tr->min_up;
    }
    double t0 = tempo_now();
    tempo_params_zero_grad(&m->params);
    if (m->ops->forward(m, x, batch, logits)) rc = 1;
    loss = tempo_softmax_xent(logits, y, batch, 10, dl, NULL);
    if (rc || m->ops->backward(m, dl, batch) || tempo_optim_step(&opt, &m->params)) {
      fprintf(stderr, "bench_scaling: %s\n", tempo_errmsg());
      rc = 1;
      break;
    }
    tempo_mm_step_end(mm);
    if (s >= warmup) t[s - warmup] = tempo_now() - t0;
  }
  if (!rc) {
    tempo_mm_stats_step(mm, &st);
    qsort(t, (size_t)steps, sizeof *t, cmp_double);
    const double per = 1.0 / steps;
    printf("{\"model\":\"%s\",\"mode\":\"%s\",\"transport\":\"%s\",\"workers\":%d,\"batch\":%d,\"steps\":%d,"
           "\"ms_median\":%.2f,\"ms_min\":%.2f,\"loss\":%.4f,\"wire_bytes_up_per_step\":%.0f,"
           "\"logical_bytes_up_per_step\":%.0f,\"min_bytes_up_per_step\":%.0f,\"bytes_down_per_step\":%.0f}\n",
           name, mode, mpi_workers ? "mpi" : "inproc", ec.mode == TEMPO_MODE_LOCAL ? 0 : ec.workers, batch, steps,
           t[steps / 2] * 1e3, t[0] * 1e3, loss, tr ? (double)(tr->wire_up - wire0) * per : 0.0,
           (double)st.bytes_up * per, tr ? (double)(tr->min_up - min0) * per : 0.0, (double)st.bytes_down * per);
  }
  free(t), free(y);
  tempo_free_floats(x), tempo_free_floats(logits), tempo_free_floats(dl);
  tempo_optim_free(&opt);
  tempo_model_free(m);
  tempo_mm_free(mm);
#if TEMPO_HAVE_MPI
  tempo_mpi_master_finalize();
#endif
  return rc;
}
