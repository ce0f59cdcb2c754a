/* link.c - co-occurrence linking and first-layer patch recovery (attack.h). */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tempo/attack.h"
#include "tempo/common.h"

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* C (cols, cols) = B^T B / rows for the 0/1 pattern B of A > 0. */
static tempo_status cooccur(const float *A, int rows, int cols, double *C) {
  size_t n = (size_t)rows * cols;
  float *B = tempo_alloc_floats(n), *F = tempo_alloc_floats((size_t)cols * cols);
  if (!B || !F) {
    tempo_free_floats(B), tempo_free_floats(F);
    return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "link: out of memory");
  }
  for (size_t i = 0; i < n; i++) B[i] = A[i] > 0 ? 1.0f : 0.0f;
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, cols, cols, rows, 1.0f, B, cols, B, cols, 0.0f, F, cols);
  for (size_t i = 0; i < (size_t)cols * cols; i++) C[i] = F[i] / rows;
  tempo_free_floats(B), tempo_free_floats(F);
  return TEMPO_STATUS_OK;
}

/* Assigns each of n items to one of p units, k = n / p slots per unit (Hungarian on the
 * expanded cost); cost (n, p). */
static tempo_status assign_slots(const double *cost, int n, int p, double *big, int *tmp, int *link) {
  int k = n / p;
  for (int j = 0; j < n; j++)
    for (int s = 0; s < n; s++) big[(size_t)j * n + s] = cost[(size_t)j * p + s / k];
  tempo_status st = tempo_assign(big, n, tmp, NULL);
  if (st) return st;
  for (int j = 0; j < n; j++) link[j] = tmp[j] / k;
  return TEMPO_STATUS_OK;
}

tempo_status tempo_attack_link(const float *Yb, int m1, int p, const float *Xb, int m2, int n, int *link) {
  if (p < 1 || n < p || n % p)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "link: %d input columns are not a multiple of %d units", n, p);
  tempo_status st = TEMPO_STATUS_OK;
  double *cs = malloc((size_t)p * p * sizeof *cs), *cz = malloc((size_t)n * n * sizeof *cz);
  double *fs = malloc((size_t)p * (p + 1) * sizeof *fs), *fz = malloc((size_t)n * (p + 1) * sizeof *fz);
  double *cost = malloc((size_t)n * p * sizeof *cost), *big = malloc((size_t)n * n * sizeof *big);
  double *srt = malloc((size_t)n * sizeof *srt);
  int *tmp = malloc((size_t)n * sizeof *tmp), *cnt = malloc((size_t)p * sizeof *cnt);
  if (!cs || !cz || !fs || !fz || !cost || !big || !srt || !tmp || !cnt) {
    st = tempo_set_error(TEMPO_STATUS_NO_MEMORY, "link: out of memory");
    goto done;
  }
  if ((st = cooccur(Yb, m1, p, cs)) || (st = cooccur(Xb, m2, n, cz))) goto done;
  int k = n / p;
  /* start: sorted co-occurrence rows (order-free), sampled at p quantiles, plus the rate */
  for (int u = 0; u < p; u++) {
    memcpy(srt, cs + (size_t)u * p, (size_t)p * sizeof *srt);
    qsort(srt, (size_t)p, sizeof *srt, cmp_double);
    for (int v = 0; v < p; v++) fs[(size_t)u * (p + 1) + v] = srt[v];
    fs[(size_t)u * (p + 1) + p] = cs[(size_t)u * p + u] * sqrt((double)p);
  }
  for (int j = 0; j < n; j++) {
    memcpy(srt, cz + (size_t)j * n, (size_t)n * sizeof *srt);
    qsort(srt, (size_t)n, sizeof *srt, cmp_double);
    for (int v = 0; v < p; v++) fz[(size_t)j * (p + 1) + v] = srt[v * k + k / 2];
    fz[(size_t)j * (p + 1) + p] = cz[(size_t)j * n + j] * sqrt((double)p);
  }
  for (int j = 0; j < n; j++)
    for (int u = 0; u < p; u++) {
      double s = 0;
      for (int v = 0; v <= p; v++) {
        double d = fz[(size_t)j * (p + 1) + v] - fs[(size_t)u * (p + 1) + v];
        s += d * d;
      }
      cost[(size_t)j * p + u] = s;
    }
  if ((st = assign_slots(cost, n, p, big, tmp, link))) goto done;
  /* refine: compare co-occurrences with the units as currently linked */
  for (int round = 0; round < 20; round++) {
    memset(cnt, 0, (size_t)p * sizeof *cnt);
    for (int j = 0; j < n; j++) cnt[link[j]]++;
    for (int j = 0; j < n; j++) {
      double *f = fz + (size_t)j * (p + 1);
      for (int v = 0; v < p; v++) f[v] = 0;
      for (int l = 0; l < n; l++) f[link[l]] += cz[(size_t)j * n + l];
      for (int v = 0; v < p; v++) f[v] = cnt[v] ? f[v] / cnt[v] : 0;
    }
    for (int j = 0; j < n; j++)
      for (int u = 0; u < p; u++) {
        double s = 0;
        for (int v = 0; v < p; v++) {
          double d = fz[(size_t)j * (p + 1) + v] - cs[(size_t)u * p + v];
          s += d * d;
        }
        cost[(size_t)j * p + u] = s;
      }
    memcpy(tmp, link, (size_t)n * sizeof *tmp);
    int *old = malloc((size_t)n * sizeof *old);
    if (!old) {
      st = tempo_set_error(TEMPO_STATUS_NO_MEMORY, "link: out of memory");
      goto done;
    }
    memcpy(old, link, (size_t)n * sizeof *old);
    st = assign_slots(cost, n, p, big, tmp, link);
    bool same = !memcmp(old, link, (size_t)n * sizeof *old);
    free(old);
    if (st) goto done;
    if (same) break;
  }
done:
  free(cs), free(cz), free(fs), free(fz), free(cost), free(big), free(srt), free(tmp), free(cnt);
  return st;
}

/* Correlation (n, n) of the columns of B (rows, n). */
static void col_corr(const float *B, int rows, int n, double *C) {
  double *mu = calloc((size_t)n, sizeof *mu), *sd = calloc((size_t)n, sizeof *sd);
  if (!mu || !sd) goto out;
  for (int i = 0; i < rows; i++)
    for (int j = 0; j < n; j++) mu[j] += B[(size_t)i * n + j];
  for (int j = 0; j < n; j++) mu[j] /= rows;
  memset(C, 0, (size_t)n * n * sizeof *C);
  for (int i = 0; i < rows; i++) {
    const float *b = B + (size_t)i * n;
    for (int j = 0; j < n; j++) {
      double dj = b[j] - mu[j];
      for (int l = j; l < n; l++) C[(size_t)j * n + l] += dj * (b[l] - mu[l]);
    }
  }
  for (int j = 0; j < n; j++) sd[j] = sqrt(C[(size_t)j * n + j]) + 1e-30;
  for (int j = 0; j < n; j++)
    for (int l = j; l < n; l++) C[(size_t)l * n + j] = C[(size_t)j * n + l] = C[(size_t)j * n + l] / (sd[j] * sd[l]);
out:
  free(mu), free(sd);
}

static double rows_cost(const double *Ca, const double *Cb, int n, const int *s, int a) {
  double t = 0;
  for (int k = 0; k < n; k++) {
    double d = Ca[(size_t)a * n + k] - Cb[(size_t)s[a] * n + s[k]];
    t += d * d;
  }
  return t;
}

static double swap_part(const double *Ca, const double *Cb, int n, const int *s, int a, int b) {
  double ab = Ca[(size_t)a * n + b] - Cb[(size_t)s[a] * n + s[b]];
  double aa = Ca[(size_t)a * n + a] - Cb[(size_t)s[a] * n + s[a]];
  double bb = Ca[(size_t)b * n + b] - Cb[(size_t)s[b] * n + s[b]];
  return 2 * (rows_cost(Ca, Cb, n, s, a) + rows_cost(Ca, Cb, n, s, b)) - (aa * aa + bb * bb + 2 * ab * ab);
}

/* Graph matching of correlation matrices: min sum (Ca[j][k] - Cb[s j][s k])^2 by pairwise
 * swaps from a signature start and from random restarts. */
static void qap(const double *Ca, const double *Cb, int n, int *best, int *s, uint64_t seed) {
  double best_cost = INFINITY;
  uint64_t x = seed | 1;
  for (int restart = 0; restart < 24; restart++) {
    if (restart == 0) memcpy(s, best, (size_t)n * sizeof *s);
    else {
      for (int i = 0; i < n; i++) s[i] = i;
      for (int i = n - 1; i > 0; i--) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int j = (int)(x % (uint64_t)(i + 1));
        int t = s[i];
        s[i] = s[j], s[j] = t;
      }
    }
    bool improved = true;
    while (improved) {
      improved = false;
      for (int a = 0; a < n; a++)
        for (int b = a + 1; b < n; b++) {
          double before = swap_part(Ca, Cb, n, s, a, b);
          int t = s[a];
          s[a] = s[b], s[b] = t;
          double after = swap_part(Ca, Cb, n, s, a, b);
          if (after < before - 1e-12) improved = true;
          else s[b] = s[a], s[a] = t;
        }
    }
    double c = 0;
    for (int a = 0; a < n; a++) c += rows_cost(Ca, Cb, n, s, a);
    if (c < best_cost) best_cost = c, memcpy(best, s, (size_t)n * sizeof *s);
  }
}

tempo_status tempo_attack_patches(const float *Xb, int m, const float *Xpub, int mp, int n, float floor_value,
                                  int *col_perm, float *rec) {
  if (m < 2 || mp < 2 || n < 1) return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "patches: too few rows");
  tempo_status st = TEMPO_STATUS_OK;
  size_t mb = (size_t)m * n, mpb = (size_t)mp * n;
  float *bb = tempo_alloc_floats(mb), *bp = tempo_alloc_floats(mpb);
  double *rfb = malloc((size_t)m * sizeof *rfb), *rfp = malloc((size_t)mp * sizeof *rfp);
  double *cfb = malloc((size_t)n * sizeof *cfb), *cfp = malloc((size_t)n * sizeof *cfp);
  double *ca = malloc((size_t)n * n * sizeof *ca), *cp = malloc((size_t)n * n * sizeof *cp);
  double *cost = malloc((size_t)n * n * sizeof *cost), *sa = malloc((size_t)n * sizeof *sa),
         *sp = malloc((size_t)n * sizeof *sp);
  int *tmp = malloc((size_t)n * sizeof *tmp);
  if (!bb || !bp || !rfb || !rfp || !cfb || !cfp || !ca || !cp || !cost || !sa || !sp || !tmp) {
    st = tempo_set_error(TEMPO_STATUS_NO_MEMORY, "patches: out of memory");
    goto done;
  }
  tempo_balance(Xb, m, n, 300, rfb, cfb, bb);
  tempo_balance(Xpub, mp, n, 300, rfp, cfp, bp);
  col_corr(bb, m, n, ca);
  col_corr(bp, mp, n, cp);
  for (int j = 0; j < n; j++) /* start: sorted correlation rows */
    for (int l = 0; l < n; l++) {
      memcpy(sa, ca + (size_t)j * n, (size_t)n * sizeof *sa);
      memcpy(sp, cp + (size_t)l * n, (size_t)n * sizeof *sp);
      qsort(sa, (size_t)n, sizeof *sa, cmp_double);
      qsort(sp, (size_t)n, sizeof *sp, cmp_double);
      double s = 0;
      for (int k = 0; k < n; k++) s += (sa[k] - sp[k]) * (sa[k] - sp[k]);
      cost[(size_t)j * n + l] = s;
    }
  if ((st = tempo_assign(cost, n, col_perm, NULL))) goto done;
  qap(ca, cp, n, col_perm, tmp, 0x9e3779b97f4a7c15ull);
  if (rec)
    for (int i = 0; i < m; i++) {
      float *o = rec + (size_t)i * n;
      const float *b = bb + (size_t)i * n;
      float mn = INFINITY;
      for (int j = 0; j < n; j++) {
        o[col_perm[j]] = (float)(b[j] / cfp[col_perm[j]]);
        if (o[col_perm[j]] < mn) mn = o[col_perm[j]];
      }
      if (floor_value < 0 && mn < 0)
        for (int j = 0; j < n; j++) o[j] *= floor_value / mn;
    }
done:
  tempo_free_floats(bb), tempo_free_floats(bp);
  free(rfb), free(rfp), free(cfb), free(cfp), free(ca), free(cp), free(cost), free(sa), free(sp), free(tmp);
  return st;
}
