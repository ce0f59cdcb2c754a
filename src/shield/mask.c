/* mask.c - shield mode building blocks (shield.h): role table, mask expansion from a
 * seed, share arithmetic and the role assignment. No key material here: a worker could
 * link this file to expand masks itself. */
#include <math.h>
#include <sodium.h>
#include <string.h>

#include "tempo/shield.h"

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

#define EXPAND_CHUNK 2048 /* normals per ChaCha20 block run (8 bytes per pair) */

void tempo_shield_expand(const uint8_t seed[TEMPO_SHIELD_SEED_BYTES], float sigma, float *out, size_t n) {
  uint32_t buf[EXPAND_CHUNK];
  uint8_t nonce[crypto_stream_chacha20_NONCEBYTES] = {0};
  uint64_t ic = 0; /* block counter: 64-byte blocks consumed so far */
  const float two_pi = 6.28318530717958647692f, inv32 = 2.3283064365386963e-10f;
  for (size_t done = 0; done < n;) {
    /* each chunk: EXPAND_CHUNK uint32 = 128 blocks of 64 bytes */
    memset(buf, 0, sizeof buf);
    crypto_stream_chacha20_xor_ic((uint8_t *)buf, (const uint8_t *)buf, sizeof buf, nonce, ic, seed);
    ic += sizeof buf / 64;
    for (size_t i = 0; i + 1 < EXPAND_CHUNK && done < n; i += 2) {
      const float u1 = ((float)(buf[i] >> 8) + 0.5f) * (1.0f / 16777216.0f); /* (0, 1) */
      const float u2 = (float)buf[i + 1] * inv32;
      const float r = sigma * sqrtf(-2.0f * logf(u1));
      float s, c;
      sincosf(two_pi * u2, &s, &c);
      out[done++] = r * c;
      if (done < n) out[done++] = r * s;
    }
  }
  sodium_memzero(buf, sizeof buf);
}

double tempo_shield_rms(const float *x, size_t n) {
  if (n == 0) return 0;
  double s = 0;
  for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
  return sqrt(s / (double)n);
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
