/* rng.c - xoshiro256** seeded through splitmix64. */
#include "tempo/rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

void tempo_rng_seed(tempo_rng *r, uint64_t seed, uint64_t stream) {
  uint64_t x = seed ^ (stream * 0xd1b54a32d192ed03ULL);
  for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t tempo_rng_u64(tempo_rng *r) {
  uint64_t *s = r->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

uint64_t tempo_rng_below(tempo_rng *r, uint64_t bound) {
  __uint128_t m = (__uint128_t)tempo_rng_u64(r) * bound;
  uint64_t l = (uint64_t)m;
  if (l < bound) {
    uint64_t t = -bound % bound;
    while (l < t) {
      m = (__uint128_t)tempo_rng_u64(r) * bound;
      l = (uint64_t)m;
    }
  }
  return (uint64_t)(m >> 64);
}

double tempo_rng_uniform(tempo_rng *r) { return (double)(tempo_rng_u64(r) >> 11) * 0x1.0p-53; }

double tempo_rng_normal(tempo_rng *r) {
  double u1 = tempo_rng_uniform(r), u2 = tempo_rng_uniform(r);
  if (u1 < 1e-300) u1 = 1e-300;
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

double tempo_rng_trunc_normal(tempo_rng *r, double std) {
  for (;;) {
    double z = tempo_rng_normal(r);
    if (z >= -2.0 && z <= 2.0) return z * std;
  }
}

void tempo_rng_shuffle_u32(tempo_rng *r, uint32_t *a, uint32_t n) {
  for (uint32_t i = n; i > 1; i--) {
    uint32_t j = (uint32_t)tempo_rng_below(r, i);
    uint32_t t = a[i - 1];
    a[i - 1] = a[j];
    a[j] = t;
  }
}
