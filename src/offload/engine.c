/* engine.c - the offload engine (engine.h): sites, keys, blinding, splitting, the
 * request/reply rounds with verification, recomputation and eviction, and step end.
 *
 * Dimension letters as in matmul.h: X (m, n), W (n, p), Y (m, p), `batch` instances.
 * A product is split into blocks: row ranges of X' when batch == 1, instance ranges
 * otherwise (protocol.h). Every block is one task; a round sends the tasks of one product
 * and collects, verifies and consumes their results. The mechanics shared with the
 * shield engine (workers, eviction, messages, the receive loop, release, stats) are in
 * rounds.h; this file keeps keys, Enc/Dec, splitting and the block checks. */
#include "offload/engine.h"

#include <cblas.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "offload/rounds.h"
#include "tempo/common.h"

#define MAX_BLOCKS 256
#define MAX_REDUCE_FAILURES 3 /* wrong dW' sums before the engine stops reducing among workers */

/* A backward task's part in a dW' reduction among the workers (transport.h send_reduce). */
enum { ROLE_PLAIN = 0, ROLE_MEMBER = 1, ROLE_LAST = 2 };

typedef struct {
  uint32_t lo, hi; /* rows (batch 1) or instances */
  int holder;      /* worker that keeps X'/W' of this block (-1: none) */
  uint64_t hx, hw; /* operand handles */
} block;

typedef struct {
  tempo_site_keys k;   /* shape, keys (batch), fwd_valid */
  float *xp, *wp;      /* X' (batch, m, n), W' (batch, n, p) or (batch, p, n) */
  float *yp, *dys;     /* Y' (m, p) when batch == 1; dY* (batch, m, p) */
  float *dxp, *dwp;    /* dX' (m, n) when batch == 1; dW' partials (nblocks, n, p) when batch == 1 */
  size_t cap_x, cap_w, cap_y, cap_dy, cap_dx, cap_dw; /* bytes */
  int nblocks;
  block blocks[MAX_BLOCKS];
} site;

typedef tempo_round_task task; /* unit: the block */

/* What one round computes, for building messages and consuming results. Tasks are
 * blocks: tempo_round_task.unit is the block index. */
typedef struct {
  tempo_round base; /* first: the callbacks get &base */
  tempo_engine *e;
  site *s;
  int op; /* TEMPO_OP_FORWARD or TEMPO_OP_BACKWARD */
  bool keep, want_dx, want_dw;
  unsigned accum;
  float *Y, *dX, *dW; /* caller outputs (batch > 1 results are decrypted per block) */
  const float *X, *W, *dY; /* caller inputs (blinded per block when blind_blocks) */
  bool blind_blocks;   /* batch > 1: blind each block just before its first send (overlap) */
  bool counting_naive; /* first sends add to naive_bytes_up */
  bool may_reduce;     /* backward: the workers may add the partial dW' along a chain */
  bool reduced;        /* the round was sent as a reduction chain */
  bool reduce_broken;  /* a chain member failed: the sum is incomplete */
  uint8_t role[MAX_BLOCKS]; /* ROLE_* per block, as sent */
} round_ctx;

struct tempo_engine {
  tempo_mm_config cfg;
  tempo_rounds r; /* transport, keys, workers, stats */
  site *sites;
  int n_sites;
  float *vwork;
  size_t cap_vwork; /* bytes */
  int reduce_failures; /* dW' sums that failed their check */
};

/* A float buffer of at least count floats (grow only). */
static tempo_status grow(tempo_engine *e, float **buf, size_t *cap, size_t count) {
  size_t bytes;
  if (!tempo_mul_size(count, sizeof(float), &bytes))
    return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "engine: out of memory for %zu floats", count);
  return tempo_rounds_grow(&e->r, buf, cap, bytes);
}

tempo_status tempo_engine_create(const tempo_mm_config *cfg, tempo_engine **out) {
  *out = NULL;
  tempo_status st;
  tempo_engine *e = calloc(1, sizeof *e);
  if (!e) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "engine: out of memory");
  e->cfg = *cfg;
  e->cfg.audit_dir = NULL;
  e->r.evict_prefix = "";
  e->r.notify_evict = true;
  if ((st = tempo_rounds_init(&e->r, cfg, "engine", "tempo-engine-keys"))) {
    tempo_engine_free(e);
    return st;
  }
  *out = e;
  return TEMPO_STATUS_OK;
}

static void site_free(site *s) {
  tempo_site_keys_free(&s->k);
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
  tempo_rounds_free(&e->r); /* joins the workers before their operands go */
  for (int i = 0; i < e->n_sites; i++) site_free(&e->sites[i]);
  free(e->sites);
  tempo_free_floats(e->vwork);
  free(e);
}

void tempo_engine_set_timeout(tempo_engine *e, double seconds) { tempo_rounds_set_timeout(&e->r, seconds); }
int tempo_engine_live_workers(const tempo_engine *e) { return e->r.n_live; }
tempo_transport *tempo_engine_transport(tempo_engine *e) { return e->r.tr; }

void tempo_engine_take_stats(tempo_engine *e, tempo_mm_stats *run, tempo_mm_stats *step) {
  tempo_rounds_take_stats(&e->r, run, step);
}

/* ---- messages ---- */

static size_t blk_off(const tempo_mm_shape *sh, const block *b, size_t row_elems) {
  /* offset of a block's first row (batch 1) or instance (batch > 1), in floats */
  return sh->batch == 1 ? (size_t)b->lo * row_elems : (size_t)b->lo * (size_t)sh->m * row_elems;
}

/* Checks, audits and counts a request; fills *m (segments by reference). */
static tempo_status prepare_msg(tempo_engine *e, int w, tempo_msg_header *h, int nseg, const float *const *seg,
                                const size_t *count, round_ctx *c, tempo_out_msg *m) {
  const void *vs[4];
  for (int i = 0; i < nseg; i++) vs[i] = seg[i];
  return tempo_rounds_prepare(&e->r, w, h, nseg, vs, count, c && c->counting_naive, m);
}

/* Builds task t of round c for worker w into *out (not sent). */
static tempo_status build_task(tempo_engine *e, round_ctx *c, task *t, int w, tempo_out_msg *out) {
  site *s = c->s;
  const tempo_mm_shape *sh = &s->k.shape;
  block *b = &s->blocks[t->unit];
  tempo_msg_header h;
  tempo_msg_header_init(&h, (tempo_msg_op)c->op);
  h.task_id = t->task_id = ++e->r.next_task;
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
    if (c->keep) e->r.holds[w] = true;
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
  return st ? st : e->r.tr->ops->send(e->r.tr, w, &m);
}

/* ---- results ---- */

static tempo_status ensure_vwork(tempo_engine *e, const tempo_mm_shape *sh) {
  size_t need = 3 * ((size_t)sh->m + sh->n + sh->p) + 64;
  return grow(e, &e->vwork, &e->cap_vwork, need);
}

/* Freivalds' check of a blinded result C = op(A) op(B). cw weighs the check vector by the
 * inverse key scale of each result column (NULL for identity keys), so a column blinded
 * with a small coefficient is checked as sensitively as on the plaintext (obf.h). */
static bool check(tempo_engine *e, int r, int k, int cc, const float *A, bool at, const float *B, bool bt,
                  const float *C, const float *cw) {
  if (e->cfg.verify_rounds == 0) return true;
  uint64_t seed;
  tempo_keygen_bytes(e->r.vg, &seed, sizeof seed);
  return tempo_verify_product_weighted(r, k, cc, A, at, B, bt, C, cw, e->cfg.verify_rounds, seed, e->vwork) ==
         TEMPO_STATUS_OK;
}

/* Freivalds' check of a dW' of `rows` rows under key k: X'^T dY* (n, p), or dY*^T X' (p, n)
 * when W is stored transposed. */
static bool check_dw(tempo_engine *e, const tempo_obf_key *k, bool wt, int rows, int n, int p, const float *xp,
                     const float *dys, const float *dw) {
  if (wt) return check(e, p, rows, n, dys, true, xp, false, dw, k->identity ? NULL : k->dn.rcoef_p);
  return check(e, n, rows, p, xp, true, dys, false, dw, k->identity ? NULL : k->dp.coef_p);
}

/* Verifies the result of task t (header already matched) and writes it out. False when
 * it fails verification. */
static bool consume(tempo_engine *e, round_ctx *c, task *t, const tempo_msg_header *h, const float *pay) {
  site *s = c->s;
  const tempo_mm_shape *sh = &s->k.shape;
  const block *b = &s->blocks[t->unit];
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
  const int role = c->role[t->unit];
  /* a chain member's dW' is in the sum; the last member's dW' is the sum, checked whole after the round */
  const bool checks_dw = c->want_dw && role == ROLE_PLAIN, take_dw = c->want_dw && role != ROLE_MEMBER;
  const float *dxr = pay, *dwr = pay + (c->want_dx ? (size_t)cnt * xs : 0);
  for (int i = 0; i < cnt && ok; i++) {
    const tempo_obf_key *k = &s->k.keys[sh->batch == 1 ? 0 : (int)b->lo + i];
    const bool id = k->identity;
    if (c->op == TEMPO_OP_FORWARD) {
      ok = check(e, rows, n, p, xb + i * xs, false, wb + i * ws, wt, pay + i * ys, id ? NULL : k->dp.rcoef_p);
    } else {
      if (c->want_dx) /* dX' (rows, n) = dY* (rows, p) . W'^T */
        ok = check(e, rows, p, n, dyb + i * ys, false, wb + i * ws, !wt, dxr + i * xs, id ? NULL : k->dn.coef_p);
      if (ok && checks_dw) ok = check_dw(e, k, wt, rows, n, p, xb + i * xs, dyb + i * ys, dwr + i * ws);
    }
  }
  double t1 = tempo_now();
  e->r.st.t_verify += t1 - t0;
  if (!ok) {
    c->base.consume_time += t1 - t0;
    return false;
  }
  e->r.st.t_compute += (double)h->compute_ns * 1e-9;
  if (sh->batch == 1) { /* gather the blocks; decrypted after the round */
    if (c->op == TEMPO_OP_FORWARD) memcpy(s->yp + (size_t)b->lo * p, pay, ys * sizeof(float));
    if (c->op == TEMPO_OP_BACKWARD && c->want_dx) memcpy(s->dxp + (size_t)b->lo * n, dxr, xs * sizeof(float));
    if (c->op == TEMPO_OP_BACKWARD && take_dw) memcpy(s->dwp + (size_t)t->unit * ws, dwr, ws * sizeof(float));
  } else { /* whole instances: decrypt straight from the reply */
    for (int i = 0; i < cnt; i++) {
      const int inst = (int)b->lo + i;
      const tempo_obf_key *k = &s->k.keys[inst];
      if (c->op == TEMPO_OP_FORWARD) {
        tempo_obf_dec_y(k, pay + i * ys, c->Y + (size_t)inst * ys);
        e->r.st.decryptions++;
      } else {
        if (c->want_dx) {
          tempo_obf_dec_dx(k, dxr + i * xs, c->dX + (size_t)inst * xs, c->accum & TEMPO_MM_ACCUM_DX);
          e->r.st.decryptions++;
        }
        if (c->want_dw) {
          tempo_obf_dec_dw(k, wt, dwr + i * ws, c->dW + (size_t)inst * ws, c->accum & TEMPO_MM_ACCUM_DW);
          e->r.st.decryptions++;
        }
      }
    }
    e->r.st.t_unblind += tempo_now() - t1;
  }
  c->base.consume_time += tempo_now() - t0;
  return true;
}

/* Sends task t again to another live worker (a recomputation). */
static tempo_status reassign(tempo_engine *e, round_ctx *c, task *t) {
  int from = t->worker;
  t->pending = false;
  int w = tempo_rounds_pick(&e->r, &c->base, from);
  if (w < 0)
    return tempo_set_error(TEMPO_STATUS_WORKER, "engine: no worker left (all %d evicted)", e->r.nw);
  e->r.st.recomputed++;
  return send_task(e, c, t, w);
}

/* After worker w failed on task t: recompute t, and if w was evicted, everything else it had. */
static tempo_status on_failure(tempo_round *rd, task *t, int w, int why) {
  round_ctx *c = (round_ctx *)rd;
  tempo_engine *e = c->e;
  tempo_rounds_worker_failed(&e->r, w, why);
  tempo_status st = TEMPO_STATUS_OK;
  /* a chain member failed: the sum cannot be whole; what is resent goes as plain requests */
  if (c->reduced) c->reduce_broken = true;
  if (t) c->role[t->unit] = ROLE_PLAIN;
  if (t && (st = reassign(e, c, t))) return st;
  if (!e->r.live[w])
    for (int i = 0; i < rd->ntasks; i++)
      if (rd->tasks[i].pending && rd->tasks[i].worker == w) {
        c->role[rd->tasks[i].unit] = ROLE_PLAIN;
        if ((st = reassign(e, c, &rd->tasks[i]))) return st;
      }
  return TEMPO_STATUS_OK;
}

static bool reply_fits(tempo_round *rd, const task *t, const tempo_msg_header *h) {
  const round_ctx *c = (const round_ctx *)rd;
  const tempo_mm_shape *sh = &c->s->k.shape;
  const block *b = &c->s->blocks[t->unit];
  unsigned want = (sh->w_trans ? TEMPO_MSG_F_W_TRANS : 0);
  if (c->op == TEMPO_OP_BACKWARD)
    want |= (c->want_dx ? TEMPO_MSG_F_WANT_DX : 0) | (c->want_dw ? TEMPO_MSG_F_WANT_DW : 0);
  if (c->role[t->unit] == ROLE_MEMBER) { /* its dW' went down the chain */
    if (!c->want_dx) return h->op == TEMPO_OP_ACK;
    want &= ~(unsigned)TEMPO_MSG_F_WANT_DW;
  }
  return h->op == TEMPO_OP_RESULT && h->batch == (uint32_t)sh->batch && h->m == (uint32_t)sh->m &&
         h->n == (uint32_t)sh->n && h->p == (uint32_t)sh->p && h->lo == b->lo && h->hi == b->hi &&
         h->flags == want;
}

static bool consume_cb(tempo_round *rd, task *t, const tempo_msg_header *h, const uint8_t *pay) {
  round_ctx *c = (round_ctx *)rd;
  return consume(c->e, c, t, h, (const float *)pay);
}

static void task_done(tempo_round *rd, task *t) {
  round_ctx *c = (round_ctx *)rd;
  if (c->op == TEMPO_OP_FORWARD && c->keep) c->s->blocks[t->unit].holder = t->worker;
}

/* Blinds the instances of block b (batch > 1): keys and Enc of X, W (forward) or Enc of
 * dY (backward). Called just before the block's first send, so the workers compute the
 * blocks already sent while the master blinds the next one. */
static tempo_status blind_block(tempo_engine *e, round_ctx *c, const block *b) {
  site *s = c->s;
  const tempo_mm_shape *sh = &s->k.shape;
  const size_t xs = (size_t)sh->m * sh->n, ws = (size_t)sh->n * sh->p, ys = (size_t)sh->m * sh->p;
  tempo_status st;
  const double t0 = tempo_now();
  for (uint32_t i = b->lo; i < b->hi; i++) {
    if (c->op == TEMPO_OP_FORWARD) {
      if (e->cfg.mode == TEMPO_MODE_TEMPO && (st = tempo_keygen_fill(e->r.kg, &s->k.keys[i]))) return st;
      tempo_obf_enc_x(&s->k.keys[i], c->X + i * xs, s->xp + i * xs);
      tempo_obf_enc_w(&s->k.keys[i], sh->w_trans, c->W + i * ws, s->wp + i * ws);
    } else {
      tempo_obf_enc_dy(&s->k.keys[i], c->dY + i * ys, s->dys + i * ys);
    }
  }
  e->r.st.t_blind += tempo_now() - t0;
  return TEMPO_STATUS_OK;
}

/* Sends every task of c and collects verified results, recomputing failures. */
static tempo_status run_round(tempo_engine *e, round_ctx *c) {
  tempo_status st;
  const double t_start = tempo_now();
  c->e = e;
  c->base.on_failure = on_failure;
  c->base.fits = reply_fits;
  c->base.consume = consume_cb;
  c->base.done = task_done;
  c->counting_naive = true;
  /* a row-split forward shares W' (segment 1) among its blocks: one group send, so a
   * transport that relays puts W' on the wire once */
  const int ntasks = c->base.ntasks;
  const bool group = c->op == TEMPO_OP_FORWARD && c->s->k.shape.batch == 1 && ntasks > 1 &&
                     e->r.tr->ops->send_group && !e->r.no_relay;
  /* a row-split backward with dW': the workers add the partial dW' along a chain in block order
   * (the master's summation order), and one sum comes back */
  const bool reduce = c->may_reduce && c->op == TEMPO_OP_BACKWARD && c->want_dw && c->s->k.shape.batch == 1 &&
                      ntasks > 1 && e->r.tr->ops->send_reduce && e->r.tr->can_reduce && !e->r.no_relay &&
                      e->reduce_failures < MAX_REDUCE_FAILURES;
  tempo_out_msg gm[MAX_BLOCKS];
  int gw[MAX_BLOCKS];
  bool distinct = true;
  for (int i = 0; i < ntasks; i++) {
    task *t = &c->base.tasks[i];
    block *b = &c->s->blocks[t->unit];
    const bool held = c->op == TEMPO_OP_BACKWARD && b->holder >= 0 && e->r.live[b->holder];
    int w = held ? b->holder : tempo_rounds_pick(&e->r, &c->base, -1);
    if (w < 0) return tempo_set_error(TEMPO_STATUS_WORKER, "engine: no worker left (all %d evicted)", e->r.nw);
    if (c->blind_blocks && (st = blind_block(e, c, b))) return st;
    if (group || reduce) {
      if ((st = build_task(e, c, t, w, &gm[i]))) return st;
      for (int k = 0; k < i; k++) distinct = distinct && gw[k] != w;
      gw[i] = w;
    } else if ((st = send_task(e, c, t, w))) {
      return st;
    }
    e->r.rr = (w + 1) % e->r.nw;
  }
  if (reduce && distinct) {
    for (int i = 0; i < ntasks; i++) c->role[c->base.tasks[i].unit] = i + 1 < ntasks ? ROLE_MEMBER : ROLE_LAST;
    c->reduced = true;
    if ((st = e->r.tr->ops->send_reduce(e->r.tr, ntasks, gw, gm))) return st;
  }
  if (group && distinct && (st = e->r.tr->ops->send_group(e->r.tr, ntasks, gw, gm, 1))) return st;
  for (int i = 0; (group || reduce) && !distinct && i < ntasks; i++)
    if ((st = e->r.tr->ops->send(e->r.tr, gw[i], &gm[i]))) return st;
  c->counting_naive = false;
  return tempo_rounds_collect(&e->r, &c->base, t_start);
}

/* ---- products ---- */

static tempo_status get_site(tempo_engine *e, int slot, site **out) {
  void *s;
  tempo_status st = tempo_rounds_site(&e->r, &e->sites, &e->n_sites, sizeof(site), slot, &s);
  *out = s;
  return st;
}

/* Keys and buffers of a site for this shape: allocated once, reused while the shape stays. */
static tempo_status prepare_site(tempo_engine *e, site *s, const tempo_mm_shape *sh) {
  tempo_status st;
  size_t x, w, y;
  if ((st = tempo_site_keys_prepare(&e->r, &s->k, sh, &x, &w, &y))) return st;
  if ((st = grow(e, &s->xp, &s->cap_x, x)) || (st = grow(e, &s->wp, &s->cap_w, w))) return st;
  if (sh->batch == 1 && (st = grow(e, &s->yp, &s->cap_y, y))) return st;
  return TEMPO_STATUS_OK;
}

/* Splits the product into blocks over the live workers. */
static void split(tempo_engine *e, site *s, bool keep) {
  const tempo_mm_shape *sh = &s->k.shape;
  int units = sh->batch == 1 ? sh->m : sh->batch;
  /* batched products: TEMPO_ENGINE_BLOCKS_PER_WORKER blocks per worker, so the master
   * blinds, verifies and decrypts some blocks while the workers compute others */
  int want = sh->batch > 1 ? e->r.n_live * TEMPO_ENGINE_BLOCKS_PER_WORKER : e->r.n_live;
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
    b->hx = keep ? ++e->r.next_handle : 0;
    b->hw = keep ? ++e->r.next_handle : 0;
  }
}

/* One task per block, none sent yet. */
static void init_tasks(task *tasks, int nblocks) {
  memset(tasks, 0, (size_t)nblocks * sizeof *tasks);
  for (int i = 0; i < nblocks; i++) tasks[i].unit = i;
}

tempo_status tempo_engine_forward(tempo_engine *e, int slot, const tempo_mm_shape *sh, const float *X,
                                  const float *W, float *Y, bool training) {
  site *s;
  tempo_status st;
  if ((st = get_site(e, slot, &s)) || (st = prepare_site(e, s, sh)) || (st = ensure_vwork(e, sh))) return st;
  if (e->r.n_live < 1) return tempo_set_error(TEMPO_STATUS_WORKER, "engine: no worker left (all %d evicted)", e->r.nw);
  s->k.fwd_valid = false;
  const size_t xs = (size_t)sh->m * sh->n, ws = (size_t)sh->n * sh->p;
  if (sh->batch == 1) { /* every row block needs all of W': blind it all before the round */
    double t0 = tempo_now();
    if (e->cfg.mode == TEMPO_MODE_TEMPO && (st = tempo_keygen_fill(e->r.kg, &s->k.keys[0]))) return st;
    tempo_obf_enc_x(&s->k.keys[0], X, s->xp);
    tempo_obf_enc_w(&s->k.keys[0], sh->w_trans, W, s->wp);
    e->r.st.t_blind += tempo_now() - t0;
  }
  e->r.st.encryptions += 2 * (uint64_t)sh->batch;
  e->r.st.naive_encryptions += 2 * (uint64_t)sh->batch;

  split(e, s, training);
  e->r.tr->min_up += (uint64_t)s->nblocks * TEMPO_MSG_HEADER_SIZE + (uint64_t)sh->batch * (xs + ws) * sizeof(float);
  task tasks[MAX_BLOCKS];
  init_tasks(tasks, s->nblocks);
  round_ctx c = {.base = {.tasks = tasks, .ntasks = s->nblocks}, .s = s, .op = TEMPO_OP_FORWARD, .keep = training,
                 .Y = Y, .X = X, .W = W, .blind_blocks = sh->batch > 1};
  if ((st = run_round(e, &c))) return st;
  if (sh->batch == 1) {
    double t1 = tempo_now();
    tempo_obf_dec_y(&s->k.keys[0], s->yp, Y);
    e->r.st.t_unblind += tempo_now() - t1;
    e->r.st.decryptions++;
  }
  e->r.st.products += (uint64_t)sh->batch;
  if (training) {
    s->k.fwd_valid = true;
  } else {
    tempo_site_keys_wipe(&s->k);
  }
  return TEMPO_STATUS_OK;
}

/* Batch 1: adds the blocks' partial dW' in block order (deterministic) into block 0's slot. */
static const float *sum_partials(site *s) {
  const size_t ws = (size_t)s->k.shape.n * s->k.shape.p;
  for (int b = 1; b < s->nblocks; b++) cblas_saxpy((int)ws, 1.0f, s->dwp + (size_t)b * ws, 1, s->dwp, 1);
  return s->dwp;
}

/* After a backward round sent as a dW' reduction chain (batch 1): checks the sum the last
 * member returned with one Freivalds check over all rows (the master holds X' and dY*), and
 * points *sum at it. A broken chain or a wrong sum costs one more round that asks every
 * block's partial dW' separately (each checked, so a cheater is caught and evicted as
 * usual) and sums them here; after MAX_REDUCE_FAILURES wrong sums the engine stops
 * reducing, so a worker that corrupts sums cannot make every step pay twice. */
static tempo_status take_reduced_sum(tempo_engine *e, round_ctx *c, const float **sum) {
  site *s = c->s;
  const tempo_mm_shape *sh = &s->k.shape;
  const int last = s->nblocks - 1;
  const float *dw = s->dwp + (size_t)last * sh->n * sh->p;
  if (!c->reduce_broken) {
    const double t0 = tempo_now();
    const bool ok = check_dw(e, &s->k.keys[0], sh->w_trans, sh->m, sh->n, sh->p, s->xp, s->dys, dw);
    e->r.st.t_verify += tempo_now() - t0;
    if (ok) {
      *sum = dw;
      return TEMPO_STATUS_OK;
    }
    e->r.st.verify_failures++;
    if (++e->reduce_failures == MAX_REDUCE_FAILURES)
      fprintf(stderr, "tempo: %d dW' sums from the workers failed their check; summing on the master from now on\n",
              MAX_REDUCE_FAILURES);
  }
  task tasks[MAX_BLOCKS];
  init_tasks(tasks, s->nblocks);
  round_ctx again = {.base = {.tasks = tasks, .ntasks = s->nblocks}, .s = s, .op = TEMPO_OP_BACKWARD,
                     .want_dw = true, .accum = c->accum, .dW = c->dW, .dY = c->dY};
  e->r.st.recomputed += (uint64_t)s->nblocks;
  tempo_status st = run_round(e, &again);
  if (!st) *sum = sum_partials(s);
  return st;
}

tempo_status tempo_engine_backward(tempo_engine *e, int slot, const tempo_mm_shape *sh, const float *dY, float *dX,
                                   float *dW, unsigned flags) {
  site *s;
  tempo_status st;
  if ((st = get_site(e, slot, &s)) || (st = tempo_site_keys_backward_check(&s->k, sh))) return st;
  if (!dX && !dW) return TEMPO_STATUS_OK;
  const size_t xs = (size_t)sh->m * sh->n, ws = (size_t)sh->n * sh->p, ys = (size_t)sh->m * sh->p;
  if ((st = grow(e, &s->dys, &s->cap_dy, (size_t)sh->batch * ys))) return st;
  if (sh->batch == 1 && dX && (st = grow(e, &s->dxp, &s->cap_dx, xs))) return st;
  if (sh->batch == 1 && dW && (st = grow(e, &s->dwp, &s->cap_dw, (size_t)s->nblocks * ws))) return st;
  if (sh->batch == 1) {
    double t0 = tempo_now();
    tempo_obf_enc_dy(&s->k.keys[0], dY, s->dys);
    e->r.st.t_blind += tempo_now() - t0;
  }
  e->r.st.encryptions += (uint64_t)sh->batch;
  const uint64_t outs = (dX ? 1u : 0u) + (dW ? 1u : 0u);
  e->r.st.naive_encryptions += 2 * outs * (uint64_t)sh->batch;
  /* what blinding each backward product from scratch would upload: dY and W^T for dX,
   * X^T and dY for dW, per block */
  for (int i = 0; i < s->nblocks; i++) {
    tempo_msg_header h;
    tempo_msg_header_init(&h, TEMPO_OP_BACKWARD);
    h.batch = (uint32_t)sh->batch, h.m = (uint32_t)sh->m, h.n = (uint32_t)sh->n, h.p = (uint32_t)sh->p;
    h.lo = s->blocks[i].lo, h.hi = s->blocks[i].hi;
    tempo_msg_sizes z;
    tempo_msg_split_sizes(&h, &z);
    if (dX) e->r.st.naive_bytes_up += TEMPO_MSG_HEADER_SIZE + (z.dy + z.w) * sizeof(float);
    if (dW) e->r.st.naive_bytes_up += TEMPO_MSG_HEADER_SIZE + (z.x + z.dy) * sizeof(float);
  }
  e->r.tr->min_up += (uint64_t)s->nblocks * TEMPO_MSG_HEADER_SIZE + (uint64_t)sh->batch * ys * sizeof(float);
  task tasks[MAX_BLOCKS];
  init_tasks(tasks, s->nblocks);
  round_ctx c = {.base = {.tasks = tasks, .ntasks = s->nblocks}, .s = s, .op = TEMPO_OP_BACKWARD,
                 .want_dx = dX != NULL, .want_dw = dW != NULL, .accum = flags, .dX = dX, .dW = dW, .dY = dY,
                 .blind_blocks = sh->batch > 1, .may_reduce = true};
  const uint64_t naive_saved = e->r.st.naive_bytes_up;
  if ((st = run_round(e, &c))) return st;
  const float *dw_sum = NULL; /* batch 1: set when the workers' sum came back (or was redone) */
  if (c.reduced && (st = take_reduced_sum(e, &c, &dw_sum))) return st;
  e->r.st.naive_bytes_up = naive_saved; /* the round's own first sends are not the naive count */
  if (sh->batch == 1) {
    double t1 = tempo_now();
    if (dX) {
      tempo_obf_dec_dx(&s->k.keys[0], s->dxp, dX, flags & TEMPO_MM_ACCUM_DX);
      e->r.st.decryptions++;
    }
    if (dW) {
      if (!dw_sum) dw_sum = sum_partials(s);
      tempo_obf_dec_dw(&s->k.keys[0], sh->w_trans, dw_sum, dW, flags & TEMPO_MM_ACCUM_DW);
      e->r.st.decryptions++;
    }
    e->r.st.t_unblind += tempo_now() - t1;
  }
  e->r.st.products += outs * (uint64_t)sh->batch;
  return TEMPO_STATUS_OK;
}

tempo_status tempo_engine_step_end(tempo_engine *e) {
  for (int i = 0; i < e->n_sites; i++)
    if (e->sites[i].k.used) tempo_site_keys_wipe(&e->sites[i].k);
  /* RELEASE every handle on every live worker that holds some, and wait for the ACKs */
  return tempo_rounds_release(&e->r, false);
}
