/* test_offload.c - the offload engine against the local mode: plain and tempo products
 * (forward, both backward products, the accumulate flags, w_trans both ways, batches)
 * equal local products within a normalised error of 1e-4 (max |a - b| / max |local|);
 * eval mode; step end releases the workers' operands; the statistics of a known
 * sequence are exact. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "offload/engine.h"
#include "tempo/common.h"
#include "tempo/matmul.h"
#include "tempo/rng.h"
#include "test_util.h"

#define TOL 1e-4

static tempo_mm *make(tempo_mode mode, int workers) { return test_make_mm(mode, workers, 1234, NULL); }

static double nerr(const float *a, const float *b, size_t n) {
  double d = 0, s = 0;
  for (size_t i = 0; i < n; i++) {
    d = fmax(d, fabs((double)a[i] - b[i]));
    s = fmax(s, fabs((double)b[i]));
  }
  return d / (s > 0 ? s : 1);
}

/* One forward + backward of shape sh in mode and in local mode; compares all outputs. */
static void compare(tempo_mode mode, const tempo_mm_shape *sh, unsigned flags, uint64_t seed) {
  const size_t xs = (size_t)sh->batch * sh->m * sh->n, ws = (size_t)sh->batch * sh->n * sh->p,
               ys = (size_t)sh->batch * sh->m * sh->p;
  float *X = malloc(xs * 4), *W = malloc(ws * 4), *dY = malloc(ys * 4);
  float *Y[2], *dX[2], *dW[2];
  tempo_rng r;
  tempo_rng_seed(&r, seed, 0);
  test_randn(X, xs, &r), test_randn(W, ws, &r), test_randn(dY, ys, &r);
  float *dX0 = malloc(xs * 4), *dW0 = malloc(ws * 4);
  test_randn(dX0, xs, &r), test_randn(dW0, ws, &r);
  for (int k = 0; k < 2; k++) {
    tempo_mm *mm = make(k == 0 ? TEMPO_MODE_LOCAL : mode, 2);
    tempo_mm_site site = {0};
    Y[k] = malloc(ys * 4), dX[k] = malloc(xs * 4), dW[k] = malloc(ws * 4);
    memcpy(dX[k], dX0, xs * 4);
    memcpy(dW[k], dW0, ws * 4);
    for (int step = 0; step < 2; step++) { /* twice: fresh keys, reused buffers */
      assert_int_equal(tempo_mm_forward(mm, &site, sh, X, W, Y[k]), TEMPO_STATUS_OK);
      if (step == 1) {
        memcpy(dX[k], dX0, xs * 4);
        memcpy(dW[k], dW0, ws * 4);
      }
      assert_int_equal(tempo_mm_backward(mm, &site, sh, X, W, dY, dX[k], dW[k], flags), TEMPO_STATUS_OK);
      tempo_mm_step_end(mm);
    }
    tempo_mm_stats st;
    tempo_mm_stats_run(mm, &st);
    assert_int_equal(st.verify_failures, 0);
    assert_int_equal(st.recomputed, 0);
    tempo_mm_free(mm);
  }
  double e1 = nerr(Y[1], Y[0], ys), e2 = nerr(dX[1], dX[0], xs), e3 = nerr(dW[1], dW[0], ws);
  if (e1 > TOL || e2 > TOL || e3 > TOL)
    fail_msg("%s %dx%dx%dx%d wt=%d flags=%u: errors Y %.2e dX %.2e dW %.2e", tempo_mode_name(mode), sh->batch,
             sh->m, sh->n, sh->p, sh->w_trans, flags, e1, e2, e3);
  for (int k = 0; k < 2; k++) free(Y[k]), free(dX[k]), free(dW[k]);
  free(X), free(W), free(dY), free(dX0), free(dW0);
}

static void test_matches_local(void **state) {
  (void)state;
  const tempo_mm_shape shapes[] = {
      {1, 1, 1, 1, false}, {1, 7, 13, 5, false}, {1, 33, 17, 65, false}, {3, 7, 13, 5, false},
      {1, 200, 64, 48, false}, {5, 9, 4, 6, false}, {2, 65, 32, 65, false},
  };
  const tempo_mode modes[] = {TEMPO_MODE_PLAIN, TEMPO_MODE_TEMPO};
  uint64_t seed = 1;
  for (size_t mi = 0; mi < 2; mi++)
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
      for (int wt = 0; wt < 2; wt++)
        for (unsigned flags = 0; flags < 4; flags++) {
          tempo_mm_shape sh = shapes[i];
          sh.w_trans = wt;
          compare(modes[mi], &sh, flags, seed++);
        }
}

/* Only dX or only dW requested. */
static void test_partial_backward(void **state) {
  (void)state;
  tempo_mm_shape sh = {1, 40, 24, 8, true};
  float X[40 * 24], W[24 * 8], dY[40 * 8], Y[40 * 8], dX[2][40 * 24], dW[2][24 * 8];
  tempo_rng r;
  tempo_rng_seed(&r, 5, 0);
  test_randn(X, sizeof X / 4, &r), test_randn(W, sizeof W / 4, &r), test_randn(dY, sizeof dY / 4, &r);
  for (int k = 0; k < 2; k++) {
    tempo_mm *mm = make(k ? TEMPO_MODE_TEMPO : TEMPO_MODE_LOCAL, 2);
    tempo_mm_site site = {0};
    assert_int_equal(tempo_mm_forward(mm, &site, &sh, X, W, Y), TEMPO_STATUS_OK);
    assert_int_equal(tempo_mm_backward(mm, &site, &sh, X, W, dY, dX[k], NULL, 0), TEMPO_STATUS_OK);
    assert_int_equal(tempo_mm_backward(mm, &site, &sh, X, W, dY, NULL, dW[k], 0), TEMPO_STATUS_OK);
    tempo_mm_free(mm);
  }
  assert_true(nerr(dX[1], dX[0], 40 * 24) < TOL);
  assert_true(nerr(dW[1], dW[0], 24 * 8) < TOL);
}

static void test_stats_exact(void **state) {
  (void)state;
  const tempo_mode modes[] = {TEMPO_MODE_PLAIN, TEMPO_MODE_TEMPO};
  for (int mi = 0; mi < 2; mi++) {
    tempo_mm *mm = make(modes[mi], 2);
    tempo_mm_shape sh = {1, 64, 32, 16, false}; /* 2 row blocks of 32 */
    float *X = calloc(64 * 32, 4), *W = calloc(32 * 16, 4), *Y = calloc(64 * 16, 4), *dY = calloc(64 * 16, 4);
    float *dX = calloc(64 * 32, 4), *dW = calloc(32 * 16, 4);
    for (int i = 0; i < 64 * 32; i++) X[i] = (float)(i % 7) - 3;
    for (int i = 0; i < 32 * 16; i++) W[i] = (float)(i % 5) - 2;
    for (int i = 0; i < 64 * 16; i++) dY[i] = (float)(i % 3) - 1;
    tempo_mm_site site = {0};
    assert_int_equal(tempo_mm_forward(mm, &site, &sh, X, W, Y), TEMPO_STATUS_OK);
    assert_int_equal(tempo_mm_backward(mm, &site, &sh, X, W, dY, dX, dW, 0), TEMPO_STATUS_OK);
    tempo_mm_stats st;
    tempo_mm_stats_step(mm, &st);
    assert_int_equal(st.products, 3);
    assert_int_equal(st.encryptions, 3);
    assert_int_equal(st.decryptions, 3);
    assert_int_equal(st.naive_encryptions, 6);
    const uint64_t H = 80;
    /* forward: 2 blocks of X' (32x32) + full W' (32x16) each; backward: dY* blocks (32x16) */
    uint64_t up = 2 * (H + 4 * (32 * 32 + 32 * 16)) + 2 * (H + 4 * 32 * 16);
    uint64_t naive = 2 * (H + 4 * (32 * 32 + 32 * 16)) + 2 * (H + 4 * (32 * 16 + 32 * 16)) +
                     2 * (H + 4 * (32 * 32 + 32 * 16));
    assert_int_equal(st.bytes_up, up);
    assert_int_equal(st.naive_bytes_up, naive);
    /* down: Y' blocks (32x16), dX' blocks (32x32) + dW' partials (32x16) */
    assert_int_equal(st.bytes_down, 2 * (H + 4 * 32 * 16) + 2 * (H + 4 * (32 * 32 + 32 * 16)));
    assert_int_equal(st.verify_failures + st.recomputed + st.evictions + st.timeouts + st.worker_errors, 0);
    assert_true(st.t_blind > 0 && st.t_unblind > 0 && st.t_verify > 0 && st.t_compute > 0);
    tempo_mm_step_end(mm);
    tempo_mm_stats_step(mm, &st); /* the step end's RELEASE round trip: 2 x 80 up, 2 x 80 down */
    assert_int_equal(st.bytes_up, 2 * H);
    assert_int_equal(st.bytes_down, 2 * H);
    assert_int_equal(st.products, 0);
    free(X), free(W), free(Y), free(dY), free(dX), free(dW);
    tempo_mm_free(mm);
  }
}

static void test_eval_and_release(void **state) {
  (void)state;
  tempo_mm *mm = make(TEMPO_MODE_TEMPO, 2);
  tempo_transport *tr = tempo_mm_test_transport(mm);
  assert_non_null(tr);
  tempo_mm_shape sh = {1, 64, 32, 16, false};
  float *X = calloc(64 * 32, 4), *W = calloc(32 * 16, 4), *Y = calloc(64 * 16, 4), *dY = calloc(64 * 16, 4);
  float *dX = calloc(64 * 32, 4);
  tempo_mm_site a = {0}, b = {0};
  assert_int_equal(tempo_mm_forward(mm, &a, &sh, X, W, Y), TEMPO_STATUS_OK);
  assert_int_equal(tempo_mm_forward(mm, &b, &sh, X, W, Y), TEMPO_STATUS_OK);
  /* two sites x 2 blocks, each block keeps X' and W' on its worker */
  assert_int_equal(tempo_transport_inproc_handles(tr, 0) + tempo_transport_inproc_handles(tr, 1), 8);
  tempo_mm_step_end(mm);
  assert_int_equal(tempo_transport_inproc_handles(tr, 0), 0);
  assert_int_equal(tempo_transport_inproc_handles(tr, 1), 0);
  /* a backward after step end has nothing to reuse */
  assert_int_equal(tempo_mm_backward(mm, &a, &sh, X, W, dY, dX, NULL, 0), TEMPO_STATUS_INVALID_ARGUMENT);
  /* eval mode keeps nothing and allows no backward */
  tempo_mm_set_training(mm, false);
  assert_int_equal(tempo_mm_forward(mm, &a, &sh, X, W, Y), TEMPO_STATUS_OK);
  assert_int_equal(tempo_transport_inproc_handles(tr, 0) + tempo_transport_inproc_handles(tr, 1), 0);
  assert_int_equal(tempo_mm_backward(mm, &a, &sh, X, W, dY, dX, NULL, 0), TEMPO_STATUS_INVALID_ARGUMENT);
  /* backward with another shape than its forward */
  tempo_mm_set_training(mm, true);
  assert_int_equal(tempo_mm_forward(mm, &a, &sh, X, W, Y), TEMPO_STATUS_OK);
  tempo_mm_shape other = sh;
  other.m = 32;
  assert_int_equal(tempo_mm_backward(mm, &a, &other, X, W, dY, dX, NULL, 0), TEMPO_STATUS_MISMATCH);
  free(X), free(W), free(Y), free(dY), free(dX);
  tempo_mm_free(mm);
  /* shield with the default 2 workers is refused (it needs 4: tests/test_shield.c) */
  tempo_mm_config cfg;
  tempo_mm_config_default(&cfg);
  cfg.mode = TEMPO_MODE_SHIELD;
  tempo_mm *s;
  assert_int_equal(tempo_mm_create(&cfg, &s), TEMPO_STATUS_INVALID_ARGUMENT);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_matches_local),
      cmocka_unit_test(test_partial_backward),
      cmocka_unit_test(test_stats_exact),
      cmocka_unit_test(test_eval_and_release),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
