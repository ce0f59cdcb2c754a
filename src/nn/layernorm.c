/* layernorm.c - layer norm over the last dimension (see vit.h). R = rows, D = width.
 * Statistics are computed in two passes in float over one row (D <= a few hundred, so
 * the row stays in L1), with PyTorch's biased variance and eps 1e-5. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tempo/vit.h"

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

void tempo_layernorm_forward(const tempo_layernorm *l, const tempo_params *p, const float *x, int rows, float *y,
                             float *mean, float *rstd) {
  const int d = l->dim;
  const float *restrict w = tempo_params_ptr(p, l->w_idx), *restrict b = tempo_params_ptr(p, l->b_idx);
  const float inv_d = 1.0f / (float)d;
  for (int r = 0; r < rows; r++) {
    const float *restrict xr = x + (size_t)r * d;
    float *restrict yr = y + (size_t)r * d;
    float s = 0.0f;
    for (int i = 0; i < d; i++) s += xr[i];
    const float mu = s * inv_d;
    float v = 0.0f;
    for (int i = 0; i < d; i++) {
      const float c = xr[i] - mu;
      v += c * c;
    }
    const float rs = 1.0f / sqrtf(v * inv_d + TEMPO_LAYERNORM_EPS);
    for (int i = 0; i < d; i++) yr[i] = (xr[i] - mu) * rs * w[i] + b[i];
    mean[r] = mu;
    rstd[r] = rs;
  }
}

void tempo_layernorm_backward(const tempo_layernorm *l, tempo_params *p, const float *x, const float *mean,
                              const float *rstd, const float *dy, int rows, float *dx, bool accumulate) {
  const int d = l->dim;
  const float *restrict w = tempo_params_ptr(p, l->w_idx);
  float *restrict dw = tempo_params_grad(p, l->w_idx), *restrict db = tempo_params_grad(p, l->b_idx);
  const float inv_d = 1.0f / (float)d;
  for (int r = 0; r < rows; r++) {
    const float *restrict xr = x + (size_t)r * d, *restrict dyr = dy + (size_t)r * d;
    float *restrict dxr = dx + (size_t)r * d;
    const float mu = mean[r], rs = rstd[r];
    /* dxhat = dy * w; dx = rs * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)) */
    float s1 = 0.0f, s2 = 0.0f;
    for (int i = 0; i < d; i++) {
      const float xh = (xr[i] - mu) * rs, g = dyr[i] * w[i];
      s1 += g;
      s2 += g * xh;
      dw[i] += dyr[i] * xh;
      db[i] += dyr[i];
    }
    s1 *= inv_d;
    s2 *= inv_d;
    if (accumulate)
      for (int i = 0; i < d; i++) dxr[i] += rs * (dyr[i] * w[i] - s1 - (xr[i] - mu) * rs * s2);
    else
      for (int i = 0; i < d; i++) dxr[i] = rs * (dyr[i] * w[i] - s1 - (xr[i] - mu) * rs * s2);
  }
}
