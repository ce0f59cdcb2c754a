/* fused.c - shield's float64 checks formed inside the blinding passes (fused.h). The bounds
 * are tempo_shield_verify64's (shield.h): they cover any float64 evaluation order of the
 * worker's product and the check's own double rounding. Master side only. */
#include "fused.h"

#include <math.h>
#include <string.h>

#include "tempo/shield.h"

#define SAFE(k, c) (TEMPO_VERIFY_SAFETY * (2.0 * ((double)(k) + (double)(c)) + 8.0) * 0x1p-53)

tempo_status tempo_shield_fused_prepare(tempo_shield_fused *f, int rounds, int m, int n, int p) {
  const size_t R = (size_t)rounds;
  const size_t need = R * (2 * (size_t)p + 2 * (size_t)n + 4 * (size_t)n + 8 * (size_t)m + 4 * (size_t)m) +
                      R * (2 * (size_t)n + 4 * (size_t)p + 8 * (size_t)m); /* the dX' check's */
  tempo_status st = tempo_grow_buffer(&f->mem, &f->cap, need * sizeof(double));
  if (st) return st;
  f->rounds = rounds, f->m = m, f->n = n, f->p = p;
  f->forward_ready = f->dw_ready = f->dx_ready = false;
  double *q = f->mem;
  f->v = q, q += R * p;
  f->vabs = q, q += R * p;
  f->u = q, q += R * n;
  f->uabs = q, q += R * n;
  f->wv = q, q += 2 * R * n;
  f->wvb = q, q += 2 * R * n;
  f->y2 = q, q += 4 * R * m;
  f->yb = q, q += 4 * R * m;
  f->xu = q, q += 2 * R * m;
  f->xub = q, q += 2 * R * m;
  f->xv = q, q += R * n;
  f->xvabs = q, q += R * n;
  f->wtv = q, q += 2 * R * p;
  f->wtvb = q, q += 2 * R * p;
  f->dy2 = q, q += 4 * R * m;
  f->dyb = q;
  return TEMPO_STATUS_OK;
}

void tempo_shield_fused_free(tempo_shield_fused *f) {
  tempo_free_floats((float *)f->mem);
  memset(f, 0, sizeof *f);
}

void tempo_shield_fused_begin(tempo_shield_fused *f, uint64_t rng_seed, const double *wm, const double *s,
                              bool w_trans, bool training, tempo_shield_rowdots *rd) {
  const int n = f->n, p = f->p, m = f->m;
  memset(rd, 0, sizeof *rd);
  for (int q = 0; q < f->rounds; q++) {
    tempo_rng rng;
    tempo_rng_seed(&rng, rng_seed, 0x7368696564363400ULL + (uint64_t)q);
    f->vmax[q] = tempo_shield_check_vector(&rng, f->v + (size_t)q * p, f->vabs + (size_t)q * p, p);
    tempo_rng_seed(&rng, rng_seed, 0x736869656475ULL + (uint64_t)q); /* the left vectors' own stream */
    f->umax[q] = tempo_shield_check_vector(&rng, f->u + (size_t)q * n, f->uabs + (size_t)q * n, n);
    for (int ws = 0; ws < 2; ws++) {
      double *wv = f->wv + ((size_t)q * 2 + ws) * n, *wvb = f->wvb + ((size_t)q * 2 + ws) * n;
      tempo_shield_matvec64(n, p, ws ? s : wm, w_trans, f->v + (size_t)q * p, f->vabs + (size_t)q * p, wv, wvb);
      const int k = rd->count++;
      rd->vec[k] = wv, rd->vabs[k] = wvb;
      for (int xs = 0; xs < 2; xs++) {
        rd->ys[xs][k] = f->y2 + (((size_t)q * 2 + xs) * 2 + ws) * m;
        rd->yb[xs][k] = f->yb + (((size_t)q * 2 + xs) * 2 + ws) * m;
      }
    }
    if (!training) continue;
    const int k = rd->count++;
    rd->vec[k] = f->u + (size_t)q * n, rd->vabs[k] = f->uabs + (size_t)q * n;
    for (int xs = 0; xs < 2; xs++) {
      rd->ys[xs][k] = f->xu + ((size_t)q * 2 + xs) * m;
      rd->yb[xs][k] = f->xub + ((size_t)q * 2 + xs) * m;
    }
  }
  f->forward_ready = true;
  f->dw_ready = training;
}

bool tempo_shield_fused_check_y(const tempo_shield_fused *f, bool x_masked, bool w_masked, int lo, int hi,
                                const double *y) {
  if (!f->forward_ready || lo < 0 || hi > f->m || lo > hi) return false;
  const int n = f->n, p = f->p, m = f->m;
  const size_t comb = (size_t)(x_masked ? 0 : 1) * 2 + (w_masked ? 0 : 1);
  const double factor = SAFE(n, p);
  for (int q = 0; q < f->rounds; q++) {
    const double *v = f->v + (size_t)q * p, *y2 = f->y2 + ((size_t)q * 4 + comb) * m,
                 *yb = f->yb + ((size_t)q * 4 + comb) * m;
    const double tiny = (double)n * (double)p * f->vmax[q] * 0x1p-1022;
    for (int i = lo; i < hi; i++) {
      const double y1 = tempo_shield_dot(y + (size_t)(i - lo) * p, v, p);
      if (!isfinite(y1)) {
        tempo_set_error(TEMPO_STATUS_VERIFY_FAILED, "shield check: non-finite value in result row %d of (%d, %d)", i, m,
                        p);
        return false;
      }
      const double diff = fabs(y1 - y2[i]), tol = factor * yb[i] + tiny;
      if (!(diff <= tol)) {
        tempo_set_error(TEMPO_STATUS_VERIFY_FAILED,
                        "shield check failed: row %d of (%d, %d) x (%d), round %d: |Y'v - X(Wv)| = %.3g > %.3g", i, m, p,
                        n, q, diff, tol);
        return false;
      }
    }
  }
  return true;
}

bool tempo_shield_fused_check_dw(const tempo_shield_fused *f, bool x_masked, bool w_trans, int lo, int hi,
                                 const double *dys, const double *dw, int parts) {
  if (!f->dw_ready || lo < 0 || hi > f->m || lo >= hi) return false;
  const int n = f->n, p = f->p, m = f->m, rows = hi - lo;
  const double factor = TEMPO_VERIFY_SAFETY * (2.0 * ((double)rows + (double)n) + 8.0 + 2.0 * parts) * 0x1p-53;
  enum { CH = 512 }; /* result columns at a time: the sums stay in cache */
  double lhs[CH], rhs[CH], bnd[CH];
  for (int q = 0; q < f->rounds; q++) {
    const double *u = f->u + (size_t)q * n, *xu = f->xu + ((size_t)q * 2 + (x_masked ? 0 : 1)) * m,
                 *xub = f->xub + ((size_t)q * 2 + (x_masked ? 0 : 1)) * m;
    const double tiny = (double)rows * (double)n * f->umax[q] * 0x1p-1022;
    for (int j0 = 0; j0 < p; j0 += CH) {
      const int nj = p - j0 < CH ? p - j0 : CH;
      for (int j = 0; j < nj; j++) lhs[j] = rhs[j] = bnd[j] = 0;
      if (w_trans) /* dW' (p, n): row j dotted with u */
        for (int j = 0; j < nj; j++) lhs[j] = tempo_shield_dot(dw + (size_t)(j0 + j) * n, u, n);
      else /* dW' (n, p): u^T dW', swept by rows */
        for (int l = 0; l < n; l++) tempo_shield_axpy(nj, u[l], dw + (size_t)l * p + j0, lhs);
      for (int i = 0; i < rows; i++) /* (X_s u)^T dY_s and its bound */
        tempo_shield_axpy2(nj, dys + (size_t)i * p + j0, xu[lo + i], xub[lo + i], rhs, bnd);
      for (int j = 0; j < nj; j++) {
        if (!isfinite(lhs[j])) {
          tempo_set_error(TEMPO_STATUS_VERIFY_FAILED, "shield dW' check: non-finite value in column %d", j0 + j);
          return false;
        }
        const double diff = fabs(lhs[j] - rhs[j]), tol = factor * bnd[j] + tiny;
        if (!(diff <= tol)) {
          tempo_set_error(TEMPO_STATUS_VERIFY_FAILED,
                          "shield dW' check failed: column %d of (%d, %d) over rows [%d, %d), round %d: %.3g > %.3g",
                          j0 + j, n, p, lo, hi, q, diff, tol);
          return false;
        }
      }
    }
  }
  return true;
}

void tempo_shield_fused_begin_dx(tempo_shield_fused *f, uint64_t rng_seed, const double *wm, const double *s,
                                 bool w_trans, tempo_shield_rowdots *rd) {
  const int n = f->n, p = f->p, m = f->m;
  memset(rd, 0, sizeof *rd);
  for (int q = 0; q < f->rounds; q++) {
    tempo_rng rng;
    tempo_rng_seed(&rng, rng_seed, 0x736869656478ULL + (uint64_t)q); /* the dX' vectors' own stream */
    f->xvmax[q] = tempo_shield_check_vector(&rng, f->xv + (size_t)q * n, f->xvabs + (size_t)q * n, n);
    for (int ws = 0; ws < 2; ws++) {
      double *wv = f->wtv + ((size_t)q * 2 + ws) * p, *wvb = f->wtvb + ((size_t)q * 2 + ws) * p;
      /* W^T (p x n): stored transposed unless w_trans */
      tempo_shield_matvec64(p, n, ws ? s : wm, !w_trans, f->xv + (size_t)q * n, f->xvabs + (size_t)q * n, wv, wvb);
      const int k = rd->count++;
      rd->vec[k] = wv, rd->vabs[k] = wvb;
      for (int ds = 0; ds < 2; ds++) {
        rd->ys[ds][k] = f->dy2 + (((size_t)q * 2 + ds) * 2 + ws) * m;
        rd->yb[ds][k] = f->dyb + (((size_t)q * 2 + ds) * 2 + ws) * m;
      }
    }
  }
  f->dx_ready = true;
}

int tempo_shield_fused_combine_dx(const tempo_shield_fused *f, const double *const *share, float *out) {
  const int n = f->n, p = f->p, m = f->m, R = f->rounds;
  if (!f->dx_ready) {
    tempo_set_error(TEMPO_STATUS_INTERNAL, "shield: dX' combine without its check vectors");
    return 0;
  }
  const double factor = SAFE(p, n);
  double sg[TEMPO_SHIELD_ROLES];
  size_t comb[TEMPO_SHIELD_ROLES]; /* the role's (dY share, W share) */
  for (int r = 0; r < TEMPO_SHIELD_ROLES; r++)
    sg[r] = tempo_shield_sign_dx(r),
    comb[r] = (size_t)(tempo_shield_role_masked_dy(r) ? 0 : 1) * 2 + (tempo_shield_role_masked_w(r) ? 0 : 1);
  for (int i = 0; i < m; i++) {
    const size_t o = (size_t)i * n;
    double y1[TEMPO_SHIELD_FUSED_ROUNDS][TEMPO_SHIELD_ROLES];
    tempo_shield_combine4_dots(share[0] + o, share[1] + o, share[2] + o, share[3] + o, sg, n, f->xv, R, out + o, y1);
    for (int q = 0; q < R; q++) {
      const double tiny = (double)p * (double)n * f->xvmax[q] * 0x1p-1022;
      for (int r = 0; r < TEMPO_SHIELD_ROLES; r++) {
        const size_t at = ((size_t)q * 4 + comb[r]) * m + (size_t)i;
        const double diff = fabs(y1[q][r] - f->dy2[at]), tol = factor * f->dyb[at] + tiny;
        if (!isfinite(y1[q][r]) || !(diff <= tol)) {
          tempo_set_error(TEMPO_STATUS_VERIFY_FAILED,
                          "shield dX' check failed: role %d, row %d of (%d, %d) x (%d), round %d: |dX'x - dY(W^T x)| = "
                          "%.3g > %.3g",
                          r, i, m, n, p, q, diff, tol);
          return r;
        }
      }
    }
  }
  return -1;
}
