/* f64.c - float64 shares for shield mode (shield.h, docs/shield.md): double masks, the
 * Enc passes on double operands, the signed accumulation of double shares and Freivalds'
 * check of a float64 product. Master side only (it reads keys). */
#include <math.h>
#include <sodium.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "tempo/obf.h"
#include "tempo/rng.h"
#include "tempo/shield.h"
#include "fused.h"
#include "mask_stream.h"

/* The float32 expansion's distribution (Irwin-Hall n = 4 of 32-bit uniforms, mask.c)
 * plus a fifth 32-bit uniform below the last bit of the sum. Without it the mask would lie
 * on a lattice of spacing sqrt(3) sigma 2^-32, far coarser than the double rounding of
 * x + r (2^-52 sigma), and x modulo that lattice would show through. With it r is
 * continuous down to its own double rounding, so x + r rounds like x + (a continuous r).
 *
 * A chunk's words are laid out in blocks of TEMPO_SHIELD_F64_LANES values: word
 * 5 L b + L k + l is uniform k of value L b + l (planes, so eight values load as five
 * vectors). Each uniform u enters as the exact integer u - 2^31, the sum of four such is
 * exact in a double, and (sum + u_4 2^-32) and its product with the scale are rounded once
 * each, in the scalar and the vector form alike: both give the same doubles. */
#define LANES TEMPO_SHIELD_F64_LANES

static double value64(const uint32_t *blk, int l, double scale) {
  const int64_t sum = (int64_t)blk[l] + blk[LANES + l] + blk[2 * LANES + l] + blk[3 * LANES + l] - ((int64_t)1 << 33);
  return ((double)sum + (double)blk[4 * LANES + l] * 0x1p-32) * scale;
}

/* out[i] for i in [from, to): values pos + i of s's chunk */
static void values_one_by_one(const tempo_shield_stream *s, double *out, size_t from, size_t to) {
  for (size_t i = from; i < to; i++) {
    const int v = s->pos + (int)i;
    out[i] = value64(s->buf + 5 * (size_t)(v - v % LANES), v % LANES, s->scale);
  }
}

#if defined(__x86_64__)
__attribute__((target("avx2"))) static __m256d centred(const uint32_t *u, int half) {
  const __m128i v = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(u + 4 * half)), _mm_set1_epi32(INT32_MIN));
  return _mm256_cvtepi32_pd(v); /* u - 2^31, exactly */
}

/* Blocks [0, nb) of buf into out (nb * LANES values). */
__attribute__((target("avx2"))) static void blocks_avx2(const uint32_t *buf, int nb, double scale, double *out) {
  const __m256d sc = _mm256_set1_pd(scale), lo = _mm256_set1_pd(0x1p-32), half31 = _mm256_set1_pd(0x1p31);
  for (int b = 0; b < nb; b++, buf += 5 * LANES, out += LANES)
    for (int h = 0; h < LANES / 4; h++) {
      const __m256d sum = _mm256_add_pd(_mm256_add_pd(_mm256_add_pd(centred(buf, h), centred(buf + LANES, h)),
                                                      centred(buf + 2 * LANES, h)),
                                        centred(buf + 3 * LANES, h));
      const __m256d u4 = _mm256_add_pd(centred(buf + 4 * LANES, h), half31); /* exact */
      _mm256_storeu_pd(out + 4 * h, _mm256_mul_pd(_mm256_add_pd(sum, _mm256_mul_pd(u4, lo)), sc));
    }
}
#endif

void tempo_shield_draw64(tempo_shield_stream *s, double *out, size_t n) {
#if defined(__x86_64__)
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2");
#endif
  while (n > 0) {
    if (s->pos == s->have) tempo_shield_stream_refill(s);
    size_t k = (size_t)(s->have - s->pos);
    if (k > n) k = n;
    size_t i = 0;
#if defined(__x86_64__)
    if (avx2) { /* up to a block boundary one by one, then whole blocks */
      i = (size_t)((LANES - s->pos % LANES) % LANES);
      i = i < k ? i : k;
      values_one_by_one(s, out, 0, i);
      const size_t nb = (k - i) / LANES;
      blocks_avx2(s->buf + 5 * (size_t)(s->pos + (int)i), (int)nb, s->scale, out + i);
      i += nb * LANES;
    }
#endif
    values_one_by_one(s, out, i, k);
    s->pos += (int)k, out += k, n -= k;
  }
}

void tempo_shield_expand64(const uint8_t seed[TEMPO_SHIELD_SEED_BYTES], double sigma, double *out, size_t n) {
  tempo_shield_stream s;
  tempo_shield_stream_init(&s, seed, sigma, true);
  tempo_shield_draw64(&s, out, n);
  tempo_shield_stream_wipe(&s);
}

double tempo_shield_rms64(const double *x, size_t n) {
  if (n == 0) return 0;
  double s = 0;
  for (size_t i = 0; i < n; i++) s += x[i] * x[i];
  return sqrt(s / (double)n);
}

void tempo_shield_accumulate64(double *acc, const double *share, int sign, size_t n) {
  if (sign > 0)
    for (size_t i = 0; i < n; i++) acc[i] += share[i];
  else
    for (size_t i = 0; i < n; i++) acc[i] -= share[i];
}

/* out[i][j] = rs[i] cs[j] in[ri[i]][ci[j]], the Enc gather of passes.c in double */
static void pass64(const tempo_shield_gather *g, const double *in, double *out) {
  if (!g->ri) {
    memcpy(out, in, (size_t)g->rows * g->cols * sizeof *in);
    return;
  }
  for (int i = 0; i < g->rows; i++) {
    const double *src = in + (size_t)g->ri[i] * g->cols;
    double *dst = out + (size_t)i * g->cols;
    const double r = g->rs[i];
    for (int j = 0; j < g->cols; j++) dst[j] = r * (double)g->cs[j] * src[g->ci[j]];
  }
}

void tempo_shield_enc_x64(const tempo_obf_key *k, const double *X, double *Xp) {
  const tempo_shield_gather g = tempo_shield_gather_of(k, TEMPO_SHIELD_OPERAND_X, false);
  pass64(&g, X, Xp);
}

void tempo_shield_enc_w64(const tempo_obf_key *k, bool w_trans, const double *W, double *Wp) {
  const tempo_shield_gather g = tempo_shield_gather_of(k, TEMPO_SHIELD_OPERAND_W, w_trans);
  pass64(&g, W, Wp);
}

void tempo_shield_enc_dy64(const tempo_obf_key *k, const double *dY, double *dYs) {
  const tempo_shield_gather g = tempo_shield_gather_of(k, TEMPO_SHIELD_OPERAND_DY, false);
  pass64(&g, dY, dYs);
}

/* y = op(M) x and yb = |op(M)| xb with op(M) (rows, cols): M stored (rows, cols), or
 * (cols, rows) with trans. Row dots use four partial sums; the transposed form sweeps M's
 * stored rows (axpy order). */
void tempo_shield_matvec64(int rows, int cols, const double *M, bool trans, const double *x, const double *xb,
                           double *y, double *yb) {
  if (!trans) {
    for (int i = 0; i < rows; i++) tempo_shield_dot2(M + (size_t)i * cols, cols, x, xb, &y[i], &yb[i]);
    return;
  }
  for (int i = 0; i < rows; i++) y[i] = 0, yb[i] = 0;
  for (int l = 0; l < cols; l++) tempo_shield_axpy2(rows, M + (size_t)l * rows, x[l], xb[l], y, yb);
}

double tempo_shield_check_vector(tempo_rng *rng, double *v, double *vabs, int n) {
  double vmax = 0;
  for (int j = 0; j < n; j++) {
    const uint64_t x = tempo_rng_u64(rng);
    const double mag = 0.5 + 0.5 * (double)(x >> 11) * 0x1p-53; /* [0.5, 1) */
    v[j] = (x & 1) ? -mag : mag;
    vabs[j] = mag;
    vmax = mag > vmax ? mag : vmax;
  }
  return vmax;
}

tempo_status tempo_shield_verify64(int r, int k, int c, const double *A, bool a_trans, const double *B, bool b_trans,
                                   const double *C, int rounds, uint64_t rng_seed, double *work) {
  if (r < 1 || k < 1 || c < 1 || rounds < 1 || !A || !B || !C || !work)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "shield check: bad arguments (%d, %d, %d, rounds %d)", r, k,
                           c, rounds);
  double *v = work, *vabs = v + c, *w = vabs + c, *wb = w + k, *y2 = wb + k, *yb = y2 + r;
  const double factor = TEMPO_VERIFY_SAFETY * (2.0 * ((double)k + (double)c) + 8.0) * 0x1p-53;
  for (int round = 0; round < rounds; round++) {
    tempo_rng rng;
    tempo_rng_seed(&rng, rng_seed, 0x7368696564363400ULL + (uint64_t)round);
    const double vmax = tempo_shield_check_vector(&rng, v, vabs, c);
    tempo_shield_matvec64(k, c, B, b_trans, v, vabs, w, wb); /* w = op(B) v (k) */
    tempo_shield_matvec64(r, k, A, a_trans, w, wb, y2, yb);  /* y2 = op(A) w (r) */
    const double tiny = (double)k * (double)c * vmax * 0x1p-1022;
    for (int i = 0; i < r; i++) {
      const double y1 = tempo_shield_dot(C + (size_t)i * c, v, c);
      if (!isfinite(y1))
        return tempo_set_error(TEMPO_STATUS_VERIFY_FAILED, "shield check: non-finite value in result row %d of (%d, %d)",
                               i, r, c);
      const double diff = fabs(y1 - y2[i]), tol = factor * yb[i] + tiny;
      if (!(diff <= tol))
        return tempo_set_error(TEMPO_STATUS_VERIFY_FAILED,
                               "shield check failed: row %d of (%d, %d) x (%d), round %d: |Cv - A(Bv)| = %.3g > %.3g", i,
                               r, c, k, round, diff, tol);
    }
  }
  return TEMPO_STATUS_OK;
}
