/* engine.c - the offload engine (engine.h): sites, keys, blinding, splitting, the
 * request/reply rounds with verification, recomputation and eviction, and step end.
 *
 * Dimension letters as in matmul.h: X (m, n), W (n, p), Y (m, p), `batch` instances.
 * A product is split into blocks: row ranges of X' when batch == 1, instance ranges
 * otherwise (protocol.h). Every block is one task; a round sends the tasks of one product
 * and collects, verifies and consumes their results. */
#include "offload/engine.h"

#include <cblas.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tempo/audit.h"
#include "tempo/common.h"
#include "tempo/obf.h"

#define MAX_BLOCKS 256
#define ABANDONED 8

typedef struct {
  uint32_t lo, hi; /* rows (batch 1) or instances */
  int holder;      /* worker that keeps X'/W' of this block (-1: none) */
  uint64_t hx, hw; /* operand handles */
} block;

typedef struct {
  bool used;
  tempo_mm_shape shape;
  int nkeys;
  tempo_obf_key *keys; /* (batch) */
  float *xp, *wp;      /* X' (batch, m, n), W' (batch, n, p) or (batch, p, n) */
  float *yp, *dys;     /* Y' (m, p) when batch == 1; dY* (batch, m, p) */
  float *dxp, *dwp;    /* dX' (m, n) when batch == 1; dW' partials (nblocks, n, p) when batch == 1 */
  size_t cap_x, cap_w, cap_y, cap_dy, cap_dx, cap_dw;
  int nblocks;
  block blocks[MAX_BLOCKS];
  bool fwd_valid; /* a training forward of this step awaits its backward */
} site;

typedef struct {
  int block;
  uint64_t task_id;
  int worker;
  double sent_at;
  bool pending;
} task;

/* What one round computes, for building messages and consuming results. */
typedef struct {
  site *s;
  int op; /* TEMPO_OP_FORWARD or TEMPO_OP_BACKWARD */
  bool keep, want_dx, want_dw;
  unsigned accum;
  float *Y, *dX, *dW; /* caller outputs (batch > 1 results are decrypted per block) */
  const float *X, *W, *dY; /* caller inputs (blinded per block when blind_blocks) */
  task *tasks;
  int ntasks;
  double consume_time; /* verify/decrypt/copy time spent inside the round */
  bool blind_blocks;   /* batch > 1: blind each block just before its first send (overlap) */
  bool counting_naive; /* first sends add to naive_bytes_up */
} round_ctx;

struct tempo_engine {
  tempo_mm_config cfg;
  tempo_transport *tr;
  tempo_keygen *kg;
  tempo_audit_writer *audit;
  int nw, n_live, rr;
  bool *live, *holds;
  int *fails;
  uint64_t *abandoned; /* (nw, ABANDONED) ring of timed-out task ids */
  int *ab_next;
  double timeout;
  bool no_relay; /* set by the first timeout: a silent worker must not hold up others' W' */
  uint64_t next_task, next_handle;
  site *sites;
  int n_sites;
  float *vwork;
  size_t cap_vwork;
  tempo_mm_stats st; /* since the last take_stats */
};

static tempo_status grow(float **buf, size_t *cap, size_t count) {
  if (*cap >= count && *buf) return TEMPO_STATUS_OK;
  tempo_free_floats(*buf);
  *buf = tempo_alloc_floats(count);
  *cap = *buf ? count : 0;
  if (!*buf) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "engine: out of memory for %zu floats", count);
  return TEMPO_STATUS_OK;
}

tempo_status tempo_engine_create(const tempo_mm_config *cfg, tempo_engine **out) {
  *out = NULL;
  tempo_status st = TEMPO_STATUS_OK;
  if (sodium_init() < 0) return tempo_set_error(TEMPO_STATUS_INTERNAL, "engine: libsodium failed to start");
  tempo_engine *e = calloc(1, sizeof *e);
  if (!e) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "engine: out of memory");
  e->cfg = *cfg;
  e->cfg.audit_dir = NULL;
  e->timeout = TEMPO_ENGINE_DEFAULT_TIMEOUT;
  /* the master mostly waits; each worker thread runs single-threaded BLAS */
  openblas_set_num_threads(1);
  tempo_transport_factory make = tempo_transport_get_factory();
  if ((st = make ? make(cfg->workers, &e->tr) : tempo_transport_inproc_create(cfg->workers, &e->tr))) goto fail;
  if (e->tr->timeout_s > 0) e->timeout = e->tr->timeout_s;
  e->nw = e->n_live = e->tr->n_workers;
  e->live = calloc((size_t)e->nw, sizeof *e->live);
  e->holds = calloc((size_t)e->nw, sizeof *e->holds);
  e->fails = calloc((size_t)e->nw, sizeof *e->fails);
  e->ab_next = calloc((size_t)e->nw, sizeof *e->ab_next);
  e->abandoned = calloc((size_t)e->nw * ABANDONED, sizeof *e->abandoned);
  if (!e->live || !e->holds || !e->fails || !e->ab_next || !e->abandoned) {
    st = tempo_set_error(TEMPO_STATUS_NO_MEMORY, "engine: out of memory");
    goto fail;
  }
  for (int i = 0; i < e->nw; i++) e->live[i] = true;
  tempo_keyspace ks;
  tempo_keyspace_default(&ks);
  uint8_t secret[32];
  if (cfg->seed) {
    uint8_t sb[8];
    for (int i = 0; i < 8; i++) sb[i] = (uint8_t)(cfg->seed >> (8 * i));
    crypto_generichash(secret, sizeof secret, sb, sizeof sb, (const uint8_t *)"tempo-engine-keys", 17);
  }
  st = tempo_keygen_create(cfg->seed ? secret : NULL, &ks, &e->kg);
  sodium_memzero(secret, sizeof secret);
  if (st) goto fail;
  if (cfg->audit_dir && (st = tempo_audit_writer_open(cfg->audit_dir, &e->audit))) goto fail;
  *out = e;
  return TEMPO_STATUS_OK;
fail:
  tempo_engine_free(e);
  return st;
}

static void site_free(site *s) {
  for (int i = 0; i < s->nkeys; i++) tempo_obf_key_free(&s->keys[i]);
  free(s->keys);
  tempo_free_floats(s->xp);
  tempo_free_floats(s->wp);
  tempo_free_floats(s->yp);
  tempo_free_floats(s->dys);
  tempo_free_floats(s->dxp);
  tempo_free_floats(s->dwp);
  memset(s, 0, sizeof *s);
}

void tempo_engine_free(tempo_engine *e) {
  if (!e) return;
  if (e->tr) e->tr->ops->free(e->tr); /* joins the workers before their operands go */
  for (int i = 0; i < e->n_sites; i++) site_free(&e->sites[i]);
  free(e->sites);
  tempo_keygen_free(e->kg);
  if (tempo_audit_writer_close(e->audit)) fprintf(stderr, "tempo: %s\n", tempo_errmsg());
  tempo_free_floats(e->vwork);
  free(e->live);
  free(e->holds);
  free(e->fails);
  free(e->ab_next);
  free(e->abandoned);
  free(e);
}

void tempo_engine_set_timeout(tempo_engine *e, double seconds) { e->timeout = seconds > 0 ? seconds : 1e-3; }
int tempo_engine_live_workers(const tempo_engine *e) { return e->n_live; }
tempo_transport *tempo_engine_transport(tempo_engine *e) { return e->tr; }

void tempo_engine_take_stats(tempo_engine *e, tempo_mm_stats *run, tempo_mm_stats *step) {
  tempo_mm_stats *dst[2] = {run, step};
  for (int i = 0; i < 2; i++) {
    tempo_mm_stats *d = dst[i];
    d->products += e->st.products;
    d->encryptions += e->st.encryptions;
    d->decryptions += e->st.decryptions;
    d->naive_encryptions += e->st.naive_encryptions;
    d->bytes_up += e->st.bytes_up;
    d->bytes_down += e->st.bytes_down;
    d->naive_bytes_up += e->st.naive_bytes_up;
    d->verify_failures += e->st.verify_failures;
    d->recomputed += e->st.recomputed;
    d->evictions += e->st.evictions;
    d->worker_errors += e->st.worker_errors;
    d->timeouts += e->st.timeouts;
    d->t_blind += e->st.t_blind;
    d->t_transfer += e->st.t_transfer;
    d->t_compute += e->st.t_compute;
    d->t_verify += e->st.t_verify;
    d->t_unblind += e->st.t_unblind;
  }
  memset(&e->st, 0, sizeof e->st);
}

/* ---- workers: failures, eviction, choice ---- */

static const char *const why_text[] = {"failed verification", "timed out", "sent an error reply",
                                       "sent a malformed reply", "sent a reply for another task"};
enum { WHY_VERIFY, WHY_TIMEOUT, WHY_ERROR, WHY_MALFORMED, WHY_OTHER_TASK };

static void worker_failed(tempo_engine *e, int w, int why) {
  if (why == WHY_VERIFY) e->st.verify_failures++;
  else if (why == WHY_TIMEOUT) e->st.timeouts++, e->no_relay = true;
  else e->st.worker_errors++;
  e->fails[w]++;
  if (e->live[w] && e->fails[w] >= TEMPO_ENGINE_MAX_FAILURES) {
    e->live[w] = false;
    e->n_live--;
    e->st.evictions++;
    e->tr->evicted++;
    if (e->tr->ops->evict) e->tr->ops->evict(e->tr, w);
    fprintf(stderr, "tempo: evicting worker %d: %s %d times\n", w, why_text[why], e->fails[w]);
  }
}

static bool was_abandoned(const tempo_engine *e, int w, uint64_t id) {
  if (id == 0) return false; /* task ids start at 1; the ring starts zeroed */
  for (int i = 0; i < ABANDONED; i++)
    if (e->abandoned[(size_t)w * ABANDONED + i] == id) return true;
  return false;
}

/* A live worker other than `avoid`, preferring one without a pending task of this
 * round; `avoid` itself only when it is the last one alive; -1 when none is left. */
static int pick_worker(tempo_engine *e, const round_ctx *c, int avoid) {
  int busy = -1;
  for (int k = 0; k < e->nw; k++) {
    int w = (e->rr + k) % e->nw;
    if (!e->live[w] || w == avoid) continue;
    bool idle = true;
    for (int i = 0; c && i < c->ntasks; i++) idle = idle && !(c->tasks[i].pending && c->tasks[i].worker == w);
    if (idle) return w;
    if (busy < 0) busy = w;
  }
  if (busy >= 0) return busy;
  return avoid >= 0 && e->live[avoid] ? avoid : -1;
}

/* ---- messages ---- */

static size_t blk_off(const tempo_mm_shape *sh, const block *b, size_t row_elems) {
  /* offset of a block's first row (batch 1) or instance (batch > 1), in floats */
  return sh->batch == 1 ? (size_t)b->lo * row_elems : (size_t)b->lo * (size_t)sh->m * row_elems;
}

/* Checks, audits and counts a request; fills *m (segments by reference). */
static tempo_status prepare_msg(tempo_engine *e, int w, tempo_msg_header *h, int nseg, const float *const *seg,
                                const size_t *count, round_ctx *c, tempo_out_msg *m) {
  m->nseg = nseg;
  uint64_t total = 0;
  for (int i = 0; i < nseg; i++) {
    m->seg[i] = (const uint8_t *)seg[i];
    m->seg_len[i] = count[i] * sizeof(float);
    total += m->seg_len[i];
  }
  h->payload_len = total;
  if (tempo_msg_header_check(h))
    return tempo_set_error(TEMPO_STATUS_INTERNAL, "engine: built a bad request: %s", tempo_errmsg());
  tempo_msg_header_write(h, m->header);
  tempo_status st;
  if (e->audit && (st = tempo_audit_write(e->audit, TEMPO_AUDIT_UP, w, m->header, nseg, m->seg, m->seg_len)))
    return st;
  e->st.bytes_up += TEMPO_MSG_HEADER_SIZE + total;
  if (c && c->counting_naive) e->st.naive_bytes_up += TEMPO_MSG_HEADER_SIZE + total;
  return TEMPO_STATUS_OK;
}

static tempo_status send_msg(tempo_engine *e, int w, tempo_msg_header *h, int nseg, const float *const *seg,
                             const size_t *count, round_ctx *c) {
  tempo_out_msg m;
  tempo_status st = prepare_msg(e, w, h, nseg, seg, count, c, &m);
  return st ? st : e->tr->ops->send(e->tr, w, &m);
}

/* Builds task t of round c for worker w into *out (not sent). */
static tempo_status build_task(tempo_engine *e, round_ctx *c, task *t, int w, tempo_out_msg *out) {
  site *s = c->s;
  const tempo_mm_shape *sh = &s->shape;
  block *b = &s->blocks[t->block];
  tempo_msg_header h;
  tempo_msg_header_init(&h, (tempo_msg_op)c->op);
  h.task_id = t->task_id = ++e->next_task;
  h.handle_x = b->hx;
  h.handle_w = b->hw;
  h.batch = (uint32_t)sh->batch, h.m = (uint32_t)sh->m, h.n = (uint32_t)sh->n, h.p = (uint32_t)sh->p;
  h.lo = b->lo, h.hi = b->hi;
  h.flags = sh->w_trans ? TEMPO_MSG_F_W_TRANS : 0;
  tempo_msg_sizes z;
  tempo_msg_split_sizes(&h, &z);
  const float *xb = s->xp + blk_off(sh, b, (size_t)sh->n);
  const float *wb = s->wp + (sh->batch == 1 ? 0 : (size_t)b->lo * sh->n * sh->p);
  const float *seg[3];
  size_t cnt[3];
  int nseg = 0;
  if (c->op == TEMPO_OP_FORWARD) {
    h.flags |= TEMPO_MSG_F_X_INLINE | TEMPO_MSG_F_W_INLINE | (c->keep ? TEMPO_MSG_F_KEEP : 0);
    seg[0] = xb, cnt[0] = z.x, seg[1] = wb, cnt[1] = z.w, nseg = 2;
    if (c->keep) e->holds[w] = true;
  } else {
    h.flags |= (c->want_dx ? TEMPO_MSG_F_WANT_DX : 0) | (c->want_dw ? TEMPO_MSG_F_WANT_DW : 0);
    seg[nseg] = s->dys + blk_off(sh, b, (size_t)sh->p), cnt[nseg++] = z.dy;
    const bool has = b->holder == w;
    if (c->want_dw && !has) h.flags |= TEMPO_MSG_F_X_INLINE, seg[nseg] = xb, cnt[nseg++] = z.x;
    if (c->want_dx && !has) h.flags |= TEMPO_MSG_F_W_INLINE, seg[nseg] = wb, cnt[nseg++] = z.w;
  }
  t->worker = w;
  t->pending = true;
  t->sent_at = tempo_now();
  return prepare_msg(e, w, &h, nseg, seg, cnt, c, out);
}

/* Builds and sends task t of round c to worker w. */
static tempo_status send_task(tempo_engine *e, round_ctx *c, task *t, int w) {
  tempo_out_msg m;
  tempo_status st = build_task(e, c, t, w, &m);
  return st ? st : e->tr->ops->send(e->tr, w, &m);
}

/* ---- results ---- */

static tempo_status ensure_vwork(tempo_engine *e, const tempo_mm_shape *sh) {
  size_t need = 3 * ((size_t)sh->m + sh->n + sh->p) + 64;
  return grow(&e->vwork, &e->cap_vwork, need);
}

/* Freivalds' check of a blinded result C = op(A) op(B). cw weighs the check vector by the
 * inverse key scale of each result column (NULL for identity keys), so a column blinded
 * with a small coefficient is checked as sensitively as on the plaintext (obf.h). */
static bool check(tempo_engine *e, int r, int k, int cc, const float *A, bool at, const float *B, bool bt,
                  const float *C, const float *cw) {
  if (e->cfg.verify_rounds == 0) return true;
  uint64_t seed;
  tempo_keygen_bytes(e->kg, &seed, sizeof seed);
  return tempo_verify_product_weighted(r, k, cc, A, at, B, bt, C, cw, e->cfg.verify_rounds, seed, e->vwork) ==
         TEMPO_STATUS_OK;
}

/* Verifies the result of task t (header already matched) and writes it out. False when
 * it fails verification. */
static bool consume(tempo_engine *e, round_ctx *c, task *t, const tempo_msg_header *h, const float *pay) {
  site *s = c->s;
  const tempo_mm_shape *sh = &s->shape;
  const block *b = &s->blocks[t->block];
  const bool wt = sh->w_trans;
  const int cnt = sh->batch == 1 ? 1 : (int)(b->hi - b->lo);
  const int rows = sh->batch == 1 ? (int)(b->hi - b->lo) : sh->m;
  const int n = sh->n, p = sh->p;
  const size_t xs = (size_t)rows * n, ws = (size_t)n * p, ys = (size_t)rows * p;
  const float *xb = s->xp + blk_off(sh, b, (size_t)n);
  const float *wb = s->wp + (sh->batch == 1 ? 0 : (size_t)b->lo * ws);
  const float *dyb = s->dys + blk_off(sh, b, (size_t)p);
  double t0 = tempo_now();
  bool ok = true;
  const float *dxr = pay, *dwr = pay + (c->want_dx ? (size_t)cnt * xs : 0);
  for (int i = 0; i < cnt && ok; i++) {
    const tempo_obf_key *k = &s->keys[sh->batch == 1 ? 0 : (int)b->lo + i];
    const bool id = k->identity;
    if (c->op == TEMPO_OP_FORWARD) {
      ok = check(e, rows, n, p, xb + i * xs, false, wb + i * ws, wt, pay + i * ys, id ? NULL : k->dp.rcoef_p);
    } else {
      if (c->want_dx) /* dX' (rows, n) = dY* (rows, p) . W'^T */
        ok = check(e, rows, p, n, dyb + i * ys, false, wb + i * ws, !wt, dxr + i * xs, id ? NULL : k->dn.coef_p);
      if (ok && c->want_dw) {
        if (wt) /* dW' (p, n) = dY*^T . X' */
          ok = check(e, p, rows, n, dyb + i * ys, true, xb + i * xs, false, dwr + i * ws,
                     id ? NULL : k->dn.rcoef_p);
        else /* dW' (n, p) = X'^T . dY* */
          ok = check(e, n, rows, p, xb + i * xs, true, dyb + i * ys, false, dwr + i * ws,
                     id ? NULL : k->dp.coef_p);
      }
    }
  }
  double t1 = tempo_now();
  e->st.t_verify += t1 - t0;
  if (!ok) {
    c->consume_time += t1 - t0;
    return false;
  }
  e->st.t_compute += (double)h->compute_ns * 1e-9;
  if (sh->batch == 1) { /* gather the blocks; decrypted after the round */
    if (c->op == TEMPO_OP_FORWARD) memcpy(s->yp + (size_t)b->lo * p, pay, ys * sizeof(float));
    if (c->op == TEMPO_OP_BACKWARD && c->want_dx) memcpy(s->dxp + (size_t)b->lo * n, dxr, xs * sizeof(float));
    if (c->op == TEMPO_OP_BACKWARD && c->want_dw) memcpy(s->dwp + (size_t)t->block * ws, dwr, ws * sizeof(float));
  } else { /* whole instances: decrypt straight from the reply */
    for (int i = 0; i < cnt; i++) {
      const int inst = (int)b->lo + i;
      const tempo_obf_key *k = &s->keys[inst];
      if (c->op == TEMPO_OP_FORWARD) {
        tempo_obf_dec_y(k, pay + i * ys, c->Y + (size_t)inst * ys);
        e->st.decryptions++;
      } else {
        if (c->want_dx) {
          tempo_obf_dec_dx(k, dxr + i * xs, c->dX + (size_t)inst * xs, c->accum & TEMPO_MM_ACCUM_DX);
          e->st.decryptions++;
        }
        if (c->want_dw) {
          tempo_obf_dec_dw(k, wt, dwr + i * ws, c->dW + (size_t)inst * ws, c->accum & TEMPO_MM_ACCUM_DW);
          e->st.decryptions++;
        }
      }
    }
    e->st.t_unblind += tempo_now() - t1;
  }
  c->consume_time += tempo_now() - t0;
  return true;
}

/* Sends task t again to another live worker (a recomputation). */
static tempo_status reassign(tempo_engine *e, round_ctx *c, task *t) {
  int from = t->worker;
  t->pending = false;
  int w = pick_worker(e, c, from);
  if (w < 0)
    return tempo_set_error(TEMPO_STATUS_WORKER, "engine: no worker left (all %d evicted)", e->nw);
  e->st.recomputed++;
  return send_task(e, c, t, w);
}

/* After worker w failed on task t: recompute t, and if w was evicted, everything else it had. */
static tempo_status on_failure(tempo_engine *e, round_ctx *c, task *t, int w, int why) {
  worker_failed(e, w, why);
  tempo_status st = TEMPO_STATUS_OK;
  if (t && (st = reassign(e, c, t))) return st;
  if (!e->live[w])
    for (int i = 0; i < c->ntasks; i++)
      if (c->tasks[i].pending && c->tasks[i].worker == w && (st = reassign(e, c, &c->tasks[i]))) return st;
  return TEMPO_STATUS_OK;
}

static task *pending_of(round_ctx *c, int w, uint64_t id, bool match_id) {
  for (int i = 0; i < c->ntasks; i++) {
    task *t = &c->tasks[i];
    if (t->pending && t->worker == w && (!match_id || t->task_id == id)) return t;
  }
  return NULL;
}

static bool reply_fits(const round_ctx *c, const block *b, const tempo_msg_header *h) {
  const tempo_mm_shape *sh = &c->s->shape;
  unsigned want = (sh->w_trans ? TEMPO_MSG_F_W_TRANS : 0);
  if (c->op == TEMPO_OP_BACKWARD)
    want |= (c->want_dx ? TEMPO_MSG_F_WANT_DX : 0) | (c->want_dw ? TEMPO_MSG_F_WANT_DW : 0);
  return h->op == TEMPO_OP_RESULT && h->batch == (uint32_t)sh->batch && h->m == (uint32_t)sh->m &&
         h->n == (uint32_t)sh->n && h->p == (uint32_t)sh->p && h->lo == b->lo && h->hi == b->hi &&
         h->flags == want;
}

/* Receives one message, with the audit and byte count; *got false on timeout. */
static tempo_status recv_msg(tempo_engine *e, double timeout, tempo_in_msg *m, bool *got) {
  tempo_status st = e->tr->ops->recv(e->tr, timeout, m, got);
  if (st || !*got) return st;
  e->st.bytes_down += m->len;
  if (e->audit && m->len >= TEMPO_MSG_HEADER_SIZE) {
    const uint8_t *seg[1] = {m->data + TEMPO_MSG_HEADER_SIZE};
    size_t len[1] = {m->len - TEMPO_MSG_HEADER_SIZE};
    if ((st = tempo_audit_write(e->audit, TEMPO_AUDIT_DOWN, m->worker, m->data, 1, seg, len))) {
      e->tr->ops->done(e->tr, m);
      return st;
    }
  }
  return TEMPO_STATUS_OK;
}

/* Blinds the instances of block b (batch > 1): keys and Enc of X, W (forward) or Enc of
 * dY (backward). Called just before the block's first send, so the workers compute the
 * blocks already sent while the master blinds the next one. */
static tempo_status blind_block(tempo_engine *e, round_ctx *c, const block *b) {
  site *s = c->s;
  const tempo_mm_shape *sh = &s->shape;
  const size_t xs = (size_t)sh->m * sh->n, ws = (size_t)sh->n * sh->p, ys = (size_t)sh->m * sh->p;
  tempo_status st;
  const double t0 = tempo_now();
  for (uint32_t i = b->lo; i < b->hi; i++) {
    if (c->op == TEMPO_OP_FORWARD) {
      if (e->cfg.mode == TEMPO_MODE_TEMPO && (st = tempo_keygen_fill(e->kg, &s->keys[i]))) return st;
      tempo_obf_enc_x(&s->keys[i], c->X + i * xs, s->xp + i * xs);
      tempo_obf_enc_w(&s->keys[i], sh->w_trans, c->W + i * ws, s->wp + i * ws);
    } else {
      tempo_obf_enc_dy(&s->keys[i], c->dY + i * ys, s->dys + i * ys);
    }
  }
  e->st.t_blind += tempo_now() - t0;
  return TEMPO_STATUS_OK;
}

/* Sends every task of c and collects verified results, recomputing failures. */
static tempo_status run_round(tempo_engine *e, round_ctx *c) {
  tempo_status st;
  const double t_start = tempo_now();
  c->counting_naive = true;
  /* a row-split forward shares W' (segment 1) among its blocks: one group send, so a
   * transport that relays puts W' on the wire once */
  const bool group = c->op == TEMPO_OP_FORWARD && c->s->shape.batch == 1 && c->ntasks > 1 && e->tr->ops->send_group &&
                     !e->no_relay;
  tempo_out_msg gm[MAX_BLOCKS];
  int gw[MAX_BLOCKS];
  bool distinct = true;
  for (int i = 0; i < c->ntasks; i++) {
    task *t = &c->tasks[i];
    block *b = &c->s->blocks[t->block];
    int w = c->op == TEMPO_OP_BACKWARD && b->holder >= 0 && e->live[b->holder] ? b->holder : pick_worker(e, c, -1);
    if (w < 0) return tempo_set_error(TEMPO_STATUS_WORKER, "engine: no worker left (all %d evicted)", e->nw);
    if (c->blind_blocks && (st = blind_block(e, c, b))) return st;
    if (group) {
      if ((st = build_task(e, c, t, w, &gm[i]))) return st;
      for (int k = 0; k < i; k++) distinct = distinct && gw[k] != w;
      gw[i] = w;
    } else if ((st = send_task(e, c, t, w))) {
      return st;
    }
    e->rr = (w + 1) % e->nw;
  }
  if (group && distinct && (st = e->tr->ops->send_group(e->tr, c->ntasks, gw, gm, 1))) return st;
  for (int i = 0; group && !distinct && i < c->ntasks; i++)
    if ((st = e->tr->ops->send(e->tr, gw[i], &gm[i]))) return st;
  c->counting_naive = false;
  int pending = c->ntasks;
  double *wcomp = calloc((size_t)e->nw, sizeof *wcomp);
  if (!wcomp) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "engine: out of memory");
  st = TEMPO_STATUS_OK;
  while (pending > 0 && !st) {
    double now = tempo_now(), deadline = 1e300;
    for (int i = 0; i < c->ntasks; i++)
      if (c->tasks[i].pending && c->tasks[i].sent_at + e->timeout < deadline)
        deadline = c->tasks[i].sent_at + e->timeout;
    if (now >= deadline) {
      for (int i = 0; i < c->ntasks && !st; i++) {
        task *t = &c->tasks[i];
        if (!t->pending || t->sent_at + e->timeout > now) continue;
        int w = t->worker;
        e->abandoned[(size_t)w * ABANDONED + e->ab_next[w]] = t->task_id;
        e->ab_next[w] = (e->ab_next[w] + 1) % ABANDONED;
        st = on_failure(e, c, t, w, WHY_TIMEOUT);
      }
      continue;
    }
    tempo_in_msg m;
    bool got;
    if ((st = recv_msg(e, deadline - now, &m, &got)) || !got) continue;
    const int w = m.worker;
    tempo_msg_header h;
    const uint8_t *pay;
    if (tempo_msg_decode(m.data, m.len, &h, &pay)) {
      st = on_failure(e, c, pending_of(c, w, 0, false), w, WHY_MALFORMED);
    } else {
      task *t = pending_of(c, w, h.task_id, true);
      if (!t) {
        if (!was_abandoned(e, w, h.task_id) && h.op != TEMPO_OP_ACK) /* late replies are dropped */
          st = on_failure(e, c, pending_of(c, w, 0, false), w, WHY_OTHER_TASK);
      } else if (h.op == TEMPO_OP_ERROR) {
        st = on_failure(e, c, t, w, WHY_ERROR);
      } else if (!reply_fits(c, &c->s->blocks[t->block], &h)) {
        st = on_failure(e, c, t, w, WHY_MALFORMED);
      } else if (!consume(e, c, t, &h, (const float *)pay)) {
        st = on_failure(e, c, t, w, WHY_VERIFY);
      } else {
        t->pending = false;
        pending--;
        wcomp[w] += (double)h.compute_ns * 1e-9;
        if (c->op == TEMPO_OP_FORWARD && c->keep) c->s->blocks[t->block].holder = w;
      }
    }
    e->tr->ops->done(e->tr, &m);
  }
  double crit = 0;
  for (int i = 0; i < e->nw; i++) crit = wcomp[i] > crit ? wcomp[i] : crit;
  free(wcomp);
  double wait = tempo_now() - t_start - c->consume_time - crit;
  e->st.t_transfer += wait > 0 ? wait : 0;
  return st;
}

/* ---- products ---- */

static tempo_status get_site(tempo_engine *e, int slot, site **out) {
  if (slot < 1) return tempo_set_error(TEMPO_STATUS_INTERNAL, "engine: site without a slot");
  if (slot > e->n_sites) {
    int n = slot + 16;
    site *s = realloc(e->sites, (size_t)n * sizeof *s);
    if (!s) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "engine: out of memory for sites");
    memset(s + e->n_sites, 0, (size_t)(n - e->n_sites) * sizeof *s);
    e->sites = s;
    e->n_sites = n;
  }
  *out = &e->sites[slot - 1];
  return TEMPO_STATUS_OK;
}

static bool same_shape(const tempo_mm_shape *a, const tempo_mm_shape *b) {
  return a->batch == b->batch && a->m == b->m && a->n == b->n && a->p == b->p && a->w_trans == b->w_trans;
}

/* Keys and buffers of a site for this shape: allocated once, reused while the shape stays. */
static tempo_status prepare_site(site *s, const tempo_mm_shape *sh) {
  tempo_status st;
  if (!s->used || !same_shape(&s->shape, sh)) {
    for (int i = 0; i < s->nkeys; i++) tempo_obf_key_free(&s->keys[i]);
    free(s->keys);
    s->nkeys = 0;
    s->keys = calloc((size_t)sh->batch, sizeof *s->keys);
    if (!s->keys) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "engine: out of memory for keys");
    for (; s->nkeys < sh->batch; s->nkeys++)
      if ((st = tempo_obf_key_alloc(&s->keys[s->nkeys], sh->m, sh->n, sh->p))) return st;
    s->shape = *sh;
    s->used = true;
  }
  size_t b = (size_t)sh->batch, x, w, y;
  if (!tempo_mul3_size(b, (size_t)sh->m, (size_t)sh->n, &x) || !tempo_mul3_size(b, (size_t)sh->n, (size_t)sh->p, &w) ||
      !tempo_mul3_size(b, (size_t)sh->m, (size_t)sh->p, &y))
    return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "engine: product too large");
  if ((st = grow(&s->xp, &s->cap_x, x)) || (st = grow(&s->wp, &s->cap_w, w))) return st;
  if (sh->batch == 1 && (st = grow(&s->yp, &s->cap_y, y))) return st;
  return TEMPO_STATUS_OK;
}

/* Splits the product into blocks over the live workers. */
static void split(tempo_engine *e, site *s, bool keep) {
  const tempo_mm_shape *sh = &s->shape;
  int units = sh->batch == 1 ? sh->m : sh->batch;
  /* batched products: TEMPO_ENGINE_BLOCKS_PER_WORKER blocks per worker, so the master
   * blinds, verifies and decrypts some blocks while the workers compute others */
  int want = sh->batch > 1 ? e->n_live * TEMPO_ENGINE_BLOCKS_PER_WORKER : e->n_live;
  int nb = want < units ? want : units;
  double flops = 2.0 * sh->batch * sh->m * sh->n * (double)sh->p;
  if (sh->batch == 1 && (flops < TEMPO_ENGINE_MIN_SPLIT_FLOPS || sh->m < 16)) nb = 1;
  if (nb > MAX_BLOCKS) nb = MAX_BLOCKS;
  if (nb < 1) nb = 1;
  s->nblocks = nb;
  for (int i = 0; i < nb; i++) {
    block *b = &s->blocks[i];
    b->lo = (uint32_t)((int64_t)units * i / nb);
    b->hi = (uint32_t)((int64_t)units * (i + 1) / nb);
    b->holder = -1;
    b->hx = keep ? ++e->next_handle : 0;
    b->hw = keep ? ++e->next_handle : 0;
  }
}

tempo_status tempo_engine_forward(tempo_engine *e, int slot, const tempo_mm_shape *sh, const float *X,
                                  const float *W, float *Y, bool training) {
  site *s;
  tempo_status st;
  if ((st = get_site(e, slot, &s)) || (st = prepare_site(s, sh)) || (st = ensure_vwork(e, sh))) return st;
  if (e->n_live < 1) return tempo_set_error(TEMPO_STATUS_WORKER, "engine: no worker left (all %d evicted)", e->nw);
  s->fwd_valid = false;
  const size_t xs = (size_t)sh->m * sh->n, ws = (size_t)sh->n * sh->p, ys = (size_t)sh->m * sh->p;
  if (sh->batch == 1) { /* every row block needs all of W': blind it all before the round */
    double t0 = tempo_now();
    if (e->cfg.mode == TEMPO_MODE_TEMPO && (st = tempo_keygen_fill(e->kg, &s->keys[0]))) return st;
    tempo_obf_enc_x(&s->keys[0], X, s->xp);
    tempo_obf_enc_w(&s->keys[0], sh->w_trans, W, s->wp);
    e->st.t_blind += tempo_now() - t0;
  }
  e->st.encryptions += 2 * (uint64_t)sh->batch;
  e->st.naive_encryptions += 2 * (uint64_t)sh->batch;

  split(e, s, training);
  e->tr->min_up += (uint64_t)s->nblocks * TEMPO_MSG_HEADER_SIZE + (uint64_t)sh->batch * (xs + ws) * sizeof(float);
  task tasks[MAX_BLOCKS];
  memset(tasks, 0, sizeof tasks);
  for (int i = 0; i < s->nblocks; i++) tasks[i].block = i;
  round_ctx c = {.s = s, .op = TEMPO_OP_FORWARD, .keep = training, .Y = Y, .X = X, .W = W, .tasks = tasks,
                 .ntasks = s->nblocks, .blind_blocks = sh->batch > 1};
  if ((st = run_round(e, &c))) return st;
  if (sh->batch == 1) {
    double t1 = tempo_now();
    tempo_obf_dec_y(&s->keys[0], s->yp, Y);
    e->st.t_unblind += tempo_now() - t1;
    e->st.decryptions++;
  }
  (void)ys;
  e->st.products += (uint64_t)sh->batch;
  if (training) {
    s->fwd_valid = true;
  } else {
    for (int i = 0; i < s->nkeys; i++) tempo_obf_key_wipe(&s->keys[i]);
  }
  return TEMPO_STATUS_OK;
}

tempo_status tempo_engine_backward(tempo_engine *e, int slot, const tempo_mm_shape *sh, const float *dY, float *dX,
                                   float *dW, unsigned flags) {
  site *s;
  tempo_status st;
  if ((st = get_site(e, slot, &s))) return st;
  if (!s->fwd_valid)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT,
                           "matmul: backward without a training forward of this site in this step");
  if (!same_shape(&s->shape, sh))
    return tempo_set_error(TEMPO_STATUS_MISMATCH, "matmul: backward shape differs from its forward");
  if (!dX && !dW) return TEMPO_STATUS_OK;
  const size_t xs = (size_t)sh->m * sh->n, ws = (size_t)sh->n * sh->p, ys = (size_t)sh->m * sh->p;
  if ((st = grow(&s->dys, &s->cap_dy, (size_t)sh->batch * ys))) return st;
  if (sh->batch == 1 && dX && (st = grow(&s->dxp, &s->cap_dx, xs))) return st;
  if (sh->batch == 1 && dW && (st = grow(&s->dwp, &s->cap_dw, (size_t)s->nblocks * ws))) return st;
  if (sh->batch == 1) {
    double t0 = tempo_now();
    tempo_obf_enc_dy(&s->keys[0], dY, s->dys);
    e->st.t_blind += tempo_now() - t0;
  }
  e->st.encryptions += (uint64_t)sh->batch;
  const uint64_t outs = (dX ? 1u : 0u) + (dW ? 1u : 0u);
  e->st.naive_encryptions += 2 * outs * (uint64_t)sh->batch;
  /* what blinding each backward product from scratch would upload: dY and W^T for dX,
   * X^T and dY for dW, per block */
  for (int i = 0; i < s->nblocks; i++) {
    tempo_msg_header h;
    tempo_msg_header_init(&h, TEMPO_OP_BACKWARD);
    h.batch = (uint32_t)sh->batch, h.m = (uint32_t)sh->m, h.n = (uint32_t)sh->n, h.p = (uint32_t)sh->p;
    h.lo = s->blocks[i].lo, h.hi = s->blocks[i].hi;
    tempo_msg_sizes z;
    tempo_msg_split_sizes(&h, &z);
    if (dX) e->st.naive_bytes_up += TEMPO_MSG_HEADER_SIZE + (z.dy + z.w) * sizeof(float);
    if (dW) e->st.naive_bytes_up += TEMPO_MSG_HEADER_SIZE + (z.x + z.dy) * sizeof(float);
  }
  e->tr->min_up += (uint64_t)s->nblocks * TEMPO_MSG_HEADER_SIZE + (uint64_t)sh->batch * ys * sizeof(float);
  task tasks[MAX_BLOCKS];
  memset(tasks, 0, sizeof tasks);
  for (int i = 0; i < s->nblocks; i++) tasks[i].block = i;
  round_ctx c = {.s = s, .op = TEMPO_OP_BACKWARD, .want_dx = dX != NULL, .want_dw = dW != NULL, .accum = flags,
                 .dX = dX, .dW = dW, .dY = dY, .tasks = tasks, .ntasks = s->nblocks, .blind_blocks = sh->batch > 1};
  const uint64_t naive_saved = e->st.naive_bytes_up;
  if ((st = run_round(e, &c))) return st;
  e->st.naive_bytes_up = naive_saved; /* the round's own first sends are not the naive count */
  if (sh->batch == 1) {
    double t1 = tempo_now();
    if (dX) {
      tempo_obf_dec_dx(&s->keys[0], s->dxp, dX, flags & TEMPO_MM_ACCUM_DX);
      e->st.decryptions++;
    }
    if (dW) { /* partial dW' of row blocks, summed in block order (deterministic) */
      for (int b = 1; b < s->nblocks; b++) cblas_saxpy((int)ws, 1.0f, s->dwp + (size_t)b * ws, 1, s->dwp, 1);
      tempo_obf_dec_dw(&s->keys[0], sh->w_trans, s->dwp, dW, flags & TEMPO_MM_ACCUM_DW);
      e->st.decryptions++;
    }
    e->st.t_unblind += tempo_now() - t1;
  }
  e->st.products += outs * (uint64_t)sh->batch;
  return TEMPO_STATUS_OK;
}

tempo_status tempo_engine_step_end(tempo_engine *e) {
  for (int i = 0; i < e->n_sites; i++) {
    site *s = &e->sites[i];
    if (!s->used) continue;
    for (int k = 0; k < s->nkeys; k++) tempo_obf_key_wipe(&s->keys[k]);
    s->fwd_valid = false;
  }
  /* RELEASE every handle on every live worker that holds some, and wait for the ACKs */
  uint64_t *want = calloc((size_t)e->nw, sizeof *want);
  if (!want) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "engine: out of memory");
  tempo_status st = TEMPO_STATUS_OK;
  int pending = 0;
  double t0 = tempo_now();
  for (int w = 0; w < e->nw && !st; w++) {
    if (!e->holds[w] || !e->live[w]) continue;
    tempo_msg_header h;
    tempo_msg_header_init(&h, TEMPO_OP_RELEASE);
    h.flags = TEMPO_MSG_F_RELEASE_ALL;
    h.task_id = want[w] = ++e->next_task;
    st = send_msg(e, w, &h, 0, NULL, NULL, NULL);
    pending++;
    e->holds[w] = false;
  }
  while (pending > 0 && !st) {
    double left = t0 + e->timeout - tempo_now();
    tempo_in_msg m;
    bool got = false;
    if (left <= 0) { /* no ACK in time: count a failure against each silent worker */
      for (int w = 0; w < e->nw; w++)
        if (want[w]) worker_failed(e, w, WHY_TIMEOUT);
      break;
    }
    if ((st = recv_msg(e, left, &m, &got)) || !got) continue;
    tempo_msg_header h;
    const uint8_t *pay;
    if (!tempo_msg_decode(m.data, m.len, &h, &pay) && h.op == TEMPO_OP_ACK && want[m.worker] &&
        h.task_id == want[m.worker]) {
      want[m.worker] = 0;
      pending--;
    } /* anything else here is a late reply to an abandoned task: dropped */
    e->tr->ops->done(e->tr, &m);
  }
  free(want);
  return st;
}
