/* master_mpi.c - the master side of the MPI transport (mpi.h, offload/transport.h).
 *
 * MPI launches the ranks and tempo_net_mesh connects them; the data then travels over one
 * TCP stream per worker (net.h says why). Each worker has a sender thread, which writes the
 * engine's requests straight from the engine's buffers (zero-copy; the engine keeps them
 * unchanged until the step end), so the master blinds the next block while earlier ones are
 * on the wire, and a stalled worker's full socket holds up nobody else; and a reader thread,
 * which turns the worker's frames into replies for the engine. A worker whose stream ends
 * (process killed, host gone) or that sends a malformed frame is reported to the engine at
 * once as lost; a silent one is timed out by the engine. A product's shared W' goes out once:
 * to the first worker of the group, which relays it along the chain (envelope.h), each
 * receiver's copy authenticated under that receiver's key (tempo_net_keys_master).
 *
 * Every reply frame answers the oldest request of its worker still unanswered (a worker
 * answers each request once, in order), so the reader knows before it allocates how long
 * the frame may be (tempo_msg_reply_bound): a longer frame, or one when nothing is
 * outstanding, drops that worker's connection (the engine evicts it at once). A worker can
 * thus make the master read and hold no more than its requests' replies. */
#include <mpi.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "core/bytes.h"
#include "mpi/mpi.h"
#include "mpi/net.h"
#include "tempo/precision.h"
#include "offload/transport.h"
#include "tempo/common.h"
#include "tempo/envelope.h"

typedef struct job {
  struct job *next;
  uint8_t env[TEMPO_ENV_SIZE];
  uint8_t hdr[TEMPO_MSG_HEADER_SIZE];
  bool has_msg; /* false: SHUTDOWN (envelope only) */
  int nseg;
  const uint8_t *seg[4];
  size_t seg_len[4];
} job;

typedef struct reply {
  struct reply *next;
  int worker;
  bool lost;
  uint8_t *data;
  size_t len, cap;
} reply;

typedef struct net_tr net_tr;

typedef struct {
  net_tr *t;
  int w;
  int fd;
  pthread_t tx, rx;
  bool tx_started, rx_started;
  pthread_cond_t tx_cv;
  job *head, *tail; /* the sender's queue */
  bool closing;     /* no more jobs; the sender exits when the queue is empty */
  bool dead;        /* stream gone or worker evicted: jobs are dropped */
  uint64_t *expect; /* ring of the reply bounds (bytes) of the requests not yet answered, oldest first */
  int exp_first, exp_n, exp_cap;
} link;

struct net_tr {
  tempo_transport base;
  pthread_mutex_t mu;
  pthread_cond_t rx_cv;
  link *links;
  reply *inbox, *inbox_tail, *spare;
  int nspare;
  bool relay; /* TEMPO_MPI_RELAY=0 turns the relay off */
  uint8_t *keys; /* (n_workers, 32) relay keys, secret: wiped at free */
};

static bool g_inited, g_lost;
static int g_workers;
static int *g_fds; /* the streams from tempo_net_mesh, handed to the (single) transport */
static uint8_t *g_keys; /* (g_workers, 32) the relay keys made at connect time, handed over with the streams */
static uint8_t *g_prec; /* (g_workers) each worker's declared precision (untrusted; 255: unknown) */

bool tempo_mpi_launched(void) { return getenv("OMPI_COMM_WORLD_SIZE") != NULL; }

/* ---- replies ---- */

/* Under t->mu: a reply buffer, reusing a spare one (its pages are already touched). */
static reply *take_spare(net_tr *t, size_t need) {
  reply *best = NULL, **bp = NULL;
  for (reply **p = &t->spare; *p; p = &(*p)->next)
    if (!best || ((*p)->cap >= need && (best->cap < need || (*p)->cap < best->cap))) best = *p, bp = p;
  if (best) {
    *bp = best->next;
    t->nspare--;
    best->next = NULL;
    return best;
  }
  return calloc(1, sizeof(reply));
}

static void give_spare(net_tr *t, reply *r) {
  if (t->nspare >= (TEMPO_TRANSPORT_HELD_PER_WORKER + 2) * t->base.n_workers + 4) { /* all the engine may hold, and more */
    free(r->data);
    free(r);
    return;
  }
  r->next = t->spare;
  t->spare = r;
  t->nspare++;
}

static void post(net_tr *t, reply *r) {
  r->next = NULL;
  if (t->inbox_tail) t->inbox_tail->next = r;
  else t->inbox = r;
  t->inbox_tail = r;
  pthread_cond_signal(&t->rx_cv);
}

/* Under t->mu: the stream to l's worker is gone or must go. Unless it ended in an orderly
 * shutdown, the engine hears of it once, as `why` (NULL: the engine knows, it evicted it). */
static void lose(link *l, const char *why) {
  net_tr *t = l->t;
  if (l->dead) return;
  l->dead = true;
  if (!l->closing) g_lost = true; /* MPI_Finalize would wait for it */
  shutdown(l->fd, SHUT_RDWR);
  while (l->head) {
    job *j = l->head;
    l->head = j->next;
    free(j);
  }
  l->tail = NULL;
  pthread_cond_signal(&l->tx_cv);
  if (l->closing || !why) return; /* shutting down, or evicted: nobody to tell */
  fprintf(stderr, "tempo: worker %d: %s\n", l->w, why);
  reply *r = take_spare(t, 0);
  if (!r) return; /* out of memory: the engine times it out instead */
  r->worker = l->w;
  r->lost = true;
  r->len = 0;
  post(t, r);
}

/* Under t->mu: whether a reply frame of len bytes may come now (it answers the oldest request
 * outstanding); takes that request off the ring. *why says why not. */
static bool expected(link *l, uint64_t len, const char **why) {
  if (l->exp_n == 0) return *why = "sent a frame no request asked for; dropping its connection", false;
  const uint64_t bound = l->expect[l->exp_first];
  l->exp_first = (l->exp_first + 1) % l->exp_cap;
  l->exp_n--;
  if (len > bound) return *why = "sent a reply longer than its request allows; dropping its connection", false;
  return true;
}

/* Under t->mu: remembers that a request whose reply may have `bound` bytes is outstanding. */
static bool expect_push(link *l, uint64_t bound) {
  if (l->exp_n == l->exp_cap) {
    const int cap = l->exp_cap ? 2 * l->exp_cap : 64;
    uint64_t *e = malloc((size_t)cap * sizeof *e);
    if (!e) return false;
    for (int i = 0; i < l->exp_n; i++) e[i] = l->expect[(l->exp_first + i) % l->exp_cap];
    free(l->expect);
    l->expect = e, l->exp_cap = cap, l->exp_first = 0;
  }
  l->expect[(l->exp_first + l->exp_n++) % l->exp_cap] = bound;
  return true;
}

static void *reader(void *arg) {
  link *l = arg;
  net_tr *t = l->t;
  for (;;) {
    uint64_t len = 0;
    const char *why = "sent a malformed frame; dropping its connection";
    tempo_net_result res = tempo_net_frame_read(l->fd, TEMPO_NET_REPLY, TEMPO_ENV_MAX_MSG, 0, NULL, &len);
    pthread_mutex_lock(&t->mu);
    if (!res && !expected(l, len, &why)) res = TEMPO_NET_BAD; /* before anything is allocated for it */
    reply *r = res ? NULL : take_spare(t, len);
    pthread_mutex_unlock(&t->mu);
    if (r && r->cap < len) {
      uint8_t *b = realloc(r->data, len ? len : 1);
      if (b) r->data = b, r->cap = len;
      else res = TEMPO_NET_BAD;
    }
    if (!res && !r) res = TEMPO_NET_BAD;
    if (!res) res = tempo_net_read(l->fd, r->data, len, 0, NULL);
    pthread_mutex_lock(&t->mu);
    if (res) {
      if (r) give_spare(t, r);
      lose(l, res == TEMPO_NET_BAD ? why : "connection lost");
      pthread_mutex_unlock(&t->mu);
      return NULL;
    }
    r->worker = l->w;
    r->lost = false;
    r->len = len;
    if (l->dead) give_spare(t, r); /* evicted meanwhile: drop it */
    else post(t, r);
    pthread_mutex_unlock(&t->mu);
  }
}

/* ---- requests ---- */

static void *sender(void *arg) {
  link *l = arg;
  net_tr *t = l->t;
  pthread_mutex_lock(&t->mu);
  for (;;) {
    while (!l->head && !l->closing && !l->dead) pthread_cond_wait(&l->tx_cv, &t->mu);
    if (!l->head) break; /* closing with an empty queue, or dead */
    job *j = l->head;
    l->head = j->next;
    if (!l->head) l->tail = NULL;
    pthread_mutex_unlock(&t->mu);
    const void *part[6] = {j->env, j->hdr};
    size_t len[6] = {TEMPO_ENV_SIZE, j->has_msg ? TEMPO_MSG_HEADER_SIZE : 0};
    int n = 2;
    for (int i = 0; i < j->nseg; i++) part[n] = j->seg[i], len[n++] = j->seg_len[i];
    tempo_status st = tempo_net_send(l->fd, TEMPO_NET_REQ, n, part, len);
    free(j);
    pthread_mutex_lock(&t->mu);
    if (st) lose(l, "connection lost");
  }
  pthread_mutex_unlock(&t->mu);
  return NULL;
}

/* Queues envelope + header + the segments except number `skip` (-1: none) for `worker`. */
static tempo_status queue(net_tr *t, int worker, const tempo_envelope *env, const tempo_out_msg *m, int skip) {
  job *j = calloc(1, sizeof *j);
  if (!j) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "mpi: out of memory");
  tempo_env_write(env, j->env);
  uint64_t bytes = TEMPO_NET_FRAME_SIZE + TEMPO_ENV_SIZE + TEMPO_MSG_HEADER_SIZE;
  j->has_msg = true;
  memcpy(j->hdr, m->header, TEMPO_MSG_HEADER_SIZE);
  for (int i = 0; i < m->nseg; i++) {
    if (i == skip || !m->seg_len[i]) continue;
    j->seg[j->nseg] = m->seg[i], j->seg_len[j->nseg++] = m->seg_len[i];
    bytes += m->seg_len[i];
  }
  link *l = &t->links[worker];
  tempo_msg_header h;
  if (tempo_msg_header_read(m->header, TEMPO_MSG_HEADER_SIZE, &h)) {
    free(j);
    return tempo_set_error(TEMPO_STATUS_INTERNAL, "mpi: a bad request to worker %d: %s", worker, tempo_errmsg());
  }
  pthread_mutex_lock(&t->mu);
  if (!l->dead && !expect_push(l, tempo_msg_reply_bound(&h))) {
    pthread_mutex_unlock(&t->mu);
    free(j);
    return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "mpi: out of memory");
  }
  if (l->dead) {
    free(j); /* a lost worker: the engine already knows */
  } else {
    if (l->tail) l->tail->next = j;
    else l->head = j;
    l->tail = j;
    pthread_cond_signal(&l->tx_cv);
    t->base.wire_up += bytes;
  }
  pthread_mutex_unlock(&t->mu);
  return TEMPO_STATUS_OK;
}

static uint64_t msg_len(const tempo_out_msg *m) {
  uint64_t l = TEMPO_MSG_HEADER_SIZE;
  for (int i = 0; i < m->nseg; i++) l += m->seg_len[i];
  return l;
}

static uint64_t seg_off(const tempo_out_msg *m, int k) {
  uint64_t o = TEMPO_MSG_HEADER_SIZE;
  for (int i = 0; i < k; i++) o += m->seg_len[i];
  return o;
}

static tempo_status check_workers(const tempo_transport *tb, int n, const int *workers) {
  for (int i = 0; i < n; i++)
    if (workers[i] < 0 || workers[i] >= tb->n_workers)
      return tempo_set_error(TEMPO_STATUS_INTERNAL, "mpi: no worker %d", workers[i]);
  return TEMPO_STATUS_OK;
}

static tempo_status mt_send(tempo_transport *tb, int worker, const tempo_out_msg *m) {
  tempo_status st = check_workers(tb, 1, &worker);
  if (st) return st;
  tempo_envelope env;
  tempo_env_init(&env, TEMPO_ENV_REQUEST);
  env.msg_len = msg_len(m);
  return queue((net_tr *)tb, worker, &env, m, -1);
}

static tempo_status mt_send_group(tempo_transport *tb, int n, const int *workers, const tempo_out_msg *msgs,
                                  int shared) {
  net_tr *t = (net_tr *)tb;
  tempo_status st;
  if (!t->relay || n < 2) {
    for (int i = 0; i < n; i++)
      if ((st = mt_send(tb, workers[i], &msgs[i]))) return st;
    return TEMPO_STATUS_OK;
  }
  if ((st = check_workers(tb, n, workers))) return st;
  uint8_t digest[32]; /* once per operand; then one 48-byte MAC per receiver */
  tempo_relay_digest(msgs[0].seg[shared], msgs[0].seg_len[shared], digest);
  for (int i = 0; i < n; i++) {
    const tempo_out_msg *m = &msgs[i];
    tempo_envelope env;
    tempo_env_init(&env, TEMPO_ENV_REQUEST);
    env.msg_len = msg_len(m);
    if (i > 0) {
      env.relay_from = workers[i - 1] + 1;
      env.relay_off = seg_off(m, shared);
      env.relay_len = m->seg_len[shared];
      tempo_relay_tag(t->keys + (size_t)workers[i] * 32, digest, tempo_le_get64(m->header + 8), env.relay_len,
                      env.auth);
    }
    if (i + 1 < n) {
      env.relay_to = workers[i + 1] + 1;
      env.fwd_off = seg_off(m, shared);
      env.fwd_len = m->seg_len[shared];
    }
    if ((st = queue(t, workers[i], &env, m, i > 0 ? shared : -1))) return st;
  }
  return TEMPO_STATUS_OK;
}

static tempo_status mt_send_reduce(tempo_transport *tb, int n, const int *workers, const tempo_out_msg *msgs) {
  net_tr *t = (net_tr *)tb;
  tempo_status st = check_workers(tb, n, workers);
  for (int i = 0; i < n && !st; i++) {
    tempo_envelope env;
    tempo_env_init(&env, TEMPO_ENV_REQUEST);
    env.msg_len = msg_len(&msgs[i]);
    env.reduce_from = i > 0 ? workers[i - 1] + 1 : -1;
    env.reduce_to = i + 1 < n ? workers[i + 1] + 1 : -1;
    st = queue(t, workers[i], &env, &msgs[i], -1);
  }
  return st;
}

static tempo_status mt_recv(tempo_transport *tb, double timeout_s, tempo_in_msg *m, bool *got) {
  net_tr *t = (net_tr *)tb;
  *got = false;
  struct timespec until;
  clock_gettime(CLOCK_MONOTONIC, &until);
  double secs = timeout_s > 0 ? timeout_s : 0;
  until.tv_sec += (time_t)secs;
  until.tv_nsec += (long)((secs - (double)(time_t)secs) * 1e9);
  if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
  pthread_mutex_lock(&t->mu);
  while (!t->inbox)
    if (pthread_cond_timedwait(&t->rx_cv, &t->mu, &until)) break;
  reply *r = t->inbox;
  if (r) {
    t->inbox = r->next;
    if (!t->inbox) t->inbox_tail = NULL;
  }
  pthread_mutex_unlock(&t->mu);
  if (!r) return TEMPO_STATUS_OK;
  m->worker = r->worker;
  m->data = r->data;
  m->len = r->len;
  m->lost = r->lost;
  m->token = r;
  *got = true;
  return TEMPO_STATUS_OK;
}

static void mt_done(tempo_transport *tb, tempo_in_msg *m) {
  net_tr *t = (net_tr *)tb;
  if (!m->token) return;
  pthread_mutex_lock(&t->mu);
  give_spare(t, m->token);
  pthread_mutex_unlock(&t->mu);
  m->token = NULL;
}

static void mt_evict(tempo_transport *tb, int worker) {
  net_tr *t = (net_tr *)tb;
  if (worker < 0 || worker >= tb->n_workers) return;
  pthread_mutex_lock(&t->mu);
  link *l = &t->links[worker];
  lose(l, NULL);
  pthread_mutex_unlock(&t->mu);
}

/* Joins th within ~seconds; false when it is still running. */
static bool join_within(pthread_t th, double seconds) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += (time_t)seconds;
  return pthread_timedjoin_np(th, NULL, &ts) == 0;
}

static void mt_free(tempo_transport *tb) {
  net_tr *t = (net_tr *)tb;
  if (!t) return;
  const int n = tb->n_workers;
  /* SHUTDOWN to every worker still there, after what is queued; 5 s for the queues to drain.
   * The job goes in together with `closing` (one critical section): a worker that sees its
   * SHUTDOWN closes its stream at once, and that EOF must not be reported as a loss. */
  tempo_envelope env;
  tempo_env_init(&env, TEMPO_ENV_SHUTDOWN);
  pthread_mutex_lock(&t->mu);
  for (int w = 0; w < n; w++) {
    link *l = &t->links[w];
    job *j = l->tx_started && !l->dead ? calloc(1, sizeof *j) : NULL;
    if (j) {
      tempo_env_write(&env, j->env);
      if (l->tail) l->tail->next = j;
      else l->head = j;
      l->tail = j;
      t->base.wire_up += TEMPO_NET_FRAME_SIZE + TEMPO_ENV_SIZE;
    }
    l->closing = true;
    pthread_cond_signal(&l->tx_cv);
  }
  pthread_mutex_unlock(&t->mu);
  const double t0 = tempo_now();
  for (int w = 0; w < n; w++) {
    link *l = &t->links[w];
    if (!l->tx_started) continue;
    double left = 5.0 - (tempo_now() - t0);
    if (!join_within(l->tx, left > 0.5 ? left : 0.5)) { /* a stalled worker: break its stream */
      pthread_mutex_lock(&t->mu);
      g_lost = true; /* closing: lose() would take its EOF for an orderly one */
      lose(l, NULL);
      pthread_mutex_unlock(&t->mu);
      pthread_join(l->tx, NULL);
    }
  }
  for (int w = 0; w < n; w++) { /* ends the readers (a worker that saw SHUTDOWN closes anyway) */
    link *l = &t->links[w];
    if (!l->rx_started) continue;
    if (!join_within(l->rx, 2.0)) {
      shutdown(l->fd, SHUT_RDWR);
      pthread_join(l->rx, NULL);
    }
  }
  for (int w = 0; w < n; w++) pthread_cond_destroy(&t->links[w].tx_cv), free(t->links[w].expect);
  if (t->keys) sodium_munlock(t->keys, (size_t)n * 32); /* wipes them */
  free(t->keys);
  tempo_net_close_all(g_fds + 1, n);
  for (reply *r = t->inbox, *nx; r; r = nx) nx = r->next, free(r->data), free(r);
  for (reply *r = t->spare, *nx; r; r = nx) nx = r->next, free(r->data), free(r);
  pthread_cond_destroy(&t->rx_cv);
  pthread_mutex_destroy(&t->mu);
  free(t->links);
  free(t);
}

static const tempo_transport_ops mpi_ops = {mt_send, mt_recv, mt_done, mt_free, mt_send_group, mt_evict, mt_send_reduce};

tempo_status tempo_mpi_transport(void *ctx, int requested, tempo_transport **out) {
  (void)ctx, (void)requested;
  *out = NULL;
  if (!g_fds || g_fds[1] < 0 || !g_keys)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "mpi: the workers' streams are already in use or gone");
  net_tr *t = calloc(1, sizeof *t);
  link *links = calloc((size_t)g_workers, sizeof *links);
  if (!t || !links) {
    free(t), free(links);
    return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "mpi: out of memory");
  }
  t->base.ops = &mpi_ops;
  t->base.n_workers = g_workers;
  t->base.precision = g_prec;
  t->links = links;
  t->keys = g_keys; /* taken over */
  g_keys = NULL;
  const char *to = getenv("TEMPO_WORKER_TIMEOUT");
  if (to && atof(to) > 0) t->base.timeout_s = atof(to);
  const char *r = getenv("TEMPO_MPI_RELAY");
  t->relay = !(r && !strcmp(r, "0"));
  t->base.relays = t->relay;
  const char *red = getenv("TEMPO_MPI_REDUCE");
  t->base.can_reduce = !(red && !strcmp(red, "0"));
  pthread_mutex_init(&t->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&t->rx_cv, &ca);
  pthread_condattr_destroy(&ca);
  tempo_status st = TEMPO_STATUS_OK;
  for (int w = 0; w < g_workers; w++) {
    link *l = &links[w];
    l->t = t, l->w = w, l->fd = g_fds[w + 1];
    pthread_cond_init(&l->tx_cv, NULL);
  }
  for (int w = 0; w < g_workers && !st; w++) {
    link *l = &links[w];
    l->tx_started = pthread_create(&l->tx, NULL, sender, l) == 0;
    l->rx_started = l->tx_started && pthread_create(&l->rx, NULL, reader, l) == 0;
    if (!l->rx_started) st = tempo_set_error(TEMPO_STATUS_NO_MEMORY, "mpi: cannot start the threads of worker %d", w);
  }
  if (st) {
    mt_free(&t->base);
    return st;
  }
  *out = &t->base;
  return TEMPO_STATUS_OK;
}

tempo_status tempo_mpi_master_init(int *argc, char ***argv, int *n_workers) {
  int provided, rank = 0, world = 0;
  if (MPI_Init_thread(argc, argv, MPI_THREAD_SINGLE, &provided) != MPI_SUCCESS)
    return tempo_set_error(TEMPO_STATUS_WORKER, "MPI_Init failed");
  g_inited = true;
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  if (rank != 0 || world < 2)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT,
                           "under mpirun the master must be rank 0 with workers after it: "
                           "mpirun -np 1 tempo train ... : -np N tempo-worker --backend cpu");
  if (sodium_init() < 0) return tempo_set_error(TEMPO_STATUS_INTERNAL, "libsodium failed to start");
  g_fds = malloc((size_t)world * sizeof *g_fds);
  if (!g_fds) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "mpi: out of memory");
  tempo_status st = tempo_net_mesh(g_fds, world);
  if (st) return st;
  if (!(g_keys = malloc((size_t)(world - 1) * 32)))
    return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "mpi: out of memory");
  g_workers = world - 1;
  (void)sodium_mlock(g_keys, (size_t)g_workers * 32); /* best effort: kept out of swap where allowed */
  if ((st = tempo_net_keys_master(g_fds, world, g_keys))) return st;
  const char *abort_opt = getenv("OMPI_MCA_orte_abort_on_non_zero_status");
  if (!abort_opt || strcmp(abort_opt, "0"))
    fprintf(stderr, "tempo: note: mpirun ends the whole job if a worker dies; launch with "
                    "'--mca orte_abort_on_non_zero_status 0' to train on with the others\n");
  /* every worker declares its compute precision right after the mesh (worker_mpi.c) */
  int mine = -1, *decl = malloc((size_t)world * sizeof *decl);
  g_prec = malloc((size_t)g_workers);
  if (!decl || !g_prec) {
    free(decl);
    return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "mpi: out of memory");
  }
  if (MPI_Gather(&mine, 1, MPI_INT, decl, 1, MPI_INT, 0, MPI_COMM_WORLD) != MPI_SUCCESS) {
    free(decl);
    return tempo_set_error(TEMPO_STATUS_WORKER, "mpi: the workers' precision declarations did not arrive");
  }
  for (int w = 0; w < g_workers; w++)
    g_prec[w] = decl[w + 1] >= 0 && decl[w + 1] < TEMPO_PRECISION_COUNT ? (uint8_t)decl[w + 1] : 255;
  free(decl);
  *n_workers = g_workers;
  return TEMPO_STATUS_OK;
}

void tempo_mpi_master_finalize(void) {
  if (!g_inited) return;
  g_inited = false;
  free(g_fds);
  g_fds = NULL;
  if (g_keys) sodium_munlock(g_keys, (size_t)g_workers * 32); /* no transport took them: wiped */
  free(g_keys);
  g_keys = NULL;
  free(g_prec);
  g_prec = NULL;
  if (!g_lost) MPI_Finalize(); /* Open MPI 4.1 may wait forever for a lost rank */
}
