/* mask.c - shield mode building blocks (shield.h): role table, mask expansion from a
 * seed, share arithmetic and the role assignment. No key material here: a worker could
 * link this file to expand masks itself. */
#include <math.h>
#include <sodium.h>
#include <stdint.h>
#include <string.h>

#include "tempo/shield.h"
#include "dots.h"
#include "mask_stream.h"

/* role:            A      B      C      D
 * X operand:       X''    X''    R      R
 * W operand:       W''    S      W''    S
 * backward dY:     dY**   T      T      dY**   (masked iff X and W operands agree) */
bool tempo_shield_role_masked_x(int role) { return role == TEMPO_SHIELD_ROLE_A || role == TEMPO_SHIELD_ROLE_B; }
bool tempo_shield_role_masked_w(int role) { return role == TEMPO_SHIELD_ROLE_A || role == TEMPO_SHIELD_ROLE_C; }
bool tempo_shield_role_masked_dy(int role) { return tempo_shield_role_masked_x(role) == tempo_shield_role_masked_w(role); }
static int sgn(bool masked) { return masked ? 1 : -1; }
/* (X'' - R)(W'' - S): a share's sign is the product of its operands' signs */
int tempo_shield_sign_y(int role) { return sgn(tempo_shield_role_masked_x(role)) * sgn(tempo_shield_role_masked_w(role)); }
/* dX' = (dY** - T)(W'' - S)^T */
int tempo_shield_sign_dx(int role) { return sgn(tempo_shield_role_masked_dy(role)) * sgn(tempo_shield_role_masked_w(role)); }
/* dW' = (X'' - R)^T (dY** - T) */
int tempo_shield_sign_dw(int role) { return sgn(tempo_shield_role_masked_x(role)) * sgn(tempo_shield_role_masked_dy(role)); }

/* The mask distribution: the sum of four independent 32-bit uniforms, centred and scaled
 * to variance sigma^2 (Irwin-Hall, n = 4). It is as good as a Gaussian for hiding: the
 * statistical distance between x + r and r is |x| f_max with f_max = 0.385 / sigma
 * (Gaussian: 0.399 / sigma). The support is bounded at +-2 sqrt(3) sigma, but the density
 * vanishes there like t^3, so the chance that x + r lands where only x > 0 could put it
 * is ~ (|x| / sigma)^4 / 24 per element (1e-7 at alpha 32). 32-bit uniforms keep the
 * lattice of r (spacing 2^-30 sigma) below the float32 rounding of x + r (2^-23 sigma and
 * coarser), so x modulo the lattice is not visible. No transcendental functions: the
 * loop is integer adds and one multiply-add per element beside the cipher (AES-256-CTR
 * where the CPU has AES instructions, else ChaCha20: mask_stream.h). */
void tempo_shield_stream_init_cipher(tempo_shield_stream *s, const uint8_t seed[TEMPO_SHIELD_SEED_BYTES], double sigma,
                                     bool f64, int aes) {
  s->seed = seed;
  s->scale = 1.7320508075688772 * sigma * 0x1p-32;
  s->ic = 0;
  s->pos = s->have = 0;
  s->f64 = f64;
  const int best = tempo_aesctr_support();
  s->aes = aes == TEMPO_AESCTR_NONE ? TEMPO_AESCTR_NONE : aes < best ? aes : best;
  if (s->aes != TEMPO_AESCTR_NONE && !tempo_aesctr_init(&s->key, seed)) s->aes = TEMPO_AESCTR_NONE;
}

void tempo_shield_stream_init(tempo_shield_stream *s, const uint8_t seed[TEMPO_SHIELD_SEED_BYTES], double sigma,
                              bool f64) {
  tempo_shield_stream_init_cipher(s, seed, sigma, f64, TEMPO_AESCTR_VAES);
}

/* The next chunk of key stream: float32 values take four words (1024 per chunk), float64
 * ones five, in blocks of TEMPO_SHIELD_F64_LANES values (816 per chunk, the last 16 words
 * unused; f64.c); the float64 stream has its own nonce. */
void tempo_shield_stream_refill(tempo_shield_stream *s) {
  enum { AES_BLOCKS = sizeof s->buf / 16 };
  if (s->aes != TEMPO_AESCTR_NONE && s->ic + AES_BLOCKS > ((uint64_t)1 << 32)) { /* never reuse a counter */
    s->aes = TEMPO_AESCTR_NONE;
    s->ic = 0; /* ChaCha20 keyed by the seed: a stream apart from AES's */
  }
  if (s->aes != TEMPO_AESCTR_NONE) {
    const uint8_t nonce[12] = {s->f64 ? 1 : 0};
    tempo_aesctr_stream(&s->key, s->aes, nonce, (uint32_t)s->ic, (uint8_t *)s->buf, AES_BLOCKS);
    s->ic += AES_BLOCKS;
  } else {
    uint8_t nonce[crypto_stream_chacha20_NONCEBYTES] = {s->f64 ? 1 : 0};
    memset(s->buf, 0, sizeof s->buf);
    crypto_stream_chacha20_xor_ic((uint8_t *)s->buf, (const uint8_t *)s->buf, sizeof s->buf, nonce, s->ic, s->seed);
    s->ic += sizeof s->buf / 64;
  }
  s->pos = 0;
  s->have = s->f64 ? TEMPO_SHIELD_STREAM_WORDS / (5 * TEMPO_SHIELD_F64_LANES) * TEMPO_SHIELD_F64_LANES
                   : TEMPO_SHIELD_STREAM_WORDS / 4;
}

void tempo_shield_draw32(tempo_shield_stream *s, float *out, size_t n) {
  while (n > 0) {
    if (s->pos == s->have) tempo_shield_stream_refill(s);
    size_t k = (size_t)(s->have - s->pos);
    if (k > n) k = n;
    const uint32_t *u = s->buf + 4 * (size_t)s->pos;
    /* r = (sum u_i 2^-32 - 2) sqrt(3) sigma, with the sum taken exactly in 64-bit integers */
    for (size_t i = 0; i < k; i++, u += 4) {
      const int64_t sum = (int64_t)u[0] + u[1] + u[2] + u[3] - ((int64_t)1 << 33);
      out[i] = (float)((double)sum * s->scale);
    }
    s->pos += (int)k, out += k, n -= k;
  }
}

void tempo_shield_stream_wipe(tempo_shield_stream *s) { sodium_memzero(s, sizeof *s); }

void tempo_shield_expand(const uint8_t seed[TEMPO_SHIELD_SEED_BYTES], float sigma, float *out, size_t n) {
  tempo_shield_stream s;
  tempo_shield_stream_init(&s, seed, sigma, false);
  tempo_shield_draw32(&s, out, n);
  tempo_shield_stream_wipe(&s);
}

double tempo_shield_rms(const float *x, size_t n) {
  if (n == 0) return 0;
  return sqrt(tempo_shield_sumsq(x, n) / (double)n);
}

float tempo_shield_sigma(double alpha, double rms) {
  double s = alpha * rms;
  return (float)(s > 1e-30 ? s : 1e-30);
}

void tempo_shield_add(const float *a, const float *b, float *out, size_t n) {
  for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void tempo_shield_accumulate(double *acc, const float *share, int sign, size_t n) {
  if (sign > 0)
    for (size_t i = 0; i < n; i++) acc[i] += share[i];
  else
    for (size_t i = 0; i < n; i++) acc[i] -= share[i];
}

void tempo_shield_narrow(const double *acc, float *out, size_t n) {
  for (size_t i = 0; i < n; i++) out[i] = (float)acc[i];
}

bool tempo_shield_assign(int n_workers, const bool *live, int start, int roles[TEMPO_SHIELD_ROLES]) {
  int got = 0;
  for (int k = 0; k < n_workers && got < TEMPO_SHIELD_ROLES; k++) {
    int w = ((start % n_workers) + n_workers + k) % n_workers;
    if (live[w]) roles[got++] = w;
  }
  return got == TEMPO_SHIELD_ROLES;
}
