/* mix.c - the Enc/Dec passes of a key with mixing blocks (obf.h tempo_obf_key.mix; the
 * protection policy's MIXED route, docs/obfuscation.md "Mixing blocks").
 *
 * An Enc pass writes out = S_r L P(in) R S_c and a Dec pass out (+)= P^-1(L S_r in S_c R),
 * where P is the key's permutation of rows and columns (passes.c), S_r, S_c its diagonal
 * scales in the permuted index space (coef_p / rcoef_p: the same values the plain passes
 * use), and L, R the block-diagonal mixing matrices of the row and column dimensions in the
 * form the pass needs (TEMPO_OBF_MIX_*). The scales sit outside the mixing, so a block never
 * mixes rows (or columns) of different scales: the worker's rounding stays relative to each
 * row's own scale and the Dec's unscaling removes it before unmixing (mixing inside the
 * scales lost up to the scale range, 256, in relative precision). Both work on one block of b rows at a time with the b rows in
 * a scratch buffer (in L1/L2), so each pass still reads its input once and writes its output
 * once; the mixing adds 2b multiply-adds per element. Enc gathers b input rows (random rows,
 * each read in order within), mixes columns within each and rows across the b; Dec reads b
 * input rows in order, mixes them, and scatters each to its output row. */
#include <math.h>
#include <stdatomic.h>
#include <sodium.h>
#include <stdint.h>
#include <string.h>

#include "obf/obf_internal.h"
#include "tempo/parallel.h"
#include "tempo/common.h"
#include "tempo/obf.h"

/* out (cols) = row (cols) R, R block-diagonal with blocks of b (the last one t = cols mod b). */
static void right_mix(const float *restrict row, float *restrict out, int cols, int b, const float *R) {
  int j0 = 0;
  if (b == 2)
    for (; j0 + 2 <= cols; j0 += 2, R += 4) {
      const float x0 = row[j0], x1 = row[j0 + 1];
      out[j0] = x0 * R[0] + x1 * R[2];
      out[j0 + 1] = x0 * R[1] + x1 * R[3];
    }
  else if (b == 4)
    for (; j0 + 4 <= cols; j0 += 4, R += 16) {
      const float x0 = row[j0], x1 = row[j0 + 1], x2 = row[j0 + 2], x3 = row[j0 + 3];
      for (int c = 0; c < 4; c++) out[j0 + c] = x0 * R[c] + x1 * R[4 + c] + x2 * R[8 + c] + x3 * R[12 + c];
    }
  for (; j0 < cols; j0 += b, R += b * b) {
    const int t = cols - j0 < b ? cols - j0 : b;
    for (int c = 0; c < t; c++) {
      float a = 0;
      for (int k = 0; k < t; k++) a += row[j0 + k] * R[k * b + c];
      out[j0 + c] = a;
    }
  }
}

/* out = sum_k A[r b + k] h_k over the t rows of h (row stride cols). */
static void left_row(const float *A, int r, int b, int t, const float *h, int cols, float *restrict out) {
  const float a0 = A[r * b];
  for (int j = 0; j < cols; j++) out[j] = a0 * h[j];
  for (int k = 1; k < t; k++) {
    const float a = A[r * b + k];
    const float *hk = h + (size_t)k * cols;
    for (int j = 0; j < cols; j++) out[j] += a * hk[j];
  }
}

static void dots_row(const tempo_obf_mix_dots *d, const float *row, int cols, size_t idx) {
  for (int q = 0; q < d->ndots; q++) {
    double y = 0, yb = 0;
    const double *w = d->w[q];
    for (int j = 0; j < cols; j++) y += (double)row[j] * w[j];
    if (d->wb)
      for (int j = 0; j < cols; j++) yb += (double)row[j] * row[j] * d->wb[q][j];
    else
      for (int j = 0; j < cols; j++) yb += (double)row[j] * row[j] * d->fb[q][j];
    d->y[q][idx] = y, d->yb[q][idx] = yb;
  }
}


/* ---- b = 4 with AVX2 and FMA: 4x4 tiles in registers ---- */
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define MIX_X86 1

/* T = G R for a 4x4 tile: T_r = sum_k G_r[k] R_k */
__attribute__((target("avx2,fma"), always_inline)) static inline __m128 tile_right(__m128 g, const __m128 R[4]) {
  __m128 t = _mm_mul_ps(_mm_permute_ps(g, 0x00), R[0]);
  t = _mm_fmadd_ps(_mm_permute_ps(g, 0x55), R[1], t);
  t = _mm_fmadd_ps(_mm_permute_ps(g, 0xAA), R[2], t);
  return _mm_fmadd_ps(_mm_permute_ps(g, 0xFF), R[3], t);
}

/* Double dots of one row (cols % 4 == 0): y[q] = row . w[q], yb[q] = row^2 . (wb or fb)[q];
 * four accumulators each, so the FMA latency does not bound the loop. */
__attribute__((target("avx2,fma"))) static void dots_row_avx2(const tempo_obf_mix_dots *d, const float *row, int cols,
                                                              size_t idx) {
  for (int q = 0; q < d->ndots; q++) {
    __m256d y[4], yb[4];
    for (int u = 0; u < 4; u++) y[u] = yb[u] = _mm256_setzero_pd();
    const double *w = d->w[q];
    int j = 0;
    for (; j + 16 <= cols; j += 16)
      for (int u = 0; u < 4; u++) {
        const int jj = j + 4 * u;
        const __m256d x = _mm256_cvtps_pd(_mm_loadu_ps(row + jj));
        const __m256d wbv = d->wb ? _mm256_loadu_pd(d->wb[q] + jj) : _mm256_cvtps_pd(_mm_loadu_ps(d->fb[q] + jj));
        y[u] = _mm256_fmadd_pd(x, _mm256_loadu_pd(w + jj), y[u]);
        yb[u] = _mm256_fmadd_pd(_mm256_mul_pd(x, x), wbv, yb[u]);
      }
    for (; j < cols; j += 4) {
      const __m256d x = _mm256_cvtps_pd(_mm_loadu_ps(row + j));
      const __m256d wbv = d->wb ? _mm256_loadu_pd(d->wb[q] + j) : _mm256_cvtps_pd(_mm_loadu_ps(d->fb[q] + j));
      y[0] = _mm256_fmadd_pd(x, _mm256_loadu_pd(w + j), y[0]);
      yb[0] = _mm256_fmadd_pd(_mm256_mul_pd(x, x), wbv, yb[0]);
    }
    const __m256d ys = _mm256_add_pd(_mm256_add_pd(y[0], y[1]), _mm256_add_pd(y[2], y[3]));
    const __m256d ybs = _mm256_add_pd(_mm256_add_pd(yb[0], yb[1]), _mm256_add_pd(yb[2], yb[3]));
    double a[4], b[4];
    _mm256_storeu_pd(a, ys), _mm256_storeu_pd(b, ybs);
    d->y[q][idx] = (a[0] + a[1]) + (a[2] + a[3]), d->yb[q][idx] = (b[0] + b[1]) + (b[2] + b[3]);
  }
}

/* The input rows of the block of 4 sixteen output rows after i0 are random rows: prefetch them
 * into L2 (the hardware prefetcher cannot; measured on 65536 x 144 with AVX2: the next block's
 * into L1 20.5 ms, these 16.8 ms). */
static void prefetch_next4(const float *in, const tempo_rows *xs, int rows, int cols, int i0, const uint32_t *perm) {
  if (xs) { /* a row source: its own lines (rows.h) */
    tempo_rows_prefetch(xs, perm, i0 + 16, i0 + 20);
    return;
  }
  for (int r = 16; r < 20 && i0 + r < rows; r++) {
    const char *q = (const char *)(in + (size_t)perm[i0 + r] * cols);
    for (size_t off = 0; off < (size_t)cols * sizeof(float); off += 64) tempo_prefetch_l2(q + off);
  }
}

/* Enc of the 4 output rows i0.. i0+3 from their input rows s[0..3] (cols % 4 == 0). */
__attribute__((target("avx2,fma"))) static void enc_block4(const float *const s[4], float *out, int cols, int i0,
                                                           const uint32_t *ci, const float *A, const float *Rb,
                                                           const float *rs, const float *cs) {
  const float *s0 = s[0], *s1 = s[1], *s2 = s[2], *s3 = s[3];
  float *o = out + (size_t)i0 * cols;
  const __m128 r0 = _mm_set1_ps(rs[i0]), r1 = _mm_set1_ps(rs[i0 + 1]), r2 = _mm_set1_ps(rs[i0 + 2]),
               r3 = _mm_set1_ps(rs[i0 + 3]);
  for (int j0 = 0; j0 < cols; j0 += 4, Rb += 16) {
    const __m128 R[4] = {_mm_loadu_ps(Rb), _mm_loadu_ps(Rb + 4), _mm_loadu_ps(Rb + 8), _mm_loadu_ps(Rb + 12)};
    const uint32_t c0 = ci[j0], c1 = ci[j0 + 1], c2 = ci[j0 + 2], c3 = ci[j0 + 3];
    const __m128 t0 = tile_right(_mm_setr_ps(s0[c0], s0[c1], s0[c2], s0[c3]), R);
    const __m128 t1 = tile_right(_mm_setr_ps(s1[c0], s1[c1], s1[c2], s1[c3]), R);
    const __m128 t2 = tile_right(_mm_setr_ps(s2[c0], s2[c1], s2[c2], s2[c3]), R);
    const __m128 t3 = tile_right(_mm_setr_ps(s3[c0], s3[c1], s3[c2], s3[c3]), R);
    const __m128 c = _mm_loadu_ps(cs + j0);
    for (int r = 0; r < 4; r++) {
      __m128 v = _mm_mul_ps(_mm_set1_ps(A[r * 4]), t0);
      v = _mm_fmadd_ps(_mm_set1_ps(A[r * 4 + 1]), t1, v);
      v = _mm_fmadd_ps(_mm_set1_ps(A[r * 4 + 2]), t2, v);
      v = _mm_fmadd_ps(_mm_set1_ps(A[r * 4 + 3]), t3, v);
      const __m128 rr = r == 0 ? r0 : r == 1 ? r1 : r == 2 ? r2 : r3;
      _mm_storeu_ps(o + (size_t)r * cols + j0, _mm_mul_ps(_mm_mul_ps(v, c), rr));
    }
  }
}

/* Dec of the 4 input rows src.. (cols % 4 == 0) into h (4 rows): h = A (S_r src S_c) R. */
__attribute__((target("avx2,fma"))) static void dec_block4(const float *src, float *h, int cols, const float *A,
                                                           const float *Rb, const float *rs4, const float *cs) {
  const float *s0 = src, *s1 = src + cols, *s2 = src + 2 * (size_t)cols, *s3 = src + 3 * (size_t)cols;
  const __m128 r0 = _mm_set1_ps(rs4[0]), r1 = _mm_set1_ps(rs4[1]), r2 = _mm_set1_ps(rs4[2]), r3 = _mm_set1_ps(rs4[3]);
  for (int j0 = 0; j0 < cols; j0 += 4, Rb += 16) {
    const __m128 R[4] = {_mm_loadu_ps(Rb), _mm_loadu_ps(Rb + 4), _mm_loadu_ps(Rb + 8), _mm_loadu_ps(Rb + 12)};
    const __m128 c = _mm_loadu_ps(cs + j0);
    const __m128 g0 = _mm_mul_ps(_mm_mul_ps(_mm_loadu_ps(s0 + j0), c), r0);
    const __m128 g1 = _mm_mul_ps(_mm_mul_ps(_mm_loadu_ps(s1 + j0), c), r1);
    const __m128 g2 = _mm_mul_ps(_mm_mul_ps(_mm_loadu_ps(s2 + j0), c), r2);
    const __m128 g3 = _mm_mul_ps(_mm_mul_ps(_mm_loadu_ps(s3 + j0), c), r3);
    for (int r = 0; r < 4; r++) {
      __m128 u = _mm_mul_ps(_mm_set1_ps(A[r * 4]), g0);
      u = _mm_fmadd_ps(_mm_set1_ps(A[r * 4 + 1]), g1, u);
      u = _mm_fmadd_ps(_mm_set1_ps(A[r * 4 + 2]), g2, u);
      u = _mm_fmadd_ps(_mm_set1_ps(A[r * 4 + 3]), g3, u);
      _mm_storeu_ps(h + (size_t)r * cols + j0, tile_right(u, R));
    }
  }
}

/* Dec's scatter of the 4 unmixed rows h to their output rows: o_r[j] (+)= h_r[ci[j]], the 4
 * rows sharing each column index (cols % 4 == 0). */
__attribute__((target("avx2"))) static void scatter4(const float *h, int cols, const uint32_t *ci, float *const o[4],
                                                     bool acc) {
  const float *h0 = h, *h1 = h + cols, *h2 = h + 2 * (size_t)cols, *h3 = h + 3 * (size_t)cols;
  int j = 0;
  for (; j + 8 <= cols; j += 8) {
    const uint32_t c0 = ci[j], c1 = ci[j + 1], c2 = ci[j + 2], c3 = ci[j + 3], c4 = ci[j + 4], c5 = ci[j + 5],
                   c6 = ci[j + 6], c7 = ci[j + 7];
    __m256 v[4] = {_mm256_setr_ps(h0[c0], h0[c1], h0[c2], h0[c3], h0[c4], h0[c5], h0[c6], h0[c7]),
                   _mm256_setr_ps(h1[c0], h1[c1], h1[c2], h1[c3], h1[c4], h1[c5], h1[c6], h1[c7]),
                   _mm256_setr_ps(h2[c0], h2[c1], h2[c2], h2[c3], h2[c4], h2[c5], h2[c6], h2[c7]),
                   _mm256_setr_ps(h3[c0], h3[c1], h3[c2], h3[c3], h3[c4], h3[c5], h3[c6], h3[c7])};
    for (int r = 0; r < 4; r++) {
      if (acc) v[r] = _mm256_add_ps(_mm256_loadu_ps(o[r] + j), v[r]);
      _mm256_storeu_ps(o[r] + j, v[r]);
    }
  }
  for (; j < cols; j++) {
    const uint32_t c = ci[j];
    const float v[4] = {h0[c], h1[c], h2[c], h3[c]};
    for (int r = 0; r < 4; r++) o[r][j] = acc ? o[r][j] + v[r] : v[r];
  }
}
#else
#define MIX_X86 0
#endif

static atomic_int mix_isa_max = TEMPO_OBF_MIX_ISA_AVX512; /* tests: the best kernels passes may use */
void tempo_obf_mix_set_isa(int isa) {
  atomic_store(&mix_isa_max, isa < TEMPO_OBF_MIX_ISA_SCALAR ? TEMPO_OBF_MIX_ISA_AVX512 : isa);
}
void tempo_obf_mix_force_scalar(bool on) {
  tempo_obf_mix_set_isa(on ? TEMPO_OBF_MIX_ISA_SCALAR : TEMPO_OBF_MIX_ISA_AUTO);
}

int tempo_obf_mix_isa(void) {
#if MIX_X86
  static atomic_int cached = -1;
  int c = atomic_load(&cached);
  if (c < 0) {
    __builtin_cpu_init();
    c = !__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma") ? TEMPO_OBF_MIX_ISA_SCALAR
        : __builtin_cpu_supports("avx512f")                                ? TEMPO_OBF_MIX_ISA_AVX512
                                                                           : TEMPO_OBF_MIX_ISA_AVX2;
    atomic_store(&cached, c);
  }
  return c;
#else
  return TEMPO_OBF_MIX_ISA_SCALAR;
#endif
}

int tempo_obf_mix_isa_used(void) {
  const int best = tempo_obf_mix_isa(), max = atomic_load(&mix_isa_max);
  return best < max ? best : max;
}

/* The kernels a pass with block size b on rows of cols uses (the tiles need b = 4, cols % 4 == 0;
 * the 16-column tiles' scratch cols >= 8). */
static int mix_isa(int b, int cols) {
  if (b != 4 || cols % 4) return TEMPO_OBF_MIX_ISA_SCALAR;
  const int isa = tempo_obf_mix_isa_used();
  return isa == TEMPO_OBF_MIX_ISA_AVX512 && cols < 8 ? TEMPO_OBF_MIX_ISA_AVX2 : isa;
}

/* Input row a of an Enc pass: in's row a, or (src) row a gathered into buf (cols floats). */
static const float *enc_row(const float *in, const tempo_rows *src, uint32_t a, int cols, float *buf) {
  if (!src) return in + (size_t)a * cols;
  src->fill(src->ctx, (int)a, (int)a + 1, buf);
  return buf;
}

/* tempo_obf_mix_pass over rows [lo, hi) on the calling thread, with scratch (3 b cols + 64
 * floats) for the blocks in flight. */
static void mix_range(const tempo_obf_key *k, bool enc, int rows, int cols, const float *in, float *out,
                      const tempo_obf_dim *rd, int rdim, int lform, const float *rs, const tempo_obf_dim *cd, int cdim,
                      int rform, const float *cs, bool acc, int lo, int hi, const tempo_obf_mix_dots *dots,
                      const tempo_rows *xs, float *scratch) {
  const int b = k->mix;
  const float *L = k->mixd[rdim][lform], *R = k->mixd[cdim][rform];
  float *g = scratch, *h = g + (size_t)b * cols, *f = h + (size_t)b * cols;
  const uint32_t *perm = rd->perm;
  const int isa = mix_isa(b, cols);
  const bool fast = isa == TEMPO_OBF_MIX_ISA_AVX2;
  int start = lo; /* the blocks left to the loops below */
  if (isa == TEMPO_OBF_MIX_ISA_AVX512) /* whole blocks; a last smaller one below */
    start = tempo_obf_mix_pass512(enc, rows, cols, in, out, perm, enc ? cd->perm : cd->inv, L, R, rs, cs, acc, lo, hi,
                                  dots, enc ? xs : NULL, g);
  if (enc) { /* output rows i0.. i0+t: gather, mix columns, mix rows, scale */
    const uint32_t *ci = cd->perm;
    for (int i0 = start; i0 < hi; i0 += b) {
      const int t = rows - i0 < b ? rows - i0 : b;
      const float *A = L + (size_t)(i0 / b) * b * b;
#if MIX_X86
      if (fast && t == 4) {
        const float *sr[4]; /* f (b rows) holds gathered rows: Enc does not use it otherwise */
        for (int r = 0; r < 4; r++) sr[r] = enc_row(in, xs, perm[i0 + r], cols, f + (size_t)r * cols);
        prefetch_next4(in, xs, rows, cols, i0, perm);
        enc_block4(sr, out, cols, i0, ci, A, R, rs, cs);
        for (int r = 0; dots && r < 4; r++) dots_row_avx2(dots, out + (size_t)(i0 + r) * cols, cols, (size_t)(i0 + r));
        continue;
      }
#endif
      for (int r = 0; r < t; r++) {
        const float *x = enc_row(in, xs, perm[i0 + r], cols, f + (size_t)r * cols);
        float *gr = g + (size_t)r * cols;
        for (int j = 0; j < cols; j++) gr[j] = x[ci[j]];
        right_mix(gr, h + (size_t)r * cols, cols, b, R);
      }
      for (int r = 0; r < t; r++) {
        float *o = out + (size_t)(i0 + r) * cols;
        left_row(A, r, b, t, h, cols, o);
        const float s = rs[i0 + r];
        for (int j = 0; j < cols; j++) o[j] = o[j] * cs[j] * s;
        if (dots) dots_row(dots, o, cols, (size_t)(i0 + r));
      }
    }
    return;
  }
  /* Dec: input rows a0.. a0+t (in holds rows [lo, hi)): scale, mix rows, mix columns, scatter */
  const uint32_t *ci = cd->inv;
  for (int a0 = start; a0 < hi; a0 += b) {
    const int t = rows - a0 < b ? rows - a0 : b;
    const float *A = L + (size_t)(a0 / b) * b * b;
    const float *src = in + (size_t)(a0 - lo) * cols;
#if MIX_X86
    if (fast && t == 4) {
      for (int r = 0; dots && r < 4; r++) dots_row_avx2(dots, src + (size_t)r * cols, cols, (size_t)(a0 - lo + r));
      dec_block4(src, h, cols, A, R, rs + a0, cs);
      float *const o[4] = {out + (size_t)perm[a0] * cols, out + (size_t)perm[a0 + 1] * cols,
                           out + (size_t)perm[a0 + 2] * cols, out + (size_t)perm[a0 + 3] * cols};
      scatter4(h, cols, ci, o, acc);
      continue;
    }
#endif
    {
    if (dots)
      for (int r = 0; r < t; r++) dots_row(dots, src + (size_t)r * cols, cols, (size_t)(a0 - lo + r));
    for (int r = 0; r < t; r++) {
      const float *sr = src + (size_t)r * cols;
      float *gr = g + (size_t)r * cols;
      const float s = rs[a0 + r];
      for (int j = 0; j < cols; j++) gr[j] = sr[j] * cs[j] * s;
    }
    for (int r = 0; r < t; r++) {
      left_row(A, r, b, t, g, cols, f);
      right_mix(f, h + (size_t)r * cols, cols, b, R);
    }
    }
    for (int r = 0; r < t; r++) {
      const float *hr = h + (size_t)r * cols;
      float *o = out + (size_t)perm[a0 + r] * cols;
      if (acc)
        for (int j = 0; j < cols; j++) o[j] += hr[ci[j]];
      else
        for (int j = 0; j < cols; j++) o[j] = hr[ci[j]];
    }
  }
}

/* ---- the pass over the master's threads ---- */

/* Parts of a pass split over the master's threads (tempo_parallel_for). Part 0 runs with the
 * key's scratch; the others with their thread's own, grown once per thread (a fresh page costs
 * a first touch) and its used part wiped after each part (it held plaintext rows). A part
 * whose thread cannot get scratch is left to the caller, which runs it after the others. */
enum { MIX_PARTS_MAX = 16 };

typedef struct {
  const tempo_obf_key *k;
  bool enc, acc;
  int rows, cols, rdim, lform, cdim, rform, lo, hi, parts;
  const float *in, *rs, *cs;
  float *out;
  const tempo_obf_dim *rd, *cd;
  const tempo_obf_mix_dots *dots;
  const tempo_rows *xs;
  bool left[MIX_PARTS_MAX]; /* parts not run for want of scratch */
} mix_job;

static _Thread_local float *part_scratch;
static _Thread_local size_t part_scratch_floats;

static size_t scratch_floats(const mix_job *j) { return 3 * (size_t)j->k->mix * (size_t)j->cols + 64; }

/* Part t: whole blocks of b rows, the last part ending at hi. A Dec part reads its own rows of
 * in and its dots index rows from its start (the pass's dots index input rows from lo), so both
 * move with it; Enc reads and indexes by output row and needs no change. */
static void mix_part_with(const mix_job *j, int t, float *scratch) {
  const int b = j->k->mix, blocks = (j->hi - j->lo + b - 1) / b;
  const int a = j->lo + (int)((int64_t)blocks * t / j->parts) * b;
  const int e = t + 1 == j->parts ? j->hi : j->lo + (int)((int64_t)blocks * (t + 1) / j->parts) * b;
  if (a >= e) return;
  const float *in = j->in;
  const tempo_obf_mix_dots *dots = j->dots;
  tempo_obf_mix_dots d;
  double *y[TEMPO_OBF_MAX_DOTS], *yb[TEMPO_OBF_MAX_DOTS];
  if (!j->enc) {
    in += (size_t)(a - j->lo) * (size_t)j->cols;
    if (dots) {
      d = *dots;
      for (int q = 0; q < d.ndots; q++) y[q] = d.y[q] + (a - j->lo), yb[q] = d.yb[q] + (a - j->lo);
      d.y = y, d.yb = yb;
      dots = &d;
    }
  }
  mix_range(j->k, j->enc, j->rows, j->cols, in, j->out, j->rd, j->rdim, j->lform, j->rs, j->cd, j->cdim, j->rform, j->cs,
            j->acc, a, e, dots, j->xs, scratch);
}

static void mix_part(void *arg, int t) {
  mix_job *j = arg;
  if (t == 0) {
    mix_part_with(j, 0, j->k->mix_tmp);
    return;
  }
  const size_t need = scratch_floats(j);
  if (part_scratch_floats < need) {
    tempo_free_floats(part_scratch);
    part_scratch = tempo_alloc_floats(need);
    part_scratch_floats = part_scratch ? need : 0;
  }
  if (!part_scratch) {
    j->left[t] = true;
    return;
  }
  mix_part_with(j, t, part_scratch);
  sodium_memzero(part_scratch, need * sizeof(float));
}

void tempo_obf_mix_pass(const tempo_obf_key *k, bool enc, int rows, int cols, const float *in, float *out,
                        const tempo_obf_dim *rd, int rdim, int lform, const float *rs, const tempo_obf_dim *cd,
                        int cdim, int rform, const float *cs, bool acc, int lo, int hi,
                        const tempo_obf_mix_dots *dots, const tempo_rows *xs) {
  const int b = k->mix;
  TEMPO_ASSERT(b >= 1 && rd->size == rows && cd->size == cols && 0 <= lo && lo <= hi && hi <= rows &&
               lo % b == 0 && (hi % b == 0 || hi == rows));
  int parts = tempo_obf_parts((size_t)(hi - lo) * (size_t)cols, (hi - lo) / b); /* whole blocks */
  if (parts > MIX_PARTS_MAX) parts = MIX_PARTS_MAX;
  if (parts <= 1) {
    mix_range(k, enc, rows, cols, in, out, rd, rdim, lform, rs, cd, cdim, rform, cs, acc, lo, hi, dots, xs, k->mix_tmp);
    return;
  }
  mix_job j = {.k = k, .enc = enc, .acc = acc, .rows = rows, .cols = cols, .rdim = rdim, .lform = lform, .cdim = cdim,
               .rform = rform, .lo = lo, .hi = hi, .parts = parts, .in = in, .rs = rs, .cs = cs, .out = out,
               .rd = rd, .cd = cd, .dots = dots, .xs = xs};
  tempo_parallel_for(parts, mix_part, &j);
  for (int t = 1; t < parts; t++)
    if (j.left[t]) mix_part_with(&j, t, k->mix_tmp);
}
