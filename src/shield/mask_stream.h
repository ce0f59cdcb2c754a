/* mask_stream.h - the mask key streams of shield mode (internal; mask.c, f64.c, blind.c).
 *
 * A seed's mask is one stream of values read in order: tempo_shield_expand(64) reads n
 * of them into a buffer, the master's one-pass blinding (blind.c) reads them in the
 * order it writes the blinded operand. Both read the same stream, so a mask drawn in a
 * blinding pass equals the expansion's value at the same position. float32 values use
 * four 32-bit words each (chunks of 1024 values), float64 values five (chunks of 819,
 * mask.c and f64.c say why). The state holds key stream: wipe it with
 * tempo_shield_stream_wipe when done. */
#ifndef TEMPO_SHIELD_MASK_STREAM_H
#define TEMPO_SHIELD_MASK_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "tempo/shield.h"

#define TEMPO_SHIELD_STREAM_WORDS 4096 /* uint32 words of key stream per chunk (16 KiB) */

typedef struct {
  const uint8_t *seed; /* borrowed, TEMPO_SHIELD_SEED_BYTES */
  double scale;        /* sqrt(3) sigma 2^-32 */
  uint64_t ic;         /* 64-byte blocks of key stream consumed */
  int pos, have;       /* values used and available in buf */
  bool f64;
  uint32_t buf[TEMPO_SHIELD_STREAM_WORDS];
} tempo_shield_stream;

void tempo_shield_stream_init(tempo_shield_stream *s, const uint8_t seed[TEMPO_SHIELD_SEED_BYTES], double sigma,
                              bool f64);
/* The next chunk of key stream (pos = 0, have = the chunk's values); draw* call it. */
void tempo_shield_stream_refill(tempo_shield_stream *s);
/* The next n values of the stream (draw32 for a float32 stream, draw64 for a float64 one). */
void tempo_shield_draw32(tempo_shield_stream *s, float *out, size_t n);
void tempo_shield_draw64(tempo_shield_stream *s, double *out, size_t n);
void tempo_shield_stream_wipe(tempo_shield_stream *s);

#endif
