/* test_obf_verify.c - Freivalds' check (src/obf/verify.c): honest float32 products of many
 * shapes, layouts and dynamic ranges are never rejected; planted errors are always caught
 * in one round. C (r, c) = op(A) (r, k) . op(B) (k, c). */
#include <cblas.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "obf/obf_internal.h"
#include "tempo/common.h"
#include "tempo/obf.h"
#include "tempo/rng.h"

#define MAXE (300 * 300)

typedef struct {
  float *A, *B, *C, *work;
} bufs;

static bufs *alloc_bufs(void) {
  bufs *b = calloc(1, sizeof *b);
  assert_non_null(b);
  b->A = tempo_alloc_floats(MAXE);
  b->B = tempo_alloc_floats(MAXE);
  b->C = tempo_alloc_floats(MAXE);
  b->work = tempo_alloc_floats(3 * 3 * 1000);
  assert_true(b->A && b->B && b->C && b->work);
  return b;
}

static int setup(void **state) {
  *state = alloc_bufs();
  openblas_set_num_threads(1);
  return 0;
}

static int teardown(void **state) {
  bufs *b = *state;
  tempo_free_floats(b->A), tempo_free_floats(b->B), tempo_free_floats(b->C), tempo_free_floats(b->work);
  free(b);
  return 0;
}

/* Values: normal, or (wide) sign * exp(3 N(0,1)): ~8 decades of magnitude. */
static void fill(tempo_rng *r, float *a, size_t n, bool wide) {
  for (size_t i = 0; i < n; i++) {
    double z = tempo_rng_normal(r);
    a[i] = wide ? (float)((tempo_rng_u64(r) & 1 ? -1 : 1) * exp(3.0 * z)) : (float)z;
  }
}

/* The honest worker: OpenBLAS sgemm, or naive loops summing backwards. */
static void product(int r, int k, int c, const float *A, bool at, const float *B, bool bt, float *C, bool blas) {
  if (blas) {
    cblas_sgemm(CblasRowMajor, at ? CblasTrans : CblasNoTrans, bt ? CblasTrans : CblasNoTrans, r, c, k, 1.0f, A,
                at ? r : k, B, bt ? k : c, 0.0f, C, c);
    return;
  }
  for (int i = 0; i < r; i++)
    for (int j = 0; j < c; j++) {
      float s = 0;
      for (int l = k - 1; l >= 0; l--)
        s += (at ? A[(size_t)l * r + i] : A[(size_t)i * k + l]) * (bt ? B[(size_t)j * k + l] : B[(size_t)l * c + j]);
      C[(size_t)i * c + j] = s;
    }
}

/* >= 10,000 honest products: small random shapes, all layouts, both workers, plain and wide data. */
static void test_honest_never_rejected(void **state) {
  bufs *b = *state;
  tempo_rng r;
  tempo_rng_seed(&r, 2024, 1);
  int count = 0;
  for (int t = 0; t < 10000; t++) {
    int m = 1 + (int)tempo_rng_below(&r, 24), k = 1 + (int)tempo_rng_below(&r, 40), c = 1 + (int)tempo_rng_below(&r, 24);
    bool at = t & 1, bt = (t >> 1) & 1, wide = (t >> 2) & 1, blas = (t >> 3) & 1;
    fill(&r, b->A, (size_t)m * k, wide);
    fill(&r, b->B, (size_t)k * c, wide);
    product(m, k, c, b->A, at, b->B, bt, b->C, blas);
    tempo_status st = tempo_verify_product(m, k, c, b->A, at, b->B, bt, b->C, 1, (uint64_t)t, b->work);
    if (st != TEMPO_STATUS_OK) print_error("%s\n", tempo_errmsg());
    assert_int_equal(st, TEMPO_STATUS_OK);
    count++;
  }
  /* larger products, several rounds */
  static const int shapes[][3] = {{300, 300, 300}, {250, 1, 300}, {1, 300, 1}, {100, 900, 90}, {299, 77, 301}};
  for (int s = 0; s < 5; s++)
    for (int lay = 0; lay < 8; lay++) {
      int m = shapes[s][0], k = shapes[s][1], c = shapes[s][2];
      fill(&r, b->A, (size_t)m * k, lay & 4);
      fill(&r, b->B, (size_t)k * c, lay & 4);
      product(m, k, c, b->A, lay & 1, b->B, lay & 2, b->C, true);
      assert_int_equal(tempo_verify_product(m, k, c, b->A, lay & 1, b->B, lay & 2, b->C, 3, 99u + lay, b->work),
                       TEMPO_STATUS_OK);
      count++;
    }
  assert_true(count >= 10000);
}

/* Blinded operands (integer keys up to 2^16: magnitudes spread by 2^32) with wide data:
 * the products of the blinded operands are accepted, weighted and unweighted. */
static void test_honest_blinded(void **state) {
  bufs *b = *state;
  tempo_keyspace ks[2] = {{.kind = TEMPO_KEYSPACE_INT, .bits = 16}, {.kind = TEMPO_KEYSPACE_LOGUNIFORM, .range = 16}};
  uint8_t secret[32] = {42};
  tempo_rng r;
  tempo_rng_seed(&r, 7, 7);
  for (int s = 0; s < 2; s++) {
    tempo_keygen *g;
    assert_int_equal(tempo_keygen_create(secret, &ks[s], &g), TEMPO_STATUS_OK);
    for (int t = 0; t < 200; t++) {
      int m = 1 + (int)tempo_rng_below(&r, 90), n = 1 + (int)tempo_rng_below(&r, 90), p = 1 + (int)tempo_rng_below(&r, 90);
      tempo_obf_key key;
      assert_int_equal(tempo_obf_key_alloc(&key, m, n, p), TEMPO_STATUS_OK);
      assert_int_equal(tempo_keygen_fill(g, &key), TEMPO_STATUS_OK);
      float *X = tempo_alloc_floats((size_t)m * n), *W = tempo_alloc_floats((size_t)n * p);
      fill(&r, X, (size_t)m * n, t & 1);
      fill(&r, W, (size_t)n * p, t & 2);
      tempo_obf_enc_x(&key, X, b->A);
      tempo_obf_enc_w(&key, false, W, b->B);
      product(m, n, p, b->A, false, b->B, false, b->C, t & 4);
      uint64_t seed;
      tempo_keygen_bytes(g, &seed, sizeof seed);
      assert_int_equal(tempo_verify_product(m, n, p, b->A, false, b->B, false, b->C, 1, seed, b->work),
                       TEMPO_STATUS_OK);
      assert_int_equal(tempo_verify_product_weighted(m, n, p, b->A, false, b->B, false, b->C, key.dp.rcoef_p, 1, seed,
                                                     b->work),
                       TEMPO_STATUS_OK);
      tempo_free_floats(X), tempo_free_floats(W);
      tempo_obf_key_free(&key);
    }
    tempo_keygen_free(g);
  }
}

typedef enum { E_ELEMENT, E_SCALED, E_ZERO, E_OTHER, E_NAN, E_INF, E_COUNT } error_kind;

/* Plants an error of the given kind into C (r, c) = op(A) op(B). */
static void plant(tempo_rng *r, error_kind e, int m, int k, int c, bufs *b, bool at, bool bt) {
  size_t n = (size_t)m * c;
  switch (e) {
  case E_ELEMENT: { /* +1e-2 relative on an element of at least the rms magnitude */
    double rms = 0;
    for (size_t i = 0; i < n; i++) rms += (double)b->C[i] * b->C[i];
    rms = sqrt(rms / (double)n);
    size_t i;
    do i = (size_t)tempo_rng_below(r, n);
    while (fabs(b->C[i]) < rms);
    b->C[i] *= 1.01f;
    break;
  }
  case E_SCALED:
    for (size_t i = 0; i < n; i++) b->C[i] *= 1.001f;
    break;
  case E_ZERO: memset(b->C, 0, n * sizeof(float)); break;
  case E_OTHER: /* the product of other operands of the same shapes (e.g. a replayed result) */
    fill(r, b->B, (size_t)k * c, false);
    product(m, k, c, b->A, at, b->B, bt, b->C, true);
    fill(r, b->B, (size_t)k * c, false); /* the checked B is yet another one */
    break;
  case E_NAN: b->C[tempo_rng_below(r, n)] = NAN; break;
  case E_INF: b->C[tempo_rng_below(r, n)] = -INFINITY; break;
  default: break;
  }
}

static void test_planted_errors_caught(void **state) {
  bufs *b = *state;
  tempo_rng r;
  tempo_rng_seed(&r, 31337, 3);
  int caught[E_COUNT] = {0}, tried[E_COUNT] = {0};
  for (int t = 0; t < 3000; t++) {
    int m = 2 + (int)tempo_rng_below(&r, 63), k = 2 + (int)tempo_rng_below(&r, 63), c = 2 + (int)tempo_rng_below(&r, 63);
    bool at = t & 1, bt = (t >> 1) & 1;
    error_kind e = (error_kind)(t % E_COUNT);
    fill(&r, b->A, (size_t)m * k, false);
    fill(&r, b->B, (size_t)k * c, false);
    product(m, k, c, b->A, at, b->B, bt, b->C, true);
    plant(&r, e, m, k, c, b, at, bt);
    tempo_status st = tempo_verify_product(m, k, c, b->A, at, b->B, bt, b->C, 1, (uint64_t)t * 7919u, b->work);
    tried[e]++;
    if (st == TEMPO_STATUS_VERIFY_FAILED) caught[e]++;
    else print_error("missed error kind %d in (%d, %d, %d)\n", (int)e, m, k, c);
  }
  for (int e = 0; e < E_COUNT; e++) assert_int_equal(caught[e], tried[e]);
}

/* On a blinded product with integer keys up to 2^16, a 1e-2 relative error anywhere is
 * caught by the weighted check (the column weights undo the key's column scales). */
static void test_planted_blinded_weighted(void **state) {
  bufs *b = *state;
  tempo_keyspace ks = {.kind = TEMPO_KEYSPACE_INT, .bits = 16};
  uint8_t secret[32] = {5};
  tempo_keygen *g;
  assert_int_equal(tempo_keygen_create(secret, &ks, &g), TEMPO_STATUS_OK);
  tempo_rng r;
  tempo_rng_seed(&r, 8, 8);
  for (int t = 0; t < 300; t++) {
    int m = 2 + (int)tempo_rng_below(&r, 40), n = 2 + (int)tempo_rng_below(&r, 40), p = 2 + (int)tempo_rng_below(&r, 40);
    tempo_obf_key key;
    assert_int_equal(tempo_obf_key_alloc(&key, m, n, p), TEMPO_STATUS_OK);
    assert_int_equal(tempo_keygen_fill(g, &key), TEMPO_STATUS_OK);
    float *X = tempo_alloc_floats((size_t)m * n), *W = tempo_alloc_floats((size_t)n * p);
    fill(&r, X, (size_t)m * n, false);
    fill(&r, W, (size_t)n * p, false);
    tempo_obf_enc_x(&key, X, b->A);
    tempo_obf_enc_w(&key, false, W, b->B);
    product(m, n, p, b->A, false, b->B, false, b->C, true);
    /* +1e-2 on the plaintext element Y[a][j] with |Y| >= rms, planted where it lands in Y' */
    float *Y = tempo_alloc_floats((size_t)m * p);
    tempo_obf_dec_y(&key, b->C, Y);
    double rms = 0;
    for (int i = 0; i < m * p; i++) rms += (double)Y[i] * Y[i];
    rms = sqrt(rms / (m * p));
    int i;
    do i = (int)tempo_rng_below(&r, (uint64_t)m * p);
    while (fabs(Y[i]) < rms);
    int a = i / p, j = i % p;
    b->C[(size_t)key.dm.inv[a] * p + key.dp.inv[j]] *= 1.01f;
    assert_int_equal(tempo_verify_product_weighted(m, n, p, b->A, false, b->B, false, b->C, key.dp.rcoef_p, 1,
                                                   (uint64_t)t, b->work),
                     TEMPO_STATUS_VERIFY_FAILED);
    tempo_free_floats(X), tempo_free_floats(W), tempo_free_floats(Y);
    tempo_obf_key_free(&key);
  }
  tempo_keygen_free(g);
}

/* The portable kernels give the same verdicts (honest accepted, planted caught). */
static void test_scalar_kernels(void **state) {
  tempo_verify_force_scalar(true);
  test_honest_blinded(state);
  test_planted_errors_caught(state);
  tempo_verify_force_scalar(false);
}

static void test_bad_arguments(void **state) {
  bufs *b = *state;
  memset(b->A, 0, 16 * sizeof(float));
  assert_int_equal(tempo_verify_product(0, 2, 2, b->A, false, b->B, false, b->C, 1, 1, b->work),
                   TEMPO_STATUS_INVALID_ARGUMENT);
  assert_int_equal(tempo_verify_product(2, 2, 2, b->A, false, b->B, false, b->C, 0, 1, b->work),
                   TEMPO_STATUS_INVALID_ARGUMENT);
  assert_int_equal(tempo_verify_product(2, 2, 2, b->A, false, b->B, false, NULL, 1, 1, b->work),
                   TEMPO_STATUS_INVALID_ARGUMENT);
  float wgt[2] = {1.0f, 0.0f};
  assert_int_equal(tempo_verify_product_weighted(2, 2, 2, b->A, false, b->B, false, b->C, wgt, 1, 1, b->work),
                   TEMPO_STATUS_INVALID_ARGUMENT);
  /* all-zero operands and result: accepted; a tiny wrong value is still caught */
  memset(b->B, 0, 4 * sizeof(float));
  memset(b->C, 0, 4 * sizeof(float));
  assert_int_equal(tempo_verify_product(2, 2, 2, b->A, false, b->B, false, b->C, 1, 1, b->work), TEMPO_STATUS_OK);
  b->C[3] = 1e-20f;
  assert_int_equal(tempo_verify_product(2, 2, 2, b->A, false, b->B, false, b->C, 1, 1, b->work),
                   TEMPO_STATUS_VERIFY_FAILED);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_honest_never_rejected),
      cmocka_unit_test(test_honest_blinded),
      cmocka_unit_test(test_planted_errors_caught),
      cmocka_unit_test(test_planted_blinded_weighted),
      cmocka_unit_test(test_scalar_kernels),
      cmocka_unit_test(test_bad_arguments),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
