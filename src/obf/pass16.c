/* pass16.c - the Enc passes with bfloat16 outputs (the 16-bit wire, protocol.h
 * TEMPO_DTYPE_BF16; obf.h tempo_obf_enc_*16).
 *
 * Each output element is the float32 value the float passes compute ((in * cs) * rs, or the
 * mixed pass's value) rounded to nearest even as it is stored (bf16.h), so a pass still reads
 * its input once and writes its (half as large) output once:
 * - plain keys: input rows are read in order (as the float scatter kernels do); each row's
 *   gathered and scaled float values go through one row of scratch (L1) and are rounded into
 *   the output row the permutation sends it to;
 * - keys with mixing blocks: mix.c's pass computes 16 output rows at a time into scratch (a
 *   sub-problem of 16 rows: the same rows, blocks and scales), which are rounded from there;
 * - identity keys (plain mode): each row is rounded straight from the input.
 * X given by a row source (rows.h, a convolution's im2col) is gathered chunk_rows rows at a time
 * into scratch (plain and identity keys) or row by row by mix.c (mixed keys), never materialised.
 * The forward check's dots (tempo_obf_enc_x16_check) are summed in double on the rounded
 * values, i.e. on exactly what the worker receives: nothing of the rounding is left to the
 * check's bound. The passes run in the calling thread (tempo_obf_set_threads is not used). */
#include <string.h>

#include "obf/obf_internal.h"
#include "tempo/bf16.h"
#include "tempo/common.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define P16_X86 1
#else
#define P16_X86 0
#endif

/* Rows per chunk: a mixed key's sub-problem (each one prepares the pass's column blocks again,
 * about 4 cols values: 25% of the pass at 16 rows, measured resnet20 bf16 blind 200 -> 157 ms
 * per step at 256 rows), or a row source's gather. About P16_CHUNK_BYTES of floats, at least
 * P16_CHUNK_MIN and at most P16_CHUNK_MAX rows, a multiple of 16 (of every block size). */
#define P16_CHUNK_BYTES (512u << 10)
#define P16_CHUNK_MIN 64
#define P16_CHUNK_MAX 256
static int chunk_rows(int cols) {
  const size_t r = P16_CHUNK_BYTES / (sizeof(float) * (size_t)cols);
  return r < P16_CHUNK_MIN ? P16_CHUNK_MIN : r > P16_CHUNK_MAX ? P16_CHUNK_MAX : (int)r / 16 * 16;
}
#define P16_PREFETCH_ROW_BYTES 512 /* output rows up to this long are prefetched for writing */

typedef struct {
  int ndots;
  const double *const *w, *const *wb; /* (cols) per dot, in output column order */
  const float *wbf[TEMPO_OBF_MAX_DOTS]; /* wb as floats rounded up (the vector kernel's bound sums) */
  double *const *y, *const *yb;       /* (rows) per dot */
} p16_dots;

static bool have_avx2_fma(void) {
#if P16_X86
  static int cached = -1;
  if (cached < 0) {
    __builtin_cpu_init();
    cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }
  return cached;
#else
  return false;
#endif
}

#if P16_X86
/* Output columns j.. j+7 of a row as floats: row[j..] (ci NULL), or gathered from row by ci
 * (scalar loads) and scaled by cs, then by rv: the float passes' (in * cs) * rs. */
__attribute__((target("avx2,fma"), always_inline)) static inline __m256 load8(const float *row, const uint32_t *ci,
                                                                             const float *cs, __m256 rv, int j) {
  if (!ci) return _mm256_loadu_ps(row + j);
  const uint32_t *c = ci + j;
  const __m128 lo = _mm_set_ps(row[c[3]], row[c[2]], row[c[1]], row[c[0]]);
  const __m128 hi = _mm_set_ps(row[c[7]], row[c[6]], row[c[5]], row[c[4]]);
  const __m256 g = _mm256_insertf128_ps(_mm256_castps128_ps256(lo), hi, 1);
  return _mm256_mul_ps(_mm256_mul_ps(g, _mm256_loadu_ps(cs + j)), rv);
}

/* Rounds a row's C values (load8) into dst and, for ND dots, sums x w in double on the rounded
 * x, and x^2 wb in float (the bound's sums of squares: at most C/8 nonnegative terms per lane,
 * each rounded twice, so scaling by 1 + C 2^-23 keeps them upper bounds, as passes.c does). */
__attribute__((target("avx2,fma"), always_inline)) static inline void pack_nd(const float *row, const uint32_t *ci,
                                                                             const float *cs, float rs, uint16_t *dst,
                                                                             int C, const p16_dots *d, size_t i,
                                                                             const int ND) {
  const __m256 rv = _mm256_set1_ps(rs);
  __m256d y[TEMPO_OBF_MAX_DOTS];
  __m256 yb[TEMPO_OBF_MAX_DOTS];
  for (int q = 0; q < ND; q++) y[q] = _mm256_setzero_pd(), yb[q] = _mm256_setzero_ps();
  const __m256i bias = _mm256_set1_epi32(0x7fff), one = _mm256_set1_epi32(1), absm = _mm256_set1_epi32(0x7fffffff);
  const __m256i inf = _mm256_set1_epi32(0x7f800000), quiet = _mm256_set1_epi32(0x40);
  int j = 0;
  for (; j + 8 <= C; j += 8) {
    const __m256i u = _mm256_castps_si256(load8(row, ci, cs, rv, j));
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), one);
    __m256i h = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, bias), lsb), 16);
    const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, absm), inf);
    h = _mm256_blendv_epi8(h, _mm256_or_si256(_mm256_srli_epi32(u, 16), quiet), nan);
    _mm_storeu_si128((__m128i *)(dst + j),
                     _mm_packus_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1)));
    if (ND) {
      const __m256 x = _mm256_castsi256_ps(_mm256_slli_epi32(h, 16)); /* the rounded values */
      const __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(x)), hi = _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1));
      const __m256 sq = _mm256_mul_ps(x, x);
      for (int q = 0; q < ND; q++) {
        y[q] = _mm256_fmadd_pd(lo, _mm256_loadu_pd(d->w[q] + j), y[q]);
        y[q] = _mm256_fmadd_pd(hi, _mm256_loadu_pd(d->w[q] + j + 4), y[q]);
        yb[q] = _mm256_fmadd_ps(sq, _mm256_loadu_ps(d->wbf[q] + j), yb[q]);
      }
    }
  }
  double t[TEMPO_OBF_MAX_DOTS], tb[TEMPO_OBF_MAX_DOTS];
  const double up = 1.0 + (double)C * 0x1p-23;
  for (int q = 0; q < ND; q++) {
    double a[4];
    float b[8];
    _mm256_storeu_pd(a, y[q]), _mm256_storeu_ps(b, yb[q]);
    t[q] = (a[0] + a[1]) + (a[2] + a[3]), tb[q] = 0;
    for (int l = 0; l < 8; l++) tb[q] += b[l];
    tb[q] *= up;
  }
  for (; j < C; j++) {
    dst[j] = tempo_bf16_from_f32(ci ? row[ci[j]] * cs[j] * rs : row[j]);
    const double x = tempo_bf16_to_f32(dst[j]);
    for (int q = 0; q < ND; q++) t[q] += x * d->w[q][j], tb[q] += x * x * d->wb[q][j];
  }
  for (int q = 0; q < ND; q++) d->y[q][i] = t[q], d->yb[q][i] = tb[q];
}

__attribute__((target("avx2,fma"))) static void pack_avx2(const float *row, uint16_t *dst, int C, const p16_dots *d,
                                                          size_t i) {
  switch (d ? d->ndots : 0) {
  case 0: pack_nd(row, NULL, NULL, 1.0f, dst, C, d, i, 0); break;
  case 1: pack_nd(row, NULL, NULL, 1.0f, dst, C, d, i, 1); break;
  case 2: pack_nd(row, NULL, NULL, 1.0f, dst, C, d, i, 2); break;
  case 3: pack_nd(row, NULL, NULL, 1.0f, dst, C, d, i, 3); break;
  default: pack_nd(row, NULL, NULL, 1.0f, dst, C, d, i, 4); break;
  }
}

/* Plain keys: input rows [0, rows) in order, each gathered, scaled and rounded into its output
 * row ro[a] in one loop; the next rows' input is prefetched (the gathers hide the stream from
 * the hardware prefetcher) and the output rows two ahead for writing (short rows at random
 * places otherwise wait for each line's read-for-ownership). */
__attribute__((target("avx2,fma"))) static void scatter_avx2(const float *in, uint16_t *out, int rows, int C,
                                                             const uint32_t *ro, const uint32_t *ci, const float *cs,
                                                             const float *rs, const p16_dots *d) {
  const size_t rb = (size_t)C * sizeof(float), ob = (size_t)C * sizeof(uint16_t);
  for (int a = 0; a < rows; a++) {
    if (a + 2 < rows) {
      const char *pi = (const char *)(in + (size_t)(a + 2) * C), *po = (const char *)(out + (size_t)ro[a + 2] * C);
      for (size_t o = 0; o < rb; o += 64) _mm_prefetch(pi + o, _MM_HINT_T0);
      if (ob <= P16_PREFETCH_ROW_BYTES) {
        for (size_t o = 0; o < ob; o += 64) __builtin_prefetch(po + o, 1, 3);
        __builtin_prefetch(po + ob - 1, 1, 3);
      }
    }
    const float *src = in + (size_t)a * C;
    const uint32_t i = ro[a];
    uint16_t *dst = out + (size_t)i * C;
    switch (d ? d->ndots : 0) {
    case 0: pack_nd(src, ci, cs, rs[i], dst, C, d, i, 0); break;
    case 1: pack_nd(src, ci, cs, rs[i], dst, C, d, i, 1); break;
    case 2: pack_nd(src, ci, cs, rs[i], dst, C, d, i, 2); break;
    case 3: pack_nd(src, ci, cs, rs[i], dst, C, d, i, 3); break;
    default: pack_nd(src, ci, cs, rs[i], dst, C, d, i, 4); break;
    }
  }
}
#endif

/* Output row i: row (C floats) rounded into dst, with the dots of d (NULL: none) on the
 * rounded values. */
static void pack_row(const float *row, uint16_t *dst, int C, const p16_dots *d, size_t i) {
#if P16_X86
  if (have_avx2_fma()) {
    pack_avx2(row, dst, C, d, i);
    return;
  }
#endif
  tempo_bf16_pack(row, dst, (size_t)C);
  for (int q = 0; d && q < d->ndots; q++) {
    double t = 0, tb = 0;
    for (int j = 0; j < C; j++) {
      const double x = tempo_bf16_to_f32(dst[j]);
      t += x * d->w[q][j], tb += x * x * d->wb[q][j];
    }
    d->y[q][i] = t, d->yb[q][i] = tb;
  }
}

/* Plain keys: input rows [0, rows) of in, row a to output row ro[a] (gathered by ci, scaled by
 * cs then rs[ro[a]], rounded; dots per output row); row: cols floats of scratch (portable loop). */
static void scatter_rows(const float *in, int rows, int cols, const uint32_t *ro, const uint32_t *ci, const float *cs,
                         const float *rs, uint16_t *out, const p16_dots *d, float *row) {
#if P16_X86
  if (have_avx2_fma()) {
    scatter_avx2(in, out, rows, cols, ro, ci, cs, rs, d);
    return;
  }
#endif
  for (int a = 0; a < rows; a++) { /* input rows in order, each to its output row (portable) */
    const float *src = in + (size_t)a * cols;
    const uint32_t i = ro[a];
    const float s = rs[i];
    for (int j = 0; j < cols; j++) row[j] = src[ci[j]] * cs[j] * s;
    pack_row(row, out + (size_t)i * cols, cols, d, i);
  }
}

/* One Enc pass (the roles of rd, cd, rs, cs as in passes.c: output row i reads input row
 * rd->perm[i], output column j input column cd->perm[j], scaled by cs[j] then rs[i]); the
 * mixed forms lf, rf of a key with mixing blocks (rdim, cdim: the dimensions' indices). The
 * input is in, or (in NULL) the row source src. work: tempo_obf_enc16_work floats (the dots'
 * float weights, a row, then chunk_rows(cols) rows of scratch). */
static void enc16(const tempo_obf_key *k, int rows, int cols, const float *in, const tempo_rows *src, uint16_t *out,
                  const tempo_obf_dim *rd, int rdim, int lf, const float *rs, const tempo_obf_dim *cd, int cdim, int rf,
                  const float *cs, p16_dots *d, float *work) {
  for (int q = 0; d && q < d->ndots; q++) { /* rounded up: the bound stays an upper bound */
    float *f = work + (size_t)q * cols;
    for (int j = 0; j < cols; j++) f[j] = (float)d->wb[q][j] * (1.0f + 0x1p-22f);
    d->wbf[q] = f;
  }
  float *row = work + (size_t)TEMPO_OBF_MAX_DOTS * cols, *chunk = row + cols;
  if (k->mix) { /* 16 output rows at a time: the same pass on a sub-problem of those rows */
    tempo_obf_key kk = *k; /* shallow: the blocks of rows [i0, i1) start at block i0 / b */
    const float *L = k->mixd[rdim][lf];
    const int ch = chunk_rows(cols);
    for (int i0 = 0; i0 < rows; i0 += ch) {
      const int t = rows - i0 < ch ? rows - i0 : ch;
      tempo_obf_dim sub = *rd;
      sub.size = t, sub.perm = rd->perm + i0;
      kk.mixd[rdim][lf] = L + (size_t)(i0 / k->mix) * k->mix * k->mix;
      tempo_obf_mix_pass(&kk, true, t, cols, in, chunk, &sub, rdim, lf, rs + i0, cd, cdim, rf, cs, false, 0, t, NULL,
                         src);
      for (int r = 0; r < t; r++)
        pack_row(chunk + (size_t)r * cols, out + (size_t)(i0 + r) * cols, cols, d, (size_t)(i0 + r));
    }
    return;
  }
  const int ch = chunk_rows(cols);
  for (int a0 = 0; a0 < rows; a0 += src ? ch : rows) { /* a row source: ch rows at a time */
    const int t = !src || rows - a0 < ch ? rows - a0 : ch;
    const float *x = in;
    if (src) src->fill(src->ctx, a0, a0 + t, chunk), x = chunk;
    if (k->identity)
      for (int r = 0; r < t; r++)
        pack_row(x + (size_t)r * cols, out + (size_t)(a0 + r) * cols, cols, d, (size_t)(a0 + r));
    else
      scatter_rows(x, t, cols, rd->inv + a0, cd->perm, cs, rs, out, d, row);
  }
}

size_t tempo_obf_enc16_work(int n, int p) {
  /* chunk_rows(c) c <= max(P16_CHUNK_MIN c, P16_CHUNK_BYTES / 4) for every c <= max(n, p) */
  const size_t c = (size_t)(n > p ? n : p), chunk = (size_t)P16_CHUNK_MIN * c;
  const size_t most = P16_CHUNK_BYTES / sizeof(float);
  return (size_t)(TEMPO_OBF_MAX_DOTS + 1) * c + (chunk > most ? chunk : most);
}

void tempo_obf_enc_x16(const tempo_obf_key *k, const float *X, uint16_t *Xp, float *work) {
  enc16(k, k->m, k->n, X, NULL, Xp, &k->dm, 0, TEMPO_OBF_MIX_M, k->dm.coef_p, &k->dn, 1, TEMPO_OBF_MIX_M, k->dn.coef_p,
        NULL, work);
}

void tempo_obf_enc_x16_check(const tempo_obf_key *k, const float *X, uint16_t *Xp, int ndots, const double *const *w,
                             const double *const *wb, double *const *y, double *const *yb, float *work) {
  TEMPO_ASSERT(ndots >= 1 && ndots <= TEMPO_OBF_MAX_DOTS);
  p16_dots d = {.ndots = ndots, .w = w, .wb = wb, .y = y, .yb = yb};
  enc16(k, k->m, k->n, X, NULL, Xp, &k->dm, 0, TEMPO_OBF_MIX_M, k->dm.coef_p, &k->dn, 1, TEMPO_OBF_MIX_M, k->dn.coef_p,
        &d, work);
}

void tempo_obf_enc_dy16(const tempo_obf_key *k, const float *dY, uint16_t *dYs, float *work) {
  enc16(k, k->m, k->p, dY, NULL, dYs, &k->dm, 0, TEMPO_OBF_MIX_INVT, k->dm.rcoef_p, &k->dp, 2, TEMPO_OBF_MIX_INVT,
        k->dp.rcoef_p, NULL, work);
}

void tempo_obf_enc_w16(const tempo_obf_key *k, bool w_trans, const float *W, uint16_t *Wp, float *Wpf) {
  tempo_obf_enc_w(k, w_trans, W, Wpf); /* weight-sized: rounded in place from there */
  const size_t n = (size_t)k->n * k->p;
  tempo_bf16_pack(Wpf, Wp, n);
  tempo_bf16_unpack(Wp, Wpf, n);
}

void tempo_obf_enc_x16_rows(const tempo_obf_key *k, const tempo_rows *xs, uint16_t *Xp, float *work) {
  TEMPO_ASSERT(xs->rows == k->m && xs->cols == k->n);
  enc16(k, k->m, k->n, NULL, xs, Xp, &k->dm, 0, TEMPO_OBF_MIX_M, k->dm.coef_p, &k->dn, 1, TEMPO_OBF_MIX_M, k->dn.coef_p,
        NULL, work);
}

void tempo_obf_enc_x16_check_rows(const tempo_obf_key *k, const tempo_rows *xs, uint16_t *Xp, int ndots,
                                  const double *const *w, const double *const *wb, double *const *y, double *const *yb,
                                  float *work) {
  TEMPO_ASSERT(ndots >= 1 && ndots <= TEMPO_OBF_MAX_DOTS && xs->rows == k->m && xs->cols == k->n);
  p16_dots d = {.ndots = ndots, .w = w, .wb = wb, .y = y, .yb = yb};
  enc16(k, k->m, k->n, NULL, xs, Xp, &k->dm, 0, TEMPO_OBF_MIX_M, k->dm.coef_p, &k->dn, 1, TEMPO_OBF_MIX_M, k->dn.coef_p,
        &d, work);
}
