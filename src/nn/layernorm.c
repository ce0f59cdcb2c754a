/* layernorm.c - layer norm over the last dimension (see vit.h). R = rows, D = width.
 * Statistics are computed in two passes in float over one row (D <= a few hundred, so
 * the row stays in L1), with PyTorch's biased variance and eps 1e-5; 8 values at a time
 * (vit_simd.h). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tempo/vit.h"
#include "vit_simd.h"

tempo_status tempo_layernorm_declare(tempo_layernorm *l, tempo_params *p, const char *prefix, int dim) {
  char name[TEMPO_PARAM_NAME_MAX];
  memset(l, 0, sizeof *l);
  if (dim < 1) return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "layernorm %s: dim %d < 1", prefix, dim);
  l->dim = dim;
  snprintf(name, sizeof name, "%s.weight", prefix);
  tempo_status st = tempo_params_add(p, name, 1, (int[]){dim}, TEMPO_PARAM_NO_DECAY, &l->w_idx);
  if (st) return st;
  snprintf(name, sizeof name, "%s.bias", prefix);
  return tempo_params_add(p, name, 1, (int[]){dim}, TEMPO_PARAM_NO_DECAY, &l->b_idx);
}

void tempo_layernorm_init(const tempo_layernorm *l, tempo_params *p) {
  float *w = tempo_params_ptr(p, l->w_idx), *b = tempo_params_ptr(p, l->b_idx);
  for (int i = 0; i < l->dim; i++) w[i] = 1.0f, b[i] = 0.0f;
}

TEMPO_VIT_CLONES
void tempo_layernorm_forward(const tempo_layernorm *l, const tempo_params *p, const float *x, int rows, float *y,
                             float *mean, float *rstd) {
  const int d = l->dim, full = d & ~7, tail = d - full;
  const float *restrict w = tempo_params_ptr(p, l->w_idx), *restrict b = tempo_params_ptr(p, l->b_idx);
  const float inv_d = 1.0f / (float)d;
  for (int r = 0; r < rows; r++) {
    const float *restrict xr = x + (size_t)r * d;
    float *restrict yr = y + (size_t)r * d;
    v8f s8 = vset(0.0f);
    for (int i = 0; i < full; i += 8) s8 += vload(xr + i);
    if (tail) s8 += vload_part(xr + full, tail, 0.0f);
    const float mu = vsum(s8) * inv_d;
    const v8f vmu = vset(mu);
    v8f q8 = vset(0.0f);
    for (int i = 0; i < full; i += 8) {
      const v8f c = vload(xr + i) - vmu;
      q8 += c * c;
    }
    if (tail) {
      const v8f c = vload_part(xr + full, tail, mu) - vmu;
      q8 += c * c;
    }
    const float rs = 1.0f / sqrtf(vsum(q8) * inv_d + TEMPO_LAYERNORM_EPS);
    const v8f vrs = vset(rs);
    for (int i = 0; i < full; i += 8) vstore(yr + i, (vload(xr + i) - vmu) * vrs * vload(w + i) + vload(b + i));
    for (int i = full; i < d; i++) yr[i] = (xr[i] - mu) * rs * w[i] + b[i];
    mean[r] = mu;
    rstd[r] = rs;
  }
}

/* dxhat = dy * w; dx = rs * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)). */
TEMPO_VIT_CLONES
void tempo_layernorm_backward(const tempo_layernorm *l, tempo_params *p, const float *x, const float *mean,
                              const float *rstd, const float *dy, int rows, float *dx, bool accumulate) {
  const int d = l->dim, full = d & ~7;
  const float *restrict w = tempo_params_ptr(p, l->w_idx);
  float *restrict dw = tempo_params_grad(p, l->w_idx), *restrict db = tempo_params_grad(p, l->b_idx);
  const float inv_d = 1.0f / (float)d;
  for (int r = 0; r < rows; r++) {
    const float *restrict xr = x + (size_t)r * d, *restrict dyr = dy + (size_t)r * d;
    float *restrict dxr = dx + (size_t)r * d;
    const float mu = mean[r], rs = rstd[r];
    const v8f vmu = vset(mu), vrs = vset(rs);
    v8f a1 = vset(0.0f), a2 = vset(0.0f);
    for (int i = 0; i < full; i += 8) {
      const v8f xh = (vload(xr + i) - vmu) * vrs, g = vload(dyr + i), gw = g * vload(w + i);
      a1 += gw;
      a2 += gw * xh;
      vstore(dw + i, vload(dw + i) + g * xh);
      vstore(db + i, vload(db + i) + g);
    }
    float s1 = vsum(a1), s2 = vsum(a2);
    for (int i = full; i < d; i++) {
      const float xh = (xr[i] - mu) * rs, gw = dyr[i] * w[i];
      s1 += gw;
      s2 += gw * xh;
      dw[i] += dyr[i] * xh;
      db[i] += dyr[i];
    }
    s1 *= inv_d;
    s2 *= inv_d;
    const v8f v1 = vset(s1), v2 = vset(s2);
    for (int i = 0; i < full; i += 8) {
      const v8f t = vrs * (vload(dyr + i) * vload(w + i) - v1 - (vload(xr + i) - vmu) * vrs * v2);
      vstore(dxr + i, accumulate ? vload(dxr + i) + t : t);
    }
    for (int i = full; i < d; i++) {
      const float t = rs * (dyr[i] * w[i] - s1 - (xr[i] - mu) * rs * s2);
      dxr[i] = accumulate ? dxr[i] + t : t;
    }
  }
}
