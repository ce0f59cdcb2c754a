/* mix512.c - the b = 4 passes of mix.c with AVX-512F: 16 columns (four 4x4 tiles side by
 * side) per register, the key's diagonal scales folded into the mixing coefficients.
 *
 * Per pass, the right mixing blocks are laid out for 16-column groups with the column scales
 * folded in (prep_right: Enc R S_c, Dec S_c R); per block of 4 rows the left block gets the
 * row scales (Enc S_r L, Dec L S_r). A 4x4 tile's right product is then 4 in-lane broadcasts
 * (vpermilps) and 4 FMAs per 16 elements, the left product 4 broadcast FMAs per 16 elements,
 * and no separate scaling: about 3x fewer instructions than the 128-bit tiles. The row fetch
 * (enc_row, fetch16) and row store points (store_row16, scatter_rows, scatter_regs16) are small
 * functions of their own. Same results as the portable loops to float rounding
 * (tests/test_mix.c runs every kernel). */
#include <stdint.h>

#include "obf/obf_internal.h"
#include "tempo/common.h"
#include "tempo/obf.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define T512 __attribute__((target("avx512f")))
#define T512_INLINE __attribute__((target("avx512f"), always_inline)) static inline

/* Rows ahead whose lines a pass prefetches: Enc its random input rows (four blocks ahead into
 * L2; two blocks ahead into L1 was 2x slower on 65536 x 144), Dec its random output rows (for
 * writing). */
#define MIX_IN_AHEAD 16
#define MIX_DST_AHEAD 8

/* Rg: per 16-column group G, 4 vectors k of 16 floats, lane 4t + c = R[4G + t][k][c] times the
 * column scale (enc: of column 16G + 4t + c, after R; dec: of row 16G + 4t + k, before R);
 * lanes past cols are zero. R: (cols / 4, 4, 4), cols % 4 == 0. */
static void prep_right(const float *R, const float *cs, int cols, bool enc, float *Rg) {
  const int ng = (cols + 15) / 16;
  for (int G = 0; G < ng; G++)
    for (int k = 0; k < 4; k++)
      for (int l = 0; l < 16; l++) {
        const int j0 = 16 * G + 4 * (l / 4), c = l % 4;
        float v = 0;
        if (j0 < cols) v = R[(size_t)j0 * 4 + k * 4 + c] * (enc ? cs[j0 + c] : cs[j0 + k]);
        Rg[((size_t)G * 4 + k) * 16 + l] = v;
      }
}

/* t = g R within each 128-bit lane (a 4x4 tile per lane): t_c = sum_k g_k R_k[c]. */
T512_INLINE __m512 right16(__m512 g, const __m512 R[4]) {
  __m512 t = _mm512_mul_ps(_mm512_permute_ps(g, 0x00), R[0]);
  t = _mm512_fmadd_ps(_mm512_permute_ps(g, 0x55), R[1], t);
  t = _mm512_fmadd_ps(_mm512_permute_ps(g, 0xAA), R[2], t);
  return _mm512_fmadd_ps(_mm512_permute_ps(g, 0xFF), R[3], t);
}

/* Row fetch (Enc): s[c[l]] for the n <= 16 lanes l < n (others zero), by scalar loads
 * (vgatherdps was 2x slower here). */
T512_INLINE __m512 fetch16(const float *s, const uint32_t *c, int n) {
  if (n < 16) {
    float t[16] = {0};
    for (int l = 0; l < n; l++) t[l] = s[c[l]];
    return _mm512_loadu_ps(t);
  }
  const __m128 a = _mm_setr_ps(s[c[0]], s[c[1]], s[c[2]], s[c[3]]);
  const __m128 b = _mm_setr_ps(s[c[4]], s[c[5]], s[c[6]], s[c[7]]);
  const __m128 d = _mm_setr_ps(s[c[8]], s[c[9]], s[c[10]], s[c[11]]);
  const __m128 e = _mm_setr_ps(s[c[12]], s[c[13]], s[c[14]], s[c[15]]);
  __m512 v = _mm512_castps128_ps512(a);
  v = _mm512_insertf32x4(v, b, 1);
  v = _mm512_insertf32x4(v, d, 2);
  return _mm512_insertf32x4(v, e, 3);
}

/* Row store: the lanes in m of v to o (+ the old values with acc), or streamed past the
 * caches (nt: all 16 lanes, o 64-byte aligned, no acc). */
T512_INLINE void store_row16(float *o, __m512 v, __mmask16 m, bool acc, bool nt) {
  if (nt) {
    _mm512_stream_ps(o, v);
    return;
  }
  if (acc) v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, o), v);
  _mm512_mask_storeu_ps(o, m, v);
}

/* The lanes in m (of 8) from p, others zero (AVX-512F only: a masked 512-bit load). */
T512_INLINE __m256 load8(__mmask8 m, const float *p) {
  return _mm512_castps512_ps256(_mm512_maskz_loadu_ps((__mmask16)m, p));
}

/* The check dots of one row (mix.c dots_row): ND (a compile-time constant) at once, so the
 * row is widened to double once; WB: double bound weights (else float fb). Named registers
 * and pointers: arrays indexed in the loop went through the stack. */
T512_INLINE void dots_nd(const tempo_obf_mix_dots *d, const float *row, int cols, size_t idx, const int ND,
                         const bool WB) {
  const double *w0 = d->w[0], *w1 = ND > 1 ? d->w[1] : w0, *w2 = ND > 2 ? d->w[2] : w0, *w3 = ND > 3 ? d->w[3] : w0;
  const double *b0 = WB ? d->wb[0] : NULL, *b1 = WB && ND > 1 ? d->wb[1] : b0, *b2 = WB && ND > 2 ? d->wb[2] : b0,
               *b3 = WB && ND > 3 ? d->wb[3] : b0;
  const float *f0 = WB ? NULL : d->fb[0], *f1 = !WB && ND > 1 ? d->fb[1] : f0, *f2 = !WB && ND > 2 ? d->fb[2] : f0,
              *f3 = !WB && ND > 3 ? d->fb[3] : f0;
  __m512d y0 = _mm512_setzero_pd(), y1 = y0, y2 = y0, y3 = y0, z0 = y0, z1 = y0, z2 = y0, z3 = y0;
#define MIX_DOT(q, y, z, w, b, f)                                                                                      \
  if (ND > q) {                                                                                                        \
    y = _mm512_fmadd_pd(x, _mm512_maskz_loadu_pd(m, w + j), y);                                                       \
    z = _mm512_fmadd_pd(x2, WB ? _mm512_maskz_loadu_pd(m, b + j) : _mm512_cvtps_pd(load8(m, f + j)), z);            \
  }
  for (int j = 0; j < cols; j += 8) {
    const __mmask8 m = (__mmask8)(cols - j >= 8 ? 0xff : (1u << (cols - j)) - 1u);
    const __m512d x = _mm512_cvtps_pd(load8(m, row + j)), x2 = _mm512_mul_pd(x, x);
    MIX_DOT(0, y0, z0, w0, b0, f0)
    MIX_DOT(1, y1, z1, w1, b1, f1)
    MIX_DOT(2, y2, z2, w2, b2, f2)
    MIX_DOT(3, y3, z3, w3, b3, f3)
  }
#undef MIX_DOT
  d->y[0][idx] = _mm512_reduce_add_pd(y0), d->yb[0][idx] = _mm512_reduce_add_pd(z0);
  if (ND > 1) d->y[1][idx] = _mm512_reduce_add_pd(y1), d->yb[1][idx] = _mm512_reduce_add_pd(z1);
  if (ND > 2) d->y[2][idx] = _mm512_reduce_add_pd(y2), d->yb[2][idx] = _mm512_reduce_add_pd(z2);
  if (ND > 3) d->y[3][idx] = _mm512_reduce_add_pd(y3), d->yb[3][idx] = _mm512_reduce_add_pd(z3);
}

/* The check dots of 4 rows (stride cols) at once, for ND <= 2: each weight vector is loaded
 * once for the 4 rows, and the 4 ND accumulator pairs are independent chains, so neither the
 * loads nor the FMA latency bound the loop (per row, 2 ND chains of one FMA per 8 columns
 * waited on the FMA's latency). Per row and dot the same lanes, the same order and the same
 * reduction as dots_nd: bit for bit its results. */
T512_INLINE void dots4_nd(const tempo_obf_mix_dots *d, const float *row, int cols, size_t idx, const int ND,
                          const bool WB) {
  const double *w0 = d->w[0], *w1 = ND > 1 ? d->w[1] : w0;
  const double *b0 = WB ? d->wb[0] : NULL, *b1 = WB && ND > 1 ? d->wb[1] : b0;
  const float *f0 = WB ? NULL : d->fb[0], *f1 = !WB && ND > 1 ? d->fb[1] : f0;
  const float *r0 = row, *r1 = row + cols, *r2 = row + 2 * (size_t)cols, *r3 = row + 3 * (size_t)cols;
  const __m512d zero = _mm512_setzero_pd();
  __m512d y00 = zero, z00 = zero, y01 = zero, z01 = zero, y10 = zero, z10 = zero, y11 = zero, z11 = zero;
  __m512d y20 = zero, z20 = zero, y21 = zero, z21 = zero, y30 = zero, z30 = zero, y31 = zero, z31 = zero;
#define MIX_DOT4(src, ya, za, yb, zb)                                                                                  \
  {                                                                                                                    \
    const __m512d x = _mm512_cvtps_pd(load8(m, src + j)), x2 = _mm512_mul_pd(x, x);                                   \
    ya = _mm512_fmadd_pd(x, wv0, ya), za = _mm512_fmadd_pd(x2, bv0, za);                                              \
    if (ND > 1) yb = _mm512_fmadd_pd(x, wv1, yb), zb = _mm512_fmadd_pd(x2, bv1, zb);                                  \
  }
  for (int j = 0; j < cols; j += 8) {
    const __mmask8 m = (__mmask8)(cols - j >= 8 ? 0xff : (1u << (cols - j)) - 1u);
    const __m512d wv0 = _mm512_maskz_loadu_pd(m, w0 + j);
    const __m512d bv0 = WB ? _mm512_maskz_loadu_pd(m, b0 + j) : _mm512_cvtps_pd(load8(m, f0 + j));
    const __m512d wv1 = ND > 1 ? _mm512_maskz_loadu_pd(m, w1 + j) : zero;
    const __m512d bv1 = ND < 2 ? zero : WB ? _mm512_maskz_loadu_pd(m, b1 + j) : _mm512_cvtps_pd(load8(m, f1 + j));
    MIX_DOT4(r0, y00, z00, y01, z01)
    MIX_DOT4(r1, y10, z10, y11, z11)
    MIX_DOT4(r2, y20, z20, y21, z21)
    MIX_DOT4(r3, y30, z30, y31, z31)
  }
#undef MIX_DOT4
  double *y = d->y[0] + idx, *yb = d->yb[0] + idx;
  y[0] = _mm512_reduce_add_pd(y00), y[1] = _mm512_reduce_add_pd(y10);
  y[2] = _mm512_reduce_add_pd(y20), y[3] = _mm512_reduce_add_pd(y30);
  yb[0] = _mm512_reduce_add_pd(z00), yb[1] = _mm512_reduce_add_pd(z10);
  yb[2] = _mm512_reduce_add_pd(z20), yb[3] = _mm512_reduce_add_pd(z30);
  if (ND > 1) {
    y = d->y[1] + idx, yb = d->yb[1] + idx;
    y[0] = _mm512_reduce_add_pd(y01), y[1] = _mm512_reduce_add_pd(y11);
    y[2] = _mm512_reduce_add_pd(y21), y[3] = _mm512_reduce_add_pd(y31);
    yb[0] = _mm512_reduce_add_pd(z01), yb[1] = _mm512_reduce_add_pd(z11);
    yb[2] = _mm512_reduce_add_pd(z21), yb[3] = _mm512_reduce_add_pd(z31);
  }
}

T512 static void dots_rows4(const tempo_obf_mix_dots *d, const float *row, int cols, size_t idx) {
  const int sel = (d->ndots < 4 ? d->ndots : 4) * 2 + (d->wb != NULL);
  switch (sel) { /* one or two dots: the 4 rows together */
  case 2: dots4_nd(d, row, cols, idx, 1, false); return;
  case 3: dots4_nd(d, row, cols, idx, 1, true); return;
  case 4: dots4_nd(d, row, cols, idx, 2, false); return;
  case 5: dots4_nd(d, row, cols, idx, 2, true); return;
  default: break;
  }
  for (int r = 0; r < 4; r++, row += cols, idx++) switch (sel) {
    case 2: dots_nd(d, row, cols, idx, 1, false); break;
    case 3: dots_nd(d, row, cols, idx, 1, true); break;
    case 4: dots_nd(d, row, cols, idx, 2, false); break;
    case 5: dots_nd(d, row, cols, idx, 2, true); break;
    case 6: dots_nd(d, row, cols, idx, 3, false); break;
    case 7: dots_nd(d, row, cols, idx, 3, true); break;
    case 8: dots_nd(d, row, cols, idx, 4, false); break;
    default: dots_nd(d, row, cols, idx, 4, true); break;
    }
}

/* The left block with the row scales folded in (enc: rs[r] A[r][k]; dec: A[r][k] rs[k]), in
 * one vector op and one store: the kernels read its 16 values as broadcast memory operands
 * (16 broadcast registers spilled to the stack, and those stores queued behind the misses of
 * random output rows). */
T512_INLINE void left_coefs(const float *A, const float *rs4, bool enc, float *a) {
  const __m512i pick = enc ? _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3)
                           : _mm512_setr_epi32(0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3);
  const __m512 s = _mm512_permutexvar_ps(pick, _mm512_castps128_ps512(_mm_loadu_ps(rs4)));
  _mm512_store_ps(a, _mm512_mul_ps(_mm512_loadu_ps(A), s));
}

/* Row r of the left product: sum_k a[4r + k] t_k. */
T512_INLINE __m512 left16(const float *a, int r, __m512 t0, __m512 t1, __m512 t2, __m512 t3) {
  __m512 v = _mm512_mul_ps(_mm512_set1_ps(a[4 * r]), t0);
  v = _mm512_fmadd_ps(_mm512_set1_ps(a[4 * r + 1]), t1, v);
  v = _mm512_fmadd_ps(_mm512_set1_ps(a[4 * r + 2]), t2, v);
  return _mm512_fmadd_ps(_mm512_set1_ps(a[4 * r + 3]), t3, v);
}

/* The input rows MIX_IN_AHEAD output rows after i0 are random rows: prefetch the next block's
 * of them into L2 (the hardware prefetcher cannot; one block ahead into L1 was too late). */
static inline void prefetch_in(const float *in, const tempo_rows *xs, int rows, int cols, int i0,
                               const uint32_t *perm) {
  if (xs) { /* a row source: its own lines (rows.h) */
    tempo_rows_prefetch(xs, perm, i0 + MIX_IN_AHEAD, i0 + MIX_IN_AHEAD + 4);
    return;
  }
  for (int r = i0 + MIX_IN_AHEAD; r < i0 + MIX_IN_AHEAD + 4 && r < rows; r++) {
    const char *q = (const char *)(in + (size_t)perm[r] * cols);
    for (size_t off = 0; off < (size_t)cols * sizeof(float); off += 64) tempo_prefetch_l2(q + off);
  }
}

/* Row fetch (Enc): input row a, in's row a or (src) row a gathered into buf (cols floats). */
static inline const float *enc_row(const float *in, const tempo_rows *src, uint32_t a, int cols, float *buf) {
  if (!src) return in + (size_t)a * cols;
  src->fill(src->ctx, (int)a, (int)a + 1, buf);
  return buf;
}

/* Enc of output rows i0.. i0+3 from their input rows s[0..3] into o (4 rows, stride cols):
 * gather, mix, write (streamed with nt). */
T512 static void enc_block(const float *const s[4], float *o, int cols, int i0, const uint32_t *ci, const float *A,
                           const float *rs, const float *Rg, bool nt) {
  const float *s0 = s[0], *s1 = s[1], *s2 = s[2], *s3 = s[3];
  float a[16] __attribute__((aligned(64)));
  left_coefs(A, rs + i0, true, a);
  for (int j0 = 0; j0 < cols; j0 += 16, Rg += 64) {
    const int n = cols - j0 < 16 ? cols - j0 : 16;
    const __mmask16 m = (__mmask16)(n == 16 ? 0xffffu : (1u << n) - 1u);
    const __m512 R[4] = {_mm512_loadu_ps(Rg), _mm512_loadu_ps(Rg + 16), _mm512_loadu_ps(Rg + 32),
                         _mm512_loadu_ps(Rg + 48)};
    const uint32_t *c = ci + j0;
    const __m512 t0 = right16(fetch16(s0, c, n), R), t1 = right16(fetch16(s1, c, n), R);
    const __m512 t2 = right16(fetch16(s2, c, n), R), t3 = right16(fetch16(s3, c, n), R);
    float *d = o + j0;
    store_row16(d, left16(a, 0, t0, t1, t2, t3), m, false, nt);
    store_row16(d + cols, left16(a, 1, t0, t1, t2, t3), m, false, nt);
    store_row16(d + 2 * (size_t)cols, left16(a, 2, t0, t1, t2, t3), m, false, nt);
    store_row16(d + 3 * (size_t)cols, left16(a, 3, t0, t1, t2, t3), m, false, nt);
  }
}

/* Row store (Dec), rows of 16: o_r (+)= v_r[ci] by one in-register permute each. */
T512_INLINE void scatter_regs16(__m512 v0, __m512 v1, __m512 v2, __m512 v3, const uint32_t *ci, float *const o[4],
                                bool acc, bool nt) {
  const __m512i idx = _mm512_loadu_si512(ci);
  store_row16(o[0], _mm512_permutexvar_ps(idx, v0), 0xffff, acc, nt);
  store_row16(o[1], _mm512_permutexvar_ps(idx, v1), 0xffff, acc, nt);
  store_row16(o[2], _mm512_permutexvar_ps(idx, v2), 0xffff, acc, nt);
  store_row16(o[3], _mm512_permutexvar_ps(idx, v3), 0xffff, acc, nt);
}

/* Dec of input rows src.. (4 rows): h = (L S_r) src (S_c R) into h (4 rows, stride cols), or
 * with cols == 16 straight to the output rows o (scatter_regs16). The four rows are read side
 * by side, which hides the input stream from the hardware prefetcher: the next block (the 4
 * cols floats after them, when more) is prefetched, 4 lines per 16 columns. */
T512 static void dec_block(const float *src, float *h, int cols, const float *A, const float *rs4, const float *Rg,
                           bool more, const uint32_t *ci, float *const o[4], bool acc, bool nt) {
  float a[16] __attribute__((aligned(64)));
  left_coefs(A, rs4, false, a);
  const char *pf = (const char *)(src + (size_t)4 * cols);
  for (int j0 = 0; j0 < cols; j0 += 16, Rg += 64) {
    if (more)
      for (int l = 0; l < 4; l++) _mm_prefetch(pf + 4 * (size_t)(4 * j0 + 16 * l), _MM_HINT_T0);
    const int n = cols - j0 < 16 ? cols - j0 : 16;
    const __mmask16 m = (__mmask16)(n == 16 ? 0xffffu : (1u << n) - 1u);
    const __m512 R[4] = {_mm512_loadu_ps(Rg), _mm512_loadu_ps(Rg + 16), _mm512_loadu_ps(Rg + 32),
                         _mm512_loadu_ps(Rg + 48)};
    const float *g = src + j0;
    const __m512 g0 = _mm512_maskz_loadu_ps(m, g), g1 = _mm512_maskz_loadu_ps(m, g + cols);
    const __m512 g2 = _mm512_maskz_loadu_ps(m, g + 2 * (size_t)cols), g3 = _mm512_maskz_loadu_ps(m, g + 3 * (size_t)cols);
    const __m512 t0 = right16(left16(a, 0, g0, g1, g2, g3), R), t1 = right16(left16(a, 1, g0, g1, g2, g3), R);
    const __m512 t2 = right16(left16(a, 2, g0, g1, g2, g3), R), t3 = right16(left16(a, 3, g0, g1, g2, g3), R);
    if (cols == 16) {
      scatter_regs16(t0, t1, t2, t3, ci, o, acc, nt);
      return;
    }
    float *d = h + j0;
    _mm512_mask_storeu_ps(d, m, t0);
    _mm512_mask_storeu_ps(d + cols, m, t1);
    _mm512_mask_storeu_ps(d + 2 * (size_t)cols, m, t2);
    _mm512_mask_storeu_ps(d + 3 * (size_t)cols, m, t3);
  }
}

/* Row store (Dec): o_r[j] (+)= h_r[ci[j]] for the 4 unmixed rows h (stride cols). */
T512 static void scatter_rows(const float *h, int cols, const uint32_t *ci, float *const o[4], bool acc, bool nt) {
  const float *h0 = h, *h1 = h + cols, *h2 = h + 2 * (size_t)cols, *h3 = h + 3 * (size_t)cols;
  for (int j = 0; j < cols; j += 16) {
    const int n = cols - j < 16 ? cols - j : 16;
    const __mmask16 m = (__mmask16)(n == 16 ? 0xffffu : (1u << n) - 1u);
    const uint32_t *c = ci + j;
    store_row16(o[0] + j, fetch16(h0, c, n), m, acc, nt);
    store_row16(o[1] + j, fetch16(h1, c, n), m, acc, nt);
    store_row16(o[2] + j, fetch16(h2, c, n), m, acc, nt);
    store_row16(o[3] + j, fetch16(h3, c, n), m, acc, nt);
  }
}

/* n floats (n % 16 == 0) from h to o (64-byte aligned), streamed. */
T512 static void stream_copy(float *o, const float *h, size_t n) {
  for (size_t j = 0; j < n; j += 16) _mm512_stream_ps(o + j, _mm512_loadu_ps(h + j));
}

/* Dec writes random output rows: prefetch the lines of the rows two blocks ahead for writing
 * (rows of up to 4 KiB; longer ones the hardware prefetcher streams). */
static inline void prefetch_out(float *out, int cols, const uint32_t *perm, int a, int hi) {
  const size_t bytes = (size_t)cols * sizeof(float);
  if (bytes > TEMPO_OBF_NT_MAX_ROW_BYTES) return;
  for (int r = a; r < a + 4 && r < hi; r++) {
    const char *d = (const char *)(out + (size_t)perm[r] * cols);
    for (size_t off = 0; off < bytes; off += 64) tempo_prefetch_w(d + off);
    tempo_prefetch_w(d + bytes - 1);
  }
}

int tempo_obf_mix_pass512(bool enc, int rows, int cols, const float *in, float *out, const uint32_t *perm,
                          const uint32_t *ci, const float *L, const float *R, const float *rs, const float *cs,
                          bool acc, int lo, int hi, const tempo_obf_mix_dots *dots, const tempo_rows *xs,
                          float *scratch) {
  TEMPO_ASSERT(cols % 4 == 0 && cols >= 8 && lo % 4 == 0);
  const int end = lo + (hi - lo) / 4 * 4; /* whole blocks; mix.c does a last smaller one */
  /* scratch: h (4 cols), Rg (64 ceil(cols / 16) <= 4 cols + 48), gathered rows (4 cols) */
  float *h = scratch, *Rg = scratch + (size_t)4 * cols, *xb = Rg + (size_t)64 * ((cols + 15) / 16);
  prep_right(R, cs, cols, enc, Rg);
  /* large outputs of short rows: non-temporal stores of whole lines, as passes.c (no
   * read-for-ownership of lines written once) */
  const size_t bytes = (size_t)rows * (size_t)cols * sizeof(float);
  const bool nt = !acc && cols % 16 == 0 && ((uintptr_t)out & 63) == 0 && bytes >= TEMPO_OBF_NT_BYTES &&
                  (size_t)cols * sizeof(float) < TEMPO_OBF_NT_MAX_ROW_BYTES;
  if (enc) {
    for (int i0 = lo - MIX_IN_AHEAD; i0 < lo; i0 += 4) prefetch_in(in, xs, rows, cols, i0, perm);
    for (int i0 = lo; i0 < end; i0 += 4) {
      const float *sr[4];
      for (int r = 0; r < 4; r++) sr[r] = enc_row(in, xs, perm[i0 + r], cols, xb + (size_t)r * cols);
      prefetch_in(in, xs, rows, cols, i0, perm);
      float *o = out + (size_t)i0 * cols;
      const float *A = L + (size_t)i0 * 4;
      if (nt && dots) { /* the dots read the rows: mix into h (in L1), then stream h out */
        enc_block(sr, h, cols, i0, ci, A, rs, Rg, false);
        dots_rows4(dots, h, cols, (size_t)i0);
        stream_copy(o, h, (size_t)4 * cols);
        continue;
      }
      enc_block(sr, o, cols, i0, ci, A, rs, Rg, nt);
      if (dots) dots_rows4(dots, o, cols, (size_t)i0);
    }
    if (nt) _mm_sfence(); /* streamed stores are visible before the pass returns */
    return end;
  }
  for (int a = lo; !nt && a < lo + MIX_DST_AHEAD && a < end; a += 4) prefetch_out(out, cols, perm, a, end);
  for (int a0 = lo; a0 < end; a0 += 4) {
    const float *src = in + (size_t)(a0 - lo) * cols;
    if (!nt) prefetch_out(out, cols, perm, a0 + MIX_DST_AHEAD, end);
    if (dots) dots_rows4(dots, src, cols, (size_t)(a0 - lo));
    float *const o[4] = {out + (size_t)perm[a0] * cols, out + (size_t)perm[a0 + 1] * cols,
                         out + (size_t)perm[a0 + 2] * cols, out + (size_t)perm[a0 + 3] * cols};
    dec_block(src, h, cols, L + (size_t)a0 * 4, rs + a0, Rg, a0 + 4 < hi, ci, o, acc, nt);
    if (cols != 16) scatter_rows(h, cols, ci, o, acc, nt);
  }
  if (nt) _mm_sfence();
  return end;
}
#else
int tempo_obf_mix_pass512(bool enc, int rows, int cols, const float *in, float *out, const uint32_t *perm,
                          const uint32_t *ci, const float *L, const float *R, const float *rs, const float *cs,
                          bool acc, int lo, int hi, const tempo_obf_mix_dots *dots, const tempo_rows *xs,
                          float *scratch) {
  (void)xs, (void)enc, (void)rows, (void)cols, (void)in, (void)out, (void)perm, (void)ci, (void)L, (void)R, (void)rs;
  (void)cs, (void)acc, (void)hi, (void)dots, (void)scratch;
  return lo;
}
#endif
