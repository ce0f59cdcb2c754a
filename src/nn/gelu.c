/* gelu.c - GELU, exact erf form: gelu(x) = x Phi(x), Phi(x) = (1 + erf(x / sqrt 2)) / 2,
 * as PyTorch's F.gelu default (approximate='none'). Vectorised with vit_simd.h (erf to
 * 5e-7 absolute, so |gelu error| < 3e-7 |x|). */
#include "tempo/vit.h"
#include "vit_simd.h"

#define GELU_RSQRT2 0.70710678118654752f
#define GELU_RSQRT2PI 0.39894228040143268f

VS_INLINE v8f gelu8(v8f v) { return vset(0.5f) * v * (vset(1.0f) + verf(v * vset(GELU_RSQRT2))); }

/* d gelu / dx = Phi(x) + x phi(x) */
VS_INLINE v8f dgelu8(v8f v) {
  const v8f cdf = vset(0.5f) * (vset(1.0f) + verf(v * vset(GELU_RSQRT2)));
  return cdf + v * vset(GELU_RSQRT2PI) * vexp(vset(-0.5f) * v * v);
}

TEMPO_VIT_CLONES
void tempo_gelu_forward(const float *x, float *y, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) vstore(y + i, gelu8(vload(x + i)));
  if (i < n) vstore_part(y + i, gelu8(vload_part(x + i, (int)(n - i), 0.0f)), (int)(n - i));
}

TEMPO_VIT_CLONES
void tempo_gelu_backward(const float *x, const float *dy, float *dx, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) vstore(dx + i, vload(dy + i) * dgelu8(vload(x + i)));
  if (i < n) {
    const int k = (int)(n - i);
    vstore_part(dx + i, vload_part(dy + i, k, 0.0f) * dgelu8(vload_part(x + i, k, 0.0f)), k);
  }
}
