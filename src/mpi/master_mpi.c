/* master_mpi.c - the master side of the MPI transport (mpi.h, offload/transport.h).
 * Sends are non-blocking and zero-copy (an hindexed datatype over the envelope, the
 * header and the engine's segments, which the engine keeps unchanged until the step
 * end); replies are polled with MPI_Iprobe against a deadline, so a dead or stalled
 * worker can only cause a timeout, never a hang. A product's shared W' goes out once:
 * to the first worker of the group, which relays it along the chain (envelope.h). */
#include <mpi.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mpi/mpi.h"
#include "offload/transport.h"
#include "tempo/common.h"
#include "tempo/envelope.h"

typedef struct {
  bool used;
  int rank;
  MPI_Request req;
  MPI_Datatype type;
  uint8_t env[TEMPO_ENV_SIZE];
  uint8_t hdr[TEMPO_MSG_HEADER_SIZE];
} sendslot;

typedef struct {
  tempo_transport base;
  sendslot **slots;
  int nslots;
  uint8_t *rbuf;
  size_t rcap;
  bool relay; /* TEMPO_MPI_RELAY=0 turns the relay off */
} mpi_tr;

static bool g_inited, g_lost;

bool tempo_mpi_launched(void) { return getenv("OMPI_COMM_WORLD_SIZE") != NULL; }

static void progress(mpi_tr *t) {
  for (int i = 0; i < t->nslots; i++) {
    sendslot *s = t->slots[i];
    if (!s->used) continue;
    int done = 0;
    if (MPI_Test(&s->req, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS) done = 1, g_lost = true;
    if (done) {
      MPI_Type_free(&s->type);
      s->used = false;
    }
  }
}

static tempo_status get_slot(mpi_tr *t, sendslot **out) {
  progress(t);
  for (int i = 0; i < t->nslots; i++)
    if (!t->slots[i]->used) return *out = t->slots[i], TEMPO_STATUS_OK;
  sendslot **v = realloc(t->slots, (size_t)(t->nslots + 1) * sizeof *v);
  if (!v) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "mpi: out of memory");
  t->slots = v;
  if (!(v[t->nslots] = calloc(1, sizeof **v))) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "mpi: out of memory");
  *out = v[t->nslots++];
  return TEMPO_STATUS_OK;
}

/* Sends envelope + header + the segments except number `skip` (-1: none). */
static tempo_status post(mpi_tr *t, int worker, const tempo_envelope *env, const tempo_out_msg *m, int skip) {
  sendslot *s;
  tempo_status st = get_slot(t, &s);
  if (st) return st;
  tempo_env_write(env, s->env);
  memcpy(s->hdr, m->header, TEMPO_MSG_HEADER_SIZE);
  enum { CHUNK = 1 << 30, MAXB = 2 + 4 * 3 };
  int len[MAXB], n = 0;
  MPI_Aint disp[MAXB];
  MPI_Get_address(s->env, &disp[n]), len[n++] = TEMPO_ENV_SIZE;
  MPI_Get_address(s->hdr, &disp[n]), len[n++] = TEMPO_MSG_HEADER_SIZE;
  uint64_t bytes = TEMPO_ENV_SIZE + TEMPO_MSG_HEADER_SIZE;
  for (int i = 0; i < m->nseg; i++) {
    if (i == skip) continue;
    for (size_t off = 0; off < m->seg_len[i] && n < MAXB; off += CHUNK) {
      size_t l = m->seg_len[i] - off < CHUNK ? m->seg_len[i] - off : CHUNK;
      MPI_Get_address(m->seg[i] + off, &disp[n]), len[n++] = (int)l;
      bytes += l;
    }
  }
  if (MPI_Type_create_hindexed(n, len, disp, MPI_BYTE, &s->type) != MPI_SUCCESS ||
      MPI_Type_commit(&s->type) != MPI_SUCCESS)
    return tempo_set_error(TEMPO_STATUS_WORKER, "mpi: cannot build a send datatype");
  if (MPI_Isend(MPI_BOTTOM, 1, s->type, worker + 1, TEMPO_MPI_TAG_REQ, MPI_COMM_WORLD, &s->req) != MPI_SUCCESS) {
    MPI_Type_free(&s->type);
    g_lost = true;
    return TEMPO_STATUS_OK; /* a lost worker: the engine times the task out */
  }
  s->used = true;
  s->rank = worker + 1;
  t->base.wire_up += bytes;
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

static tempo_status mt_send(tempo_transport *tb, int worker, const tempo_out_msg *m) {
  if (worker < 0 || worker >= tb->n_workers) return tempo_set_error(TEMPO_STATUS_INTERNAL, "mpi: no worker %d", worker);
  tempo_envelope env;
  tempo_env_init(&env, TEMPO_ENV_REQUEST);
  env.msg_len = msg_len(m);
  return post((mpi_tr *)tb, worker, &env, m, -1);
}

static tempo_status mt_send_group(tempo_transport *tb, int n, const int *workers, const tempo_out_msg *msgs,
                                  int shared) {
  mpi_tr *t = (mpi_tr *)tb;
  tempo_status st;
  if (!t->relay || n < 2) {
    for (int i = 0; i < n; i++)
      if ((st = mt_send(tb, workers[i], &msgs[i]))) return st;
    return TEMPO_STATUS_OK;
  }
  uint8_t digest[32];
  crypto_generichash(digest, sizeof digest, msgs[0].seg[shared], msgs[0].seg_len[shared], NULL, 0);
  for (int i = 0; i < n; i++) {
    const tempo_out_msg *m = &msgs[i];
    tempo_envelope env;
    tempo_env_init(&env, TEMPO_ENV_REQUEST);
    env.msg_len = msg_len(m);
    if (i > 0) {
      env.relay_from = workers[i - 1] + 1;
      env.relay_off = seg_off(m, shared);
      env.relay_len = m->seg_len[shared];
      memcpy(env.digest, digest, sizeof digest);
    }
    if (i + 1 < n) {
      env.relay_to = workers[i + 1] + 1;
      env.fwd_off = seg_off(m, shared);
      env.fwd_len = m->seg_len[shared];
    }
    if ((st = post(t, workers[i], &env, m, i > 0 ? shared : -1))) return st;
  }
  return TEMPO_STATUS_OK;
}

/* Receives a matched message into t->rbuf, waiting at most max(timeout_s, 2 s) for its
 * bytes: a worker stopped in the middle of sending a large reply must not hang the master
 * (a blocking receive would wait for the rest forever). On timeout the pending receive is
 * abandoned together with its buffer (leaked on purpose: MPI may still write into it) and
 * false is returned. */
static bool recv_bounded(mpi_tr *t, MPI_Message *msg, int count, double timeout_s) {
  MPI_Request rq;
  if (MPI_Imrecv(t->rbuf, count, MPI_BYTE, msg, &rq) != MPI_SUCCESS) return false;
  const double deadline = tempo_now() + (timeout_s > 2.0 ? timeout_s : 2.0);
  for (;;) {
    int done = 0;
    if (MPI_Test(&rq, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS) return false;
    if (done) return true;
    if (tempo_now() >= deadline) {
      t->rbuf = NULL; /* owned by the abandoned request now */
      t->rcap = 0;
      return false;
    }
    struct timespec ts = {0, 100000};
    nanosleep(&ts, NULL);
  }
}

static tempo_status mt_recv(tempo_transport *tb, double timeout_s, tempo_in_msg *m, bool *got) {
  mpi_tr *t = (mpi_tr *)tb;
  *got = false;
  const double deadline = tempo_now() + (timeout_s > 0 ? timeout_s : 0);
  long nap = 0;
  for (;;) {
    progress(t);
    int flag = 0;
    MPI_Status s;
    MPI_Message msg;
    if (MPI_Improbe(MPI_ANY_SOURCE, TEMPO_MPI_TAG_REPLY, MPI_COMM_WORLD, &flag, &msg, &s) != MPI_SUCCESS) flag = 0;
    if (flag) {
      int count = 0;
      MPI_Get_count(&s, MPI_BYTE, &count);
      const int src = s.MPI_SOURCE;
      size_t need = count > 0 ? (size_t)count : 1;
      bool fits = need <= TEMPO_ENV_MAX_MSG;
      if (fits && need > t->rcap) {
        uint8_t *b = realloc(t->rbuf, need);
        if (b) t->rbuf = b, t->rcap = need;
        fits = b != NULL;
      }
      if (!fits) { /* consume it truncated; an empty message fails the decoder */
        uint8_t small[TEMPO_MSG_HEADER_SIZE];
        MPI_Mrecv(small, (int)sizeof small, MPI_BYTE, &msg, MPI_STATUS_IGNORE);
        count = 0;
      } else if (!recv_bounded(t, &msg, count, timeout_s)) {
        count = 0; /* a sender that stopped mid-message: reported as an empty (undecodable) reply */
      }
      if (src < 1 || src > tb->n_workers) continue; /* not a worker rank: ignore */
      m->worker = src - 1;
      m->data = t->rbuf;
      m->len = (size_t)count;
      m->token = NULL;
      *got = true;
      return TEMPO_STATUS_OK;
    }
    if (tempo_now() >= deadline) return TEMPO_STATUS_OK;
    if (nap < 1000000) nap = nap ? nap * 2 : 20000; /* 20 us .. 1 ms */
    struct timespec ts = {0, nap};
    nanosleep(&ts, NULL);
  }
}

static void mt_evict(tempo_transport *tb, int worker) {
  mpi_tr *t = (mpi_tr *)tb;
  g_lost = true; /* MPI_Finalize could wait for it forever */
  for (int i = 0; i < t->nslots; i++) {
    sendslot *s = t->slots[i];
    if (!s->used || s->rank != worker + 1) continue;
    MPI_Cancel(&s->req);
    MPI_Request_free(&s->req);
    MPI_Type_free(&s->type);
    s->used = false;
  }
}

static void mt_done(tempo_transport *tb, tempo_in_msg *m) { (void)tb, m->token = NULL; }

static void mt_free(tempo_transport *tb) {
  mpi_tr *t = (mpi_tr *)tb;
  if (!t) return;
  /* SHUTDOWN to every worker; wait at most 5 s for the sends (a dead worker never takes them) */
  tempo_envelope env;
  tempo_env_init(&env, TEMPO_ENV_SHUTDOWN);
  tempo_out_msg m = {.nseg = 0};
  for (int w = 0; w < tb->n_workers; w++) {
    sendslot *s;
    if (get_slot(t, &s)) break;
    tempo_env_write(&env, s->env);
    if (MPI_Isend(s->env, TEMPO_ENV_SIZE, MPI_BYTE, w + 1, TEMPO_MPI_TAG_REQ, MPI_COMM_WORLD, &s->req) == MPI_SUCCESS) {
      MPI_Type_contiguous(1, MPI_BYTE, &s->type); /* freed with the slot like the others */
      s->used = true;
      s->rank = w + 1;
    }
  }
  (void)m;
  const double t0 = tempo_now();
  bool pending = true;
  while (pending && tempo_now() - t0 < 5.0) {
    progress(t);
    pending = false;
    for (int i = 0; i < t->nslots; i++) pending = pending || t->slots[i]->used;
    if (pending) {
      struct timespec ts = {0, 200000};
      nanosleep(&ts, NULL);
    }
  }
  if (pending) g_lost = true;
  for (int i = 0; i < t->nslots; i++)
    if (!t->slots[i]->used) free(t->slots[i]); /* in-flight slots leak: MPI may still read them */
  free(t->slots);
  free(t->rbuf);
  free(t);
}

static const tempo_transport_ops mpi_ops = {mt_send, mt_recv, mt_done, mt_free, mt_send_group, mt_evict};

static int g_workers;

static tempo_status mpi_factory(int requested, tempo_transport **out) {
  (void)requested;
  *out = NULL;
  if (sodium_init() < 0) return tempo_set_error(TEMPO_STATUS_INTERNAL, "libsodium failed to start");
  mpi_tr *t = calloc(1, sizeof *t);
  if (!t) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "mpi: out of memory");
  t->base.ops = &mpi_ops;
  t->base.n_workers = g_workers;
  const char *to = getenv("TEMPO_WORKER_TIMEOUT");
  if (to && atof(to) > 0) t->base.timeout_s = atof(to);
  const char *r = getenv("TEMPO_MPI_RELAY");
  t->relay = !(r && !strcmp(r, "0"));
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
  g_workers = world - 1;
  *n_workers = g_workers;
  tempo_transport_set_factory(mpi_factory);
  return TEMPO_STATUS_OK;
}

void tempo_mpi_master_finalize(void) {
  if (!g_inited) return;
  g_inited = false;
  if (!g_lost) MPI_Finalize();
}
