/* test_shield_cheats.c - integrity in shield mode. With 5 workers, for every fault kind
 * of worker.h on one worker (cheating on every result it returns, whichever role it
 * holds): every cheated share is caught (Freivalds on each share, or the reply checks),
 * the role is recomputed on the spare worker and every product is still right, and the
 * cheater is evicted after 3 failures. With exactly 4 workers there is no spare that
 * holds no other role of the product, so a cheat stops the product with
 * TEMPO_STATUS_WORKER instead of giving one worker two roles. */
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

static tempo_mm *make(int workers) {
  tempo_mm *mm = test_make_mm(TEMPO_MODE_SHIELD, workers, 31, NULL);
  tempo_mm_set_timeout(mm, 0.1);
  return mm;
}

static void ref(int m, int n, int p, const float *X, const float *W, bool wt, float *Y) {
  for (int i = 0; i < m; i++)
    for (int j = 0; j < p; j++) {
      double a = 0;
      for (int k = 0; k < n; k++) a += (double)X[i * n + k] * W[wt ? j * n + k : k * p + j];
      Y[i * p + j] = (float)a;
    }
}

static void assert_elementwise_close(const float *a, const float *b, size_t n, const char *what) {
  double mx = 0;
  for (size_t i = 0; i < n; i++) mx = fmax(mx, fabs(b[i]));
  for (size_t i = 0; i < n; i++)
    if (fabs(a[i] - b[i]) > 2e-3 * mx) fail_msg("%s element %zu: %g vs %g", what, i, a[i], b[i]);
}

enum { M = 40, N = 24, P = 12 };

/* One forward + backward (dX and dW); returns the first failing status. */
static tempo_status one_product(tempo_mm *mm, tempo_rng *r, bool check) {
  static float X[M * N], W[N * P], Y[M * P], R[M * P], dY[M * P], dX[M * N], RX[M * N], dW[N * P], RW[N * P];
  static float XT[N * M];
  for (int i = 0; i < M * N; i++) X[i] = (float)tempo_rng_normal(r);
  for (int i = 0; i < N * P; i++) W[i] = (float)tempo_rng_normal(r);
  for (int i = 0; i < M * P; i++) dY[i] = (float)tempo_rng_normal(r);
  tempo_mm_shape sh = {1, M, N, P, false};
  tempo_mm_site site = {0};
  tempo_status st = tempo_mm_forward(mm, &site, &sh, X, W, Y);
  if (st) return st;
  if ((st = tempo_mm_backward(mm, &site, &sh, X, W, dY, dX, dW, 0))) return st;
  tempo_mm_step_end(mm);
  if (check) {
    ref(M, N, P, X, W, false, R);
    assert_elementwise_close(Y, R, M * P, "Y");
    ref(M, P, N, dY, W, true, RX); /* dX = dY W^T, W^T as stored (p, n) is W (n, p) read transposed */
    assert_elementwise_close(dX, RX, M * N, "dX");
    for (int i = 0; i < M; i++)
      for (int k = 0; k < N; k++) XT[k * M + i] = X[i * N + k];
    ref(N, M, P, XT, dY, false, RW);
    assert_elementwise_close(dW, RW, N * P, "dW");
  }
  return TEMPO_STATUS_OK;
}

static void test_each_cheat(void **state) {
  (void)state;
  tempo_rng r;
  tempo_rng_seed(&r, 9, 0);
  for (int k = TEMPO_FAULT_WRONG_ELEMENT; k < TEMPO_FAULT_COUNT_; k++) {
    for (int cheater = 0; cheater < 5; cheater += (k == TEMPO_FAULT_WRONG_ELEMENT ? 1 : 5)) {
      tempo_mm *mm = make(5);
      tempo_transport *tr = tempo_mm_test_transport(mm);
      tempo_worker_fault f = {.kind = (tempo_fault_kind)k, .start = k == TEMPO_FAULT_STALE ? 1 : 0, .period = 1};
      tempo_transport_inproc_set_fault(tr, cheater, &f);
      for (int it = 0; it < 6; it++) assert_int_equal(one_product(mm, &r, true), TEMPO_STATUS_OK);
      tempo_mm_stats st;
      tempo_mm_stats_run(mm, &st);
      uint64_t injected = tempo_transport_inproc_faults(tr, cheater);
      uint64_t caught = st.verify_failures + st.worker_errors + st.timeouts;
      if (injected != 3 || caught != 3 || st.evictions != 1 || st.recomputed != 3 || tempo_mm_live_workers(mm) != 4)
        fail_msg("%s on worker %d: injected %llu caught %llu (verify %llu, errors %llu, timeouts %llu) evictions %llu "
                 "recomputed %llu live %d",
                 tempo_fault_name((tempo_fault_kind)k), cheater, (unsigned long long)injected,
                 (unsigned long long)caught, (unsigned long long)st.verify_failures,
                 (unsigned long long)st.worker_errors, (unsigned long long)st.timeouts,
                 (unsigned long long)st.evictions, (unsigned long long)st.recomputed, tempo_mm_live_workers(mm));
      tempo_mm_free(mm);
    }
  }
}

/* Cheats on backward replies only (every second request from the first backward): a wrong
 * dX' share is caught inside the master's combine (the dX' check runs there when every role
 * is one block), its role is recomputed on the spare and the combine runs again; a wrong dW'
 * is caught on arrival. Every product is still right and the cheater is evicted after 3. */
static void test_backward_cheats(void **state) {
  (void)state;
  tempo_rng r;
  tempo_rng_seed(&r, 11, 0);
  const tempo_fault_kind kinds[] = {TEMPO_FAULT_WRONG_ELEMENT, TEMPO_FAULT_SCALE, TEMPO_FAULT_ZERO};
  for (size_t ki = 0; ki < sizeof kinds / sizeof kinds[0]; ki++)
    for (int cheater = 0; cheater < 5; cheater += kinds[ki] == TEMPO_FAULT_WRONG_ELEMENT ? 1 : 5) {
      tempo_mm *mm = make(5);
      tempo_transport *tr = tempo_mm_test_transport(mm);
      tempo_worker_fault f = {.kind = kinds[ki], .start = 1, .period = 2};
      tempo_transport_inproc_set_fault(tr, cheater, &f);
      for (int it = 0; it < 6; it++) assert_int_equal(one_product(mm, &r, true), TEMPO_STATUS_OK);
      tempo_mm_stats st;
      tempo_mm_stats_run(mm, &st);
      const uint64_t injected = tempo_transport_inproc_faults(tr, cheater);
      if (injected != 3 || st.verify_failures != 3 || st.evictions != 1 || st.recomputed != 3 ||
          tempo_mm_live_workers(mm) != 4)
        fail_msg("%s on worker %d's backward replies: injected %llu verify failures %llu evictions %llu recomputed %llu "
                 "live %d",
                 tempo_fault_name(kinds[ki]), cheater, (unsigned long long)injected,
                 (unsigned long long)st.verify_failures, (unsigned long long)st.evictions,
                 (unsigned long long)st.recomputed, tempo_mm_live_workers(mm));
      tempo_mm_free(mm);
    }
}

static void test_no_spare(void **state) {
  (void)state;
  tempo_rng r;
  tempo_rng_seed(&r, 10, 0);
  tempo_mm *mm = make(4);
  tempo_worker_fault f = {.kind = TEMPO_FAULT_SCALE, .start = 0, .period = 1};
  tempo_transport_inproc_set_fault(tempo_mm_test_transport(mm), 2, &f);
  assert_int_equal(one_product(mm, &r, false), TEMPO_STATUS_WORKER);
  tempo_mm_stats st;
  tempo_mm_stats_run(mm, &st);
  assert_int_equal(st.verify_failures, 1);
  assert_int_equal(st.recomputed, 0);
  tempo_mm_free(mm);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_each_cheat), cmocka_unit_test(test_backward_cheats),
                                     cmocka_unit_test(test_no_spare)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
