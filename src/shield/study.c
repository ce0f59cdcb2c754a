/* study.c - the precision / leakage study of shield mode (shield.h, docs/shield.md).
 *
 * Exactly the engine's arithmetic for either dtype: a tempo key, masks drawn in the
 * plaintext domain and blinded (float32: tempo_shield_expand + Enc in float; float64:
 * tempo_shield_expand64 + the double Enc), four sgemm or dgemm shares, combine in double,
 * round to float32, Dec. The leakage figures are measured on X'' of the chosen dtype. */
#include <cblas.h>
#include <math.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "tempo/common.h"
#include "tempo/obf.h"
#include "tempo/rng.h"
#include "tempo/shield.h"

static int cmp_pair(const void *a, const void *b) {
  const double x = ((const double *)a)[0], y = ((const double *)b)[0];
  return x < y ? -1 : x > y;
}

/* AUC of the score separating label 1 from label 0 (rank sum; the scores here are
 * continuous, so ties do not matter). pairs: (score, label) interleaved. */
static double auc(double *pairs, size_t n) {
  qsort(pairs, n, 2 * sizeof(double), cmp_pair);
  double rank_sum = 0, npos = 0;
  for (size_t i = 0; i < n; i++)
    if (pairs[2 * i + 1] > 0.5) rank_sum += (double)(i + 1), npos++;
  double nneg = (double)n - npos;
  if (npos == 0 || nneg == 0) return 0.5;
  return (rank_sum - npos * (npos + 1) / 2) / (npos * nneg);
}

static void seed_from(tempo_rng *r, uint8_t seed[TEMPO_SHIELD_SEED_BYTES]) {
  for (int i = 0; i < TEMPO_SHIELD_SEED_BYTES; i += 8) {
    uint64_t v = tempo_rng_u64(r);
    memcpy(seed + i, &v, 8);
  }
}

tempo_status tempo_shield_study(const tempo_shield_study_cfg *cfg, tempo_shield_study_result *out) {
  memset(out, 0, sizeof *out);
  const int m = cfg->m, n = cfg->n, p = cfg->p;
  if (m < 2 || n < 2 || p < 1 || !(cfg->alpha > 0))
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "shield study: bad shape or alpha");
  const size_t xs = (size_t)m * n, ws = (size_t)n * p, ys = (size_t)m * p;
  tempo_status st = TEMPO_STATUS_OK;
  tempo_keygen *kg = NULL;
  tempo_obf_key key = {0};
  float *X = tempo_alloc_floats(xs), *W = tempo_alloc_floats(ws), *R0 = tempo_alloc_floats(xs),
        *S0 = tempo_alloc_floats(ws), *Xp = tempo_alloc_floats(xs), *Wp = tempo_alloc_floats(ws),
        *Xm = tempo_alloc_floats(xs), *Wm = tempo_alloc_floats(ws), *R = tempo_alloc_floats(xs),
        *S = tempo_alloc_floats(ws), *tmp = tempo_alloc_floats(xs > ws ? xs : ws), *Ys = tempo_alloc_floats(ys),
        *Yo = tempo_alloc_floats(ys);
  double *Yref = malloc(ys * sizeof(double)), *acc = malloc(ys * sizeof(double)),
         *dA = malloc(xs * 2 * sizeof(double)), *dB = malloc(ws * 2 * sizeof(double)),
         *pairs = malloc((2 * xs > ys ? 2 * xs : ys) * sizeof(double));
  /* float64 shares: R0, S0, X + R0, W + S0 and their blinded forms in double */
  const size_t big = xs > ws ? xs : ws;
  double *r64 = malloc(big * sizeof(double)), *s64 = malloc(ws * sizeof(double)), *t64 = malloc(big * sizeof(double)),
         *xm64 = malloc(xs * sizeof(double)), *rx64 = malloc(xs * sizeof(double)), *wm64 = malloc(ws * sizeof(double)),
         *sw64 = malloc(ws * sizeof(double)), *y64 = malloc(ys * sizeof(double));
  if (!X || !W || !R0 || !S0 || !Xp || !Wp || !Xm || !Wm || !R || !S || !tmp || !Ys || !Yo || !Yref || !acc || !dA ||
      !dB || !pairs || !r64 || !s64 || !t64 || !xm64 || !rx64 || !wm64 || !sw64 || !y64) {
    st = tempo_set_error(TEMPO_STATUS_NO_MEMORY, "shield study: out of memory");
    goto out;
  }
  tempo_rng rng;
  tempo_rng_seed(&rng, cfg->seed, 17);
  for (size_t i = 0; i < xs; i++) X[i] = fmaxf(0.0f, (float)tempo_rng_normal(&rng));
  for (size_t i = 0; i < ws; i++) W[i] = (float)(tempo_rng_normal(&rng) / sqrt((double)n));
  /* plaintext reference in double */
  for (size_t i = 0; i < xs; i++) dA[i] = X[i];
  for (size_t i = 0; i < ws; i++) dB[i] = W[i];
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, p, n, 1.0, dA, n, dB, p, 0.0, Yref, p);

  uint8_t secret[32] = {0};
  memcpy(secret, &cfg->seed, sizeof cfg->seed);
  tempo_keyspace ks;
  tempo_keyspace_default(&ks);
  if ((st = tempo_keygen_create(secret, &ks, &kg)) || (st = tempo_obf_key_alloc(&key, m, n, p)) ||
      (st = tempo_keygen_fill(kg, &key)))
    goto out;
  uint8_t sd[TEMPO_SHIELD_SEED_BYTES];
  const float sx = tempo_shield_sigma(cfg->alpha, tempo_shield_rms(X, xs));
  const float sw = tempo_shield_sigma(cfg->alpha, tempo_shield_rms(W, ws));
  seed_from(&rng, sd);
  tempo_shield_expand(sd, sx, R0, xs);
  if (cfg->f64) tempo_shield_expand64(sd, cfg->alpha * tempo_shield_rms(X, xs), r64, xs);
  seed_from(&rng, sd);
  tempo_shield_expand(sd, sw, S0, ws);
  if (cfg->f64) tempo_shield_expand64(sd, cfg->alpha * tempo_shield_rms(W, ws), s64, ws);
  /* tempo reference: X' W' in float32, decrypted */
  tempo_obf_enc_x(&key, X, Xp);
  tempo_obf_enc_w(&key, false, W, Wp);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, p, n, 1.0f, Xp, n, Wp, p, 0.0f, Ys, p);
  tempo_obf_dec_y(&key, Ys, Yo);
  double num = 0, den = 0, mx = 0, mref = 0;
  for (size_t i = 0; i < ys; i++) num += (Yo[i] - Yref[i]) * (Yo[i] - Yref[i]), den += Yref[i] * Yref[i];
  out->tempo_rel_err = sqrt(num / den);
  /* shares */
  tempo_shield_add(X, R0, tmp, xs);
  tempo_obf_enc_x(&key, tmp, Xm);
  tempo_obf_enc_x(&key, R0, R);
  tempo_shield_add(W, S0, tmp, ws);
  tempo_obf_enc_w(&key, false, tmp, Wm);
  tempo_obf_enc_w(&key, false, S0, S);
  if (cfg->f64) {
    for (size_t i = 0; i < xs; i++) t64[i] = (double)X[i] + r64[i];
    tempo_shield_enc_x64(&key, t64, xm64);
    tempo_shield_enc_x64(&key, r64, rx64);
    for (size_t i = 0; i < ws; i++) t64[i] = (double)W[i] + s64[i];
    tempo_shield_enc_w64(&key, false, t64, wm64);
    tempo_shield_enc_w64(&key, false, s64, sw64);
  }
  memset(acc, 0, ys * sizeof(double));
  for (int role = 0; role < TEMPO_SHIELD_ROLES; role++) {
    const bool mx_ = tempo_shield_role_masked_x(role), mw_ = tempo_shield_role_masked_w(role);
    if (!cfg->f64) {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, p, n, 1.0f, mx_ ? Xm : R, n, mw_ ? Wm : S, p, 0.0f,
                  Ys, p);
      tempo_shield_accumulate(acc, Ys, tempo_shield_sign_y(role), ys);
    } else {
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, p, n, 1.0, mx_ ? xm64 : rx64, n, mw_ ? wm64 : sw64, p,
                  0.0, y64, p);
      tempo_shield_accumulate64(acc, y64, tempo_shield_sign_y(role), ys);
    }
  }
  tempo_shield_narrow(acc, Ys, ys);
  tempo_obf_dec_y(&key, Ys, Yo);
  for (size_t i = 0; i < ys; i++) acc[i] = Yo[i];
  num = den = 0;
  for (size_t i = 0; i < ys; i++) {
    const double d = acc[i] - Yref[i];
    num += d * d, den += Yref[i] * Yref[i];
    mx = fmax(mx, fabs(d)), mref = fmax(mref, fabs(Yref[i]));
  }
  out->rel_err = sqrt(num / den);
  out->max_err = mx / mref;
  /* leakage of X'' (what roles A and B receive) about X' */
  double sa = 0, sb = 0, saa = 0, sbb = 0, sab = 0, agree = 0, nz = 0;
  for (size_t i = 0; i < xs; i++) {
    const double a = Xp[i], b = cfg->f64 ? xm64[i] : Xm[i];
    sa += a, sb += b, saa += a * a, sbb += b * b, sab += a * b;
    if (a != 0) nz++, agree += (a > 0) == (b > 0);
    pairs[2 * i] = fabs(b); /* |X''| */
    pairs[2 * i + 1] = a != 0 ? 1.0 : 0.0;
  }
  const double N = (double)xs, cov = sab / N - sa / N * sb / N;
  const double va = saa / N - sa / N * sa / N, vb = sbb / N - sb / N * sb / N;
  out->corr = fabs(cov / sqrt(va * vb));
  out->sign_agree = nz > 0 ? agree / nz : 0.5;
  out->zero_auc = auc(pairs, xs);
  /* two-secret distinguisher: secret X (ReLU, mean > 0) or -X; the statistic is the sign
   * of sum(X''), the best permutation-invariant linear test; fresh key and mask per trial */
  const int trials = 200;
  int correct = 0;
  for (int tr = 0; tr < trials; tr++) {
    const bool neg = tempo_rng_below(&rng, 2);
    if ((st = tempo_keygen_fill(kg, &key))) goto out;
    seed_from(&rng, sd);
    double s = 0;
    if (cfg->f64) {
      tempo_shield_expand64(sd, cfg->alpha * tempo_shield_rms(X, xs), r64, xs);
      for (size_t i = 0; i < xs; i++) t64[i] = (neg ? -(double)X[i] : (double)X[i]) + r64[i];
      tempo_shield_enc_x64(&key, t64, xm64);
      for (size_t i = 0; i < xs; i++) s += xm64[i];
    } else {
      tempo_shield_expand(sd, sx, R0, xs);
      for (size_t i = 0; i < xs; i++) tmp[i] = (neg ? -X[i] : X[i]) + R0[i];
      tempo_obf_enc_x(&key, tmp, Xm);
      for (size_t i = 0; i < xs; i++) s += Xm[i];
    }
    correct += (s < 0) == neg;
  }
  out->dist_adv = fabs(2.0 * correct / trials - 1.0);
out:
  tempo_obf_key_free(&key);
  tempo_keygen_free(kg);
  float *f[] = {X, W, R0, S0, Xp, Wp, Xm, Wm, R, S, tmp, Ys, Yo};
  for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) tempo_free_floats(f[i]);
  free(Yref), free(acc), free(dA), free(dB), free(pairs);
  free(r64), free(s64), free(t64), free(xm64), free(rx64), free(wm64), free(sw64), free(y64);
  return st;
}
