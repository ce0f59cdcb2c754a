/* transport_inproc.c - the in-process transport: N worker threads, each with its own
 * tempo_worker, fed by a request queue; replies come back on one shared queue. Request
 * payloads are passed by reference (the engine keeps them stable); replies are worker-
 * owned buffers recycled through a per-worker free list.
 *
 * Groups and chains (transport.h) run as they do between worker processes, only by
 * reference: each worker has a mailbox for parcels from other workers. In a group (a
 * row-split forward) the first worker gets the shared W' segment, and each worker's thread
 * hands the reference to the next before computing; the later requests do not carry it. In
 * a reduction chain each member's thread computes, waits for its predecessor's partial sum,
 * adds its own (tempo_worker_handle_chain) and puts the sum in the successor's mailbox.
 * Every group or chain has a sequence number (send order); a worker takes its requests in
 * order, so it waits only on requests sent before its own and no wait can be circular. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "core/bytes.h"
#include "offload/transport.h"
#include "tempo/common.h"
#include "tempo/envelope.h"

enum { REQ_PLAIN = 0, REQ_GROUP, REQ_CHAIN };

typedef struct node {
  struct node *next;
  tempo_out_msg req; /* request queues */
  tempo_msgbuf buf;  /* reply queue and free lists */
  int worker;
  int kind;          /* REQ_*: requests */
  uint64_t seq;      /* the group or chain */
  int from, to;      /* predecessor and successor workers in it, -1 none */
  int shared;        /* group: the relayed segment (missing from the request when from >= 0) */
  uint8_t auth[TEMPO_RELAY_TAG_SIZE]; /* group, from >= 0: the relayed segment's authenticator for this worker */
} node;

/* What one worker hands another: a relayed segment or a partial dW' sum. */
typedef struct parcel {
  struct parcel *next;
  uint64_t seq;
  const uint8_t *ref; /* relay: the shared segment (NULL: the sender had none to give) */
  size_t ref_len;
  tempo_msgbuf part;  /* partial sum: part.len bytes (0: broken) */
} parcel;

typedef struct {
  struct inproc *t;
  int index;
  pthread_t thread;
  bool started;
  tempo_worker *w;
  node *head, *tail;  /* requests, under t->lock */
  node *free_replies; /* under t->lock */
  parcel *mail;       /* under t->lock */
  uint64_t seq_done;  /* the last group/chain this worker stopped waiting in; later parcels for it are dropped */
  uint64_t seq_lost;  /* the last group/chain whose parcel for this worker could not be made (out of memory) */
  bool paused, evicted;
  pthread_cond_t wake;
  uint8_t key[TEMPO_RELAY_KEY_SIZE]; /* relay key (random at create, wiped at free) */
} wslot;

typedef struct inproc {
  tempo_transport base;
  pthread_mutex_t lock;
  pthread_cond_t reply_ready;
  node *rhead, *rtail; /* replies */
  bool stop;
  wslot *ws;
  parcel *spare; /* recycled parcels (with their buffers) */
  int nspare;
  uint64_t next_seq;
  tempo_inproc_counts counts;
  uint8_t *precision; /* (n_workers) declared: each worker's backend's, or a test's */
} inproc;

/* ---- parcels between workers ---- */

static void parcel_free(parcel *p) {
  tempo_msgbuf_free(&p->part);
  free(p);
}

/* Under t->lock. */
static void parcel_recycle(inproc *t, parcel *p) {
  if (!p) return;
  if (t->nspare >= 2 * t->base.n_workers + 4) {
    parcel_free(p);
    return;
  }
  p->next = t->spare;
  t->spare = p;
  t->nspare++;
}

static parcel *parcel_take(inproc *t) {
  pthread_mutex_lock(&t->lock);
  parcel *p = t->spare;
  if (p) t->spare = p->next, t->nspare--;
  pthread_mutex_unlock(&t->lock);
  if (!p) p = calloc(1, sizeof *p);
  if (p) p->next = NULL, p->ref = NULL, p->ref_len = 0, p->part.len = 0;
  return p;
}

/* Puts p (taken over) in worker `to`'s mailbox, unless `to` stopped waiting in its group/chain;
 * p NULL (out of memory): tells `to` that no parcel of seq comes. */
static void parcel_deliver(inproc *t, int to, uint64_t seq, parcel *p) {
  pthread_mutex_lock(&t->lock);
  wslot *s = &t->ws[to];
  if (!p) { /* out of memory: the successor stops waiting at once, as for a parcel that is bad */
    if (seq > s->seq_lost) s->seq_lost = seq;
    pthread_cond_broadcast(&s->wake);
  } else if ((p->seq = seq) <= s->seq_done) {
    parcel_recycle(t, p);
  } else {
    p->next = s->mail;
    s->mail = p;
    pthread_cond_broadcast(&s->wake);
  }
  pthread_mutex_unlock(&t->lock);
}

static struct timespec deadline_in(double seconds) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  double secs = (double)ts.tv_sec + 1e-9 * ts.tv_nsec + (seconds > 0 ? seconds : 0);
  ts.tv_sec = (time_t)secs;
  ts.tv_nsec = (long)((secs - (double)ts.tv_sec) * 1e9);
  return ts;
}

/* Waits for worker `from`'s parcel of group/chain seq; NULL when it gives up first: `from`
 * evicted or out of memory for the parcel, another request queued for this worker (the engine
 * has given up on the round), the timeout, or stop. Older parcels found on the way are dropped. */
static parcel *parcel_await(inproc *t, wslot *s, uint64_t seq, int from) {
  const double timeout = t->base.timeout_s > 0 ? t->base.timeout_s : TEMPO_ENGINE_DEFAULT_TIMEOUT;
  const struct timespec until = deadline_in(timeout);
  parcel *got = NULL;
  bool timed_out = false;
  pthread_mutex_lock(&t->lock);
  for (;;) {
    for (parcel **pp = &s->mail; *pp;) {
      parcel *p = *pp;
      if (p->seq > seq) {
        pp = &p->next;
        continue;
      }
      *pp = p->next;
      if (p->seq == seq && !got) got = p;
      else parcel_recycle(t, p);
    }
    if (got || t->stop || s->head || t->ws[from].evicted || s->seq_lost >= seq || timed_out) break;
    timed_out = pthread_cond_timedwait(&s->wake, &t->lock, &until) == ETIMEDOUT;
  }
  s->seq_done = seq;
  pthread_mutex_unlock(&t->lock);
  return got;
}

/* ---- worker threads ---- */

typedef struct {
  inproc *t;
  wslot *s;
  const node *n;
  parcel *got; /* the predecessor's partial, recycled after the chain step */
} chain_ctx;

static void take_prev(void *ctx, size_t want, const uint8_t **data, size_t *len) {
  chain_ctx *c = ctx;
  (void)want;
  c->got = parcel_await(c->t, c->s, c->n->seq, c->n->from);
  *data = c->got && c->got->part.len ? c->got->part.data : NULL;
  *len = c->got ? c->got->part.len : 0;
}

/* A group request: takes the shared segment from the predecessor (when not first) and checks
 * it against the request's authenticator, hands it (or nothing, when it was bad) to the
 * successor before computing, then handles the request (a BAD_RELAY ERROR reply when the
 * segment was bad or never came). A relay hook (tests) that changes the bytes passes on a
 * changed copy in the parcel instead. */
static tempo_status handle_group(inproc *t, wslot *s, node *n, tempo_msg_view *v, tempo_msgbuf *reply, bool *send) {
  const uint8_t *ref = n->req.seg[n->shared];
  const size_t len = n->req.seg_len[n->shared];
  tempo_msg_header h;
  const uint64_t task = tempo_msg_header_read(n->req.header, TEMPO_MSG_HEADER_SIZE, &h) ? 0 : h.task_id;
  if (n->from >= 0) {
    parcel *p = parcel_await(t, s, n->seq, n->from);
    ref = p && p->ref && p->ref_len == len ? p->ref : NULL;
    /* a copy in the parcel is only ever a changed one (it dies with the parcel): never used */
    if (ref && (ref == p->part.data || !tempo_relay_check(s->key, n->auth, task, ref, len))) ref = NULL;
    pthread_mutex_lock(&t->lock);
    parcel_recycle(t, p);
    if (ref) t->counts.relays++;
    pthread_mutex_unlock(&t->lock);
  }
  if (n->to >= 0) {
    parcel *p = parcel_take(t);
    if (p) p->ref = ref, p->ref_len = len;
    const tempo_worker_hooks *hk = tempo_worker_get_hooks(s->w);
    if (p && ref && hk && hk->relay) { /* tests: the hook may change a copy */
      uint8_t *b = p->part.cap >= len ? p->part.data : realloc(p->part.data, len ? len : 1);
      if (b && b != p->part.data) p->part.data = b, p->part.cap = len;
      if (b) memcpy(b, ref, len);
      if (b && hk->relay(hk->ctx, b, len)) p->ref = b;
    }
    parcel_deliver(t, n->to, n->seq, p);
  }
  if (!ref) {
    *send = true;
    return tempo_msg_encode_error(reply, task, TEMPO_STATUS_BAD_RELAY,
                                  "worker: the relayed operand did not arrive or failed its authenticator");
  }
  v->seg[n->shared] = ref;
  return tempo_worker_handle(s->w, v, reply, send);
}

/* A chain request: the worker core's chain step, then the sum to the successor. */
static tempo_status handle_chain(inproc *t, wslot *s, node *n, tempo_msg_view *v, tempo_msgbuf *reply, bool *send) {
  chain_ctx c = {.t = t, .s = s, .n = n};
  parcel *out = n->to >= 0 ? parcel_take(t) : NULL;
  tempo_msgbuf none = {0};
  tempo_worker_chain ch = {.first = n->from < 0, .last = n->to < 0, .take_prev = take_prev, .ctx = &c,
                           .pass = out ? &out->part : &none};
  tempo_status st = tempo_worker_handle_chain(s->w, v, &ch, reply, send);
  tempo_msgbuf_free(&none); /* only without a parcel (out of memory) */
  pthread_mutex_lock(&t->lock);
  parcel_recycle(t, c.got);
  if (out && out->part.len) t->counts.partials++;
  pthread_mutex_unlock(&t->lock);
  if (n->to >= 0) parcel_deliver(t, n->to, n->seq, out);
  return st;
}

static void *worker_main(void *arg) {
  wslot *s = arg;
  inproc *t = s->t;
  for (;;) {
    pthread_mutex_lock(&t->lock);
    while ((!s->head || s->paused) && !t->stop) pthread_cond_wait(&s->wake, &t->lock);
    if (t->stop) {
      pthread_mutex_unlock(&t->lock);
      return NULL;
    }
    node *n = s->head;
    s->head = n->next;
    if (!s->head) s->tail = NULL;
    node *r = s->free_replies;
    if (r) s->free_replies = r->next;
    pthread_mutex_unlock(&t->lock);

    if (!r) r = calloc(1, sizeof *r);
    tempo_msg_view v = {.header = n->req.header, .nseg = n->req.nseg, .stable = true};
    for (int i = 0; i < n->req.nseg; i++) v.seg[i] = n->req.seg[i], v.seg_len[i] = n->req.seg_len[i];
    bool send = false;
    tempo_msgbuf lost = {0}; /* no reply node (out of memory): the group/chain still goes on */
    tempo_msgbuf *out = r ? &r->buf : &lost;
    tempo_status st;
    if (n->kind == REQ_GROUP) st = handle_group(t, s, n, &v, out, &send);
    else if (n->kind == REQ_CHAIN) st = handle_chain(t, s, n, &v, out, &send);
    else st = tempo_worker_handle(s->w, &v, out, &send);
    tempo_msgbuf_free(&lost);
    tempo_msg_header rq;
    /* a reply that could not be encoded (out of memory, not even its ERROR), or that is longer
     * than its request allows, goes up empty: a malformed reply the master fails at once, where
     * silence would stall it until its timeout; with no reply node, the request's node carries it */
    if (send && r && (st || (!tempo_msg_header_read(n->req.header, TEMPO_MSG_HEADER_SIZE, &rq) &&
                             r->buf.len > tempo_msg_reply_bound(&rq))))
      tempo_msgbuf_free(&r->buf);
    if (r) {
      free(n);
    } else {
      r = n;
      r->buf = (tempo_msgbuf){0};
    }
    r->worker = s->index;
    r->next = NULL;
    pthread_mutex_lock(&t->lock);
    if (send) {
      if (t->rtail)
        t->rtail->next = r;
      else
        t->rhead = r;
      t->rtail = r;
      pthread_cond_signal(&t->reply_ready);
    } else {
      r->next = s->free_replies;
      s->free_replies = r;
    }
    pthread_mutex_unlock(&t->lock);
  }
}


/* ---- the master's side ---- */

/* Under t->lock: appends n to worker w's queue. */
static void enqueue(inproc *t, int w, node *n) {
  wslot *s = &t->ws[w];
  n->next = NULL;
  if (s->tail)
    s->tail->next = n;
  else
    s->head = n;
  s->tail = n;
  pthread_cond_broadcast(&s->wake);
}

static tempo_status ip_send(tempo_transport *tb, int worker, const tempo_out_msg *m) {
  inproc *t = (inproc *)tb;
  tb->wire_up += TEMPO_MSG_HEADER_SIZE;
  for (int i = 0; i < m->nseg; i++) tb->wire_up += m->seg_len[i];
  if (worker < 0 || worker >= tb->n_workers)
    return tempo_set_error(TEMPO_STATUS_INTERNAL, "transport: no worker %d", worker);
  node *n = calloc(1, sizeof *n);
  if (!n) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "transport: out of memory");
  n->req = *m;
  n->kind = REQ_PLAIN;
  pthread_mutex_lock(&t->lock);
  enqueue(t, worker, n);
  pthread_mutex_unlock(&t->lock);
  return TEMPO_STATUS_OK;
}

/* Checks that the n workers exist and are distinct. */
static tempo_status check_members(const tempo_transport *tb, int n, const int *workers) {
  if (n < 1) return tempo_set_error(TEMPO_STATUS_INTERNAL, "transport: an empty group");
  for (int i = 0; i < n; i++) {
    if (workers[i] < 0 || workers[i] >= tb->n_workers)
      return tempo_set_error(TEMPO_STATUS_INTERNAL, "transport: no worker %d", workers[i]);
    for (int k = 0; k < i; k++)
      if (workers[k] == workers[i])
        return tempo_set_error(TEMPO_STATUS_INTERNAL, "transport: worker %d twice in a group", workers[i]);
  }
  return TEMPO_STATUS_OK;
}

/* Queues n requests of one group or chain (all or none), member i -> workers[i]. */
static tempo_status send_members(inproc *t, int kind, int n, const int *workers, const tempo_out_msg *msgs,
                                 int shared) {
  node **nodes = calloc((size_t)n, sizeof *nodes);
  bool ok = nodes != NULL;
  for (int i = 0; ok && i < n; i++) ok = (nodes[i] = calloc(1, sizeof *nodes[i])) != NULL;
  if (!ok) {
    for (int i = 0; nodes && i < n; i++) free(nodes[i]);
    free(nodes);
    return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "transport: out of memory");
  }
  uint8_t digest[32]; /* a group's shared segment: hashed once, then one MAC per receiver */
  if (kind == REQ_GROUP) tempo_relay_digest(msgs[0].seg[shared], msgs[0].seg_len[shared], digest);
  pthread_mutex_lock(&t->lock);
  const uint64_t seq = ++t->next_seq;
  for (int i = 0; i < n; i++) {
    node *d = nodes[i];
    d->req = msgs[i];
    d->kind = kind, d->seq = seq, d->shared = shared;
    if (kind == REQ_GROUP && i > 0)
      tempo_relay_tag(t->ws[workers[i]].key, digest, tempo_le_get64(msgs[i].header + 8), msgs[i].seg_len[shared],
                      d->auth);
    d->from = i > 0 ? workers[i - 1] : -1;
    d->to = i + 1 < n ? workers[i + 1] : -1;
    t->base.wire_up += TEMPO_MSG_HEADER_SIZE;
    for (int k = 0; k < d->req.nseg; k++)
      if (kind != REQ_GROUP || k != shared || i == 0) t->base.wire_up += d->req.seg_len[k];
    if (kind == REQ_GROUP && i > 0) d->req.seg[shared] = NULL; /* it comes from the predecessor */
    enqueue(t, workers[i], d);
  }
  if (kind == REQ_GROUP) t->counts.groups++;
  else t->counts.chains++;
  pthread_mutex_unlock(&t->lock);
  free(nodes);
  return TEMPO_STATUS_OK;
}

static tempo_status ip_send_group(tempo_transport *tb, int n, const int *workers, const tempo_out_msg *msgs,
                                  int shared) {
  tempo_status st = check_members(tb, n, workers);
  if (st) return st;
  /* the contract: segment `shared` is the same bytes at the same address in every message */
  bool same = n > 1;
  for (int i = 0; same && i < n; i++)
    same = shared >= 0 && shared < msgs[i].nseg && msgs[i].seg[shared] == msgs[0].seg[shared] &&
           msgs[i].seg_len[shared] == msgs[0].seg_len[shared];
  if (!same) {
    for (int i = 0; i < n; i++)
      if ((st = ip_send(tb, workers[i], &msgs[i]))) return st;
    return TEMPO_STATUS_OK;
  }
  return send_members((inproc *)tb, REQ_GROUP, n, workers, msgs, shared);
}

static tempo_status ip_send_reduce(tempo_transport *tb, int n, const int *workers, const tempo_out_msg *msgs) {
  tempo_status st = check_members(tb, n, workers);
  return st ? st : send_members((inproc *)tb, REQ_CHAIN, n, workers, msgs, -1);
}

static void ip_evict(tempo_transport *tb, int worker) {
  inproc *t = (inproc *)tb;
  if (worker < 0 || worker >= tb->n_workers) return;
  pthread_mutex_lock(&t->lock);
  t->ws[worker].evicted = true; /* its requests still run; its successors stop waiting for it */
  for (int i = 0; i < tb->n_workers; i++) pthread_cond_broadcast(&t->ws[i].wake);
  pthread_mutex_unlock(&t->lock);
}

static tempo_status ip_recv(tempo_transport *tb, double timeout_s, tempo_in_msg *m, bool *got) {
  inproc *t = (inproc *)tb;
  *got = false;
  const struct timespec ts = deadline_in(timeout_s);
  pthread_mutex_lock(&t->lock);
  while (!t->rhead) {
    if (pthread_cond_timedwait(&t->reply_ready, &t->lock, &ts) != 0 && !t->rhead) break;
  }
  node *r = t->rhead;
  if (r) {
    t->rhead = r->next;
    if (!t->rhead) t->rtail = NULL;
  }
  pthread_mutex_unlock(&t->lock);
  if (!r) return TEMPO_STATUS_OK;
  m->worker = r->worker;
  m->data = r->buf.data;
  m->len = r->buf.len;
  m->lost = false;
  m->token = r;
  *got = true;
  return TEMPO_STATUS_OK;
}

static void ip_done(tempo_transport *tb, tempo_in_msg *m) {
  inproc *t = (inproc *)tb;
  node *r = m->token;
  if (!r) return;
  pthread_mutex_lock(&t->lock);
  wslot *s = &t->ws[r->worker];
  r->next = s->free_replies;
  s->free_replies = r;
  pthread_mutex_unlock(&t->lock);
  m->token = NULL;
}

static void free_list(node *n, bool bufs) {
  while (n) {
    node *next = n->next;
    if (bufs) tempo_msgbuf_free(&n->buf);
    free(n);
    n = next;
  }
}

static void free_parcels(parcel *p) {
  while (p) {
    parcel *next = p->next;
    parcel_free(p);
    p = next;
  }
}

static void ip_free(tempo_transport *tb) {
  inproc *t = (inproc *)tb;
  if (!t) return;
  pthread_mutex_lock(&t->lock);
  t->stop = true; /* ends every wait: for requests (paused or not), relays and partials */
  for (int i = 0; i < tb->n_workers; i++) pthread_cond_broadcast(&t->ws[i].wake);
  pthread_mutex_unlock(&t->lock);
  for (int i = 0; i < tb->n_workers; i++)
    if (t->ws[i].started) pthread_join(t->ws[i].thread, NULL);
  for (int i = 0; i < tb->n_workers; i++) {
    wslot *s = &t->ws[i];
    free_list(s->head, false);
    free_list(s->free_replies, true);
    free_parcels(s->mail);
    tempo_worker_free(s->w);
    sodium_memzero(s->key, sizeof s->key);
    pthread_cond_destroy(&s->wake);
  }
  free_list(t->rhead, true);
  free_parcels(t->spare);
  pthread_cond_destroy(&t->reply_ready);
  pthread_mutex_destroy(&t->lock);
  free(t->ws);
  free(t->precision);
  free(t);
}

static const tempo_transport_ops inproc_ops = {ip_send, ip_recv,  ip_done,       ip_free,
                                               ip_send_group, ip_evict, ip_send_reduce};

tempo_status tempo_transport_inproc_create(int n_workers, tempo_transport **out) {
  *out = NULL;
  if (n_workers < 1 || n_workers > 256)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "transport: 1..256 workers, not %d", n_workers);
  if (sodium_init() < 0) return tempo_set_error(TEMPO_STATUS_INTERNAL, "transport: libsodium failed to start");
  inproc *t = calloc(1, sizeof *t);
  wslot *ws = calloc((size_t)n_workers, sizeof *ws);
  uint8_t *prec = calloc((size_t)n_workers, 1);
  if (!t || !ws || !prec) {
    free(t);
    free(ws);
    free(prec);
    return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "transport: out of memory");
  }
  t->base.ops = &inproc_ops;
  t->base.n_workers = n_workers;
  /* In-process the chain saves no wire bytes (partials arrive by reference) and the threads
   * share the master's cores, so the master sums by default; TEMPO_INPROC_REDUCE=1 (or a
   * test setting can_reduce) runs the chain as MPI workers do. */
  const char *red = getenv("TEMPO_INPROC_REDUCE");
  t->base.can_reduce = red && !strcmp(red, "1");
  t->base.relays = true;
  t->ws = ws;
  t->precision = prec;
  t->base.precision = prec;
  pthread_mutex_init(&t->lock, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&t->reply_ready, &ca);
  for (int i = 0; i < n_workers; i++) pthread_cond_init(&ws[i].wake, &ca);
  pthread_condattr_destroy(&ca);
  tempo_status st = TEMPO_STATUS_OK;
  for (int i = 0; i < n_workers && !st; i++) {
    ws[i].t = t;
    ws[i].index = i;
    randombytes_buf(ws[i].key, sizeof ws[i].key);
    st = tempo_worker_create(NULL, &ws[i].w);
    if (!st) prec[i] = (uint8_t)tempo_worker_precision(ws[i].w);
    if (!st && pthread_create(&ws[i].thread, NULL, worker_main, &ws[i]) != 0)
      st = tempo_set_error(TEMPO_STATUS_NO_MEMORY, "transport: cannot start worker thread %d", i);
    if (!st) ws[i].started = true;
  }
  if (st) {
    ip_free(&t->base);
    return st;
  }
  *out = &t->base;
  return TEMPO_STATUS_OK;
}

/* ---- test hooks ---- */

void tempo_transport_inproc_set_fault(tempo_transport *tb, int worker, const tempo_worker_fault *f) {
  inproc *t = (inproc *)tb;
  pthread_mutex_lock(&t->lock);
  tempo_worker_set_fault(t->ws[worker].w, f);
  pthread_mutex_unlock(&t->lock);
}

void tempo_transport_inproc_set_precision(tempo_transport *tb, int worker, int precision) {
  inproc *t = (inproc *)tb;
  t->precision[worker] = (uint8_t)precision;
}

void tempo_transport_inproc_set_hooks(tempo_transport *tb, int worker, const tempo_worker_hooks *h) {
  inproc *t = (inproc *)tb;
  pthread_mutex_lock(&t->lock);
  tempo_worker_set_hooks(t->ws[worker].w, h);
  pthread_mutex_unlock(&t->lock);
}

void tempo_transport_inproc_set_bad_sum(tempo_transport *tb, int worker, long from) {
  inproc *t = (inproc *)tb;
  pthread_mutex_lock(&t->lock);
  tempo_worker_set_bad_sum(t->ws[worker].w, from);
  pthread_mutex_unlock(&t->lock);
}

uint64_t tempo_transport_inproc_faults(tempo_transport *tb, int worker) {
  inproc *t = (inproc *)tb;
  pthread_mutex_lock(&t->lock);
  uint64_t v = tempo_worker_faults_injected(t->ws[worker].w);
  pthread_mutex_unlock(&t->lock);
  return v;
}

bool tempo_transport_inproc_evicted(tempo_transport *tb, int worker) {
  inproc *t = (inproc *)tb;
  pthread_mutex_lock(&t->lock);
  bool v = t->ws[worker].evicted;
  pthread_mutex_unlock(&t->lock);
  return v;
}

size_t tempo_transport_inproc_handles(tempo_transport *tb, int worker) {
  inproc *t = (inproc *)tb;
  pthread_mutex_lock(&t->lock);
  size_t v = tempo_worker_handle_count(t->ws[worker].w);
  pthread_mutex_unlock(&t->lock);
  return v;
}

void tempo_transport_inproc_pause(tempo_transport *tb, int worker, bool paused) {
  inproc *t = (inproc *)tb;
  if (worker < 0 || worker >= tb->n_workers) return;
  pthread_mutex_lock(&t->lock);
  t->ws[worker].paused = paused;
  pthread_cond_broadcast(&t->ws[worker].wake);
  pthread_mutex_unlock(&t->lock);
}

void tempo_transport_inproc_counts(tempo_transport *tb, tempo_inproc_counts *c) {
  inproc *t = (inproc *)tb;
  pthread_mutex_lock(&t->lock);
  *c = t->counts;
  pthread_mutex_unlock(&t->lock);
}
