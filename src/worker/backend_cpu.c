/* backend_cpu.c - the CPU GEMM backend (worker.h): tempo_sgemm (gemm.h), the same GEMM as
 * the master's local mode, tempo_sgemm16 for bfloat16 requests, and cblas_dgemm for float64
 * requests, in the calling thread. Keys are ignored: the operand cache
 * already holds the host operands. */
#include <cblas.h>
#include <stdint.h>
#include <stdlib.h>

#include "tempo/gemm.h"
#include "tempo/precision.h"
#include "tempo/worker.h"

/* The float32 and bfloat16 products share one body: operands of esz bytes per element and the
 * GEMM that takes them (beta 0; false: no kernel for it, TEMPO_STATUS_UNSUPPORTED). */
typedef bool (*gemm_fn)(bool ta, bool tb, int m, int n, int k, const void *A, int lda, const void *B, int ldb, float *C,
                        int ldc);
static bool gemm32(bool ta, bool tb, int m, int n, int k, const void *A, int lda, const void *B, int ldb, float *C,
                   int ldc) {
  tempo_sgemm(ta, tb, m, n, k, 1.0f, A, lda, B, ldb, 0.0f, C, ldc);
  return true;
}
/* bfloat16: oneDNN's native bf16 matmul (tempo_sgemm16); where it has none (no AVX-512, a build
 * without oneDNN, TEMPO_GEMM=openblas) the worker core widens the operands to float32 (exact) and
 * calls the float32 entries. */
static bool gemm16(bool ta, bool tb, int m, int n, int k, const void *A, int lda, const void *B, int ldb, float *C,
                   int ldc) {
  return tempo_sgemm16(ta, tb, m, n, k, A, lda, B, ldb, C, ldc);
}

static const void *elem(const void *base, size_t i, size_t esz) { return (const uint8_t *)base + i * esz; }

static tempo_status forward_any(const tempo_gemm_desc *d, const void *X, const void *W, float *Y, size_t esz,
                                gemm_fn gemm) {
  const int rows = d->rows, n = d->n, p = d->p;
  const bool wt = d->w_trans;
  const size_t xs = (size_t)rows * n, ws = (size_t)n * p, ys = (size_t)rows * p;
  for (int b = 0; b < d->cnt; b++)
    if (!gemm(false, wt, rows, p, n, elem(X, b * xs, esz), n, elem(W, b * ws, esz), wt ? n : p, Y + b * ys, p))
      return TEMPO_STATUS_UNSUPPORTED;
  return TEMPO_STATUS_OK;
}

/* dW' of `rows` rows, (p, n) = dY*^T X' with wt, else (n, p) = X'^T dY*, as precision.h asks:
 * chunks of TEMPO_DW_CHUNK_ROWS rows, each a GEMM of its own (tmp), added to the running sum.
 * tmp: n p floats, or NULL when rows fit one chunk. */
static bool dw_chunked(bool wt, int rows, int n, int p, const void *X, const void *dy, float *dW, float *tmp,
                       size_t esz, gemm_fn gemm) {
  for (int lo = 0; lo < rows; lo += TEMPO_DW_CHUNK_ROWS) {
    const int len = rows - lo < TEMPO_DW_CHUNK_ROWS ? rows - lo : TEMPO_DW_CHUNK_ROWS;
    float *out = lo ? tmp : dW;
    const void *x = elem(X, (size_t)lo * n, esz), *g = elem(dy, (size_t)lo * p, esz);
    if (!(wt ? gemm(true, false, p, n, len, g, p, x, n, out, n) : gemm(true, false, n, p, len, x, n, g, p, out, p)))
      return false;
    if (lo)
      for (size_t i = 0; i < (size_t)n * p; i++) dW[i] += tmp[i];
  }
  return true;
}

static tempo_status backward_any(const tempo_gemm_desc *d, const void *X, const void *W, const void *dY, float *dX,
                                 float *dW, size_t esz, gemm_fn gemm) {
  const int rows = d->rows, n = d->n, p = d->p;
  const bool wt = d->w_trans;
  const size_t xs = (size_t)rows * n, ws = (size_t)n * p, ys = (size_t)rows * p;
  float *tmp = NULL;
  if (dW && rows > TEMPO_DW_CHUNK_ROWS && !(tmp = malloc(ws * sizeof(float))))
    return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "worker: out of memory (dW' chunk of %d x %d)", n, p);
  tempo_status st = TEMPO_STATUS_OK;
  for (int b = 0; b < d->cnt && !st; b++) {
    const void *dy = elem(dY, b * ys, esz);
    /* dX' (rows, n) = dY* (rows, p) . W'^T */
    if (dX && !gemm(false, !wt, rows, n, p, dy, p, elem(W, b * ws, esz), wt ? n : p, dX + b * xs, n))
      st = TEMPO_STATUS_UNSUPPORTED;
    if (!st && dW && !dw_chunked(wt, rows, n, p, elem(X, b * xs, esz), dy, dW + b * ws, tmp, esz, gemm))
      st = TEMPO_STATUS_UNSUPPORTED;
  }
  free(tmp);
  return st;
}

static tempo_status cpu_forward(void *ctx, const tempo_gemm_desc *d, const float *X, uint64_t xkey, const float *W,
                                uint64_t wkey, float *Y) {
  (void)ctx, (void)xkey, (void)wkey;
  return forward_any(d, X, W, Y, sizeof(float), gemm32);
}

static tempo_status cpu_backward(void *ctx, const tempo_gemm_desc *d, const float *X, uint64_t xkey, const float *W,
                                 uint64_t wkey, const float *dY, float *dX, float *dW) {
  (void)ctx, (void)xkey, (void)wkey;
  return backward_any(d, X, W, dY, dX, dW, sizeof(float), gemm32);
}

static tempo_status cpu_forward16(void *ctx, const tempo_gemm_desc *d, const uint16_t *X, uint64_t xkey,
                                  const uint16_t *W, uint64_t wkey, float *Y) {
  (void)ctx, (void)xkey, (void)wkey;
  return forward_any(d, X, W, Y, sizeof(uint16_t), gemm16);
}

static tempo_status cpu_backward16(void *ctx, const tempo_gemm_desc *d, const uint16_t *X, uint64_t xkey,
                                   const uint16_t *W, uint64_t wkey, const uint16_t *dY, float *dX, float *dW) {
  (void)ctx, (void)xkey, (void)wkey;
  return backward_any(d, X, W, dY, dX, dW, sizeof(uint16_t), gemm16);
}

/* float64: cblas_dgemm, the same products and layouts as above */
static tempo_status cpu_forward64(void *ctx, const tempo_gemm_desc *d, const double *X, uint64_t xkey,
                                  const double *W, uint64_t wkey, double *Y) {
  (void)ctx, (void)xkey, (void)wkey;
  const int rows = d->rows, n = d->n, p = d->p;
  const bool wt = d->w_trans;
  const size_t xs = (size_t)rows * n, ws = (size_t)n * p, ys = (size_t)rows * p;
  for (int b = 0; b < d->cnt; b++)
    cblas_dgemm(CblasRowMajor, CblasNoTrans, wt ? CblasTrans : CblasNoTrans, rows, p, n, 1.0, X + b * xs, n,
                W + b * ws, wt ? n : p, 0.0, Y + b * ys, p);
  return TEMPO_STATUS_OK;
}

static tempo_status cpu_backward64(void *ctx, const tempo_gemm_desc *d, const double *X, uint64_t xkey,
                                   const double *W, uint64_t wkey, const double *dY, double *dX, double *dW) {
  (void)ctx, (void)xkey, (void)wkey;
  const int rows = d->rows, n = d->n, p = d->p;
  const bool wt = d->w_trans;
  const size_t xs = (size_t)rows * n, ws = (size_t)n * p, ys = (size_t)rows * p;
  for (int b = 0; b < d->cnt; b++) {
    const double *dy = dY + b * ys;
    if (dX)
      cblas_dgemm(CblasRowMajor, CblasNoTrans, wt ? CblasNoTrans : CblasTrans, rows, n, p, 1.0, dy, p, W + b * ws,
                  wt ? n : p, 0.0, dX + b * xs, n);
    if (dW) {
      if (wt)
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, p, n, rows, 1.0, dy, p, X + b * xs, n, 0.0, dW + b * ws, n);
      else
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, p, rows, 1.0, X + b * xs, n, dy, p, 0.0, dW + b * ws, p);
    }
  }
  return TEMPO_STATUS_OK;
}

static const tempo_backend cpu_backend = {
    "cpu", NULL, cpu_forward, cpu_backward, NULL, NULL, cpu_forward64, cpu_backward64, 0 /* TEMPO_PRECISION_FP32 */,
    cpu_forward16, cpu_backward16};

const tempo_backend *tempo_backend_cpu(void) { return &cpu_backend; }
