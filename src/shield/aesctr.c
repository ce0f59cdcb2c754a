/* aesctr.c - AES-256-CTR key stream with AES-NI or VAES (aesctr.h). The key expansion is
 * FIPS-197's for Nk = 8 done with AESKEYGENASSIST; each counter block is the nonce with
 * the big-endian counter in its last four bytes. */
#include "aesctr.h"

#include <immintrin.h>
#include <sodium.h>
#include <string.h>

#define AESNI __attribute__((target("aes,sse4.1")))
#define VAES __attribute__((target("aes,sse4.1,avx512f,avx512bw,vaes")))

int tempo_aesctr_support(void) {
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("aes") || !__builtin_cpu_supports("sse4.1")) return TEMPO_AESCTR_NONE;
  if (__builtin_cpu_supports("vaes") && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw"))
    return TEMPO_AESCTR_VAES;
  return TEMPO_AESCTR_AESNI;
}

/* w[i] = w[i - 8] ^ f(w[i - 1]) over one 16-byte half: prefix-xor of the previous half's
 * four words, plus the assist word broadcast */
AESNI static __m128i next_half(__m128i prev, __m128i assist) {
  __m128i t = _mm_slli_si128(prev, 4);
  prev = _mm_xor_si128(prev, t);
  t = _mm_slli_si128(t, 4);
  prev = _mm_xor_si128(prev, t);
  t = _mm_slli_si128(t, 4);
  prev = _mm_xor_si128(prev, t);
  return _mm_xor_si128(prev, assist);
}

#define ROUND_PAIR(i, rcon)                                                                    \
  do {                                                                                         \
    a = next_half(a, _mm_shuffle_epi32(_mm_aeskeygenassist_si128(b, rcon), 0xff));            \
    _mm_storeu_si128((__m128i *)k->rk[2 * (i)], a);                                            \
    if ((i) < 7) {                                                                             \
      b = next_half(b, _mm_shuffle_epi32(_mm_aeskeygenassist_si128(a, 0), 0xaa));             \
      _mm_storeu_si128((__m128i *)k->rk[2 * (i) + 1], b);                                      \
    }                                                                                          \
  } while (0)

AESNI static void expand(tempo_aesctr_key *k, const uint8_t key[32]) {
  __m128i a = _mm_loadu_si128((const __m128i *)key), b = _mm_loadu_si128((const __m128i *)(key + 16));
  _mm_storeu_si128((__m128i *)k->rk[0], a);
  _mm_storeu_si128((__m128i *)k->rk[1], b);
  ROUND_PAIR(1, 0x01);
  ROUND_PAIR(2, 0x02);
  ROUND_PAIR(3, 0x04);
  ROUND_PAIR(4, 0x08);
  ROUND_PAIR(5, 0x10);
  ROUND_PAIR(6, 0x20);
  ROUND_PAIR(7, 0x40);
  a = b = _mm_setzero_si128();
}

bool tempo_aesctr_init(tempo_aesctr_key *k, const uint8_t key[32]) {
  if (tempo_aesctr_support() == TEMPO_AESCTR_NONE) return false;
  expand(k, key);
  return true;
}

void tempo_aesctr_wipe(tempo_aesctr_key *k) { sodium_memzero(k, sizeof *k); }

static uint32_t be32(uint32_t x) { return __builtin_bswap32(x); }

AESNI static void stream_aesni(const tempo_aesctr_key *k, const uint8_t nonce[12], uint32_t ctr, uint8_t *out,
                               size_t blocks) {
  __m128i rk[15];
  for (int r = 0; r < 15; r++) rk[r] = _mm_loadu_si128((const __m128i *)k->rk[r]);
  uint8_t nb[16] = {0};
  memcpy(nb, nonce, 12);
  const __m128i base = _mm_loadu_si128((const __m128i *)nb);
  for (; blocks >= 8; blocks -= 8, out += 128, ctr += 8) {
    __m128i b0, b1, b2, b3, b4, b5, b6, b7;
#define CTR(v, q) v = _mm_xor_si128(_mm_insert_epi32(base, (int)be32(ctr + q), 3), rk[0])
    CTR(b0, 0); CTR(b1, 1); CTR(b2, 2); CTR(b3, 3); CTR(b4, 4); CTR(b5, 5); CTR(b6, 6); CTR(b7, 7);
#undef CTR
    for (int r = 1; r < 14; r++) {
      const __m128i kr = rk[r];
      b0 = _mm_aesenc_si128(b0, kr), b1 = _mm_aesenc_si128(b1, kr), b2 = _mm_aesenc_si128(b2, kr);
      b3 = _mm_aesenc_si128(b3, kr), b4 = _mm_aesenc_si128(b4, kr), b5 = _mm_aesenc_si128(b5, kr);
      b6 = _mm_aesenc_si128(b6, kr), b7 = _mm_aesenc_si128(b7, kr);
    }
    _mm_storeu_si128((__m128i *)(out + 0), _mm_aesenclast_si128(b0, rk[14]));
    _mm_storeu_si128((__m128i *)(out + 16), _mm_aesenclast_si128(b1, rk[14]));
    _mm_storeu_si128((__m128i *)(out + 32), _mm_aesenclast_si128(b2, rk[14]));
    _mm_storeu_si128((__m128i *)(out + 48), _mm_aesenclast_si128(b3, rk[14]));
    _mm_storeu_si128((__m128i *)(out + 64), _mm_aesenclast_si128(b4, rk[14]));
    _mm_storeu_si128((__m128i *)(out + 80), _mm_aesenclast_si128(b5, rk[14]));
    _mm_storeu_si128((__m128i *)(out + 96), _mm_aesenclast_si128(b6, rk[14]));
    _mm_storeu_si128((__m128i *)(out + 112), _mm_aesenclast_si128(b7, rk[14]));
  }
  for (; blocks > 0; blocks--, out += 16, ctr++) { /* the tail, one block at a time */
    __m128i b = _mm_xor_si128(_mm_insert_epi32(base, (int)be32(ctr), 3), rk[0]);
    for (int r = 1; r < 14; r++) b = _mm_aesenc_si128(b, rk[r]);
    _mm_storeu_si128((__m128i *)out, _mm_aesenclast_si128(b, rk[14]));
  }
  sodium_memzero(rk, sizeof rk); /* the round keys' copy on this stack (the schedule itself is the caller's) */
}

VAES static void stream_vaes(const tempo_aesctr_key *k, const uint8_t nonce[12], uint32_t ctr, uint8_t *out,
                             size_t blocks) {
  __m512i rk[15];
  for (int r = 0; r < 15; r++) rk[r] = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)k->rk[r]));
  uint8_t nb[16] = {0};
  memcpy(nb, nonce, 12);
  const __m512i base = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)nb));
  /* per 128-bit lane: bytes 12..15 <- the little-endian counter's bytes 15..12, the rest zero */
  const __m512i bswap = _mm512_broadcast_i32x4(_mm_set_epi8(12, 13, 14, 15, -128, -128, -128, -128, -128, -128, -128,
                                                            -128, -128, -128, -128, -128));
  __m512i c = _mm512_add_epi32(_mm512_set_epi32(3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0),
                               _mm512_set1_epi32((int)ctr));
  c = _mm512_and_si512(c, _mm512_set_epi32(-1, 0, 0, 0, -1, 0, 0, 0, -1, 0, 0, 0, -1, 0, 0, 0));
  const __m512i four = _mm512_set_epi32(4, 0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0);
  /* eight vectors (32 blocks) in flight cover VAESENC's latency */
  for (; blocks >= 32; blocks -= 32, out += 512) {
    __m512i b0, b1, b2, b3, b4, b5, b6, b7;
#define CTR(v) v = _mm512_xor_si512(_mm512_or_si512(base, _mm512_shuffle_epi8(c, bswap)), rk[0]), c = _mm512_add_epi32(c, four)
    CTR(b0); CTR(b1); CTR(b2); CTR(b3); CTR(b4); CTR(b5); CTR(b6); CTR(b7);
#undef CTR
    for (int r = 1; r < 14; r++) {
      const __m512i kr = rk[r];
      b0 = _mm512_aesenc_epi128(b0, kr), b1 = _mm512_aesenc_epi128(b1, kr);
      b2 = _mm512_aesenc_epi128(b2, kr), b3 = _mm512_aesenc_epi128(b3, kr);
      b4 = _mm512_aesenc_epi128(b4, kr), b5 = _mm512_aesenc_epi128(b5, kr);
      b6 = _mm512_aesenc_epi128(b6, kr), b7 = _mm512_aesenc_epi128(b7, kr);
    }
    _mm512_storeu_si512((void *)(out + 0), _mm512_aesenclast_epi128(b0, rk[14]));
    _mm512_storeu_si512((void *)(out + 64), _mm512_aesenclast_epi128(b1, rk[14]));
    _mm512_storeu_si512((void *)(out + 128), _mm512_aesenclast_epi128(b2, rk[14]));
    _mm512_storeu_si512((void *)(out + 192), _mm512_aesenclast_epi128(b3, rk[14]));
    _mm512_storeu_si512((void *)(out + 256), _mm512_aesenclast_epi128(b4, rk[14]));
    _mm512_storeu_si512((void *)(out + 320), _mm512_aesenclast_epi128(b5, rk[14]));
    _mm512_storeu_si512((void *)(out + 384), _mm512_aesenclast_epi128(b6, rk[14]));
    _mm512_storeu_si512((void *)(out + 448), _mm512_aesenclast_epi128(b7, rk[14]));
    ctr += 32;
  }
  if (blocks > 0) stream_aesni(k, nonce, ctr, out, blocks);
  sodium_memzero(rk, sizeof rk); /* as in stream_aesni */
}

void tempo_aesctr_stream(const tempo_aesctr_key *k, int impl, const uint8_t nonce[12], uint32_t ctr0, uint8_t *out,
                         size_t blocks) {
  if (impl == TEMPO_AESCTR_VAES) stream_vaes(k, nonce, ctr0, out, blocks);
  else stream_aesni(k, nonce, ctr0, out, blocks);
}
