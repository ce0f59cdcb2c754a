/* test_blame.c - the right worker is blamed (issue 16.2), in-process with real products in
 * tempo mode, row-split over 2 and 3 workers, each worker in turn the rogue:
 *  - a worker that flips one byte of every W' it relays to the next worker (its own results
 *    honest): the receiver's authenticator check fails, its complaint is charged to the
 *    relayer (and its successor's, passed nothing, is forgiven), the blocks are recomputed:
 *    every result equals local mode's, the rogue is evicted once it has relayed 3 times and
 *    no honest worker is ever evicted;
 *  - a worker that tampers only with the dW' sums it passes along the reduction chain (or
 *    returns, as last member): the sum fails the master's check, the partials are recomputed
 *    and checked one by one, the prefix sums are compared with what each member says it
 *    received, and the member that tampered is charged: evicted after 3, honest ones never;
 *  - an honest run with the chain charges nobody (the digests agree). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "offload/engine.h"
#include "tempo/matmul.h"
#include "tempo/rng.h"
#include "test_util.h"

enum { M = 96, N = 40, P = 24, STEPS = 8 };
#define TOL 1e-4

static double nerr(const float *a, const float *b, size_t n) {
  double d = 0, s = 0;
  for (size_t i = 0; i < n; i++) {
    d = fmax(d, fabs((double)a[i] - b[i]));
    s = fmax(s, fabs((double)b[i]));
  }
  return d / (s > 0 ? s : 1);
}

typedef struct {
  float X[M * N], W[N * P], dY[M * P];
  float Y[M * P], dX[M * N], dW[N * P];
} prod;

/* One training step of the product on mm: forward, backward (dX, dW). live[w] (may be NULL):
 * whether worker w is still in use (not evicted). */
static void step(tempo_mm *mm, prod *p, int nw, bool *live) {
  tempo_mm_shape sh = {1, M, N, P, false};
  tempo_mm_site site = {0};
  assert_int_equal(tempo_mm_forward(mm, &site, &sh, p->X, p->W, p->Y), TEMPO_STATUS_OK);
  tempo_transport *tr = tempo_mm_test_transport(mm);
  for (int w = 0; live && tr && w < nw; w++) live[w] = !tempo_transport_inproc_evicted(tr, w);
  assert_int_equal(tempo_mm_backward(mm, &site, &sh, p->X, p->W, p->dY, p->dX, p->dW, 0), TEMPO_STATUS_OK);
  tempo_mm_step_end(mm);
}

/* The rogue's run against local mode, step by step (another gradient every step); returns the
 * run's statistics and whether each worker still got blocks in the last step. */
static void run_rogue(int nw, int rogue, bool relay_fault, tempo_mm_stats *st, bool *live, uint64_t *injected) {
  prod *a = malloc(sizeof *a), *ref = malloc(sizeof *ref);
  tempo_rng r;
  tempo_rng_seed(&r, 7 + (uint64_t)rogue, 0);
  test_randn(a->X, M * N, &r), test_randn(a->W, N * P, &r), test_randn(a->dY, M * P, &r);
  *ref = *a;
  tempo_mm *lm = test_make_mm(TEMPO_MODE_LOCAL, 1, 1, NULL);
  tempo_mm *mm = test_make_mm(TEMPO_MODE_TEMPO, nw, 99, NULL);
  tempo_transport *tr = tempo_mm_test_transport(mm);
  tr->can_reduce = !relay_fault; /* the chain only where it is what the rogue attacks */
  if (relay_fault) {
    tempo_worker_fault f = {.kind = TEMPO_FAULT_BAD_RELAY, .start = 0, .period = 1};
    tempo_transport_inproc_set_fault(tr, rogue, &f);
  } else {
    tempo_transport_inproc_set_bad_sum(tr, rogue, 0);
  }
  for (int s = 0; s < STEPS; s++) {
    for (int i = 0; i < M * P; i++) a->dY[i] = ref->dY[i] = (s % 2 ? -1.0f : 1.0f) * fabsf(ref->dY[i]) + 0.01f * s;
    step(lm, ref, nw, NULL);
    step(mm, a, nw, live);
    assert_true(nerr(a->Y, ref->Y, M * P) < TOL);
    assert_true(nerr(a->dX, ref->dX, M * N) < TOL);
    assert_true(nerr(a->dW, ref->dW, N * P) < TOL);
  }
  tempo_mm_stats_run(mm, st);
  *injected = tempo_transport_inproc_faults(tr, rogue);
  tempo_mm_free(mm);
  tempo_mm_free(lm);
  free(a);
  free(ref);
}

/* The rogue is evicted when it cheated 3 times, nobody else ever. */
static void assert_blamed(int nw, int rogue, const tempo_mm_stats *st, const bool *live, uint64_t injected,
                          const char *what) {
  printf("%s, %d workers, rogue %d: cheated %llu times, evictions %llu, worker errors %llu, verify failures %llu, "
         "recomputed %llu\n",
         what, nw, rogue, (unsigned long long)injected, (unsigned long long)st->evictions,
         (unsigned long long)st->worker_errors, (unsigned long long)st->verify_failures,
         (unsigned long long)st->recomputed);
  for (int w = 0; w < nw; w++)
    if (w != rogue) assert_true(live[w]); /* no honest worker was evicted */
  if (injected >= 3) {
    assert_int_equal(st->evictions, 1);
    assert_false(live[rogue]);
  } else {
    assert_int_equal(st->evictions, 0);
  }
}

static void test_bad_relay(void **state) {
  (void)state;
  int evicted = 0;
  for (int nw = 2; nw <= 3; nw++)
    for (int rogue = 0; rogue < nw; rogue++) {
      tempo_mm_stats st;
      bool live[3];
      uint64_t injected;
      run_rogue(nw, rogue, true, &st, live, &injected);
      assert_blamed(nw, rogue, &st, live, injected, "bad relay");
      /* each relay it broke is one charge against it (3 evict it); no verification failed */
      if (injected) assert_int_equal(st.worker_errors, injected < 3 ? injected : 3);
      assert_int_equal(st.verify_failures, 0);
      evicted += injected >= 3;
    }
  assert_true(evicted >= 2); /* the relaying positions of both group sizes were rogues */
}

static void test_bad_sum_blamed(void **state) {
  (void)state;
  for (int nw = 2; nw <= 3; nw++)
    for (int rogue = 0; rogue < nw; rogue++) {
      tempo_mm_stats st;
      bool live[3];
      uint64_t injected;
      run_rogue(nw, rogue, false, &st, live, &injected);
      assert_true(injected >= 3); /* a member of every chain: first, middle or last */
      assert_blamed(nw, rogue, &st, live, injected, "bad dW' sums");
      assert_int_equal(st.verify_failures, 3); /* the 3 wrong sums; no block ever failed */
      assert_int_equal(st.worker_errors, 0);
    }
}

/* With honest workers the chain's digests agree: no charge, no recomputation. */
static void test_honest_chain(void **state) {
  (void)state;
  prod *a = malloc(sizeof *a);
  tempo_rng r;
  tempo_rng_seed(&r, 3, 0);
  test_randn(a->X, M * N, &r), test_randn(a->W, N * P, &r), test_randn(a->dY, M * P, &r);
  tempo_mm *mm = test_make_mm(TEMPO_MODE_TEMPO, 3, 5, NULL);
  tempo_mm_test_transport(mm)->can_reduce = true;
  for (int s = 0; s < 4; s++) step(mm, a, 3, NULL);
  tempo_mm_stats st;
  tempo_mm_stats_run(mm, &st);
  assert_int_equal(st.evictions + st.worker_errors + st.verify_failures + st.recomputed, 0);
  tempo_mm_free(mm);
  free(a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bad_relay),
      cmocka_unit_test(test_bad_sum_blamed),
      cmocka_unit_test(test_honest_chain),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
