/* verify.c - Freivalds' check of a worker's product C = op(A) . op(B) on the master.
 *
 * Per round: a fresh random vector v (c), then in one pass over each operand
 *   w  = op(B) v,   wb = |op(B)| |v|          (k, stored as float in work)
 *   y1 = C v,   y2 = op(A) w,   yb = |op(A)| wb   (per row, in double, never stored)
 * and every row must satisfy |y1 - y2| <= TEMPO_VERIFY_SAFETY (k+4) 2^-24 yb + tiny.
 * All sums are accumulated in double, so the check's own rounding is negligible next to
 * the worker's (docs/obfuscation.md derives the bound). BLAS has no |A| x, and a fused
 * kernel reads each operand once per round instead of twice, hence no cblas_sgemv here.
 * v_j = +-U[0.5, 1) (times an optional column weight): a single wrong element e_ij is
 * always seen with weight >= 0.5 |e_ij|, and several cannot cancel except with
 * probability zero over v. Non-finite values in C make y1 non-finite and fail. */
#include <math.h>
#include <stdio.h>

#include "obf/obf_internal.h"
#include "tempo/common.h"
#include "tempo/obf.h"
#include "tempo/rng.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define VF_X86 1
#else
#define VF_X86 0
#endif

#define VF_BLOCK 256 /* rows checked together; column block of the transposed kernels */

/* ---- y[i] = sum_j M[i][j] x[j] (and yb[i] = sum_j |M[i][j]| xb[j] when xb), M (rows, ld) ---- */

static void dot_rows_scalar(int rows, int cols, const float *M, size_t ld, const float *x, const float *xb,
                            double *y, double *yb) {
  for (int i = 0; i < rows; i++) {
    const float *m = M + (size_t)i * ld;
    double s = 0, sb = 0;
    for (int j = 0; j < cols; j++) s += (double)m[j] * (double)x[j];
    if (xb) {
      for (int j = 0; j < cols; j++) sb += fabs((double)m[j]) * (double)xb[j];
      yb[i] = sb;
    }
    y[i] = s;
  }
}

#if VF_X86
__attribute__((target("avx2,fma"))) static inline double hsum(__m256d a) {
  __m128d s = _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
  return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

__attribute__((target("avx2,fma"))) static void dot_rows_avx2(int rows, int cols, const float *M, size_t ld,
                                                             const float *x, const float *xb, double *y,
                                                             double *yb) {
  const __m256d absmask = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7fffffffffffffffLL));
  const int c8 = cols & ~7;
  for (int i = 0; i < rows; i++) {
    const float *m = M + (size_t)i * ld;
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd(), b0 = _mm256_setzero_pd(), b1 = _mm256_setzero_pd();
    int j = 0;
    if (xb) {
      for (; j < c8; j += 8) {
        __m256 mv = _mm256_loadu_ps(m + j), xv = _mm256_loadu_ps(x + j), bv = _mm256_loadu_ps(xb + j);
        __m256d mlo = _mm256_cvtps_pd(_mm256_castps256_ps128(mv)), mhi = _mm256_cvtps_pd(_mm256_extractf128_ps(mv, 1));
        s0 = _mm256_fmadd_pd(mlo, _mm256_cvtps_pd(_mm256_castps256_ps128(xv)), s0);
        s1 = _mm256_fmadd_pd(mhi, _mm256_cvtps_pd(_mm256_extractf128_ps(xv, 1)), s1);
        b0 = _mm256_fmadd_pd(_mm256_and_pd(mlo, absmask), _mm256_cvtps_pd(_mm256_castps256_ps128(bv)), b0);
        b1 = _mm256_fmadd_pd(_mm256_and_pd(mhi, absmask), _mm256_cvtps_pd(_mm256_extractf128_ps(bv, 1)), b1);
      }
    } else {
      for (; j < c8; j += 8) {
        __m256 mv = _mm256_loadu_ps(m + j), xv = _mm256_loadu_ps(x + j);
        s0 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(mv)), _mm256_cvtps_pd(_mm256_castps256_ps128(xv)), s0);
        s1 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(mv, 1)), _mm256_cvtps_pd(_mm256_extractf128_ps(xv, 1)),
                             s1);
      }
    }
    double s = hsum(_mm256_add_pd(s0, s1)), sb = hsum(_mm256_add_pd(b0, b1));
    for (; j < cols; j++) {
      s += (double)m[j] * (double)x[j];
      if (xb) sb += fabs((double)m[j]) * (double)xb[j];
    }
    y[i] = s;
    if (xb) yb[i] = sb;
  }
}
#endif

/* ---- y[i] = sum_l M[l][i0 + i] x[l] for i < cnt <= VF_BLOCK (op(M) = M^T), M (lrows, ld) ---- */

static void dot_cols_scalar(int lrows, int i0, int cnt, const float *M, size_t ld, const float *x, const float *xb,
                            double *y, double *yb) {
  for (int i = 0; i < cnt; i++) y[i] = 0, yb[i] = 0;
  for (int l = 0; l < lrows; l++) {
    const float *m = M + (size_t)l * ld + i0;
    const double xl = x[l], bl = xb ? xb[l] : 0;
    for (int i = 0; i < cnt; i++) y[i] += (double)m[i] * xl;
    if (xb)
      for (int i = 0; i < cnt; i++) yb[i] += fabs((double)m[i]) * bl;
  }
}

#if VF_X86
__attribute__((target("avx2,fma"))) static void dot_cols_avx2(int lrows, int i0, int cnt, const float *M, size_t ld,
                                                             const float *x, const float *xb, double *y,
                                                             double *yb) {
  const __m256d absmask = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7fffffffffffffffLL));
  const int c4 = cnt & ~3;
  for (int i = 0; i < cnt; i++) y[i] = 0, yb[i] = 0;
  int l = 0;
  /* four rows of M per sweep over y, yb: a quarter of the accumulator loads and stores */
  for (; l + 4 <= lrows; l += 4) {
    const float *m0 = M + (size_t)l * ld + i0, *m1 = m0 + ld, *m2 = m1 + ld, *m3 = m2 + ld;
    const __m256d x0 = _mm256_set1_pd(x[l]), x1 = _mm256_set1_pd(x[l + 1]);
    const __m256d x2 = _mm256_set1_pd(x[l + 2]), x3 = _mm256_set1_pd(x[l + 3]);
    const __m256d b0 = _mm256_set1_pd(xb ? xb[l] : 0), b1 = _mm256_set1_pd(xb ? xb[l + 1] : 0);
    const __m256d b2 = _mm256_set1_pd(xb ? xb[l + 2] : 0), b3 = _mm256_set1_pd(xb ? xb[l + 3] : 0);
    int i = 0;
    for (; i < c4; i += 4) {
      __m256d v0 = _mm256_cvtps_pd(_mm_loadu_ps(m0 + i)), v1 = _mm256_cvtps_pd(_mm_loadu_ps(m1 + i));
      __m256d v2 = _mm256_cvtps_pd(_mm_loadu_ps(m2 + i)), v3 = _mm256_cvtps_pd(_mm_loadu_ps(m3 + i));
      __m256d acc = _mm256_loadu_pd(y + i);
      acc = _mm256_fmadd_pd(v0, x0, acc);
      acc = _mm256_fmadd_pd(v1, x1, acc);
      acc = _mm256_fmadd_pd(v2, x2, acc);
      _mm256_storeu_pd(y + i, _mm256_fmadd_pd(v3, x3, acc));
      if (xb) {
        __m256d ab = _mm256_loadu_pd(yb + i);
        ab = _mm256_fmadd_pd(_mm256_and_pd(v0, absmask), b0, ab);
        ab = _mm256_fmadd_pd(_mm256_and_pd(v1, absmask), b1, ab);
        ab = _mm256_fmadd_pd(_mm256_and_pd(v2, absmask), b2, ab);
        _mm256_storeu_pd(yb + i, _mm256_fmadd_pd(_mm256_and_pd(v3, absmask), b3, ab));
      }
    }
    for (; i < cnt; i++)
      for (int q = 0; q < 4; q++) {
        const double mv = (double)M[(size_t)(l + q) * ld + i0 + i];
        y[i] += mv * x[l + q];
        if (xb) yb[i] += fabs(mv) * xb[l + q];
      }
  }
  for (; l < lrows; l++) {
    const float *m = M + (size_t)l * ld + i0;
    const double xl = x[l], bl = xb ? xb[l] : 0;
    const __m256d xv = _mm256_set1_pd(xl), bv = _mm256_set1_pd(bl);
    int i = 0;
    for (; i < c4; i += 4) {
      __m256d mv = _mm256_cvtps_pd(_mm_loadu_ps(m + i));
      _mm256_storeu_pd(y + i, _mm256_fmadd_pd(mv, xv, _mm256_loadu_pd(y + i)));
      if (xb) _mm256_storeu_pd(yb + i, _mm256_fmadd_pd(_mm256_and_pd(mv, absmask), bv, _mm256_loadu_pd(yb + i)));
    }
    for (; i < cnt; i++) {
      y[i] += (double)m[i] * xl;
      if (xb) yb[i] += fabs((double)m[i]) * bl;
    }
  }
}
#endif

static int vf_force_scalar; /* tests: exercise the portable kernels */
void tempo_verify_force_scalar(bool on) { __atomic_store_n(&vf_force_scalar, on ? 1 : 0, __ATOMIC_RELAXED); }

static bool vf_avx2(void) {
#if VF_X86
  if (__atomic_load_n(&vf_force_scalar, __ATOMIC_RELAXED)) return false;
  static int cached = -1; /* benign race: every thread computes the same value */
  int c = __atomic_load_n(&cached, __ATOMIC_RELAXED);
  if (c < 0) {
    __builtin_cpu_init();
    c = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    __atomic_store_n(&cached, c, __ATOMIC_RELAXED);
  }
  return c == 1;
#else
  return false;
#endif
}

static void dot_rows(int rows, int cols, const float *M, size_t ld, const float *x, const float *xb, double *y,
                     double *yb) {
#if VF_X86
  if (vf_avx2()) {
    dot_rows_avx2(rows, cols, M, ld, x, xb, y, yb);
    return;
  }
#endif
  dot_rows_scalar(rows, cols, M, ld, x, xb, y, yb);
}

static void dot_cols(int lrows, int i0, int cnt, const float *M, size_t ld, const float *x, const float *xb, double *y,
                     double *yb) {
#if VF_X86
  if (vf_avx2()) {
    dot_cols_avx2(lrows, i0, cnt, M, ld, x, xb, y, yb);
    return;
  }
#endif
  dot_cols_scalar(lrows, i0, cnt, M, ld, x, xb, y, yb);
}

/* out[i] = sum over op(M) row i of (op(M)[i][.] x[.]) for all `rows` rows of op(M) (rows, cols),
 * M stored (rows, cols) or, with trans, (cols, rows); results rounded to float. */
static void matvec_f(int rows, int cols, const float *M, bool trans, const float *x, const float *xb, float *out,
                     float *outb) {
  double y[VF_BLOCK], yb[VF_BLOCK];
  for (int i0 = 0; i0 < rows; i0 += VF_BLOCK) {
    int cnt = rows - i0 < VF_BLOCK ? rows - i0 : VF_BLOCK;
    if (trans)
      dot_cols(cols, i0, cnt, M, (size_t)rows, x, xb, y, yb);
    else
      dot_rows(cnt, cols, M + (size_t)i0 * (size_t)cols, (size_t)cols, x, xb, y, yb);
    for (int i = 0; i < cnt; i++) {
      out[i0 + i] = (float)y[i];
      outb[i0 + i] = (float)yb[i];
    }
  }
}

tempo_status tempo_verify_product_weighted(int r, int k, int c, const float *A, bool a_trans, const float *B,
                                           bool b_trans, const float *C, const float *col_weight, int rounds,
                                           uint64_t rng_seed, float *work) {
  if (r < 1 || k < 1 || c < 1 || rounds < 1 || !A || !B || !C || !work)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "tempo_verify_product: bad arguments (%d, %d, %d, rounds %d)",
                           r, k, c, rounds);
  if (col_weight)
    for (int j = 0; j < c; j++)
      if (!(col_weight[j] > 0.0f) || !isfinite(col_weight[j]))
        return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "tempo_verify_product: column weight %d is not positive",
                               j);
  float *v = work, *vabs = v + c, *w = vabs + c, *wb = w + k; /* 2c + 2k <= 3 (r + k + c) */
  for (int round = 0; round < rounds; round++) {
    const float vmax = tempo_verify_vector(rng_seed, round, c, col_weight, v, vabs);
    /* w = op(B) v with op(B) (k, c): B stored (k, c), or (c, k) with b_trans. */
    matvec_f(k, c, B, b_trans, v, vabs, w, wb);
    double y2[VF_BLOCK], yb[VF_BLOCK];
    for (int i0 = 0; i0 < r; i0 += VF_BLOCK) {
      int cnt = r - i0 < VF_BLOCK ? r - i0 : VF_BLOCK;
      if (a_trans)
        dot_cols(k, i0, cnt, A, (size_t)r, w, wb, y2, yb);
      else
        dot_rows(cnt, k, A + (size_t)i0 * (size_t)k, (size_t)k, w, wb, y2, yb);
      tempo_status st = tempo_verify_rows(cnt, k, c, C + (size_t)i0 * (size_t)c, v, vmax, y2, yb, 0, i0, r, round);
      if (st) return st;
    }
  }
  return TEMPO_STATUS_OK;
}

float tempo_verify_vector(uint64_t rng_seed, int round, int c, const float *col_weight, float *v, float *vabs) {
  tempo_rng rng;
  tempo_rng_seed(&rng, rng_seed, 0x74656d706f766600ULL + (uint64_t)round);
  float vmax = 0;
  for (int j = 0; j < c; j++) {
    uint64_t x = tempo_rng_u64(&rng);
    float mag = 0.5f + 0.5f * (float)((double)(x >> 40) * 0x1p-24); /* [0.5, 1) */
    if (col_weight) mag *= col_weight[j];
    v[j] = (x & 1) ? -mag : mag;
    vabs[j] = mag;
    if (mag > vmax) vmax = mag;
  }
  return vmax;
}

void tempo_verify_matvec(int rows, int cols, const float *M, bool trans, const float *x, const float *xb, float *out,
                         float *outb) {
  matvec_f(rows, cols, M, trans, x, xb, out, outb);
}

/* Rows [row0, row0 + cnt) of a check: |y1 - y2| <= factor yb + tiny for each, y1 finite. */
static tempo_status compare_rows(int cnt, const double *y1, const double *y2, const double *yb, double factor,
                                 double tiny, int row0, int total_rows, int k, int c, int round) {
  for (int i = 0; i < cnt; i++) {
    if (!isfinite(y1[i]))
      return tempo_set_error(TEMPO_STATUS_VERIFY_FAILED, "product check: non-finite value in result row %d of (%d, %d)",
                             row0 + i, total_rows, c);
    const double diff = fabs(y1[i] - y2[i]), tol = factor * yb[i] + tiny;
    if (!(diff <= tol))
      return tempo_set_error(TEMPO_STATUS_VERIFY_FAILED,
                             "product check failed: row %d of (%d, %d) x (%d), round %d: |Cv - A(Bv)| = %.3g > %.3g",
                             row0 + i, total_rows, c, k, round, diff, tol);
  }
  return TEMPO_STATUS_OK;
}

tempo_status tempo_verify_rows(int rows, int k, int c, const float *C, const float *v, float vmax, const double *y2,
                               const double *yb, double slack, int row0, int total_rows, int round) {
  const double factor = TEMPO_VERIFY_SAFETY * ((double)k + 4.0) * 0x1p-24 + slack;
  const double tiny = (double)k * (double)c * (double)vmax * 0x1p-126;
  double y1[VF_BLOCK], unused[VF_BLOCK];
  for (int i0 = 0; i0 < rows; i0 += VF_BLOCK) {
    const int cnt = rows - i0 < VF_BLOCK ? rows - i0 : VF_BLOCK;
    dot_rows(cnt, c, C + (size_t)i0 * (size_t)c, (size_t)c, v, NULL, y1, unused);
    tempo_status st = compare_rows(cnt, y1, y2 + i0, yb + i0, factor, tiny, row0 + i0, total_rows, k, c, round);
    if (st) return st;
  }
  return TEMPO_STATUS_OK;
}

tempo_status tempo_verify_product(int r, int k, int c, const float *A, bool a_trans, const float *B, bool b_trans,
                                  const float *C, int rounds, uint64_t rng_seed, float *work) {
  return tempo_verify_product_weighted(r, k, c, A, a_trans, B, b_trans, C, NULL, rounds, rng_seed, work);
}

tempo_status tempo_verify_left(int k, int len, int c, const double *g, const double *h, const double *hb, float rmax,
                               double slack, int round) {
  const double factor = TEMPO_VERIFY_SAFETY * ((double)k + 4.0) * 0x1p-24 + slack;
  const double tiny = (double)k * (double)len * (double)rmax * 0x1p-126;
  for (int j = 0; j < c; j++) {
    if (!isfinite(g[j]))
      return tempo_set_error(TEMPO_STATUS_VERIFY_FAILED, "product check: non-finite value in result column %d of %d", j,
                             c);
    const double diff = fabs(g[j] - h[j]), tol = factor * hb[j] + tiny;
    if (!(diff <= tol))
      return tempo_set_error(TEMPO_STATUS_VERIFY_FAILED,
                             "product check failed: column %d of %d (inner %d), round %d: |r^T C - (r^T A) B| = %.3g > %.3g",
                             j, c, k, round, diff, tol);
  }
  return TEMPO_STATUS_OK;
}

tempo_status tempo_verify_rows_a(int rows, int k, int c, const float *A, const float *w, const float *wb,
                                 const double *y1, float vmax, int row0, int total_rows, int round) {
  const double factor = TEMPO_VERIFY_SAFETY * ((double)k + 4.0) * 0x1p-24;
  const double tiny = (double)k * (double)c * (double)vmax * 0x1p-126;
  double y2[VF_BLOCK], yb[VF_BLOCK];
  for (int i0 = 0; i0 < rows; i0 += VF_BLOCK) {
    const int cnt = rows - i0 < VF_BLOCK ? rows - i0 : VF_BLOCK;
    dot_rows(cnt, k, A + (size_t)i0 * (size_t)k, (size_t)k, w, wb, y2, yb);
    tempo_status st = compare_rows(cnt, y1 + i0, y2, yb, factor, tiny, row0 + i0, total_rows, k, c, round);
    if (st) return st;
  }
  return TEMPO_STATUS_OK;
}
