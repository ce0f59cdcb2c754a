/* dropout.c - inverted dropout with a byte mask (see vit.h). Each value draws 24 random
 * bits (two values per 64-bit number), so the drop probability is exact to 2^-24. */
#include <stdint.h>

#include "tempo/vit.h"

void tempo_dropout_forward(tempo_rng *rng, float p, const float *x, float *y, uint8_t *mask, size_t n) {
  if (p <= 0.0f) {
    for (size_t i = 0; i < n; i++) mask[i] = 1, y[i] = x[i];
    return;
  }
  const uint32_t thresh = (uint32_t)((double)p * (double)(1u << 24)); /* drop when draw < thresh */
  const float keep_scale = 1.0f / (1.0f - p);
  size_t i = 0;
  for (; i + 1 < n; i += 2) {
    const uint64_t r = tempo_rng_u64(rng);
    mask[i] = (uint32_t)(r & 0xffffffu) >= thresh;
    mask[i + 1] = (uint32_t)((r >> 32) & 0xffffffu) >= thresh;
  }
  if (i < n) mask[i] = (uint32_t)(tempo_rng_u64(rng) & 0xffffffu) >= thresh;
  for (i = 0; i < n; i++) y[i] = mask[i] ? x[i] * keep_scale : 0.0f;
}

void tempo_dropout_backward(float p, const uint8_t *mask, const float *dy, float *dx, size_t n) {
  const float keep_scale = p > 0.0f ? 1.0f / (1.0f - p) : 1.0f;
  for (size_t i = 0; i < n; i++) dx[i] = mask[i] ? dy[i] * keep_scale : 0.0f;
}
