/* engine.c - the offload engine (engine.h): sites, splitting and placement, the request/
 * reply rounds with checks, recomputation and eviction, relay and dW' reduction, step end,
 * for every scheme (scheme.h).
 *
 * Dimension letters as in matmul.h: X (m, n), W (n, p), Y (m, p), `batch` instances.
 * Each of the scheme's shares is split into blocks: row ranges of X' when batch == 1,
 * instance ranges otherwise (protocol.h). Every block is one task; a round sends the
 * tasks of one product and collects, checks and takes their results. The mechanics of
 * reaching the workers (eviction, messages, the receive loop, release, stats) are in
 * rounds.h. */
#include "offload/engine.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "offload/rounds.h"
#include "tempo/common.h"

#define MAX_SHARES 4
#define MAX_BLOCKS 256        /* all shares together */
#define MAX_REDUCE_FAILURES 3 /* wrong dW' sums before the engine stops reducing among workers */
/* a keeping round holds every block's reply: a worker's blocks of a batched product at most */
_Static_assert(TEMPO_ENGINE_BLOCKS_PER_WORKER <= TEMPO_TRANSPORT_HELD_PER_WORKER, "held replies per worker");

/* A backward task's part in a dW' reduction among the workers (transport.h send_reduce). */
enum { ROLE_PLAIN = 0, ROLE_MEMBER = 1, ROLE_LAST = 2 };

typedef struct {
  uint32_t lo, hi; /* rows (batch 1) or instances */
  int share;
  int holder;      /* worker that keeps X'/W' of this block (-1: none) */
  uint64_t hx, hw; /* operand handles */
} block;

typedef struct {
  tempo_site_keys k; /* shape, keys (batch), fwd_valid */
  bool mixed;        /* the last forward's route was MIXED: its backward is blinded the same way */
  void *ss;          /* the scheme's operands */
  int nblocks;       /* all shares */
  int first[MAX_SHARES + 1]; /* share s has blocks [first[s], first[s + 1]) */
  block blocks[MAX_BLOCKS];
  int8_t *owner;     /* (nw) the share a worker holds of this step's product, -1: none */
} site;

typedef tempo_round_task task; /* unit: the block */

/* What one round computes. Tasks are blocks: tempo_round_task.unit is the block index. */
typedef struct {
  tempo_round base; /* first: the callbacks get &base */
  tempo_engine *e;
  site *s;
  tempo_product pr;
  bool want_dx, want_dw;
  bool direct;         /* single-share instances: each block encoded just before its first send and
                        * decoded straight from its reply (the master works while workers compute) */
  bool rows_direct;    /* single-share row blocks' Y' / dX' likewise (dW' partials gathered) */
  bool counting_naive; /* first sends add to naive_bytes_up */
  bool may_reduce;     /* backward: the workers may add the partial dW' along a chain */
  bool reduced[MAX_SHARES];       /* the share was sent as a reduction chain */
  bool reduce_broken[MAX_SHARES]; /* a chain member failed: the sum is incomplete */
  uint8_t role[MAX_BLOCKS];       /* ROLE_* per block, as sent */
  bool keep; /* the replies are held in the engine's kept[] and read in place (keep_plan) */
  int sink_next; /* pr.dXs (a backward's dX to a row sink): blocks are checked, decoded and added in
                  * block order, on arrival when it is the next block's turn, else held (kept[],
                  * kres[] its dX') until after the round (sink_dx); this is the first not added */
} round_ctx;

struct tempo_engine {
  tempo_mm_config cfg;
  tempo_scheme *sc;
  tempo_rounds r; /* transport, keys, workers, stats */
  site *sites;
  int n_sites;
  void *res, *resw; /* gathered results: per share Y' or dX', and dW' (partials per block when batch 1) */
  size_t cap_res, cap_resw; /* bytes */
  size_t res_stride, resw_stride; /* elements per share */
  int reduce_failures; /* dW' sums that failed their check */
  /* The replies of a keeping round (round_ctx.keep; one round at a time keeps): block u's
   * transport message, and in it its Y' or dX' and its dW' (NULL: none); all clear between
   * products (give_back_kept). Here, not in round_ctx, so that a product's round context
   * stays small to set up. */
  tempo_in_msg kept[MAX_BLOCKS];
  const void *kres[MAX_BLOCKS], *kdw[MAX_BLOCKS];
};

static size_t es(const tempo_engine *e) { return tempo_msg_dtype_size(e->sc->dtype); }
/* Results' element size and dtype (a BF16 wire's results are float32, protocol.h). */
static size_t rs(const tempo_engine *e) { return tempo_msg_result_size(e->sc->dtype); }
static uint16_t rdtype(const tempo_engine *e) { return e->sc->dtype == TEMPO_DTYPE_BF16 ? TEMPO_DTYPE_F32 : e->sc->dtype; }
static const void *off(const void *base, size_t elems, size_t z) { return (const uint8_t *)base + elems * z; }
static void *woff(void *base, size_t elems, size_t z) { return (uint8_t *)base + elems * z; }

/* INVALID_ARGUMENT: the scheme needs more workers than `have` (of `what`). */
static tempo_status too_few(const tempo_mm_config *cfg, const tempo_scheme *sc, int have, const char *what) {
  return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT,
                         "mode '%s' needs at least %d workers (%d shares per product on distinct workers, no two of "
                         "which may collude; one more lets a failed share be recomputed); %s %d",
                         tempo_mode_name(cfg->mode), sc->min_workers, sc->shares, what, have);
}

tempo_status tempo_engine_create(const tempo_mm_config *cfg, tempo_scheme *sc, tempo_engine **out) {
  *out = NULL;
  tempo_status st;
  tempo_engine *e = cfg->transport || cfg->workers >= sc->min_workers ? calloc(1, sizeof *e) : NULL;
  if (!e) {
    st = cfg->transport || cfg->workers >= sc->min_workers
             ? tempo_set_error(TEMPO_STATUS_NO_MEMORY, "engine: out of memory")
             : too_few(cfg, sc, cfg->workers, "got");
    sc->ops->free(sc);
    return st;
  }
  e->cfg = *cfg;
  e->cfg.audit_dir = NULL;
  e->sc = sc;
  e->r.evict_prefix = sc->shares > 1 ? "shield: " : "";
  char context[18];
  snprintf(context, sizeof context, "tempo-%s-keys", sc->name); /* 17 bytes: "engine" or "shield" */
  if ((st = tempo_rounds_init(&e->r, cfg, sc->name, context)) ||
      (e->r.nw < sc->min_workers && (st = too_few(cfg, sc, e->r.nw, "the transport has")))) {
    tempo_engine_free(e);
    return st;
  }
  /* declared precisions (issue 16.4): weaker workers are refused, the rest checked by theirs */
  if (tempo_rounds_refuse_weaker(&e->r, cfg->min_precision) && e->r.n_live < sc->min_workers) {
    st = tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT,
                         "%s mode needs %d workers that compute in %s or better (--min-precision); %d of %d declare that",
                         tempo_mode_name(cfg->mode), sc->min_workers, tempo_precision_name(cfg->min_precision),
                         e->r.n_live, e->r.nw);
    tempo_engine_free(e);
    return st;
  }
  sc->kg = e->r.kg, sc->vg = e->r.vg;
  *out = e;
  return TEMPO_STATUS_OK;
}

void tempo_engine_free(tempo_engine *e) {
  if (!e) return;
  tempo_rounds_free(&e->r); /* joins the workers before their operands go */
  for (int i = 0; i < e->n_sites; i++) {
    site *s = &e->sites[i];
    tempo_site_keys_free(&s->k);
    e->sc->ops->site_free(s->ss);
    free(s->owner);
  }
  free(e->sites);
  tempo_free_floats(e->res);
  tempo_free_floats(e->resw);
  e->sc->ops->free(e->sc);
  free(e);
}

void tempo_engine_set_timeout(tempo_engine *e, double seconds) { tempo_rounds_set_timeout(&e->r, seconds); }
int tempo_engine_live_workers(const tempo_engine *e) { return e->r.n_live; }
tempo_transport *tempo_engine_transport(tempo_engine *e) { return e->r.tr; }
tempo_scheme *tempo_engine_scheme(tempo_engine *e) { return e->sc; }
tempo_status tempo_engine_streams_save(const tempo_engine *e, uint8_t *out, size_t cap, size_t *len) {
  return tempo_rounds_streams_save(&e->r, out, cap, len);
}
tempo_status tempo_engine_streams_restore(tempo_engine *e, const uint8_t *in, size_t len) {
  return tempo_rounds_streams_restore(&e->r, in, len);
}

void tempo_engine_take_stats(tempo_engine *e, tempo_mm_stats *run, tempo_mm_stats *step) {
  e->r.st.master_bytes += e->sc->bytes;
  e->sc->bytes = 0;
  tempo_rounds_take_stats(&e->r, run, step);
}

tempo_route tempo_engine_route(const tempo_engine *e, unsigned kind) { /* the table: policy.c */
  return tempo_protect_route(e->cfg.protect, kind, e->sc->can_mix);
}

/* ---- placement ---- */

/* A live worker for a task of `share` other than `avoid`: one that holds no other share of
 * this product, preferring one without a pending task of rd, then one already holding this
 * share; `avoid` itself only in a single-share scheme when it is the last one alive; -1
 * when none is left. */
static int pick(const tempo_engine *e, const site *s, const tempo_round *rd, int share, int avoid) {
  int best = -1, best_rank = 4;
  for (int k = 0; k < e->r.nw; k++) {
    const int w = (e->r.rr + k) % e->r.nw;
    if (!e->r.live[w] || w == avoid || (s->owner[w] >= 0 && s->owner[w] != share)) continue;
    const int rank = (tempo_rounds_busy(rd, w) ? 2 : 0) + (s->owner[w] == share ? 0 : 1);
    if (rank < best_rank) best = w, best_rank = rank;
  }
  if (best < 0 && e->sc->shares == 1 && avoid >= 0 && e->r.live[avoid]) return avoid;
  return best;
}

/* Splits a forward product into blocks per share and plans their workers (plan[block]):
 * every share gets a group of distinct live workers; with more workers than shares and a
 * remainder, one stays spare for recomputations. */
static tempo_status split(tempo_engine *e, site *s, bool keep, int *plan) {
  /* a mixed product's row blocks hold whole mixing blocks (of any size: they divide 8) */
  const uint32_t align = s->mixed && s->k.shape.batch == 1 ? TEMPO_OBF_MIX_MAX : 1;
  const tempo_mm_shape *sh = &s->k.shape;
  const int S = e->sc->shares, L = e->r.n_live;
  if (L < e->sc->min_workers)
    return tempo_set_error(TEMPO_STATUS_WORKER, "%s: fewer than %d live workers (%d left)", e->sc->name,
                           e->sc->min_workers, L);
  int order[256 + 1], n = 0;
  int *ord = e->r.nw <= 256 ? order : malloc((size_t)e->r.nw * sizeof *ord);
  if (!ord) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "engine: out of memory");
  for (int k = 0; k < e->r.nw; k++) {
    const int w = (e->r.rr + k) % e->r.nw;
    if (e->r.live[w]) ord[n++] = w;
    s->owner[w] = -1;
  }
  const int usable = S > 1 && L > S && L % S ? L - 1 : L;
  const int units = sh->batch == 1 ? sh->m : sh->batch;
  const double flops = 2.0 * sh->batch * sh->m * sh->n * (double)sh->p;
  int base = 0, nb = 0;
  for (int sh_i = 0; sh_i < S; sh_i++) {
    const int g = usable / S + (sh_i < usable % S);
    /* batched products: TEMPO_ENGINE_BLOCKS_PER_WORKER blocks per worker, so the master
     * blinds, checks and decodes some blocks while the workers compute others */
    int want = sh->batch > 1 ? g * TEMPO_ENGINE_BLOCKS_PER_WORKER : g;
    if (sh->batch == 1 && (flops < TEMPO_ENGINE_MIN_SPLIT_FLOPS || sh->m < 16)) want = 1;
    if (want > units) want = units;
    if (align > 1 && want > units / (int)align) want = units / (int)align; /* >= align rows apart: none empty */
    if (want > MAX_BLOCKS / S) want = MAX_BLOCKS / S;
    if (want < 1) want = 1;
    s->first[sh_i] = nb;
    for (int i = 0; i < want; i++, nb++) {
      block *b = &s->blocks[nb];
      b->lo = (uint32_t)((int64_t)units * i / want);
      b->hi = (uint32_t)((int64_t)units * (i + 1) / want);
      if (align > 1) { /* a mixed row split: whole mixing blocks per block */
        b->lo = i == 0 ? 0 : b->lo / align * align;
        b->hi = i + 1 == want ? (uint32_t)units : b->hi / align * align;
      }
      b->share = sh_i;
      b->holder = -1;
      b->hx = keep ? ++e->r.next_handle : 0;
      b->hw = keep ? ++e->r.next_handle : 0;
      plan[nb] = ord[base + i % g];
    }
    for (int i = 0; i < g; i++) s->owner[ord[base + i]] = (int8_t)sh_i;
    base += g;
  }
  s->first[S] = s->nblocks = nb;
  /* the next product starts after the last worker this one planned to use */
  e->r.rr = ((S == 1 ? plan[nb - 1] : ord[usable - 1]) + 1) % e->r.nw;
  if (ord != order) free(ord);
  return TEMPO_STATUS_OK;
}

/* ---- messages ---- */

static size_t blk_off(const tempo_mm_shape *sh, const block *b, size_t row_elems) {
  /* offset of a block's first row (batch 1) or instance (batch > 1), in elements */
  return sh->batch == 1 ? (size_t)b->lo * row_elems : (size_t)b->lo * (size_t)sh->m * row_elems;
}
static size_t blk_w_off(const tempo_mm_shape *sh, const block *b) {
  return sh->batch == 1 ? 0 : (size_t)b->lo * sh->n * sh->p;
}

/* Builds task t of round c for worker w into *out (not sent). */
static tempo_status build_task(tempo_engine *e, round_ctx *c, task *t, int w, tempo_out_msg *out) {
  site *s = c->s;
  const tempo_mm_shape *sh = &s->k.shape;
  const block *b = &s->blocks[t->unit];
  const size_t z = es(e);
  tempo_msg_header h;
  tempo_msg_header_init(&h, c->pr.backward ? TEMPO_OP_BACKWARD : TEMPO_OP_FORWARD);
  h.dtype = e->sc->dtype;
  h.task_id = t->task_id = ++e->r.next_task;
  h.handle_x = b->hx;
  h.handle_w = b->hw;
  h.batch = (uint32_t)sh->batch, h.m = (uint32_t)sh->m, h.n = (uint32_t)sh->n, h.p = (uint32_t)sh->p;
  h.lo = b->lo, h.hi = b->hi;
  h.flags = sh->w_trans ? TEMPO_MSG_F_W_TRANS : 0;
  tempo_msg_sizes sz;
  tempo_msg_split_sizes(&h, &sz);
  const void *xb = off(e->sc->ops->operand(s->ss, b->share, TEMPO_OPERAND_X), blk_off(sh, b, (size_t)sh->n), z);
  const void *wb = off(e->sc->ops->operand(s->ss, b->share, TEMPO_OPERAND_W), blk_w_off(sh, b), z);
  const void *seg[3];
  size_t cnt[3];
  int nseg = 0;
  if (!c->pr.backward) {
    h.flags |= TEMPO_MSG_F_X_INLINE | TEMPO_MSG_F_W_INLINE | (c->pr.training ? TEMPO_MSG_F_KEEP : 0);
    seg[0] = xb, cnt[0] = sz.x, seg[1] = wb, cnt[1] = sz.w, nseg = 2;
    if (c->pr.training) e->r.holds[w] = true;
  } else {
    h.flags |= (c->want_dx ? TEMPO_MSG_F_WANT_DX : 0) | (c->want_dw ? TEMPO_MSG_F_WANT_DW : 0);
    seg[nseg] = off(e->sc->ops->operand(s->ss, b->share, TEMPO_OPERAND_DY), blk_off(sh, b, (size_t)sh->p), z);
    cnt[nseg++] = sz.dy;
    const bool has = b->holder == w;
    if (c->want_dw && !has) h.flags |= TEMPO_MSG_F_X_INLINE, seg[nseg] = xb, cnt[nseg++] = sz.x;
    if (c->want_dx && !has) h.flags |= TEMPO_MSG_F_W_INLINE, seg[nseg] = wb, cnt[nseg++] = sz.w;
  }
  t->worker = w;
  t->pending = true;
  t->relayer = -1; /* send_share sets it when the transport relays W' to this task */
  t->sent_at = tempo_now();
  s->owner[w] = (int8_t)b->share;
  return tempo_rounds_prepare(&e->r, w, &h, nseg, seg, cnt, c->counting_naive, out);
}

static tempo_status send_task(tempo_engine *e, round_ctx *c, task *t, int w) {
  tempo_out_msg m;
  tempo_status st = build_task(e, c, t, w, &m);
  return st ? st : e->r.tr->ops->send(e->r.tr, w, &m);
}

/* ---- results ---- */

/* Freivalds' check of a result in the scheme's dtype, with a fresh vector seed from the
 * verification stream (never the key stream: keys must not depend on how many checks ran). */
static bool check(tempo_engine *e, int r, int k, int cc, const void *A, bool at, const void *B, bool bt,
                  const void *C, const float *cw) {
  if (e->cfg.verify_rounds == 0) return true;
  uint64_t seed;
  tempo_keygen_bytes(e->r.vg, &seed, sizeof seed);
  return e->sc->ops->check(e->sc, r, k, cc, A, at, B, bt, C, cw, seed);
}

/* Freivalds' check of a dW' of `rows` rows under key k: X'^T dY* (n, p), or dY*^T X' (p, n)
 * when W is stored transposed. cw weighs by the inverse key scale of each result column
 * (obf.h), so a column blinded with a small coefficient is checked as sensitively as on
 * the plaintext. */
static bool check_dw(tempo_engine *e, const tempo_obf_key *k, bool wt, int rows, int n, int p, const void *xp,
                     const void *dys, const void *dw) {
  if (wt) return check(e, p, rows, n, dys, true, xp, false, dw, k->identity ? NULL : k->dn.rcoef_p);
  return check(e, n, rows, p, xp, true, dys, false, dw, k->identity ? NULL : k->dp.coef_p);
}

/* Share s's gathered Y' or dX', and its dW' slot for block index j of the share (batch 1)
 * or instance 0 (batch > 1). */
static void *res_of(tempo_engine *e, int s) { return woff(e->res, (size_t)s * e->res_stride, rs(e)); }
static void *resw_of(tempo_engine *e, int s) { return woff(e->resw, (size_t)s * e->resw_stride, rs(e)); }

/* A batch-1 product of a single-share scheme whose row blocks decode on arrival. */
static bool rows_direct(const tempo_engine *e, const tempo_mm_shape *sh) {
  return sh->batch == 1 && e->sc->shares == 1 && e->sc->ops->take_rows;
}

/* round_ctx.keep for a product's first round: several shares, gathered (not decoded on
 * arrival: not direct), every share split into the same blocks, and one block per share when
 * batch 1 (a row split's dW' partials are summed). */
static bool keep_plan(const tempo_engine *e, const site *s, bool direct) {
  const int S = e->sc->shares, nb = s->first[1] - s->first[0];
  if (S < 2 || direct || rows_direct(e, &s->k.shape) || (s->k.shape.batch == 1 && nb != 1)) return false;
  for (int i = 1; i < S; i++) {
    if (s->first[i + 1] - s->first[i] != nb) return false;
    for (int j = 0; j < nb; j++)
      if (s->blocks[s->first[i] + j].lo != s->blocks[j].lo || s->blocks[s->first[i] + j].hi != s->blocks[j].hi)
        return false;
  }
  return true;
}

/* Whether the reply to block `unit` is kept and read in place (round_ctx.kept). */
static bool keeps_reply(const round_ctx *c, int unit) { return c->keep && c->role[unit] == ROLE_PLAIN; }

/* Gives back the replies round c kept (after the combine, or on an error). */
static void give_back_kept(tempo_engine *e, const round_ctx *c) {
  for (int i = 0; (c->keep || c->pr.dXs) && i < c->s->nblocks; i++) {
    if (e->kept[i].token) e->r.tr->ops->done(e->r.tr, &e->kept[i]);
    e->kept[i].token = NULL, e->kres[i] = e->kdw[i] = NULL;
  }
}

/* Checks the result of task t (header already matched) and takes it. False when it fails. */
static bool consume(tempo_engine *e, round_ctx *c, task *t, const tempo_msg_header *h, const uint8_t *pay) {
  site *s = c->s;
  const tempo_mm_shape *sh = &s->k.shape;
  const block *b = &s->blocks[t->unit];
  const bool wt = sh->w_trans;
  const int cnt = sh->batch == 1 ? 1 : (int)(b->hi - b->lo);
  const int rows = sh->batch == 1 ? (int)(b->hi - b->lo) : sh->m;
  const int n = sh->n, p = sh->p;
  const size_t xs = (size_t)rows * n, ws = (size_t)n * p, ys = (size_t)rows * p, z = es(e), zr = rs(e);
  const void *xb = off(e->sc->ops->operand(s->ss, b->share, TEMPO_OPERAND_X), blk_off(sh, b, (size_t)n), z);
  const void *wb = off(e->sc->ops->operand(s->ss, b->share, TEMPO_OPERAND_W), blk_w_off(sh, b), z);
  const void *dyb = c->pr.backward ? off(e->sc->ops->operand(s->ss, b->share, TEMPO_OPERAND_DY),
                                         blk_off(sh, b, (size_t)p), z)
                                   : NULL;
  const bool keep = keeps_reply(c, t->unit) && c->base.msg && c->base.msg->token; /* read in place by finish */
  double t0 = tempo_now();
  bool ok = true;
  const int role = c->role[t->unit];
  e->sc->precision = tempo_rounds_precision(&e->r, t->worker); /* its results are held to its declaration */
  /* a chain member's dW' is in the sum; the last member's dW' is the sum, checked whole after the round */
  const bool checks_dw = c->want_dw && role == ROLE_PLAIN, take_dw = c->want_dw && role != ROLE_MEMBER;
  const void *dxr = pay, *dwr = off(pay, c->want_dx ? (size_t)cnt * xs : 0, zr);
  /* a row block's dX' that is not accumulated: its check rides in its decryption (a failed
   * block's rows are overwritten by the recomputation) */
  const bool fused = e->sc->fused_forward && sh->batch == 1; /* scheme.h: batch-1 products only */
  bool sunk_now = false; /* its dX' went to the row sink here */
  const bool dx_in_dec = c->pr.backward && c->want_dx && c->rows_direct && fused &&
                         e->sc->ops->check_take_dx && !(c->pr.accum & TEMPO_MM_ACCUM_DX);
  if (fused) { /* the expensive halves were formed in the X' pass: Y', dX' (in its decryption), dW' read */
    const int lo = (int)b->lo, hi = (int)b->hi;
    e->sc->share = b->share;
    if (!c->pr.backward) {
      ok = e->sc->ops->check_forward(e->sc, s->ss, &c->pr, lo, hi, pay);
    } else {
      if (c->pr.dXs && t->unit == c->sink_next) /* its turn: added now (a failure resumes it) */
        sunk_now = ok = e->sc->ops->check_take_dx(e->sc, s->ss, &c->pr, lo, hi, dxr);
      else if (c->want_dx && !(keep && e->sc->dx_deferred) && !c->pr.dXs) /* deferred: in finish or sink_dx */
        ok = dx_in_dec ? e->sc->ops->check_take_dx(e->sc, s->ss, &c->pr, lo, hi, dxr)
                       : check(e, rows, p, n, dyb, false, wb, !wt, dxr, s->k.keys[0].identity ? NULL : s->k.keys[0].dn.coef_p);
      if (ok && checks_dw) {
        e->sc->dw_parts = 1;
        ok = e->sc->ops->check_dw(e->sc, s->ss, &c->pr, lo, hi, dwr);
      }
    }
  }
  for (int i = 0; i < cnt && ok && !fused; i++) {
    const tempo_obf_key *k = &s->k.keys[sh->batch == 1 ? 0 : (int)b->lo + i];
    const bool id = k->identity;
    if (!c->pr.backward) {
      ok = check(e, rows, n, p, off(xb, i * xs, z), false, off(wb, i * ws, z), wt, off(pay, i * ys, zr),
                 id ? NULL : k->dp.rcoef_p);
    } else {
      if (c->want_dx) /* dX' (rows, n) = dY* (rows, p) . W'^T */
        ok = check(e, rows, p, n, off(dyb, i * ys, z), false, off(wb, i * ws, z), !wt, off(dxr, i * xs, zr),
                   id ? NULL : k->dn.coef_p);
      if (ok && checks_dw)
        ok = check_dw(e, k, wt, rows, n, p, off(xb, i * xs, z), off(dyb, i * ys, z), off(dwr, i * ws, zr));
    }
  }
  double t1 = tempo_now();
  e->r.st.t_verify += t1 - t0;
  if (!ok) {
    c->base.consume_time += t1 - t0;
    return false;
  }
  e->r.st.t_compute += (double)h->compute_ns * 1e-9;
  if (c->direct) { /* whole instances of a single share: decode straight from the reply */
    e->sc->ops->take_instances(e->sc, &c->pr, (int)b->lo, (int)b->hi, c->pr.backward ? (c->want_dx ? dxr : NULL) : pay,
                               c->want_dw ? dwr : NULL);
    e->r.st.t_unblind += tempo_now() - t1;
  } else { /* gather; combined and decoded after the round */
    const size_t yo = blk_off(sh, b, (size_t)(c->pr.backward ? n : p));
    const bool copy_y = !c->rows_direct && (!c->pr.backward || c->want_dx);
    if (c->rows_direct && (!c->pr.backward || (c->want_dx && !dx_in_dec))) { /* decode this block's rows now */
      e->sc->ops->take_rows(e->sc, &c->pr, (int)b->lo, (int)b->hi, c->pr.backward ? dxr : pay);
      e->r.st.t_unblind += tempo_now() - t1;
    }
    if (keep) { /* held, read in place by finish */
      const int u = t->unit;
      if (e->kept[u].token) e->r.tr->ops->done(e->r.tr, &e->kept[u]); /* a recomputation's earlier reply */
      e->kept[u] = *c->base.msg;
      c->base.msg->token = NULL;
      e->kres[u] = copy_y ? (c->pr.backward ? dxr : pay) : NULL;
      e->kdw[u] = c->pr.backward && take_dw ? dwr : NULL;
      c->base.consume_time += tempo_now() - t0;
      return true;
    }
    e->r.st.master_bytes += 2 * (uint64_t)cnt * zr *
                            ((copy_y ? (!c->pr.backward ? ys : xs) : 0) + (take_dw ? ws : 0)); /* the copies */
    if (copy_y && !c->pr.backward) memcpy(woff(res_of(e, b->share), yo, zr), pay, (size_t)cnt * ys * zr);
    if (copy_y && c->pr.backward) memcpy(woff(res_of(e, b->share), yo, zr), dxr, (size_t)cnt * xs * zr);
    if (c->pr.backward && take_dw) {
      const size_t wo = sh->batch == 1 ? (size_t)(t->unit - s->first[b->share]) * ws : (size_t)b->lo * ws;
      memcpy(woff(resw_of(e, b->share), wo, zr), dwr, (size_t)cnt * ws * zr);
    }
    if (sunk_now) c->sink_next++;
    if (c->pr.dXs && !sunk_now && c->base.msg && c->base.msg->token) { /* its dX' waits for sink_dx */
      const int u = t->unit;
      if (e->kept[u].token) e->r.tr->ops->done(e->r.tr, &e->kept[u]); /* a recomputation's earlier reply */
      e->kept[u] = *c->base.msg;
      c->base.msg->token = NULL;
      e->kres[u] = dxr;
    }
  }
  c->base.consume_time += tempo_now() - t0;
  return true;
}

/* Sends task t again to another live worker (a recomputation). */
static tempo_status reassign(tempo_engine *e, round_ctx *c, task *t) {
  const int from = t->worker, share = c->s->blocks[t->unit].share;
  t->pending = false;
  const int w = pick(e, c->s, &c->base, share, from);
  if (w < 0) {
    if (e->sc->shares > 1)
      return tempo_set_error(TEMPO_STATUS_WORKER,
                             "%s: worker %d failed and no spare worker is left that holds no other share of this "
                             "product (no worker ever gets two shares of a product)",
                             e->sc->name, from);
    return tempo_set_error(TEMPO_STATUS_WORKER, "%s: no worker left (all %d evicted)", e->sc->name, e->r.nw);
  }
  e->r.st.recomputed++;
  return send_task(e, c, t, w);
}

/* After a failed check: a non-finite plaintext operand of the master makes every honest
 * result fail, so it is the master's error, not the worker's (scanned only on this path). */
static tempo_status master_inputs_finite(const round_ctx *c) {
  const tempo_mm_shape *sh = c->pr.sh;
  const size_t B = (size_t)sh->batch;
  const struct {
    const char *name;
    const float *a;
    size_t n;
  } in[] = {{"X (the layer's input)", c->pr.backward ? NULL : c->pr.X, B * sh->m * sh->n},
            {"W (the layer's weights)", c->pr.backward ? NULL : c->pr.W, B * sh->n * sh->p},
            {"dY (the gradient from the layer above)", c->pr.backward ? c->pr.dY : NULL, B * sh->m * sh->p}};
  for (size_t i = 0; i < sizeof in / sizeof in[0]; i++) {
    float v = 0;
    const bool rows = i == 0 && c->pr.Xr && !c->pr.backward; /* X given by rows */
    const long at = rows ? tempo_rows_find_nonfinite(c->pr.Xr, &v) : tempo_floats_find_nonfinite(in[i].a, in[i].n);
    if (at >= 0)
      return tempo_set_error(TEMPO_STATUS_NUMERIC,
                             "non-finite value %g in %s of a %s product (%dx%dx%dx%d), element %ld: the training "
                             "diverged or its data holds NaN/Inf; no worker is blamed",
                             (double)(rows ? v : in[i].a[at]), in[i].name, c->pr.backward ? "backward" : "forward", sh->batch,
                             sh->m, sh->n, sh->p, at);
  }
  return TEMPO_STATUS_OK;
}

/* After worker w failed on task t: recompute t, and if w was evicted, everything else it had. */
static tempo_status on_failure(tempo_round *rd, task *t, int w, int why) {
  round_ctx *c = (round_ctx *)rd;
  tempo_engine *e = c->e;
  tempo_status st0;
  if (why == TEMPO_WHY_VERIFY && (st0 = master_inputs_finite(c))) return st0;
  tempo_rounds_worker_failed(&e->r, w, why);
  if (t && why == TEMPO_WHY_COMPLAINED && e->r.live[w]) { /* its relay was bad, not it: again, W' inline */
    e->r.st.recomputed++;
    return send_task(e, c, t, w);
  }
  tempo_status st = TEMPO_STATUS_OK;
  if (t) { /* a chain member failed: the sum cannot be whole; what is resent goes as plain requests */
    const int sh_i = c->s->blocks[t->unit].share;
    if (c->reduced[sh_i]) c->reduce_broken[sh_i] = true;
    c->role[t->unit] = ROLE_PLAIN;
    if ((st = reassign(e, c, t))) return st;
  }
  if (!e->r.live[w])
    for (int i = 0; i < rd->ntasks; i++)
      if (rd->tasks[i].pending && rd->tasks[i].worker == w) {
        const int sh_i = c->s->blocks[rd->tasks[i].unit].share;
        if (c->reduced[sh_i]) c->reduce_broken[sh_i] = true;
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
  if (c->pr.backward) want |= (c->want_dx ? TEMPO_MSG_F_WANT_DX : 0) | (c->want_dw ? TEMPO_MSG_F_WANT_DW : 0);
  if (c->role[t->unit] == ROLE_MEMBER) { /* its dW' went down the chain */
    if (!c->want_dx) return h->op == TEMPO_OP_ACK;
    want &= ~(unsigned)TEMPO_MSG_F_WANT_DW;
  }
  return h->op == TEMPO_OP_RESULT && h->dtype == c->e->sc->dtype && h->batch == (uint32_t)sh->batch &&
         h->m == (uint32_t)sh->m && h->n == (uint32_t)sh->n && h->p == (uint32_t)sh->p && h->lo == b->lo &&
         h->hi == b->hi && h->flags == want;
}

static bool consume_cb(tempo_round *rd, task *t, const tempo_msg_header *h, const uint8_t *pay) {
  round_ctx *c = (round_ctx *)rd;
  return consume(c->e, c, t, h, pay);
}

static void task_done(tempo_round *rd, task *t) {
  round_ctx *c = (round_ctx *)rd;
  if (!c->pr.backward && c->pr.training) c->s->blocks[t->unit].holder = t->worker;
}

/* Encodes the instances of block b just before its first send, so the workers compute
 * the blocks already sent while the master blinds the next one. */
static tempo_status encode_range(tempo_engine *e, round_ctx *c, int lo, int hi) {
  const double t0 = tempo_now();
  tempo_status st = e->sc->ops->encode(e->sc, c->s->ss, &c->pr, lo, hi);
  e->r.st.t_blind += tempo_now() - t0;
  return st;
}

/* Sends the built messages of one share's tasks (ts[i] on ws[i]): as a relay group
 * (forward; each task then names its relayer, whom its bad-relay complaint blames) or
 * reduction chain (backward) when the transport can and the workers are distinct, else one
 * by one. */
static tempo_status send_share(tempo_engine *e, round_ctx *c, int share, int n, task *ts, const int *ws,
                               const tempo_out_msg *m, bool group, bool reduce) {
  bool distinct = true;
  for (int i = 0; i < n; i++)
    for (int k = 0; k < i; k++) distinct = distinct && ws[k] != ws[i];
  if (reduce && distinct) {
    for (int i = 0; i < n; i++) c->role[ts[i].unit] = i + 1 < n ? ROLE_MEMBER : ROLE_LAST;
    c->reduced[share] = true;
    return e->r.tr->ops->send_reduce(e->r.tr, n, ws, m);
  }
  if (group && distinct) {
    for (int i = 1; i < n && e->r.tr->relays; i++)
      ts[i].relayer = ws[i - 1], ts[i].relayer_task = (int)(&ts[i - 1] - c->base.tasks);
    return e->r.tr->ops->send_group(e->r.tr, n, ws, m, 1);
  }
  tempo_status st = TEMPO_STATUS_OK;
  for (int i = 0; i < n && !st; i++) st = e->r.tr->ops->send(e->r.tr, ws[i], &m[i]);
  return st;
}

/* Sends every task of c (to plan[block] in a forward, else the block's holder or a pick)
 * and collects checked results, recomputing failures. The tasks of a share are adjacent. */
static tempo_status run_round(tempo_engine *e, round_ctx *c, const int *plan) {
  tempo_status st;
  const double t_start = tempo_now();
  site *s = c->s;
  const tempo_mm_shape *sh = &s->k.shape;
  c->e = e;
  c->base.on_failure = on_failure;
  c->base.fits = reply_fits;
  c->base.consume = consume_cb;
  c->base.done = task_done;
  c->counting_naive = true;
  tempo_out_msg gm[MAX_BLOCKS];
  int gw[MAX_BLOCKS];
  task *tasks = c->base.tasks;
  for (int i0 = 0, i1; i0 < c->base.ntasks; i0 = i1) {
    const int share = s->blocks[tasks[i0].unit].share;
    for (i1 = i0; i1 < c->base.ntasks && s->blocks[tasks[i1].unit].share == share;) i1++;
    const int n = i1 - i0;
    /* a row-split forward shares W' (segment 1) among its blocks: one group send, so a
     * transport that relays puts W' on the wire once; a row-split backward with dW' adds
     * the partials along a chain in block order (the master's summation order) */
    const bool row_split = sh->batch == 1 && n > 1 && !e->r.no_relay;
    const bool group = row_split && !c->pr.backward && e->r.tr->ops->send_group;
    const bool reduce = row_split && c->may_reduce && c->want_dw && e->r.tr->ops->send_reduce &&
                        e->r.tr->can_reduce && e->reduce_failures < MAX_REDUCE_FAILURES;
    for (int i = i0; i < i1; i++) {
      task *t = &tasks[i];
      const block *b = &s->blocks[t->unit];
      const bool held = c->pr.backward && b->holder >= 0 && e->r.live[b->holder];
      const int w = plan ? plan[t->unit] : held ? b->holder : pick(e, s, &c->base, share, -1);
      if (w < 0) return tempo_set_error(TEMPO_STATUS_WORKER, "%s: no usable worker left for a share", e->sc->name);
      if (c->direct && (st = encode_range(e, c, (int)b->lo, (int)b->hi))) return st;
      if ((st = build_task(e, c, t, w, &gm[i - i0]))) return st;
      gw[i - i0] = w;
      if (!group && !reduce && (st = e->r.tr->ops->send(e->r.tr, w, &gm[i - i0]))) return st;
      if (!plan && e->sc->shares == 1) e->r.rr = (w + 1) % e->r.nw;
    }
    if ((group || reduce) && (st = send_share(e, c, share, n, &tasks[i0], gw, gm, group, reduce))) return st;
  }
  c->counting_naive = false;
  return tempo_rounds_collect(&e->r, &c->base, t_start);
}

/* ---- products ---- */

static tempo_status get_site(tempo_engine *e, int slot, site **out) {
  void *s;
  tempo_status st = tempo_rounds_site(&e->r, &e->sites, &e->n_sites, sizeof(site), slot, &s);
  *out = s;
  if (!st && !(*out)->owner && !((*out)->owner = malloc((size_t)e->r.nw)))
    return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "engine: out of memory");
  return st;
}

/* Room to gather every share's results of shape sh (nb: the most blocks of one share). */
static tempo_status prepare_gather(tempo_engine *e, const tempo_mm_shape *sh, int nb) {
  const size_t S = (size_t)e->sc->shares, z = rs(e);
  const size_t big = (size_t)(sh->n > sh->p ? sh->n : sh->p);
  size_t per, perw, bytes, bytesw;
  if (!tempo_mul3_size((size_t)sh->batch, (size_t)sh->m, big, &per) ||
      !tempo_mul3_size((size_t)(sh->batch > nb ? sh->batch : nb), (size_t)sh->n, (size_t)sh->p, &perw) ||
      !tempo_mul3_size(per, S, z, &bytes) || !tempo_mul3_size(perw, S, z, &bytesw))
    return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "engine: product too large");
  e->res_stride = per, e->resw_stride = perw;
  tempo_status st = tempo_grow_buffer(&e->res, &e->cap_res, bytes);
  return st ? st : tempo_grow_buffer(&e->resw, &e->cap_resw, bytesw);
}

static int max_share_blocks(const tempo_engine *e, const site *s) {
  int nb = 1;
  for (int i = 0; i < e->sc->shares; i++)
    if (s->first[i + 1] - s->first[i] > nb) nb = s->first[i + 1] - s->first[i];
  return nb;
}

/* One task per block, none sent yet. */
static void init_tasks(task *tasks, int nblocks) {
  memset(tasks, 0, (size_t)nblocks * sizeof *tasks);
  for (int i = 0; i < nblocks; i++) tasks[i].unit = i;
}

/* The scheme's finish on the gathered results (rows_taken: Y' / dX' went to take_rows),
 * timed as unblinding. */
static int finish(tempo_engine *e, const round_ctx *c, const void *const *dw) {
  const void *res[MAX_SHARES], *dws[MAX_SHARES];
  const site *s = c->s;
  const tempo_mm_shape *sh = c->pr.sh;
  const int S = e->sc->shares;
  const double t0 = tempo_now();
  int bad = -1;
  if (c->keep && sh->batch > 1) { /* by instance blocks (alike in every share), each share's read in place */
    const size_t xs = (size_t)sh->m * sh->n, ws = (size_t)sh->n * sh->p, ys = (size_t)sh->m * sh->p;
    const size_t zr = rs(e), rows = c->pr.backward ? xs : ys;
    for (int j = 0; j < s->first[1] && bad < 0; j++) {
      const int lo = (int)s->blocks[j].lo, hi = (int)s->blocks[j].hi;
      for (int i = 0; i < S; i++) {
        const int u = s->first[i] + j;
        res[i] = e->kres[u] ? e->kres[u] : off(res_of(e, i), (size_t)lo * rows, zr);
        dws[i] = !dw ? NULL : e->kdw[u] ? e->kdw[u] : off(dw[i], (size_t)lo * ws, zr);
      }
      tempo_mm_shape part = *sh;
      part.batch = hi - lo;
      tempo_product p = c->pr;
      p.sh = &part, p.keys = c->pr.keys + lo;
      p.X = p.X ? p.X + (size_t)lo * xs : NULL, p.W = p.W ? p.W + (size_t)lo * ws : NULL;
      p.dY = p.dY ? p.dY + (size_t)lo * ys : NULL;
      p.Y = p.Y ? p.Y + (size_t)lo * ys : NULL, p.dX = p.dX ? p.dX + (size_t)lo * xs : NULL;
      p.dW = p.dW ? p.dW + (size_t)lo * ws : NULL;
      bad = e->sc->ops->finish(e->sc, s->ss, &p, res, dws);
    }
  } else {
    for (int i = 0; i < S; i++) {
      const int u = s->first[i]; /* a kept batch-1 share is one block */
      res[i] = c->rows_direct ? NULL : e->kres[u] ? e->kres[u] : res_of(e, i), dws[i] = dw ? dw[i] : NULL;
    }
    bad = e->sc->ops->finish(e->sc, s->ss, &c->pr, res, dws);
  }
  e->r.st.t_unblind += tempo_now() - t0;
  return bad;
}

/* A backward's finish with dX' checked inside the combine: while a share fails, its worker is
 * charged and its block recomputed on another (as a check on arrival would), and finish runs
 * again on the new reply. */
static tempo_status finish_checked(tempo_engine *e, round_ctx *c, const void **dw) {
  for (;;) {
    const int bad = finish(e, c, dw);
    if (bad < 0) return TEMPO_STATUS_OK;
    task *t = &c->base.tasks[c->s->first[bad]]; /* one block per share when deferred */
    tempo_status st = on_failure(&c->base, t, t->worker, TEMPO_WHY_VERIFY);
    if (!st) st = tempo_rounds_collect(&e->r, &c->base, tempo_now());
    if (st) return st;
    for (int i = 0; i < e->sc->shares; i++) /* a recomputed reply replaced its share's kept one */
      if (e->kdw[c->s->first[i]]) dw[i] = e->kdw[c->s->first[i]];
  }
}

/* A backward whose dX goes to a row sink (round_ctx.sink_next), after its round: from the
 * first block not added on arrival, block by block in order, the held dX' is checked, decoded
 * and added (the scheme's check_take_dx), so the sums in the sink's destination have one order
 * whichever worker answered first or was recomputed (the same floats as a run without a
 * cheat). A failing block's worker is charged and the block recomputed, as a check on arrival
 * would, and the block resumes at its first row not added. */
static tempo_status sink_dx(tempo_engine *e, round_ctx *c) {
  const site *s = c->s;
  for (int u = c->sink_next; u < s->nblocks; u++, c->sink_next = u)
    for (;;) {
      task *t = &c->base.tasks[u];
      if (!e->kres[u]) return tempo_set_error(TEMPO_STATUS_INTERNAL, "engine: block %d's reply was not held", u);
      const double t0 = tempo_now();
      e->sc->share = s->blocks[u].share;
      e->sc->precision = tempo_rounds_precision(&e->r, t->worker);
      const bool ok = e->sc->ops->check_take_dx(e->sc, s->ss, &c->pr, (int)s->blocks[u].lo, (int)s->blocks[u].hi,
                                                e->kres[u]);
      e->r.st.t_verify += tempo_now() - t0;
      if (ok) break;
      tempo_status st = on_failure(&c->base, t, t->worker, TEMPO_WHY_VERIFY);
      if (!st) st = tempo_rounds_collect(&e->r, &c->base, tempo_now());
      if (st) return st;
    }
  return TEMPO_STATUS_OK;
}

tempo_status tempo_engine_forward(tempo_engine *e, int slot, unsigned kind, const tempo_mm_shape *sh,
                                  const float *X, const tempo_rows *Xr, const float *W, float *Y, bool training) {
  site *s;
  tempo_status st;
  size_t x, w, y;
  if ((st = get_site(e, slot, &s)) || (st = tempo_site_keys_prepare(&e->r, &s->k, sh, &x, &w, &y)) ||
      (st = e->sc->ops->prepare(e->sc, &s->ss, sh, false)))
    return st;
  s->k.fwd_valid = false;
  const tempo_route route = tempo_engine_route(e, kind);
  if (route == TEMPO_ROUTE_MASTER)
    return tempo_set_error(TEMPO_STATUS_INTERNAL, "engine: a product the policy keeps on the master was sent");
  if (Xr && (!e->sc->x_rows || sh->batch != 1 || Xr->rows != sh->m || Xr->cols != sh->n))
    return tempo_set_error(TEMPO_STATUS_INTERNAL, "engine: a row source this product's scheme cannot read");
  s->mixed = route == TEMPO_ROUTE_MIXED;
  int plan[MAX_BLOCKS];
  if ((st = split(e, s, training, plan))) return st;
  const bool direct = sh->batch > 1 && e->sc->shares == 1 && e->sc->ops->take_instances;
  if (!direct && (st = prepare_gather(e, sh, max_share_blocks(e, s)))) return st;
  round_ctx c = {.base = {.ntasks = s->nblocks}, .s = s, .direct = direct, .rows_direct = rows_direct(e, sh),
                 .keep = keep_plan(e, s, direct),
                 .pr = {.training = training, .sh = &s->k.shape, .keys = s->k.keys, .X = X, .Xr = Xr, .W = W,
                        .Y = Y, .mixed = s->mixed}};
  /* every block of a row split needs all of W', every share all instances: blind before the round */
  if (!direct && (st = encode_range(e, &c, 0, sh->batch))) return st;
  e->r.st.encryptions += 2 * (uint64_t)sh->batch;
  e->r.st.naive_encryptions += 2 * (uint64_t)sh->batch;
  e->r.tr->min_up += (uint64_t)s->nblocks * TEMPO_MSG_HEADER_SIZE + (uint64_t)e->sc->shares * (x + w) * es(e);
  task tasks[MAX_BLOCKS];
  init_tasks(tasks, s->nblocks);
  c.base.tasks = tasks;
  st = run_round(e, &c, plan);
  if (!st && !direct) (void)finish(e, &c, NULL); /* a forward's checks all ran on arrival */
  give_back_kept(e, &c);
  if (st) return st;
  e->r.st.decryptions += (uint64_t)sh->batch;
  e->r.st.products += (uint64_t)sh->batch;
  if (training) s->k.fwd_valid = true;
  else tempo_site_keys_wipe(&s->k);
  return TEMPO_STATUS_OK;
}

/* Batch 1: adds share sh_i's partial dW' in block order (deterministic) into its first
 * slot, *out; chain/sum_digest: tempo_rounds_sum_partials's blame (true: a member named). */
static bool sum_partials(tempo_engine *e, const site *s, int sh_i, const task *chain, const uint8_t *sum_digest,
                         void **out) {
  *out = resw_of(e, sh_i);
  return tempo_rounds_sum_partials(&e->r, *out, s->first[sh_i + 1] - s->first[sh_i],
                                   (size_t)s->k.shape.n * s->k.shape.p, rdtype(e), chain, sum_digest) >= 0;
}

/* After a backward round whose share sh_i went as a dW' reduction chain (batch 1): checks
 * the sum the last member returned with one Freivalds check over all rows (the master
 * holds X' and dY*). True when it holds; a broken chain or a wrong sum makes the caller
 * redo the partials. After MAX_REDUCE_FAILURES wrong sums whose culprit could not be named
 * the engine stops reducing, so nobody can make every step pay twice. */
static bool reduced_sum_ok(tempo_engine *e, const round_ctx *c, int sh_i) {
  const site *s = c->s;
  const tempo_mm_shape *sh = &s->k.shape;
  if (c->reduce_broken[sh_i]) return false;
  const int last = s->first[sh_i + 1] - s->first[sh_i] - 1;
  const void *dw = off(resw_of(e, sh_i), (size_t)last * sh->n * sh->p, rs(e));
  const double t0 = tempo_now();
  e->sc->dw_parts = last + 1;
  e->sc->precision = 0; /* the sum passed through several workers: the weakest declaration among them */
  for (int w = 0; w < e->r.nw; w++)
    if (e->r.live[w] && tempo_rounds_precision(&e->r, w) > e->sc->precision) e->sc->precision = tempo_rounds_precision(&e->r, w);
  e->sc->share = sh_i;
  const bool ok = e->sc->fused_forward /* a reduced sum is a batch-1 product's */
                      ? e->sc->ops->check_dw(e->sc, s->ss, &c->pr, 0, sh->m, dw)
                      : check_dw(e, &s->k.keys[0], sh->w_trans, sh->m, sh->n, sh->p,
                                 e->sc->ops->operand(s->ss, sh_i, TEMPO_OPERAND_X),
                                 e->sc->ops->operand(s->ss, sh_i, TEMPO_OPERAND_DY), dw);
  e->r.st.t_verify += tempo_now() - t0;
  if (!ok) e->r.st.verify_failures++;
  return ok;
}

/* Batch 1 with dW': each share's dW' (the workers' checked sum, else the partials summed
 * here, asking every block's partial again where a chain failed; a chain whose sum failed
 * although every member answered names the member that tampered, tempo_rounds_sum_partials). */
static tempo_status take_dw_sums(tempo_engine *e, round_ctx *c, const void **dw) {
  site *s = c->s;
  const size_t ws = (size_t)s->k.shape.n * s->k.shape.p;
  bool redo = false;
  bool again_share[MAX_SHARES] = {false}, blame[MAX_SHARES] = {false};
  uint8_t sum_digest[MAX_SHARES][TEMPO_MSG_CHAIN_DIGEST];
  for (int i = 0; i < e->sc->shares; i++) {
    const int n = s->first[i + 1] - s->first[i];
    void *last = woff(resw_of(e, i), (size_t)(n - 1) * ws, rs(e));
    if (e->kdw[s->first[i]]) { /* one block, its reply kept: its dW' is the share's */
      dw[i] = e->kdw[s->first[i]];
    } else if (c->reduced[i] && reduced_sum_ok(e, c, i)) {
      dw[i] = last;
    } else {
      again_share[i] = c->reduced[i];
      redo = redo || c->reduced[i];
      if ((blame[i] = c->reduced[i] && !c->reduce_broken[i])) tempo_msg_chain_digest(last, ws * rs(e), sum_digest[i]);
      dw[i] = NULL;
    }
  }
  task tasks[MAX_BLOCKS];
  if (redo) { /* one more round asking the failed chains' partials separately, each checked */
    int nt = 0;
    for (int i = 0; i < e->sc->shares; i++)
      for (int b = s->first[i]; again_share[i] && b < s->first[i + 1]; b++) {
        memset(&tasks[nt], 0, sizeof tasks[nt]);
        tasks[nt++].unit = b;
      }
    round_ctx again = {.base = {.tasks = tasks, .ntasks = nt}, .s = s, .pr = c->pr, .want_dw = true};
    again.pr.dX = NULL;
    e->r.st.recomputed += (uint64_t)nt;
    tempo_status st = run_round(e, &again, NULL);
    if (st) return st;
    for (int i = 0, k = 0; i < e->sc->shares; i++) /* blame only what the same workers recomputed */
      for (int b = s->first[i]; again_share[i] && b < s->first[i + 1]; b++, k++)
        blame[i] = blame[i] && tasks[k].worker == c->base.tasks[b].worker && c->base.tasks[b].reported;
  }
  for (int i = 0; i < e->sc->shares; i++) {
    if (dw[i]) continue;
    void *sum;
    const bool named = sum_partials(e, s, i, blame[i] ? &c->base.tasks[s->first[i]] : NULL, sum_digest[i], &sum);
    dw[i] = sum;
    if (c->reduced[i] && !c->reduce_broken[i] && !named && ++e->reduce_failures == MAX_REDUCE_FAILURES)
      fprintf(stderr,
              "tempo: %d wrong dW' sums from the workers without a culprit; summing on the master from now on\n",
              MAX_REDUCE_FAILURES);
  }
  return TEMPO_STATUS_OK;
}

/* What blinding each backward product from scratch would upload: dY and W^T for dX, X^T
 * and dY for dW, per block. */
static uint64_t naive_backward_bytes(const tempo_engine *e, const site *s, bool dx, bool dw) {
  uint64_t total = 0;
  const tempo_mm_shape *sh = &s->k.shape;
  for (int i = 0; i < s->nblocks; i++) {
    tempo_msg_header h;
    tempo_msg_header_init(&h, TEMPO_OP_BACKWARD);
    h.batch = (uint32_t)sh->batch, h.m = (uint32_t)sh->m, h.n = (uint32_t)sh->n, h.p = (uint32_t)sh->p;
    h.lo = s->blocks[i].lo, h.hi = s->blocks[i].hi;
    tempo_msg_sizes z;
    tempo_msg_split_sizes(&h, &z);
    if (dx) total += TEMPO_MSG_HEADER_SIZE + (z.dy + z.w) * es(e);
    if (dw) total += TEMPO_MSG_HEADER_SIZE + (z.x + z.dy) * es(e);
  }
  return total;
}

tempo_status tempo_engine_backward(tempo_engine *e, int slot, const tempo_mm_shape *sh, const float *dY, float *dX,
                                   const tempo_rows_sink *dXs, float *dW, unsigned flags, bool *sunk) {
  site *s;
  tempo_status st;
  *sunk = false;
  if ((st = get_site(e, slot, &s)) || (st = tempo_site_keys_backward_check(&s->k, sh))) return st;
  if (!dX && !dW) return TEMPO_STATUS_OK;
  const bool direct = sh->batch > 1 && e->sc->shares == 1 && e->sc->ops->take_instances;
  const bool keep = keep_plan(e, s, direct);
  /* dX' checked in the scheme's combine: a batch-1 dX whose kept shares are one block each (the
   * scheme's prepare clears it when its state cannot) */
  e->sc->dx_deferred = e->sc->dx_in_finish && dX && sh->batch == 1 && keep && e->cfg.verify_rounds > 0;
  if ((st = e->sc->ops->prepare(e->sc, &s->ss, sh, true))) return st;
  if (!direct && (st = prepare_gather(e, sh, max_share_blocks(e, s)))) return st;
  /* dX by rows where every block's dX' is checked in its decryption (consume's dx_in_dec) */
  const bool sink = dX && dXs && rows_direct(e, sh) && e->sc->fused_forward && e->sc->ops->check_take_dx &&
                    !(flags & TEMPO_MM_ACCUM_DX) && !e->sc->dx_deferred;
  round_ctx c = {.base = {.ntasks = s->nblocks}, .s = s, .want_dx = dX != NULL, .want_dw = dW != NULL,
                 .direct = direct, .may_reduce = true, .rows_direct = rows_direct(e, sh), .keep = keep,
                 .pr = {.backward = true, .sh = &s->k.shape, .keys = s->k.keys, .dY = dY, .dX = dX, .dW = dW,
                        .dXs = sink ? dXs : NULL, .accum = flags, .mixed = s->mixed}};
  *sunk = sink;
  if (!direct && (st = encode_range(e, &c, 0, sh->batch))) return st;
  e->r.st.encryptions += (uint64_t)sh->batch;
  const uint64_t outs = (dX ? 1u : 0u) + (dW ? 1u : 0u);
  e->r.st.naive_encryptions += 2 * outs * (uint64_t)sh->batch;
  const uint64_t naive = e->r.st.naive_bytes_up + naive_backward_bytes(e, s, dX != NULL, dW != NULL);
  e->r.tr->min_up += (uint64_t)s->nblocks * TEMPO_MSG_HEADER_SIZE +
                     (uint64_t)e->sc->shares * sh->batch * sh->m * sh->p * es(e);
  task tasks[MAX_BLOCKS];
  init_tasks(tasks, s->nblocks);
  c.base.tasks = tasks;
  const void *dw[MAX_SHARES] = {NULL};
  if (!(st = run_round(e, &c, NULL)) && sink) st = sink_dx(e, &c); /* before the dW' sums: a recomputed
                                                                     * block's reply brings its partial too */
  if (!st && !direct && dW && sh->batch == 1) st = take_dw_sums(e, &c, dw);
  if (st) {
    give_back_kept(e, &c);
    return st;
  }
  e->r.st.naive_bytes_up = naive; /* the round's own first sends are not the naive count */
  if (!direct) {
    if (dW && sh->batch > 1)
      for (int i = 0; i < e->sc->shares; i++) dw[i] = resw_of(e, i); /* kept blocks: finish reads them in place */
    st = finish_checked(e, &c, dw);
  }
  give_back_kept(e, &c);
  if (st) return st;
  e->r.st.decryptions += outs * (uint64_t)sh->batch;
  e->r.st.products += outs * (uint64_t)sh->batch;
  return TEMPO_STATUS_OK;
}

tempo_status tempo_engine_step_end(tempo_engine *e) {
  for (int i = 0; i < e->n_sites; i++)
    if (e->sites[i].k.used) tempo_site_keys_wipe(&e->sites[i].k);
  /* RELEASE every handle on every live worker that holds some, and wait for the ACKs */
  return tempo_rounds_release(&e->r, false);
}
