/* seal_internal.h - shared between the sealed-file code and the key code (not public). */
#ifndef TEMPO_SEAL_INTERNAL_H
#define TEMPO_SEAL_INTERNAL_H

#include <sodium.h>

#include "core/bytes.h"
#include "tempo/seal.h"

struct tempo_owner_key {
  uint8_t key[TEMPO_OWNER_KEY_BYTES];   /* the secretstream key */
  uint8_t id[TEMPO_OWNER_KEY_ID_BYTES]; /* BLAKE2b-128(context, key) */
};

TEMPO_WUR tempo_status tempo_seal_sodium_init(void);

#endif
