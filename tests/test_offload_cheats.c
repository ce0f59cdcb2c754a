/* test_offload_cheats.c - fault injection through the engine. For each cheat kind on
 * worker 1 of 2 (cheating on every result from its first): every cheated result is
 * caught, each product is still right (recomputed on worker 0), and worker 1 is evicted
 * after 3 failures (plain, tempo, and tempo with mixing blocks). With honest workers, 10,000 products of mixed small shapes (plain
 * and tempo, forward and backward) have zero rejections. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "offload/transport.h"
#include "tempo/matmul.h"
#include "tempo/rng.h"
#include "test_util.h"

static tempo_mm *make(tempo_mode mode) {
  tempo_mm *mm = test_make_mm(mode, 2, 77, NULL);
  /* a stalled worker costs 0.5 s per request; 0.1 s timed out honest workers at load 15 */
  tempo_mm_set_timeout(mm, 0.5);
  return mm;
}

/* Tempo mode under --protect spatial: a spatial site's products are mixed (mix.c). */
static tempo_mm *make_mixed(void) {
  tempo_mm_config cfg;
  tempo_mm_config_default(&cfg);
  cfg.workers = 2, cfg.seed = 77, cfg.protect = TEMPO_PROTECT_SPATIAL;
  tempo_mm *mm;
  assert_int_equal(tempo_mm_create(&cfg, &mm), TEMPO_STATUS_OK);
  tempo_mm_set_training(mm, true);
  tempo_mm_set_timeout(mm, 0.5);
  return mm;
}

static void ref(const tempo_mm_shape *s, const float *X, const float *W, float *Y) {
  for (int i = 0; i < s->m; i++)
    for (int j = 0; j < s->p; j++) {
      double a = 0;
      for (int k = 0; k < s->n; k++) a += (double)X[i * s->n + k] * W[s->w_trans ? j * s->n + k : k * s->p + j];
      Y[i * s->p + j] = (float)a;
    }
}

static void assert_elementwise_close(const float *a, const float *b, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (fabsf(a[i] - b[i]) > 1e-3f * (1.0f + fabsf(b[i]))) fail_msg("element %zu: %g vs %g", i, a[i], b[i]);
}

static void test_each_cheat(void **state) {
  (void)state;
  enum { M = 48, N = 20, P = 12 };
  tempo_mm_shape sh = {1, M, N, P, false};
  float X[M * N], W[N * P], Y[M * P], R[M * P], dY[M * P], dX[M * N];
  tempo_rng r;
  tempo_rng_seed(&r, 3, 0);
  for (int k = TEMPO_FAULT_WRONG_ELEMENT; k < TEMPO_FAULT_COUNT_; k++) {
    for (int mode = 0; mode < 3; mode++) { /* plain, tempo, tempo with mixing blocks */
      tempo_mm *mm = mode == 2 ? make_mixed() : make(mode ? TEMPO_MODE_TEMPO : TEMPO_MODE_PLAIN);
      tempo_transport *tr = tempo_mm_test_transport(mm);
      /* stale needs an earlier honest result of the same size to replay */
      tempo_worker_fault f = {.kind = (tempo_fault_kind)k, .start = k == TEMPO_FAULT_STALE ? 1 : 0, .period = 1};
      tempo_transport_inproc_set_fault(tr, 1, &f);
      for (int it = 0; it < 6; it++) {
        for (int i = 0; i < M * N; i++) X[i] = (float)tempo_rng_normal(&r);
        for (int i = 0; i < N * P; i++) W[i] = (float)tempo_rng_normal(&r);
        for (int i = 0; i < M * P; i++) dY[i] = (float)tempo_rng_normal(&r);
        tempo_mm_site site = {.kind = mode == 2 ? TEMPO_SITE_SPATIAL : 0};
        assert_int_equal(tempo_mm_forward(mm, &site, &sh, X, W, Y), TEMPO_STATUS_OK);
        ref(&sh, X, W, R);
        assert_elementwise_close(Y, R, M * P);
        assert_int_equal(tempo_mm_backward(mm, &site, &sh, X, W, dY, dX, NULL, 0), TEMPO_STATUS_OK);
        /* dX = dY W^T: W^T as stored (p, n) */
        tempo_mm_shape bs = {1, M, P, N, true};
        float RX[M * N];
        ref(&bs, dY, W, RX);
        assert_elementwise_close(dX, RX, M * N);
        tempo_mm_step_end(mm);
      }
      tempo_mm_stats st;
      tempo_mm_stats_run(mm, &st);
      uint64_t injected = tempo_transport_inproc_faults(tr, 1);
      uint64_t caught = st.verify_failures + st.worker_errors + st.timeouts;
      if (injected != 3 || caught != 3 || st.evictions != 1 || st.recomputed != 3 || tempo_mm_live_workers(mm) != 1)
        fail_msg("%s (%s): injected %llu caught %llu evictions %llu recomputed %llu", tempo_fault_name(f.kind),
                 mode == 2 ? "tempo mixed" : mode ? "tempo" : "plain", (unsigned long long)injected, (unsigned long long)caught,
                 (unsigned long long)st.evictions, (unsigned long long)st.recomputed);
      if (k <= TEMPO_FAULT_ZERO) assert_int_equal(st.verify_failures, 3);
      if (k == TEMPO_FAULT_NO_REPLY) assert_int_equal(st.timeouts, 3);
      if (k == TEMPO_FAULT_OTHER_TASK || k == TEMPO_FAULT_ERROR_REPLY) assert_int_equal(st.worker_errors, 3);
      tempo_mm_free(mm);
    }
  }
}

/* Cheating now and then (every 4th result): caught every time, never a wrong product;
 * both workers cheating always: the engine runs out of workers with TEMPO_STATUS_WORKER. */
static void test_occasional_and_all(void **state) {
  (void)state;
  enum { M = 30, N = 9, P = 7 };
  tempo_mm_shape sh = {2, M, N, P, true};
  float X[2 * M * N], W[2 * N * P], Y[2 * M * P], R[M * P];
  for (int i = 0; i < 2 * M * N; i++) X[i] = (float)((i * 37) % 11) - 5;
  for (int i = 0; i < 2 * N * P; i++) W[i] = (float)((i * 13) % 7) - 3;
  tempo_mm *mm = make(TEMPO_MODE_TEMPO);
  tempo_transport *tr = tempo_mm_test_transport(mm);
  tempo_worker_fault f = {.kind = TEMPO_FAULT_SCALE, .start = 1, .period = 4};
  tempo_transport_inproc_set_fault(tr, 0, &f);
  tempo_mm_site site = {0};
  for (int it = 0; it < 8; it++) {
    assert_int_equal(tempo_mm_forward(mm, &site, &sh, X, W, Y), TEMPO_STATUS_OK);
    for (int b = 0; b < 2; b++) {
      tempo_mm_shape one = {1, M, N, P, true};
      ref(&one, X + b * M * N, W + b * N * P, R);
      assert_elementwise_close(Y + b * M * P, R, M * P);
    }
    tempo_mm_step_end(mm);
  }
  tempo_mm_stats st;
  tempo_mm_stats_run(mm, &st);
  assert_int_equal(st.verify_failures, tempo_transport_inproc_faults(tr, 0));
  assert_true(st.verify_failures >= 2);
  tempo_mm_free(mm);

  mm = make(TEMPO_MODE_TEMPO);
  tr = tempo_mm_test_transport(mm);
  f.kind = TEMPO_FAULT_ZERO, f.start = 0, f.period = 1;
  tempo_transport_inproc_set_fault(tr, 0, &f);
  tempo_transport_inproc_set_fault(tr, 1, &f);
  assert_int_equal(tempo_mm_forward(mm, &site, &sh, X, W, Y), TEMPO_STATUS_WORKER);
  assert_int_equal(tempo_mm_live_workers(mm), 0);
  tempo_mm_free(mm);
}

/* 10,000 products of mixed small shapes with honest workers: no false alarm. */
static void test_no_false_alarms(void **state) {
  (void)state;
  tempo_rng r;
  tempo_rng_seed(&r, 11, 0);
  enum { CAP = 64 * 64 * 4 };
  float *X = malloc(CAP * 4), *W = malloc(CAP * 4), *Y = malloc(CAP * 4), *dY = malloc(CAP * 4);
  float *dX = malloc(CAP * 4), *dW = malloc(CAP * 4);
  uint64_t products = 0;
  for (int mode = 0; mode < 2; mode++) {
    tempo_mm *mm = make(mode ? TEMPO_MODE_TEMPO : TEMPO_MODE_PLAIN);
    tempo_mm_set_timeout(mm, 30);
    tempo_mm_site sites[4] = {{0}};
    for (int it = 0; it < 1700; it++) {
      tempo_mm_shape sh = {1 + (int)tempo_rng_below(&r, 3), 1 + (int)tempo_rng_below(&r, 64),
                           1 + (int)tempo_rng_below(&r, 64), 1 + (int)tempo_rng_below(&r, 64),
                           tempo_rng_below(&r, 2) == 1};
      size_t xs = (size_t)sh.batch * sh.m * sh.n, ws = (size_t)sh.batch * sh.n * sh.p,
             ys = (size_t)sh.batch * sh.m * sh.p;
      double scale = exp(tempo_rng_normal(&r)); /* values over a few orders of magnitude */
      for (size_t i = 0; i < xs; i++) X[i] = (float)(scale * tempo_rng_normal(&r));
      for (size_t i = 0; i < ws; i++) W[i] = (float)tempo_rng_normal(&r);
      for (size_t i = 0; i < ys; i++) dY[i] = (float)tempo_rng_normal(&r);
      tempo_mm_site *site = &sites[it % 4];
      assert_int_equal(tempo_mm_forward(mm, site, &sh, X, W, Y), TEMPO_STATUS_OK);
      assert_int_equal(tempo_mm_backward(mm, site, &sh, X, W, dY, dX, dW, 0), TEMPO_STATUS_OK);
      if (it % 4 == 3) tempo_mm_step_end(mm);
    }
    tempo_mm_step_end(mm);
    tempo_mm_stats st;
    tempo_mm_stats_run(mm, &st);
    assert_int_equal(st.verify_failures + st.recomputed + st.worker_errors + st.timeouts + st.evictions, 0);
    products += st.products;
    tempo_mm_free(mm);
  }
  assert_true(products >= 10000);
  free(X), free(W), free(Y), free(dY), free(dX), free(dW);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_each_cheat),
      cmocka_unit_test(test_occasional_and_all),
      cmocka_unit_test(test_no_false_alarms),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
