/* test_protocol.c - message encoding round trip and the validating decoder: every
 * malformed header field, truncated or oversized payload and oversized dims is rejected
 * with TEMPO_STATUS_CORRUPT before anything is allocated. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "tempo/protocol.h"

static void forward_header(tempo_msg_header *h) {
  tempo_msg_header_init(h, TEMPO_OP_FORWARD);
  h->task_id = 0x1122334455667788ull;
  h->handle_x = 7;
  h->handle_w = 9;
  h->batch = 1, h->m = 7, h->n = 13, h->p = 5, h->lo = 2, h->hi = 6;
  h->flags = TEMPO_MSG_F_X_INLINE | TEMPO_MSG_F_W_INLINE | TEMPO_MSG_F_KEEP | TEMPO_MSG_F_W_TRANS;
}

static void test_round_trip(void **state) {
  (void)state;
  tempo_msg_header h, d;
  forward_header(&h);
  float x[4 * 13], w[13 * 5];
  for (size_t i = 0; i < 4 * 13; i++) x[i] = (float)i - 3.5f;
  for (size_t i = 0; i < 13 * 5; i++) w[i] = 0.25f * (float)i;
  const void *seg[2] = {x, w};
  size_t len[2] = {sizeof x, sizeof w};
  tempo_msgbuf b = {0};
  assert_int_equal(tempo_msg_encode(&b, &h, 2, seg, len), TEMPO_STATUS_OK);
  assert_int_equal(b.len, TEMPO_MSG_HEADER_SIZE + sizeof x + sizeof w);
  const uint8_t *pay;
  assert_int_equal(tempo_msg_decode(b.data, b.len, &d, &pay), TEMPO_STATUS_OK);
  assert_memory_equal(&h, &d, sizeof h);
  assert_memory_equal(pay, x, sizeof x);
  assert_memory_equal(pay + sizeof x, w, sizeof w);
  /* the wire is little-endian at fixed offsets */
  assert_int_equal(b.data[0], 'T');
  assert_int_equal(b.data[8], 0x88);
  assert_int_equal(b.data[36], 7);
  tempo_msg_sizes s;
  tempo_msg_split_sizes(&d, &s);
  assert_int_equal(s.x, 4 * 13);
  assert_int_equal(s.w, 13 * 5);
  assert_int_equal(s.y, 4 * 5);
  /* batch split: instances [1, 3) of 3 */
  tempo_msg_header r;
  tempo_msg_header_init(&r, TEMPO_OP_RESULT);
  r.batch = 3, r.m = 2, r.n = 3, r.p = 4, r.lo = 1, r.hi = 3;
  r.flags = TEMPO_MSG_F_WANT_DX | TEMPO_MSG_F_WANT_DW;
  uint64_t bytes;
  assert_true(tempo_msg_payload_bytes(&r, &bytes));
  assert_int_equal(bytes, 4 * (2 * 2 * 3 + 2 * 3 * 4));
  /* float64 tensors: the same elements, 8 bytes each; ops without dims stay float32 */
  r.dtype = TEMPO_DTYPE_F64;
  assert_true(tempo_msg_payload_bytes(&r, &bytes));
  assert_int_equal(bytes, 8 * (2 * 2 * 3 + 2 * 3 * 4));
  r.payload_len = bytes;
  assert_int_equal(tempo_msg_header_check(&r), TEMPO_STATUS_OK);
  assert_int_equal(tempo_msg_dtype_size(TEMPO_DTYPE_F64), 8);
  assert_int_equal(tempo_msg_dtype_size(7), 0);
  tempo_msg_header rel;
  tempo_msg_header_init(&rel, TEMPO_OP_RELEASE);
  rel.flags = TEMPO_MSG_F_RELEASE_ALL;
  assert_int_equal(tempo_msg_header_check(&rel), TEMPO_STATUS_OK);
  rel.dtype = TEMPO_DTYPE_F64;
  assert_int_equal(tempo_msg_header_check(&rel), TEMPO_STATUS_CORRUPT);
  /* error reply */
  assert_int_equal(tempo_msg_encode_error(&b, 42, TEMPO_STATUS_MISMATCH, "unknown handle"), TEMPO_STATUS_OK);
  assert_int_equal(tempo_msg_decode(b.data, b.len, &d, &pay), TEMPO_STATUS_OK);
  assert_int_equal(d.op, TEMPO_OP_ERROR);
  assert_int_equal(d.code, -TEMPO_STATUS_MISMATCH);
  assert_int_equal(d.task_id, 42);
  assert_memory_equal(pay, "unknown handle", 14);
  tempo_msgbuf_free(&b);
}

/* Encodes h with a payload of its declared size, then corrupts one field in the wire bytes. */
static tempo_status decode_with(const tempo_msg_header *h, size_t off, int width, uint64_t value, size_t cut) {
  uint64_t bytes = h->payload_len;
  size_t len = TEMPO_MSG_HEADER_SIZE + (size_t)bytes;
  uint8_t *buf = calloc(1, len);
  tempo_msg_header_write(h, buf);
  for (int i = 0; i < width; i++) buf[off + (size_t)i] = (uint8_t)(value >> (8 * i));
  tempo_msg_header d;
  const uint8_t *pay = NULL;
  tempo_status st = tempo_msg_decode(buf, len - cut, &d, &pay);
  free(buf);
  return st;
}

static void test_rejects(void **state) {
  (void)state;
  tempo_msg_header h;
  forward_header(&h);
  assert_true(tempo_msg_payload_bytes(&h, &h.payload_len));
  assert_int_equal(decode_with(&h, 0, 0, 0, 0), TEMPO_STATUS_OK);
  struct {
    size_t off;
    int width;
    uint64_t value;
    const char *what;
  } bad[] = {
      {0, 4, 0x12345678, "magic"},
      {4, 2, 2, "version"},
      {6, 2, 0, "op 0"},
      {6, 2, 99, "op 99"},
      {32, 4, 0, "batch 0"},
      {32, 4, (1u << 20) + 1, "batch over cap"},
      {36, 4, 0, "m 0"},
      {36, 4, 3, "m below hi"},
      {40, 4, 0, "n 0"},
      {40, 4, 1u << 25, "n over cap"},
      {44, 4, 0xffffffffu, "p huge"},
      {48, 4, 6, "lo == hi"},
      {52, 4, 8, "hi > m"},
      {56, 4, 1u << 9, "unknown flag"},
      {56, 4, TEMPO_MSG_F_RELEASE_ALL | TEMPO_MSG_F_X_INLINE | TEMPO_MSG_F_W_INLINE, "flag of another op"},
      {56, 4, TEMPO_MSG_F_KEEP | TEMPO_MSG_F_X_INLINE, "payload disagrees with flags"},
      {60, 2, 3, "dtype"},
      {60, 2, 0, "dtype 0"},
      {60, 2, TEMPO_DTYPE_F64, "float64 dtype with a float32-sized payload"},
      {62, 2, 5, "code in a request"},
      {64, 8, 12, "payload_len"},
      {64, 8, UINT64_MAX, "payload_len huge"},
      {72, 8, 5, "compute time in a request"},
      {16, 8, 0, "keep without an X handle"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    tempo_status st = decode_with(&h, bad[i].off, bad[i].width, bad[i].value, 0);
    if (st != TEMPO_STATUS_CORRUPT) fail_msg("%s accepted (status %d)", bad[i].what, st);
  }
  /* truncated payload and header */
  assert_int_equal(decode_with(&h, 0, 0, 0, 4), TEMPO_STATUS_CORRUPT);
  assert_int_equal(decode_with(&h, 0, 0, 0, (size_t)h.payload_len + 1), TEMPO_STATUS_CORRUPT);
  tempo_msg_header d;
  assert_int_equal(tempo_msg_header_read(NULL, 0, &d), TEMPO_STATUS_CORRUPT);
  /* a header whose dims claim a payload of 2^40 bytes is refused without allocation */
  tempo_msg_header big;
  tempo_msg_header_init(&big, TEMPO_OP_FORWARD);
  big.handle_x = big.handle_w = 1;
  big.batch = 1, big.m = 1u << 24, big.n = 1u << 24, big.p = 1, big.lo = 0, big.hi = 1u << 24;
  big.flags = TEMPO_MSG_F_X_INLINE;
  uint64_t bytes;
  assert_false(tempo_msg_payload_bytes(&big, &bytes));
  big.payload_len = (uint64_t)1 << 40;
  assert_int_equal(tempo_msg_header_check(&big), TEMPO_STATUS_CORRUPT);
  /* ops without dims must carry none; RELEASE names something; ERROR text capped */
  tempo_msg_header r;
  tempo_msg_header_init(&r, TEMPO_OP_RELEASE);
  assert_int_equal(tempo_msg_header_check(&r), TEMPO_STATUS_CORRUPT);
  r.flags = TEMPO_MSG_F_RELEASE_ALL;
  assert_int_equal(tempo_msg_header_check(&r), TEMPO_STATUS_OK);
  r.m = 1;
  assert_int_equal(tempo_msg_header_check(&r), TEMPO_STATUS_CORRUPT);
  tempo_msg_header_init(&r, TEMPO_OP_ERROR);
  r.code = 3;
  r.payload_len = TEMPO_MSG_MAX_TEXT + 1;
  assert_int_equal(tempo_msg_header_check(&r), TEMPO_STATUS_CORRUPT);
  r.payload_len = 10;
  assert_int_equal(tempo_msg_header_check(&r), TEMPO_STATUS_OK);
  r.code = 0;
  assert_int_equal(tempo_msg_header_check(&r), TEMPO_STATUS_CORRUPT);
  /* BACKWARD must want something, and have the operands it needs */
  tempo_msg_header bw;
  tempo_msg_header_init(&bw, TEMPO_OP_BACKWARD);
  bw.batch = 2, bw.m = 3, bw.n = 4, bw.p = 5, bw.lo = 0, bw.hi = 2;
  assert_true(tempo_msg_payload_bytes(&bw, &bw.payload_len));
  assert_int_equal(tempo_msg_header_check(&bw), TEMPO_STATUS_CORRUPT);
  bw.flags = TEMPO_MSG_F_WANT_DX;
  assert_int_equal(tempo_msg_header_check(&bw), TEMPO_STATUS_CORRUPT); /* no W' handle, not inline */
  bw.handle_w = 3;
  assert_int_equal(tempo_msg_header_check(&bw), TEMPO_STATUS_OK);
  /* the encoder refuses to build a message that would not decode */
  tempo_msgbuf b = {0};
  bw.handle_w = 0;
  assert_int_equal(tempo_msg_encode(&b, &bw, 0, NULL, NULL), TEMPO_STATUS_INVALID_ARGUMENT);
  tempo_msgbuf_free(&b);
}

/* Random byte flips of a valid message never crash the decoder, and whatever it accepts
 * is self-consistent (payload length matches the dims). */
static void test_fuzz_flips(void **state) {
  (void)state;
  tempo_msg_header h;
  forward_header(&h);
  assert_true(tempo_msg_payload_bytes(&h, &h.payload_len));
  size_t len = TEMPO_MSG_HEADER_SIZE + (size_t)h.payload_len;
  uint8_t *good = calloc(1, len), *buf = malloc(len);
  tempo_msg_header_write(&h, good);
  uint64_t x = 88172645463325252ull;
  int accepted = 0;
  for (int it = 0; it < 20000; it++) {
    memcpy(buf, good, len);
    for (int k = 0; k < 3; k++) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      buf[x % TEMPO_MSG_HEADER_SIZE] ^= (uint8_t)(1u << ((x >> 32) % 8));
    }
    tempo_msg_header d;
    const uint8_t *pay;
    if (tempo_msg_decode(buf, len, &d, &pay) == TEMPO_STATUS_OK) {
      uint64_t bytes;
      assert_true(tempo_msg_payload_bytes(&d, &bytes));
      assert_int_equal(bytes, d.payload_len);
      accepted++;
    }
  }
  assert_true(accepted < 20000);
  free(good);
  free(buf);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_rejects),
      cmocka_unit_test(test_fuzz_flips),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
