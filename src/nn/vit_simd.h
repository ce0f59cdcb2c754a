/* vit_simd.h - private 8-float vector helpers (GCC vector extensions) for the element-wise
 * passes of the transformer layers: loads/stores, horizontal sums, and branch-free exp and
 * erf. The build uses -O2 without -march, so the hot functions carry
 * TEMPO_VIT_CLONES: GCC compiles them twice (AVX2, and baseline x86-64,
 * where one 8-wide operation becomes two SSE ones) and picks one at load time.
 *
 * Accuracy, measured against double precision over [-10, 10] in steps of 1e-4:
 *   vexp: Cephes' expf polynomial, relative error < 1e-7; inputs below -87.3 give exactly 0;
 *   verf: Eigen's rational approximation on [-4, 4] (+-1 outside), absolute error < 5e-7.
 * test_vit_layers checks GELU and softmax built on them against double references.
 * GCC prints one "ABI ... changed in GCC 4.6" note per file that includes this header (the
 * baseline clone passes 32-byte vectors between always-inlined helpers; no call is real);
 * it is a note, not a warning, and #pragma cannot silence it. */
#ifndef TEMPO_NN_VIT_SIMD_H
#define TEMPO_NN_VIT_SIMD_H

#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define TEMPO_VIT_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define TEMPO_VIT_CLONES
#endif
#define VS_INLINE static inline __attribute__((always_inline))
/* The helpers are always inlined, so passing 32-byte vectors by value never crosses an ABI. */
#pragma GCC diagnostic ignored "-Wpsabi"

typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

VS_INLINE v8f vload(const float *p) {
  v8f v;
  memcpy(&v, p, sizeof v);
  return v;
}
VS_INLINE void vstore(float *p, v8f v) { memcpy(p, &v, sizeof v); }
VS_INLINE v8f vset(float x) { return (v8f){x, x, x, x, x, x, x, x}; }
/* The first k (< 8) values of p, the rest `fill`. */
/* Element loops, not memcpy: a variable-length memcpy is a library call per row tail. */
VS_INLINE v8f vload_part(const float *p, int k, float fill) {
  float t[8];
  for (int i = 0; i < 8; i++) t[i] = i < k ? p[i] : fill;
  return vload(t);
}
VS_INLINE void vstore_part(float *p, v8f v, int k) {
  float t[8];
  vstore(t, v);
  for (int i = 0; i < k; i++) p[i] = t[i];
}
VS_INLINE float vsum(v8f v) { return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7])); }
/* mask ? a : b per lane (mask lanes are all ones or all zeros, as comparisons give). */
VS_INLINE v8f vselect(v8i mask, v8f a, v8f b) {
  v8i ai, bi;
  memcpy(&ai, &a, sizeof ai);
  memcpy(&bi, &b, sizeof bi);
  const v8i r = (mask & ai) | (~mask & bi);
  v8f out;
  memcpy(&out, &r, sizeof out);
  return out;
}
VS_INLINE v8f vmax(v8f a, v8f b) { return vselect(a > b, a, b); }
VS_INLINE v8f vmin(v8f a, v8f b) { return vselect(a < b, a, b); }
VS_INLINE float vhmax(v8f v) {
  float m = v[0];
  for (int i = 1; i < 8; i++) m = v[i] > m ? v[i] : m;
  return m;
}

/* e^x; x < -87.3 gives 0, x > 88.3 saturates at e^88.3. */
VS_INLINE v8f vexp(v8f x) {
  const v8i under = x < vset(-87.3f);
  x = vmin(vmax(x, vset(-87.3f)), vset(88.3f));
  /* n = round(x / ln 2) by the 1.5 * 2^23 trick; r = x - n ln 2 in two parts */
  const v8f n = (x * vset(1.44269504088896341f) + vset(12582912.0f)) - vset(12582912.0f);
  const v8f r = (x - n * vset(0.693359375f)) - n * vset(-2.12194440e-4f);
  v8f p = vset(1.9875691500e-4f);
  p = p * r + vset(1.3981999507e-3f);
  p = p * r + vset(8.3334519073e-3f);
  p = p * r + vset(4.1665795894e-2f);
  p = p * r + vset(1.6666665459e-1f);
  p = p * r + vset(5.0000001201e-1f);
  p = p * (r * r) + r + vset(1.0f);
  const v8i bits = (__builtin_convertvector(n, v8i) + 127) << 23;
  v8f scale;
  memcpy(&scale, &bits, sizeof scale);
  return vselect(under, vset(0.0f), p * scale);
}

/* erf(x), Eigen's generic_fast_erf_float: an odd over an even polynomial on [-4, 4]. */
VS_INLINE v8f verf(v8f x) {
  x = vmin(vmax(x, vset(-4.0f)), vset(4.0f));
  const v8f x2 = x * x;
  v8f p = x2 * vset(-2.72614225801306e-10f) + vset(2.77068142495902e-08f);
  p = x2 * p + vset(-2.10102402082508e-06f);
  p = x2 * p + vset(-5.69250639462346e-05f);
  p = x2 * p + vset(-7.34990630326855e-04f);
  p = x2 * p + vset(-2.95459980854025e-03f);
  p = x2 * p + vset(-1.60960333262415e-02f);
  p = x * p;
  v8f q = x2 * vset(-1.45660718464996e-05f) + vset(-2.13374055278905e-04f);
  q = x2 * q + vset(-1.68282697438203e-03f);
  q = x2 * q + vset(-7.37332916720468e-03f);
  q = x2 * q + vset(-1.42647390514189e-02f);
  return p / q;
}

#endif
