/* blind.c - the master's one-pass masking and blinding of a shield operand (shield.h).
 *
 * Shield keys are tempo keys without mixing blocks, so Enc is a gather (row and column
 * permutations) with a scale per output row and column: Enc(A)_ij = rs_i cs_j A[ri_i][ci_j].
 * The masks R = Enc(R0) of an iid mask R0 are then R_ij = rs_i cs_j R0[ri_i][ci_j], and
 * since the permutations are bijections the values R0[ri_i][ci_j] are themselves iid with
 * R0's distribution. So the pass draws them in output order from the seed's stream and
 * writes both shares as it gathers A:
 *     mask_ij = rs_i cs_j r_ij,   masked_ij = rs_i cs_j (A[ri_i][ci_j] + r_ij)
 * which is Enc(A + R0) and Enc(R0) for R0 = the stream laid out by the inverse gather:
 * the same joint distribution (and the same rounding) as masking before Enc, without the
 * mask and sum buffers or a second Enc pass. Per element it reads A once and writes the
 * two shares once. Master side only (it reads keys). */
#include <math.h>
#include <sodium.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define BL_X86 1
#endif

#include "fused.h"
#include "mask_stream.h"
#include "tempo/obf.h"
#include "tempo/shield.h"

#define CHUNK 256 /* mask values drawn at a time */

tempo_shield_gather tempo_shield_gather_of(const tempo_obf_key *k, int operand, bool w_trans) {
  tempo_shield_gather g = {0};
  if (operand == TEMPO_SHIELD_OPERAND_X) g = (tempo_shield_gather){k->m, k->n, k->dm.perm, k->dm.coef_p, k->dn.perm, k->dn.coef_p};
  else if (operand == TEMPO_SHIELD_OPERAND_W && w_trans)
    g = (tempo_shield_gather){k->p, k->n, k->dp.perm, k->dp.coef_p, k->dn.perm, k->dn.rcoef_p};
  else if (operand == TEMPO_SHIELD_OPERAND_W)
    g = (tempo_shield_gather){k->n, k->p, k->dn.perm, k->dn.rcoef_p, k->dp.perm, k->dp.coef_p};
  else g = (tempo_shield_gather){k->m, k->p, k->dm.perm, k->dm.rcoef_p, k->dp.perm, k->dp.rcoef_p};
  if (k->identity) g.ri = g.ci = NULL, g.rs = g.cs = NULL;
  return g;
}

/* *ys = row . x, *yb = |row| . xb (n doubles): four partial sums, as the checks' dots */
static void dot2_c(const double *row, int n, const double *x, const double *xb, double *ys, double *yb) {
  double s[4] = {0, 0, 0, 0}, b[4] = {0, 0, 0, 0};
  int j = 0;
  for (; j + 4 <= n; j += 4)
    for (int q = 0; q < 4; q++) s[q] += row[j + q] * x[j + q], b[q] += fabs(row[j + q]) * xb[j + q];
  for (; j < n; j++) s[0] += row[j] * x[j], b[0] += fabs(row[j]) * xb[j];
  *ys = (s[0] + s[1]) + (s[2] + s[3]);
  *yb = (b[0] + b[1]) + (b[2] + b[3]);
}

#if BL_X86
__attribute__((target("avx2,fma"))) static double hsum(__m256d a) {
  __m128d s = _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
  return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

__attribute__((target("avx2,fma"))) static void dot2_avx2(const double *row, int n, const double *x, const double *xb,
                                                         double *ys, double *yb) {
  const __m256d absmask = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7fffffffffffffffLL));
  __m256d s0 = _mm256_setzero_pd(), s1 = s0, b0 = s0, b1 = s0;
  int j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m256d r0 = _mm256_loadu_pd(row + j), r1 = _mm256_loadu_pd(row + j + 4);
    s0 = _mm256_fmadd_pd(r0, _mm256_loadu_pd(x + j), s0);
    s1 = _mm256_fmadd_pd(r1, _mm256_loadu_pd(x + j + 4), s1);
    b0 = _mm256_fmadd_pd(_mm256_and_pd(r0, absmask), _mm256_loadu_pd(xb + j), b0);
    b1 = _mm256_fmadd_pd(_mm256_and_pd(r1, absmask), _mm256_loadu_pd(xb + j + 4), b1);
  }
  double s = hsum(_mm256_add_pd(s0, s1)), b = hsum(_mm256_add_pd(b0, b1));
  for (; j < n; j++) s += row[j] * x[j], b += fabs(row[j]) * xb[j];
  *ys = s, *yb = b;
}
#endif

typedef void (*dot2_fn)(const double *, int, const double *, const double *, double *, double *);
static dot2_fn pick_dot2(void) {
#if BL_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return dot2_avx2;
#endif
  return dot2_c;
}

void tempo_shield_blind64(const tempo_obf_key *k, int operand, bool w_trans, const uint8_t seed[TEMPO_SHIELD_SEED_BYTES],
                          double sigma, const float *A, double *masked, double *mask, const tempo_shield_rowdots *rd) {
  const dot2_fn dot2 = rd && rd->count ? pick_dot2() : NULL;
  const tempo_shield_gather g = tempo_shield_gather_of(k, operand, w_trans);
  tempo_shield_stream st;
  tempo_shield_stream_init(&st, seed, sigma, true);
  double r[CHUNK];
  for (int i = 0; i < g.rows; i++) {
    const float *src = A + (size_t)(g.ri ? g.ri[i] : (uint32_t)i) * g.cols;
    double *dm = masked + (size_t)i * g.cols, *dr = mask + (size_t)i * g.cols;
    const double rsi = g.rs ? g.rs[i] : 1.0;
    for (int j0 = 0; j0 < g.cols; j0 += CHUNK) {
      const int nj = g.cols - j0 < CHUNK ? g.cols - j0 : CHUNK;
      tempo_shield_draw64(&st, r, (size_t)nj);
      if (g.ri)
        for (int j = 0; j < nj; j++) {
          const double rc = rsi * (double)g.cs[j0 + j];
          dm[j0 + j] = rc * ((double)src[g.ci[j0 + j]] + r[j]);
          dr[j0 + j] = rc * r[j];
        }
      else
        for (int j = 0; j < nj; j++) dm[j0 + j] = (double)src[j0 + j] + r[j], dr[j0 + j] = r[j];
    }
    if (dot2) /* the checks' dots of both rows, still in cache (fused.h) */
      for (int q = 0; q < rd->count; q++) {
        dot2(dm, g.cols, rd->vec[q], rd->vabs[q], &rd->ys[0][q][i], &rd->yb[0][q][i]);
        dot2(dr, g.cols, rd->vec[q], rd->vabs[q], &rd->ys[1][q][i], &rd->yb[1][q][i]);
      }
  }
  tempo_shield_stream_wipe(&st);
  sodium_memzero(r, sizeof r);
}

/* The float32 shares: the same pass in float (scales applied as tempo_obf_enc_* does). */
void tempo_shield_blind32(const tempo_obf_key *k, int operand, bool w_trans, const uint8_t seed[TEMPO_SHIELD_SEED_BYTES],
                          float sigma, const float *A, float *masked, float *mask) {
  const tempo_shield_gather g = tempo_shield_gather_of(k, operand, w_trans);
  tempo_shield_stream st;
  tempo_shield_stream_init(&st, seed, sigma, false);
  float r[CHUNK];
  for (int i = 0; i < g.rows; i++) {
    const float *src = A + (size_t)(g.ri ? g.ri[i] : (uint32_t)i) * g.cols;
    float *dm = masked + (size_t)i * g.cols, *dr = mask + (size_t)i * g.cols;
    const float rsi = g.rs ? g.rs[i] : 1.0f;
    for (int j0 = 0; j0 < g.cols; j0 += CHUNK) {
      const int nj = g.cols - j0 < CHUNK ? g.cols - j0 : CHUNK;
      tempo_shield_draw32(&st, r, (size_t)nj);
      if (g.ri)
        for (int j = 0; j < nj; j++) {
          const float c = g.cs[j0 + j];
          dm[j0 + j] = (src[g.ci[j0 + j]] + r[j]) * c * rsi;
          dr[j0 + j] = r[j] * c * rsi;
        }
      else
        for (int j = 0; j < nj; j++) dm[j0 + j] = src[j0 + j] + r[j], dr[j0 + j] = r[j];
    }
  }
  tempo_shield_stream_wipe(&st);
  sodium_memzero(r, sizeof r);
}
