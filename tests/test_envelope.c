/* test_envelope.c - the MPI envelope codec (tempo/envelope.h): exact round trips of every
 * field, and refusal of each inconsistent field, relay and dW' reduction neighbours included. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "tempo/envelope.h"

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

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_round_trip), cmocka_unit_test(test_bad_reduction_neighbours),
                                     cmocka_unit_test(test_bad_relay_and_length)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
