/* fuzz_worker.c - libFuzzer target: what a worker does with untrusted bytes from the
 * network. Input = an MPI envelope (96 bytes) followed by a protocol message; the
 * envelope goes through tempo_env_read, the message through the worker core (a
 * persistent worker, so handles stored by one input meet later inputs). Invariant checked:
 * the worker always produces a reply that decodes (or no reply for injected stalls, which
 * are off here); anything else aborts. Also built by tests/test_fuzz_replay.c. */
#include <stdio.h>
#include <stdlib.h>

#include "tempo/envelope.h"
#include "tempo/worker.h"

static int fuzz_worker_one(const uint8_t *data, size_t size) {
  static tempo_worker *w;
  static tempo_msgbuf reply;
  static unsigned calls;
  if (!w) {
    tempo_worker_config cfg;
    tempo_worker_config_default(&cfg);
    cfg.max_handles = 64;
    cfg.max_cache_bytes = 1u << 24;
    if (tempo_worker_create(&cfg, &w)) abort();
  }
  if (++calls % 256 == 0) { /* keep the cache small across long runs */
    tempo_worker_free(w);
    w = NULL;
    return 0;
  }
  tempo_envelope env;
  if (size >= TEMPO_ENV_SIZE && tempo_env_read(data, TEMPO_ENV_SIZE, 1, 4, &env) == TEMPO_STATUS_OK &&
      env.kind == TEMPO_ENV_REQUEST && tempo_env_inline_bytes(&env) > env.msg_len)
    abort(); /* inline bytes never exceed the message */
  const uint8_t *msg = size >= TEMPO_ENV_SIZE ? data + TEMPO_ENV_SIZE : data;
  size_t len = size >= TEMPO_ENV_SIZE ? size - TEMPO_ENV_SIZE : size;
  /* shapes whose product is legal but slow (cached operands) are skipped */
  tempo_msg_header h;
  if (len >= TEMPO_MSG_HEADER_SIZE && !tempo_msg_header_read(msg, TEMPO_MSG_HEADER_SIZE, &h) &&
      (double)h.batch * h.m * h.n * h.p > 1e8)
    return 0;
  bool send = false;
  if (tempo_worker_handle_buf(w, msg, len, &reply, &send)) return 0; /* out of memory only */
  if (!send) abort();
  tempo_msg_header rh;
  const uint8_t *pay;
  if (tempo_msg_decode(reply.data, reply.len, &rh, &pay)) {
    fprintf(stderr, "worker reply does not decode: %s\n", tempo_errmsg());
    abort();
  }
  if (rh.op != TEMPO_OP_RESULT && rh.op != TEMPO_OP_ACK && rh.op != TEMPO_OP_ERROR) abort();
  return 0;
}

#ifndef TEMPO_FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return fuzz_worker_one(data, size); }
#endif
