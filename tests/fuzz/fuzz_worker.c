/* fuzz_worker.c - libFuzzer target: what a worker does with untrusted bytes from the
 * network. Input = an MPI envelope (96 bytes) followed by a protocol message; the
 * envelope goes through tempo_env_read, the message through the worker core (a
 * persistent worker, so handles stored by one input meet later inputs). An envelope that
 * makes the request a dW' chain member sends its first msg_len bytes through
 * tempo_worker_handle_chain, with the bytes after them as the predecessor's partial sum.
 * Invariant checked: the worker always produces a reply that decodes (or no reply for
 * injected stalls, which are off here), and a partial passed on is empty or one dW';
 * anything else aborts. Also built by tests/test_fuzz_replay.c. */
#include <stdio.h>
#include <stdlib.h>

#include "tempo/envelope.h"
#include "tempo/worker.h"

typedef struct {
  const uint8_t *data;
  size_t len;
} fuzz_partial;

static void fuzz_take_prev(void *ctx, size_t want, const uint8_t **data, size_t *len) {
  const fuzz_partial *p = ctx;
  (void)want;
  *data = p->data;
  *len = p->len;
}

static int fuzz_worker_one(const uint8_t *data, size_t size) {
  static tempo_worker *w;
  static tempo_msgbuf reply, pass;
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
  const bool env_ok = size >= TEMPO_ENV_SIZE && tempo_env_read(data, TEMPO_ENV_SIZE, 1, 4, &env) == TEMPO_STATUS_OK &&
                      env.kind == TEMPO_ENV_REQUEST;
  if (env_ok && tempo_env_inline_bytes(&env) > env.msg_len) abort(); /* inline bytes never exceed the message */
  const uint8_t *msg = size >= TEMPO_ENV_SIZE ? data + TEMPO_ENV_SIZE : data;
  size_t len = size >= TEMPO_ENV_SIZE ? size - TEMPO_ENV_SIZE : size;
  const bool chain = env_ok && (env.reduce_from >= 0 || env.reduce_to >= 0) && env.msg_len <= len;
  fuzz_partial prev = {0};
  if (chain) prev.data = msg + env.msg_len, prev.len = len - env.msg_len, len = env.msg_len;
  /* shapes whose product is legal but slow (cached operands) are skipped */
  tempo_msg_header h;
  if (len >= TEMPO_MSG_HEADER_SIZE && !tempo_msg_header_read(msg, TEMPO_MSG_HEADER_SIZE, &h) &&
      (double)h.batch * h.m * h.n * h.p > 1e8)
    return 0;
  bool send = false;
  if (chain) {
    if (len < TEMPO_MSG_HEADER_SIZE) return 0; /* the envelope check refuses it before the core */
    tempo_msg_view v = {.header = msg, .nseg = 1, .seg = {msg + TEMPO_MSG_HEADER_SIZE},
                        .seg_len = {len - TEMPO_MSG_HEADER_SIZE}};
    tempo_worker_chain ch = {.first = env.reduce_from < 0, .last = env.reduce_to < 0, .take_prev = fuzz_take_prev,
                             .ctx = &prev, .pass = &pass};
    if (tempo_worker_handle_chain(w, &v, &ch, &reply, &send)) return 0; /* out of memory only */
    tempo_msg_header qh;
    tempo_msg_sizes z;
    if (pass.len && (tempo_msg_header_read(msg, TEMPO_MSG_HEADER_SIZE, &qh) ||
                     (tempo_msg_split_sizes(&qh, &z), pass.len != z.dw * tempo_msg_result_size(qh.dtype))))
      abort(); /* a partial passed on is one dW' of the request, in its result type (bf16 sums in f32) */
  } else if (tempo_worker_handle_buf(w, msg, len, &reply, &send)) {
    return 0; /* out of memory only */
  }
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
