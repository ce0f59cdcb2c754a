/* test_cuda.c - the CUDA backend against the CPU backend: forward and backward products
 * (w_trans both ways, batched instances), device-resident operands re-used by key after
 * the host copy is overwritten, forget(), float64 (cublasDgemm), bfloat16 operands (cublasGemmEx,
 * the 16-bit wire), and the worker core running on it. Skips (exit 0)
 * when built without nvcc or when cudaGetDeviceCount finds no GPU. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tempo/bf16.h"
#include "tempo/worker.h"
#if TEMPO_HAVE_CUDA
#include "cuda/cuda.h"

static void fill(float *a, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i++) a[i] = (float)(((i * 2654435761u + seed * 97u) % 1000u) / 500.0 - 1.0);
}

static void close_to(const float *a, const float *b, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (fabsf(a[i] - b[i]) > 1e-4f * (1.0f + fabsf(b[i]))) fail_msg("element %zu: %g vs %g", i, a[i], b[i]);
}

static void test_matches_cpu(void **state) {
  (void)state;
  tempo_backend *g;
  assert_int_equal(tempo_cuda_backend_create(0, false, &g), TEMPO_STATUS_OK);
  const tempo_backend *c = tempo_backend_cpu();
  for (int wt = 0; wt < 2; wt++) {
    tempo_gemm_desc d = {.cnt = 3, .rows = 37, .n = 53, .p = 29, .w_trans = wt};
    size_t xs = 3 * 37 * 53, ws = 3 * 53 * 29, ys = 3 * 37 * 29;
    float *X = malloc(xs * 4), *W = malloc(ws * 4), *dY = malloc(ys * 4), *a = malloc(xs * 4 + ws * 4),
          *b = malloc(xs * 4 + ws * 4);
    fill(X, xs, 1), fill(W, ws, 2), fill(dY, ys, 3);
    assert_int_equal(g->forward(g->ctx, &d, X, 10, W, 11, a), TEMPO_STATUS_OK);
    assert_int_equal(c->forward(c->ctx, &d, X, 0, W, 0, b), TEMPO_STATUS_OK);
    close_to(a, b, ys);
    /* keyed operands stay on the device: the backward ignores the (now wrong) host copies */
    float *X2 = malloc(xs * 4), *W2 = malloc(ws * 4);
    memcpy(X2, X, xs * 4), memcpy(W2, W, ws * 4);
    memset(X, 0, xs * 4), memset(W, 0, ws * 4);
    assert_int_equal(g->backward(g->ctx, &d, X, 10, W, 11, dY, a, a + xs), TEMPO_STATUS_OK);
    assert_int_equal(c->backward(c->ctx, &d, X2, 0, W2, 0, dY, b, b + xs), TEMPO_STATUS_OK);
    close_to(a, b, xs + ws);
    /* after forget the key is re-uploaded from the host */
    g->forget(g->ctx, 10);
    assert_int_equal(g->forward(g->ctx, &d, X2, 10, W, 11, a), TEMPO_STATUS_OK);
    assert_int_equal(c->forward(c->ctx, &d, X2, 0, W2, 0, b), TEMPO_STATUS_OK);
    close_to(a, b, ys);
    g->forget(g->ctx, 0);
    free(X), free(W), free(dY), free(a), free(b), free(X2), free(W2);
  }
  tempo_cuda_backend_free(g);
}

/* float64 (shield mode's shares): cublasDgemm against cblas_dgemm to 1e-12, keyed operands
 * re-used as for float32; operands with 40 significant bits (float32 would round them). */
static void test_f64_matches_cpu(void **state) {
  (void)state;
  tempo_backend *g;
  assert_int_equal(tempo_cuda_backend_create(0, false, &g), TEMPO_STATUS_OK);
  const tempo_backend *c = tempo_backend_cpu();
  assert_non_null(g->forward64);
  assert_non_null(g->backward64);
  for (int wt = 0; wt < 2; wt++) {
    tempo_gemm_desc d = {.cnt = 2, .rows = 33, .n = 47, .p = 21, .w_trans = wt};
    size_t xs = 2 * 33 * 47, ws = 2 * 47 * 21, ys = 2 * 33 * 21;
    double *X = malloc(xs * 8), *W = malloc(ws * 8), *dY = malloc(ys * 8), *a = malloc((xs + ws) * 8),
           *b = malloc((xs + ws) * 8), *X2 = malloc(xs * 8), *W2 = malloc(ws * 8);
    for (size_t i = 0; i < xs; i++) X[i] = sin(i + 1.0) * (1 + 0x1p-40 * i);
    for (size_t i = 0; i < ws; i++) W[i] = cos(i + 0.5) * (1 + 0x1p-40 * i);
    for (size_t i = 0; i < ys; i++) dY[i] = sin(3.0 * i);
    assert_int_equal(g->forward64(g->ctx, &d, X, 20, W, 21, a), TEMPO_STATUS_OK);
    assert_int_equal(c->forward64(c->ctx, &d, X, 0, W, 0, b), TEMPO_STATUS_OK);
    for (size_t i = 0; i < ys; i++)
      if (fabs(a[i] - b[i]) > 1e-12 * (1 + fabs(b[i]))) fail_msg("f64 forward %zu: %.17g vs %.17g", i, a[i], b[i]);
    memcpy(X2, X, xs * 8), memcpy(W2, W, ws * 8);
    memset(X, 0, xs * 8), memset(W, 0, ws * 8);
    assert_int_equal(g->backward64(g->ctx, &d, X, 20, W, 21, dY, a, a + xs), TEMPO_STATUS_OK);
    assert_int_equal(c->backward64(c->ctx, &d, X2, 0, W2, 0, dY, b, b + xs), TEMPO_STATUS_OK);
    for (size_t i = 0; i < xs + ws; i++)
      if (fabs(a[i] - b[i]) > 1e-12 * (1 + fabs(b[i]))) fail_msg("f64 backward %zu: %.17g vs %.17g", i, a[i], b[i]);
    g->forget(g->ctx, 0);
    free(X), free(W), free(dY), free(a), free(b), free(X2), free(W2);
  }
  tempo_cuda_backend_free(g);
}

/* bfloat16 operands (the 16-bit wire): cublasGemmEx with float32 compute and results against
 * the CPU's float32 GEMM of the widened operands (the products of two bfloat16 values are exact
 * in float32, so only the summation order differs: 1e-4 as for float32), keyed operands re-used. */
static void test_bf16_matches_cpu(void **state) {
  (void)state;
  tempo_backend *g;
  assert_int_equal(tempo_cuda_backend_create(0, false, &g), TEMPO_STATUS_OK);
  const tempo_backend *c = tempo_backend_cpu();
  assert_non_null(g->forward_bf16);
  assert_non_null(g->backward_bf16);
  for (int wt = 0; wt < 2; wt++) {
    tempo_gemm_desc d = {.cnt = 3, .rows = 37, .n = 53, .p = 29, .w_trans = wt};
    size_t xs = 3 * 37 * 53, ws = 3 * 53 * 29, ys = 3 * 37 * 29;
    float *X = malloc(xs * 4), *W = malloc(ws * 4), *dY = malloc(ys * 4), *a = malloc((xs + ws) * 4),
          *b = malloc((xs + ws) * 4);
    uint16_t *X16 = malloc(xs * 2), *W16 = malloc(ws * 2), *dY16 = malloc(ys * 2);
    fill(X, xs, 4), fill(W, ws, 5), fill(dY, ys, 6);
    tempo_bf16_pack(X, X16, xs), tempo_bf16_pack(W, W16, ws), tempo_bf16_pack(dY, dY16, ys);
    tempo_bf16_unpack(X16, X, xs), tempo_bf16_unpack(W16, W, ws), tempo_bf16_unpack(dY16, dY, ys);
    assert_int_equal(g->forward_bf16(g->ctx, &d, X16, 30, W16, 31, a), TEMPO_STATUS_OK);
    assert_int_equal(c->forward(c->ctx, &d, X, 0, W, 0, b), TEMPO_STATUS_OK);
    close_to(a, b, ys);
    memset(X16, 0, xs * 2), memset(W16, 0, ws * 2); /* the device keeps the keyed copies */
    assert_int_equal(g->backward_bf16(g->ctx, &d, X16, 30, W16, 31, dY16, a, a + xs), TEMPO_STATUS_OK);
    assert_int_equal(c->backward(c->ctx, &d, X, 0, W, 0, dY, b, b + xs), TEMPO_STATUS_OK);
    close_to(a, b, xs + ws);
    g->forget(g->ctx, 0);
    free(X), free(W), free(dY), free(a), free(b), free(X16), free(W16), free(dY16);
  }
  tempo_cuda_backend_free(g);
}

int main(void) {
  int n = tempo_cuda_device_count();
  if (n <= 0) {
    printf("skip: no CUDA device (cudaGetDeviceCount found none)\n");
    return 0;
  }
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_matches_cpu), cmocka_unit_test(test_f64_matches_cpu),
                                     cmocka_unit_test(test_bf16_matches_cpu)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
#else
int main(void) {
  printf("skip: built without nvcc\n");
  return 0;
}
#endif
