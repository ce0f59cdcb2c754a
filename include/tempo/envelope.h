/* envelope.h - the MPI framing around a protocol message (docs/distributed.md).
 *
 * Under MPI every master -> worker message is one MPI message: a 96-byte envelope, then
 * the protocol message (protocol.h) with one byte range possibly left out. That range
 * (normally W' of a row-split product) arrives instead from another worker (relay_from)
 * as a separate MPI message, and the receiver checks it against the envelope's
 * authenticator (tempo_relay_tag: a MAC, under a key the master shares with this worker
 * only, of the BLAKE2b digest the master computed once per operand); this worker then
 * forwards a range of its own message (fwd_off, fwd_len) to relay_to. So the master sends
 * W' once per product, not once per worker. A relay that fails its authenticator, is empty
 * or never comes is answered with an ERROR of code TEMPO_STATUS_BAD_RELAY, which the master
 * charges to the relayer, and the receiver passes an empty relay on (its successor answers
 * the same, and the master forgives a complaint whose relayer complained too). Worker ->
 * master replies are bare protocol messages.
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
 * 52 relay_to i32, 56 auth[32], 88 reduce_from u32, 92 reduce_to u32 (ranks; 0 = none,
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
  uint8_t auth[32];             /* tempo_relay_tag of the relayed range for this receiver (zeros without relay) */
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

/* The relay authenticator. digest = BLAKE2b-256 of the relayed bytes (the master computes it
 * once per operand); tag = BLAKE2b-256 keyed with the receiver's 32-byte key, of digest ||
 * task_id (u64 LE) || len (u64 LE): binds the bytes to this receiver and this request. The
 * keys are made at connect time (MPI: tempo_net_keys, an X25519 exchange on the master's
 * stream; in-process: random per thread), never written anywhere, and wiped at the end. */
#define TEMPO_RELAY_KEY_SIZE 32u
#define TEMPO_RELAY_TAG_SIZE 32u
void tempo_relay_digest(const uint8_t *bytes, size_t len, uint8_t digest[32]);
void tempo_relay_tag(const uint8_t key[TEMPO_RELAY_KEY_SIZE], const uint8_t digest[32], uint64_t task_id, uint64_t len,
                     uint8_t tag[TEMPO_RELAY_TAG_SIZE]);
/* Whether bytes[0, len) carry tag for task_id under key (constant-time comparison). */
bool tempo_relay_check(const uint8_t key[TEMPO_RELAY_KEY_SIZE], const uint8_t tag[TEMPO_RELAY_TAG_SIZE],
                       uint64_t task_id, const uint8_t *bytes, size_t len);

/* Bytes of the message carried inline after the envelope: msg_len - relay_len. */
uint64_t tempo_env_inline_bytes(const tempo_envelope *e);

#ifdef __cplusplus
}
#endif
#endif
