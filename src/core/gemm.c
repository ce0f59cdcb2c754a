/* gemm.c - tempo_sgemm (see gemm.h): one SGEMM entry point, two backends.
 *
 * Why two: OpenBLAS is pinned to its AVX2 (Haswell) kernels on these machines, while oneDNN's
 * dnnl_sgemm JITs AVX-512 kernels. bench/bench_gemm (the shapes the reference models use,
 * CPU time, 1 thread, loaded 2-core Zen 5, 2026-11-26) measured in GFLOP/s, OpenBLAS -> oneDNN:
 *   conv products  4096x576x64 NN 91 -> 103, 64x576 (k 4096) TN 78 -> 109, 16384x32x288 NT 60 -> 81,
 *                  16x144 (k 65536) TN 40 -> 62;
 *   ViT linears    4160x128x128 NN 98 -> 113, 4160x384x128 NT 95 -> 101, 384x128 (k 4160) TN 86 -> 98;
 *   but attention  65x32x65 NN 110 -> 102, 65x65x32 NT 74 -> 62 (tiny products: less call overhead),
 *   and k = 16     65536x144x16 NN 63 -> 53.
 * So AUTO picks oneDNN for products of at least 2^20 multiply-adds with k > 16. */
#include "tempo/gemm.h"

#include <cblas.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef TEMPO_HAVE_DNNL
#define TEMPO_HAVE_DNNL 0
#endif
#if TEMPO_HAVE_DNNL
#include <dnnl.h>
#include <omp.h> /* oneDNN (Debian build) runs on OpenMP: its thread count is the caller's ICV */
#endif

#define AUTO_MIN_MACS (1.0 * (1 << 20))
#define AUTO_MIN_K 17

static pthread_once_t env_once = PTHREAD_ONCE_INIT;
static tempo_gemm_backend env_backend = TEMPO_GEMM_AUTO;
static volatile int forced = -1; /* tempo_gemm_set_backend's choice, -1 = none */

const char *tempo_gemm_backend_name(tempo_gemm_backend b) {
  switch (b) {
  case TEMPO_GEMM_AUTO: return "auto";
  case TEMPO_GEMM_OPENBLAS: return "openblas";
  case TEMPO_GEMM_DNNL: return "dnnl";
  }
  return "?";
}

bool tempo_gemm_have_dnnl(void) { return TEMPO_HAVE_DNNL; }

static void read_env(void) {
  const char *s = getenv("TEMPO_GEMM");
  if (!s || !*s || !strcmp(s, "auto")) return;
  if (!strcmp(s, "openblas")) {
    env_backend = TEMPO_GEMM_OPENBLAS;
  } else if (!strcmp(s, "dnnl") && TEMPO_HAVE_DNNL) {
    env_backend = TEMPO_GEMM_DNNL;
  } else {
    fprintf(stderr, "tempo: TEMPO_GEMM=%s is not available in this build (openblas%s|auto); using auto\n", s,
            TEMPO_HAVE_DNNL ? "|dnnl" : "");
  }
}

tempo_gemm_backend tempo_gemm_get_backend(void) {
  pthread_once(&env_once, read_env);
  const int f = forced;
  return f >= 0 ? (tempo_gemm_backend)f : env_backend;
}

bool tempo_gemm_set_backend(tempo_gemm_backend b) {
  if (b == TEMPO_GEMM_DNNL && !TEMPO_HAVE_DNNL) return false;
  if ((unsigned)b > TEMPO_GEMM_DNNL) return false;
  pthread_once(&env_once, read_env);
  forced = b == TEMPO_GEMM_AUTO ? -1 : (int)b;
  return true;
}

void tempo_gemm_set_threads(int threads) {
  if (threads < 1) threads = 1;
  openblas_set_num_threads(threads);
#if TEMPO_HAVE_DNNL
  omp_set_num_threads(threads);
#endif
}

static void openblas_gemm(bool ta, bool tb, int m, int n, int k, float alpha, const float *A, int lda,
                          const float *B, int ldb, float beta, float *C, int ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, alpha, A, lda,
              B, ldb, beta, C, ldc);
}

void tempo_sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *A, int lda,
                 const float *B, int ldb, float beta, float *C, int ldc) {
  tempo_gemm_backend b = tempo_gemm_get_backend();
  if (b == TEMPO_GEMM_AUTO)
    b = TEMPO_HAVE_DNNL && k >= AUTO_MIN_K && (double)m * n * k >= AUTO_MIN_MACS ? TEMPO_GEMM_DNNL
                                                                                   : TEMPO_GEMM_OPENBLAS;
#if TEMPO_HAVE_DNNL
  if (b == TEMPO_GEMM_DNNL &&
      dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, A, lda, B, ldb, beta, C, ldc) ==
          dnnl_success)
    return; /* on a refusal (it has none for valid arguments) OpenBLAS computes it */
#endif
  openblas_gemm(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}
