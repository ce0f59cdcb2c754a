/* test_fuzz_replay.c - replays the committed fuzz corpus (tests/fuzz/corpus/{worker,master})
 * through the two libFuzzer targets built with gcc: every input must keep the targets'
 * invariants (a decodable reply from the worker for every request; consistent decoding of
 * replies on the master), which abort otherwise. Also checks a few corpus entries decode to
 * the expected reply kinds, so the corpus keeps covering the valid paths. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEMPO_FUZZ_REPLAY 1
#include "fuzz/fuzz_master.c"
#include "fuzz/fuzz_worker.c"

static size_t slurp(const char *path, uint8_t **out) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  *out = malloc(n > 0 ? (size_t)n : 1);
  assert_non_null(*out);
  assert_int_equal(fread(*out, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  return (size_t)n;
}

static int replay(const char *target, int (*one)(const uint8_t *, size_t)) {
  char dir[512], path[1024];
  const char *src = getenv("TEMPO_SRC_DIR");
  snprintf(dir, sizeof dir, "%s/tests/fuzz/corpus/%s", src ? src : ".", target);
  DIR *d = opendir(dir);
  assert_non_null(d);
  int n = 0;
  for (struct dirent *e; (e = readdir(d));) {
    if (e->d_name[0] == '.') continue;
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    uint8_t *buf;
    size_t len = slurp(path, &buf);
    assert_int_equal(one(buf, len), 0);
    free(buf);
    n++;
  }
  closedir(d);
  return n;
}

static void test_worker_corpus(void **state) {
  (void)state;
  assert_true(replay("worker", fuzz_worker_one) >= 10);
}

static void test_master_corpus(void **state) {
  (void)state;
  assert_true(replay("master", fuzz_master_one) >= 5);
}

/* the valid seeds reach the worker's compute path: forward_keep answers RESULT, the chain
 * member reduce_member adds its partial */
static void test_seed_reaches_compute(void **state) {
  (void)state;
  const char *src = getenv("TEMPO_SRC_DIR");
  char path[1024];
  snprintf(path, sizeof path, "%s/tests/fuzz/corpus/worker/forward_keep", src ? src : ".");
  uint8_t *buf;
  size_t len = slurp(path, &buf);
  tempo_envelope env;
  assert_int_equal(tempo_env_read(buf, len, 1, 4, &env), TEMPO_STATUS_OK);
  assert_int_equal(tempo_env_inline_bytes(&env), len - TEMPO_ENV_SIZE);
  tempo_worker *w;
  assert_int_equal(tempo_worker_create(NULL, &w), TEMPO_STATUS_OK);
  tempo_msgbuf rep = {0};
  bool send;
  assert_int_equal(tempo_worker_handle_buf(w, buf + TEMPO_ENV_SIZE, len - TEMPO_ENV_SIZE, &rep, &send), 0);
  tempo_msg_header h;
  const uint8_t *pay;
  assert_int_equal(tempo_msg_decode(rep.data, rep.len, &h, &pay), TEMPO_STATUS_OK);
  assert_int_equal(h.op, TEMPO_OP_RESULT);
  assert_int_equal(tempo_worker_handle_count(w), 2);
  tempo_msgbuf_free(&rep);
  tempo_worker_free(w);
  free(buf);
  /* the relay seed is a valid envelope whose inline part excludes the relayed range */
  snprintf(path, sizeof path, "%s/tests/fuzz/corpus/worker/relay_envelope", src ? src : ".");
  len = slurp(path, &buf);
  assert_int_equal(tempo_env_read(buf, len, 1, 4, &env), TEMPO_STATUS_OK);
  assert_int_equal(env.relay_from, 2);
  assert_int_equal(tempo_env_inline_bytes(&env), len - TEMPO_ENV_SIZE);
  assert_int_equal(tempo_env_read(buf, len, 2, 4, &env), TEMPO_STATUS_CORRUPT); /* relay from itself */
  assert_int_equal(tempo_env_read(buf, len, 1, 3, &env), TEMPO_STATUS_CORRUPT); /* rank 3 of 3 */
  free(buf);
  /* the chain seed: a middle member whose partial follows the message; it adds and passes on */
  snprintf(path, sizeof path, "%s/tests/fuzz/corpus/worker/reduce_member", src ? src : ".");
  len = slurp(path, &buf);
  assert_int_equal(tempo_env_read(buf, len, 1, 4, &env), TEMPO_STATUS_OK);
  assert_true(env.reduce_from == 2 && env.reduce_to == 3);
  const uint8_t *m = buf + TEMPO_ENV_SIZE;
  fuzz_partial prev = {m + env.msg_len, len - TEMPO_ENV_SIZE - (size_t)env.msg_len};
  tempo_msg_view v = {.header = m, .nseg = 1, .seg = {m + TEMPO_MSG_HEADER_SIZE},
                      .seg_len = {(size_t)env.msg_len - TEMPO_MSG_HEADER_SIZE}};
  tempo_msgbuf pass = {0};
  tempo_worker_chain ch = {.take_prev = fuzz_take_prev, .ctx = &prev, .pass = &pass};
  assert_int_equal(tempo_worker_create(NULL, &w), TEMPO_STATUS_OK);
  assert_int_equal(tempo_worker_handle_chain(w, &v, &ch, &rep, &send), TEMPO_STATUS_OK);
  assert_int_equal(tempo_msg_decode(rep.data, rep.len, &h, &pay), TEMPO_STATUS_OK);
  assert_int_equal(h.op, TEMPO_OP_ACK); /* no dX' asked */
  assert_int_equal(pass.len, prev.len); /* the sum went on */
  tempo_msgbuf_free(&pass);
  tempo_msgbuf_free(&rep);
  tempo_worker_free(w);
  free(buf);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_worker_corpus), cmocka_unit_test(test_master_corpus),
                                     cmocka_unit_test(test_seed_reaches_compute)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
