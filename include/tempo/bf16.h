/* bf16.h - bfloat16, the element type of the 16-bit wire (protocol.h TEMPO_DTYPE_BF16).
 *
 * A bfloat16 is the upper 16 bits of a float32: the same sign and 8-bit exponent (the same
 * range, 2^-126 .. ~3.4e38, so no value that fits a float32 overflows), 7 stored mantissa bits.
 * Rounding from float32 is to nearest, ties to even (unit roundoff 2^-8; a value within half
 * an ulp of FLT_MAX rounds up to infinity, as float rounding does); NaN stays NaN (quieted), and
 * infinities stay infinite. Widening back is exact. Both sides of the wire use these helpers:
 * no key, model or data code here. */
#ifndef TEMPO_BF16_H
#define TEMPO_BF16_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

static inline float tempo_bf16_to_f32(uint16_t h) {
  const uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

static inline uint16_t tempo_bf16_from_f32(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* NaN: quiet, never inf */
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* f rounded to bfloat16, as a float (exact: what the other side reads). */
static inline float tempo_bf16_round(float f) { return tempo_bf16_to_f32(tempo_bf16_from_f32(f)); }

/* out[i] = bf16(in[i]) for i < n (AVX2 where the CPU has it; the same bits as the scalar). */
void tempo_bf16_pack(const float *in, uint16_t *out, size_t n);
/* out[i] = in[i] widened, i < n (exact). */
void tempo_bf16_unpack(const uint16_t *in, float *out, size_t n);

#ifdef __cplusplus
}
#endif
#endif
