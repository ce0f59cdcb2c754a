/* test_rogue_precision.c - declared precision (issue 16.4). The check's bound follows the
 * precision a worker declares: products of operands rounded to TF32, BF16 or FP16 pass the
 * check of that declaration and fail the FP32 one (a float32 worker that returns them is
 * cheating); in the engine each worker's results are held to its own declaration, and
 * workers that declare less than min_precision are refused at the start. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rogue_worker.h"
#include "tempo/matmul.h"
#include "tempo/obf.h"
#include "tempo/precision.h"
#include "test_util.h"

/* x rounded to nearest with `bits` mantissa bits kept (of float32's 23). */
static float round_mant(float x, int bits) {
  if (bits >= 23) return x; /* float32 already: nothing to drop (and a shift by -1 below) */
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  const uint32_t drop = 23u - (uint32_t)bits, half = 1u << (drop - 1);
  u = (u + half - 1 + ((u >> drop) & 1)) & ~((1u << drop) - 1);
  memcpy(&x, &u, sizeof x);
  return x;
}

/* C = A B accumulated in float (k inner), from operands rounded to `bits` mantissa bits
 * (23: float32) and, with acc16, every partial sum rounded to 10 bits (FP16 accumulation). */
static void product(int r, int k, int c, const float *A, const float *B, float *C, int bits, bool acc16) {
  for (int i = 0; i < r; i++)
    for (int j = 0; j < c; j++) {
      float s = 0;
      for (int l = 0; l < k; l++) {
        s += round_mant(A[(size_t)i * k + l], bits) * round_mant(B[(size_t)l * c + j], bits);
        if (acc16) s = round_mant(s, 10);
      }
      C[(size_t)i * c + j] = s;
    }
}

static void test_bound_follows_declaration(void **state) {
  (void)state;
  enum { R = 64, K = 200, C = 48 };
  float *A = malloc(R * K * sizeof(float)), *B = malloc(K * C * sizeof(float)), *Y = malloc(R * C * sizeof(float));
  float *work = malloc(3 * (R + K + C) * sizeof(float)), wgt[C];
  assert_true(A && B && Y && work);
  for (int j = 0; j < C; j++) wgt[j] = 1.0f; /* weights given: a blinded (permuted) product */
  tempo_rng rng;
  tempo_rng_seed(&rng, 16, 4);
  static const struct {
    tempo_precision p;
    int bits;
    bool acc16;
  } cases[] = {{TEMPO_PRECISION_TF32, 10, false}, {TEMPO_PRECISION_BF16, 7, false}, {TEMPO_PRECISION_FP16, 10, true}};
  for (int t = 0; t < 20; t++) {
    test_randn(A, (size_t)R * K, &rng);
    test_randn(B, (size_t)K * C, &rng);
    for (size_t q = 0; q < sizeof cases / sizeof cases[0]; q++) {
      product(R, K, C, A, B, Y, cases[q].bits, cases[q].acc16);
      const tempo_verify_model decl = {.precision = cases[q].p, .permuted = true};
      const tempo_verify_model fp32 = {.precision = TEMPO_PRECISION_FP32, .permuted = true};
      if (tempo_verify_product_model(R, K, C, A, false, B, false, Y, wgt, &decl, 1, 100u + (uint64_t)t, work))
        fail_msg("%s product rejected under its own declaration: %s", tempo_precision_name(cases[q].p), tempo_errmsg());
      assert_int_equal(tempo_verify_product_model(R, K, C, A, false, B, false, Y, wgt, &fp32, 1, 100u + (uint64_t)t, work),
                       TEMPO_STATUS_VERIFY_FAILED);
    }
    /* and float32 products pass every declaration */
    product(R, K, C, A, B, Y, 23, false);
    for (int p = 0; p < TEMPO_PRECISION_COUNT; p++) {
      const tempo_verify_model md = {.precision = (tempo_precision)p, .permuted = true};
      assert_int_equal(tempo_verify_product_model(R, K, C, A, false, B, false, Y, wgt, &md, 1, 7u + (uint64_t)t, work),
                       TEMPO_STATUS_OK);
    }
  }
  free(A), free(B), free(Y), free(work);
}

static void test_names(void **state) {
  (void)state;
  for (int p = 0; p < TEMPO_PRECISION_COUNT; p++) {
    tempo_precision q;
    assert_true(tempo_precision_parse(tempo_precision_name(p), &q));
    assert_int_equal((int)q, p);
  }
  tempo_precision q = TEMPO_PRECISION_BF16;
  assert_false(tempo_precision_parse("fp64", &q));
  assert_false(tempo_precision_parse(NULL, &q));
  assert_int_equal((int)q, TEMPO_PRECISION_BF16);
  assert_string_equal(tempo_precision_name(99), "unknown");
}

/* ---- the engine: worker 1 declares `decl` (or an unknown value) ---- */

typedef struct {
  int decl;
  rogue_plan *plan;
} decl_ctx;

static tempo_status decl_transport(void *ctx, int requested, tempo_transport **out) {
  decl_ctx *d = ctx;
  tempo_status st = tempo_transport_inproc_create(requested, out);
  if (st) return st;
  tempo_transport_inproc_set_precision(*out, 1, d->decl);
  if (d->plan) rogue_install(*out, 1, d->plan);
  return TEMPO_STATUS_OK;
}

static tempo_mm *make(decl_ctx *d, int min_precision, tempo_status *st) {
  tempo_mm_config cfg;
  tempo_mm_config_default(&cfg);
  cfg.mode = TEMPO_MODE_TEMPO;
  cfg.workers = 2;
  cfg.seed = 23;
  cfg.min_precision = min_precision;
  cfg.transport = decl_transport;
  cfg.transport_ctx = d;
  tempo_mm *mm = NULL;
  *st = tempo_mm_create(&cfg, &mm);
  return mm;
}

/* Forward products of (M, N) x (N, P) from both workers; returns the engine's failures. */
static uint64_t products(tempo_mm *mm, int count) {
  enum { M = 96, N = 300, P = 40 };
  tempo_mm_shape sh = {1, M, N, P, false};
  float *X = malloc(M * N * sizeof(float)), *W = malloc(N * P * sizeof(float)), *Y = malloc(M * P * sizeof(float));
  assert_true(X && W && Y);
  tempo_rng r;
  tempo_rng_seed(&r, 5, 5);
  for (int t = 0; t < count; t++) {
    test_randn(X, (size_t)M * N, &r);
    test_randn(W, (size_t)N * P, &r);
    tempo_mm_site site = {0};
    assert_int_equal(tempo_mm_forward(mm, &site, &sh, X, W, Y), TEMPO_STATUS_OK);
    tempo_mm_step_end(mm);
  }
  free(X), free(W), free(Y);
  tempo_mm_stats s;
  tempo_mm_stats_run(mm, &s);
  return s.verify_failures;
}

/* A rogue whose Y' rows are rounded to BF16 (an error a BF16 product has, which an FP32
 * product never has): accepted from a worker that declared BF16, caught from one that
 * declared FP32. */
static tempo_status bf16_result(void *ctx, tempo_msg_header *rh, void *pay, size_t count, bool *send_reply) {
  (void)ctx, (void)rh, (void)send_reply;
  float *f = pay;
  for (size_t i = 0; i < count; i++) f[i] = round_mant(f[i], 7);
  return TEMPO_STATUS_OK;
}

static tempo_status bf16_transport(void *ctx, int requested, tempo_transport **out) {
  decl_ctx *d = ctx;
  tempo_status st = tempo_transport_inproc_create(requested, out);
  if (st) return st;
  tempo_transport_inproc_set_precision(*out, 1, d->decl);
  const tempo_worker_hooks h = {.result = bf16_result};
  tempo_transport_inproc_set_hooks(*out, 1, &h);
  return TEMPO_STATUS_OK;
}

static void test_engine_holds_each_worker_to_its_declaration(void **state) {
  (void)state;
  for (int decl = 0; decl < 2; decl++) {
    decl_ctx d = {.decl = decl ? TEMPO_PRECISION_BF16 : TEMPO_PRECISION_FP32};
    tempo_mm_config cfg;
    tempo_mm_config_default(&cfg);
    cfg.mode = TEMPO_MODE_TEMPO;
    cfg.workers = 2;
    cfg.seed = 29;
    cfg.min_precision = TEMPO_PRECISION_FP16;
    cfg.transport = bf16_transport;
    cfg.transport_ctx = &d;
    tempo_mm *mm = NULL;
    assert_int_equal(tempo_mm_create(&cfg, &mm), TEMPO_STATUS_OK);
    assert_int_equal(tempo_mm_live_workers(mm), 2);
    const uint64_t failures = products(mm, 2);
    /* declared FP32: both of its BF16-rounded results are cheats (the second evicts nobody yet) */
    assert_int_equal((int)failures, decl ? 0 : 2);
    tempo_mm_free(mm);
  }
}

static void test_min_precision_refuses(void **state) {
  (void)state;
  /* FP32 only (the default): the BF16 worker is refused, tempo mode trains on with worker 0 */
  decl_ctx d = {.decl = TEMPO_PRECISION_BF16};
  tempo_status st;
  tempo_mm *mm = make(&d, TEMPO_PRECISION_FP32, &st);
  assert_int_equal(st, TEMPO_STATUS_OK);
  assert_int_equal(tempo_mm_live_workers(mm), 1);
  assert_int_equal((int)products(mm, 2), 0);
  tempo_mm_free(mm);
  /* BF16 accepted when asked for */
  mm = make(&d, TEMPO_PRECISION_BF16, &st);
  assert_int_equal(st, TEMPO_STATUS_OK);
  assert_int_equal(tempo_mm_live_workers(mm), 2);
  tempo_mm_free(mm);
  /* an unknown declaration is never accepted */
  d.decl = 200;
  mm = make(&d, TEMPO_PRECISION_FP16, &st);
  assert_int_equal(st, TEMPO_STATUS_OK);
  assert_int_equal(tempo_mm_live_workers(mm), 1);
  tempo_mm_free(mm);
  /* shield needs 4 workers of the precision asked for: 3 of 4 is a clear error */
  tempo_mm_config cfg;
  tempo_mm_config_default(&cfg);
  cfg.mode = TEMPO_MODE_SHIELD;
  cfg.workers = 4;
  cfg.seed = 31;
  d.decl = TEMPO_PRECISION_FP16;
  cfg.transport = decl_transport;
  cfg.transport_ctx = &d;
  mm = NULL;
  assert_int_equal(tempo_mm_create(&cfg, &mm), TEMPO_STATUS_INVALID_ARGUMENT);
  assert_non_null(strstr(tempo_errmsg(), "fp32 or better"));
  assert_null(mm);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bound_follows_declaration),
      cmocka_unit_test(test_names),
      cmocka_unit_test(test_engine_holds_each_worker_to_its_declaration),
      cmocka_unit_test(test_min_precision_refuses),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
