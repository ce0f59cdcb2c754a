/* backend_cpu.c - the CPU GEMM backend (worker.h): tempo_sgemm (gemm.h), the same GEMM as
 * the master's local mode, tempo_sgemm16 for bfloat16 requests, and cblas_dgemm for float64
 * requests, in the calling thread. Keys are ignored: the operand cache
 * already holds the host operands. */
#include <cblas.h>
#include <stdlib.h>

#include "tempo/gemm.h"
#include "tempo/precision.h"
#include "tempo/worker.h"

static tempo_status cpu_forward(void *ctx, const tempo_gemm_desc *d, const float *X, uint64_t xkey, const float *W,
                                uint64_t wkey, float *Y) {
  (void)ctx, (void)xkey, (void)wkey;
  const int rows = d->rows, n = d->n, p = d->p;
  const bool wt = d->w_trans;
  const size_t xs = (size_t)rows * n, ws = (size_t)n * p, ys = (size_t)rows * p;
  for (int b = 0; b < d->cnt; b++)
    tempo_sgemm(false, wt, rows, p, n, 1.0f, X + b * xs, n, W + b * ws, wt ? n : p, 0.0f, Y + b * ys, p);
  return TEMPO_STATUS_OK;
}

/* dW' of `rows` rows, (p, n) = dY*^T X' with wt, else (n, p) = X'^T dY*, as precision.h asks:
 * chunks of TEMPO_DW_CHUNK_ROWS rows, each a GEMM of its own (tmp), added to the running sum.
 * tmp: n p floats, or NULL when rows fit one chunk. */
static void dw_chunked(bool wt, int rows, int n, int p, const float *X, const float *dy, float *dW, float *tmp) {
  for (int lo = 0; lo < rows; lo += TEMPO_DW_CHUNK_ROWS) {
    const int len = rows - lo < TEMPO_DW_CHUNK_ROWS ? rows - lo : TEMPO_DW_CHUNK_ROWS;
    float *out = lo ? tmp : dW;
    const float *x = X + (size_t)lo * n, *g = dy + (size_t)lo * p;
    if (wt)
      tempo_sgemm(true, false, p, n, len, 1.0f, g, p, x, n, 0.0f, out, n);
    else
      tempo_sgemm(true, false, n, p, len, 1.0f, x, n, g, p, 0.0f, out, p);
    if (lo)
      for (size_t i = 0; i < (size_t)n * p; i++) dW[i] += tmp[i];
  }
}

static tempo_status cpu_backward(void *ctx, const tempo_gemm_desc *d, const float *X, uint64_t xkey, const float *W,
                                 uint64_t wkey, const float *dY, float *dX, float *dW) {
  (void)ctx, (void)xkey, (void)wkey;
  const int rows = d->rows, n = d->n, p = d->p;
  const bool wt = d->w_trans;
  const size_t xs = (size_t)rows * n, ws = (size_t)n * p, ys = (size_t)rows * p;
  float *tmp = NULL;
  if (dW && rows > TEMPO_DW_CHUNK_ROWS && !(tmp = malloc(ws * sizeof(float))))
    return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "worker: out of memory (dW' chunk of %d x %d)", n, p);
  for (int b = 0; b < d->cnt; b++) {
    const float *dy = dY + b * ys;
    if (dX) /* dX' (rows, n) = dY* (rows, p) . W'^T */
      tempo_sgemm(false, !wt, rows, n, p, 1.0f, dy, p, W + b * ws, wt ? n : p, 0.0f, dX + b * xs, n);
    if (dW) dw_chunked(wt, rows, n, p, X + b * xs, dy, dW + b * ws, tmp);
  }
  free(tmp);
  return TEMPO_STATUS_OK;
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

/* bfloat16 operands: oneDNN's native bf16 matmul (tempo_sgemm16) for each product above, in the
 * same layouts and the same dW' chunks; where it has none (no AVX512_BF16, a build without
 * oneDNN, TEMPO_GEMM=openblas), TEMPO_STATUS_UNSUPPORTED: the worker core widens the operands
 * to float32 (exact) and calls cpu_forward / cpu_backward. */
static tempo_status cpu_forward16(void *ctx, const tempo_gemm_desc *d, const uint16_t *X, uint64_t xkey,
                                  const uint16_t *W, uint64_t wkey, float *Y) {
  (void)ctx, (void)xkey, (void)wkey;
  const int rows = d->rows, n = d->n, p = d->p;
  const bool wt = d->w_trans;
  const size_t xs = (size_t)rows * n, ws = (size_t)n * p, ys = (size_t)rows * p;
  for (int b = 0; b < d->cnt; b++)
    if (!tempo_sgemm16(false, wt, rows, p, n, X + b * xs, n, W + b * ws, wt ? n : p, Y + b * ys, p))
      return TEMPO_STATUS_UNSUPPORTED;
  return TEMPO_STATUS_OK;
}

static bool dw_chunked16(bool wt, int rows, int n, int p, const uint16_t *X, const uint16_t *dy, float *dW,
                         float *tmp) {
  for (int lo = 0; lo < rows; lo += TEMPO_DW_CHUNK_ROWS) {
    const int len = rows - lo < TEMPO_DW_CHUNK_ROWS ? rows - lo : TEMPO_DW_CHUNK_ROWS;
    float *out = lo ? tmp : dW;
    const uint16_t *x = X + (size_t)lo * n, *g = dy + (size_t)lo * p;
    if (!(wt ? tempo_sgemm16(true, false, p, n, len, g, p, x, n, out, n)
             : tempo_sgemm16(true, false, n, p, len, x, n, g, p, out, p)))
      return false;
    if (lo)
      for (size_t i = 0; i < (size_t)n * p; i++) dW[i] += tmp[i];
  }
  return true;
}

static tempo_status cpu_backward16(void *ctx, const tempo_gemm_desc *d, const uint16_t *X, uint64_t xkey,
                                   const uint16_t *W, uint64_t wkey, const uint16_t *dY, float *dX, float *dW) {
  (void)ctx, (void)xkey, (void)wkey;
  const int rows = d->rows, n = d->n, p = d->p;
  const bool wt = d->w_trans;
  const size_t xs = (size_t)rows * n, ws = (size_t)n * p, ys = (size_t)rows * p;
  float *tmp = NULL;
  if (dW && rows > TEMPO_DW_CHUNK_ROWS && !(tmp = malloc(ws * sizeof(float))))
    return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "worker: out of memory (dW' chunk of %d x %d)", n, p);
  tempo_status st = TEMPO_STATUS_OK;
  for (int b = 0; b < d->cnt && !st; b++) {
    const uint16_t *dy = dY + b * ys;
    if (dX && !tempo_sgemm16(false, !wt, rows, n, p, dy, p, W + b * ws, wt ? n : p, dX + b * xs, n))
      st = TEMPO_STATUS_UNSUPPORTED;
    if (!st && dW && !dw_chunked16(wt, rows, n, p, X + b * xs, dy, dW + b * ws, tmp)) st = TEMPO_STATUS_UNSUPPORTED;
  }
  free(tmp);
  return st;
}

static const tempo_backend cpu_backend = {
    "cpu", NULL, cpu_forward, cpu_backward, NULL, NULL, cpu_forward64, cpu_backward64, 0 /* TEMPO_PRECISION_FP32 */,
    cpu_forward16, cpu_backward16};

const tempo_backend *tempo_backend_cpu(void) { return &cpu_backend; }
