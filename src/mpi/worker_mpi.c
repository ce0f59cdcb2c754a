/* worker_mpi.c - the worker side of the MPI transport (mpi.h): receive an envelope and
 * its message from rank 0, take the relayed range from another worker (digest-checked)
 * and forward our range onwards, run the worker core, send the reply. Every received
 * byte is untrusted: the envelope and the message are validated before use, and a bad
 * request gets an ERROR reply. */
#include <mpi.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mpi/mpi.h"
#include "tempo/common.h"
#include "tempo/envelope.h"

#define MAX_FWD 16

typedef struct {
  MPI_Request req;
  uint8_t *buf;
} fwd_slot;

static void reap(fwd_slot *f, bool wait_all) {
  for (int i = 0; i < MAX_FWD; i++) {
    if (!f[i].buf) continue;
    int done = 0;
    if (MPI_Test(&f[i].req, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS) done = 1;
    if (!done && wait_all) { /* shutdown: give a dead peer 2 s, then drop it */
      double t0 = tempo_now();
      while (!done && tempo_now() - t0 < 2.0) {
        if (MPI_Test(&f[i].req, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS) done = 1;
      }
    }
    if (done) {
      free(f[i].buf);
      f[i].buf = NULL;
    }
  }
}

/* Sends a copy of bytes [off, off+len) of the message (spread over the view) to rank to. */
static tempo_status forward(fwd_slot *f, const tempo_msg_view *v, uint64_t off, uint64_t len, int to) {
  int k = -1;
  for (int i = 0; i < MAX_FWD && k < 0; i++)
    if (!f[i].buf) k = i;
  if (k < 0) return tempo_set_error(TEMPO_STATUS_WORKER, "worker: too many relays in flight");
  uint8_t *b = malloc(len);
  if (!b) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "worker: out of memory for a relay");
  /* the message bytes in order: header, then the segments */
  const uint8_t *part[5] = {v->header};
  size_t plen[5] = {TEMPO_MSG_HEADER_SIZE};
  for (int i = 0; i < v->nseg; i++) part[i + 1] = v->seg[i], plen[i + 1] = v->seg_len[i];
  uint64_t base = 0, done = 0;
  for (int i = 0; i <= v->nseg && done < len; i++) {
    uint64_t a = off + done;
    if (a >= base && a < base + plen[i]) {
      uint64_t take = base + plen[i] - a < len - done ? base + plen[i] - a : len - done;
      memcpy(b + done, part[i] + (a - base), take);
      done += take;
    }
    base += plen[i];
  }
  if (done != len || len > (uint64_t)INT32_MAX) {
    free(b);
    return tempo_set_error(TEMPO_STATUS_CORRUPT, "worker: forward range outside the message");
  }
  if (MPI_Isend(b, (int)len, MPI_BYTE, to, TEMPO_MPI_TAG_RELAY, MPI_COMM_WORLD, &f[k].req) != MPI_SUCCESS) {
    free(b);
    return tempo_set_error(TEMPO_STATUS_WORKER, "worker: cannot forward to rank %d", to);
  }
  f[k].buf = b;
  return TEMPO_STATUS_OK;
}

/* Receives the relayed range into *buf within timeout_s; a wrong size or digest fails. */
static tempo_status take_relay(const tempo_envelope *e, uint8_t **buf, size_t *cap, double timeout_s) {
  if (e->relay_len > (uint64_t)INT32_MAX) return tempo_set_error(TEMPO_STATUS_CORRUPT, "worker: relay too large");
  if (*cap < e->relay_len) {
    uint8_t *b = realloc(*buf, e->relay_len);
    if (!b) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "worker: out of memory for a relay");
    *buf = b, *cap = e->relay_len;
  }
  MPI_Request r;
  MPI_Status s;
  if (MPI_Irecv(*buf, (int)e->relay_len, MPI_BYTE, e->relay_from, TEMPO_MPI_TAG_RELAY, MPI_COMM_WORLD, &r) !=
      MPI_SUCCESS)
    return tempo_set_error(TEMPO_STATUS_WORKER, "worker: cannot receive the relay");
  int done = 0;
  const double t0 = tempo_now();
  while (!done) {
    if (MPI_Test(&r, &done, &s) != MPI_SUCCESS)
      return tempo_set_error(TEMPO_STATUS_WORKER, "worker: relay from rank %d failed", e->relay_from);
    if (done) break;
    if (tempo_now() - t0 > timeout_s) {
      MPI_Cancel(&r);
      MPI_Wait(&r, MPI_STATUS_IGNORE);
      return tempo_set_error(TEMPO_STATUS_WORKER, "worker: relay from rank %d did not arrive", e->relay_from);
    }
    struct timespec ts = {0, 20000};
    nanosleep(&ts, NULL);
  }
  int count = 0;
  MPI_Get_count(&s, MPI_BYTE, &count);
  if ((uint64_t)count != e->relay_len)
    return tempo_set_error(TEMPO_STATUS_CORRUPT, "worker: relay of %d bytes, expected %llu", count,
                           (unsigned long long)e->relay_len);
  uint8_t d[32];
  crypto_generichash(d, sizeof d, *buf, e->relay_len, NULL, 0);
  if (sodium_memcmp(d, e->digest, 32) != 0)
    return tempo_set_error(TEMPO_STATUS_CORRUPT, "worker: relayed operand from rank %d fails its digest",
                           e->relay_from);
  return TEMPO_STATUS_OK;
}

tempo_status tempo_mpi_worker_main(int *argc, char ***argv, tempo_worker *w, double relay_timeout_s) {
  int provided, rank = 0, world = 0;
  if (MPI_Init_thread(argc, argv, MPI_THREAD_SINGLE, &provided) != MPI_SUCCESS)
    return tempo_set_error(TEMPO_STATUS_WORKER, "MPI_Init failed");
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  tempo_status st = TEMPO_STATUS_OK;
  if (rank == 0) {
    st = tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT,
                         "tempo-worker is rank 0; launch the master first: mpirun -np 1 tempo train ... : -np N "
                         "tempo-worker");
    MPI_Abort(MPI_COMM_WORLD, 2);
    return st;
  }
  if (sodium_init() < 0) return tempo_set_error(TEMPO_STATUS_INTERNAL, "libsodium failed to start");
  uint8_t *raw = NULL, *relay = NULL;
  size_t raw_cap = 0, relay_cap = 0;
  tempo_msgbuf reply = {0};
  fwd_slot fwd[MAX_FWD];
  memset(fwd, 0, sizeof fwd);
  for (;;) {
    MPI_Status s;
    /* poll, so that a worker whose launcher is gone (parent pid changed) exits instead of
     * waiting forever for a master that died without a SHUTDOWN */
    int flag = 0;
    long nap = 0;
    const pid_t parent = getppid();
    while (!flag) {
      if (MPI_Iprobe(0, TEMPO_MPI_TAG_REQ, MPI_COMM_WORLD, &flag, &s) != MPI_SUCCESS) break;
      if (flag) break;
      if (getppid() != parent) break;
      if (nap < 1000000) nap = nap ? nap * 2 : 10000; /* 10 us .. 1 ms */
      struct timespec ts = {0, nap};
      nanosleep(&ts, NULL);
      reap(fwd, false);
    }
    if (!flag) {
      fprintf(stderr, "tempo-worker %d: lost the master and its launcher; exiting\n", rank);
      _exit(1); /* MPI_Finalize would wait for the master */
    }
    int count = 0;
    MPI_Get_count(&s, MPI_BYTE, &count);
    reap(fwd, false);
    const size_t need = count > 0 ? (size_t)count : TEMPO_ENV_SIZE;
    if (need > raw_cap && need <= TEMPO_ENV_SIZE + TEMPO_ENV_MAX_MSG) {
      uint8_t *b = realloc(raw, need);
      if (b) raw = b, raw_cap = need;
    }
    if (need > raw_cap) { /* oversized or no memory: take it truncated (consumed) and refuse */
      uint8_t small[TEMPO_ENV_SIZE];
      MPI_Recv(small, (int)sizeof small, MPI_BYTE, 0, TEMPO_MPI_TAG_REQ, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      tempo_status e = tempo_msg_encode_error(&reply, 0, TEMPO_STATUS_CORRUPT, "worker: request too large");
      if (!e) MPI_Send(reply.data, (int)reply.len, MPI_BYTE, 0, TEMPO_MPI_TAG_REPLY, MPI_COMM_WORLD);
      continue;
    }
    MPI_Recv(raw, count, MPI_BYTE, 0, TEMPO_MPI_TAG_REQ, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    tempo_envelope env;
    tempo_status est = tempo_env_read(raw, (size_t)count, rank, world, &env);
    if (!est && env.kind == TEMPO_ENV_SHUTDOWN) break;
    if (!est && (uint64_t)count - TEMPO_ENV_SIZE != tempo_env_inline_bytes(&env))
      est = tempo_set_error(TEMPO_STATUS_CORRUPT, "worker: %d inline bytes, envelope says %llu",
                            count - (int)TEMPO_ENV_SIZE, (unsigned long long)tempo_env_inline_bytes(&env));
    if (!est && env.relay_len) est = take_relay(&env, &relay, &relay_cap, relay_timeout_s);
    /* the message: header, [inline up to the hole], [relayed], [inline after the hole] */
    const uint8_t *m = raw + TEMPO_ENV_SIZE;
    tempo_msg_view v = {.header = m, .stable = false};
    if (!est) {
      const uint64_t hole = env.relay_len ? env.relay_off : env.msg_len;
      v.seg[v.nseg] = m + TEMPO_MSG_HEADER_SIZE, v.seg_len[v.nseg++] = hole - TEMPO_MSG_HEADER_SIZE;
      if (env.relay_len) {
        v.seg[v.nseg] = relay, v.seg_len[v.nseg++] = env.relay_len;
        v.seg[v.nseg] = m + hole, v.seg_len[v.nseg++] = env.msg_len - hole - env.relay_len;
      }
      if (env.relay_to >= 0) est = forward(fwd, &v, env.fwd_off, env.fwd_len, env.relay_to);
    }
    bool send = true;
    if (est) {
      char text[512];
      snprintf(text, sizeof text, "%s", tempo_errmsg());
      uint64_t task = 0;
      tempo_msg_header h;
      if ((size_t)count >= TEMPO_ENV_SIZE + TEMPO_MSG_HEADER_SIZE &&
          !tempo_msg_header_read(raw + TEMPO_ENV_SIZE, TEMPO_MSG_HEADER_SIZE, &h))
        task = h.task_id;
      st = tempo_msg_encode_error(&reply, task, est, text);
    } else {
      st = tempo_worker_handle(w, &v, &reply, &send);
    }
    if (st) break; /* out of memory even for an ERROR reply */
    if (send && MPI_Send(reply.data, (int)reply.len, MPI_BYTE, 0, TEMPO_MPI_TAG_REPLY, MPI_COMM_WORLD) != MPI_SUCCESS) {
      st = tempo_set_error(TEMPO_STATUS_WORKER, "worker %d: lost the master", rank);
      break;
    }
  }
  reap(fwd, true);
  free(raw);
  free(relay);
  tempo_msgbuf_free(&reply);
  MPI_Finalize();
  return st;
}
