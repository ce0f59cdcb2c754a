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
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define BL_X86 1
#endif

#include "core/prefetch.h"
#include "fused.h"
#include "mask_stream.h"
#include "tempo/obf.h"
#include "tempo/shield.h"

#define CHUNK 256 /* mask values drawn at a time */
#define PREFETCH_ROWS 8           /* a permuted source row is asked for this many rows ahead */
#define PREFETCH_MAX_BYTES 16384  /* longer rows stream well enough on their own */

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

/* One chunk of a row of both shares: dm_j = rc_j (src[ci_j] + r_j), dr_j = rc_j r_j with
 * rc_j = rsi cs_j, each product and sum rounded once as written (no contraction), so every
 * form gives the same doubles. */
static void gather_row_c(const float *src, const uint32_t *ci, const float *cs, double rsi, const double *r, int n,
                         double *dm, double *dr) {
  for (int j = 0; j < n; j++) {
    const double rc = rsi * (double)cs[j];
    dm[j] = rc * ((double)src[ci[j]] + r[j]);
    dr[j] = rc * r[j];
  }
}

#if BL_X86
__attribute__((target("avx2"))) static void gather_row_avx2(const float *src, const uint32_t *ci, const float *cs,
                                                            double rsi, const double *r, int n, double *dm,
                                                            double *dr) {
  const __m256d vr = _mm256_set1_pd(rsi);
  int j = 0;
  for (; j + 4 <= n; j += 4) {
    const __m256d rc = _mm256_mul_pd(vr, _mm256_cvtps_pd(_mm_loadu_ps(cs + j)));
    const __m256d x = _mm256_cvtps_pd(_mm_i32gather_ps(src, _mm_loadu_si128((const __m128i *)(ci + j)), 4));
    const __m256d m = _mm256_loadu_pd(r + j);
    _mm256_storeu_pd(dm + j, _mm256_mul_pd(rc, _mm256_add_pd(x, m)));
    _mm256_storeu_pd(dr + j, _mm256_mul_pd(rc, m));
  }
  gather_row_c(src, ci + j, cs + j, rsi, r + j, n - j, dm + j, dr + j);
}
#endif

typedef void (*gather_row_fn)(const float *, const uint32_t *, const float *, double, const double *, int, double *,
                              double *);
static gather_row_fn pick_gather_row(void) {
#if BL_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2")) return gather_row_avx2;
#endif
  return gather_row_c;
}

void tempo_shield_blind64(const tempo_obf_key *k, int operand, bool w_trans, const uint8_t seed[TEMPO_SHIELD_SEED_BYTES],
                          double sigma, const float *A, double *masked, double *mask, const tempo_shield_rowdots *rd) {
  const tempo_shield_gather g = tempo_shield_gather_of(k, operand, w_trans);
  const gather_row_fn gather_row = pick_gather_row();
  tempo_shield_stream st;
  tempo_shield_stream_init(&st, seed, sigma, true);
  double r[CHUNK];
  const size_t row_bytes = (size_t)g.cols * sizeof *A;
  for (int i = 0; i < g.rows; i++) {
    const float *src = A + (size_t)(g.ri ? g.ri[i] : (uint32_t)i) * g.cols;
    double *dm = masked + (size_t)i * g.cols, *dr = mask + (size_t)i * g.cols;
    const double rsi = g.rs ? g.rs[i] : 1.0;
    if (g.ri && i + PREFETCH_ROWS < g.rows && row_bytes <= PREFETCH_MAX_BYTES) {
      /* the permuted rows come from anywhere in A: ask for a later one while this one is blinded */
      const char *ahead = (const char *)(A + (size_t)g.ri[i + PREFETCH_ROWS] * g.cols);
      for (size_t b = 0; b < row_bytes; b += 64) tempo_prefetch_l2(ahead + b);
      tempo_prefetch_l2(ahead + row_bytes - 1);
    }
    for (int j0 = 0; j0 < g.cols; j0 += CHUNK) {
      const int nj = g.cols - j0 < CHUNK ? g.cols - j0 : CHUNK;
      tempo_shield_draw64(&st, r, (size_t)nj);
      if (g.ri)
        gather_row(src, g.ci + j0, g.cs + j0, rsi, r, nj, dm + j0, dr + j0);
      else
        for (int j = 0; j < nj; j++) dm[j0 + j] = (double)src[j0 + j] + r[j], dr[j0 + j] = r[j];
    }
    for (int q = 0; rd && q < rd->count; q++) { /* the checks' dots of both rows, still in cache (fused.h) */
      tempo_shield_dot2(dm, g.cols, rd->vec[q], rd->vabs[q], &rd->ys[0][q][i], &rd->yb[0][q][i]);
      tempo_shield_dot2(dr, g.cols, rd->vec[q], rd->vabs[q], &rd->ys[1][q][i], &rd->yb[1][q][i]);
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
