/* gemm.h - the one row-major SGEMM of the master (local mode) and of the benchmarks:
 *   C (m, n) = alpha * op(A) . op(B) + beta * C,   op(A) (m, k), op(B) (k, n),
 * with op(X) = X^T when trans_x. lda/ldb/ldc are the row strides of the stored matrices
 * (A stored (m, k), or (k, m) with trans_a; likewise B). No BLAS type appears here.
 *
 * Backends (chosen per call; see docs in src/core/gemm.c for the measurements behind it):
 *   openblas - OpenBLAS cblas_sgemm (AVX2 kernels here: OPENBLAS_CORETYPE is pinned);
 *   dnnl     - oneDNN dnnl_sgemm (JIT AVX-512), when the build found oneDNN (TEMPO_HAVE_DNNL).
 * TEMPO_GEMM_AUTO (the default) sends products of at least 2^20 multiply-adds with k > 16
 * to oneDNN and the rest to OpenBLAS, except that large products with A not transposed and
 * n = 16 or 32 columns run on tempo's own AVX-512 kernel when the CPU has AVX-512F, and so do
 * weight-gradient products A^T . B with m <= 16 (a multiple of 8) and n a multiple of 16 (on
 * one thread at any size; their floats are the same whole and in row blocks of 64 rows of B). The environment variable TEMPO_GEMM=openblas|dnnl|auto,
 * read at the first call, overrides the default; an unknown value or "dnnl" in a build without
 * oneDNN prints one warning on stderr and keeps the automatic choice (openblas without oneDNN).
 *
 * Threads (process-wide, default 1): with oneDNN in the build, products of at least 2^20
 * multiply-adds are split into row or column blocks over the tempo_parallel pool (parallel.h),
 * each block single-threaded; forced OpenBLAS (or a build without oneDNN) uses OpenBLAS's own
 * threads instead. */
#ifndef TEMPO_GEMM_H
#define TEMPO_GEMM_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  TEMPO_GEMM_AUTO = 0,
  TEMPO_GEMM_OPENBLAS = 1,
  TEMPO_GEMM_DNNL = 2,
} tempo_gemm_backend;

/* The product above. Sizes must be >= 1 and the strides valid (the caller's checks: this is
 * an internal kernel entry, like BLAS). */
void tempo_sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *A, int lda,
                 const float *B, int ldb, float beta, float *C, int ldc);

/* C (m, n) = op(A) . op(B) (beta 0) with A and B in bfloat16 (the 16-bit wire's operands,
 * bf16.h), C in float32, accumulated in float32, on oneDNN's native bf16 matmul kernels
 * (src/core/gemm16.c; per-thread primitives, one per shape). Shapes and strides as
 * tempo_sgemm's. False where this build, this CPU or TEMPO_GEMM=openblas gives no such kernel
 * for the shape, or oneDNN failed (C then may hold part of a result): the caller widens the
 * operands to float32 and computes C with tempo_sgemm. */
bool tempo_sgemm16(bool trans_a, bool trans_b, int m, int n, int k, const uint16_t *A, int lda, const uint16_t *B,
                   int ldb, float *C, int ldc);

/* Forces a backend for all later calls (TEMPO_GEMM_AUTO restores the automatic choice);
 * false, and no change, when the backend is not in this build. Overrides TEMPO_GEMM. */
bool tempo_gemm_set_backend(tempo_gemm_backend b);
/* The backend in force (after TEMPO_GEMM), and whether the build has oneDNN. */
tempo_gemm_backend tempo_gemm_get_backend(void);
bool tempo_gemm_have_dnnl(void);
const char *tempo_gemm_backend_name(tempo_gemm_backend b);

/* Threads for all later products, >= 1 (sets the tempo_parallel pool or OpenBLAS, see above). */
void tempo_gemm_set_threads(int threads);

#ifdef __cplusplus
}
#endif
#endif
