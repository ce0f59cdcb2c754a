/* linear.c - fully connected layer, ReLU and softmax cross-entropy (see layers.h). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tempo/common.h"
#include "tempo/layers.h"

tempo_status tempo_linear_declare(tempo_linear *l, tempo_params *p, const char *prefix, int in, int out,
                                  bool bias) {
  char name[TEMPO_PARAM_NAME_MAX];
  memset(l, 0, sizeof *l);
  l->in = in;
  l->out = out;
  l->b_idx = -1;
  snprintf(name, sizeof name, "%s.weight", prefix);
  tempo_status st = tempo_params_add(p, name, 2, (int[]){out, in}, 0, &l->w_idx);
  if (st || !bias) return st;
  snprintf(name, sizeof name, "%s.bias", prefix);
  return tempo_params_add(p, name, 1, (int[]){out}, TEMPO_PARAM_NO_DECAY, &l->b_idx);
}

void tempo_linear_init_default(const tempo_linear *l, tempo_params *p, tempo_rng *rng) {
  const double bound = 1.0 / sqrt((double)l->in);
  float *w = tempo_params_ptr(p, l->w_idx);
  for (size_t i = 0; i < (size_t)l->in * l->out; i++) w[i] = (float)((2.0 * tempo_rng_uniform(rng) - 1.0) * bound);
  if (l->b_idx >= 0) {
    float *b = tempo_params_ptr(p, l->b_idx);
    for (int i = 0; i < l->out; i++) b[i] = (float)((2.0 * tempo_rng_uniform(rng) - 1.0) * bound);
  }
}

tempo_status tempo_linear_forward(tempo_linear *l, tempo_mm *mm, const tempo_params *p, const float *x, int rows,
                                  float *y) {
  const tempo_mm_shape s = {.batch = 1, .m = rows, .n = l->in, .p = l->out, .w_trans = true};
  tempo_status st = tempo_mm_forward(mm, &l->site, &s, x, tempo_params_ptr(p, l->w_idx), y);
  if (st || l->b_idx < 0) return st;
  const float *b = tempo_params_ptr(p, l->b_idx);
  for (int r = 0; r < rows; r++) {
    float *yr = y + (size_t)r * l->out;
    for (int o = 0; o < l->out; o++) yr[o] += b[o];
  }
  return TEMPO_STATUS_OK;
}

tempo_status tempo_linear_backward(tempo_linear *l, tempo_mm *mm, tempo_params *p, const float *x, int rows,
                                   const float *dy, float *dx) {
  const tempo_mm_shape s = {.batch = 1, .m = rows, .n = l->in, .p = l->out, .w_trans = true};
  tempo_status st = tempo_mm_backward(mm, &l->site, &s, x, tempo_params_ptr(p, l->w_idx), dy, dx,
                                      tempo_params_grad(p, l->w_idx), TEMPO_MM_ACCUM_DW);
  if (st || l->b_idx < 0) return st;
  float *db = tempo_params_grad(p, l->b_idx);
  for (int r = 0; r < rows; r++) {
    const float *dyr = dy + (size_t)r * l->out;
    for (int o = 0; o < l->out; o++) db[o] += dyr[o];
  }
  return TEMPO_STATUS_OK;
}

void tempo_relu_forward(const float *x, float *y, size_t n) {
  for (size_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void tempo_relu_backward(const float *y, const float *dy, float *dx, size_t n) {
  for (size_t i = 0; i < n; i++) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}

double tempo_softmax_xent(const float *logits, const int *labels, int batch, int classes, float *dlogits,
                          int *correct) {
  double loss = 0.0;
  int ok = 0;
  for (int b = 0; b < batch; b++) {
    const float *z = logits + (size_t)b * classes;
    int arg = 0;
    float mx = z[0];
    for (int c = 1; c < classes; c++)
      if (z[c] > mx) mx = z[c], arg = c;
    double sum = 0.0;
    for (int c = 0; c < classes; c++) sum += exp((double)z[c] - mx);
    const double lse = mx + log(sum);
    loss += lse - z[labels[b]];
    ok += arg == labels[b];
    if (dlogits) {
      float *d = dlogits + (size_t)b * classes;
      for (int c = 0; c < classes; c++)
        d[c] = (float)((exp((double)z[c] - lse) - (c == labels[b] ? 1.0 : 0.0)) / batch);
    }
  }
  if (correct) *correct = ok;
  return loss / batch;
}
