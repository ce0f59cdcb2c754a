/* worker_mpi.c - the worker side of the MPI transport (mpi.h). MPI starts the ranks and
 * tempo_net_mesh connects them; then the worker reads envelope + message frames from the
 * master's stream, takes the relayed range from another worker's stream (checked against
 * the envelope's authenticator under this worker's relay key; a bad, empty or missing relay
 * is an ERROR of code TEMPO_STATUS_BAD_RELAY, which the master charges to the relayer, and an
 * empty relay goes on to our successor),
 * forwards its own range onwards (a forwarding thread, so a slow peer never holds up this
 * worker's compute), runs the worker core and writes the reply. Every received byte is
 * untrusted: frames, the envelope and the message are validated before use, and a bad
 * request gets an ERROR reply. */
#include <mpi.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/bytes.h"
#include "mpi/mpi.h"
#include "mpi/net.h"
#include "tempo/common.h"
#include "tempo/envelope.h"

/* ---- forwarding thread ---- */

typedef struct fwd_job {
  struct fwd_job *next;
  int to; /* rank */
  tempo_net_kind kind;
  uint8_t *buf;
  size_t len;
} fwd_job;

typedef struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  pthread_t th;
  fwd_job *head, *tail;
  bool stop;
  int *fds; /* the mesh; a peer whose stream fails is shut down */
  uint32_t *owed; /* (world, 2): RELAY / REDUCE frames a peer still owes us from waits given up on */
} forwarder;

static void *forward_loop(void *arg) {
  forwarder *f = arg;
  pthread_mutex_lock(&f->mu);
  for (;;) {
    while (!f->head && !f->stop) pthread_cond_wait(&f->cv, &f->mu);
    if (!f->head) break;
    fwd_job *j = f->head;
    f->head = j->next;
    if (!f->head) f->tail = NULL;
    int fd = f->fds[j->to];
    pthread_mutex_unlock(&f->mu);
    const void *part[1] = {j->buf};
    size_t len[1] = {j->len};
    bool ok = fd >= 0 && !tempo_net_send(fd, j->kind, 1, part, len);
    if (!ok && fd >= 0) fprintf(stderr, "tempo-worker: relay to rank %d failed: %s\n", j->to, tempo_errmsg());
    free(j->buf);
    free(j);
    pthread_mutex_lock(&f->mu);
  }
  pthread_mutex_unlock(&f->mu);
  return NULL;
}

/* Queues buf (malloc'd, taken over) as a frame of `kind` for rank to. */
static void queue_frame(forwarder *f, int to, tempo_net_kind kind, fwd_job *j, uint8_t *buf, size_t len) {
  j->to = to, j->kind = kind, j->buf = buf, j->len = len;
  pthread_mutex_lock(&f->mu);
  if (f->tail) f->tail->next = j;
  else f->head = j;
  f->tail = j;
  pthread_cond_signal(&f->cv);
  pthread_mutex_unlock(&f->mu);
}

/* Queues a copy of bytes [off, off+len) of the message (spread over the view) for rank to. */
static tempo_status forward(forwarder *f, const tempo_msg_view *v, uint64_t off, uint64_t len, int to,
                            const tempo_worker_hooks *hooks) {
  fwd_job *j = calloc(1, sizeof *j);
  uint8_t *b = len <= SIZE_MAX ? malloc(len ? len : 1) : NULL;
  if (!j || !b) {
    free(j), free(b);
    return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "worker: out of memory for a relay");
  }
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
  if (done != len) {
    free(j), free(b);
    return tempo_set_error(TEMPO_STATUS_CORRUPT, "worker: forward range outside the message");
  }
  if (hooks && hooks->relay) (void)hooks->relay(hooks->ctx, b, len);
  queue_frame(f, to, TEMPO_NET_RELAY, j, b, len);
  return TEMPO_STATUS_OK;
}

/* ---- requests ---- */

static pid_t g_parent;
/* A worker whose launcher is gone (parent pid changed) exits instead of waiting forever for a
 * master that died without a SHUTDOWN. */
static bool orphaned(void) { return getppid() != g_parent; }

#define ANY_LEN UINT64_MAX
static uint32_t *owed_of(forwarder *f, int from, tempo_net_kind kind) {
  return &f->owed[2 * (size_t)from + (kind == TEMPO_NET_REDUCE)];
}

/* Reads a frame of `kind` and `want` bytes (or an empty one; any size with ANY_LEN) from rank
 * `from` into *buf. Returns the bytes read (0: empty) or -1 when the frame is late, wrong or
 * the stream failed. A frame that has not begun by the deadline is late, not lost: the peer
 * still owes it, and it is skipped when it comes (a peer's frames of a kind come in order),
 * so one slow relay costs one wait, not the link. A stream that broke inside a frame, or
 * that sent a wrong one, cannot be resynchronised: it is shut down, later reads fail at once. */
static long long take_frame(forwarder *f, int from, tempo_net_kind kind, uint64_t want, uint8_t **buf, size_t *cap,
                            double timeout_s, const char **why) {
  pthread_mutex_lock(&f->mu);
  int fd = f->fds[from];
  pthread_mutex_unlock(&f->mu);
  if (fd < 0) return *why = "its stream is closed", -1;
  const double deadline = tempo_now() + timeout_s, finish_by = deadline + timeout_s; /* a begun frame's end */
  uint64_t len = 0;
  tempo_net_result r;
  for (;;) {
    if ((r = tempo_net_wait(fd, deadline, orphaned)) == TEMPO_NET_TIMEOUT && !orphaned()) {
      (*owed_of(f, from, kind))++;
      return *why = "did not arrive in time", -1;
    }
    tempo_net_kind k = 0;
    if (!r) r = tempo_net_frame_read_any(fd, TEMPO_ENV_MAX_MSG, finish_by, orphaned, &k, &len);
    if (r || (k != TEMPO_NET_RELAY && k != TEMPO_NET_REDUCE) || !*owed_of(f, from, k)) {
      if (!r && (k != kind || (want != ANY_LEN && len != want && len != 0))) r = TEMPO_NET_BAD;
      break;
    }
    (*owed_of(f, from, k))--; /* a late one: dropped unread */
    if ((r = tempo_net_skip(fd, len, finish_by, orphaned))) break;
  }
  bool oom = false;
  if (!r && *cap < len) {
    uint8_t *b = realloc(*buf, len);
    if (b) *buf = b, *cap = len;
    else oom = true, r = TEMPO_NET_CLOSED; /* the frame stays unread: the stream is lost */
  }
  if (!r) r = tempo_net_read(fd, *buf, len, finish_by, orphaned);
  if (!r) return (long long)len;
  /* shut down, not closed: the forwarding thread may be writing to the same peer, and the fd
   * number must not be reused under it; reads and writes on it now fail at once */
  shutdown(fd, SHUT_RDWR);
  *why = oom                       ? "could not be taken: out of memory"
         : r == TEMPO_NET_TIMEOUT ? "did not arrive in time"
         : r == TEMPO_NET_BAD     ? "was malformed or of the wrong size"
                                  : "failed: connection lost";
  return -1;
}

/* Receives the relayed range from rank e->relay_from into *buf within timeout_s and checks
 * it against the envelope's authenticator for task `task` under our relay key. A wrong size,
 * an empty relay, none in time or a wrong tag is TEMPO_STATUS_BAD_RELAY: the relayer's fault. */
static tempo_status take_relay(const tempo_envelope *e, forwarder *f, const uint8_t *key, uint64_t task,
                               uint8_t **buf, size_t *cap, double timeout_s) {
  const char *why = "was empty";
  if (e->relay_len > TEMPO_ENV_MAX_MSG) return tempo_set_error(TEMPO_STATUS_CORRUPT, "worker: relay too large");
  long long got = take_frame(f, e->relay_from, TEMPO_NET_RELAY, e->relay_len, buf, cap, timeout_s, &why);
  if (got < 0 || (uint64_t)got != e->relay_len)
    return tempo_set_error(TEMPO_STATUS_BAD_RELAY, "worker: relay from rank %d %s", e->relay_from, why);
  if (!tempo_relay_check(key, e->auth, task, *buf, e->relay_len))
    return tempo_set_error(TEMPO_STATUS_BAD_RELAY, "worker: the operand relayed by rank %d fails its authenticator",
                           e->relay_from);
  return TEMPO_STATUS_OK;
}

/* Where a chain member's predecessor partial comes from: the REDUCE frame on rank from's stream. */
typedef struct {
  forwarder *f;
  int from, rank;
  double timeout_s;
  uint64_t dw_bytes; /* what a partial of this request has (from its header) */
  uint8_t **buf;
  size_t *cap;
} prev_source;

/* tempo_worker_chain.take_prev: reads the predecessor's REDUCE frame (of `want` bytes or
 * empty; when we have no dW' of our own, of the size the request implies, to keep the
 * stream in step: never more). */
static void take_prev(void *ctx, size_t want, const uint8_t **data, size_t *len) {
  prev_source *p = ctx;
  const char *why = NULL;
  long long got = take_frame(p->f, p->from, TEMPO_NET_REDUCE, want ? want : p->dw_bytes, p->buf, p->cap,
                             p->timeout_s, &why);
  if (got < 0) fprintf(stderr, "tempo-worker %d: partial dW' from rank %d %s\n", p->rank, p->from, why);
  *data = got > 0 ? *p->buf : NULL;
  *len = got > 0 ? (size_t)got : 0;
}

/* This worker's part in a dW' reduction chain (envelope.h): the worker core adds the
 * predecessor's partial sum to our dW' and shapes the reply (tempo_worker_handle_chain);
 * here the sum goes on to the successor as a REDUCE frame (an empty one when the chain is
 * broken: the master's check of the final sum then fails and it recomputes the blocks,
 * docs/distributed.md). */
static tempo_status reduce_step(tempo_worker *w, const tempo_envelope *env, const tempo_msg_view *v, forwarder *f,
                                tempo_msgbuf *reply, bool *send, prev_source *src, tempo_msgbuf *pass) {
  src->from = env->reduce_from;
  tempo_msg_header h;
  tempo_msg_sizes z = {0};
  if (!tempo_msg_header_read(v->header, TEMPO_MSG_HEADER_SIZE, &h)) tempo_msg_split_sizes(&h, &z);
  src->dw_bytes = (uint64_t)z.dw * tempo_msg_dtype_size(h.dtype);
  tempo_worker_chain ch = {.first = env->reduce_from < 0, .last = env->reduce_to < 0, .take_prev = take_prev,
                           .ctx = src, .pass = pass};
  tempo_status st = tempo_worker_handle_chain(w, v, &ch, reply, send);
  if (ch.last) return st;
  fwd_job *j = calloc(1, sizeof *j);
  uint8_t *b = pass->len ? pass->data : malloc(1); /* the sum's buffer is taken over */
  if (!j || !b) {
    free(j);
    if (b != pass->data) free(b);
    return st ? st : tempo_set_error(TEMPO_STATUS_NO_MEMORY, "worker: out of memory for a partial dW'");
  }
  const size_t len = pass->len;
  if (b == pass->data) *pass = (tempo_msgbuf){0};
  queue_frame(f, env->reduce_to, TEMPO_NET_REDUCE, j, b, len);
  return st;
}

/* TESTS ONLY, on the fault hooks (never set in the shipped worker): an unasked frame of n
 * garbage bytes, streamed from one small buffer until sent or refused. */
static tempo_status send_flood(int fd, uint64_t n) {
  static const uint8_t zeros[1 << 16];
  uint8_t fh[TEMPO_NET_FRAME_SIZE];
  tempo_net_frame_write(fh, TEMPO_NET_REPLY, n);
  if (send(fd, fh, sizeof fh, MSG_NOSIGNAL) != (ssize_t)sizeof fh) return TEMPO_STATUS_WORKER;
  for (uint64_t left = n; left > 0;) {
    ssize_t w = send(fd, zeros, left < sizeof zeros ? (size_t)left : sizeof zeros, MSG_NOSIGNAL);
    if (w <= 0) return TEMPO_STATUS_WORKER;
    left -= (uint64_t)w;
  }
  return TEMPO_STATUS_OK;
}

static tempo_status send_reply(int fd, const tempo_msgbuf *reply, int rank, const tempo_worker_hooks *hooks) {
  tempo_msg_header rh;
  if (hooks && hooks->flood && !tempo_msg_header_read(reply->data, reply->len, &rh)) {
    const uint64_t n = hooks->flood(hooks->ctx, &rh);
    if (n && send_flood(fd, n)) return tempo_set_error(TEMPO_STATUS_WORKER, "worker %d: lost the master", rank);
  }
  const void *part[1] = {reply->data};
  size_t len[1] = {reply->len};
  if (tempo_net_send(fd, TEMPO_NET_REPLY, 1, part, len))
    return tempo_set_error(TEMPO_STATUS_WORKER, "worker %d: lost the master", rank);
  return TEMPO_STATUS_OK;
}

/* Validates a received envelope + message, takes the relay, queues the forward, and builds
 * the message view. */
static tempo_status parse_request(const uint8_t *raw, size_t count, int rank, int world, forwarder *f,
                                  const uint8_t *key, const tempo_worker_hooks *hooks, double relay_timeout_s,
                                  uint8_t **relay, size_t *relay_cap, tempo_envelope *env, tempo_msg_view *v) {
  tempo_status st = tempo_env_read(raw, count, rank, world, env);
  if (st || env->kind == TEMPO_ENV_SHUTDOWN) return st;
  if ((uint64_t)count - TEMPO_ENV_SIZE != tempo_env_inline_bytes(env))
    return tempo_set_error(TEMPO_STATUS_CORRUPT, "worker: %zu inline bytes, envelope says %llu",
                           count - (size_t)TEMPO_ENV_SIZE, (unsigned long long)tempo_env_inline_bytes(env));
  const uint64_t task = tempo_le_get64(raw + TEMPO_ENV_SIZE + 8); /* the header is inline (envelope checked) */
  if (env->relay_len && (st = take_relay(env, f, key, task, relay, relay_cap, relay_timeout_s))) {
    fwd_job *j = env->relay_to >= 0 ? calloc(1, sizeof *j) : NULL;
    uint8_t *none = j ? malloc(1) : NULL; /* an empty relay: our successor need not wait for it */
    if (none) queue_frame(f, env->relay_to, TEMPO_NET_RELAY, j, none, 0);
    else free(j);
    return st;
  }
  /* the message: header, [inline up to the hole], [relayed], [inline after the hole] */
  const uint8_t *m = raw + TEMPO_ENV_SIZE;
  *v = (tempo_msg_view){.header = m, .stable = false};
  const uint64_t hole = env->relay_len ? env->relay_off : env->msg_len;
  v->seg[v->nseg] = m + TEMPO_MSG_HEADER_SIZE, v->seg_len[v->nseg++] = hole - TEMPO_MSG_HEADER_SIZE;
  if (env->relay_len) {
    v->seg[v->nseg] = *relay, v->seg_len[v->nseg++] = env->relay_len;
    v->seg[v->nseg] = m + hole, v->seg_len[v->nseg++] = env->msg_len - hole - env->relay_len;
  }
  if (env->relay_to >= 0) st = forward(f, v, env->fwd_off, env->fwd_len, env->relay_to, hooks);
  return st;
}

tempo_status tempo_mpi_worker_main(int *argc, char ***argv, tempo_worker *w, double relay_timeout_s) {
  int provided, rank = 0, world = 0;
  g_parent = getppid();
  if (MPI_Init_thread(argc, argv, MPI_THREAD_SINGLE, &provided) != MPI_SUCCESS)
    return tempo_set_error(TEMPO_STATUS_WORKER, "MPI_Init failed");
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  if (rank == 0) {
    tempo_status st = tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT,
                                      "tempo-worker is rank 0; launch the master first: mpirun -np 1 tempo train ... "
                                      ": -np N tempo-worker");
    MPI_Abort(MPI_COMM_WORLD, 2);
    return st;
  }
  if (sodium_init() < 0) return tempo_set_error(TEMPO_STATUS_INTERNAL, "libsodium failed to start");
  int *fds = malloc((size_t)world * sizeof *fds);
  if (!fds) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "worker: out of memory");
  tempo_status st = tempo_net_mesh(fds, world);
  if (st) {
    free(fds);
    MPI_Finalize();
    return st;
  }
  uint8_t key[TEMPO_RELAY_KEY_SIZE]; /* our relay key: never leaves this process, wiped at the end */
  if ((st = tempo_net_keys_worker(fds[0], key))) {
    tempo_net_close_all(fds, world);
    free(fds);
    MPI_Finalize();
    return st;
  }
  (void)sodium_mlock(key, sizeof key);
  /* the declaration (precision.h): the compute precision of this worker's backend, which the
   * master's checks hold its results to (and --min-precision may refuse) */
  int decl = tempo_worker_precision(w);
  MPI_Gather(&decl, 1, MPI_INT, NULL, 0, MPI_INT, 0, MPI_COMM_WORLD);
  forwarder f = {.fds = fds, .owed = calloc(2 * (size_t)world, sizeof(uint32_t))};
  if (!f.owed) {
    sodium_munlock(key, sizeof key);
    tempo_net_close_all(fds, world);
    free(fds);
    return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "worker: out of memory");
  }
  pthread_mutex_init(&f.mu, NULL);
  pthread_cond_init(&f.cv, NULL);
  if (pthread_create(&f.th, NULL, forward_loop, &f)) {
    sodium_munlock(key, sizeof key);
    free(f.owed);
    tempo_net_close_all(fds, world);
    free(fds);
    return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "worker: cannot start the forwarding thread");
  }
  uint8_t *raw = NULL, *relay = NULL, *partial = NULL;
  size_t raw_cap = 0, relay_cap = 0, partial_cap = 0;
  tempo_msgbuf reply = {0}, pass = {0};
  prev_source src = {.f = &f, .rank = rank, .timeout_s = relay_timeout_s, .buf = &partial, .cap = &partial_cap};
  const int master = fds[0];
  bool master_gone = false;
  for (;;) {
    uint64_t len = 0;
    tempo_net_result r =
        tempo_net_frame_read(master, TEMPO_NET_REQ, TEMPO_ENV_SIZE + TEMPO_ENV_MAX_MSG, 0, orphaned, &len);
    if (!r && len > raw_cap) {
      uint8_t *b = realloc(raw, len ? len : 1);
      if (b) raw = b, raw_cap = len;
      else r = TEMPO_NET_BAD;
    }
    if (!r) r = tempo_net_read(master, raw, len, 0, orphaned);
    if (r) {
      /* a malformed frame cannot be skipped in a stream; the master (trusted, but its bytes
       * are checked like everyone's) gets an ERROR reply and the stream ends */
      if (r == TEMPO_NET_BAD && !tempo_msg_encode_error(&reply, 0, TEMPO_STATUS_CORRUPT, "worker: malformed frame"))
        (void)send_reply(master, &reply, rank, NULL);
      fprintf(stderr, "tempo-worker %d: %s\n", rank,
              r == TEMPO_NET_BAD ? "malformed frame from the master; exiting" : "the master closed our stream");
      st = r == TEMPO_NET_BAD ? tempo_set_error(TEMPO_STATUS_CORRUPT, "malformed frame from the master") : st;
      master_gone = r != TEMPO_NET_BAD;
      break;
    }
    tempo_envelope env;
    tempo_msg_view v;
    tempo_status est =
        parse_request(raw, (size_t)len, rank, world, &f, key, tempo_worker_get_hooks(w), relay_timeout_s, &relay,
                      &relay_cap, &env, &v);
    if (!est && env.kind == TEMPO_ENV_SHUTDOWN) break;
    bool send = true;
    if (est) {
      char text[512];
      snprintf(text, sizeof text, "%s", tempo_errmsg());
      uint64_t task = 0;
      tempo_msg_header h;
      if (len >= TEMPO_ENV_SIZE + TEMPO_MSG_HEADER_SIZE &&
          !tempo_msg_header_read(raw + TEMPO_ENV_SIZE, TEMPO_MSG_HEADER_SIZE, &h))
        task = h.task_id;
      st = tempo_msg_encode_error(&reply, task, est, text);
    } else if (env.reduce_from >= 0 || env.reduce_to >= 0) {
      st = reduce_step(w, &env, &v, &f, &reply, &send, &src, &pass);
    } else {
      st = tempo_worker_handle(w, &v, &reply, &send);
    }
    if (st) break; /* out of memory even for an ERROR reply */
    if (send && (st = send_reply(master, &reply, rank, tempo_worker_get_hooks(w)))) {
      master_gone = true; /* it dropped us: idle as an evicted worker does */
      break;
    }
  }
  sodium_munlock(key, sizeof key); /* wipes it */
  pthread_mutex_lock(&f.mu);
  f.stop = true;
  pthread_cond_signal(&f.cv);
  pthread_mutex_unlock(&f.mu);
  if (master_gone) {
    /* The master evicted us, or died. Exiting now would make mpirun end the whole job
     * (a rank that leaves without MPI_Finalize), and MPI_Finalize would wait for the master:
     * idle until mpirun ends the job or our launcher is gone. */
    while (!orphaned()) sleep(1);
    _exit(1);
  }
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += 2;
  if (pthread_timedjoin_np(f.th, NULL, &until)) { /* a dead peer: break its stream */
    for (int i = 1; i < world; i++)
      if (i != rank && fds[i] >= 0) shutdown(fds[i], SHUT_RDWR);
    pthread_join(f.th, NULL);
  }
  pthread_cond_destroy(&f.cv);
  pthread_mutex_destroy(&f.mu);
  tempo_net_close_all(fds, world);
  free(fds);
  free(f.owed);
  free(raw);
  free(relay);
  free(partial);
  tempo_msgbuf_free(&pass);
  tempo_msgbuf_free(&reply);
  MPI_Finalize();
  return st;
}
