/* transport_inproc.c - the in-process transport: N worker threads, each with its own
 * tempo_worker, fed by a request queue; replies come back on one shared queue. Request
 * payloads are passed by reference (the engine keeps them stable); replies are worker-
 * owned buffers recycled through a per-worker free list. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "offload/transport.h"
#include "tempo/common.h"

typedef struct node {
  struct node *next;
  tempo_out_msg req; /* request queues */
  tempo_msgbuf buf;  /* reply queue and free lists */
  int worker;
} node;

typedef struct {
  struct inproc *t;
  int index;
  pthread_t thread;
  bool started;
  tempo_worker *w;
  node *head, *tail; /* requests, under t->lock */
  node *free_replies; /* under t->lock */
  pthread_cond_t wake;
} wslot;

typedef struct inproc {
  tempo_transport base;
  pthread_mutex_t lock;
  pthread_cond_t reply_ready;
  node *rhead, *rtail; /* replies */
  bool stop;
  wslot *ws;
} inproc;

static void *worker_main(void *arg) {
  wslot *s = arg;
  inproc *t = s->t;
  for (;;) {
    pthread_mutex_lock(&t->lock);
    while (!s->head && !t->stop) pthread_cond_wait(&s->wake, &t->lock);
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
    if (r && tempo_worker_handle(s->w, &v, &r->buf, &send) != TEMPO_STATUS_OK) send = false;
    free(n);
    if (!r) continue; /* out of memory: behaves as a stall; the master times out */
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


static tempo_status ip_send(tempo_transport *tb, int worker, const tempo_out_msg *m) {
  inproc *t = (inproc *)tb;
  tb->wire_up += TEMPO_MSG_HEADER_SIZE;
  for (int i = 0; i < m->nseg; i++) tb->wire_up += m->seg_len[i];
  if (worker < 0 || worker >= tb->n_workers)
    return tempo_set_error(TEMPO_STATUS_INTERNAL, "transport: no worker %d", worker);
  node *n = malloc(sizeof *n);
  if (!n) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "transport: out of memory");
  n->req = *m;
  n->next = NULL;
  wslot *s = &t->ws[worker];
  pthread_mutex_lock(&t->lock);
  if (s->tail)
    s->tail->next = n;
  else
    s->head = n;
  s->tail = n;
  pthread_cond_signal(&s->wake);
  pthread_mutex_unlock(&t->lock);
  return TEMPO_STATUS_OK;
}

static tempo_status ip_recv(tempo_transport *tb, double timeout_s, tempo_in_msg *m, bool *got) {
  inproc *t = (inproc *)tb;
  *got = false;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  if (timeout_s < 0) timeout_s = 0;
  double secs = (double)ts.tv_sec + 1e-9 * ts.tv_nsec + timeout_s;
  ts.tv_sec = (time_t)secs;
  ts.tv_nsec = (long)((secs - (double)ts.tv_sec) * 1e9);
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

static void ip_free(tempo_transport *tb) {
  inproc *t = (inproc *)tb;
  if (!t) return;
  pthread_mutex_lock(&t->lock);
  t->stop = true;
  for (int i = 0; i < tb->n_workers; i++) pthread_cond_signal(&t->ws[i].wake);
  pthread_mutex_unlock(&t->lock);
  for (int i = 0; i < tb->n_workers; i++) {
    wslot *s = &t->ws[i];
    if (s->started) pthread_join(s->thread, NULL);
    free_list(s->head, false);
    free_list(s->free_replies, true);
    tempo_worker_free(s->w);
    pthread_cond_destroy(&s->wake);
  }
  free_list(t->rhead, true);
  pthread_cond_destroy(&t->reply_ready);
  pthread_mutex_destroy(&t->lock);
  free(t->ws);
  free(t);
}

static const tempo_transport_ops inproc_ops = {ip_send, ip_recv, ip_done, ip_free, NULL, NULL, NULL};

tempo_status tempo_transport_inproc_create(int n_workers, tempo_transport **out) {
  *out = NULL;
  if (n_workers < 1 || n_workers > 256)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "transport: 1..256 workers, not %d", n_workers);
  inproc *t = calloc(1, sizeof *t);
  wslot *ws = calloc((size_t)n_workers, sizeof *ws);
  if (!t || !ws) {
    free(t);
    free(ws);
    return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "transport: out of memory");
  }
  t->base.ops = &inproc_ops;
  t->base.n_workers = n_workers;
  t->ws = ws;
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
    st = tempo_worker_create(NULL, &ws[i].w);
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

void tempo_transport_inproc_set_fault(tempo_transport *tb, int worker, const tempo_worker_fault *f) {
  inproc *t = (inproc *)tb;
  pthread_mutex_lock(&t->lock);
  tempo_worker_set_fault(t->ws[worker].w, f);
  pthread_mutex_unlock(&t->lock);
}

uint64_t tempo_transport_inproc_faults(tempo_transport *tb, int worker) {
  inproc *t = (inproc *)tb;
  pthread_mutex_lock(&t->lock);
  uint64_t v = tempo_worker_faults_injected(t->ws[worker].w);
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
