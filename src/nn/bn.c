/* bn.c - 2-D batch norm over NHWC rows (see cnn.h). Reductions run in float over chunks
 * of rows (vectorised across channels) and are added into double accumulators, so a
 * million-row batch keeps full float precision. R rows, C channels. */
/* The build is -O2, whose "very cheap" vectoriser skips any loop that needs a remainder or
 * an alias check, i.e. every channel loop here; let it weigh the cost instead. */
#pragma GCC optimize("vect-cost-model=dynamic")

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tempo/cnn.h"
#include "tempo/common.h"

#define BN_CHUNK 64 /* rows summed in float before the double accumulator */

tempo_status tempo_bn2d_declare(tempo_bn2d *bn, tempo_params *p, const char *prefix, int c) {
  char name[TEMPO_PARAM_NAME_MAX];
  memset(bn, 0, sizeof *bn);
  if (c < 1) return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "batchnorm %s: %d channels", prefix, c);
  bn->c = c;
  bn->momentum = 0.1f;
  bn->eps = 1e-5f;
  static const char *const suffix[4] = {"weight", "bias", "running_mean", "running_var"};
  int *idx[4] = {&bn->w_idx, &bn->b_idx, &bn->mean_idx, &bn->var_idx};
  for (int i = 0; i < 4; i++) {
    snprintf(name, sizeof name, "%s.%s", prefix, suffix[i]);
    tempo_status st = tempo_params_add(p, name, 1, (int[]){c}, i < 2 ? TEMPO_PARAM_NO_DECAY : TEMPO_PARAM_STATE,
                                       idx[i]);
    if (st) return st;
  }
  bn->save = tempo_alloc_floats((size_t)5 * c);
  bn->acc = calloc((size_t)2 * c, sizeof *bn->acc);
  if (!bn->save || !bn->acc) {
    tempo_bn2d_free(bn);
    return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "out of memory for batchnorm %s", prefix);
  }
  return TEMPO_STATUS_OK;
}

void tempo_bn2d_init(const tempo_bn2d *bn, tempo_params *p) {
  float *w = tempo_params_ptr(p, bn->w_idx), *b = tempo_params_ptr(p, bn->b_idx);
  float *rm = tempo_params_ptr(p, bn->mean_idx), *rv = tempo_params_ptr(p, bn->var_idx);
  for (int i = 0; i < bn->c; i++) w[i] = 1.0f, b[i] = 0.0f, rm[i] = 0.0f, rv[i] = 1.0f;
}

void tempo_bn2d_free(tempo_bn2d *bn) {
  tempo_free_floats(bn->save);
  free(bn->acc);
  bn->save = NULL;
  bn->acc = NULL;
}

/* acc0[c] += sum_r (a[r,c] - shift[c]), acc1[c] += sum_r (a[r,c] - shift[c])^2 (b == NULL),
 * or acc0 += sum b, acc1 += sum b * (a - shift) when b != NULL (the backward's sums). */
static void reduce2(const float *a, const float *b, const float *shift, int rows, int c, float *t0, float *t1,
                    double *acc0, double *acc1) {
  for (int r0 = 0; r0 < rows; r0 += BN_CHUNK) {
    const int r1 = r0 + BN_CHUNK < rows ? r0 + BN_CHUNK : rows;
    memset(t0, 0, (size_t)c * sizeof *t0);
    memset(t1, 0, (size_t)c * sizeof *t1);
    for (int r = r0; r < r1; r++) {
      const float *ar = a + (size_t)r * c;
      if (b) {
        const float *br = b + (size_t)r * c;
        for (int i = 0; i < c; i++) {
          t0[i] += br[i];
          t1[i] += br[i] * (ar[i] - shift[i]);
        }
      } else {
        for (int i = 0; i < c; i++) {
          const float d = ar[i] - shift[i];
          t0[i] += d;
          t1[i] += d * d;
        }
      }
    }
    for (int i = 0; i < c; i++) acc0[i] += t0[i], acc1[i] += t1[i];
  }
}

void tempo_bn2d_forward(tempo_bn2d *bn, tempo_params *p, bool training, const float *x, int rows,
                        const float *res, bool relu, float *y) {
  const int c = bn->c;
  float *mean = bn->save, *istd = bn->save + c, *scale = bn->save + 2 * c, *shift = bn->save + 3 * c;
  float *rm = tempo_params_ptr(p, bn->mean_idx), *rv = tempo_params_ptr(p, bn->var_idx);
  const float *g = tempo_params_ptr(p, bn->w_idx), *beta = tempo_params_ptr(p, bn->b_idx);
  bn->batch_stats = training;
  if (training) {
    /* Shifted sums around the first row keep E[d^2] - E[d]^2 well conditioned. */
    double *s0 = bn->acc, *s1 = bn->acc + c;
    memset(bn->acc, 0, (size_t)2 * c * sizeof *bn->acc);
    memcpy(mean, x, (size_t)c * sizeof *mean);
    reduce2(x, NULL, mean, rows, c, scale, shift, s0, s1);
    const double n = rows, unb = rows > 1 ? n / (n - 1.0) : 1.0, mom = bn->momentum;
    for (int i = 0; i < c; i++) {
      const double dm = s0[i] / n, var = fmax(s1[i] / n - dm * dm, 0.0), mu = mean[i] + dm;
      mean[i] = (float)mu;
      istd[i] = (float)(1.0 / sqrt(var + bn->eps));
      rm[i] = (float)((1.0 - mom) * rm[i] + mom * mu);
      rv[i] = (float)((1.0 - mom) * rv[i] + mom * var * unb);
    }
  } else {
    for (int i = 0; i < c; i++) {
      mean[i] = rm[i];
      istd[i] = (float)(1.0 / sqrt((double)rv[i] + bn->eps));
    }
  }
  for (int i = 0; i < c; i++) {
    scale[i] = g[i] * istd[i];
    shift[i] = beta[i] - mean[i] * scale[i];
  }
  for (int r = 0; r < rows; r++) {
    const float *xr = x + (size_t)r * c;
    float *yr = y + (size_t)r * c;
    if (res) {
      const float *rr = res + (size_t)r * c;
      if (relu)
        for (int i = 0; i < c; i++) {
          const float v = xr[i] * scale[i] + shift[i] + rr[i];
          yr[i] = v > 0.0f ? v : 0.0f;
        }
      else
        for (int i = 0; i < c; i++) yr[i] = xr[i] * scale[i] + shift[i] + rr[i];
    } else if (relu) {
      for (int i = 0; i < c; i++) {
        const float v = xr[i] * scale[i] + shift[i];
        yr[i] = v > 0.0f ? v : 0.0f;
      }
    } else {
      for (int i = 0; i < c; i++) yr[i] = xr[i] * scale[i] + shift[i];
    }
  }
}

void tempo_bn2d_backward(tempo_bn2d *bn, tempo_params *p, const float *x, int rows, const float *relu_y,
                         const float *dy, float *dx) {
  const int c = bn->c;
  const float *mean = bn->save, *istd = bn->save + c;
  float *ka = bn->save + 2 * c, *kb = bn->save + 3 * c; /* scratch: dx = ka*dy' + kb*x + kc */
  const float *g = tempo_params_ptr(p, bn->w_idx);
  float *dg = tempo_params_grad(p, bn->w_idx), *dbeta = tempo_params_grad(p, bn->b_idx);
  double *s0 = bn->acc, *s1 = bn->acc + c;
  /* The relu mask is applied in place when dx aliases dy, else into dx first. */
  const float *d = dy;
  if (relu_y) {
    /* element-wise: dx may equal dy, and ivdep lets the vectoriser ignore that */
#pragma GCC ivdep
    for (size_t i = 0, n = (size_t)rows * c; i < n; i++) {
      const float v = dy[i]; /* loaded unconditionally: a select, not a branch */
      dx[i] = relu_y[i] > 0.0f ? v : 0.0f;
    }
    d = dx;
  }
  memset(bn->acc, 0, (size_t)2 * c * sizeof *bn->acc);
  reduce2(x, d, mean, rows, c, ka, kb, s0, s1); /* s0 = sum dy', s1 = sum dy' (x - mean) */
  const double n = rows;
  float *kc = bn->save + 4 * c;
  for (int i = 0; i < c; i++) {
    const double sdx = s1[i] * istd[i]; /* sum dy' * xhat = dgamma */
    dg[i] += (float)sdx;
    dbeta[i] += (float)s0[i];
    if (bn->batch_stats) {
      const double k = (double)g[i] * istd[i], m1 = s0[i] / n, m2 = sdx / n;
      ka[i] = (float)k;
      kb[i] = (float)(-k * istd[i] * m2);
      kc[i] = (float)(k * (mean[i] * istd[i] * m2 - m1));
    } else {
      ka[i] = g[i] * istd[i];
      kb[i] = 0.0f;
      kc[i] = 0.0f;
    }
  }
  for (int r = 0; r < rows; r++) {
    const float *xr = x + (size_t)r * c, *dr = d + (size_t)r * c;
    float *o = dx + (size_t)r * c;
#pragma GCC ivdep
    for (int i = 0; i < c; i++) o[i] = ka[i] * dr[i] + kb[i] * xr[i] + kc[i];
  }
}
