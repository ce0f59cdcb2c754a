/* test_envelope.c - the MPI envelope codec (tempo/envelope.h): exact round trips of every
 * field, and refusal of each inconsistent field, relay and dW' reduction neighbours included;
 * the relay authenticator (a BLAKE2b golden value, and refusal of any change of bytes, task,
 * length or key); the reply bounds of protocol.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "tempo/envelope.h"
#include "tempo/protocol.h"

static tempo_envelope chain_member(void) {
  tempo_envelope e;
  tempo_env_init(&e, TEMPO_ENV_REQUEST);
  e.msg_len = TEMPO_MSG_HEADER_SIZE + 4096;
  e.relay_from = 2;
  e.relay_off = TEMPO_MSG_HEADER_SIZE + 1024;
  e.relay_len = 2048;
  for (int i = 0; i < 32; i++) e.auth[i] = (uint8_t)(7 * i + 1);
  e.relay_to = 4;
  e.fwd_off = TEMPO_MSG_HEADER_SIZE;
  e.fwd_len = 4096;
  e.reduce_from = 2;
  e.reduce_to = 4;
  return e;
}

static void test_round_trip(void **state) {
  (void)state;
  tempo_envelope e = chain_member(), d;
  uint8_t buf[TEMPO_ENV_SIZE];
  tempo_env_write(&e, buf);
  assert_int_equal(tempo_env_read(buf, sizeof buf, 3, 5, &d), TEMPO_STATUS_OK);
  assert_int_equal(d.kind, TEMPO_ENV_REQUEST);
  assert_int_equal(d.msg_len, e.msg_len);
  assert_int_equal(d.relay_off, e.relay_off);
  assert_int_equal(d.relay_len, e.relay_len);
  assert_int_equal(d.fwd_off, e.fwd_off);
  assert_int_equal(d.fwd_len, e.fwd_len);
  assert_int_equal(d.relay_from, 2);
  assert_int_equal(d.relay_to, 4);
  assert_int_equal(d.reduce_from, 2);
  assert_int_equal(d.reduce_to, 4);
  assert_memory_equal(d.auth, e.auth, 32);
  assert_int_equal(tempo_env_inline_bytes(&d), 4096 + TEMPO_MSG_HEADER_SIZE - 2048);
  /* the first and the last member of a chain, and no chain at all */
  e.reduce_from = -1;
  tempo_env_write(&e, buf);
  assert_int_equal(tempo_env_read(buf, sizeof buf, 3, 5, &d), TEMPO_STATUS_OK);
  assert_int_equal(d.reduce_from, -1);
  assert_int_equal(d.reduce_to, 4);
  e.reduce_from = 1, e.reduce_to = -1;
  tempo_env_write(&e, buf);
  assert_int_equal(tempo_env_read(buf, sizeof buf, 3, 5, &d), TEMPO_STATUS_OK);
  assert_int_equal(d.reduce_from, 1);
  assert_int_equal(d.reduce_to, -1);
  tempo_env_init(&e, TEMPO_ENV_SHUTDOWN);
  tempo_env_write(&e, buf);
  assert_int_equal(tempo_env_read(buf, sizeof buf, 3, 5, &d), TEMPO_STATUS_OK);
  assert_int_equal(d.kind, TEMPO_ENV_SHUTDOWN);
  assert_int_equal(d.reduce_from, -1);
}

/* Writes e, reads it back as rank self of world: must be refused. */
static void refused(const tempo_envelope *e, int self, int world) {
  uint8_t buf[TEMPO_ENV_SIZE];
  tempo_envelope d;
  tempo_env_write(e, buf);
  assert_int_equal(tempo_env_read(buf, sizeof buf, self, world, &d), TEMPO_STATUS_CORRUPT);
}

static void test_bad_reduction_neighbours(void **state) {
  (void)state;
  tempo_envelope e = chain_member();
  e.reduce_from = 3; /* itself */
  refused(&e, 3, 5);
  e = chain_member();
  e.reduce_to = 3;
  refused(&e, 3, 5);
  e = chain_member();
  e.reduce_to = 2; /* the same neighbour on both sides */
  refused(&e, 3, 5);
  e = chain_member();
  e.reduce_to = 5; /* outside a world of 5 ranks */
  refused(&e, 3, 5);
  e = chain_member();
  tempo_env_init(&e, TEMPO_ENV_SHUTDOWN);
  e.reduce_to = 2; /* SHUTDOWN carries nothing */
  refused(&e, 3, 5);
  /* a rank field above INT32_MAX on the wire */
  e = chain_member();
  uint8_t buf[TEMPO_ENV_SIZE];
  tempo_env_write(&e, buf);
  buf[95] = 0x80;
  tempo_envelope d;
  assert_int_equal(tempo_env_read(buf, sizeof buf, 3, 5, &d), TEMPO_STATUS_CORRUPT);
}

static void test_bad_relay_and_length(void **state) {
  (void)state;
  tempo_envelope e = chain_member();
  e.relay_len = e.msg_len; /* past the end of the message */
  refused(&e, 3, 5);
  e = chain_member();
  e.relay_off = 8; /* inside the protocol header */
  refused(&e, 3, 5);
  e = chain_member();
  e.msg_len = TEMPO_ENV_MAX_MSG + 1;
  refused(&e, 3, 5);
  e = chain_member();
  e.relay_from = -1; /* a range without a source */
  refused(&e, 3, 5);
  uint8_t buf[TEMPO_ENV_SIZE];
  tempo_envelope d;
  e = chain_member();
  tempo_env_write(&e, buf);
  assert_int_equal(tempo_env_read(buf, sizeof buf - 1, 3, 5, &d), TEMPO_STATUS_CORRUPT); /* short */
  buf[0] ^= 1;
  assert_int_equal(tempo_env_read(buf, sizeof buf, 3, 5, &d), TEMPO_STATUS_CORRUPT); /* magic */
}

static void test_relay_tag(void **state) {
  (void)state;
  uint8_t key[32], bytes[257], tag[32], d[32];
  for (int i = 0; i < 32; i++) key[i] = (uint8_t)i;
  for (int i = 0; i < 257; i++) bytes[i] = (uint8_t)(3 * i + 1);
  tempo_relay_digest(bytes, sizeof bytes, d);
  tempo_relay_tag(key, d, 42, sizeof bytes, tag);
  /* golden: BLAKE2b-256 keyed with key of BLAKE2b-256(bytes) || 42 || 257 (u64 LE each) */
  static const uint8_t want[8] = {0x17, 0xba, 0x38, 0x3e, 0x22, 0xe4, 0x38, 0x58}; /* Python hashlib */
  assert_memory_equal(tag, want, sizeof want);
  assert_true(tempo_relay_check(key, tag, 42, bytes, sizeof bytes));
  assert_false(tempo_relay_check(key, tag, 43, bytes, sizeof bytes));     /* another task */
  assert_false(tempo_relay_check(key, tag, 42, bytes, sizeof bytes - 1)); /* another length */
  for (int i = 0; i < 257; i += 64) {                                      /* one flipped bit */
    bytes[i] ^= 1;
    assert_false(tempo_relay_check(key, tag, 42, bytes, sizeof bytes));
    bytes[i] ^= 1;
  }
  key[31] ^= 0x80; /* another receiver's key */
  assert_false(tempo_relay_check(key, tag, 42, bytes, sizeof bytes));
}

static void test_reply_bound(void **state) {
  (void)state;
  tempo_msg_header h;
  tempo_msg_header_init(&h, TEMPO_OP_FORWARD);
  h.batch = 1, h.m = 1000, h.n = 300, h.p = 7, h.lo = 100, h.hi = 400;
  h.flags = TEMPO_MSG_F_X_INLINE | TEMPO_MSG_F_W_INLINE;
  assert_int_equal(tempo_msg_reply_bound(&h), 80 + 300 * 7 * 4); /* Y' rows [100, 400) */
  h.p = 1, h.hi = 200;
  assert_int_equal(tempo_msg_reply_bound(&h), 80 + 1024); /* 400 bytes of Y': less than the longest ERROR */
  h.op = TEMPO_OP_BACKWARD, h.p = 7, h.hi = 400, h.dtype = TEMPO_DTYPE_F64;
  h.flags = TEMPO_MSG_F_WANT_DX | TEMPO_MSG_F_WANT_DW | TEMPO_MSG_F_X_INLINE | TEMPO_MSG_F_W_INLINE;
  assert_int_equal(tempo_msg_reply_bound(&h), 80 + (300 * 300 + 300 * 7) * 8); /* dX', dW' */
  h.flags &= ~(uint32_t)TEMPO_MSG_F_WANT_DX;
  assert_int_equal(tempo_msg_reply_bound(&h), 80 + 300 * 7 * 8);
  tempo_msg_header_init(&h, TEMPO_OP_RELEASE);
  h.flags = TEMPO_MSG_F_RELEASE_ALL;
  assert_int_equal(tempo_msg_reply_bound(&h), 80 + 1024); /* ACK, or an ERROR */
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_round_trip), cmocka_unit_test(test_bad_reduction_neighbours),
                                     cmocka_unit_test(test_bad_relay_and_length), cmocka_unit_test(test_relay_tag),
                                     cmocka_unit_test(test_reply_bound)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
