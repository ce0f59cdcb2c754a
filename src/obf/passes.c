/* passes.c - the fused Enc/Dec passes: one gather-and-scale pass each,
 *   out[i][j] (+)= in[ri[i]][ci[j]] * cs[j] * rs[i]        out, in: (R, C)
 * with the row/column index and scale vectors of the pass's role (the table is in
 * docs/obfuscation.md). Each pass reads its input once and writes its output once.
 *
 * How it is fast (measurements in docs/obfuscation.md):
 * - Rows are permuted by scattering: input rows are read in order (a = 0, 1, ...: the
 *   hardware prefetcher and the TLB like that) and written to output row ro[a] = ri^-1[a].
 *   Reading rows in random order instead cost ~2x on large matrices here.
 * - The column gather stays inside one input row (in L1). Four consecutive input rows
 *   share each column index and scale, so an element costs one gathered load and one
 *   store; AVX2 builds vectors from scalar loads (vgatherdps was slower on this CPU).
 * - The gathers hop around inside a block of rows, which hides the input stream from the
 *   hardware prefetcher; the next block is software-prefetched (2x on large matrices).
 * - Large outputs with short rows (TEMPO_OBF_NT_BYTES, TEMPO_OBF_NT_MAX_ROW_BYTES) are
 *   written with non-temporal stores: whole lines, no read-for-ownership of randomly
 *   placed short rows. Long rows are streamed well by the hardware prefetcher with
 *   ordinary stores, and small outputs stay in cache for the consumer.
 * - Passes of at least 2 * TEMPO_OBF_MIN_ELEMS_PER_PART elements are split by input
 *   rows into parts on the tempo_parallel pool (tempo_obf_set_threads sets its threads). */
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "obf/obf_internal.h"
#include "tempo/parallel.h"
#include "tempo/common.h"
#include "tempo/obf.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define OBF_X86 1
#else
#define OBF_X86 0
#endif

typedef struct {
  int rows, cols;
  const float *in; /* (rows, cols) */
  float *out;      /* (rows, cols) */
  const uint32_t *ri; /* (rows) output row i reads input row ri[i] */
  const uint32_t *ro; /* (rows) input row a goes to output row ro[a] (ri^-1) */
  const float *rs;    /* (rows) scale of output row i */
  const uint32_t *ci; /* (cols) output column j reads input column ci[j] */
  const float *cs;    /* (cols) scale of output column j */
  bool acc;
  bool identity;
  bool nt; /* non-temporal stores (set only when rows are 32-byte aligned and !acc) */
  bool range; /* a Dec pass over input rows [row0, row1) only: in holds just those rows */
  int row0, row1;
  const tempo_rows *src; /* Enc: the input given by rows (in NULL), gathered chunk by chunk (run_rows_src) */
  /* Check dots (tempo_obf_enc_x_check): for q < ndots, per output row i reading input row a,
   * dot[q][i] = sum_c x[c] du[q][c] and dotb[q][i] = sum_c x[c]^2 dub[q][c] (double) with
   * x[c] = (in[a][c] dcs[c]) rs[i] the float X' gets (dcs NULL: rs[i] times the sums on
   * in[a][c]), formed on the input row while it is in cache from the scatter. */
  int ndots;
  bool dots_avx2; /* the CPU has AVX2 and FMA (looked up once per pass) */
  bool dots_in;   /* dot[q][a - row0] per input row a, unscaled (the reply's own values) */
  const float *dcs; /* Enc dots: per input column, the scale the scatter multiplies it by (its output
                     * column's cs), so the dots sum the very floats X' gets: (x cs) rs */
  const double *du[TEMPO_OBF_MAX_DOTS];
  const float *dub[TEMPO_OBF_MAX_DOTS]; /* the bound's weights: a bound needs no double sums */
  double *dot[TEMPO_OBF_MAX_DOTS], *dotb[TEMPO_OBF_MAX_DOTS];
} obf_pass;

/* Input row a. */
static inline const float *in_row(const obf_pass *p, size_t a) {
  return p->in + (a - (size_t)(p->range ? p->row0 : 0)) * (size_t)p->cols;
}

static bool have_avx2_fma(void);

#if defined(__x86_64__) || defined(__i386__)
/* ND dots at once (a compile-time constant, so the accumulators stay in registers): the row
 * is loaded and widened to double once for all of them. The bound sums of squares are
 * float sums of trusted rows (Enc), double sums with SQD (a reply's rows: a reply cannot
 * overflow them to +inf and so widen its own bound). */
__attribute__((target("avx2,fma"), always_inline)) static inline void row_dots_nd(const obf_pass *p, const float *src,
                                                                                  double *t, double *tb, const int ND,
                                                                                  const bool SQD, const float rsc) {
  const int C = p->cols, C8 = C & ~7;
  /* Named accumulators (arrays indexed by q went through the stack: every FMA waited on a store
   * and a reload, 2x the pass), two chains per sum (the row's low and high 4 lanes). */
  const __m256d zd = _mm256_setzero_pd();
  const __m256 zf = _mm256_setzero_ps();
  __m256d d0 = zd, e0 = zd, d1 = zd, e1 = zd, d2 = zd, e2 = zd, d3 = zd, e3 = zd; /* dots */
  __m256d g0 = zd, h0 = zd, g1 = zd, h1 = zd, g2 = zd, h2 = zd, g3 = zd, h3 = zd; /* SQD bounds */
  __m256 b0 = zf, b1 = zf, b2 = zf, b3 = zf;                                         /* float bounds */
  const double *u0 = p->du[0], *u1 = ND > 1 ? p->du[1] : u0, *u2 = ND > 2 ? p->du[2] : u0, *u3 = ND > 3 ? p->du[3] : u0;
  const float *w0 = p->dub[0], *w1 = ND > 1 ? p->dub[1] : w0, *w2 = ND > 2 ? p->dub[2] : w0,
              *w3 = ND > 3 ? p->dub[3] : w0;
  int c = 0;
  const __m256 rv = _mm256_set1_ps(rsc);
#define ROW_DOT(q)                                                                                                     \
  {                                                                                                                    \
    d##q = _mm256_fmadd_pd(lo, _mm256_loadu_pd(u##q + c), d##q);                                                       \
    e##q = _mm256_fmadd_pd(hi, _mm256_loadu_pd(u##q + c + 4), e##q);                                                   \
    if (SQD) {                                                                                                         \
      const __m256 gw = _mm256_loadu_ps(w##q + c);                                                                     \
      g##q = _mm256_fmadd_pd(lo2, _mm256_cvtps_pd(_mm256_castps256_ps128(gw)), g##q);                                  \
      h##q = _mm256_fmadd_pd(hi2, _mm256_cvtps_pd(_mm256_extractf128_ps(gw, 1)), h##q);                                \
    } else {                                                                                                           \
      b##q = _mm256_fmadd_ps(sq, _mm256_loadu_ps(w##q + c), b##q);                                                     \
    }                                                                                                                  \
  }
  for (; c < C8; c += 8) {
    __m256 v = _mm256_loadu_ps(src + c);
    if (!SQD && p->dcs) v = _mm256_mul_ps(_mm256_mul_ps(v, _mm256_loadu_ps(p->dcs + c)), rv); /* the X' floats */
    const __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v)), hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
    const __m256d lo2 = SQD ? _mm256_mul_pd(lo, lo) : zd, hi2 = SQD ? _mm256_mul_pd(hi, hi) : zd;
    const __m256 sq = SQD ? zf : _mm256_mul_ps(v, v);
    ROW_DOT(0)
    if (ND > 1) ROW_DOT(1)
    if (ND > 2) ROW_DOT(2)
    if (ND > 3) ROW_DOT(3)
  }
#undef ROW_DOT
  const __m256d dq[4] = {_mm256_add_pd(d0, e0), _mm256_add_pd(d1, e1), _mm256_add_pd(d2, e2), _mm256_add_pd(d3, e3)};
  const __m256d gq[4] = {_mm256_add_pd(g0, h0), _mm256_add_pd(g1, h1), _mm256_add_pd(g2, h2), _mm256_add_pd(g3, h3)};
  const __m256 bq[4] = {b0, b1, b2, b3};
  for (int q = 0; q < ND; q++) {
    __m128d ds = _mm_add_pd(_mm256_castpd256_pd128(dq[q]), _mm256_extractf128_pd(dq[q], 1));
    double sd = _mm_cvtsd_f64(_mm_add_sd(ds, _mm_unpackhi_pd(ds, ds)));
    double sb = 0;
    if (SQD) {
      __m128d bs = _mm_add_pd(_mm256_castpd256_pd128(gq[q]), _mm256_extractf128_pd(gq[q], 1));
      sb = _mm_cvtsd_f64(_mm_add_sd(bs, _mm_unpackhi_pd(bs, bs)));
    } else {
      float bl[8];
      _mm256_storeu_ps(bl, bq[q]);
      for (int l = 0; l < 8; l++) sb += bl[l];
    }
    for (int k = c; k < C; k++) {
      float xf = src[k];
      if (!SQD && p->dcs) xf = xf * p->dcs[k], xf = xf * rsc;
      const double x = xf;
      sd += x * p->du[q][k], sb += x * x * p->dub[q][k];
    }
    t[q] = sd, tb[q] = sb;
  }
}

__attribute__((target("avx2,fma"))) static void row_dots_avx2(const obf_pass *p, const float *src, double *t,
                                                              double *tb, float rsc) {
  if (p->dots_in) {
    switch (p->ndots) {
    case 1: row_dots_nd(p, src, t, tb, 1, true, 1.0f); break;
    case 2: row_dots_nd(p, src, t, tb, 2, true, 1.0f); break;
    case 3: row_dots_nd(p, src, t, tb, 3, true, 1.0f); break;
    default: row_dots_nd(p, src, t, tb, 4, true, 1.0f); break;
    }
    return;
  }
  switch (p->ndots) {
  case 1: row_dots_nd(p, src, t, tb, 1, false, rsc); break;
  case 2: row_dots_nd(p, src, t, tb, 2, false, rsc); break;
  case 3: row_dots_nd(p, src, t, tb, 3, false, rsc); break;
  default: row_dots_nd(p, src, t, tb, 4, false, rsc); break;
  }
}
#endif

/* The check dots of input row a (no-op without them): see obf_pass.ndots. */
static void row_dots(const obf_pass *p, size_t a);
static inline void in_row_dots(const obf_pass *p, size_t a) {
  if (p->ndots) row_dots(p, a);
}

#define ROW_DOTS_AHEAD 8 /* rows */
static void row_dots(const obf_pass *p, size_t a) {
  const float *src = in_row(p, a);
  const uint32_t i = p->identity ? (uint32_t)a : p->ro[a];
  const float sf = p->identity ? 1.0f : p->rs[i];
  /* an Enc pass writes each row's dots at its random output row: fetch those lines ahead for
   * writing, as the kernels do the output rows (otherwise each waits for its read-for-ownership) */
  if (!p->dots_in && !p->identity && a + ROW_DOTS_AHEAD < (size_t)p->rows) {
    const uint32_t ia = p->ro[a + ROW_DOTS_AHEAD];
    for (int q = 0; q < p->ndots; q++) __builtin_prefetch(p->dot[q] + ia, 1, 3), __builtin_prefetch(p->dotb[q] + ia, 1, 3);
  }
  const double s = p->dcs ? 1.0 : (double)sf; /* the X' floats already carry the row scale */
  double t[TEMPO_OBF_MAX_DOTS], tb[TEMPO_OBF_MAX_DOTS];
  /* the bound's float sums (at most C/8 terms per lane, all >= 0, each a square rounded
   * once and a product rounded once) are low by at most (C/8 + 2) 2^-24 relative: scaling
   * them up by (1 + C 2^-23) keeps them upper bounds (the double sums need no such care) */
  const double up = 1.0 + (double)p->cols * 0x1p-23;
#if defined(__x86_64__) || defined(__i386__)
  if (p->dots_avx2) {
    row_dots_avx2(p, src, t, tb, sf);
  } else
#endif
  {
    for (int q = 0; q < p->ndots; q++) {
      double sd = 0, sb = 0;
      for (int c = 0; c < p->cols; c++) {
        float xf = src[c];
        if (!p->dots_in && p->dcs) xf = xf * p->dcs[c], xf = xf * sf;
        const double x = xf;
        sd += x * p->du[q][c], sb += x * x * p->dub[q][c];
      }
      t[q] = sd, tb[q] = sb;
    }
  }
  if (p->dots_in) {
    const size_t r = a - (size_t)(p->range ? p->row0 : 0);
    for (int q = 0; q < p->ndots; q++) p->dot[q][r] = t[q], p->dotb[q][r] = tb[q] * up;
    return;
  }
  for (int q = 0; q < p->ndots; q++) p->dot[q][i] = t[q] * s, p->dotb[q][i] = tb[q] * s * s * up;
}

static atomic_int obf_kernel = TEMPO_OBF_KERNEL_AUTO;

/* The passes' parts run on the tempo_parallel pool: its thread count is theirs. */
void tempo_obf_set_threads(int threads) { tempo_parallel_set_threads(threads); }

void tempo_obf_set_kernel(int kernel) { atomic_store(&obf_kernel, kernel); }

/* The naive reference kernel: one output row at a time, gathering from input row ri[i]. */
static void rows_naive(const obf_pass *p, int r0, int r1) {
  const int C = p->cols;
  for (int i = r0; i < r1; i++) {
    const float *src = in_row(p, p->ri[i]);
    float *dst = p->out + (size_t)i * (size_t)C;
    const float s = p->rs[i];
    if (p->acc)
      for (int j = 0; j < C; j++) dst[j] += src[p->ci[j]] * p->cs[j] * s;
    else
      for (int j = 0; j < C; j++) dst[j] = src[p->ci[j]] * p->cs[j] * s;
    in_row_dots(p, p->ri[i]);
  }
}

#define OBF_BLOCK 4
/* Rows ahead (two blocks) whose output lines are prefetched for writing. */
#define OBF_DST_AHEAD (2 * OBF_BLOCK)

/* Ordinary stores into randomly placed short output rows (and accumulation, which reads
 * them) wait for each line's read-for-ownership: prefetch the output rows of the block
 * after next. Long rows are streamed by the hardware prefetcher. */
static inline void prefetch_dst(const obf_pass *p, int a, int a1) {
  const size_t bytes = (size_t)p->cols * sizeof(float);
  if (p->nt || bytes > TEMPO_OBF_NT_MAX_ROW_BYTES) return;
  for (int b = a + OBF_DST_AHEAD; b < a + OBF_DST_AHEAD + OBF_BLOCK && b < a1; b++) {
    const char *d = (const char *)(p->out + (size_t)p->ro[b] * (size_t)p->cols);
    for (size_t o = 0; o < bytes; o += 64) __builtin_prefetch(d + o, 1, 3);
    __builtin_prefetch(d + bytes - 1, 1, 3);
  }
}

/* One input row a (any row count) scattered to its output row, scalar. */
static void scatter_row_scalar(const obf_pass *p, int a) {
  const int C = p->cols;
  const uint32_t i = p->ro[a];
  const float *src = in_row(p, (size_t)a);
  float *dst = p->out + (size_t)i * (size_t)C;
  const float s = p->rs[i];
  if (p->acc)
    for (int j = 0; j < C; j++) dst[j] += src[p->ci[j]] * p->cs[j] * s;
  else
    for (int j = 0; j < C; j++) dst[j] = src[p->ci[j]] * p->cs[j] * s;
  in_row_dots(p, (size_t)a);
}

/* Input rows [a0, a1), four at a time, scalar (the portable kernel). */
static void rows_scatter_scalar(const obf_pass *p, int a0, int a1) {
  const int C = p->cols;
  int a = a0;
  if (a0 < a1) prefetch_dst(p, a0 - OBF_DST_AHEAD, a1), prefetch_dst(p, a0 - OBF_BLOCK, a1);
  for (; a + OBF_BLOCK <= a1; a += OBF_BLOCK) {
    prefetch_dst(p, a, a1);
    const float *s0 = in_row(p, (size_t)a), *s1 = s0 + C, *s2 = s1 + C, *s3 = s2 + C;
    const uint32_t o0 = p->ro[a], o1 = p->ro[a + 1], o2 = p->ro[a + 2], o3 = p->ro[a + 3];
    float *d0 = p->out + (size_t)o0 * (size_t)C, *d1 = p->out + (size_t)o1 * (size_t)C;
    float *d2 = p->out + (size_t)o2 * (size_t)C, *d3 = p->out + (size_t)o3 * (size_t)C;
    const float q0 = p->rs[o0], q1 = p->rs[o1], q2 = p->rs[o2], q3 = p->rs[o3];
    const char *pf = (const char *)(s3 + C); /* the next block: see rows_scatter_avx2 */
    for (int j = 0; j < C; j += 4) __builtin_prefetch(pf + 16 * j, 0, 3);
    if (p->acc) {
      for (int j = 0; j < C; j++) {
        const uint32_t c = p->ci[j];
        const float w = p->cs[j];
        d0[j] += s0[c] * w * q0;
        d1[j] += s1[c] * w * q1;
        d2[j] += s2[c] * w * q2;
        d3[j] += s3[c] * w * q3;
      }
    } else {
      for (int j = 0; j < C; j++) {
        const uint32_t c = p->ci[j];
        const float w = p->cs[j];
        d0[j] = s0[c] * w * q0;
        d1[j] = s1[c] * w * q1;
        d2[j] = s2[c] * w * q2;
        d3[j] = s3[c] * w * q3;
      }
    }
    for (int r = 0; r < OBF_BLOCK; r++) in_row_dots(p, (size_t)a + r);
  }
  for (; a < a1; a++) scatter_row_scalar(p, a);
}

#if OBF_X86
/* 8 gathered values by scalar loads into one vector (the loads fold into vinsertps). */
__attribute__((target("avx2"))) static inline __m256 gather8(const float *s, const uint32_t *c) {
  __m128 lo = _mm_set_ps(s[c[3]], s[c[2]], s[c[1]], s[c[0]]);
  __m128 hi = _mm_set_ps(s[c[7]], s[c[6]], s[c[5]], s[c[4]]);
  return _mm256_insertf128_ps(_mm256_castps128_ps256(lo), hi, 1);
}

/* Output = v, v + old output (acc), or streamed past the caches (nt). */
#define OBF_STORE8(d, v)                                                                                               \
  do {                                                                                                                 \
    if (nt)                                                                                                            \
      _mm256_stream_ps((d), (v));                                                                                      \
    else if (acc)                                                                                                      \
      _mm256_storeu_ps((d), _mm256_add_ps(_mm256_loadu_ps(d), (v)));                                                   \
    else                                                                                                               \
      _mm256_storeu_ps((d), (v));                                                                                      \
  } while (0)

/* Input rows [a0, a1), four at a time, AVX2. */
__attribute__((target("avx2"))) static void rows_scatter_avx2(const obf_pass *p, int a0, int a1) {
  const int C = p->cols, C8 = C & ~7;
  const bool nt = p->nt, acc = p->acc;
  int a = a0;
  if (a0 < a1) prefetch_dst(p, a0 - OBF_DST_AHEAD, a1), prefetch_dst(p, a0 - OBF_BLOCK, a1);
  for (; a + OBF_BLOCK <= a1; a += OBF_BLOCK) {
    prefetch_dst(p, a, a1);
    const float *s0 = in_row(p, (size_t)a), *s1 = s0 + C, *s2 = s1 + C, *s3 = s2 + C;
    const uint32_t o0 = p->ro[a], o1 = p->ro[a + 1], o2 = p->ro[a + 2], o3 = p->ro[a + 3];
    float *d0 = p->out + (size_t)o0 * (size_t)C, *d1 = p->out + (size_t)o1 * (size_t)C;
    float *d2 = p->out + (size_t)o2 * (size_t)C, *d3 = p->out + (size_t)o3 * (size_t)C;
    const __m256 q0 = _mm256_set1_ps(p->rs[o0]), q1 = _mm256_set1_ps(p->rs[o1]);
    const __m256 q2 = _mm256_set1_ps(p->rs[o2]), q3 = _mm256_set1_ps(p->rs[o3]);
    /* The gathers hop around within the four rows, which hides the stream from the
     * hardware prefetcher: prefetch the next four rows (contiguous, 16*C bytes) as this
     * block consumes its own, 16 bytes of the next block per column. */
    const char *pf = (const char *)(s3 + C);
    int j = 0;
    if (nt) { /* whole 64-byte lines per row: interleaving rows by halves of lines is ~2x slower */
      for (; j + 16 <= C8; j += 16) {
        const uint32_t *c = p->ci + j;
        __builtin_prefetch(pf + 16 * j, 0, 3);
        __builtin_prefetch(pf + 16 * j + 64, 0, 3);
        __builtin_prefetch(pf + 16 * j + 128, 0, 3);
        __builtin_prefetch(pf + 16 * j + 192, 0, 3);
        const __m256 w = _mm256_loadu_ps(p->cs + j), x = _mm256_loadu_ps(p->cs + j + 8);
        _mm256_stream_ps(d0 + j, _mm256_mul_ps(_mm256_mul_ps(gather8(s0, c), w), q0));
        _mm256_stream_ps(d0 + j + 8, _mm256_mul_ps(_mm256_mul_ps(gather8(s0, c + 8), x), q0));
        _mm256_stream_ps(d1 + j, _mm256_mul_ps(_mm256_mul_ps(gather8(s1, c), w), q1));
        _mm256_stream_ps(d1 + j + 8, _mm256_mul_ps(_mm256_mul_ps(gather8(s1, c + 8), x), q1));
        _mm256_stream_ps(d2 + j, _mm256_mul_ps(_mm256_mul_ps(gather8(s2, c), w), q2));
        _mm256_stream_ps(d2 + j + 8, _mm256_mul_ps(_mm256_mul_ps(gather8(s2, c + 8), x), q2));
        _mm256_stream_ps(d3 + j, _mm256_mul_ps(_mm256_mul_ps(gather8(s3, c), w), q3));
        _mm256_stream_ps(d3 + j + 8, _mm256_mul_ps(_mm256_mul_ps(gather8(s3, c + 8), x), q3));
      }
    }
    for (; j < C8; j += 8) {
      const uint32_t *c = p->ci + j;
      const __m256 w = _mm256_loadu_ps(p->cs + j);
      __builtin_prefetch(pf + 16 * j, 0, 3);
      __builtin_prefetch(pf + 16 * j + 64, 0, 3);
      OBF_STORE8(d0 + j, _mm256_mul_ps(_mm256_mul_ps(gather8(s0, c), w), q0));
      OBF_STORE8(d1 + j, _mm256_mul_ps(_mm256_mul_ps(gather8(s1, c), w), q1));
      OBF_STORE8(d2 + j, _mm256_mul_ps(_mm256_mul_ps(gather8(s2, c), w), q2));
      OBF_STORE8(d3 + j, _mm256_mul_ps(_mm256_mul_ps(gather8(s3, c), w), q3));
    }
    for (; j < C; j++) { /* nt implies C % 8 == 0: no tail then */
      const uint32_t c = p->ci[j];
      const float w = p->cs[j];
      const float v0 = s0[c] * w * p->rs[o0], v1 = s1[c] * w * p->rs[o1];
      const float v2 = s2[c] * w * p->rs[o2], v3 = s3[c] * w * p->rs[o3];
      if (acc) {
        d0[j] += v0, d1[j] += v1, d2[j] += v2, d3[j] += v3;
      } else {
        d0[j] = v0, d1[j] = v1, d2[j] = v2, d3[j] = v3;
      }
    }
    for (int r = 0; r < OBF_BLOCK; r++) in_row_dots(p, (size_t)a + r);
  }
  for (; a < a1; a++) {
    const uint32_t i = p->ro[a];
    const float *src = in_row(p, (size_t)a);
    float *d = p->out + (size_t)i * (size_t)C;
    const __m256 q = _mm256_set1_ps(p->rs[i]);
    int j = 0;
    for (; j < C8; j += 8)
      OBF_STORE8(d + j, _mm256_mul_ps(_mm256_mul_ps(gather8(src, p->ci + j), _mm256_loadu_ps(p->cs + j)), q));
    for (; j < C; j++) {
      const float v = src[p->ci[j]] * p->cs[j] * p->rs[i];
      d[j] = acc ? d[j] + v : v;
    }
    in_row_dots(p, (size_t)a);
  }
  if (nt) _mm_sfence(); /* streamed stores are visible before the pass returns */
}
#undef OBF_STORE8
#endif

#if OBF_X86
/* Rows of at most OBF_PERM_MAX_COLS columns, AVX-512 (the short rows of small products,
 * e.g. attention heads, where the gather's scalar loads are the bottleneck): an input row
 * is held in up to 8 zmm registers and every 16 output columns are picked from them by
 * vpermt2ps (low 5 index bits) over register pairs, merged by masks on the upper bits.
 * The product is the same (in * cs) * rs as in every other kernel: bit-identical.
 * Accumulating passes walk the output rows in order and gather input rows (gather
 * direction): the read-modify-write of the output then streams instead of hopping over
 * randomly placed short rows; plain passes scatter input rows as the other kernels do. */
#define OBF_PERM_MAX_PAIRS 4 /* register pairs of 32 columns (more were slower than AVX2) */
#define OBF_PERM_MAX_COLS (32 * OBF_PERM_MAX_PAIRS)
#define OBF_PERM_AHEAD 4 /* input rows prefetched ahead in the gather direction */

/* NP register pairs (a compile-time constant, so the row stays in registers). */
__attribute__((target("avx512f"), always_inline)) static inline void
permute_rows_np(const obf_pass *p, int r0, int r1, const int NP) {
  const int C = p->cols, nreg = (C + 15) / 16;
  const bool acc = p->acc, gather = acc;
  __m512i idx[OBF_PERM_MAX_COLS / 16];
  __mmask16 sel[OBF_PERM_MAX_COLS / 16][OBF_PERM_MAX_PAIRS]; /* lanes of chunk q taken from pair r */
  __mmask16 lm[OBF_PERM_MAX_COLS / 16];     /* valid lanes of register / chunk q */
  __m512 cs[OBF_PERM_MAX_COLS / 16];
  for (int q = 0; q < 2 * NP; q++) {
    const int left = C - 16 * q;
    lm[q] = (__mmask16)(left >= 16 ? 0xffffu : left > 0 ? (1u << left) - 1u : 0u);
  }
  for (int q = 0; q < nreg; q++) {
    idx[q] = _mm512_maskz_loadu_epi32(lm[q], p->ci + 16 * q);
    cs[q] = _mm512_maskz_loadu_ps(lm[q], p->cs + 16 * q);
    const __m512i pair = _mm512_srli_epi32(idx[q], 5);
    for (int r = 0; r < NP; r++) sel[q][r] = _mm512_cmpeq_epi32_mask(pair, _mm512_set1_epi32(r));
  }
  for (int t = r0; t < r1; t++) {
    const uint32_t a = gather ? p->ri[t] : (uint32_t)t, i = gather ? (uint32_t)t : p->ro[t];
    if (gather && t + OBF_PERM_AHEAD < r1) {
      const char *pf = (const char *)in_row(p, p->ri[t + OBF_PERM_AHEAD]);
      for (int o = 0; o < C * 4; o += 64) __builtin_prefetch(pf + o, 0, 3);
    }
    const float *src = in_row(p, a);
    float *dst = p->out + (size_t)i * (size_t)C;
    /* named registers: an array indexed in loops went through the stack (2x slower) */
    __m512 r0v = _mm512_maskz_loadu_ps(lm[0], src), r1v = _mm512_maskz_loadu_ps(lm[1], src + 16);
    __m512 r2v = _mm512_setzero_ps(), r3v = r2v, r4v = r2v, r5v = r2v, r6v = r2v, r7v = r2v;
    if (NP > 1) r2v = _mm512_maskz_loadu_ps(lm[2], src + 32), r3v = _mm512_maskz_loadu_ps(lm[3], src + 48);
    if (NP > 2) r4v = _mm512_maskz_loadu_ps(lm[4], src + 64), r5v = _mm512_maskz_loadu_ps(lm[5], src + 80);
    if (NP > 3) r6v = _mm512_maskz_loadu_ps(lm[6], src + 96), r7v = _mm512_maskz_loadu_ps(lm[7], src + 112);
    const __m512 rs = _mm512_set1_ps(p->rs[i]);
    for (int q = 0; q < nreg; q++) {
      __m512 g = _mm512_permutex2var_ps(r0v, idx[q], r1v);
      if (NP > 1) g = _mm512_mask_mov_ps(g, sel[q][1], _mm512_permutex2var_ps(r2v, idx[q], r3v));
      if (NP > 2) g = _mm512_mask_mov_ps(g, sel[q][2], _mm512_permutex2var_ps(r4v, idx[q], r5v));
      if (NP > 3) g = _mm512_mask_mov_ps(g, sel[q][3], _mm512_permutex2var_ps(r6v, idx[q], r7v));
      const __m512 v = _mm512_mul_ps(_mm512_mul_ps(g, cs[q]), rs);
      if (acc)
        _mm512_mask_storeu_ps(dst + 16 * q, lm[q], _mm512_add_ps(_mm512_maskz_loadu_ps(lm[q], dst + 16 * q), v));
      else
        _mm512_mask_storeu_ps(dst + 16 * q, lm[q], v);
    }
    in_row_dots(p, a);
  }
}

__attribute__((target("avx512f"))) static void rows_permute_avx512(const obf_pass *p, int r0, int r1) {
  switch ((p->cols + 31) / 32) {
  case 1: permute_rows_np(p, r0, r1, 1); break;
  case 2: permute_rows_np(p, r0, r1, 2); break;
  case 3: permute_rows_np(p, r0, r1, 3); break;
  default: permute_rows_np(p, r0, r1, 4); break;
  }
}
#endif

/* The identity key: a copy, or a plain add when accumulating. */
static void rows_identity(const obf_pass *p, int r0, int r1) {
  size_t off = (size_t)r0 * (size_t)p->cols, n = (size_t)(r1 - r0) * (size_t)p->cols;
  if (!p->acc) {
    memcpy(p->out + off, in_row(p, (size_t)r0), n * sizeof(float));
    for (int a = r0; a < r1; a++) in_row_dots(p, (size_t)a);
    return;
  }
  float *restrict dst = p->out + off;
  const float *restrict src = in_row(p, (size_t)r0);
  for (size_t j = 0; j < n; j++) dst[j] += src[j];
}

/* The CPU features the kernels use, looked up once: bit 0 set when known, 1 AVX2, 2 AVX-512F, 3 FMA. */
static int cpu_features(void) {
#if OBF_X86
  static atomic_int cached = -1;
  int c = atomic_load(&cached);
  if (c < 0) {
    __builtin_cpu_init();
    c = 1 | (__builtin_cpu_supports("avx2") ? 2 : 0) | (__builtin_cpu_supports("avx512f") ? 4 : 0) |
        (__builtin_cpu_supports("fma") ? 8 : 0);
    atomic_store(&cached, c);
  }
  return c;
#else
  return 1;
#endif
}
static bool have_avx2(void) { return cpu_features() & 2; }
static bool have_avx512(void) { return cpu_features() & 4; }
static bool have_avx2_fma(void) { return (cpu_features() & 10) == 10; }

/* Whether pass p runs the AVX-512 permute kernel (rows_permute_avx512): short rows, no NT
 * stores (NT passes keep the AVX2 kernel's whole-line streaming), a CPU with AVX-512. */
static bool use_permute(const obf_pass *p, int kern) {
#if OBF_X86
  return (kern == TEMPO_OBF_KERNEL_AUTO || kern == TEMPO_OBF_KERNEL_PERMUTE) && !p->nt &&
         p->cols <= OBF_PERM_MAX_COLS && have_avx512();
#else
  (void)p, (void)kern;
  return false;
#endif
}

/* Rows [r0, r1): output rows for the naive kernel and the gather direction of the permute
 * kernel, input rows for the scatter kernels. */
static void run_rows_src(const obf_pass *p, int a0, int a1);

static void run_rows(const obf_pass *p, int r0, int r1) {
  if (p->src) {
    run_rows_src(p, r0, r1);
    return;
  }
  if (p->identity) {
    rows_identity(p, r0, r1);
    return;
  }
  int kern = atomic_load(&obf_kernel);
  /* a row range walks input rows: the naive kernel and accumulating permutes walk output rows */
  if (kern == TEMPO_OBF_KERNEL_NAIVE && !p->range) {
    rows_naive(p, r0, r1);
    return;
  }
#if OBF_X86
  if (use_permute(p, kern) && !(p->acc && p->range)) {
    rows_permute_avx512(p, r0, r1);
    return;
  }
  if (kern != TEMPO_OBF_KERNEL_SCATTER_SCALAR && kern != TEMPO_OBF_KERNEL_NAIVE && have_avx2()) {
    rows_scatter_avx2(p, r0, r1);
    return;
  }
#endif
  rows_scatter_scalar(p, r0, r1);
}

/* Floats of a row source's scratch (64-byte aligned, on the stack of each thread of a pass):
 * 16 KiB stays in L1 beside the kernel's indices and scales. */
#define OBF_SRC_FLOATS TEMPO_ROWS_MAX_COLS

/* Input rows [a0, a1) of a pass whose input is a row source: chunks of whole blocks of
 * OBF_BLOCK rows (one row when wider than a quarter of the scratch) are gathered into the
 * scratch and run through the same kernels as a range of a materialised input (in_row), so
 * every output float and check dot is the one the materialised pass gives. The identity key
 * (plain mode) gathers straight into the output rows, which are its X'. */
static void run_rows_src(const obf_pass *p, int a0, int a1) {
  _Alignas(64) float buf[OBF_SRC_FLOATS];
  const int C = p->cols;
  TEMPO_ASSERT(C >= 1 && C <= OBF_SRC_FLOATS && p->src->cols == C && !p->acc);
  int per = OBF_SRC_FLOATS / C;
  if (per >= OBF_BLOCK) per -= per % OBF_BLOCK;
  obf_pass q = *p;
  q.src = NULL;
  q.range = true;
  for (int a = a0; a < a1; a += per) {
    const int b = a1 - a < per ? a1 : a + per;
    float *dst = p->identity ? p->out + (size_t)a * (size_t)C : buf;
    p->src->fill(p->src->ctx, a, b, dst);
    q.in = dst, q.row0 = a, q.row1 = b;
    if (p->identity) {
      for (int r = a; r < b; r++) in_row_dots(&q, (size_t)r);
      continue;
    }
    run_rows(&q, a, b);
  }
}

int tempo_obf_parts(size_t elems, int units) {
  int t = tempo_parallel_threads();
  if ((size_t)t * TEMPO_OBF_MIN_ELEMS_PER_PART > elems) t = (int)(elems / TEMPO_OBF_MIN_ELEMS_PER_PART);
  if (t > units) t = units;
  return t < 1 ? 1 : t;
}

typedef struct {
  const obf_pass *p;
  int lo, n, parts;
} obf_split;

static void run_part(void *arg, int k) {
  const obf_split *s = arg;
  run_rows(s->p, s->lo + (int)((int64_t)s->n * k / s->parts), s->lo + (int)((int64_t)s->n * (k + 1) / s->parts));
}

/* Splits the rows (input rows [row0, row1) of a range) into parts on the master's threads
 * (the tempo_parallel pool) when the pass is large enough. */
static void run_pass(const obf_pass *p) {
  const int lo = p->range ? p->row0 : 0, n = p->range ? p->row1 - p->row0 : p->rows;
  const obf_split s = {.p = p, .lo = lo, .n = n, .parts = tempo_obf_parts((size_t)n * (size_t)p->cols, n)};
  if (s.parts <= 1)
    run_rows(p, lo, lo + n);
  else
    tempo_parallel_for(s.parts, run_part, (void *)&s);
}

/* One pass. rd/cd: the dimensions of output rows and columns; rperm: gather rows with pi
 * (Enc) or with pi^-1 (Dec); likewise cperm for columns; rs/cs: output row/column scales. */
static void pass_rows(const tempo_obf_key *k, int rows, int cols, const float *in, float *out,
                      const tempo_obf_dim *rd, bool rperm, const float *rs, const tempo_obf_dim *cd, bool cperm,
                      const float *cs, bool acc, int lo, int hi, const obf_pass *dots) {
  TEMPO_ASSERT(rd->size == rows && cd->size == cols && 0 <= lo && lo <= hi && hi <= rows);
  obf_pass p = {
      .rows = rows,
      .cols = cols,
      .in = in,
      .out = out,
      .ri = rperm ? rd->perm : rd->inv,
      .ro = rperm ? rd->inv : rd->perm,
      .rs = rs,
      .ci = cperm ? cd->perm : cd->inv,
      .cs = cs,
      .acc = acc,
      .identity = k->identity,
      .range = lo > 0 || hi < rows,
      .row0 = lo,
      .row1 = hi,
  };
  if (dots) { /* the check dots ride along (tempo_obf_enc_x_check, tempo_obf_dec_dx_rows_dots) */
    p.src = dots->src; /* and the Enc input's row source */
    p.ndots = dots->ndots;
    p.dots_in = dots->dots_in;
    p.dots_avx2 = have_avx2_fma();
    p.dcs = dots->dcs;
    for (int q = 0; q < dots->ndots; q++)
      p.du[q] = dots->du[q], p.dub[q] = dots->dub[q], p.dot[q] = dots->dot[q], p.dotb[q] = dots->dotb[q];
  }
  int kern = atomic_load(&obf_kernel);
  size_t bytes = (size_t)rows * (size_t)cols * sizeof(float);
  bool aligned = cols % 8 == 0 && ((uintptr_t)out & 31) == 0;
  bool large = bytes >= TEMPO_OBF_NT_BYTES && (size_t)cols * sizeof(float) < TEMPO_OBF_NT_MAX_ROW_BYTES;
  p.nt = !acc && aligned && (kern == TEMPO_OBF_KERNEL_SCATTER_NT || (kern == TEMPO_OBF_KERNEL_AUTO && large));
  run_pass(&p);
}

static void pass(const tempo_obf_key *k, int rows, int cols, const float *in, float *out, const tempo_obf_dim *rd,
                 bool rperm, const float *rs, const tempo_obf_dim *cd, bool cperm, const float *cs, bool acc) {
  pass_rows(k, rows, cols, in, out, rd, rperm, rs, cd, cperm, cs, acc, 0, rows, NULL);
}

/* Enc passes gather with pi and scale output index i by c[pi[i]] (coef_p / rcoef_p);
 * Dec passes gather with pi^-1 and scale output index a by c[a] (coef / rcoef). */

/* A key with mixing blocks: mix.c's pass with the same rows, columns and scales (the forms:
 * obf.h tempo_obf_key.mix). */
#define MIXED(enc, rows, cols, in, out, rd, ri, lf, rs, cd, ci, rf, cs, acc, lo, hi, dots)                      \
  tempo_obf_mix_pass(k, enc, rows, cols, in, out, &k->rd, ri, TEMPO_OBF_MIX_##lf, k->rd.rs, &k->cd, ci,            \
                     TEMPO_OBF_MIX_##rf, k->cd.cs, acc, lo, hi, dots, NULL)

/* X' of a key with mixing blocks from X or its row source xs (mix.c). */
static void enc_x_mixed(const tempo_obf_key *k, const float *X, const tempo_rows *xs, float *Xp,
                        const tempo_obf_mix_dots *md) {
  tempo_obf_mix_pass(k, true, k->m, k->n, X, Xp, &k->dm, 0, TEMPO_OBF_MIX_M, k->dm.coef_p, &k->dn, 1, TEMPO_OBF_MIX_M,
                     k->dn.coef_p, false, 0, k->m, md, xs);
}

/* X' from X, or from its row source xs when X is NULL (gathered chunk by chunk). */
static void enc_x(const tempo_obf_key *k, const float *X, const tempo_rows *xs, float *Xp) {
  if (k->mix) {
    enc_x_mixed(k, X, xs, Xp, NULL);
    return;
  }
  const obf_pass src = {.src = xs};
  pass_rows(k, k->m, k->n, X, Xp, &k->dm, true, k->dm.coef_p, &k->dn, true, k->dn.coef_p, false, 0, k->m, &src);
}

void tempo_obf_enc_x(const tempo_obf_key *k, const float *X, float *Xp) { enc_x(k, X, NULL, Xp); }

void tempo_obf_enc_x_rows(const tempo_obf_key *k, const tempo_rows *xs, float *Xp) {
  TEMPO_ASSERT(xs->rows == k->m && xs->cols == k->n && xs->cols <= TEMPO_ROWS_MAX_COLS);
  enc_x(k, NULL, xs, Xp);
}

/* tempo_obf_enc_x_check from X, or from its row source xs when X is NULL. */
static void enc_x_check(const tempo_obf_key *k, const float *X, const tempo_rows *xs, float *Xp, int ndots,
                        const double *const *w, const double *const *wb, double *const *y, double *const *yb,
                        double *u) {
  TEMPO_ASSERT(ndots >= 1 && ndots <= TEMPO_OBF_MAX_DOTS);
  const int n = k->n;
  if (k->mix) { /* the dots on the float rows as written: exact, no 2^-23 term */
    const tempo_obf_mix_dots md = {.ndots = ndots, .w = w, .wb = wb, .y = y, .yb = yb};
    enc_x_mixed(k, X, xs, Xp, &md);
    return;
  }
  /* X' row i . w = sum_j X'[i][j] w[j] with X'[i][j] = (X[pi_m[i]][pi_n[j]] c_n[pi_n[j]]) c_m[pi_m[i]]
   * formed in float exactly as the scatter forms it: move w, wb and the column scale to input
   * columns. dcs (n floats) lives in the unused second half of dot 0's float weights. */
  obf_pass d = {.ndots = ndots, .src = xs};
  float *dcs = (float *)(u + n) + n;
  for (int q = 0; q < ndots; q++) {
    double *a = u + (size_t)2 * q * n;
    float *b = (float *)(a + n); /* n floats in the first half of the second n doubles */
    for (int j = 0; j < n; j++) {
      const uint32_t c = k->identity ? (uint32_t)j : k->dn.perm[j];
      a[c] = w[q][j];
      b[c] = (float)wb[q][j] * (1.0f + 0x1p-22f); /* rounded up: the bound stays an upper bound */
      if (q == 0) dcs[c] = k->identity ? 1.0f : k->dn.coef_p[j];
    }
    d.du[q] = a, d.dub[q] = b, d.dot[q] = y[q], d.dotb[q] = yb[q];
  }
  d.dcs = dcs;
  pass_rows(k, k->m, n, X, Xp, &k->dm, true, k->dm.coef_p, &k->dn, true, k->dn.coef_p, false, 0, k->m, &d);
}

void tempo_obf_enc_x_check(const tempo_obf_key *k, const float *X, float *Xp, int ndots, const double *const *w,
                           const double *const *wb, double *const *y, double *const *yb, double *u) {
  enc_x_check(k, X, NULL, Xp, ndots, w, wb, y, yb, u);
}

void tempo_obf_enc_x_check_rows(const tempo_obf_key *k, const tempo_rows *xs, float *Xp, int ndots,
                                const double *const *w, const double *const *wb, double *const *y,
                                double *const *yb, double *u) {
  TEMPO_ASSERT(xs->rows == k->m && xs->cols == k->n && xs->cols <= TEMPO_ROWS_MAX_COLS);
  enc_x_check(k, NULL, xs, Xp, ndots, w, wb, y, yb, u);
}

void tempo_obf_enc_w(const tempo_obf_key *k, bool w_trans, const float *W, float *Wp) {
  if (k->mix && w_trans) /* W'_s = B_p^T W~_s B_n^-T */
    MIXED(true, k->p, k->n, W, Wp, dp, 2, T, coef_p, dn, 1, INVT, rcoef_p, false, 0, k->p, NULL);
  else if (k->mix) /* W' = B_n^-1 W~ B_p */
    MIXED(true, k->n, k->p, W, Wp, dn, 1, INV, rcoef_p, dp, 2, M, coef_p, false, 0, k->n, NULL);
  if (k->mix) return;
  if (w_trans)
    pass(k, k->p, k->n, W, Wp, &k->dp, true, k->dp.coef_p, &k->dn, true, k->dn.rcoef_p, false);
  else
    pass(k, k->n, k->p, W, Wp, &k->dn, true, k->dn.rcoef_p, &k->dp, true, k->dp.coef_p, false);
}

void tempo_obf_enc_dy(const tempo_obf_key *k, const float *dY, float *dYs) {
  if (k->mix) { /* dY* = B_m^-T dY~ B_p^-T */
    MIXED(true, k->m, k->p, dY, dYs, dm, 0, INVT, rcoef_p, dp, 2, INVT, rcoef_p, false, 0, k->m, NULL);
    return;
  }
  pass(k, k->m, k->p, dY, dYs, &k->dm, true, k->dm.rcoef_p, &k->dp, true, k->dp.rcoef_p, false);
}

void tempo_obf_dec_y(const tempo_obf_key *k, const float *Yp, float *Y) {
  if (k->mix) {
    tempo_obf_dec_y_rows(k, Yp, 0, k->m, Y);
    return;
  }
  pass(k, k->m, k->p, Yp, Y, &k->dm, false, k->dm.rcoef, &k->dp, false, k->dp.rcoef, false);
}

void tempo_obf_dec_dx(const tempo_obf_key *k, const float *dXp, float *dX, bool accumulate) {
  if (k->mix) {
    tempo_obf_dec_dx_rows(k, dXp, 0, k->m, dX, accumulate);
    return;
  }
  pass(k, k->m, k->n, dXp, dX, &k->dm, false, k->dm.coef, &k->dn, false, k->dn.coef, accumulate);
}

void tempo_obf_dec_y_rows(const tempo_obf_key *k, const float *Yp, int lo, int hi, float *Y) {
  if (k->mix) { /* Y~ = B_m^-1 Y' B_p^-1 */
    MIXED(false, k->m, k->p, Yp, Y, dm, 0, INV, rcoef_p, dp, 2, INV, rcoef_p, false, lo, hi, NULL);
    return;
  }
  pass_rows(k, k->m, k->p, Yp, Y, &k->dm, false, k->dm.rcoef, &k->dp, false, k->dp.rcoef, false, lo, hi, NULL);
}

void tempo_obf_dec_dx_rows_dots(const tempo_obf_key *k, const float *dXp, int lo, int hi, float *dX, int ndots,
                                const double *const *v, const float *const *vsq, double *const *y1,
                                double *const *y1b) {
  TEMPO_ASSERT(ndots >= 1 && ndots <= TEMPO_OBF_MAX_DOTS);
  if (k->mix) { /* dX~ = B_m^T dX' B_n^T; the dots on the reply's rows */
    const tempo_obf_mix_dots md = {.ndots = ndots, .w = v, .fb = vsq, .y = y1, .yb = y1b};
    MIXED(false, k->m, k->n, dXp, dX, dm, 0, T, coef_p, dn, 1, T, coef_p, false, lo, hi, &md);
    return;
  }
  obf_pass d = {.ndots = ndots, .dots_in = true};
  for (int q = 0; q < ndots; q++) d.du[q] = v[q], d.dub[q] = vsq[q], d.dot[q] = y1[q], d.dotb[q] = y1b[q];
  pass_rows(k, k->m, k->n, dXp, dX, &k->dm, false, k->dm.coef, &k->dn, false, k->dn.coef, false, lo, hi, &d);
}

void tempo_obf_dec_dx_rows(const tempo_obf_key *k, const float *dXp, int lo, int hi, float *dX, bool accumulate) {
  if (k->mix) {
    MIXED(false, k->m, k->n, dXp, dX, dm, 0, T, coef_p, dn, 1, T, coef_p, accumulate, lo, hi, NULL);
    return;
  }
  pass_rows(k, k->m, k->n, dXp, dX, &k->dm, false, k->dm.coef, &k->dn, false, k->dn.coef, accumulate, lo, hi, NULL);
}

void tempo_obf_dec_dw(const tempo_obf_key *k, bool w_trans, const float *dWp, float *dW, bool accumulate) {
  if (k->mix && w_trans) /* dW~_s = B_p dW'_s B_n^-1 */
    MIXED(false, k->p, k->n, dWp, dW, dp, 2, M, coef_p, dn, 1, INV, rcoef_p, accumulate, 0, k->p, NULL);
  else if (k->mix) /* dW~ = B_n^-T dW' B_p^T */
    MIXED(false, k->n, k->p, dWp, dW, dn, 1, INVT, rcoef_p, dp, 2, T, coef_p, accumulate, 0, k->n, NULL);
  if (k->mix) return;
  if (w_trans)
    pass(k, k->p, k->n, dWp, dW, &k->dp, false, k->dp.coef, &k->dn, false, k->dn.rcoef, accumulate);
  else
    pass(k, k->n, k->p, dWp, dW, &k->dn, false, k->dn.rcoef, &k->dp, false, k->dp.coef, accumulate);
}
