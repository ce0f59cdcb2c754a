/* dots.c - the float64 kernels of shield's master passes and checks (dots.h). */
#include "dots.h"

#include <math.h>
#include <stdbool.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define DOTS_X86 1
#endif

static double dot_c(const double *a, const double *b, int n) {
  double s[4] = {0, 0, 0, 0};
  int j = 0;
  for (; j + 4 <= n; j += 4)
    for (int q = 0; q < 4; q++) s[q] += a[j + q] * b[j + q];
  for (; j < n; j++) s[0] += a[j] * b[j];
  return (s[0] + s[1]) + (s[2] + s[3]);
}

static void dot2_c(const double *row, int n, const double *x, const double *xb, double *ys, double *yb) {
  double s[4] = {0, 0, 0, 0}, b[4] = {0, 0, 0, 0};
  int j = 0;
  for (; j + 4 <= n; j += 4)
    for (int q = 0; q < 4; q++) s[q] += row[j + q] * x[j + q], b[q] += fabs(row[j + q]) * xb[j + q];
  for (; j < n; j++) s[0] += row[j] * x[j], b[0] += fabs(row[j]) * xb[j];
  *ys = (s[0] + s[1]) + (s[2] + s[3]);
  *yb = (b[0] + b[1]) + (b[2] + b[3]);
}

static void axpy2_c(int n, const double *m, double a, double ab, double *y, double *yb) {
  for (int i = 0; i < n; i++) y[i] += a * m[i], yb[i] += ab * fabs(m[i]);
}

static void axpy_c(int n, double a, const double *x, double *y) {
  for (int i = 0; i < n; i++) y[i] += a * x[i];
}

static double sumsq_c(const float *x, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
  return s;
}

static void combine4_dots_c(const double *a, const double *b, const double *c, const double *d, const double *sg,
                            int n, const double *x, int rounds, float *out, double (*y1)[4]) {
  const double *row[4] = {a, b, c, d};
  for (int j = 0; j < n; j++) out[j] = (float)(((sg[0] * a[j] + sg[1] * b[j]) + sg[2] * c[j]) + sg[3] * d[j]);
  for (int q = 0; q < rounds; q++)
    for (int r = 0; r < 4; r++) y1[q][r] = dot_c(row[r], x + (size_t)q * n, n);
}

#if DOTS_X86
#define AVX2 __attribute__((target("avx2,fma")))
AVX2 static double hsum(__m256d a) {
  __m128d s = _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
  return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

AVX2 static __m256d absv(__m256d x) {
  return _mm256_and_pd(x, _mm256_castsi256_pd(_mm256_set1_epi64x(0x7fffffffffffffffLL)));
}

AVX2 static double dot_avx2(const double *a, const double *b, int n) {
  __m256d s0 = _mm256_setzero_pd(), s1 = s0, s2 = s0, s3 = s0;
  int j = 0;
  for (; j + 16 <= n; j += 16) {
    s0 = _mm256_fmadd_pd(_mm256_loadu_pd(a + j), _mm256_loadu_pd(b + j), s0);
    s1 = _mm256_fmadd_pd(_mm256_loadu_pd(a + j + 4), _mm256_loadu_pd(b + j + 4), s1);
    s2 = _mm256_fmadd_pd(_mm256_loadu_pd(a + j + 8), _mm256_loadu_pd(b + j + 8), s2);
    s3 = _mm256_fmadd_pd(_mm256_loadu_pd(a + j + 12), _mm256_loadu_pd(b + j + 12), s3);
  }
  for (; j + 4 <= n; j += 4) s0 = _mm256_fmadd_pd(_mm256_loadu_pd(a + j), _mm256_loadu_pd(b + j), s0);
  double s = hsum(_mm256_add_pd(_mm256_add_pd(s0, s1), _mm256_add_pd(s2, s3)));
  for (; j < n; j++) s += a[j] * b[j];
  return s;
}

AVX2 static void dot2_avx2(const double *row, int n, const double *x, const double *xb, double *ys, double *yb) {
  __m256d s0 = _mm256_setzero_pd(), s1 = s0, b0 = s0, b1 = s0;
  int j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m256d r0 = _mm256_loadu_pd(row + j), r1 = _mm256_loadu_pd(row + j + 4);
    s0 = _mm256_fmadd_pd(r0, _mm256_loadu_pd(x + j), s0);
    s1 = _mm256_fmadd_pd(r1, _mm256_loadu_pd(x + j + 4), s1);
    b0 = _mm256_fmadd_pd(absv(r0), _mm256_loadu_pd(xb + j), b0);
    b1 = _mm256_fmadd_pd(absv(r1), _mm256_loadu_pd(xb + j + 4), b1);
  }
  double s = hsum(_mm256_add_pd(s0, s1)), b = hsum(_mm256_add_pd(b0, b1));
  for (; j < n; j++) s += row[j] * x[j], b += fabs(row[j]) * xb[j];
  *ys = s, *yb = b;
}

AVX2 static void axpy2_avx2(int n, const double *m, double a, double ab, double *y, double *yb) {
  const __m256d va = _mm256_set1_pd(a), vb = _mm256_set1_pd(ab);
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    const __m256d x = _mm256_loadu_pd(m + i);
    _mm256_storeu_pd(y + i, _mm256_fmadd_pd(va, x, _mm256_loadu_pd(y + i)));
    _mm256_storeu_pd(yb + i, _mm256_fmadd_pd(vb, absv(x), _mm256_loadu_pd(yb + i)));
  }
  for (; i < n; i++) y[i] += a * m[i], yb[i] += ab * fabs(m[i]);
}

AVX2 static void axpy_avx2(int n, double a, const double *x, double *y) {
  const __m256d va = _mm256_set1_pd(a);
  int i = 0;
  for (; i + 4 <= n; i += 4) _mm256_storeu_pd(y + i, _mm256_fmadd_pd(va, _mm256_loadu_pd(x + i), _mm256_loadu_pd(y + i)));
  for (; i < n; i++) y[i] += a * x[i];
}

AVX2 static double sumsq_avx2(const float *x, size_t n) {
  __m256d s0 = _mm256_setzero_pd(), s1 = s0, s2 = s0, s3 = s0;
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256d a = _mm256_cvtps_pd(_mm_loadu_ps(x + i)), b = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4));
    const __m256d c = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 8)), d = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 12));
    s0 = _mm256_fmadd_pd(a, a, s0), s1 = _mm256_fmadd_pd(b, b, s1);
    s2 = _mm256_fmadd_pd(c, c, s2), s3 = _mm256_fmadd_pd(d, d, s3);
  }
  double s = hsum(_mm256_add_pd(_mm256_add_pd(s0, s1), _mm256_add_pd(s2, s3)));
  for (; i < n; i++) s += (double)x[i] * x[i];
  return s;
}

AVX2 static void combine4_dots_avx2(const double *a, const double *b, const double *c, const double *d,
                                    const double *sg, int n, const double *x, int rounds, float *out,
                                    double (*y1)[4]) {
  const __m256d g0 = _mm256_set1_pd(sg[0]), g1 = _mm256_set1_pd(sg[1]), g2 = _mm256_set1_pd(sg[2]),
                g3 = _mm256_set1_pd(sg[3]);
  __m256d acc[2][4];
  for (int q = 0; q < 2; q++)
    for (int r = 0; r < 4; r++) acc[q][r] = _mm256_setzero_pd();
  const double *x1 = rounds > 1 ? x + n : x; /* rounds 0: the sum only (x unused) */
  int j = 0;
  for (; j + 4 <= n; j += 4) {
    const __m256d va = _mm256_loadu_pd(a + j), vb = _mm256_loadu_pd(b + j), vc = _mm256_loadu_pd(c + j),
                  vd = _mm256_loadu_pd(d + j);
    __m256d t = _mm256_add_pd(_mm256_mul_pd(g0, va), _mm256_mul_pd(g1, vb));
    t = _mm256_add_pd(_mm256_add_pd(t, _mm256_mul_pd(g2, vc)), _mm256_mul_pd(g3, vd));
    _mm_storeu_ps(out + j, _mm256_cvtpd_ps(t));
    if (rounds < 1) continue;
    const __m256d x0 = _mm256_loadu_pd(x + j);
    acc[0][0] = _mm256_fmadd_pd(va, x0, acc[0][0]), acc[0][1] = _mm256_fmadd_pd(vb, x0, acc[0][1]);
    acc[0][2] = _mm256_fmadd_pd(vc, x0, acc[0][2]), acc[0][3] = _mm256_fmadd_pd(vd, x0, acc[0][3]);
    if (rounds > 1) {
      const __m256d xq = _mm256_loadu_pd(x1 + j);
      acc[1][0] = _mm256_fmadd_pd(va, xq, acc[1][0]), acc[1][1] = _mm256_fmadd_pd(vb, xq, acc[1][1]);
      acc[1][2] = _mm256_fmadd_pd(vc, xq, acc[1][2]), acc[1][3] = _mm256_fmadd_pd(vd, xq, acc[1][3]);
    }
  }
  const double *row[4] = {a, b, c, d};
  for (int q = 0; q < rounds; q++)
    for (int r = 0; r < 4; r++) {
      double s = hsum(acc[q][r]);
      for (int k = j; k < n; k++) s += row[r][k] * (q ? x1 : x)[k];
      y1[q][r] = s;
    }
  for (; j < n; j++) out[j] = (float)(((sg[0] * a[j] + sg[1] * b[j]) + sg[2] * c[j]) + sg[3] * d[j]);
}

static bool have_avx2(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#define PICK(vec, c) (have_avx2() ? (vec) : (c))
#else
#define PICK(vec, c) (c)
#endif

double tempo_shield_dot(const double *a, const double *b, int n) { return PICK(dot_avx2, dot_c)(a, b, n); }

void tempo_shield_dot2(const double *row, int n, const double *x, const double *xb, double *ys, double *yb) {
  PICK(dot2_avx2, dot2_c)(row, n, x, xb, ys, yb);
}

void tempo_shield_axpy2(int n, const double *m, double a, double ab, double *y, double *yb) {
  PICK(axpy2_avx2, axpy2_c)(n, m, a, ab, y, yb);
}

void tempo_shield_axpy(int n, double a, const double *x, double *y) { PICK(axpy_avx2, axpy_c)(n, a, x, y); }

double tempo_shield_sumsq(const float *x, size_t n) { return PICK(sumsq_avx2, sumsq_c)(x, n); }

void tempo_shield_combine4_dots(const double *a, const double *b, const double *c, const double *d, const double *sg,
                                int n, const double *x, int rounds, float *out, double (*y1)[4]) {
  PICK(combine4_dots_avx2, combine4_dots_c)(a, b, c, d, sg, n, x, rounds, out, y1);
}
