/* bench_shield.c - shield mode's two tables for docs/BENCHMARKS.md and docs/shield.md:
 *   1. precision and leakage against the mask scale alpha (tempo_shield_study: a
 *      256x576x64 product, ReLU activations times N(0, 1/n) weights), float32 and float64
 *      shares (the engine's two dtypes), then the sign-of-sum distinguisher on a
 *      65536x27 operand (ResNet-20's first convolution at batch 64, the largest X of the
 *      reference models) with float64 shares;
 *   2. one training step of mlp, resnet20 and vit-mini (batch 64, random data) in local,
 *      tempo and shield modes with 4 in-process workers: ms per step (median), worker
 *      compute, master blind/verify/unblind time, bytes per step, and shield/tempo ratios.
 * usage: bench_shield [--steps N] [--models a,b] [--skip-study] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tempo/common.h"
#include "tempo/layers.h"
#include "tempo/model.h"
#include "tempo/optim.h"
#include "tempo/rng.h"
#include "tempo/shield.h"

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

typedef struct {
  double ms, compute_ms, blind_ms, verify_ms, unblind_ms, bytes;
  bool ok;
} step_result;

static step_result time_steps(const char *name, tempo_mode mode, int workers, int steps) {
  step_result r = {0};
  tempo_mm_config ec;
  tempo_mm_config_default(&ec);
  ec.mode = mode;
  ec.workers = workers;
  ec.seed = 1;
  const bool mlp = !strcmp(name, "mlp");
  const int batch = 64;
  tempo_model_config mc = {.in_c = mlp ? 1 : 3, .in_h = mlp ? 28 : 32, .in_w = mlp ? 28 : 32, .num_classes = 10,
                           .max_batch = batch};
  snprintf(mc.name, sizeof mc.name, "%s", name);
  tempo_mm *mm = NULL;
  tempo_model *m = NULL;
  tempo_optim opt = {0};
  if (tempo_mm_create(&ec, &mm) || tempo_model_create(&mc, mm, 1, &m)) {
    fprintf(stderr, "bench_shield: %s %s: %s\n", name, tempo_mode_name(mode), tempo_errmsg());
    tempo_model_free(m);
    tempo_mm_free(mm);
    return r;
  }
  tempo_optim_config oc;
  tempo_optim_config_default(&oc, TEMPO_OPTIM_SGD);
  oc.lr = 0.01f;
  oc.schedule = TEMPO_SCHED_CONSTANT;
  if (tempo_optim_init(&opt, &oc, &m->params)) goto done;
  const size_t in = (size_t)batch * mc.in_c * mc.in_h * mc.in_w;
  float *x = tempo_alloc_floats(in), *logits = tempo_alloc_floats((size_t)batch * 10),
        *dl = tempo_alloc_floats((size_t)batch * 10);
  int y[64];
  tempo_rng rng;
  tempo_rng_seed(&rng, 3, 0);
  for (size_t i = 0; i < in; i++) x[i] = (float)tempo_rng_normal(&rng);
  for (int i = 0; i < batch; i++) y[i] = (int)tempo_rng_below(&rng, 10);
  double t[64];
  int done = 0;
  tempo_mm_stats st;
  tempo_mm_set_training(mm, true);
  for (int s = 0; s < 1 + steps && s < 64; s++) {
    double t0 = tempo_now();
    tempo_params_zero_grad(&m->params);
    if (m->ops->forward(m, x, batch, logits)) break;
    (void)tempo_softmax_xent(logits, y, batch, 10, dl, NULL);
    if (m->ops->backward(m, dl, batch) || tempo_optim_step(&opt, &m->params)) break;
    tempo_mm_step_end(mm);
    if (s == 0) tempo_mm_stats_step(mm, &st); /* warm-up step: reset the window */
    else t[done++] = tempo_now() - t0;
  }
  tempo_mm_stats_step(mm, &st);
  if (done > 0) {
    qsort(t, (size_t)done, sizeof t[0], cmp_double);
    const double per = 1e3 / done;
    r.ms = (done % 2 ? t[done / 2] : 0.5 * (t[done / 2 - 1] + t[done / 2])) * 1e3;
    r.compute_ms = (mode == TEMPO_MODE_LOCAL ? st.t_local : st.t_compute) * per;
    r.blind_ms = st.t_blind * per, r.verify_ms = st.t_verify * per, r.unblind_ms = st.t_unblind * per;
    r.bytes = (double)(st.bytes_up + st.bytes_down) / done;
    r.ok = true;
  }
  tempo_free_floats(x), tempo_free_floats(logits), tempo_free_floats(dl);
done:
  tempo_optim_free(&opt);
  tempo_model_free(m);
  tempo_mm_free(mm);
  return r;
}

int main(int argc, char **argv) {
  int steps = 3;
  bool study = true;
  char models_s[128] = "mlp,resnet20,vit-mini";
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--models") && i + 1 < argc) snprintf(models_s, sizeof models_s, "%s", argv[++i]);
    else if (!strcmp(argv[i], "--skip-study")) study = false;
    else {
      fprintf(stderr, "usage: bench_shield [--steps N] [--models a,b] [--skip-study]\n");
      return 2;
    }
  }
  if (study) {
    printf("## Shield mode: precision and leakage against the mask scale alpha\n\n");
    printf("One 256x576x64 product (ReLU activations x N(0,1/n) weights). err: ||Y_shield - Y|| / ||Y|| against the "
           "float64 plaintext product (tempo mode alone: see the last column). Leakage of X'' (what roles A and B "
           "receive) about X': |corr|, sign agreement on nonzero entries, AUC of |X''| for the zero pattern (0.5 = "
           "chance), and the advantage of the sign-of-sum distinguisher between secrets X and -X (200 trials; 0 = "
           "chance, 1 = always right).\n\n");
    printf("| alpha | err f32 | max err f32 | err f64 | max err f64 | corr f32 / f64 | sign agree f32 / f64 | zero AUC f32 / "
           "f64 | distinguisher adv f32 / f64 | tempo err |\n|---|---|---|---|---|---|---|---|---|---|\n");
    static const double alphas[] = {1, 4, 16, 32, 64, 256, 1024, 4096, 16384, 65536};
    for (size_t ai = 0; ai < sizeof alphas / sizeof alphas[0]; ai++) {
      const double a = alphas[ai];
      tempo_shield_study_cfg c = {256, 576, 64, a, false, 42};
      tempo_shield_study_result r32, r64;
      if (tempo_shield_study(&c, &r32)) return 1;
      c.f64 = true;
      if (tempo_shield_study(&c, &r64)) return 1;
      printf("| %g | %.2e | %.2e | %.2e | %.2e | %.3f / %.3f | %.4f / %.4f | %.4f / %.4f | %.2f / %.2f | %.1e |\n", a,
             r32.rel_err, r32.max_err, r64.rel_err, r64.max_err, r32.corr, r64.corr, r32.sign_agree, r64.sign_agree,
             r32.zero_auc, r64.zero_auc, r32.dist_adv, r64.dist_adv, r32.tempo_rel_err);
      fflush(stdout);
    }
    printf("\nThe distinguisher on a 65536x27 operand (1.77M elements), float64 shares: its signal grows as "
           "sqrt(N)/alpha.\n\n| alpha | err f64 | distinguisher adv |\n|---|---|---|\n");
    static const double big[] = {1024, 4096, 16384, 65536};
    for (size_t ai = 0; ai < sizeof big / sizeof big[0]; ai++) {
      tempo_shield_study_cfg c = {65536, 27, 8, big[ai], true, 43};
      tempo_shield_study_result r;
      if (tempo_shield_study(&c, &r)) return 1;
      printf("| %g | %.2e | %.2f |\n", big[ai], r.rel_err, r.dist_adv);
      fflush(stdout);
    }
    printf("\n");
  }
  printf("## Shield mode: cost of a training step (batch 64, 4 in-process workers, %d timed steps)\n\n", steps);
  printf("Shares %s, alpha %s (defaults: float64 at %g; TEMPO_SHIELD_DTYPE=f32 gives float32 at %g). worker: summed "
         "worker compute per step; blind/verify/unblind: master time per step; MB: bytes up + down per step.\n\n",
         getenv("TEMPO_SHIELD_DTYPE") ? getenv("TEMPO_SHIELD_DTYPE") : "f64",
         getenv("TEMPO_SHIELD_ALPHA") ? getenv("TEMPO_SHIELD_ALPHA") : "default", TEMPO_SHIELD_DEFAULT_ALPHA,
         TEMPO_SHIELD_DEFAULT_ALPHA_F32);
  printf("| model | local ms | tempo ms | shield ms | shield/tempo | tempo worker ms | shield worker ms | shield "
         "blind/verify/unblind ms | tempo MB | shield MB | MB ratio |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (char *name = strtok(models_s, ","); name; name = strtok(NULL, ",")) {
    step_result l = time_steps(name, TEMPO_MODE_LOCAL, 4, steps), t = time_steps(name, TEMPO_MODE_TEMPO, 4, steps),
                s = time_steps(name, TEMPO_MODE_SHIELD, 4, steps);
    if (!l.ok || !t.ok || !s.ok) {
      printf("| %s | failed: %s |\n", name, tempo_errmsg());
      continue;
    }
    printf("| %s | %.1f | %.1f | %.1f | %.2f | %.1f | %.1f | %.1f / %.1f / %.1f | %.2f | %.2f | %.2f |\n", name, l.ms,
           t.ms, s.ms, s.ms / t.ms, t.compute_ms, s.compute_ms, s.blind_ms, s.verify_ms, s.unblind_ms, t.bytes / 1e6,
           s.bytes / 1e6, s.bytes / t.bytes);
    fflush(stdout);
  }
  return 0;
}
