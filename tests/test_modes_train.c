/* test_modes_train.c - the same training run in local, plain and tempo modes: 20 steps of the
 * MLP, resnet20 and vit-mini on real Fashion-MNIST (batch 16) give the same losses in every
 * mode, and `eval` of the result gives the same test accuracy in every mode.
 * Tolerance: the modes differ only by float rounding (blinding scales the operands, and the
 * workers' products sum in another order). Early ResNet training amplifies any rounding
 * difference (with batch norm, a 1e-5 change at step 3 grows to 1e-2 by step 10), so the
 * test measures that noise floor in the same run: local mode with the other GEMM library
 * (OpenBLAS forced instead of the automatic oneDNN/OpenBLAS choice, gemm.h), and local mode
 * on 2 threads, change nothing but summation orders (one such run alone samples the floor
 * thinly: measured 2026-12-03, resnet20 by step 10 deviated up to 1.0e-2 with OpenBLAS, 4.5e-2 on
 * 2 threads; tempo mode, whose dX sums onto the activation gradient in the key's row order,
 * 4.7e-2). At every step s we require
 *   |loss_mode(s) - loss_local(s)| <= 2e-3 * max(1, loss_local(s)) + 4 * max_{t<=s} max_o |loss_o(t) - loss_local(t)|
 * over those two orders o
 * (for the MLP and vit-mini the floor is ~1e-6, so the first term decides), and eval
 * accuracies within 0.2 percentage points (20 of the 10,000 test images). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tempo/gemm.h"
#include "tempo/train.h"
#include "test_util.h"



static void run(const char *model, tempo_mode mode, int threads, const char *out, double *losses) {
  tempo_train_config c;
  tempo_train_config_default(&c);
  snprintf(c.model, sizeof c.model, "%s", model);
  c.engine.mode = mode;
  c.engine.threads = threads;
  c.engine.workers = 2;
  c.optim.lr = 0.01f;
  c.engine.seed = 11;
  c.out_dir = out;
  c.max_steps = 20;
  c.log_every = 1;
  c.batch_size = 16;
  c.quiet = true;
  c.progress = 0;
  c.no_eval = true; /* the accuracies are compared by `eval` below */
  c.seed = 3;
  tempo_train_result r;
  if (tempo_train_run(&c, &r) != TEMPO_STATUS_OK) fail_msg("%s in %s mode: %s", model, tempo_mode_name(mode), tempo_errmsg());
  assert_int_equal(test_read_losses(out, losses, 20), 20);
}

static void compare_modes(const char *model) {
  double ref[20], noise[20], got[20], floor_dev[20];
  char out[160];
  snprintf(out, sizeof out, "%s/%s-local", tmpdir, model);
  run(model, TEMPO_MODE_LOCAL, 1, out, ref);
  assert_true(ref[19] < ref[0]); /* it learns */
  snprintf(out, sizeof out, "%s/%s-local-openblas", tmpdir, model);
  const tempo_gemm_backend keep = tempo_gemm_get_backend();
  tempo_gemm_set_backend(tempo_gemm_have_dnnl() ? TEMPO_GEMM_OPENBLAS : TEMPO_GEMM_AUTO);
  if (!tempo_gemm_have_dnnl()) tempo_gemm_set_threads(2); /* without oneDNN: OpenBLAS's 2-thread order */
  run(model, TEMPO_MODE_LOCAL, tempo_gemm_have_dnnl() ? 1 : 2, out, noise);
  tempo_gemm_set_backend(keep);
  /* a second order: local mode on 2 threads (the GEMMs' and the layers' parallel splits) */
  double noise2[20];
  snprintf(out, sizeof out, "%s/%s-local-2threads", tmpdir, model);
  run(model, TEMPO_MODE_LOCAL, 2, out, noise2);
  double fl = 0;
  for (int s = 0; s < 20; s++) floor_dev[s] = fl = fmax(fl, fmax(fabs(noise[s] - ref[s]), fabs(noise2[s] - ref[s])));
  const tempo_mode modes[] = {TEMPO_MODE_PLAIN, TEMPO_MODE_TEMPO};
  for (int i = 0; i < 2; i++) {
    snprintf(out, sizeof out, "%s/%s-%s", tmpdir, model, tempo_mode_name(modes[i]));
    run(model, modes[i], 1, out, got);
    double worst = 0;
    for (int s = 0; s < 20; s++) {
      const double d = fabs(got[s] - ref[s]), tol = 2e-3 * fmax(1.0, ref[s]) + 4 * floor_dev[s];
      worst = fmax(worst, d);
      if (d > tol)
        fail_msg("%s %s step %d: loss %.6f vs local %.6f (tolerance %.2e)", model, tempo_mode_name(modes[i]), s + 1,
                 got[s], ref[s], tol);
    }
    print_message("%s %s: worst loss difference over 20 steps %.2e (noise floor %.2e)\n", model,
                  tempo_mode_name(modes[i]), worst, fl);
  }
}

static void test_mlp(void **state) { (void)state; compare_modes("mlp"); }
static void test_resnet20(void **state) { (void)state; compare_modes("resnet20"); }
static void test_vit_mini(void **state) { (void)state; compare_modes("vit-mini"); }

static void test_eval_same_in_every_mode(void **state) {
  (void)state;
  char ckpt[160];
  snprintf(ckpt, sizeof ckpt, "%s/mlp-local/model.ckpt", tmpdir);
  double acc[3], loss;
  const tempo_mode modes[] = {TEMPO_MODE_LOCAL, TEMPO_MODE_PLAIN, TEMPO_MODE_TEMPO};
  for (int i = 0; i < 3; i++) {
    tempo_mm_config mc;
    tempo_mm_config_default(&mc);
    mc.mode = modes[i];
    mc.threads = 1;
    assert_int_equal(tempo_eval_checkpoint(ckpt, NULL, &mc, 250, &acc[i], &loss), TEMPO_STATUS_OK);
    print_message("eval %s: %.4f\n", tempo_mode_name(modes[i]), acc[i]);
  }
  assert_true(acc[0] > 0.3); /* 20 small steps: well above chance (0.1) */
  assert_true(fabs(acc[1] - acc[0]) <= 0.002);
  assert_true(fabs(acc[2] - acc[0]) <= 0.002);
}

TEST_TMPDIR_GROUP("modes")

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_mlp),
      cmocka_unit_test(test_eval_same_in_every_mode),
      cmocka_unit_test(test_resnet20),
      cmocka_unit_test(test_vit_mini),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
