/* pool.c - max/average/global-average pooling and the residual add over NHWC tensors
 * (see cnn.h). Inner loops run along C, contiguous in NHWC. Passes of at least SPLIT_MIN
 * floats run in blocks of samples (the residual add: of elements) over the tempo_parallel
 * pool; each block writes only its own samples, so results match one thread bit for bit. */
/* The build is -O2, whose "very cheap" vectoriser skips any loop that needs a remainder or
 * an alias check, i.e. every channel loop here; let it weigh the cost instead. */
#pragma GCC optimize("vect-cost-model=dynamic")

#include <float.h>
#include <string.h>

#include "tempo/cnn.h"
#include "tempo/parallel.h"

#define SPLIT_MIN 65536
#define SPLIT_TASKS_MAX 64

/* The arguments of every pass; a pass body handles units [lo, hi). */
typedef struct {
  const float *x, *b;
  const int32_t *argmax_in;
  float *y;
  int32_t *argmax;
  int h, w, c, k, stride, pad, oh, ow;
  bool relu;
  void (*body)(const void *pa, size_t lo, size_t hi);
  size_t units, per;
} pass_args;

static void split_task(void *a, int t) {
  const pass_args *j = a;
  const size_t lo = (size_t)t * j->per, hi = lo + j->per < j->units ? lo + j->per : j->units;
  j->body(j, lo, hi);
}

/* j->body over [0, units) in blocks; floats: the size of the whole pass. */
static void split_run(pass_args *j, size_t units, size_t floats, void (*body)(const void *, size_t, size_t)) {
  j->body = body;
  j->units = units;
  if (units < 2 || floats < SPLIT_MIN || tempo_parallel_threads() < 2) {
    body(j, 0, units);
    return;
  }
  size_t tasks = floats / (SPLIT_MIN / 2);
  if (tasks > SPLIT_TASKS_MAX) tasks = SPLIT_TASKS_MAX;
  if (tasks > units) tasks = units;
  j->per = (units + tasks - 1) / tasks;
  tempo_parallel_for((int)((units + j->per - 1) / j->per), split_task, j);
}

static void maxpool_fwd(const void *pa, size_t lo, size_t hi) {
  const pass_args *a = pa;
  const int h = a->h, w = a->w, c = a->c, k = a->k, stride = a->stride, pad = a->pad, oh = a->oh, ow = a->ow;
  for (size_t b = lo; b < hi; b++)
    for (int i = 0; i < oh; i++)
      for (int j = 0; j < ow; j++) {
        const size_t o = ((b * oh + i) * ow + j) * c;
        float *yo = a->y + o;
        int32_t *ao = a->argmax + o;
        for (int ch = 0; ch < c; ch++) yo[ch] = -FLT_MAX, ao[ch] = -1;
        for (int di = 0; di < k; di++) {
          const int ih = i * stride - pad + di;
          if (ih < 0 || ih >= h) continue;
          for (int dj = 0; dj < k; dj++) {
            const int iw = j * stride - pad + dj;
            if (iw < 0 || iw >= w) continue;
            const int32_t base = (int32_t)((ih * w + iw) * c);
            const float *xi = a->x + (b * h * w) * c + base;
            for (int ch = 0; ch < c; ch++)
              if (xi[ch] > yo[ch] || ao[ch] < 0) yo[ch] = xi[ch], ao[ch] = base + ch;
          }
        }
      }
}

void tempo_maxpool2d_forward(const float *x, int batch, int h, int w, int c, int k, int stride, int pad, float *y,
                             int32_t *argmax) {
  pass_args a = {.x = x, .y = y, .argmax = argmax, .h = h, .w = w, .c = c, .k = k, .stride = stride, .pad = pad,
                 .oh = tempo_conv_out_size(h, k, stride, pad), .ow = tempo_conv_out_size(w, k, stride, pad)};
  split_run(&a, (size_t)batch, (size_t)batch * h * w * c, maxpool_fwd);
}

static void maxpool_bwd(const void *pa, size_t lo, size_t hi) {
  const pass_args *a = pa;
  const size_t in_n = (size_t)a->h * a->w * a->c, out_n = (size_t)a->oh * a->ow * a->c;
  memset(a->y + lo * in_n, 0, (hi - lo) * in_n * sizeof *a->y);
  for (size_t b = lo; b < hi; b++) {
    float *dxb = a->y + b * in_n;
    const float *dyb = a->x + b * out_n;
    const int32_t *ab = a->argmax_in + b * out_n;
    for (size_t i = 0; i < out_n; i++)
      if (ab[i] >= 0) dxb[ab[i]] += dyb[i];
  }
}

void tempo_maxpool2d_backward(const float *dy, const int32_t *argmax, int batch, int h, int w, int c, int oh,
                              int ow, float *dx) {
  pass_args a = {.x = dy, .argmax_in = argmax, .y = dx, .h = h, .w = w, .c = c, .oh = oh, .ow = ow};
  split_run(&a, (size_t)batch, (size_t)batch * h * w * c, maxpool_bwd);
}

static void avgpool_fwd(const void *pa, size_t lo, size_t hi) {
  const pass_args *a = pa;
  const int h = a->h, w = a->w, c = a->c, k = a->k, stride = a->stride, pad = a->pad, oh = a->oh, ow = a->ow;
  const float inv = 1.0f / (float)(k * k);
  for (size_t b = lo; b < hi; b++)
    for (int i = 0; i < oh; i++)
      for (int j = 0; j < ow; j++) {
        float *yo = a->y + ((b * oh + i) * ow + j) * c;
        memset(yo, 0, (size_t)c * sizeof *yo);
        for (int di = 0; di < k; di++) {
          const int ih = i * stride - pad + di;
          if (ih < 0 || ih >= h) continue;
          for (int dj = 0; dj < k; dj++) {
            const int iw = j * stride - pad + dj;
            if (iw < 0 || iw >= w) continue;
            const float *xi = a->x + ((b * h + ih) * w + iw) * c;
            for (int ch = 0; ch < c; ch++) yo[ch] += xi[ch];
          }
        }
        for (int ch = 0; ch < c; ch++) yo[ch] *= inv;
      }
}

void tempo_avgpool2d_forward(const float *x, int batch, int h, int w, int c, int k, int stride, int pad, float *y) {
  pass_args a = {.x = x, .y = y, .h = h, .w = w, .c = c, .k = k, .stride = stride, .pad = pad,
                 .oh = tempo_conv_out_size(h, k, stride, pad), .ow = tempo_conv_out_size(w, k, stride, pad)};
  split_run(&a, (size_t)batch, (size_t)batch * h * w * c, avgpool_fwd);
}

static void avgpool_bwd(const void *pa, size_t lo, size_t hi) {
  const pass_args *a = pa;
  const int h = a->h, w = a->w, c = a->c, k = a->k, stride = a->stride, pad = a->pad, oh = a->oh, ow = a->ow;
  const float inv = 1.0f / (float)(k * k);
  memset(a->y + lo * h * w * c, 0, (hi - lo) * h * w * c * sizeof *a->y);
  for (size_t b = lo; b < hi; b++)
    for (int i = 0; i < oh; i++)
      for (int j = 0; j < ow; j++) {
        const float *dyo = a->x + ((b * oh + i) * ow + j) * c;
        for (int di = 0; di < k; di++) {
          const int ih = i * stride - pad + di;
          if (ih < 0 || ih >= h) continue;
          for (int dj = 0; dj < k; dj++) {
            const int iw = j * stride - pad + dj;
            if (iw < 0 || iw >= w) continue;
            float *dxi = a->y + ((b * h + ih) * w + iw) * c;
            for (int ch = 0; ch < c; ch++) dxi[ch] += dyo[ch] * inv;
          }
        }
      }
}

void tempo_avgpool2d_backward(const float *dy, int batch, int h, int w, int c, int k, int stride, int pad,
                              float *dx) {
  pass_args a = {.x = dy, .y = dx, .h = h, .w = w, .c = c, .k = k, .stride = stride, .pad = pad,
                 .oh = tempo_conv_out_size(h, k, stride, pad), .ow = tempo_conv_out_size(w, k, stride, pad)};
  split_run(&a, (size_t)batch, (size_t)batch * h * w * c, avgpool_bwd);
}

/* h holds hw for the global pool. */
static void gap_fwd(const void *pa, size_t lo, size_t hi) {
  const pass_args *a = pa;
  const int hw = a->h, c = a->c;
  const float inv = 1.0f / (float)hw;
  for (size_t b = lo; b < hi; b++) {
    float *yb = a->y + b * c;
    const float *xb = a->x + b * hw * c;
    memset(yb, 0, (size_t)c * sizeof *yb);
    for (int p = 0; p < hw; p++)
      for (int ch = 0; ch < c; ch++) yb[ch] += xb[(size_t)p * c + ch];
    for (int ch = 0; ch < c; ch++) yb[ch] *= inv;
  }
}

void tempo_gap_forward(const float *x, int batch, int hw, int c, float *y) {
  pass_args a = {.x = x, .y = y, .h = hw, .c = c};
  split_run(&a, (size_t)batch, (size_t)batch * hw * c, gap_fwd);
}

static void gap_bwd(const void *pa, size_t lo, size_t hi) {
  const pass_args *a = pa;
  const int hw = a->h, c = a->c;
  const float inv = 1.0f / (float)hw;
  for (size_t b = lo; b < hi; b++) {
    const float *dyb = a->x + b * c;
    float *xb = a->y + b * hw * c;
    for (int p = 0; p < hw; p++)
      for (int ch = 0; ch < c; ch++) xb[(size_t)p * c + ch] = dyb[ch] * inv;
  }
}

void tempo_gap_backward(const float *dy, int batch, int hw, int c, float *dx) {
  pass_args a = {.x = dy, .y = dx, .h = hw, .c = c};
  split_run(&a, (size_t)batch, (size_t)batch * hw * c, gap_bwd);
}

/* Elements [lo, hi) of y = a + b (relu). */
static void residual(const void *pa, size_t lo, size_t hi) {
  const pass_args *p = pa;
  const float *a = p->x, *b = p->b;
  float *y = p->y;
  if (p->relu)
#pragma GCC ivdep
    for (size_t i = lo; i < hi; i++) {
      const float v = a[i] + b[i];
      y[i] = v > 0.0f ? v : 0.0f;
    }
  else
#pragma GCC ivdep
    for (size_t i = lo; i < hi; i++) y[i] = a[i] + b[i];
}

void tempo_residual_add(const float *a, const float *b, float *y, size_t n, bool relu) {
  pass_args p = {.x = a, .b = b, .y = y, .relu = relu};
  split_run(&p, n, n, residual);
}
