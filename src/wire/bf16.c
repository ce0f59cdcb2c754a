/* bf16.c - array conversions between float32 and bfloat16 (bf16.h). Both sides of the wire
 * link this: the master's 16-bit passes and the worker's converting GEMM path. */
#include "tempo/bf16.h"

#include <stdatomic.h>
#include <stdbool.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define BF16_X86 1

static bool have_avx2(void) {
  static atomic_int cached = -1;
  int c = atomic_load(&cached);
  if (c < 0) {
    __builtin_cpu_init();
    c = __builtin_cpu_supports("avx2");
    atomic_store(&cached, c);
  }
  return c;
}

/* 8 floats -> 8 bfloat16 (round to nearest even; NaN quieted), the scalar rule lane by lane. */
__attribute__((target("avx2"))) static inline __m128i pack8(__m256 v) {
  const __m256i u = _mm256_castps_si256(v);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  const __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb), 16);
  const __m256i mag = _mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff));
  const __m256i nan = _mm256_cmpgt_epi32(mag, _mm256_set1_epi32(0x7f800000));
  const __m256i q = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
  const __m256i h = _mm256_blendv_epi8(r, q, nan);
  return _mm_packus_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

__attribute__((target("avx2"))) static size_t pack_avx2(const float *in, uint16_t *out, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) _mm_storeu_si128((__m128i *)(out + i), pack8(_mm256_loadu_ps(in + i)));
  return i;
}

__attribute__((target("avx2"))) static size_t unpack_avx2(const uint16_t *in, float *out, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(in + i)));
    _mm256_storeu_ps(out + i, _mm256_castsi256_ps(_mm256_slli_epi32(h, 16)));
  }
  return i;
}
#else
#define BF16_X86 0
#endif

void tempo_bf16_pack(const float *in, uint16_t *out, size_t n) {
  size_t i = 0;
#if BF16_X86
  if (have_avx2()) i = pack_avx2(in, out, n);
#endif
  for (; i < n; i++) out[i] = tempo_bf16_from_f32(in[i]);
}

void tempo_bf16_unpack(const uint16_t *in, float *out, size_t n) {
  size_t i = 0;
#if BF16_X86
  if (have_avx2()) i = unpack_avx2(in, out, n);
#endif
  for (; i < n; i++) out[i] = tempo_bf16_to_f32(in[i]);
}
