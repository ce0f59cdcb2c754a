/* protocol.h - the master <-> worker message format (docs/protocol.md).
 *
 * Every message is a fixed 80-byte little-endian header followed by a payload of
 * tensors stored back to back, all of the header's dtype (float32, float64 for shield
 * mode's shares, docs/shield.md, or bfloat16 operands for the 16-bit wire, whose results
 * are float32). The same bytes travel in-process and (later)
 * over MPI, so both sides treat every received header as untrusted: the decoder checks
 * magic, version, op, dtype, flags, dimensions (> 0 and capped), the split range and the
 * overflow-checked payload byte count before anything is allocated from it.
 *
 * Dimension letters: a product instance is Y' = X' W' with X' (m, n), W' (n, p),
 * Y' (m, p); `batch` instances. A message covers a split [lo, hi): rows of X' when
 * batch == 1, whole instances when batch > 1. Let cnt = 1 and rows = hi - lo when
 * batch == 1, cnt = hi - lo and rows = m when batch > 1. Tensors of a split:
 *   X'  (cnt, rows, n)     W'  (cnt, n, p) or (cnt, p, n) with W_TRANS
 *   dY* (cnt, rows, p)     Y'  (cnt, rows, p)
 *   dX' (cnt, rows, n)     dW' (cnt, n, p) or (cnt, p, n) with W_TRANS
 * This module has no dependency on keys, models or data: the worker program links it. */
#ifndef TEMPO_PROTOCOL_H
#define TEMPO_PROTOCOL_H

#include "tempo/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TEMPO_MSG_MAGIC 0x57504D54u /* "TMPW" little-endian */
#define TEMPO_MSG_VERSION 1u
#define TEMPO_MSG_HEADER_SIZE 80u
#define TEMPO_MSG_MAX_DIM (1u << 24)              /* m, n, p */
#define TEMPO_MSG_MAX_BATCH (1u << 20)            /* batch */
#define TEMPO_MSG_MAX_PAYLOAD ((uint64_t)1 << 31) /* bytes */
#define TEMPO_MSG_MAX_TEXT 1024u                  /* ERROR payload bytes */

typedef enum {
  TEMPO_OP_STORE = 1,    /* master->worker: keep the inline X' and/or W' under their handles; reply ACK */
  TEMPO_OP_FORWARD = 2,  /* master->worker: Y' = X' W' (operands inline or by handle); reply RESULT */
  TEMPO_OP_BACKWARD = 3, /* master->worker: dY* inline; dX' = dY* W'^T, dW' = X'^T dY*; reply RESULT */
  TEMPO_OP_RELEASE = 4,  /* master->worker: drop handle_x/handle_w (or all handles); reply ACK */
  TEMPO_OP_RESULT = 5,   /* worker->master: Y' (forward) or dX' then dW' (backward) */
  TEMPO_OP_ACK = 6,      /* worker->master: STORE or RELEASE done; no payload */
  TEMPO_OP_ERROR = 7,    /* worker->master: `code` says why; payload = message text */
} tempo_msg_op;

enum {
  TEMPO_MSG_F_W_TRANS = 1u << 0,     /* W', dW' in the stored layout (p, n) */
  TEMPO_MSG_F_KEEP = 1u << 1,        /* FORWARD: keep the inline operands under their handles */
  TEMPO_MSG_F_WANT_DX = 1u << 2,     /* BACKWARD / RESULT: dX' requested / present */
  TEMPO_MSG_F_WANT_DW = 1u << 3,     /* BACKWARD / RESULT: dW' requested / present */
  TEMPO_MSG_F_X_INLINE = 1u << 4,    /* X' is in the payload (else: cached under handle_x) */
  TEMPO_MSG_F_W_INLINE = 1u << 5,    /* W' is in the payload (else: cached under handle_w) */
  TEMPO_MSG_F_RELEASE_ALL = 1u << 6, /* RELEASE: drop every handle */
};

/* TEMPO_DTYPE_BF16: the 16-bit wire (docs/protocol.md): the operands X', W', dY* are bfloat16
 * (bf16.h: the upper 16 bits of a float32, rounded to nearest even) and the RESULT's tensors
 * Y', dX', dW' float32 (the worker accumulates in float32; a 16-bit result would put a rounding
 * of 2^-8 per element under the master's check, docs/obfuscation.md "The 16-bit wire"). */
enum { TEMPO_DTYPE_F32 = 1, TEMPO_DTYPE_F64 = 2, TEMPO_DTYPE_BF16 = 3 };

/* Bytes per element of a dtype; 0 for an unknown one. Ops without dims (RELEASE, ACK,
 * ERROR) carry TEMPO_DTYPE_F32; STORE/FORWARD/BACKWARD/RESULT may carry any, and a
 * RESULT has the dtype of its request. */
size_t tempo_msg_dtype_size(uint16_t dtype);
/* Bytes per element of a RESULT's tensors under a dtype: float32 for BF16, else its own size. */
size_t tempo_msg_result_size(uint16_t dtype);

/* The decoded header. Field order is not the wire order: see docs/protocol.md. */
typedef struct {
  uint32_t magic;
  uint16_t version;
  uint16_t op;          /* tempo_msg_op */
  uint64_t task_id;     /* chosen by the master; echoed in the reply */
  uint64_t handle_x;    /* operand cache handle of X' (0 = none) */
  uint64_t handle_w;    /* operand cache handle of W' (0 = none) */
  uint32_t batch, m, n, p;
  uint32_t lo, hi;      /* split range: rows (batch == 1) or instances (batch > 1) */
  uint32_t flags;       /* TEMPO_MSG_F_* */
  uint16_t dtype;       /* TEMPO_DTYPE_*: every payload tensor (BF16: a RESULT's are float32) */
  uint16_t code;        /* ERROR: -tempo_status of the failure; else 0 */
  uint64_t payload_len; /* bytes after the header */
  uint64_t compute_ns;  /* RESULT: the worker's compute time; else 0 */
} tempo_msg_header;

/* Element counts of one split (see the table above). All overflow-checked by the
 * decoder; only valid on a header that passed tempo_msg_header_check. */
typedef struct {
  size_t x, w, y, dy, dx, dw; /* elements per tensor of the split (of the header's dtype) */
} tempo_msg_sizes;

/* Fills a header with magic, version, dtype TEMPO_DTYPE_F32 and zeros elsewhere. */
void tempo_msg_header_init(tempo_msg_header *h, tempo_msg_op op);

/* Writes h into out[TEMPO_MSG_HEADER_SIZE] (little-endian). */
void tempo_msg_header_write(const tempo_msg_header *h, uint8_t *out);

/* Parses and fully validates a header (see the file comment). Returns
 * TEMPO_STATUS_CORRUPT with a message naming the bad field; *h is valid only on OK. */
TEMPO_WUR tempo_status tempo_msg_header_read(const uint8_t *buf, size_t len, tempo_msg_header *h);

/* The validation part of tempo_msg_header_read, for a header built in memory. */
TEMPO_WUR tempo_status tempo_msg_header_check(const tempo_msg_header *h);

/* Split sizes of a checked header (rows/instances as in the file comment). */
void tempo_msg_split_sizes(const tempo_msg_header *h, tempo_msg_sizes *s);

/* The payload bytes a header of this op/flags/dims must carry; false on overflow or
 * above TEMPO_MSG_MAX_PAYLOAD. Used by the encoder to size buffers. */
bool tempo_msg_payload_bytes(const tempo_msg_header *h, uint64_t *bytes);

/* A growable message buffer (header + payload, 64-byte aligned payload start is not
 * guaranteed; the payload begins at data + TEMPO_MSG_HEADER_SIZE, 16-byte aligned). */
typedef struct {
  uint8_t *data;
  size_t len, cap;
} tempo_msgbuf;

/* Makes room for a message with `payload_len` bytes of payload and writes the header
 * (h->payload_len is set). Returns a pointer to the payload. */
TEMPO_WUR tempo_status tempo_msgbuf_start(tempo_msgbuf *b, tempo_msg_header *h, uint64_t payload_len,
                                          uint8_t **payload);
void tempo_msgbuf_free(tempo_msgbuf *b);

/* Encodes a message whose payload is `nseg` segments written back to back. h->payload_len
 * is set to their total; the header is checked first (INVALID_ARGUMENT if the message
 * would not decode). */
TEMPO_WUR tempo_status tempo_msg_encode(tempo_msgbuf *b, tempo_msg_header *h, int nseg, const void *const *seg,
                                        const size_t *seg_len);

/* Decodes a whole received message: header checked, total length == 80 + payload_len.
 * *payload points into buf (not copied). */
TEMPO_WUR tempo_status tempo_msg_decode(const uint8_t *buf, size_t len, tempo_msg_header *h,
                                        const uint8_t **payload);

/* The most bytes (header included) any valid reply to the checked request req can have: its
 * RESULT (FORWARD, BACKWARD; a reduction chain member's reply carries less), else an ACK,
 * or an ERROR with the longest text. Receivers of replies refuse a longer frame before
 * allocating anything for it (docs/protocol.md). */
uint64_t tempo_msg_reply_bound(const tempo_msg_header *req);

/* A dW' reduction chain member (worker.h) reports in its reply header what it received from
 * its predecessor: handle_x, handle_w (unused in replies otherwise) = the 16-byte BLAKE2b
 * digest of the partial sum's bytes (of nothing: none came or it is the first member). When
 * the chain's sum fails the master's check, the master recomputes the partials one by one and
 * compares the prefix sums with these reports, so it can name the member that passed on a
 * wrong sum (docs/distributed.md). */
#define TEMPO_MSG_CHAIN_DIGEST 16u
void tempo_msg_chain_digest(const void *bytes, size_t len, uint8_t out[TEMPO_MSG_CHAIN_DIGEST]);
void tempo_msg_chain_digest_put(tempo_msg_header *h, const uint8_t d[TEMPO_MSG_CHAIN_DIGEST]);
void tempo_msg_chain_digest_get(const tempo_msg_header *h, uint8_t d[TEMPO_MSG_CHAIN_DIGEST]);

/* Encodes an ERROR reply for task `task_id` with status st and message text (truncated). */
TEMPO_WUR tempo_status tempo_msg_encode_error(tempo_msgbuf *b, uint64_t task_id, tempo_status st, const char *text);

const char *tempo_msg_op_name(uint16_t op);

#ifdef __cplusplus
}
#endif
#endif
