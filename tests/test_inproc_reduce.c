/* test_inproc_reduce.c - the W' relay and the dW' reduction chain without mpirun: real
 * products through tempo_mm in tempo mode with the in-process transport, row-split over 3
 * workers (batch 1, 2 m n p above TEMPO_ENGINE_MIN_SPLIT_FLOPS).
 *  - reduction: the chain runs (counted by the transport), the master downloads two dW'
 *    partials less, and dX/dW are bit for bit those of the run without reduction (the workers
 *    add in the master's order) and equal local mode within 1e-4 (both W layouts, and the
 *    accumulate flags);
 *  - relay: W' goes on the master's wire once (wire_up == min_up for a training forward);
 *  - a worker corrupting only the sums: each wrong sum fails the master's check, the blocks
 *    are recomputed, the results stay bit for bit right, and the tamperer is named and
 *    evicted after 3;
 *  - a stalled chain member (paused thread) and one that never replies: the others go on,
 *    the results are right, and freeing the transport does not hang. */
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

enum { M = 96, N = 40, P = 24, WORKERS = 3 };
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
} inputs;

typedef struct {
  float Y[M * P], dX[M * N], dW[N * P];
  tempo_mm_stats st; /* of the step, before its step end */
  tempo_inproc_counts c;
} outputs;

static void make_inputs(inputs *in, uint64_t seed) {
  tempo_rng r;
  tempo_rng_seed(&r, seed, 0);
  test_randn(in->X, M * N, &r), test_randn(in->W, N * P, &r), test_randn(in->dY, M * P, &r);
}

static tempo_mm *make(tempo_mode mode, bool reduce) {
  tempo_mm *mm = test_make_mm(mode, WORKERS, 99, NULL);
  tempo_transport *tr = tempo_mm_test_transport(mm);
  if (tr) tr->can_reduce = reduce;
  return mm;
}

/* `steps` training steps of one product (forward, backward with dX and dW) on mm; out holds
 * the last step's results and statistics. flags: accumulate into what *out holds. */
static void run(tempo_mm *mm, const inputs *in, bool wt, unsigned flags, int steps, outputs *out) {
  tempo_mm_shape sh = {1, M, N, P, wt};
  tempo_mm_site site = {0};
  for (int s = 0; s < steps; s++) {
    assert_int_equal(tempo_mm_forward(mm, &site, &sh, in->X, in->W, out->Y), TEMPO_STATUS_OK);
    assert_int_equal(tempo_mm_backward(mm, &site, &sh, in->X, in->W, in->dY, out->dX, out->dW, flags),
                     TEMPO_STATUS_OK);
    tempo_mm_stats_step(mm, &out->st);
    tempo_mm_step_end(mm);
  }
  tempo_transport *tr = tempo_mm_test_transport(mm);
  if (tr) tempo_transport_inproc_counts(tr, &out->c);
}

static void assert_same(const outputs *a, const outputs *b) {
  assert_memory_equal(a->Y, b->Y, sizeof a->Y);
  assert_memory_equal(a->dX, b->dX, sizeof a->dX);
  assert_memory_equal(a->dW, b->dW, sizeof a->dW);
}

static void assert_near(const outputs *a, const outputs *ref) {
  assert_true(nerr(a->Y, ref->Y, M * P) < TOL);
  assert_true(nerr(a->dX, ref->dX, M * N) < TOL);
  assert_true(nerr(a->dW, ref->dW, N * P) < TOL);
}

static void test_reduction_matches(void **state) {
  (void)state;
  inputs *in = malloc(sizeof *in);
  outputs *o = calloc(3, sizeof *o); /* reduced, master-summed, local */
  make_inputs(in, 1);
  for (int wt = 0; wt < 2; wt++) {
    for (int acc = 0; acc < 2; acc++) {
      const unsigned flags = acc ? TEMPO_MM_ACCUM_DX | TEMPO_MM_ACCUM_DW : 0;
      for (int k = 0; k < 3; k++) {
        for (size_t i = 0; i < M * N; i++) o[k].dX[i] = acc ? 0.25f * (float)(i % 7) : 0.0f;
        for (size_t i = 0; i < N * P; i++) o[k].dW[i] = acc ? -0.5f * (float)(i % 5) : 0.0f;
        tempo_mm *mm = make(k == 2 ? TEMPO_MODE_LOCAL : TEMPO_MODE_TEMPO, k == 0);
        run(mm, in, wt, flags, 1, &o[k]);
        tempo_mm_free(mm);
      }
      /* the chain ran (one per backward, two partials handed on) only when asked */
      assert_int_equal(o[0].c.chains, 1);
      assert_int_equal(o[0].c.partials, WORKERS - 1);
      assert_int_equal(o[1].c.chains, 0);
      assert_int_equal(o[1].c.partials, 0);
      /* the two members that are not last send dX' only: two dW' partials fewer come down */
      assert_int_equal(o[1].st.bytes_down - o[0].st.bytes_down, (WORKERS - 1) * (uint64_t)N * P * sizeof(float));
      assert_int_equal(o[0].st.verify_failures + o[0].st.recomputed, 0);
      assert_same(&o[0], &o[1]);
      assert_near(&o[0], &o[2]);
    }
  }
  printf("bytes_down per step: %llu with the in-process dW' chain, %llu without\n",
         (unsigned long long)o[0].st.bytes_down, (unsigned long long)o[1].st.bytes_down);
  free(o);
  free(in);
}

/* The forward's W' goes to the first worker and is relayed: the master's wire bytes are the
 * minimum (each blinded operand once, one header per message). */
static void test_relay_min_up(void **state) {
  (void)state;
  inputs *in = malloc(sizeof *in);
  outputs *o = calloc(1, sizeof *o);
  make_inputs(in, 2);
  tempo_mm *mm = make(TEMPO_MODE_TEMPO, false);
  tempo_transport *tr = tempo_mm_test_transport(mm);
  tempo_mm_shape sh = {1, M, N, P, false};
  tempo_mm_site site = {0};
  for (int s = 0; s < 3; s++) {
    tempo_mm_stats_step(mm, &o->st); /* clears the step counters */
    const uint64_t wire0 = tr->wire_up, min0 = tr->min_up;
    assert_int_equal(tempo_mm_forward(mm, &site, &sh, in->X, in->W, o->Y), TEMPO_STATUS_OK);
    const uint64_t wire = tr->wire_up - wire0;
    assert_int_equal(wire, tr->min_up - min0);
    assert_int_equal(wire, WORKERS * 80 + (uint64_t)(M * N + N * P) * sizeof(float));
    /* the engine counts each message as built, with W' in each; the wire had it once */
    tempo_mm_stats_step(mm, &o->st);
    assert_int_equal(o->st.bytes_up - wire, (WORKERS - 1) * (uint64_t)N * P * sizeof(float));
    assert_int_equal(tempo_mm_backward(mm, &site, &sh, in->X, in->W, in->dY, o->dX, o->dW, 0), TEMPO_STATUS_OK);
    tempo_mm_step_end(mm);
  }
  printf("forward wire bytes %llu = the minimum (W' once), %llu as the engine counts its messages\n",
         (unsigned long long)(WORKERS * 80 + (uint64_t)(M * N + N * P) * sizeof(float)),
         (unsigned long long)o->st.bytes_up);
  tempo_transport_inproc_counts(tr, &o->c);
  assert_int_equal(o->c.groups, 3);
  assert_int_equal(o->c.relays, 3 * (WORKERS - 1));
  outputs ref;
  tempo_mm *lm = make(TEMPO_MODE_LOCAL, false);
  run(lm, in, false, 0, 1, &ref);
  tempo_mm_free(lm);
  assert_near(o, &ref);
  tempo_mm_free(mm);
  free(o);
  free(in);
}

/* Worker 1 tampers with every dW' sum it forms (its own dX'/dW' blocks stay honest): the
 * master's check of the sum fails, every block's partial is asked again and summed on the
 * master (results bit for bit the honest ones), and the prefix sums name worker 1 as the
 * member that tampered: after 3 wrong sums it is evicted, and the chain goes on with the
 * other two (test_blame.c has every position, with 2 and 3 workers). */
static void test_bad_sums(void **state) {
  (void)state;
  inputs *in = malloc(sizeof *in);
  outputs *o = calloc(2, sizeof *o);
  make_inputs(in, 3);
  tempo_mm *honest = make(TEMPO_MODE_TEMPO, false);
  tempo_mm *mm = make(TEMPO_MODE_TEMPO, true);
  tempo_transport *tr = tempo_mm_test_transport(mm);
  tempo_transport_inproc_set_bad_sum(tr, 1, 0);
  tempo_mm_shape sh = {1, M, N, P, false};
  tempo_mm_site s0 = {0}, s1 = {0};
  for (int s = 0; s < 5; s++) {
    for (int i = 0; i < M * P; i++) in->dY[i] *= -1.0f; /* another gradient every step */
    assert_int_equal(tempo_mm_forward(honest, &s0, &sh, in->X, in->W, o[0].Y), TEMPO_STATUS_OK);
    assert_int_equal(tempo_mm_backward(honest, &s0, &sh, in->X, in->W, in->dY, o[0].dX, o[0].dW, 0),
                     TEMPO_STATUS_OK);
    assert_int_equal(tempo_mm_forward(mm, &s1, &sh, in->X, in->W, o[1].Y), TEMPO_STATUS_OK);
    assert_int_equal(tempo_mm_backward(mm, &s1, &sh, in->X, in->W, in->dY, o[1].dX, o[1].dW, 0), TEMPO_STATUS_OK);
    if (s < 3) assert_same(&o[1], &o[0]); /* 3 blocks, as the honest run has */
    else assert_near(&o[1], &o[0]);       /* 2 blocks: another summation order */
    assert_true(tempo_transport_inproc_evicted(tr, 1) == (s >= 2));
    tempo_mm_step_end(honest);
    tempo_mm_step_end(mm);
  }
  tempo_mm_stats st;
  tempo_mm_stats_run(mm, &st);
  tempo_transport_inproc_counts(tr, &o[1].c);
  assert_int_equal(o[1].c.chains, 5);                   /* culprit named: the chain stays on */
  assert_int_equal(st.verify_failures, 3);              /* the 3 sums; no block failed */
  assert_int_equal(st.recomputed, 3 * (uint64_t)WORKERS); /* every block's partial, 3 times */
  assert_int_equal(st.evictions, 1);
  assert_false(tempo_transport_inproc_evicted(tr, 0) || tempo_transport_inproc_evicted(tr, 2));
  assert_int_equal(tempo_transport_inproc_faults(tr, 1), 3);
  tempo_mm_free(mm);
  tempo_mm_free(honest);
  free(o);
  free(in);
}

/* A chain member that stalls (its thread paused: no request taken) or never replies: the
 * engine times it out and recomputes, the other members stop waiting for its partial, the
 * results are right, and free returns although the paused worker still holds requests. */
static void test_stalled_member(void **state) {
  (void)state;
  inputs *in = malloc(sizeof *in);
  outputs *o = calloc(2, sizeof *o);
  make_inputs(in, 4);
  tempo_mm *lm = make(TEMPO_MODE_LOCAL, false);
  run(lm, in, false, 0, 1, &o[1]);
  tempo_mm_free(lm);
  for (int kind = 0; kind < 2; kind++) {
    tempo_mm *mm = make(TEMPO_MODE_TEMPO, true);
    tempo_mm_set_timeout(mm, 0.2);
    tempo_transport *tr = tempo_mm_test_transport(mm);
    tempo_mm_shape sh = {1, M, N, P, false};
    tempo_mm_site site = {0};
    assert_int_equal(tempo_mm_forward(mm, &site, &sh, in->X, in->W, o[0].Y), TEMPO_STATUS_OK);
    if (kind == 0) {
      tempo_transport_inproc_pause(tr, 0, true); /* the first member of the chain */
    } else {
      tempo_worker_fault f = {.kind = TEMPO_FAULT_NO_REPLY, .start = 0, .period = 1};
      tempo_transport_inproc_set_fault(tr, 1, &f); /* a middle member: computes, passes on, never replies */
    }
    const double t0 = tempo_now();
    assert_int_equal(tempo_mm_backward(mm, &site, &sh, in->X, in->W, in->dY, o[0].dX, o[0].dW, 0), TEMPO_STATUS_OK);
    assert_true(tempo_now() - t0 < 10.0); /* timeouts of 0.2 s, not the 60 s default wait */
    assert_true(nerr(o[0].dX, o[1].dX, M * N) < TOL);
    assert_true(nerr(o[0].dW, o[1].dW, N * P) < TOL);
    tempo_mm_stats st;
    tempo_mm_stats_step(mm, &st);
    printf("kind %d: timeouts %llu recomputed %llu evictions %llu\n", kind, (unsigned long long)st.timeouts,
           (unsigned long long)st.recomputed, (unsigned long long)st.evictions);
    assert_true(st.timeouts >= 1);
    tempo_inproc_counts c;
    tempo_transport_inproc_counts(tr, &c);
    assert_int_equal(c.chains, 1);
    const double t1 = tempo_now();
    tempo_mm_free(mm); /* joins every thread, the paused one included */
    assert_true(tempo_now() - t1 < 5.0);
  }
  free(o);
  free(in);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_reduction_matches),
      cmocka_unit_test(test_relay_min_up),
      cmocka_unit_test(test_bad_sums),
      cmocka_unit_test(test_stalled_member),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
