/* envelope.h - the MPI framing around a protocol message (docs/distributed.md).
 *
 * Under MPI every master -> worker message is one MPI message: a 96-byte envelope, then
 * the protocol message (protocol.h) with one byte range possibly left out. That range
 * (normally W' of a row-split product) arrives instead from another worker (relay_from)
 * as a separate MPI message, and the receiver checks it against the envelope's BLAKE2b
 * digest, which the master computed; this worker then forwards a range of its own
 * message (fwd_off, fwd_len) to relay_to. So the master sends W' once per product, not
 * once per worker. Worker -> master replies are bare protocol messages.
 *
 * A BACKWARD request may also be a member of a dW' reduction chain (reduce_from/reduce_to):
 * the worker adds the partial dW' sum received from reduce_from to its own dW' and sends
 * the sum on to reduce_to; then its reply to the master carries dX' only (an ACK when no dX'
 * was asked). The last member (no reduce_to) replies with the whole sum as its dW'. A member
 * that cannot take a valid partial sends an empty one on and does not add; the master's
 * check of the final sum catches it (docs/distributed.md).
 *
 * Layout (little-endian): 0 magic "TMPE", 4 version u16, 6 kind u16, 8 msg_len u64,
 * 16 relay_off u64, 24 relay_len u64, 32 fwd_off u64, 40 fwd_len u64, 48 relay_from i32,
 * 52 relay_to i32, 56 digest[32], 88 reduce_from u32, 92 reduce_to u32 (ranks; 0 = none,
 * as rank 0 is the master). The decoder is for untrusted bytes: every field is checked
 * before anything is allocated from it. */
#ifndef TEMPO_ENVELOPE_H
#define TEMPO_ENVELOPE_H

#include "tempo/protocol.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TEMPO_ENV_MAGIC 0x45504D54u /* "TMPE" little-endian */
#define TEMPO_ENV_VERSION 1u
#define TEMPO_ENV_SIZE 96u
#define TEMPO_ENV_MAX_MSG (TEMPO_MSG_HEADER_SIZE + TEMPO_MSG_MAX_PAYLOAD)

typedef enum { TEMPO_ENV_REQUEST = 1, TEMPO_ENV_SHUTDOWN = 2 } tempo_env_kind;

typedef struct {
  uint16_t kind;                /* tempo_env_kind */
  uint64_t msg_len;             /* whole protocol message bytes (REQUEST) */
  uint64_t relay_off, relay_len; /* range of the message that arrives from relay_from */
  uint64_t fwd_off, fwd_len;    /* range of the message to forward to relay_to */
  int32_t relay_from, relay_to; /* MPI ranks, -1 = none */
  uint8_t digest[32];           /* BLAKE2b-256 of the relayed range (zeros without relay) */
  int32_t reduce_from, reduce_to; /* dW' reduction chain neighbours (MPI ranks), -1 = none */
} tempo_envelope;

void tempo_env_init(tempo_envelope *e, tempo_env_kind kind);
void tempo_env_write(const tempo_envelope *e, uint8_t out[TEMPO_ENV_SIZE]);

/* Parses and validates an envelope received by rank `self` of `world` ranks (rank 0 is
 * the master): magic, version, kind, ranges inside msg_len (overflow-checked), ranges
 * not covering the protocol header, ranks in 1..world-1 and not self, a relay with a
 * range and a source, a forward with a range and a target, reduction neighbours that are
 * worker ranks other than self and each other. TEMPO_STATUS_CORRUPT with a
 * message naming the field otherwise. */
TEMPO_WUR tempo_status tempo_env_read(const uint8_t *buf, size_t len, int self, int world, tempo_envelope *e);

/* Bytes of the message carried inline after the envelope: msg_len - relay_len. */
uint64_t tempo_env_inline_bytes(const tempo_envelope *e);

#ifdef __cplusplus
}
#endif
#endif
