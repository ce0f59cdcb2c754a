/* rogue_worker.h - a rogue worker written for the integrity tests and the verification
 * benchmark (not src/worker/fault.c's --fault modes): result and sum hooks (worker.h) that
 * corrupt a worker's own results the way an attacker who knows the check would, installed
 * on in-process workers (tempo_transport_inproc_set_hooks).
 *
 * Classes: Y' (a forward result), dX' and dW' (the tensors of a backward result; a chain
 * member's dW' is its partial of the reduced sum), SUM (the dW' sum a chain member formed).
 * Kinds: ELEMENT adds rel * (the largest |value| of the element's row) to one element
 * (rows of the stored layout: Y'/dX' rows of the split, dW' (n, p) or (p, n)); ZERO,
 * HALVE and NEGATE change the whole tensor (an all-zero tensor is left alone and not counted:
 * the last ViT block's token rows have zero gradients). Each rogue lets a random number (0..skip_max)
 * of eligible results pass between cheats (so cheats land on all layers), cheats at most
 * `per_worker` times (the engine evicts a worker at its third failure) and at most once per
 * request, cycling through the plan's kinds; honest otherwise. Counters are exact. */
#ifndef TEMPO_ROGUE_WORKER_H
#define TEMPO_ROGUE_WORKER_H

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "offload/transport.h"
#include "tempo/rng.h"

enum { ROGUE_Y = 0, ROGUE_DX = 1, ROGUE_DW = 2, ROGUE_SUM = 3, ROGUE_CLASSES = 4 };
enum { ROGUE_ELEMENT = 0, ROGUE_ZERO = 1, ROGUE_HALVE = 2, ROGUE_NEGATE = 3, ROGUE_KINDS = 4 };

static const char *const rogue_class_name[ROGUE_CLASSES] = {"Y'", "dX'", "dW'", "dW' sum"};
static const char *const rogue_kind_name[ROGUE_KINDS] = {"element", "zero", "halve", "negate"};

typedef struct {
  pthread_mutex_t lock;
  double rel;                           /* ELEMENT: the error relative to the row's largest |value| */
  int per_worker;                       /* cheats per rogue worker */
  int skip_max;                         /* eligible results let pass before a cheat: 0..skip_max */
  bool kinds[ROGUE_KINDS];              /* kinds in the plan (cycled) */
  bool classes[ROGUE_CLASSES];          /* classes in the plan */
  int next_kind;
  int done[ROGUE_CLASSES][ROGUE_KINDS]; /* cheats made */
  double min_rel_seen[ROGUE_CLASSES];   /* ELEMENT: the smallest error / |element| planted */
  tempo_rng rng;
} rogue_plan;

typedef struct {
  rogue_plan *plan;
  int cheats;           /* this worker's */
  int skip;             /* eligible results still to let pass */
  bool cheated;         /* in the request being handled */
  uint32_t n, p, flags; /* of its last backward result (the layout of the sum it forms) */
} rogue_worker;

static inline void rogue_plan_init(rogue_plan *pl, double rel, int per_worker, int skip_max, uint64_t seed) {
  memset(pl, 0, sizeof *pl);
  pthread_mutex_init(&pl->lock, NULL);
  pl->rel = rel, pl->per_worker = per_worker, pl->skip_max = skip_max;
  for (int k = 0; k < ROGUE_KINDS; k++) pl->kinds[k] = true;
  for (int c = 0; c < ROGUE_CLASSES; c++) pl->classes[c] = true, pl->min_rel_seen[c] = INFINITY;
  tempo_rng_seed(&pl->rng, seed, 0x726f677565ULL);
}

static inline int rogue_total(const rogue_plan *pl) {
  int t = 0;
  for (int c = 0; c < ROGUE_CLASSES; c++)
    for (int k = 0; k < ROGUE_KINDS; k++) t += pl->done[c][k];
  return t;
}

/* Under the lock: may this worker cheat on an eligible result of class c now? */
static inline bool rogue_may(rogue_plan *pl, rogue_worker *rw, int c) {
  if (!pl->classes[c] || rw->cheated || rw->cheats >= pl->per_worker) return false;
  if (rw->skip > 0) {
    rw->skip--;
    return false;
  }
  return true;
}

/* Under the lock: the next kind of the cycle, counted as done for class c. */
static inline int rogue_take(rogue_plan *pl, rogue_worker *rw, int c) {
  int k = pl->next_kind;
  for (int i = 0; i < ROGUE_KINDS && !pl->kinds[k]; i++) k = (k + 1) % ROGUE_KINDS;
  pl->next_kind = (k + 1) % ROGUE_KINDS;
  pl->done[c][k]++, rw->cheats++, rw->cheated = true;
  rw->skip = pl->skip_max ? (int)tempo_rng_below(&pl->rng, (uint64_t)pl->skip_max + 1) : 0;
  return k;
}

/* Applies kind k to t (rows, cols) (under the lock: it draws from the plan's stream). False,
 * and nothing changed, when t is all zeros (no cheat is possible; ELEMENT picks a nonzero row). */
static inline bool rogue_apply(rogue_plan *pl, int c, int k, float *t, size_t rows, size_t cols) {
  const size_t n = rows * cols;
  size_t nz = 0;
  for (size_t i = 0; i < n; i++) nz += t[i] != 0;
  if (!nz) return false;
  if (k == ROGUE_ZERO) memset(t, 0, n * sizeof(float));
  if (k == ROGUE_HALVE)
    for (size_t i = 0; i < n; i++) t[i] *= 0.5f;
  if (k == ROGUE_NEGATE)
    for (size_t i = 0; i < n; i++) t[i] = -t[i];
  if (k == ROGUE_ELEMENT) {
    size_t r, j = (size_t)tempo_rng_below(&pl->rng, cols);
    float mx;
    do { /* a row with a nonzero value (there is one) */
      r = (size_t)tempo_rng_below(&pl->rng, rows);
      mx = 0;
      for (size_t q = 0; q < cols; q++) mx = fmaxf(mx, fabsf(t[r * cols + q]));
    } while (mx == 0);
    const float d = (float)(pl->rel * mx);
    const double own = fabs((double)t[r * cols + j]);
    if (own > 0 && d / own < pl->min_rel_seen[c]) pl->min_rel_seen[c] = d / own;
    t[r * cols + j] += t[r * cols + j] < 0 ? -d : d; /* away from zero: no accidental sign games */
  }
  return true;
}

/* Under the lock: kind k on t for class c, counted only when it changed something. */
static inline void rogue_cheat(rogue_plan *pl, rogue_worker *rw, int c, int k, float *t, size_t rows, size_t cols) {
  if (rogue_apply(pl, c, k, t, rows, cols)) return;
  pl->done[c][k]--, rw->cheats--, rw->cheated = false;
  pl->next_kind = k; /* this kind again next time */
}

static inline tempo_status rogue_result(void *ctx, tempo_msg_header *rh, void *pay, size_t count, bool *send_reply) {
  (void)count, (void)send_reply;
  rogue_worker *rw = ctx;
  rogue_plan *pl = rw->plan;
  rw->cheated = false; /* a new request */
  if (tempo_msg_result_size(rh->dtype) != sizeof(float)) return TEMPO_STATUS_OK; /* float32 results (BF16 wire too) */
  tempo_msg_sizes z;
  tempo_msg_split_sizes(rh, &z);
  const size_t cnt = rh->batch == 1 ? 1 : rh->hi - rh->lo, rows = rh->batch == 1 ? rh->hi - rh->lo : rh->m;
  const bool wt = rh->flags & TEMPO_MSG_F_W_TRANS, dx = rh->flags & TEMPO_MSG_F_WANT_DX,
             dw = rh->flags & TEMPO_MSG_F_WANT_DW;
  float *f = pay;
  pthread_mutex_lock(&pl->lock);
  if (dx || dw) rw->n = rh->n, rw->p = rh->p, rw->flags = rh->flags;
  int c = -1;
  if (!dx && !dw) c = ROGUE_Y;
  else if (dx && dw) c = pl->classes[ROGUE_DX] && (!pl->classes[ROGUE_DW] || tempo_rng_below(&pl->rng, 2)) ? ROGUE_DX : ROGUE_DW;
  else c = dx ? ROGUE_DX : ROGUE_DW;
  if (rogue_may(pl, rw, c)) {
    const int k = rogue_take(pl, rw, c);
    const size_t i = (size_t)tempo_rng_below(&pl->rng, cnt); /* one instance of a batched result */
    if (c == ROGUE_Y) rogue_cheat(pl, rw, c, k, f + i * rows * rh->p, rows, rh->p);
    if (c == ROGUE_DX) rogue_cheat(pl, rw, c, k, f + i * rows * rh->n, rows, rh->n);
    if (c == ROGUE_DW)
      rogue_cheat(pl, rw, c, k, f + (dx ? z.dx : 0) + i * (size_t)rh->n * rh->p, wt ? rh->p : rh->n, wt ? rh->n : rh->p);
  }
  pthread_mutex_unlock(&pl->lock);
  return TEMPO_STATUS_OK;
}

static inline void rogue_sum(void *ctx, void *sum, size_t count, bool f64) {
  rogue_worker *rw = ctx;
  rogue_plan *pl = rw->plan;
  if (f64 || !rw->n || (size_t)rw->n * rw->p != count) return;
  pthread_mutex_lock(&pl->lock);
  if (rogue_may(pl, rw, ROGUE_SUM)) {
    const int k = rogue_take(pl, rw, ROGUE_SUM);
    const bool wt = rw->flags & TEMPO_MSG_F_W_TRANS;
    rogue_cheat(pl, rw, ROGUE_SUM, k, sum, wt ? rw->p : rw->n, wt ? rw->n : rw->p);
  }
  pthread_mutex_unlock(&pl->lock);
}

static inline void rogue_destroy(void *ctx) { free(ctx); }

/* Makes workers [first, n) of an in-process transport rogues of plan pl. */
static inline void rogue_install(tempo_transport *t, int first, rogue_plan *pl) {
  for (int w = first; w < t->n_workers; w++) {
    rogue_worker *rw = calloc(1, sizeof *rw);
    if (!rw) abort();
    rw->plan = pl;
    const tempo_worker_hooks h = {.ctx = rw, .result = rogue_result, .sum = rogue_sum, .destroy = rogue_destroy};
    tempo_transport_inproc_set_hooks(t, w, &h);
  }
}

/* tempo_mm_config.transport: n in-process workers, workers [1, n) rogues of the plan in ctx
 * (NULL: all honest). */
typedef struct {
  rogue_plan *plan;
  int first_rogue;
  bool reduce; /* the workers reduce dW' along chains, as MPI workers do */
} rogue_transport_ctx;

static inline tempo_status rogue_transport(void *ctx, int requested, tempo_transport **out) {
  rogue_transport_ctx *rc = ctx;
  tempo_status st = tempo_transport_inproc_create(requested, out);
  if (!st && rc && rc->reduce) (*out)->can_reduce = true;
  if (!st && rc && rc->plan) rogue_install(*out, rc->first_rogue, rc->plan);
  return st;
}

#endif
