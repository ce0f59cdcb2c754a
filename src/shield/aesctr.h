/* aesctr.h - AES-256 in counter mode with the CPU's AES instructions (internal; the mask
 * stream of mask_stream.h). Block i of the stream of (key, nonce) is
 *     AES-256_key(nonce (12 bytes) || big-endian 32-bit (ctr0 + i)),
 * the counter blocks of GCM, so libsodium's AES-256-GCM ciphertext of zeros (which starts
 * at counter 2) is a reference for tests. Constant time: no tables, only AES-NI (16 bytes
 * per instruction) or VAES on AVX-512 (64 bytes per instruction), chosen at run time.
 * The key schedule is secret: wipe it with tempo_aesctr_wipe. */
#ifndef TEMPO_SHIELD_AESCTR_H
#define TEMPO_SHIELD_AESCTR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
  uint8_t rk[15][16]; /* round keys */
} tempo_aesctr_key;

enum { TEMPO_AESCTR_NONE = 0, TEMPO_AESCTR_AESNI = 1, TEMPO_AESCTR_VAES = 2 };

/* The best implementation this CPU has (TEMPO_AESCTR_*); NONE: no AES instructions. */
int tempo_aesctr_support(void);
/* Expands a 32-byte key; false when the CPU has no AES instructions. */
bool tempo_aesctr_init(tempo_aesctr_key *k, const uint8_t key[32]);
/* out = blocks * 16 bytes of key stream from counter ctr0 (ctr0 + blocks <= 2^32), with
 * implementation `impl` (TEMPO_AESCTR_AESNI or _VAES, at most tempo_aesctr_support()). */
void tempo_aesctr_stream(const tempo_aesctr_key *k, int impl, const uint8_t nonce[12], uint32_t ctr0, uint8_t *out,
                         size_t blocks);
void tempo_aesctr_wipe(tempo_aesctr_key *k);

#endif
