/* protocol.c - encoding and validating decoding of master <-> worker messages
 * (protocol.h, docs/protocol.md). Used on both sides of the trust boundary. */
#include "tempo/protocol.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "core/bytes.h"
#include "tempo/common.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the float payloads are sent in host order; a big-endian host needs byte swapping here"
#endif


const char *tempo_msg_op_name(uint16_t op) {
  switch (op) {
  case TEMPO_OP_STORE: return "STORE";
  case TEMPO_OP_FORWARD: return "FORWARD";
  case TEMPO_OP_BACKWARD: return "BACKWARD";
  case TEMPO_OP_RELEASE: return "RELEASE";
  case TEMPO_OP_RESULT: return "RESULT";
  case TEMPO_OP_ACK: return "ACK";
  case TEMPO_OP_ERROR: return "ERROR";
  }
  return "?";
}

size_t tempo_msg_dtype_size(uint16_t dtype) {
  switch (dtype) {
  case TEMPO_DTYPE_F32: return sizeof(float);
  case TEMPO_DTYPE_F64: return sizeof(double);
  case TEMPO_DTYPE_BF16: return sizeof(uint16_t);
  }
  return 0;
}

size_t tempo_msg_result_size(uint16_t dtype) {
  return dtype == TEMPO_DTYPE_BF16 ? sizeof(float) : tempo_msg_dtype_size(dtype);
}

void tempo_msg_header_init(tempo_msg_header *h, tempo_msg_op op) {
  memset(h, 0, sizeof *h);
  h->magic = TEMPO_MSG_MAGIC;
  h->version = TEMPO_MSG_VERSION;
  h->op = (uint16_t)op;
  h->dtype = TEMPO_DTYPE_F32;
}

/* Wire layout (offsets in bytes); see docs/protocol.md. */
void tempo_msg_header_write(const tempo_msg_header *h, uint8_t *o) {
  tempo_le_put32(o + 0, h->magic);
  tempo_le_put16(o + 4, h->version);
  tempo_le_put16(o + 6, h->op);
  tempo_le_put64(o + 8, h->task_id);
  tempo_le_put64(o + 16, h->handle_x);
  tempo_le_put64(o + 24, h->handle_w);
  tempo_le_put32(o + 32, h->batch);
  tempo_le_put32(o + 36, h->m);
  tempo_le_put32(o + 40, h->n);
  tempo_le_put32(o + 44, h->p);
  tempo_le_put32(o + 48, h->lo);
  tempo_le_put32(o + 52, h->hi);
  tempo_le_put32(o + 56, h->flags);
  tempo_le_put16(o + 60, h->dtype);
  tempo_le_put16(o + 62, h->code);
  tempo_le_put64(o + 64, h->payload_len);
  tempo_le_put64(o + 72, h->compute_ns);
}

static bool has_dims(uint16_t op) {
  return op == TEMPO_OP_STORE || op == TEMPO_OP_FORWARD || op == TEMPO_OP_BACKWARD || op == TEMPO_OP_RESULT;
}

void tempo_msg_split_sizes(const tempo_msg_header *h, tempo_msg_sizes *s) {
  memset(s, 0, sizeof *s);
  if (!has_dims(h->op)) return;
  size_t cnt = h->batch == 1 ? 1 : (size_t)(h->hi - h->lo);
  size_t rows = h->batch == 1 ? (size_t)(h->hi - h->lo) : h->m;
  /* Dims are capped at 2^24 and cnt at 2^20, so these products fit in 64 bits; the
   * payload total is checked against TEMPO_MSG_MAX_PAYLOAD separately. */
  s->x = cnt * rows * h->n;
  s->w = cnt * (size_t)h->n * h->p;
  s->y = s->dy = cnt * rows * h->p;
  s->dx = s->x;
  s->dw = s->w;
}

bool tempo_msg_payload_bytes(const tempo_msg_header *h, uint64_t *bytes) {
  tempo_msg_sizes s;
  tempo_msg_split_sizes(h, &s);
  unsigned f = h->flags;
  const size_t esize = h->op == TEMPO_OP_RESULT ? tempo_msg_result_size(h->dtype) : tempo_msg_dtype_size(h->dtype);
  if (esize == 0) return false;
  uint64_t floats = 0; /* elements */
  switch (h->op) {
  case TEMPO_OP_STORE:
  case TEMPO_OP_FORWARD:
    floats = ((f & TEMPO_MSG_F_X_INLINE) ? s.x : 0) + ((f & TEMPO_MSG_F_W_INLINE) ? s.w : 0);
    break;
  case TEMPO_OP_BACKWARD:
    floats = s.dy + ((f & TEMPO_MSG_F_X_INLINE) ? s.x : 0) + ((f & TEMPO_MSG_F_W_INLINE) ? s.w : 0);
    break;
  case TEMPO_OP_RESULT:
    if (f & (TEMPO_MSG_F_WANT_DX | TEMPO_MSG_F_WANT_DW))
      floats = ((f & TEMPO_MSG_F_WANT_DX) ? s.dx : 0) + ((f & TEMPO_MSG_F_WANT_DW) ? s.dw : 0);
    else
      floats = s.y;
    break;
  default: floats = 0; break;
  }
  /* each term is < 2^(24+24+20) elements: no overflow in the sum; scale with a check */
  if (floats > TEMPO_MSG_MAX_PAYLOAD / esize) return false;
  *bytes = floats * esize;
  return true;
}

#define BAD(...) return tempo_set_error(TEMPO_STATUS_CORRUPT, __VA_ARGS__)

tempo_status tempo_msg_header_check(const tempo_msg_header *h) {
  if (h->magic != TEMPO_MSG_MAGIC) BAD("message: bad magic 0x%08x", (unsigned)h->magic);
  if (h->version != TEMPO_MSG_VERSION) BAD("message: unsupported version %u", (unsigned)h->version);
  if (h->op < TEMPO_OP_STORE || h->op > TEMPO_OP_ERROR) BAD("message: unknown op %u", (unsigned)h->op);
  if (tempo_msg_dtype_size(h->dtype) == 0) BAD("message: unknown dtype %u", (unsigned)h->dtype);
  if (h->dtype != TEMPO_DTYPE_F32 && !has_dims(h->op))
    BAD("message: %s must carry dtype float32", tempo_msg_op_name(h->op));
  const unsigned f = h->flags;
  unsigned allowed = 0;
  switch (h->op) {
  case TEMPO_OP_STORE: allowed = TEMPO_MSG_F_W_TRANS | TEMPO_MSG_F_X_INLINE | TEMPO_MSG_F_W_INLINE; break;
  case TEMPO_OP_FORWARD:
    allowed = TEMPO_MSG_F_W_TRANS | TEMPO_MSG_F_KEEP | TEMPO_MSG_F_X_INLINE | TEMPO_MSG_F_W_INLINE;
    break;
  case TEMPO_OP_BACKWARD:
    allowed = TEMPO_MSG_F_W_TRANS | TEMPO_MSG_F_WANT_DX | TEMPO_MSG_F_WANT_DW | TEMPO_MSG_F_X_INLINE |
              TEMPO_MSG_F_W_INLINE;
    break;
  case TEMPO_OP_RESULT: allowed = TEMPO_MSG_F_W_TRANS | TEMPO_MSG_F_WANT_DX | TEMPO_MSG_F_WANT_DW; break;
  case TEMPO_OP_RELEASE: allowed = TEMPO_MSG_F_RELEASE_ALL; break;
  default: allowed = 0; break;
  }
  if (f & ~allowed) BAD("message: flags 0x%x not allowed for %s", f & ~allowed, tempo_msg_op_name(h->op));
  if (h->op == TEMPO_OP_ERROR) {
    if (h->code == 0 || h->code > 127) BAD("message: ERROR with bad code %u", (unsigned)h->code);
  } else if (h->code != 0) {
    BAD("message: nonzero code in %s", tempo_msg_op_name(h->op));
  }
  if (h->compute_ns != 0 && h->op != TEMPO_OP_RESULT) BAD("message: compute time in %s", tempo_msg_op_name(h->op));
  if (!has_dims(h->op)) {
    if (h->batch || h->m || h->n || h->p || h->lo || h->hi)
      BAD("message: %s must not carry dimensions", tempo_msg_op_name(h->op));
    if (h->op == TEMPO_OP_ERROR) {
      if (h->payload_len > TEMPO_MSG_MAX_TEXT) BAD("message: ERROR text of %llu bytes", (unsigned long long)h->payload_len);
    } else if (h->payload_len != 0) {
      BAD("message: %s must have no payload", tempo_msg_op_name(h->op));
    }
    if (h->op == TEMPO_OP_RELEASE && !(f & TEMPO_MSG_F_RELEASE_ALL) && !h->handle_x && !h->handle_w)
      BAD("message: RELEASE names no handle");
    return TEMPO_STATUS_OK;
  }
  if (h->batch < 1 || h->batch > TEMPO_MSG_MAX_BATCH) BAD("message: batch %u out of 1..2^20", (unsigned)h->batch);
  if (h->m < 1 || h->m > TEMPO_MSG_MAX_DIM || h->n < 1 || h->n > TEMPO_MSG_MAX_DIM || h->p < 1 ||
      h->p > TEMPO_MSG_MAX_DIM)
    BAD("message: dims m=%u n=%u p=%u out of 1..2^24", (unsigned)h->m, (unsigned)h->n, (unsigned)h->p);
  uint32_t limit = h->batch == 1 ? h->m : h->batch;
  if (h->lo >= h->hi || h->hi > limit)
    BAD("message: split [%u, %u) outside [0, %u)", (unsigned)h->lo, (unsigned)h->hi, (unsigned)limit);
  const bool xin = f & TEMPO_MSG_F_X_INLINE, win = f & TEMPO_MSG_F_W_INLINE;
  if (h->op == TEMPO_OP_STORE) {
    if (!xin && !win) BAD("message: STORE without operands");
    if ((xin && !h->handle_x) || (win && !h->handle_w)) BAD("message: STORE operand without a handle");
  } else if (h->op == TEMPO_OP_FORWARD) {
    if ((!xin && !h->handle_x) || (!win && !h->handle_w)) BAD("message: FORWARD operand neither inline nor cached");
    if ((f & TEMPO_MSG_F_KEEP) && ((xin && !h->handle_x) || (win && !h->handle_w)))
      BAD("message: FORWARD keeps an operand without a handle");
  } else if (h->op == TEMPO_OP_BACKWARD) {
    if (!(f & (TEMPO_MSG_F_WANT_DX | TEMPO_MSG_F_WANT_DW))) BAD("message: BACKWARD wants nothing");
    if ((f & TEMPO_MSG_F_WANT_DX) && !win && !h->handle_w) BAD("message: BACKWARD dX needs W'");
    if ((f & TEMPO_MSG_F_WANT_DW) && !xin && !h->handle_x) BAD("message: BACKWARD dW needs X'");
  }
  uint64_t bytes;
  if (!tempo_msg_payload_bytes(h, &bytes)) BAD("message: payload above the 2 GiB cap");
  if (bytes != h->payload_len)
    BAD("message: %s payload is %llu bytes, its dimensions need %llu", tempo_msg_op_name(h->op),
        (unsigned long long)h->payload_len, (unsigned long long)bytes);
  return TEMPO_STATUS_OK;
}

tempo_status tempo_msg_header_read(const uint8_t *b, size_t len, tempo_msg_header *h) {
  if (!b || len < TEMPO_MSG_HEADER_SIZE) BAD("message: truncated header (%zu bytes)", len);
  h->magic = tempo_le_get32(b + 0);
  h->version = tempo_le_get16(b + 4);
  h->op = tempo_le_get16(b + 6);
  h->task_id = tempo_le_get64(b + 8);
  h->handle_x = tempo_le_get64(b + 16);
  h->handle_w = tempo_le_get64(b + 24);
  h->batch = tempo_le_get32(b + 32);
  h->m = tempo_le_get32(b + 36);
  h->n = tempo_le_get32(b + 40);
  h->p = tempo_le_get32(b + 44);
  h->lo = tempo_le_get32(b + 48);
  h->hi = tempo_le_get32(b + 52);
  h->flags = tempo_le_get32(b + 56);
  h->dtype = tempo_le_get16(b + 60);
  h->code = tempo_le_get16(b + 62);
  h->payload_len = tempo_le_get64(b + 64);
  h->compute_ns = tempo_le_get64(b + 72);
  return tempo_msg_header_check(h);
}

tempo_status tempo_msg_decode(const uint8_t *buf, size_t len, tempo_msg_header *h, const uint8_t **payload) {
  tempo_status st = tempo_msg_header_read(buf, len, h);
  if (st) return st;
  if (len - TEMPO_MSG_HEADER_SIZE != h->payload_len)
    BAD("message: %zu payload bytes received, header says %llu", len - TEMPO_MSG_HEADER_SIZE,
        (unsigned long long)h->payload_len);
  *payload = buf + TEMPO_MSG_HEADER_SIZE;
  return TEMPO_STATUS_OK;
}

static tempo_status reserve(tempo_msgbuf *b, size_t need) {
  if (need <= b->cap) return TEMPO_STATUS_OK;
  size_t cap = need < 4096 ? 4096 : need + need / 4;
  cap = (cap + 63) & ~(size_t)63;
  uint8_t *d = aligned_alloc(64, cap);
  if (!d) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "out of memory for a %zu-byte message", need);
  free(b->data);
  b->data = d;
  b->cap = cap;
  return TEMPO_STATUS_OK;
}

tempo_status tempo_msgbuf_start(tempo_msgbuf *b, tempo_msg_header *h, uint64_t payload_len, uint8_t **payload) {
  if (payload_len > TEMPO_MSG_MAX_PAYLOAD)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "message: payload of %llu bytes above the cap",
                           (unsigned long long)payload_len);
  tempo_status st = reserve(b, TEMPO_MSG_HEADER_SIZE + (size_t)payload_len);
  if (st) return st;
  h->payload_len = payload_len;
  tempo_msg_header_write(h, b->data);
  b->len = TEMPO_MSG_HEADER_SIZE + (size_t)payload_len;
  *payload = b->data + TEMPO_MSG_HEADER_SIZE;
  return TEMPO_STATUS_OK;
}

void tempo_msgbuf_free(tempo_msgbuf *b) {
  if (!b) return;
  free(b->data);
  memset(b, 0, sizeof *b);
}

tempo_status tempo_msg_encode(tempo_msgbuf *b, tempo_msg_header *h, int nseg, const void *const *seg,
                              const size_t *seg_len) {
  uint64_t total = 0;
  for (int i = 0; i < nseg; i++) total += seg_len[i];
  h->payload_len = total;
  if (tempo_msg_header_check(h) != TEMPO_STATUS_OK)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "encode: %s", tempo_errmsg());
  uint8_t *p;
  tempo_status st = tempo_msgbuf_start(b, h, total, &p);
  if (st) return st;
  for (int i = 0; i < nseg; i++) {
    if (seg_len[i]) memcpy(p, seg[i], seg_len[i]);
    p += seg_len[i];
  }
  return TEMPO_STATUS_OK;
}

void tempo_msg_chain_digest(const void *bytes, size_t len, uint8_t out[TEMPO_MSG_CHAIN_DIGEST]) {
  crypto_generichash(out, TEMPO_MSG_CHAIN_DIGEST, bytes, len, NULL, 0);
}

void tempo_msg_chain_digest_put(tempo_msg_header *h, const uint8_t d[TEMPO_MSG_CHAIN_DIGEST]) {
  h->handle_x = tempo_le_get64(d);
  h->handle_w = tempo_le_get64(d + 8);
}

void tempo_msg_chain_digest_get(const tempo_msg_header *h, uint8_t d[TEMPO_MSG_CHAIN_DIGEST]) {
  tempo_le_put64(d, h->handle_x);
  tempo_le_put64(d + 8, h->handle_w);
}

uint64_t tempo_msg_reply_bound(const tempo_msg_header *req) {
  uint64_t most = TEMPO_MSG_MAX_TEXT; /* an ERROR reply with the longest text */
  if (req->op == TEMPO_OP_FORWARD || req->op == TEMPO_OP_BACKWARD) {
    tempo_msg_header r = *req;
    r.op = TEMPO_OP_RESULT;
    const uint32_t wants = req->op == TEMPO_OP_BACKWARD ? TEMPO_MSG_F_WANT_DX | TEMPO_MSG_F_WANT_DW : 0;
    r.flags = req->flags & (TEMPO_MSG_F_W_TRANS | wants);
    uint64_t b = 0;
    if (tempo_msg_payload_bytes(&r, &b) && b > most) most = b;
  }
  return TEMPO_MSG_HEADER_SIZE + most;
}

tempo_status tempo_msg_encode_error(tempo_msgbuf *b, uint64_t task_id, tempo_status st, const char *text) {
  tempo_msg_header h;
  tempo_msg_header_init(&h, TEMPO_OP_ERROR);
  h.task_id = task_id;
  int code = -(int)st;
  h.code = (uint16_t)(code >= 1 && code <= 127 ? code : -(int)TEMPO_STATUS_INTERNAL);
  size_t n = text ? strlen(text) : 0;
  if (n > TEMPO_MSG_MAX_TEXT) n = TEMPO_MSG_MAX_TEXT;
  const void *seg[1] = {text};
  return tempo_msg_encode(b, &h, n ? 1 : 0, seg, &n);
}
