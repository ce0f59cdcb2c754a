/* bench_step.c - time one training step (forward, cross-entropy, backward, SGD momentum 0.9)
 * of reference models on random data, in any engine mode, and print one JSON line per
 * configuration (collected into docs/BENCHMARKS.md by scripts/run-bench.sh).
 *
 * usage: bench_step [--models a,b] [--modes local,plain,tempo] [--threads 1,2] [--workers N]
 *                   [--steps N] [--warmup N] [--budget-s S] [--batch N]
 * Batch sizes follow the PyTorch twin (64; resnet50 32). Medians with min and max. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tempo/common.h"
#include "tempo/layers.h"
#include "tempo/model.h"
#include "tempo/optim.h"

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static int split(char *s, char **out, int cap) {
  int n = 0;
  for (char *t = strtok(s, ","); t && n < cap; t = strtok(NULL, ",")) out[n++] = t;
  return n;
}

int main(int argc, char **argv) {
  char models_s[256] = "mlp,resnet20,vit-mini", modes_s[64] = "local", threads_s[32] = "1";
  int workers = 2, steps = 10, warmup = 2, batch_override = 0;
  double budget = 60.0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) goto usage;
    if (!strcmp(a, "--models")) snprintf(models_s, sizeof models_s, "%s", v);
    else if (!strcmp(a, "--modes")) snprintf(modes_s, sizeof modes_s, "%s", v);
    else if (!strcmp(a, "--threads")) snprintf(threads_s, sizeof threads_s, "%s", v);
    else if (!strcmp(a, "--workers")) workers = atoi(v);
    else if (!strcmp(a, "--steps")) steps = atoi(v);
    else if (!strcmp(a, "--warmup")) warmup = atoi(v);
    else if (!strcmp(a, "--budget-s")) budget = atof(v);
    else if (!strcmp(a, "--batch")) batch_override = atoi(v);
    else goto usage;
    i++;
  }
  if (steps < 1 || warmup < 0 || workers < 1) goto usage;
  char *models[16], *modes[8], *threads[8];
  int nm = split(models_s, models, 16), nmo = split(modes_s, modes, 8), nt = split(threads_s, threads, 8);
  for (int ti = 0; ti < nt; ti++)
    for (int mi = 0; mi < nm; mi++)
      for (int oi = 0; oi < nmo; oi++) {
        tempo_mm_config ec;
        tempo_mm_config_default(&ec);
        if (!tempo_mode_parse(modes[oi], &ec.mode)) goto usage;
        ec.threads = atoi(threads[ti]);
        ec.workers = workers;
        const char *name = models[mi];
        const bool mlp = !strcmp(name, "mlp");
        const int batch = batch_override ? batch_override : !strcmp(name, "resnet50") ? 32 : 64;
        tempo_model_config mc = {.in_c = mlp ? 1 : 3, .in_h = mlp ? 28 : 32, .in_w = mlp ? 28 : 32,
                                 .num_classes = 10, .max_batch = batch};
        snprintf(mc.name, sizeof mc.name, "%s", name);
        tempo_mm *mm = NULL;
        tempo_model *m = NULL;
        tempo_optim opt = {0};
        if (tempo_mm_create(&ec, &mm) || tempo_model_create(&mc, mm, 1, &m)) {
          printf("{\"model\":\"%s\",\"mode\":\"%s\",\"threads\":%d,\"error\":\"%s\"}\n", name, modes[oi], ec.threads,
                 tempo_errmsg());
          tempo_model_free(m);
          tempo_mm_free(mm);
          continue;
        }
        tempo_optim_config oc;
        tempo_optim_config_default(&oc, TEMPO_OPTIM_SGD);
        oc.lr = 0.01f;
        oc.weight_decay = 0.0f;
        oc.schedule = TEMPO_SCHED_CONSTANT;
        if (tempo_optim_init(&opt, &oc, &m->params)) return 1;
        const size_t in = (size_t)batch * mc.in_c * mc.in_h * mc.in_w;
        float *x = tempo_alloc_floats(in), *logits = tempo_alloc_floats((size_t)batch * 10),
              *dl = tempo_alloc_floats((size_t)batch * 10);
        int *y = calloc((size_t)batch, sizeof(int));
        tempo_rng rng;
        tempo_rng_seed(&rng, 3, 0);
        for (size_t i = 0; i < in; i++) x[i] = (float)tempo_rng_normal(&rng);
        for (int i = 0; i < batch; i++) y[i] = (int)tempo_rng_below(&rng, 10);
        double *t = calloc((size_t)steps, sizeof(double));
        int done = 0;
        double spent = 0.0, loss = 0.0;
        tempo_mm_stats st;
        tempo_mm_set_training(mm, true);
        for (int s = 0; s < warmup + steps; s++) {
          double t0 = tempo_now();
          tempo_params_zero_grad(&m->params);
          if (m->ops->forward(m, x, batch, logits)) break;
          loss = tempo_softmax_xent(logits, y, batch, 10, dl, NULL);
          if (m->ops->backward(m, dl, batch) || tempo_optim_step(&opt, &m->params)) break;
          tempo_mm_step_end(mm);
          double dt = tempo_now() - t0;
          spent += dt;
          if (s == warmup - 1 || (warmup == 0 && s == 0)) tempo_mm_stats_step(mm, &st); /* reset window */
          if (s >= warmup) t[done++] = dt;
          if (spent > budget && done >= 3) break;
        }
        tempo_mm_stats_step(mm, &st);
        if (done == 0) {
          printf("{\"model\":\"%s\",\"mode\":\"%s\",\"threads\":%d,\"error\":\"%s\"}\n", name, modes[oi], ec.threads,
                 tempo_errmsg());
        } else {
          double med_src[256];
          int n = done < 256 ? done : 256;
          memcpy(med_src, t, (size_t)n * sizeof(double));
          qsort(med_src, (size_t)n, sizeof(double), cmp_double);
          const double med = n % 2 ? med_src[n / 2] : 0.5 * (med_src[n / 2 - 1] + med_src[n / 2]);
          const double per = 1.0 / n;
          printf("{\"model\":\"%s\",\"mode\":\"%s\",\"threads\":%d,\"workers\":%d,\"batch\":%d,\"params\":%zu,"
                 "\"steps\":%d,\"ms_median\":%.2f,\"ms_min\":%.2f,\"ms_max\":%.2f,\"loss\":%.4f,"
                 "\"bytes_up_per_step\":%.0f,\"bytes_down_per_step\":%.0f,\"enc_per_step\":%.1f,"
                 "\"naive_enc_per_step\":%.1f,\"t_blind_ms\":%.2f,\"t_verify_ms\":%.2f,\"t_unblind_ms\":%.2f,"
                 "\"t_compute_ms\":%.2f}\n",
                 name, modes[oi], ec.threads, ec.mode == TEMPO_MODE_LOCAL ? 0 : workers, batch, m->params.count, n,
                 med * 1e3, med_src[0] * 1e3, med_src[n - 1] * 1e3, loss, st.bytes_up * per, st.bytes_down * per,
                 st.encryptions * per, st.naive_encryptions * per, st.t_blind * per * 1e3, st.t_verify * per * 1e3,
                 st.t_unblind * per * 1e3, st.t_compute * per * 1e3);
        }
        fflush(stdout);
        free(t);
        free(y);
        tempo_free_floats(x);
        tempo_free_floats(logits);
        tempo_free_floats(dl);
        tempo_optim_free(&opt);
        tempo_model_free(m);
        tempo_mm_free(mm);
      }
  return 0;
usage:
  fprintf(stderr, "usage: bench_step [--models a,b] [--modes local,plain,tempo] [--threads 1,2] [--workers N] "
                  "[--steps N] [--warmup N] [--budget-s S] [--batch N]\n");
  return 2;
}
