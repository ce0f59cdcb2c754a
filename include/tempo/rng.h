/* rng.h - a small, fast, seedable pseudo-random generator (xoshiro256**) for weight
 * initialisation, shuffling, augmentation and dropout. Deterministic for a seed.
 * NOT for keys: obfuscation keys come from libsodium (see obf.h). */
#ifndef TEMPO_RNG_H
#define TEMPO_RNG_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  uint64_t s[4];
} tempo_rng;

/* Seeds the generator; stream distinguishes independent streams from one seed. */
void tempo_rng_seed(tempo_rng *r, uint64_t seed, uint64_t stream);
uint64_t tempo_rng_u64(tempo_rng *r);
/* Uniform integer in [0, bound), unbiased (Lemire's method). bound > 0. */
uint64_t tempo_rng_below(tempo_rng *r, uint64_t bound);
/* Uniform float in [0, 1). */
double tempo_rng_uniform(tempo_rng *r);
/* Standard normal (Box-Muller). */
double tempo_rng_normal(tempo_rng *r);
/* Normal(0, std) truncated to [-2 std, 2 std] by rejection (as timm's trunc_normal_ with a=-2std,b=2std). */
double tempo_rng_trunc_normal(tempo_rng *r, double std);
/* Fisher-Yates shuffle of an index array. */
void tempo_rng_shuffle_u32(tempo_rng *r, uint32_t *a, uint32_t n);

#ifdef __cplusplus
}
#endif
#endif
