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
#include "core/sigblock.h"
#include "tempo/gemm.h"
#include "tempo/common.h"
#include "tempo/parallel.h"

#include <cblas.h>
#include <pthread.h>
#include <stdatomic.h>
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

/* Narrow products: op(B) with n = 16 or 32 columns (the 16- and 32-channel convolutions of
 * resnet20: Y (B*H*W, Co) = cols . W^T, k = 9*Ci). Both libraries tile such a C poorly and
 * their streams over A defeat the hardware prefetcher: dnnl_sgemm ran 65536x16x144 NT at
 * 40 GFLOP/s and 16384x32x288 at 82, where the AVX-512 kernel below (a few rows of C in
 * registers, broadcast A, the next rows of A prefetched) does 80 and 107 (1 thread, Zen 5).
 * Under AUTO only, when the CPU has AVX-512F; every sum runs in k order. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define NARROW_BUILD 1
#include <immintrin.h>
#else
#define NARROW_BUILD 0
#endif
#define NARROW_MIN_K 16
#define NARROW_MAX_K 1024

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

static void apply_threads(void);

bool tempo_gemm_set_backend(tempo_gemm_backend b) {
  if (b == TEMPO_GEMM_DNNL && !TEMPO_HAVE_DNNL) return false;
  if ((unsigned)b > TEMPO_GEMM_DNNL) return false;
  pthread_once(&env_once, read_env);
  forced = b == TEMPO_GEMM_AUTO ? -1 : (int)b;
  apply_threads();
  return true;
}

/* Threads: with oneDNN in the build, every backend runs single-threaded inside each call and
 * tempo_sgemm splits a large product into row or column blocks over the tempo_parallel pool
 * (helpers sleep between jobs). oneDNN's own OpenMP team is never used: libgomp's idle threads
 * spin (OMP_WAIT_POLICY is read once, at load), and on a loaded 2-core machine a spinning thread
 * took the core the next layer needed (ViT-mini at 2 threads: 1530 ms/step spinning, 480 ms
 * passive). Forced OpenBLAS (TEMPO_GEMM=openblas) keeps OpenBLAS's own threads instead. */
static atomic_int gemm_threads = 1;
static atomic_int split_threads = 1; /* the parts tempo_sgemm splits a product into */

/* The pool has the threads in either case: the master's element-wise layers and mixed Enc/Dec
 * passes run on it too (between products, never beside OpenBLAS's own threads). */
static void apply_threads(void) {
  const int t = atomic_load(&gemm_threads);
  const bool own = tempo_gemm_get_backend() == TEMPO_GEMM_OPENBLAS || !TEMPO_HAVE_DNNL;
  openblas_set_num_threads(own ? t : 1);
  atomic_store(&split_threads, own ? 1 : t);
  tempo_parallel_set_threads(t);
}

void tempo_gemm_set_threads(int threads) {
  atomic_store(&gemm_threads, threads < 1 ? 1 : threads);
  apply_threads();
}

#if NARROW_BUILD
#define NARROW_INLINE __attribute__((target("avx512f"), always_inline)) static inline

/* R rows of C (NB*16 columns) = alpha * A(R, k) . B(k, NB*16) [+ beta C]; B row-major with
 * row stride NB*16. The lines of the next R rows of A are prefetched, one per row every
 * 16 values of k. */
NARROW_INLINE void narrow_rows(int R, int NB, int k, const float *A, int lda, const float *B, float alpha,
                               float beta, float *C, int ldc) {
  __m512 acc[8];
  _Pragma("GCC unroll 8") for (int i = 0; i < R * NB; i++) acc[i] = _mm512_setzero_ps();
  for (int kk = 0; kk < k; kk++) {
    if ((kk & 15) == 0) {
      _Pragma("GCC unroll 8") for (int r = 0; r < R; r++)
        _mm_prefetch((const char *)(A + (size_t)(r + R) * lda + kk), _MM_HINT_T0);
    }
    __m512 b[2];
    _Pragma("GCC unroll 2") for (int j = 0; j < NB; j++) b[j] = _mm512_loadu_ps(B + (size_t)kk * NB * 16 + 16 * j);
    _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {
      const __m512 a = _mm512_set1_ps(A[(size_t)r * lda + kk]);
      _Pragma("GCC unroll 2") for (int j = 0; j < NB; j++) acc[r * NB + j] = _mm512_fmadd_ps(a, b[j], acc[r * NB + j]);
    }
  }
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  _Pragma("GCC unroll 8") for (int r = 0; r < R; r++)
    _Pragma("GCC unroll 2") for (int j = 0; j < NB; j++) {
      float *c = C + (size_t)r * ldc + 16 * j;
      __m512 v = _mm512_mul_ps(va, acc[r * NB + j]);
      if (beta != 0.0f) v = _mm512_fmadd_ps(vb, _mm512_loadu_ps(c), v);
      _mm512_storeu_ps(c, v);
    }
}

__attribute__((target("avx512f"))) static void narrow_16(int m, int k, const float *A, int lda, const float *B,
                                                        float alpha, float beta, float *C, int ldc) {
  int r = 0;
  for (; r + 8 <= m; r += 8)
    narrow_rows(8, 1, k, A + (size_t)r * lda, lda, B, alpha, beta, C + (size_t)r * ldc, ldc);
  for (; r < m; r++) narrow_rows(1, 1, k, A + (size_t)r * lda, lda, B, alpha, beta, C + (size_t)r * ldc, ldc);
}

__attribute__((target("avx512f"))) static void narrow_32(int m, int k, const float *A, int lda, const float *B,
                                                        float alpha, float beta, float *C, int ldc) {
  int r = 0;
  for (; r + 4 <= m; r += 4)
    narrow_rows(4, 2, k, A + (size_t)r * lda, lda, B, alpha, beta, C + (size_t)r * ldc, ldc);
  for (; r < m; r++) narrow_rows(1, 2, k, A + (size_t)r * lda, lda, B, alpha, beta, C + (size_t)r * ldc, ldc);
}

/* Weight-gradient shape: C (m, n) = alpha A^T . B + beta C with A stored (k, m), B (k, n), m a
 * multiple of 8 up to 64 (output channels), n a multiple of 16 (K = kh kw Ci), k the rows of a
 * column matrix. Blocks of 8 rows x up to 48 columns of C sit in 24 registers; k runs in chunks
 * of TN_CHUNK, each summed from zero in k order and then added onto C in order. So a product
 * over k rows equals, bit for bit, the same product done in row blocks of multiples of
 * TN_CHUNK with beta 1 after the first (alpha 1): conv2d's local mode computes the weight
 * gradient tile by tile from columns still in cache, the offloaded modes in one product. */
#define TN_CHUNK 64
#define TN_OUTER 512 /* a multiple of TN_CHUNK */
NARROW_INLINE void tn_block(int NB, int k, const float *A, int lda, const float *B, int ldb, int pfn, float alpha,
                            float beta, float *C, int ldc) {
  for (int k0 = 0; k0 < k; k0 += TN_CHUNK) {
    const int k1 = k - k0 < TN_CHUNK ? k : k0 + TN_CHUNK;
    __m512 acc[8][3];
    _Pragma("GCC unroll 8") for (int r = 0; r < 8; r++) _Pragma("GCC unroll 3") for (int j = 0; j < NB; j++)
      acc[r][j] = _mm512_setzero_ps();
    for (int kk = k0; kk < k1; kk++) {
      const float *b = B + (size_t)kk * ldb, *a = A + (size_t)kk * lda;
      for (int c = 0; c < pfn; c += 16) _mm_prefetch((const char *)(b + 8 * (size_t)ldb + c), _MM_HINT_T0);
      __m512 bv[3];
      _Pragma("GCC unroll 3") for (int j = 0; j < NB; j++) bv[j] = _mm512_loadu_ps(b + 16 * j);
      _Pragma("GCC unroll 8") for (int r = 0; r < 8; r++) {
        const __m512 av = _mm512_set1_ps(a[r]);
        _Pragma("GCC unroll 3") for (int j = 0; j < NB; j++) acc[r][j] = _mm512_fmadd_ps(av, bv[j], acc[r][j]);
      }
    }
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    _Pragma("GCC unroll 8") for (int r = 0; r < 8; r++) _Pragma("GCC unroll 3") for (int j = 0; j < NB; j++) {
      float *c = C + (size_t)r * ldc + 16 * j;
      const __m512 v = alpha == 1.0f ? acc[r][j] : _mm512_mul_ps(va, acc[r][j]);
      if (k0 > 0 || beta == 1.0f)
        _mm512_storeu_ps(c, _mm512_add_ps(_mm512_loadu_ps(c), v));
      else if (beta == 0.0f)
        _mm512_storeu_ps(c, v);
      else
        _mm512_storeu_ps(c, _mm512_fmadd_ps(vb, _mm512_loadu_ps(c), v));
    }
  }
}

__attribute__((target("avx512f"))) static void narrow_tn(int m, int n, int k, float alpha, const float *A, int lda,
                                                        const float *B, int ldb, float beta, float *C, int ldc) {
  for (int k0 = 0; k0 < k; k0 += TN_OUTER) { /* rows of B that stay in L2 over all blocks of C */
    const int kc = k - k0 < TN_OUTER ? k - k0 : TN_OUTER;
    const float *a = A + (size_t)k0 * lda, *b = B + (size_t)k0 * ldb, bt = k0 == 0 ? beta : 1.0f;
    for (int r = 0; r < m; r += 8) {
      int j = 0;
      /* the first block pulls whole rows of B, 8 rows ahead, for the others */
      for (; j + 48 <= n; j += 48)
        tn_block(3, kc, a + r, lda, b + j, ldb, r + j == 0 ? n : 0, alpha, bt, C + (size_t)r * ldc + j, ldc);
      if (j + 32 <= n) {
        tn_block(2, kc, a + r, lda, b + j, ldb, r + j == 0 ? n : 0, alpha, bt, C + (size_t)r * ldc + j, ldc);
        j += 32;
      }
      if (j < n) tn_block(1, kc, a + r, lda, b + j, ldb, r + j == 0 ? n : 0, alpha, bt, C + (size_t)r * ldc + j, ldc);
    }
  }
}

static bool narrow_cpu(void) {
  static int have = -1; /* benign race: every thread computes the same answer */
  if (have < 0) have = __builtin_cpu_supports("avx512f") ? 1 : 0;
  return have;
}

/* The narrow kernel for C (m, n) = alpha A . op(B) + beta C with A not transposed; B is
 * copied into a contiguous (k, n) block first (transposed when tb). False when it does not
 * apply (or no memory for the copy). */
static bool narrow_gemm(bool tb, int m, int n, int k, float alpha, const float *A, int lda, const float *B, int ldb,
                        float beta, float *C, int ldc) {
  float *bk = tempo_alloc_floats((size_t)k * n);
  if (!bk) return false;
  for (int kk = 0; kk < k; kk++)
    for (int j = 0; j < n; j++) bk[(size_t)kk * n + j] = tb ? B[(size_t)j * ldb + kk] : B[(size_t)kk * ldb + j];
  if (n == 16)
    narrow_16(m, k, A, lda, bk, alpha, beta, C, ldc);
  else
    narrow_32(m, k, A, lda, bk, alpha, beta, C, ldc);
  tempo_free_floats(bk);
  return true;
}
#endif

/* AUTO's choice of the weight-gradient kernel (narrow_tn): m <= 16 (with 32 or 64 rows oneDNN
 * streams a large B from memory faster: 32x288, k 16384, 94 vs 78 GFLOP/s); on one thread at
 * any size (a product must give the same floats whole and in row blocks), on more threads only
 * below 2^20 multiply-adds (oneDNN again, for the same reason). */
static bool use_narrow_tn(bool ta, bool tb, int m, int n, int threads, double macs) {
#if NARROW_BUILD
  return ta && !tb && m % 8 == 0 && m <= 16 && n % 16 == 0 && (threads <= 1 || macs < AUTO_MIN_MACS) && narrow_cpu();
#else
  (void)ta, (void)tb, (void)m, (void)n, (void)threads, (void)macs;
  return false;
#endif
}

/* AUTO's choice of the narrow kernel (see NARROW_BUILD). */
static bool use_narrow(bool ta, int n, int k, double macs) {
#if NARROW_BUILD
  return !ta && (n == 16 || n == 32) && k >= NARROW_MIN_K && k <= NARROW_MAX_K && macs >= AUTO_MIN_MACS &&
         narrow_cpu();
#else
  (void)ta, (void)n, (void)k, (void)macs;
  return false;
#endif
}

typedef struct {
  bool narrow; /* the narrow kernel instead of `be` */
  bool tn;     /* narrow_tn instead of `be` */
  tempo_gemm_backend be;
  bool ta, tb;
  int m, n, k, parts;
  bool split_rows;
  float alpha, beta;
  const float *A, *B;
  float *C;
  int lda, ldb, ldc;
} gemm_job;

static void run_one(tempo_gemm_backend be, bool ta, bool tb, int m, int n, int k, float alpha, const float *A,
                    int lda, const float *B, int ldb, float beta, float *C, int ldc) {
#if TEMPO_HAVE_DNNL
  if (be == TEMPO_GEMM_DNNL) {
    omp_set_num_threads(1); /* this thread's ICV: no OpenMP team (see above) */
    /* oneDNN's JIT kernels must not take a signal (sigblock.h); the products that come here
     * under AUTO are at least 2^20 multiply-adds (~20 us) against 0.5 us for the mask */
    sigset_t old;
    tempo_async_signals_block(&old);
    const dnnl_status_t ds = dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
    tempo_async_signals_restore(&old);
    if (ds == dnnl_success) return; /* on a refusal (it has none for valid arguments) OpenBLAS computes it */
  }
#else
  (void)be;
#endif
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, alpha, A, lda,
              B, ldb, beta, C, ldc);
}

/* Part `task` of the split: a block of rows of C (rows of op(A)) or of columns (of op(B)),
 * block edges on multiples of 16 so each part keeps whole vector tiles. */
static void run_part(void *vj, int task) {
  const gemm_job *j = vj;
  const int len = j->split_rows ? j->m : j->n;
  const int step = ((len + j->parts - 1) / j->parts + 15) / 16 * 16;
  const int lo = task * step, hi = lo + step < len ? lo + step : len;
  if (lo >= hi) return;
  if (j->split_rows) {
    const float *a = j->ta ? j->A + lo : j->A + (size_t)lo * j->lda;
#if NARROW_BUILD
    if (j->narrow && narrow_gemm(j->tb, hi - lo, j->n, j->k, j->alpha, a, j->lda, j->B, j->ldb, j->beta,
                                 j->C + (size_t)lo * j->ldc, j->ldc))
      return;
#endif
    run_one(j->be, j->ta, j->tb, hi - lo, j->n, j->k, j->alpha, a, j->lda, j->B, j->ldb, j->beta,
            j->C + (size_t)lo * j->ldc, j->ldc);
  } else {
    const float *b = j->tb ? j->B + (size_t)lo * j->ldb : j->B + lo;
#if NARROW_BUILD
    if (j->tn) {
      narrow_tn(j->m, hi - lo, j->k, j->alpha, j->A, j->lda, b, j->ldb, j->beta, j->C + lo, j->ldc);
      return;
    }
#endif
    run_one(j->be, j->ta, j->tb, j->m, hi - lo, j->k, j->alpha, j->A, j->lda, b, j->ldb, j->beta, j->C + lo,
            j->ldc);
  }
}

void tempo_sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *A, int lda,
                 const float *B, int ldb, float beta, float *C, int ldc) {
  const tempo_gemm_backend forced_be = tempo_gemm_get_backend();
  tempo_gemm_backend b = forced_be;
  const double macs = (double)m * n * k;
  const int threads = atomic_load(&split_threads);
  if (b == TEMPO_GEMM_AUTO) /* k <= 16 favours OpenBLAS on one thread only (bench_gemm) */
    b = TEMPO_HAVE_DNNL && macs >= AUTO_MIN_MACS && (k >= AUTO_MIN_K || threads > 1) ? TEMPO_GEMM_DNNL
                                                                                      : TEMPO_GEMM_OPENBLAS;
  const bool narrow = forced_be == TEMPO_GEMM_AUTO && use_narrow(trans_a, n, k, macs);
  const bool tn = forced_be == TEMPO_GEMM_AUTO && use_narrow_tn(trans_a, trans_b, m, n, threads, macs);
  const int len = m >= n ? m : n;
  if (threads <= 1 || macs < AUTO_MIN_MACS || len < 32) {
#if NARROW_BUILD
    if (narrow && narrow_gemm(trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)) return;
    if (tn) {
      narrow_tn(m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
      return;
    }
#endif
    run_one(b, trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  gemm_job j = {.narrow = narrow, .tn = tn, .be = b, .ta = trans_a, .tb = trans_b, .m = m, .n = n, .k = k, .split_rows = m >= n && !tn,
                .alpha = alpha, .beta = beta, .A = A, .B = B, .C = C, .lda = lda, .ldb = ldb, .ldc = ldc};
  j.parts = threads < len / 16 ? threads : len / 16;
  tempo_parallel_for(j.parts, run_part, &j);
}
