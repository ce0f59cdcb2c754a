/* shield_engine.c - the shield mode of the offload engine (shield_engine.h, shield.h,
 * docs/shield.md): tempo keys, fresh additive masks, four roles per product on four
 * distinct workers, Freivalds on every share, the linear combine step, recompute on a
 * spare worker that holds no other role of the product, eviction, step end.
 *
 * Shares are float64 by default (TEMPO_DTYPE_F64 requests; masks, Enc, Freivalds and the
 * combine in double, rounded to float32 before Dec), or float32 (tempo_shield_set_float64).
 * The site buffers hold either; their element size is es(e).
 *
 * Dimension letters as in matmul.h: X (m, n), W (n, p), Y (m, p), `batch` instances.
 * Each role gets the whole product in one message (rows [0, m) when batch == 1,
 * instances [0, batch) otherwise): the four roles are the parallelism. The mechanics
 * shared with engine.c (workers, eviction, messages, the receive loop, release, stats)
 * are in rounds.h. */

#include "offload/shield_engine.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "offload/rounds.h"
#include "tempo/common.h"
#include "tempo/shield.h"

#define NR TEMPO_SHIELD_ROLES


typedef struct {
  int worker;  /* holder of the role (-1 none) */
  bool cached; /* the holder keeps this role's operands under hx/hw */
  uint64_t hx, hw;
} role_slot;

typedef struct {
  tempo_site_keys k;        /* shape, keys (batch), fwd_valid */
  void *xm, *r;             /* X'' and R (batch, m, n), float or double */
  void *wm, *s;             /* W'' and S (batch, n, p) or (batch, p, n) */
  void *dym, *t;            /* dY** and T (batch, m, p) */
  size_t cap_x, cap_w, cap_r, cap_s, cap_t, cap_dym; /* bytes */
  role_slot role[NR];
  uint64_t seen[4]; /* workers (bit per worker, < 256) that held any role of this product this step */
} ssite;

typedef tempo_round_task stask; /* unit: the role */

typedef struct {
  tempo_round base; /* first: the callbacks get &base */
  tempo_shield_engine *e;
  ssite *s;
  int op;
  bool keep, want_dx, want_dw;
  stask tasks[NR];
} sround;

struct tempo_shield_engine {
  tempo_mm_config cfg;
  double alpha;
  bool f64; /* float64 shares (default) */
  tempo_rounds r; /* transport, keys, workers, stats */
  ssite *sites;
  int n_sites;
  float *vwork;   /* float32 checks */
  double *vwork64; /* float64 checks */
  size_t cap_vwork, cap_vwork64; /* bytes */
  /* shared by all sites (rounds run one at a time): one instance's plaintext mask and
   * masked operand (float or double), narrowed results; the combine accumulators (y, or dx
   * then dw); an aligned copy of a misaligned float64 reply */
  void *enc, *enc2, *rcopy;
  double *acc;
  size_t cap_enc, cap_enc2, cap_rcopy, cap_acc; /* bytes */
};

static tempo_status growb(tempo_shield_engine *e, void *bufp, size_t *cap, size_t bytes) {
  return tempo_rounds_grow(&e->r, bufp, cap, bytes);
}


static size_t es(const tempo_shield_engine *e) { return e->f64 ? sizeof(double) : sizeof(float); }
/* element i of a float or double buffer */
static void *at(void *base, size_t i, size_t esize) { return (uint8_t *)base + i * esize; }
static const void *cat(const void *base, size_t i, size_t esize) { return (const uint8_t *)base + i * esize; }

/* The dtype and its default alpha from TEMPO_SHIELD_DTYPE and TEMPO_SHIELD_ALPHA. */
static void dtype_from_env(tempo_shield_engine *e) {
  const char *dt = getenv("TEMPO_SHIELD_DTYPE");
  e->f64 = !(dt && !strcmp(dt, "f32"));
  e->alpha = e->f64 ? TEMPO_SHIELD_DEFAULT_ALPHA : TEMPO_SHIELD_DEFAULT_ALPHA_F32;
  const char *env = getenv("TEMPO_SHIELD_ALPHA");
  if (env && atof(env) > 0) e->alpha = atof(env);
}

tempo_status tempo_shield_engine_create(const tempo_mm_config *cfg, tempo_shield_engine **out) {
  *out = NULL;
  if (!tempo_transport_get_factory() && cfg->workers < TEMPO_SHIELD_MIN_WORKERS)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT,
                           "mode 'shield' needs at least %d workers (4 roles per product on distinct workers, "
                           "no two of which may collude; a 5th lets a failed role be recomputed); got %d",
                           TEMPO_SHIELD_MIN_WORKERS, cfg->workers);
  tempo_status st = TEMPO_STATUS_OK;
  tempo_shield_engine *e = calloc(1, sizeof *e);
  if (!e) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "shield: out of memory");
  e->cfg = *cfg;
  e->cfg.audit_dir = NULL;
  dtype_from_env(e);
  e->r.evict_prefix = "shield: ";
  e->r.notify_evict = false;
  if ((st = tempo_rounds_init(&e->r, cfg, "shield", "tempo-shield-keys"))) goto fail;
  if (e->r.nw < TEMPO_SHIELD_MIN_WORKERS) {
    st = tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT,
                         "mode 'shield' needs at least %d workers (4 roles per product on distinct workers, no two "
                         "of which may collude); the transport has %d",
                         TEMPO_SHIELD_MIN_WORKERS, e->r.nw);
    goto fail;
  }
  *out = e;
  return TEMPO_STATUS_OK;
fail:
  tempo_shield_engine_free(e);
  return st;
}

static void site_free(ssite *s) {
  tempo_site_keys_free(&s->k);
  void *f[] = {s->xm, s->r, s->wm, s->s, s->dym, s->t};
  for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) tempo_free_floats(f[i]);
  memset(s, 0, sizeof *s);
}

void tempo_shield_engine_free(tempo_shield_engine *e) {
  if (!e) return;
  tempo_rounds_free(&e->r);
  for (int i = 0; i < e->n_sites; i++) site_free(&e->sites[i]);
  free(e->sites);
  tempo_free_floats(e->vwork);
  tempo_free_floats((float *)e->vwork64);
  tempo_free_floats(e->enc);
  tempo_free_floats(e->enc2);
  tempo_free_floats(e->rcopy);
  tempo_free_floats((float *)e->acc);
  free(e);
}

void tempo_shield_engine_set_timeout(tempo_shield_engine *e, double seconds) {
  tempo_rounds_set_timeout(&e->r, seconds);
}
void tempo_shield_engine_set_alpha(tempo_shield_engine *e, double alpha) { e->alpha = alpha; }
int tempo_shield_engine_live_workers(const tempo_shield_engine *e) { return e->r.n_live; }
tempo_transport *tempo_shield_engine_transport(tempo_shield_engine *e) { return e->r.tr; }


tempo_status tempo_shield_set_alpha(tempo_mm *mm, double alpha) {
  tempo_shield_engine *e = mm ? tempo_mm_shield_engine(mm) : NULL;
  if (!e || !(alpha > 0))
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "shield: alpha needs a shield-mode engine and alpha > 0");
  e->alpha = alpha;
  return TEMPO_STATUS_OK;
}

tempo_status tempo_shield_set_float64(tempo_mm *mm, bool f64) {
  tempo_shield_engine *e = mm ? tempo_mm_shield_engine(mm) : NULL;
  if (!e) return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "shield: set_float64 needs a shield-mode engine");
  e->f64 = f64;
  e->alpha = f64 ? TEMPO_SHIELD_DEFAULT_ALPHA : TEMPO_SHIELD_DEFAULT_ALPHA_F32;
  return TEMPO_STATUS_OK;
}

void tempo_shield_engine_take_stats(tempo_shield_engine *e, tempo_mm_stats *run, tempo_mm_stats *step) {
  tempo_rounds_take_stats(&e->r, run, step);
}

/* ---- workers ---- */

/* A live worker that has held no role of site s in this step (the collusion rule), or -1. */
static int spare_worker(tempo_shield_engine *e, const ssite *s) {
  for (int k = 0; k < e->r.nw; k++) {
    int w = (e->r.rr + k) % e->r.nw;
    if (!e->r.live[w]) continue;
    if (!(s->seen[w / 64] >> (w % 64) & 1)) return w;
  }
  return -1;
}

/* ---- messages ---- */

static const void *role_x(const ssite *s, int role) { return tempo_shield_role_masked_x(role) ? s->xm : s->r; }
static const void *role_w(const ssite *s, int role) { return tempo_shield_role_masked_w(role) ? s->wm : s->s; }
static const void *role_dy(const ssite *s, int role) { return tempo_shield_role_masked_dy(role) ? s->dym : s->t; }

static void fill_header(const tempo_shield_engine *e, tempo_msg_header *h, const tempo_mm_shape *sh, int op) {
  tempo_msg_header_init(h, (tempo_msg_op)op);
  h->dtype = e->f64 ? TEMPO_DTYPE_F64 : TEMPO_DTYPE_F32;
  h->batch = (uint32_t)sh->batch, h->m = (uint32_t)sh->m, h->n = (uint32_t)sh->n, h->p = (uint32_t)sh->p;
  h->lo = 0;
  h->hi = (uint32_t)(sh->batch == 1 ? sh->m : sh->batch);
  h->flags = sh->w_trans ? TEMPO_MSG_F_W_TRANS : 0;
}

static tempo_status send_msg(tempo_shield_engine *e, int w, tempo_msg_header *h, int nseg, const void *const *seg,
                             const size_t *count) {
  return tempo_rounds_send(&e->r, w, h, nseg, seg, count, true);
}


static tempo_status send_task(tempo_shield_engine *e, sround *c, stask *t, int w) {
  ssite *s = c->s;
  role_slot *rs = &s->role[t->unit];
  tempo_msg_header h;
  fill_header(e, &h, &s->k.shape, c->op);
  h.task_id = t->task_id = ++e->r.next_task;
  h.handle_x = rs->hx;
  h.handle_w = rs->hw;
  tempo_msg_sizes z;
  tempo_msg_split_sizes(&h, &z);
  const void *seg[3];
  size_t cnt[3];
  int nseg = 0;
  if (c->op == TEMPO_OP_FORWARD) {
    h.flags |= TEMPO_MSG_F_X_INLINE | TEMPO_MSG_F_W_INLINE | (c->keep ? TEMPO_MSG_F_KEEP : 0);
    seg[0] = role_x(s, t->unit), cnt[0] = z.x, seg[1] = role_w(s, t->unit), cnt[1] = z.w, nseg = 2;
    if (c->keep) e->r.holds[w] = true;
  } else {
    h.flags |= (c->want_dx ? TEMPO_MSG_F_WANT_DX : 0) | (c->want_dw ? TEMPO_MSG_F_WANT_DW : 0);
    seg[nseg] = role_dy(s, t->unit), cnt[nseg++] = z.dy;
    const bool has = rs->cached && rs->worker == w;
    if (c->want_dw && !has) h.flags |= TEMPO_MSG_F_X_INLINE, seg[nseg] = role_x(s, t->unit), cnt[nseg++] = z.x;
    if (c->want_dx && !has) h.flags |= TEMPO_MSG_F_W_INLINE, seg[nseg] = role_w(s, t->unit), cnt[nseg++] = z.w;
  }
  t->worker = w;
  t->pending = true;
  t->sent_at = tempo_now();
  return send_msg(e, w, &h, nseg, seg, cnt);
}

/* ---- results ---- */

/* Freivalds on one share (float32 or float64 as the engine's dtype). */
static bool check(tempo_shield_engine *e, int r, int k, int cc, const void *A, bool at, const void *B, bool bt,
                  const void *C) {
  if (e->cfg.verify_rounds == 0) return true;
  uint64_t seed;
  tempo_keygen_bytes(e->r.kg, &seed, sizeof seed);
  if (e->f64)
    return tempo_shield_verify64(r, k, cc, A, at, B, bt, C, e->cfg.verify_rounds, seed, e->vwork64) == TEMPO_STATUS_OK;
  return tempo_verify_product(r, k, cc, A, at, B, bt, C, e->cfg.verify_rounds, seed, e->vwork) == TEMPO_STATUS_OK;
}

static void accumulate(const tempo_shield_engine *e, double *acc, const void *share, int sign, size_t n) {
  if (e->f64) tempo_shield_accumulate64(acc, share, sign, n);
  else tempo_shield_accumulate(acc, share, sign, n);
}

/* Verifies every instance of role t->unit's share, then adds it with its sign into the
 * accumulators. False when a check fails (nothing is accumulated then). */
static bool consume(tempo_shield_engine *e, sround *c, stask *t, const tempo_msg_header *h, const void *pay) {
  ssite *s = c->s;
  const tempo_mm_shape *sh = &s->k.shape;
  const int m = sh->m, n = sh->n, p = sh->p, B = sh->batch, role = t->unit;
  const bool wt = sh->w_trans;
  const size_t xs = (size_t)m * n, ws = (size_t)n * p, ys = (size_t)m * p, z = es(e);
  double t0 = tempo_now();
  if (((uintptr_t)pay & (z - 1)) != 0) { /* a transport buffer not aligned for doubles */
    if (growb(e, &e->rcopy, &e->cap_rcopy, (size_t)h->payload_len)) return false;
    memcpy(e->rcopy, pay, (size_t)h->payload_len);
    pay = e->rcopy;
  }
  const void *xo = role_x(s, role), *wo = role_w(s, role), *dyo = role_dy(s, role);
  const void *dxr = pay, *dwr = cat(pay, c->want_dx ? (size_t)B * xs : 0, z);
  bool ok = true;
  for (int i = 0; i < B && ok; i++) {
    const void *xi = cat(xo, i * xs, z), *wi = cat(wo, i * ws, z), *dyi = cat(dyo, i * ys, z);
    if (c->op == TEMPO_OP_FORWARD) {
      ok = check(e, m, n, p, xi, false, wi, wt, cat(pay, i * ys, z));
    } else {
      if (c->want_dx) ok = check(e, m, p, n, dyi, false, wi, !wt, cat(dxr, i * xs, z));
      if (ok && c->want_dw) {
        if (wt) ok = check(e, p, m, n, dyi, true, xi, false, cat(dwr, i * ws, z));
        else ok = check(e, n, m, p, xi, true, dyi, false, cat(dwr, i * ws, z));
      }
    }
  }
  double t1 = tempo_now();
  e->r.st.t_verify += t1 - t0;
  if (ok) {
    e->r.st.t_compute += (double)h->compute_ns * 1e-9;
    if (c->op == TEMPO_OP_FORWARD) {
      accumulate(e, e->acc, pay, tempo_shield_sign_y(role), (size_t)B * ys);
    } else {
      if (c->want_dx) accumulate(e, e->acc, dxr, tempo_shield_sign_dx(role), (size_t)B * xs);
      if (c->want_dw) accumulate(e, e->acc + (size_t)B * xs, dwr, tempo_shield_sign_dw(role), (size_t)B * ws);
    }
    e->r.st.t_unblind += tempo_now() - t1;
  }
  c->base.consume_time += tempo_now() - t0;
  return ok;
}

static tempo_status on_failure(tempo_round *rd, stask *t, int w, int why) {
  sround *c = (sround *)rd;
  tempo_shield_engine *e = c->e;
  tempo_rounds_worker_failed(&e->r, w, why);
  if (!t) return TEMPO_STATUS_OK;
  t->pending = false;
  int w2 = spare_worker(e, c->s);
  if (w2 < 0)
    return tempo_set_error(TEMPO_STATUS_WORKER,
                           "shield: worker %d %s and no spare worker is left that holds no other role of this "
                           "product (shield mode never gives two roles of a product to one worker)",
                           w, tempo_rounds_why(why));
  role_slot *rs = &c->s->role[t->unit];
  rs->worker = w2;
  c->s->seen[w2 / 64] |= 1ull << (w2 % 64);
  rs->cached = c->op == TEMPO_OP_FORWARD && c->keep;
  e->r.st.recomputed++;
  return send_task(e, c, t, w2);
}

static bool reply_fits(tempo_round *rd, const stask *t, const tempo_msg_header *h) {
  const sround *c = (const sround *)rd;
  const tempo_shield_engine *e = c->e;
  const tempo_mm_shape *sh = &c->s->k.shape;
  unsigned want = sh->w_trans ? TEMPO_MSG_F_W_TRANS : 0;
  if (c->op == TEMPO_OP_BACKWARD)
    want |= (c->want_dx ? TEMPO_MSG_F_WANT_DX : 0) | (c->want_dw ? TEMPO_MSG_F_WANT_DW : 0);
  return h->op == TEMPO_OP_RESULT && h->dtype == (e->f64 ? TEMPO_DTYPE_F64 : TEMPO_DTYPE_F32) &&
         h->batch == (uint32_t)sh->batch && h->m == (uint32_t)sh->m &&
         h->n == (uint32_t)sh->n && h->p == (uint32_t)sh->p && h->lo == 0 &&
         h->hi == (uint32_t)(sh->batch == 1 ? sh->m : sh->batch) && h->flags == want;
}

static bool consume_cb(tempo_round *rd, stask *t, const tempo_msg_header *h, const uint8_t *pay) {
  sround *c = (sround *)rd;
  return consume(c->e, c, t, h, pay);
}

static void task_done(tempo_round *rd, stask *t) {
  sround *c = (sround *)rd;
  if (c->op == TEMPO_OP_FORWARD && c->keep) c->s->role[t->unit].cached = true;
}

/* Sends the four role tasks and collects verified shares, recomputing failures. */
static tempo_status run_round(tempo_shield_engine *e, sround *c) {
  tempo_status st;
  const double t_start = tempo_now();
  c->e = e;
  c->base = (tempo_round){.tasks = c->tasks, .ntasks = NR, .on_failure = on_failure, .fits = reply_fits,
                          .consume = consume_cb, .done = task_done};
  for (int r = 0; r < NR; r++) {
    stask *t = &c->tasks[r];
    role_slot *rs = &c->s->role[r];
    memset(t, 0, sizeof *t);
    t->unit = r;
    if (rs->worker < 0 || !e->r.live[rs->worker]) { /* holder evicted since the forward */
      rs->worker = -1;
      rs->cached = false;
      int w = spare_worker(e, c->s);
      if (w < 0) return tempo_set_error(TEMPO_STATUS_WORKER, "shield: fewer than %d usable workers left", NR);
      rs->worker = w;
      c->s->seen[w / 64] |= 1ull << (w % 64);
    }
    if ((st = send_task(e, c, t, rs->worker))) return st;
  }
  return tempo_rounds_collect(&e->r, &c->base, t_start);
}

/* ---- products ---- */

static tempo_status get_site(tempo_shield_engine *e, int slot, ssite **out) {
  void *s;
  tempo_status st = tempo_rounds_site(&e->r, &e->sites, &e->n_sites, sizeof(ssite), slot, &s);
  *out = s;
  return st;
}

static tempo_status prepare_site(tempo_shield_engine *e, ssite *s, const tempo_mm_shape *sh) {
  tempo_status st;
  size_t x, w, y, one;
  if ((st = tempo_site_keys_prepare(&e->r, &s->k, sh, &x, &w, &y))) return st;
  one = x > w ? x : w;
  one = one > y ? one : y;
  const size_t z = es(e); /* x, w, y: elements of at most 2^68 bytes total by the caps; sizes below fit */
  if ((st = growb(e, &s->xm, &s->cap_x, x * z)) || (st = growb(e, &s->r, &s->cap_r, x * z)) ||
      (st = growb(e, &s->wm, &s->cap_w, w * z)) || (st = growb(e, &s->s, &s->cap_s, w * z)) ||
      (st = growb(e, &e->enc, &e->cap_enc, one * sizeof(double))) ||
      (st = growb(e, &e->enc2, &e->cap_enc2, one * sizeof(double))) ||
      (st = growb(e, &e->acc, &e->cap_acc, (x + w > y ? x + w : y) * sizeof(double))))
    return st;
  size_t need = 3 * ((size_t)sh->m + sh->n + sh->p) + 64;
  if ((st = growb(e, &e->vwork64, &e->cap_vwork64, need * sizeof(double)))) return st;
  return growb(e, &e->vwork, &e->cap_vwork, need * sizeof(float));
}

/* Masks one plaintext operand instance A (n floats) in the plaintext domain, then
 * blinds both: R0 = sigma N(0,1) with sigma = alpha rms(A); *masked = Enc(A + R0),
 * *mask = Enc(R0). Masking before Enc keeps every share's magnitude proportional to the
 * key scale of its row and column, so the combine loses the same relative precision in
 * every element (masking after Enc with one sigma swamps rows with small key scales). */
typedef enum { OPER_X, OPER_W, OPER_DY } oper_kind;
static void mask_into(tempo_shield_engine *e, ssite *s, const tempo_obf_key *k, oper_kind kind, const float *A,
                      void *mask, void *masked, size_t n) {
  uint8_t seed[TEMPO_SHIELD_SEED_BYTES];
  tempo_keygen_bytes(e->r.kg, seed, sizeof seed);
  const bool wt = s->k.shape.w_trans;
  if (e->f64) { /* X + R0 and R0 in double, blinded in double */
    double *r0 = e->enc2, *sum = e->enc;
    tempo_shield_expand64(seed, e->alpha * tempo_shield_rms(A, n), r0, n);
    for (size_t i = 0; i < n; i++) sum[i] = (double)A[i] + r0[i];
    if (kind == OPER_X) tempo_shield_enc_x64(k, sum, masked), tempo_shield_enc_x64(k, r0, mask);
    else if (kind == OPER_W) tempo_shield_enc_w64(k, wt, sum, masked), tempo_shield_enc_w64(k, wt, r0, mask);
    else tempo_shield_enc_dy64(k, sum, masked), tempo_shield_enc_dy64(k, r0, mask);
  } else {
    float *r0 = e->enc2, *sum = e->enc;
    tempo_shield_expand(seed, tempo_shield_sigma(e->alpha, tempo_shield_rms(A, n)), r0, n);
    tempo_shield_add(A, r0, sum, n);
    if (kind == OPER_X) tempo_obf_enc_x(k, sum, masked), tempo_obf_enc_x(k, r0, mask);
    else if (kind == OPER_W) tempo_obf_enc_w(k, wt, sum, masked), tempo_obf_enc_w(k, wt, r0, mask);
    else tempo_obf_enc_dy(k, sum, masked), tempo_obf_enc_dy(k, r0, mask);
  }
  sodium_memzero(seed, sizeof seed);
}

tempo_status tempo_shield_engine_forward(tempo_shield_engine *e, int slot, const tempo_mm_shape *sh, const float *X,
                                         const float *W, float *Y, bool training) {
  ssite *s;
  tempo_status st;
  if ((st = get_site(e, slot, &s)) || (st = prepare_site(e, s, sh))) return st;
  s->k.fwd_valid = false;
  int roles[NR];
  if (!tempo_shield_assign(e->r.nw, e->r.live, e->r.rr, roles))
    return tempo_set_error(TEMPO_STATUS_WORKER, "shield: fewer than %d live workers (%d left)", NR, e->r.n_live);
  /* advance by 4: with exactly 4 workers worker i always holds role i (a worker's view is
   * one role's view); with more, the roles spread over all workers */
  e->r.rr = (e->r.rr + NR) % e->r.nw;
  memset(s->seen, 0, sizeof s->seen);
  for (int r = 0; r < NR; r++) {
    s->seen[roles[r] / 64] |= 1ull << (roles[r] % 64);
    s->role[r].worker = roles[r];
    s->role[r].cached = false;
    s->role[r].hx = training ? ++e->r.next_handle : 0;
    s->role[r].hw = training ? ++e->r.next_handle : 0;
  }
  const size_t xs = (size_t)sh->m * sh->n, ws = (size_t)sh->n * sh->p, ys = (size_t)sh->m * sh->p;
  double t0 = tempo_now();
  for (int i = 0; i < sh->batch; i++) {
    if ((st = tempo_keygen_fill(e->r.kg, &s->k.keys[i]))) return st;
    mask_into(e, s, &s->k.keys[i], OPER_X, X + i * xs, at(s->r, i * xs, es(e)), at(s->xm, i * xs, es(e)), xs);
    mask_into(e, s, &s->k.keys[i], OPER_W, W + i * ws, at(s->s, i * ws, es(e)), at(s->wm, i * ws, es(e)), ws);
  }
  e->r.st.t_blind += tempo_now() - t0;
  e->r.st.encryptions += 2 * (uint64_t)sh->batch;
  e->r.st.naive_encryptions += 2 * (uint64_t)sh->batch;
  memset(e->acc, 0, (size_t)sh->batch * ys * sizeof *e->acc);
  sround c = {.s = s, .op = TEMPO_OP_FORWARD, .keep = training};
  if ((st = run_round(e, &c))) return st;
  double t1 = tempo_now();
  for (int i = 0; i < sh->batch; i++) {
    tempo_shield_narrow(e->acc + i * ys, e->enc, ys);
    tempo_obf_dec_y(&s->k.keys[i], e->enc, Y + i * ys);
  }
  e->r.st.t_unblind += tempo_now() - t1;
  e->r.st.decryptions += (uint64_t)sh->batch;
  e->r.st.products += (uint64_t)sh->batch;
  if (training) s->k.fwd_valid = true;
  else tempo_site_keys_wipe(&s->k);
  return TEMPO_STATUS_OK;
}

tempo_status tempo_shield_engine_backward(tempo_shield_engine *e, int slot, const tempo_mm_shape *sh, const float *dY,
                                          float *dX, float *dW, unsigned flags) {
  ssite *s;
  tempo_status st;
  if ((st = get_site(e, slot, &s)) || (st = tempo_site_keys_backward_check(&s->k, sh))) return st;
  if (!dX && !dW) return TEMPO_STATUS_OK;
  const size_t B = (size_t)sh->batch, xs = (size_t)sh->m * sh->n, ws = (size_t)sh->n * sh->p,
               ys = (size_t)sh->m * sh->p;
  if ((st = growb(e, &s->dym, &s->cap_dym, B * ys * es(e))) || (st = growb(e, &s->t, &s->cap_t, B * ys * es(e))))
    return st;
  double t0 = tempo_now();
  for (size_t i = 0; i < B; i++)
    mask_into(e, s, &s->k.keys[i], OPER_DY, dY + i * ys, at(s->t, i * ys, es(e)), at(s->dym, i * ys, es(e)), ys);
  e->r.st.t_blind += tempo_now() - t0;
  e->r.st.encryptions += B;
  const uint64_t outs = (dX ? 1u : 0u) + (dW ? 1u : 0u);
  e->r.st.naive_encryptions += 2 * outs * B;
  memset(e->acc, 0, (B * xs + B * ws) * sizeof *e->acc);
  sround c = {.s = s, .op = TEMPO_OP_BACKWARD, .want_dx = dX != NULL, .want_dw = dW != NULL};
  if ((st = run_round(e, &c))) return st;
  double t1 = tempo_now();
  for (size_t i = 0; i < B; i++) {
    if (dX) {
      tempo_shield_narrow(e->acc + i * xs, e->enc, xs);
      tempo_obf_dec_dx(&s->k.keys[i], e->enc, dX + i * xs, flags & TEMPO_MM_ACCUM_DX);
    }
    if (dW) {
      tempo_shield_narrow(e->acc + B * xs + i * ws, e->enc, ws);
      tempo_obf_dec_dw(&s->k.keys[i], sh->w_trans, e->enc, dW + i * ws, flags & TEMPO_MM_ACCUM_DW);
    }
  }
  e->r.st.t_unblind += tempo_now() - t1;
  e->r.st.decryptions += outs * B;
  e->r.st.products += outs * B;
  return TEMPO_STATUS_OK;
}

tempo_status tempo_shield_engine_step_end(tempo_shield_engine *e) {
  for (int i = 0; i < e->n_sites; i++) {
    ssite *s = &e->sites[i];
    if (!s->k.used) continue;
    tempo_site_keys_wipe(&s->k);
    for (int r = 0; r < NR; r++) s->role[r].worker = -1, s->role[r].cached = false;
  }
  return tempo_rounds_release(&e->r, true);
}
