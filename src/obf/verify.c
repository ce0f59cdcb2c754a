/* verify.c - Freivalds' check of a worker's product C = op(A) . op(B) on the master.
 *
 * Per round: a fresh random vector v (c), then in one pass over each operand
 *   w  = op(B) v,   g  = (op(B) o op(B)) (v o v) + rho w^2      (k, stored as float in work)
 *   y1 = C v,   c2 = (C o C)(v o v),   y2 = op(A) w,   G = (op(A) o op(A)) g   (per row, double)
 * and every row must satisfy |y1 - y2| <= lam sqrt(ac c2 + aq G) + tiny (bound_of below):
 * a probabilistic bound in sqrt(k) on the rounding error of the worker's product, from sums
 * of squares that cancellation cannot inflate, with a stated false-alarm probability
 * (docs/obfuscation.md derives it). All sums are accumulated in double, so the check's own
 * rounding is negligible next to the worker's. BLAS has no such fused sums, and a fused kernel
 * reads each operand once per round instead of twice, hence no cblas_sgemv here.
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

/* ---- y[i] = sum_j M[i][j] x[j] (and yb[i] = sum_j M[i][j]^2 xb[j] when xb), M (rows, ld) ---- */

static void dot_rows_scalar(int rows, int cols, const float *M, size_t ld, const float *x, const float *xb,
                            double *y, double *yb) {
  for (int i = 0; i < rows; i++) {
    const float *m = M + (size_t)i * ld;
    double s = 0, sb = 0;
    for (int j = 0; j < cols; j++) s += (double)m[j] * (double)x[j];
    if (xb) {
      for (int j = 0; j < cols; j++) sb += (double)m[j] * (double)m[j] * (double)xb[j];
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
        b0 = _mm256_fmadd_pd(_mm256_mul_pd(mlo, mlo), _mm256_cvtps_pd(_mm256_castps256_ps128(bv)), b0);
        b1 = _mm256_fmadd_pd(_mm256_mul_pd(mhi, mhi), _mm256_cvtps_pd(_mm256_extractf128_ps(bv, 1)), b1);
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
      if (xb) sb += (double)m[j] * (double)m[j] * (double)xb[j];
    }
    y[i] = s;
    if (xb) yb[i] = sb;
  }
}
#endif

/* ---- y[i] = sum_l M[l][i0 + i] x[l] (yb[i] = sum_l M[l][i0 + i]^2 xb[l]) for i < cnt <= VF_BLOCK
 * (op(M) = M^T), M (lrows, ld) ---- */

static void dot_cols_scalar(int lrows, int i0, int cnt, const float *M, size_t ld, const float *x, const float *xb,
                            double *y, double *yb) {
  for (int i = 0; i < cnt; i++) y[i] = 0, yb[i] = 0;
  for (int l = 0; l < lrows; l++) {
    const float *m = M + (size_t)l * ld + i0;
    const double xl = x[l], bl = xb ? xb[l] : 0;
    for (int i = 0; i < cnt; i++) y[i] += (double)m[i] * xl;
    if (xb)
      for (int i = 0; i < cnt; i++) yb[i] += (double)m[i] * (double)m[i] * bl;
  }
}

#if VF_X86
__attribute__((target("avx2,fma"))) static void dot_cols_avx2(int lrows, int i0, int cnt, const float *M, size_t ld,
                                                             const float *x, const float *xb, double *y,
                                                             double *yb) {
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
        ab = _mm256_fmadd_pd(_mm256_mul_pd(v0, v0), b0, ab);
        ab = _mm256_fmadd_pd(_mm256_mul_pd(v1, v1), b1, ab);
        ab = _mm256_fmadd_pd(_mm256_mul_pd(v2, v2), b2, ab);
        _mm256_storeu_pd(yb + i, _mm256_fmadd_pd(_mm256_mul_pd(v3, v3), b3, ab));
      }
    }
    for (; i < cnt; i++)
      for (int q = 0; q < 4; q++) {
        const double mv = (double)M[(size_t)(l + q) * ld + i0 + i];
        y[i] += mv * x[l + q];
        if (xb) yb[i] += mv * mv * xb[l + q];
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
      if (xb) _mm256_storeu_pd(yb + i, _mm256_fmadd_pd(_mm256_mul_pd(mv, mv), bv, _mm256_loadu_pd(yb + i)));
    }
    for (; i < cnt; i++) {
      y[i] += (double)m[i] * xl;
      if (xb) yb[i] += (double)m[i] * (double)m[i] * bl;
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

/* ---- the dW' check's sums with float64 weights (tempo_verify_cols_acc, tempo_verify_rows_d) ---- */

static void cols_acc_scalar(int lrows, int cols, const float *M, size_t ld, const double *x, const double *xb,
                            double *y, double *yb) {
  for (int l = 0; l < lrows; l++) {
    const float *m = M + (size_t)l * ld;
    for (int i = 0; i < cols; i++) {
      const double v = m[i];
      y[i] += v * x[l], yb[i] += v * v * xb[l];
    }
  }
}

static void rows_d_scalar(int rows, int cols, const float *M, size_t ld, const double *x, const double *xb,
                          double *y, double *yb) {
  for (int i = 0; i < rows; i++) {
    const float *m = M + (size_t)i * ld;
    double s = 0, sb = 0;
    for (int j = 0; j < cols; j++) {
      const double v = m[j];
      s += v * x[j], sb += v * v * xb[j];
    }
    y[i] = s, yb[i] = sb;
  }
}

#if VF_X86
/* Four rows of M per sweep over y, yb (a quarter of the accumulator loads and stores). */
__attribute__((target("avx2,fma"))) static void cols_acc_avx2(int lrows, int cols, const float *M, size_t ld,
                                                             const double *x, const double *xb, double *y,
                                                             double *yb) {
  const int c4 = cols & ~3;
  int l = 0;
  for (; l + 4 <= lrows; l += 4) {
    const float *m0 = M + (size_t)l * ld, *m1 = m0 + ld, *m2 = m1 + ld, *m3 = m2 + ld;
    const __m256d x0 = _mm256_set1_pd(x[l]), x1 = _mm256_set1_pd(x[l + 1]);
    const __m256d x2 = _mm256_set1_pd(x[l + 2]), x3 = _mm256_set1_pd(x[l + 3]);
    const __m256d b0 = _mm256_set1_pd(xb[l]), b1 = _mm256_set1_pd(xb[l + 1]);
    const __m256d b2 = _mm256_set1_pd(xb[l + 2]), b3 = _mm256_set1_pd(xb[l + 3]);
    int i = 0;
    for (; i < c4; i += 4) {
      const __m256d v0 = _mm256_cvtps_pd(_mm_loadu_ps(m0 + i)), v1 = _mm256_cvtps_pd(_mm_loadu_ps(m1 + i));
      const __m256d v2 = _mm256_cvtps_pd(_mm_loadu_ps(m2 + i)), v3 = _mm256_cvtps_pd(_mm_loadu_ps(m3 + i));
      __m256d acc = _mm256_loadu_pd(y + i), ab = _mm256_loadu_pd(yb + i);
      acc = _mm256_fmadd_pd(v0, x0, acc), ab = _mm256_fmadd_pd(_mm256_mul_pd(v0, v0), b0, ab);
      acc = _mm256_fmadd_pd(v1, x1, acc), ab = _mm256_fmadd_pd(_mm256_mul_pd(v1, v1), b1, ab);
      acc = _mm256_fmadd_pd(v2, x2, acc), ab = _mm256_fmadd_pd(_mm256_mul_pd(v2, v2), b2, ab);
      _mm256_storeu_pd(y + i, _mm256_fmadd_pd(v3, x3, acc));
      _mm256_storeu_pd(yb + i, _mm256_fmadd_pd(_mm256_mul_pd(v3, v3), b3, ab));
    }
    if (i < cols) cols_acc_scalar(4, cols - i, m0 + i, ld, x + l, xb + l, y + i, yb + i);
  }
  if (l < lrows) cols_acc_scalar(lrows - l, cols, M + (size_t)l * ld, ld, x + l, xb + l, y, yb);
}

__attribute__((target("avx2,fma"))) static void rows_d_avx2(int rows, int cols, const float *M, size_t ld,
                                                           const double *x, const double *xb, double *y, double *yb) {
  const int c8 = cols & ~7;
  for (int i = 0; i < rows; i++) {
    const float *m = M + (size_t)i * ld;
    __m256d s0 = _mm256_setzero_pd(), s1 = s0, b0 = s0, b1 = s0;
    int j = 0;
    for (; j < c8; j += 8) {
      const __m256 mv = _mm256_loadu_ps(m + j);
      const __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(mv)), hi = _mm256_cvtps_pd(_mm256_extractf128_ps(mv, 1));
      s0 = _mm256_fmadd_pd(lo, _mm256_loadu_pd(x + j), s0);
      s1 = _mm256_fmadd_pd(hi, _mm256_loadu_pd(x + j + 4), s1);
      b0 = _mm256_fmadd_pd(_mm256_mul_pd(lo, lo), _mm256_loadu_pd(xb + j), b0);
      b1 = _mm256_fmadd_pd(_mm256_mul_pd(hi, hi), _mm256_loadu_pd(xb + j + 4), b1);
    }
    double s = hsum(_mm256_add_pd(s0, s1)), sb = hsum(_mm256_add_pd(b0, b1));
    for (; j < cols; j++) {
      const double v = m[j];
      s += v * x[j], sb += v * v * xb[j];
    }
    y[i] = s, yb[i] = sb;
  }
}
#endif

void tempo_verify_cols_acc(int lrows, int cols, const float *M, size_t ld, const double *x, const double *xb,
                           double *y, double *yb) {
#if VF_X86
  if (vf_avx2()) {
    cols_acc_avx2(lrows, cols, M, ld, x, xb, y, yb);
    return;
  }
#endif
  cols_acc_scalar(lrows, cols, M, ld, x, xb, y, yb);
}

void tempo_verify_rows_d(int rows, int cols, const float *M, size_t ld, const double *x, const double *xb, double *y,
                         double *yb) {
#if VF_X86
  if (vf_avx2()) {
    rows_d_avx2(rows, cols, M, ld, x, xb, y, yb);
    return;
  }
#endif
  rows_d_scalar(rows, cols, M, ld, x, xb, y, yb);
}

/* ---- the acceptance bound (docs/obfuscation.md, "Verification", derives it) ----
 * Row i of a check with inner dimension k passes when, with c2 = sum_j C_ij^2 v_j^2 (the
 * reply's own values) and G = sum_l A_il^2 g_l, g = (B o B)(v o v) + rho (B v)^2:
 *   |C v - A (B v)|_i <= lam sqrt(ac c2 + aq G) + tiny.
 * permuted (the key put the inner index in a fresh random order):
 *   ac = u_acc^2 (k + 3) / 3, aq = ac + u_in^2, lam = sqrt(6) / pi L
 * order-free (identity keys, plain data in the caller's order):
 *   ac = 0, aq = u_acc^2 (k (k + 1) / 2 + 1) + u_in^2, lam = sqrt(2 L)
 * with rho aq = u_in^2 + u_m^2 (u_m = 2^-23: the master's own rounding of B v to float, with
 * room) and L = ln(2 N / p) for N = 64 total_rows (rows times rounds) and
 * p = TEMPO_VERIFY_FALSE_ALARM: one check of any honest product fails with probability at
 * most p under the rounding model the derivation states. */
typedef struct {
  double lam, ac, aq, rho;
} vbound;

static void bound_of(const tempo_verify_model *md, int k, int total_rows, vbound *b) {
  const tempo_verify_model def = {.precision = TEMPO_PRECISION_FP32, .permuted = false};
  if (!md) md = &def;
  double ua, ui;
  tempo_precision_units(md->precision, &ua, &ui);
  const double um2 = 0x1p-46, kk = (double)k;
  const double L = log(2.0 * 64.0 * (double)(total_rows > 0 ? total_rows : 1) / TEMPO_VERIFY_FALSE_ALARM);
  if (md->permuted) {
    b->ac = ua * ua * (kk + 3.0) / 3.0;
    b->aq = b->ac + ui * ui;
    b->lam = sqrt(6.0) / M_PI * L;
  } else {
    b->ac = 0;
    b->aq = ua * ua * (kk * (kk + 1.0) / 2.0 + 1.0) + ui * ui;
    b->lam = sqrt(2.0 * L);
  }
  b->rho = (ui * ui + um2) / b->aq;
}

double tempo_verify_rho(const tempo_verify_model *md, int k) {
  vbound b;
  bound_of(md, k, 1, &b);
  return b.rho;
}

/* out[i] = op(M) x and outg[i] = (op(M) o op(M)) xsq + rho out[i]^2 for all `rows` rows of
 * op(M) (rows, cols), M stored (rows, cols) or, with trans, (cols, rows); rounded to float. */
static void matvec_f(int rows, int cols, const float *M, bool trans, const float *x, const float *xsq, double rho,
                     float *out, float *outg) {
  double y[VF_BLOCK], yb[VF_BLOCK];
  for (int i0 = 0; i0 < rows; i0 += VF_BLOCK) {
    int cnt = rows - i0 < VF_BLOCK ? rows - i0 : VF_BLOCK;
    if (trans)
      dot_cols(cols, i0, cnt, M, (size_t)rows, x, xsq, y, yb);
    else
      dot_rows(cnt, cols, M + (size_t)i0 * (size_t)cols, (size_t)cols, x, xsq, y, yb);
    for (int i = 0; i < cnt; i++) {
      out[i0 + i] = (float)y[i];
      outg[i0 + i] = (float)((yb[i] + rho * y[i] * y[i]) * (1.0 + 0x1p-22));
    }
  }
}

tempo_status tempo_verify_product_model(int r, int k, int c, const float *A, bool a_trans, const float *B,
                                        bool b_trans, const float *C, const float *col_weight,
                                        const tempo_verify_model *md, int rounds, uint64_t rng_seed, float *work) {
  if (r < 1 || k < 1 || c < 1 || rounds < 1 || !A || !B || !C || !work)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "tempo_verify_product: bad arguments (%d, %d, %d, rounds %d)",
                           r, k, c, rounds);
  if (col_weight)
    for (int j = 0; j < c; j++)
      if (!(col_weight[j] > 0.0f) || !isfinite(col_weight[j]))
        return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "tempo_verify_product: column weight %d is not positive",
                               j);
  const double rho = tempo_verify_rho(md, k);
  float *v = work, *vsq = v + c, *w = vsq + c, *wg = w + k; /* 2c + 2k <= 3 (r + k + c) */
  for (int round = 0; round < rounds; round++) {
    const float vmax = tempo_verify_vector(rng_seed, round, c, col_weight, v, vsq);
    /* w = op(B) v with op(B) (k, c): B stored (k, c), or (c, k) with b_trans. */
    matvec_f(k, c, B, b_trans, v, vsq, rho, w, wg);
    double y2[VF_BLOCK], yg[VF_BLOCK];
    for (int i0 = 0; i0 < r; i0 += VF_BLOCK) {
      int cnt = r - i0 < VF_BLOCK ? r - i0 : VF_BLOCK;
      if (a_trans)
        dot_cols(k, i0, cnt, A, (size_t)r, w, wg, y2, yg);
      else
        dot_rows(cnt, k, A + (size_t)i0 * (size_t)k, (size_t)k, w, wg, y2, yg);
      tempo_status st = tempo_verify_rows(cnt, k, c, C + (size_t)i0 * (size_t)c, v, vsq, vmax, y2, yg, md, i0, r, round);
      if (st) return st;
    }
  }
  return TEMPO_STATUS_OK;
}

tempo_status tempo_verify_product_weighted(int r, int k, int c, const float *A, bool a_trans, const float *B,
                                           bool b_trans, const float *C, const float *col_weight, int rounds,
                                           uint64_t rng_seed, float *work) {
  /* column weights are given exactly for blinded products (obf.h): their inner index is permuted */
  const tempo_verify_model md = {.precision = TEMPO_PRECISION_FP32, .permuted = col_weight != NULL};
  return tempo_verify_product_model(r, k, c, A, a_trans, B, b_trans, C, col_weight, &md, rounds, rng_seed, work);
}

float tempo_verify_vector(uint64_t rng_seed, int round, int c, const float *col_weight, float *v, float *vsq) {
  tempo_rng rng;
  tempo_rng_seed(&rng, rng_seed, 0x74656d706f766600ULL + (uint64_t)round);
  float vmax = 0;
  for (int j = 0; j < c; j++) {
    uint64_t x = tempo_rng_u64(&rng);
    float mag = 0.5f + 0.5f * (float)((double)(x >> 40) * 0x1p-24); /* [0.5, 1) */
    if (col_weight) mag *= col_weight[j];
    v[j] = (x & 1) ? -mag : mag;
    vsq[j] = (float)((double)mag * (double)mag * (1.0 + 0x1p-23)); /* rounded up */
    if (mag > vmax) vmax = mag;
  }
  return vmax;
}

void tempo_verify_matvec(int rows, int cols, const float *M, bool trans, const float *x, const float *xsq,
                         const tempo_verify_model *md, float *out, float *outg) {
  matvec_f(rows, cols, M, trans, x, xsq, tempo_verify_rho(md, rows), out, outg);
}

/* The honest-ratio recorder (obf_internal.h): off unless a measurement turns it on. */
static int vf_record, vf_class;
static tempo_verify_ratio_fn vf_record_fn;
static void *vf_record_ctx;
void tempo_verify_set_class(int cls) { __atomic_store_n(&vf_class, cls, __ATOMIC_RELAXED); }
void tempo_verify_record(tempo_verify_ratio_fn fn, void *ctx) {
  vf_record_fn = fn, vf_record_ctx = ctx;
  __atomic_store_n(&vf_record, fn ? 1 : 0, __ATOMIC_RELEASE);
}

/* Entries [0, cnt) of a check (rows, or columns of a left check): |y1 - y2| <= lam sqrt(ac c2
 * + aq G) + tiny for each, y1 and the bound finite. */
static tempo_status compare(int cnt, const double *y1, const double *c2, const double *y2, const double *G,
                            const vbound *b, double tiny, int row0, int total_rows, int k, int c, int round,
                            bool left) {
  double worst = 0;
  for (int i = 0; i < cnt; i++) {
    if (!isfinite(y1[i]))
      return tempo_set_error(TEMPO_STATUS_VERIFY_FAILED, "product check: non-finite value in result %s %d of (%d, %d)",
                             left ? "column" : "row", row0 + i, total_rows, c);
    const double diff = fabs(y1[i] - y2[i]), tol = b->lam * sqrt(b->ac * c2[i] + b->aq * G[i]) + tiny;
    if (!isfinite(tol))
      return tempo_set_error(TEMPO_STATUS_VERIFY_FAILED,
                             "product check: the bound of %s %d of (%d, %d) is not finite (operands beyond float range)",
                             left ? "column" : "row", row0 + i, total_rows, c);
    if (!(diff <= tol)) {
      if (__atomic_load_n(&vf_record, __ATOMIC_ACQUIRE) && vf_record_fn)
        vf_record_fn(vf_record_ctx, __atomic_load_n(&vf_class, __ATOMIC_RELAXED), k, left ? total_rows : c, diff / tol);
      return tempo_set_error(TEMPO_STATUS_VERIFY_FAILED,
                             left ? "product check failed: column %d of %d (inner %d, %d rows), round %d: |r^T C - (r^T A) B| = %.3g > %.3g"
                                  : "product check failed: row %d of (%d, %d) x (%d), round %d: |Cv - A(Bv)| = %.3g > %.3g",
                             row0 + i, total_rows, left ? k : c, left ? c : k, round, diff, tol);
    }
    if (diff > worst * tol) worst = diff / tol;
  }
  if (__atomic_load_n(&vf_record, __ATOMIC_ACQUIRE) && vf_record_fn) vf_record_fn(vf_record_ctx, __atomic_load_n(&vf_class, __ATOMIC_RELAXED), k, left ? total_rows : c, worst);
  return TEMPO_STATUS_OK;
}

tempo_status tempo_verify_rows(int rows, int k, int c, const float *C, const float *v, const float *vsq, float vmax,
                               const double *y2, const double *G, const tempo_verify_model *md, int row0,
                               int total_rows, int round) {
  vbound b;
  bound_of(md, k, total_rows, &b);
  const double tiny = (double)k * (double)c * (double)vmax * 0x1p-126;
  double y1[VF_BLOCK], c2[VF_BLOCK];
  for (int i0 = 0; i0 < rows; i0 += VF_BLOCK) {
    const int cnt = rows - i0 < VF_BLOCK ? rows - i0 : VF_BLOCK;
    dot_rows(cnt, c, C + (size_t)i0 * (size_t)c, (size_t)c, v, vsq, y1, c2);
    tempo_status st = compare(cnt, y1, c2, y2 + i0, G + i0, &b, tiny, row0 + i0, total_rows, k, c, round, false);
    if (st) return st;
  }
  return TEMPO_STATUS_OK;
}

tempo_status tempo_verify_product(int r, int k, int c, const float *A, bool a_trans, const float *B, bool b_trans,
                                  const float *C, int rounds, uint64_t rng_seed, float *work) {
  return tempo_verify_product_model(r, k, c, A, a_trans, B, b_trans, C, NULL, NULL, rounds, rng_seed, work);
}

/* The left check's bound (docs/obfuscation.md, "Verification", the dW' check): a dW' of k rows
 * from `parts` chain partials, each accumulated as precision.h asks (chunks of at most
 * L = TEMPO_DW_CHUNK_ROWS rows added to a running sum). Past 2L rows, permuted, the partial sums
 * are those of the chunks (sizes 1..L, k / L times) and of the running sums (sizes 2L, 3L, .., k,
 * plus `parts` more for the chain and a last short chunk), each of E[s^2] = (M/k)^2 S^2 +
 * M (k - M) / (k - 1) T / k over the key's random order, so
 *   ac = u^2 [(k/L) sum_m<=L (m/k)^2 + sum_j (min(jL, k)/k)^2 + parts]
 *   aq = u^2 [(k/L) sum_m<=L m (k-m)/(k (k-1)) + sum_j h(min(jL, k)) + parts k/(4 (k-1)) + 1] + u_in^2
 * with h(M) = M'(k - M')/(k (k-1)), M' = min(M, k/2), and lam = sqrt(8)/pi L (the running sums
 * start from zero in every chunk: a random walk's tail, exp(-pi^2 z / 16)). Otherwise (up to 2L
 * rows, or identity keys): bound_of, the sequential chain. */
static void left_bound_of(const tempo_verify_model *md, int k, int parts, int cols, vbound *b) {
  bound_of(md, k, cols, b);
  if (!md || !md->permuted || k <= 2 * TEMPO_DW_CHUNK_ROWS) return;
  double ua, ui;
  tempo_precision_units(md->precision, &ua, &ui);
  const double kk = (double)k, L = TEMPO_DW_CHUNK_ROWS, w = parts > 1 ? (double)parts : 1.0;
  double as = 0, at = 0;
  for (int m = 1; m <= TEMPO_DW_CHUNK_ROWS; m++) as += (m / kk) * (m / kk), at += m * (kk - m) / (kk * (kk - 1.0));
  as *= kk / L, at *= kk / L;
  for (long j = 2; (j - 1) * TEMPO_DW_CHUNK_ROWS < k; j++) {
    const double M = fmin((double)j * L, kk), Mh = fmin(M, kk / 2);
    as += (M / kk) * (M / kk), at += Mh * (kk - Mh) / (kk * (kk - 1.0));
  }
  as += w, at += w * kk / (4.0 * (kk - 1.0)) + 1.0;
  b->ac = ua * ua * as;
  b->aq = ua * ua * at + ui * ui;
  b->lam = sqrt(8.0) / M_PI * log(2.0 * 64.0 * (double)(cols > 0 ? cols : 1) / TEMPO_VERIFY_FALSE_ALARM);
  b->rho = (ui * ui + 0x1p-46) / b->aq;
}

double tempo_verify_left_rho(const tempo_verify_model *md, int k, int parts) {
  vbound b;
  left_bound_of(md, k, parts, 1, &b);
  return b.rho;
}

tempo_status tempo_verify_left(int k, int parts, int len, int c, const double *g, const double *g2, const double *h,
                               const double *G, float rmax, const tempo_verify_model *md, int round) {
  vbound b;
  left_bound_of(md, k, parts, c, &b);
  const double tiny = (double)k * (double)len * (double)rmax * 0x1p-126;
  return compare(c, g, g2, h, G, &b, tiny, 0, c, k, len, round, true);
}

tempo_status tempo_verify_rows_a(int rows, int k, int c, const float *A, const float *w, const float *wg,
                                 const double *y1, const double *c2, float vmax, const tempo_verify_model *md,
                                 int row0, int total_rows, int round) {
  vbound b;
  bound_of(md, k, total_rows, &b);
  const double tiny = (double)k * (double)c * (double)vmax * 0x1p-126;
  double y2[VF_BLOCK], yg[VF_BLOCK];
  for (int i0 = 0; i0 < rows; i0 += VF_BLOCK) {
    const int cnt = rows - i0 < VF_BLOCK ? rows - i0 : VF_BLOCK;
    dot_rows(cnt, k, A + (size_t)i0 * (size_t)k, (size_t)k, w, wg, y2, yg);
    tempo_status st = compare(cnt, y1 + i0, c2 + i0, y2, yg, &b, tiny, row0 + i0, total_rows, k, c, round, false);
    if (st) return st;
  }
  return TEMPO_STATUS_OK;
}
