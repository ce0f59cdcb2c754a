/* mask_stream.h - the mask key streams of shield mode (internal; mask.c, f64.c, blind.c).
 *
 * A seed's mask is one stream of values read in order: tempo_shield_expand(64) reads n
 * of them into a buffer, the master's one-pass blinding (blind.c) reads them in the
 * order it writes the blinded operand. Both read the same stream, so a mask drawn in a
 * blinding pass equals the expansion's value at the same position. float32 values use
 * four 32-bit words each (chunks of 1024 values), float64 values five (chunks of 819,
 * mask.c and f64.c say why). The key stream is AES-256-CTR (aesctr.h, nonce 0 for float32
 * values, 1 for float64) where the CPU has AES instructions, about 7x libsodium's ChaCha20
 * here with VAES, else ChaCha20 (libsodium, the same nonces); past 2^32 blocks (64 GiB of
 * one seed's stream) it continues in ChaCha20 so no counter block repeats. Both are PRFs
 * of the seed, so the masks are alike to anyone without the seed; a mask's values depend
 * on which cipher the master's CPU selects. The state holds key stream and the AES key
 * schedule: wipe it with tempo_shield_stream_wipe when done. */
#ifndef TEMPO_SHIELD_MASK_STREAM_H
#define TEMPO_SHIELD_MASK_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "aesctr.h"
#include "tempo/shield.h"

#define TEMPO_SHIELD_STREAM_WORDS 4096 /* uint32 words of key stream per chunk (16 KiB) */
#define TEMPO_SHIELD_F64_LANES 8       /* float64 values per block of five word planes (f64.c) */

typedef struct {
  const uint8_t *seed; /* borrowed, TEMPO_SHIELD_SEED_BYTES */
  double scale;        /* sqrt(3) sigma 2^-32 */
  uint64_t ic;         /* key stream consumed, in the cipher's blocks (AES 16 bytes, ChaCha20 64) */
  int pos, have;       /* values used and available in buf */
  bool f64;
  int aes;             /* TEMPO_AESCTR_* implementation, NONE = ChaCha20 */
  tempo_aesctr_key key;
  uint32_t buf[TEMPO_SHIELD_STREAM_WORDS];
} tempo_shield_stream;

void tempo_shield_stream_init(tempo_shield_stream *s, const uint8_t seed[TEMPO_SHIELD_SEED_BYTES], double sigma,
                              bool f64);
/* The same with a chosen cipher: TEMPO_AESCTR_NONE forces ChaCha20; an AES implementation
 * the CPU lacks falls back to the best it has (tests compare the two). */
void tempo_shield_stream_init_cipher(tempo_shield_stream *s, const uint8_t seed[TEMPO_SHIELD_SEED_BYTES], double sigma,
                                     bool f64, int aes);
/* The next chunk of key stream (pos = 0, have = the chunk's values); draw* call it. */
void tempo_shield_stream_refill(tempo_shield_stream *s);
/* The next n values of the stream (draw32 for a float32 stream, draw64 for a float64 one). */
void tempo_shield_draw32(tempo_shield_stream *s, float *out, size_t n);
void tempo_shield_draw64(tempo_shield_stream *s, double *out, size_t n);
void tempo_shield_stream_wipe(tempo_shield_stream *s);

#endif
