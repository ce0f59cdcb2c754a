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

#include "bench_util.h"
#include "tempo/rng.h"
#include "tempo/shield.h"

typedef struct {
  double ms, compute_ms, blind_ms, verify_ms, unblind_ms, bytes;
  bool ok;
} step_result;

static bool g_f32;    /* --shield-dtype f32 */
static double g_alpha; /* --shield-alpha; 0 = the dtype's default */

static step_result time_steps(const char *name, tempo_mode mode, int workers, int steps) {
  step_result r = {0};
  tempo_mm_config ec;
  tempo_mm_config_default(&ec);
  ec.mode = mode;
  ec.shield_f32 = g_f32;
  ec.shield_alpha = g_alpha;
  ec.workers = workers;
  ec.seed = 1;
  bench_rig rig;
  if (bench_rig_open(&rig, name, &ec, 64)) {
    fprintf(stderr, "bench_shield: %s %s: %s\n", name, tempo_mode_name(mode), tempo_errmsg());
    return r;
  }
  double t[64];
  int done = 0;
  tempo_mm_stats st;
  for (int s = 0; s < 1 + steps && s < 64; s++) {
    double t0 = tempo_now();
    if (bench_rig_step(&rig, NULL)) break;
    if (s == 0) tempo_mm_stats_step(rig.mm, &st); /* warm-up step: reset the window */
    else t[done++] = tempo_now() - t0;
  }
  tempo_mm_stats_step(rig.mm, &st);
  if (done > 0) {
    const double per = 1e3 / done;
    r.ms = bench_median(t, done) * 1e3;
    r.compute_ms = (mode == TEMPO_MODE_LOCAL ? st.t_local : st.t_compute) * per;
    r.blind_ms = st.t_blind * per, r.verify_ms = st.t_verify * per, r.unblind_ms = st.t_unblind * per;
    r.bytes = (double)(st.bytes_up + st.bytes_down) / done;
    r.ok = true;
  }
  bench_rig_close(&rig);
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
    else if (!strcmp(argv[i], "--shield-dtype") && i + 1 < argc) g_f32 = !strcmp(argv[++i], "f32");
    else if (!strcmp(argv[i], "--shield-alpha") && i + 1 < argc) g_alpha = atof(argv[++i]);
    else {
      fprintf(stderr, "usage: bench_shield [--steps N] [--models a,b] [--skip-study] [--shield-dtype f32|f64] "
                      "[--shield-alpha A]\n");
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
  char alpha_s[32] = "default";
  if (g_alpha > 0) snprintf(alpha_s, sizeof alpha_s, "%g", g_alpha);
  printf("Shares %s, alpha %s (defaults: float64 at %g; --shield-dtype f32 gives float32 at %g). worker: summed "
         "worker compute per step; blind/verify/unblind: master time per step; MB: bytes up + down per step.\n\n",
         g_f32 ? "f32" : "f64", alpha_s, TEMPO_SHIELD_DEFAULT_ALPHA, TEMPO_SHIELD_DEFAULT_ALPHA_F32);
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
