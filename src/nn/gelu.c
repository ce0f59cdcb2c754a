/* gelu.c - GELU, exact erf form: gelu(x) = x Phi(x), Phi(x) = (1 + erf(x / sqrt 2)) / 2,
 * as PyTorch's F.gelu default (approximate='none'). */
#include <math.h>

#include "tempo/vit.h"

#define GELU_RSQRT2 0.70710678118654752f
#define GELU_RSQRT2PI 0.39894228040143268f

void tempo_gelu_forward(const float *x, float *y, size_t n) {
  for (size_t i = 0; i < n; i++) {
    const float v = x[i];
    y[i] = 0.5f * v * (1.0f + erff(v * GELU_RSQRT2));
  }
}

void tempo_gelu_backward(const float *x, const float *dy, float *dx, size_t n) {
  for (size_t i = 0; i < n; i++) {
    const float v = x[i];
    const float cdf = 0.5f * (1.0f + erff(v * GELU_RSQRT2));
    const float pdf = GELU_RSQRT2PI * expf(-0.5f * v * v);
    dx[i] = dy[i] * (cdf + v * pdf);
  }
}
