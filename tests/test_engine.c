/* test_engine.c - the one offload engine across schemes: how many workers a product uses
 * never changes its arithmetic where rows are independent, and checks never change keys.
 *
 *  - shield with 5, 6 and 8 workers splits a share's rows (batch 1) or instances (batched)
 *    over the workers of its group: every worker holds operands after the forward with 8,
 *    and Y and dX are bit-identical to 4 workers (each output row is one worker's product
 *    of the same blinded rows); dW of a row split is a sum of per-block partials, so it is
 *    compared with a tight tolerance there and bit for bit for batched products;
 *  - with a fixed key seed, the outputs are bit-identical whether every result is checked
 *    (3 vectors) or none is: the check vectors come from their own stream, so the keys and
 *    masks never depend on how many checks ran (shield and tempo);
 *  - a NaN or Inf in the master's own operand fails every honest result's check: the engine
 *    says so (TEMPO_STATUS_NUMERIC, naming the operand) and charges, evicts and recomputes
 *    nothing; the same engine then runs a clean product normally. */
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
#include "test_util.h"

typedef struct {
  float *Y, *dX, *dW;
  size_t ny, nx, nw;
} outputs;

static void outputs_free(outputs *o) { free(o->Y), free(o->dX), free(o->dW); }

/* Two steps of forward + backward of `sh` on fixed data through a fresh engine. held[w]:
 * operands worker w kept after the second forward (NULL: not wanted). */
static outputs run(tempo_mode mode, int workers, int verify, const tempo_mm_shape *sh, size_t *held) {
  tempo_mm_config cfg;
  tempo_mm_config_default(&cfg);
  cfg.mode = mode, cfg.workers = workers, cfg.seed = 77, cfg.verify_rounds = verify;
  tempo_mm *mm;
  assert_int_equal(tempo_mm_create(&cfg, &mm), TEMPO_STATUS_OK);
  tempo_mm_set_training(mm, true);
  const size_t B = (size_t)sh->batch, x = B * sh->m * sh->n, w = B * sh->n * sh->p, y = B * sh->m * sh->p;
  float *X = malloc(x * sizeof *X), *W = malloc(w * sizeof *W), *dY = malloc(y * sizeof *dY);
  outputs o = {malloc(y * sizeof(float)), malloc(x * sizeof(float)), malloc(w * sizeof(float)), y, x, w};
  assert_true(X && W && dY && o.Y && o.dX && o.dW);
  tempo_rng r;
  tempo_rng_seed(&r, 5, 0);
  tempo_mm_site site = {0};
  for (int step = 0; step < 2; step++) {
    test_randn(X, x, &r), test_randn(W, w, &r), test_randn(dY, y, &r);
    assert_int_equal(tempo_mm_forward(mm, &site, sh, X, W, o.Y), TEMPO_STATUS_OK);
    if (held && step == 1)
      for (int i = 0; i < workers; i++) held[i] = tempo_transport_inproc_handles(tempo_mm_test_transport(mm), i);
    assert_int_equal(tempo_mm_backward(mm, &site, sh, X, W, dY, o.dX, o.dW, 0), TEMPO_STATUS_OK);
    tempo_mm_step_end(mm);
  }
  tempo_mm_stats st;
  tempo_mm_stats_run(mm, &st);
  assert_int_equal(st.verify_failures + st.recomputed + st.evictions + st.worker_errors + st.timeouts, 0);
  free(X), free(W), free(dY);
  tempo_mm_free(mm);
  return o;
}

static void assert_same(const char *what, const float *a, const float *b, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (memcmp(&a[i], &b[i], sizeof a[i])) fail_msg("%s element %zu: %.9g vs %.9g", what, i, a[i], b[i]);
}

static void test_shield_splits_over_more_workers(void **state) {
  (void)state;
  const tempo_mm_shape shapes[] = {{1, 96, 40, 24, false}, {1, 64, 32, 48, true}, {12, 20, 16, 8, false}};
  for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
    const tempo_mm_shape *sh = &shapes[k];
    outputs base = run(TEMPO_MODE_SHIELD, 4, 1, sh, NULL);
    const int counts[] = {5, 6, 8};
    for (size_t c = 0; c < 3; c++) {
      size_t held[8] = {0};
      outputs o = run(TEMPO_MODE_SHIELD, counts[c], 1, sh, held);
      if (counts[c] == 8) /* two workers per share, each holding a block's X' and W' */
        for (int w = 0; w < 8; w++)
          if (held[w] == 0) fail_msg("shape %zu, 8 workers: worker %d got no block", k, w);
      if (counts[c] == 6) { /* 5 usable (groups of 2, 1, 1, 1) and one spare */
        int busy = 0;
        for (int w = 0; w < 6; w++) busy += held[w] > 0;
        assert_int_equal(busy, 5);
      }
      assert_same("Y", o.Y, base.Y, o.ny);
      assert_same("dX", o.dX, base.dX, o.nx);
      if (sh->batch > 1) assert_same("dW", o.dW, base.dW, o.nw);
      else assert_close("dW (row-split partial sums)", o.dW, base.dW, o.nw, 1e-6);
      outputs_free(&o);
    }
    outputs_free(&base);
  }
}

static void test_checks_do_not_change_keys(void **state) {
  (void)state;
  const tempo_mm_shape sh = {1, 48, 32, 24, false};
  const tempo_mode modes[] = {TEMPO_MODE_SHIELD, TEMPO_MODE_TEMPO};
  for (int i = 0; i < 2; i++) {
    const int workers = modes[i] == TEMPO_MODE_SHIELD ? 4 : 2;
    outputs none = run(modes[i], workers, 0, &sh, NULL), three = run(modes[i], workers, 3, &sh, NULL);
    assert_same("Y", none.Y, three.Y, none.ny);
    assert_same("dX", none.dX, three.dX, none.nx);
    assert_same("dW", none.dW, three.dW, none.nw);
    outputs_free(&none), outputs_free(&three);
  }
}

static void test_nonfinite_input_blames_master(void **state) {
  (void)state;
  const tempo_mm_shape sh = {1, 64, 32, 24, false};
  const tempo_mode modes[] = {TEMPO_MODE_TEMPO, TEMPO_MODE_SHIELD};
  for (int i = 0; i < 2; i++) {
    tempo_mm *mm = test_make_mm(modes[i], modes[i] == TEMPO_MODE_SHIELD ? 4 : 2, 3, NULL);
    float X[64 * 32], W[32 * 24], Y[64 * 24], dY[64 * 24], dX[64 * 32], dW[32 * 24];
    tempo_rng r;
    tempo_rng_seed(&r, 1, 0);
    test_randn(X, 64 * 32, &r), test_randn(W, 32 * 24, &r), test_randn(dY, 64 * 24, &r);
    tempo_mm_site site = {0};
    X[100] = NAN;
    assert_int_equal(tempo_mm_forward(mm, &site, &sh, X, W, Y), TEMPO_STATUS_NUMERIC);
    assert_non_null(strstr(tempo_errmsg(), "X (the layer's input)"));
    X[100] = 0.5f;
    assert_int_equal(tempo_mm_forward(mm, &site, &sh, X, W, Y), TEMPO_STATUS_OK);
    dY[7] = INFINITY;
    assert_int_equal(tempo_mm_backward(mm, &site, &sh, X, W, dY, dX, dW, 0), TEMPO_STATUS_NUMERIC);
    assert_non_null(strstr(tempo_errmsg(), "dY"));
    dY[7] = 1.0f;
    assert_int_equal(tempo_mm_backward(mm, &site, &sh, X, W, dY, dX, dW, 0), TEMPO_STATUS_OK);
    tempo_mm_step_end(mm);
    tempo_mm_stats st;
    tempo_mm_stats_run(mm, &st);
    assert_int_equal(st.verify_failures + st.recomputed + st.evictions + st.worker_errors + st.timeouts, 0);
    assert_int_equal(tempo_mm_live_workers(mm), modes[i] == TEMPO_MODE_SHIELD ? 4 : 2);
    tempo_mm_free(mm);
  }
}

/* A worker that falsifies only dW' (the backward asks for dW alone) is caught by the check
 * formed from the left vector of the forward's X' pass, for row splits (both W layouts) and
 * batched products; the block is recomputed and dW is right. */
static void test_dw_only_cheat_caught(void **state) {
  (void)state;
  const tempo_mm_shape shapes[] = {{1, 96, 40, 24, false}, {1, 96, 40, 24, true}, {6, 20, 16, 8, false}};
  const tempo_fault_kind kinds[] = {TEMPO_FAULT_SCALE, TEMPO_FAULT_WRONG_ELEMENT, TEMPO_FAULT_ZERO};
  for (int si = 0; si < 3; si++)
    for (int ki = 0; ki < 3; ki++) {
      const tempo_mm_shape *sh = &shapes[si];
      tempo_mm *mm = test_make_mm(TEMPO_MODE_TEMPO, 2, 21, NULL);
      tempo_mm_set_timeout(mm, 5);
      const size_t B = (size_t)sh->batch, x = B * sh->m * sh->n, w = B * sh->n * sh->p, y = B * sh->m * sh->p;
      float *X = malloc(x * 4), *W = malloc(w * 4), *dY = malloc(y * 4), *Y = malloc(y * 4), *dW = malloc(w * 4);
      float *ref = malloc(w * 4);
      tempo_rng r;
      tempo_rng_seed(&r, 4, (uint64_t)si);
      test_randn(X, x, &r), test_randn(W, w, &r), test_randn(dY, y, &r);
      /* each worker's requests: 0 = its forward block(s), then the backward ones */
      const tempo_worker_fault f = {.kind = kinds[ki], .start = sh->batch > 1 ? 4 : 1, .period = 1};
      tempo_transport_inproc_set_fault(tempo_mm_test_transport(mm), 0, &f);
      tempo_mm_site site = {0};
      assert_int_equal(tempo_mm_forward(mm, &site, sh, X, W, Y), TEMPO_STATUS_OK);
      assert_int_equal(tempo_mm_backward(mm, &site, sh, X, W, dY, NULL, dW, 0), TEMPO_STATUS_OK);
      tempo_mm_step_end(mm);
      tempo_mm_stats st;
      tempo_mm_stats_run(mm, &st);
      if (st.verify_failures < 1 || st.recomputed < 1)
        fail_msg("shape %d, %s: dW'-only cheat not caught (verify failures %llu)", si, tempo_fault_name(kinds[ki]),
                 (unsigned long long)st.verify_failures);
      for (int b = 0; b < sh->batch; b++) /* dW = X^T dY, or dY^T X stored (p, n) */
        for (int j = 0; j < sh->n; j++)
          for (int k = 0; k < sh->p; k++) {
            double a = 0;
            for (int i = 0; i < sh->m; i++)
              a += (double)X[(size_t)b * sh->m * sh->n + (size_t)i * sh->n + j] * dY[(size_t)b * sh->m * sh->p + (size_t)i * sh->p + k];
            ref[(size_t)b * sh->n * sh->p + (sh->w_trans ? (size_t)k * sh->n + j : (size_t)j * sh->p + k)] = (float)a;
          }
      assert_close("dW after the recompute", dW, ref, w, 1e-4);
      free(X), free(W), free(dY), free(Y), free(dW), free(ref);
      tempo_mm_free(mm);
    }
}

/* A transport wrapper that slips one unsolicited frame from worker 0 in front of the next
 * reply once armed (a worker flooding the step end). */
static const tempo_transport_ops *real_ops;
static tempo_transport_ops flood_ops;
static int flood_armed;
static uint8_t garbage[200];
static tempo_status flood_recv(tempo_transport *t, double timeout_s, tempo_in_msg *m, bool *got) {
  if (flood_armed) {
    flood_armed = 0;
    memset(m, 0, sizeof *m);
    m->worker = 0, m->data = garbage, m->len = sizeof garbage, m->token = garbage;
    *got = true;
    return TEMPO_STATUS_OK;
  }
  return real_ops->recv(t, timeout_s, m, got);
}
static void flood_done(tempo_transport *t, tempo_in_msg *m) {
  if (m->token != garbage) real_ops->done(t, m);
}

static void test_unsolicited_frame_at_step_end_charged(void **state) {
  (void)state;
  tempo_mm *mm = test_make_mm(TEMPO_MODE_TEMPO, 2, 5, NULL);
  tempo_transport *tr = tempo_mm_test_transport(mm);
  real_ops = tr->ops, flood_ops = *tr->ops;
  flood_ops.recv = flood_recv, flood_ops.done = flood_done;
  tr->ops = &flood_ops;
  for (size_t i = 0; i < sizeof garbage; i++) garbage[i] = (uint8_t)(i * 37 + 11);
  const tempo_mm_shape sh = {1, 8, 4, 3, false};
  float X[32], W[12], Y[24];
  for (int i = 0; i < 32; i++) X[i] = (float)i * 0.1f;
  for (int i = 0; i < 12; i++) W[i] = 1.0f - (float)i * 0.05f;
  tempo_mm_site site = {0};
  assert_int_equal(tempo_mm_forward(mm, &site, &sh, X, W, Y), TEMPO_STATUS_OK);
  flood_armed = 1; /* the next message the master reads is at the step end's RELEASE/ACK */
  tempo_mm_step_end(mm);
  tempo_mm_stats st;
  tempo_mm_stats_run(mm, &st);
  assert_int_equal(st.worker_errors, 1); /* charged to worker 0, not silently dropped */
  assert_int_equal(tempo_mm_live_workers(mm), 2);
  tr->ops = real_ops;
  tempo_mm_free(mm);
}

/* Likewise a worker that falsifies dX' (asked alone): caught in the decryption pass that forms
 * the check, recomputed, and dX is right (the falsified rows written first are overwritten). */
static void test_dx_only_cheat_caught(void **state) {
  (void)state;
  const tempo_mm_shape shapes[] = {{1, 96, 40, 24, false}, {1, 96, 40, 24, true}};
  const tempo_fault_kind kinds[] = {TEMPO_FAULT_SCALE, TEMPO_FAULT_WRONG_ELEMENT, TEMPO_FAULT_ZERO};
  for (int si = 0; si < 2; si++)
    for (int ki = 0; ki < 3; ki++) {
      const tempo_mm_shape *sh = &shapes[si];
      tempo_mm *mm = test_make_mm(TEMPO_MODE_TEMPO, 2, 23, NULL);
      const size_t x = (size_t)sh->m * sh->n, w = (size_t)sh->n * sh->p, y = (size_t)sh->m * sh->p;
      float *X = malloc(x * 4), *W = malloc(w * 4), *dY = malloc(y * 4), *Y = malloc(y * 4), *dX = malloc(x * 4);
      float *ref = malloc(x * 4);
      tempo_rng r;
      tempo_rng_seed(&r, 6, (uint64_t)si);
      test_randn(X, x, &r), test_randn(W, w, &r), test_randn(dY, y, &r);
      const tempo_worker_fault f = {.kind = kinds[ki], .start = 1, .period = 1};
      tempo_transport_inproc_set_fault(tempo_mm_test_transport(mm), 0, &f);
      tempo_mm_site site = {0};
      assert_int_equal(tempo_mm_forward(mm, &site, sh, X, W, Y), TEMPO_STATUS_OK);
      assert_int_equal(tempo_mm_backward(mm, &site, sh, X, W, dY, dX, NULL, 0), TEMPO_STATUS_OK);
      tempo_mm_step_end(mm);
      tempo_mm_stats st;
      tempo_mm_stats_run(mm, &st);
      if (st.verify_failures < 1) fail_msg("shape %d, %s: dX'-only cheat not caught", si, tempo_fault_name(kinds[ki]));
      for (int i = 0; i < sh->m; i++) /* dX = dY W^T, W (n, p) or stored (p, n) */
        for (int j = 0; j < sh->n; j++) {
          double a = 0;
          for (int k = 0; k < sh->p; k++)
            a += (double)dY[(size_t)i * sh->p + k] * W[sh->w_trans ? (size_t)k * sh->n + j : (size_t)j * sh->p + k];
          ref[(size_t)i * sh->n + j] = (float)a;
        }
      assert_close("dX after the recompute", dX, ref, x, 1e-4);
      free(X), free(W), free(dY), free(Y), free(dX), free(ref);
      tempo_mm_free(mm);
    }
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_shield_splits_over_more_workers),
                                     cmocka_unit_test(test_checks_do_not_change_keys),
                                     cmocka_unit_test(test_nonfinite_input_blames_master),
                                     cmocka_unit_test(test_dw_only_cheat_caught),
                                     cmocka_unit_test(test_unsolicited_frame_at_step_end_charged),
                                     cmocka_unit_test(test_dx_only_cheat_caught)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
