/* seal_internal.h - shared between the sealed-file code and the key code (not public). */
#ifndef TEMPO_SEAL_INTERNAL_H
#define TEMPO_SEAL_INTERNAL_H

#include <sodium.h>

#include "tempo/seal.h"

struct tempo_owner_key {
  uint8_t key[TEMPO_OWNER_KEY_BYTES];   /* the secretstream key */
  uint8_t id[TEMPO_OWNER_KEY_ID_BYTES]; /* BLAKE2b-128(context, key) */
};

TEMPO_WUR tempo_status tempo_seal_sodium_init(void);

static inline void tempo_seal_put_u32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8), p[2] = (uint8_t)(v >> 16), p[3] = (uint8_t)(v >> 24);
}
static inline uint32_t tempo_seal_get_u32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline void tempo_seal_put_u64(uint8_t *p, uint64_t v) {
  tempo_seal_put_u32(p, (uint32_t)v);
  tempo_seal_put_u32(p + 4, (uint32_t)(v >> 32));
}
static inline uint64_t tempo_seal_get_u64(const uint8_t *p) {
  return (uint64_t)tempo_seal_get_u32(p) | (uint64_t)tempo_seal_get_u32(p + 4) << 32;
}

#endif
