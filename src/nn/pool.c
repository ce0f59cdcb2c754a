/* pool.c - max/average/global-average pooling and the residual add over NHWC tensors
 * (see cnn.h). Inner loops run along C, contiguous in NHWC. */
/* The build is -O2, whose "very cheap" vectoriser skips any loop that needs a remainder or
 * an alias check, i.e. every channel loop here; let it weigh the cost instead. */
#pragma GCC optimize("vect-cost-model=dynamic")

#include <float.h>
#include <string.h>

#include "tempo/cnn.h"

void tempo_maxpool2d_forward(const float *x, int batch, int h, int w, int c, int k, int stride, int pad, float *y,
                             int32_t *argmax) {
  const int oh = tempo_conv_out_size(h, k, stride, pad), ow = tempo_conv_out_size(w, k, stride, pad);
  for (int b = 0; b < batch; b++)
    for (int i = 0; i < oh; i++)
      for (int j = 0; j < ow; j++) {
        const size_t o = (((size_t)b * oh + i) * ow + j) * c;
        float *yo = y + o;
        int32_t *ao = argmax + o;
        for (int ch = 0; ch < c; ch++) yo[ch] = -FLT_MAX, ao[ch] = -1;
        for (int di = 0; di < k; di++) {
          const int ih = i * stride - pad + di;
          if (ih < 0 || ih >= h) continue;
          for (int dj = 0; dj < k; dj++) {
            const int iw = j * stride - pad + dj;
            if (iw < 0 || iw >= w) continue;
            const int32_t base = (int32_t)((ih * w + iw) * c);
            const float *xi = x + ((size_t)b * h * w) * c + base;
            for (int ch = 0; ch < c; ch++)
              if (xi[ch] > yo[ch] || ao[ch] < 0) yo[ch] = xi[ch], ao[ch] = base + ch;
          }
        }
      }
}

void tempo_maxpool2d_backward(const float *dy, const int32_t *argmax, int batch, int h, int w, int c, int oh,
                              int ow, float *dx) {
  const size_t in_n = (size_t)h * w * c, out_n = (size_t)oh * ow * c;
  memset(dx, 0, (size_t)batch * in_n * sizeof *dx);
  for (int b = 0; b < batch; b++) {
    float *dxb = dx + b * in_n;
    const float *dyb = dy + b * out_n;
    const int32_t *ab = argmax + b * out_n;
    for (size_t i = 0; i < out_n; i++)
      if (ab[i] >= 0) dxb[ab[i]] += dyb[i];
  }
}

void tempo_avgpool2d_forward(const float *x, int batch, int h, int w, int c, int k, int stride, int pad, float *y) {
  const int oh = tempo_conv_out_size(h, k, stride, pad), ow = tempo_conv_out_size(w, k, stride, pad);
  const float inv = 1.0f / (float)(k * k);
  for (int b = 0; b < batch; b++)
    for (int i = 0; i < oh; i++)
      for (int j = 0; j < ow; j++) {
        float *yo = y + (((size_t)b * oh + i) * ow + j) * c;
        memset(yo, 0, (size_t)c * sizeof *yo);
        for (int di = 0; di < k; di++) {
          const int ih = i * stride - pad + di;
          if (ih < 0 || ih >= h) continue;
          for (int dj = 0; dj < k; dj++) {
            const int iw = j * stride - pad + dj;
            if (iw < 0 || iw >= w) continue;
            const float *xi = x + (((size_t)b * h + ih) * w + iw) * c;
            for (int ch = 0; ch < c; ch++) yo[ch] += xi[ch];
          }
        }
        for (int ch = 0; ch < c; ch++) yo[ch] *= inv;
      }
}

void tempo_avgpool2d_backward(const float *dy, int batch, int h, int w, int c, int k, int stride, int pad,
                              float *dx) {
  const int oh = tempo_conv_out_size(h, k, stride, pad), ow = tempo_conv_out_size(w, k, stride, pad);
  const float inv = 1.0f / (float)(k * k);
  memset(dx, 0, (size_t)batch * h * w * c * sizeof *dx);
  for (int b = 0; b < batch; b++)
    for (int i = 0; i < oh; i++)
      for (int j = 0; j < ow; j++) {
        const float *dyo = dy + (((size_t)b * oh + i) * ow + j) * c;
        for (int di = 0; di < k; di++) {
          const int ih = i * stride - pad + di;
          if (ih < 0 || ih >= h) continue;
          for (int dj = 0; dj < k; dj++) {
            const int iw = j * stride - pad + dj;
            if (iw < 0 || iw >= w) continue;
            float *dxi = dx + (((size_t)b * h + ih) * w + iw) * c;
            for (int ch = 0; ch < c; ch++) dxi[ch] += dyo[ch] * inv;
          }
        }
      }
}

void tempo_gap_forward(const float *x, int batch, int hw, int c, float *y) {
  const float inv = 1.0f / (float)hw;
  for (int b = 0; b < batch; b++) {
    float *yb = y + (size_t)b * c;
    const float *xb = x + (size_t)b * hw * c;
    memset(yb, 0, (size_t)c * sizeof *yb);
    for (int p = 0; p < hw; p++)
      for (int ch = 0; ch < c; ch++) yb[ch] += xb[(size_t)p * c + ch];
    for (int ch = 0; ch < c; ch++) yb[ch] *= inv;
  }
}

void tempo_gap_backward(const float *dy, int batch, int hw, int c, float *dx) {
  const float inv = 1.0f / (float)hw;
  for (int b = 0; b < batch; b++) {
    const float *dyb = dy + (size_t)b * c;
    float *xb = dx + (size_t)b * hw * c;
    for (int p = 0; p < hw; p++)
      for (int ch = 0; ch < c; ch++) xb[(size_t)p * c + ch] = dyb[ch] * inv;
  }
}

void tempo_residual_add(const float *a, const float *b, float *y, size_t n, bool relu) {
  if (relu)
#pragma GCC ivdep
    for (size_t i = 0; i < n; i++) {
      const float v = a[i] + b[i];
      y[i] = v > 0.0f ? v : 0.0f;
    }
  else
#pragma GCC ivdep
    for (size_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}
