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
 * instances [0, batch) otherwise): the four roles are the parallelism. */
#include "offload/shield_engine.h"

#include <cblas.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tempo/audit.h"
#include "tempo/common.h"
#include "tempo/obf.h"
#include "tempo/shield.h"

#define NR TEMPO_SHIELD_ROLES
#define ABANDONED 8
#define MAX_FAILURES 3

typedef struct {
  int worker;  /* holder of the role (-1 none) */
  bool cached; /* the holder keeps this role's operands under hx/hw */
  uint64_t hx, hw;
} role_slot;

typedef struct {
  bool used, fwd_valid;
  tempo_mm_shape shape;
  int nkeys;
  tempo_obf_key *keys;      /* (batch) */
  void *xm, *r;             /* X'' and R (batch, m, n), float or double */
  void *wm, *s;             /* W'' and S (batch, n, p) or (batch, p, n) */
  void *dym, *t;            /* dY** and T (batch, m, p) */
  size_t cap_x, cap_w, cap_r, cap_s, cap_t, cap_dym; /* bytes */
  role_slot role[NR];
  uint64_t seen[4]; /* workers (bit per worker, < 256) that held any role of this product this step */
} ssite;

typedef struct {
  int role;
  uint64_t task_id;
  int worker;
  double sent_at;
  bool pending;
} stask;

typedef struct {
  ssite *s;
  int op;
  bool keep, want_dx, want_dw;
  stask tasks[NR];
  double consume_time;
} sround;

struct tempo_shield_engine {
  tempo_mm_config cfg;
  double alpha;
  bool f64; /* float64 shares (default) */
  tempo_transport *tr;
  tempo_keygen *kg;
  tempo_audit_writer *audit;
  int nw, n_live, rr;
  bool *live, *holds;
  int *fails;
  uint64_t *abandoned;
  int *ab_next;
  double timeout;
  uint64_t next_task, next_handle;
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
  size_t cap_enc, cap_enc2, cap_rcopy, cap_acc; /* bytes; cap_acc: doubles */
  tempo_mm_stats st;
};

/* A 64-byte aligned buffer of at least `bytes` bytes (grow only). */
static tempo_status growb(void *bufp, size_t *cap, size_t bytes) {
  void **buf = bufp;
  if (*cap >= bytes && *buf) return TEMPO_STATUS_OK;
  tempo_free_floats(*buf);
  *buf = tempo_alloc_floats((bytes + 7) / sizeof(float));
  *cap = *buf ? bytes : 0;
  if (!*buf) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "shield: out of memory for %zu bytes", bytes);
  return TEMPO_STATUS_OK;
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

static tempo_status growd(double **buf, size_t *cap, size_t count) {
  if (*cap >= count && *buf) return TEMPO_STATUS_OK;
  free(*buf);
  *buf = malloc(count * sizeof **buf);
  *cap = *buf ? count : 0;
  if (!*buf) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "shield: out of memory for %zu doubles", count);
  return TEMPO_STATUS_OK;
}

tempo_status tempo_shield_engine_create(const tempo_mm_config *cfg, tempo_shield_engine **out) {
  *out = NULL;
  tempo_transport_factory make = tempo_transport_get_factory();
  if (!make && cfg->workers < TEMPO_SHIELD_MIN_WORKERS)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT,
                           "mode 'shield' needs at least %d workers (4 roles per product on distinct workers, "
                           "no two of which may collude; a 5th lets a failed role be recomputed); got %d",
                           TEMPO_SHIELD_MIN_WORKERS, cfg->workers);
  if (sodium_init() < 0) return tempo_set_error(TEMPO_STATUS_INTERNAL, "shield: libsodium failed to start");
  tempo_status st = TEMPO_STATUS_OK;
  tempo_shield_engine *e = calloc(1, sizeof *e);
  if (!e) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "shield: out of memory");
  e->cfg = *cfg;
  e->cfg.audit_dir = NULL;
  dtype_from_env(e);
  e->timeout = 60.0;
  /* the master mostly waits; each in-process worker thread runs single-threaded BLAS */
  openblas_set_num_threads(1);
  /* the in-process threads, or the registered transport (MPI under mpirun) */
  if ((st = make ? make(cfg->workers, &e->tr) : tempo_transport_inproc_create(cfg->workers, &e->tr))) goto fail;
  if (e->tr->timeout_s > 0) e->timeout = e->tr->timeout_s;
  e->nw = e->n_live = e->tr->n_workers;
  if (e->nw < TEMPO_SHIELD_MIN_WORKERS) {
    st = tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT,
                         "mode 'shield' needs at least %d workers (4 roles per product on distinct workers, no two "
                         "of which may collude); the transport has %d",
                         TEMPO_SHIELD_MIN_WORKERS, e->nw);
    goto fail;
  }
  e->live = calloc((size_t)e->nw, sizeof *e->live);
  e->holds = calloc((size_t)e->nw, sizeof *e->holds);
  e->fails = calloc((size_t)e->nw, sizeof *e->fails);
  e->ab_next = calloc((size_t)e->nw, sizeof *e->ab_next);
  e->abandoned = calloc((size_t)e->nw * ABANDONED, sizeof *e->abandoned);
  if (!e->live || !e->holds || !e->fails || !e->ab_next || !e->abandoned) {
    st = tempo_set_error(TEMPO_STATUS_NO_MEMORY, "shield: out of memory");
    goto fail;
  }
  for (int i = 0; i < e->nw; i++) e->live[i] = true;
  tempo_keyspace ks;
  tempo_keyspace_default(&ks);
  uint8_t secret[32];
  if (cfg->seed) {
    uint8_t sb[8];
    for (int i = 0; i < 8; i++) sb[i] = (uint8_t)(cfg->seed >> (8 * i));
    crypto_generichash(secret, sizeof secret, sb, sizeof sb, (const uint8_t *)"tempo-shield-keys", 17);
  }
  st = tempo_keygen_create(cfg->seed ? secret : NULL, &ks, &e->kg);
  sodium_memzero(secret, sizeof secret);
  if (st) goto fail;
  if (cfg->audit_dir && (st = tempo_audit_writer_open(cfg->audit_dir, &e->audit))) goto fail;
  *out = e;
  return TEMPO_STATUS_OK;
fail:
  tempo_shield_engine_free(e);
  return st;
}

static void site_free(ssite *s) {
  for (int i = 0; i < s->nkeys; i++) tempo_obf_key_free(&s->keys[i]);
  free(s->keys);
  void *f[] = {s->xm, s->r, s->wm, s->s, s->dym, s->t};
  for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) tempo_free_floats(f[i]);
  memset(s, 0, sizeof *s);
}

void tempo_shield_engine_free(tempo_shield_engine *e) {
  if (!e) return;
  if (e->tr) e->tr->ops->free(e->tr);
  for (int i = 0; i < e->n_sites; i++) site_free(&e->sites[i]);
  free(e->sites);
  tempo_keygen_free(e->kg);
  if (tempo_audit_writer_close(e->audit)) fprintf(stderr, "tempo: %s\n", tempo_errmsg());
  tempo_free_floats(e->vwork);
  tempo_free_floats((float *)e->vwork64);
  tempo_free_floats(e->enc);
  tempo_free_floats(e->enc2);
  tempo_free_floats(e->rcopy);
  free(e->acc);
  free(e->live);
  free(e->holds);
  free(e->fails);
  free(e->ab_next);
  free(e->abandoned);
  free(e);
}

void tempo_shield_engine_set_timeout(tempo_shield_engine *e, double seconds) { e->timeout = seconds > 0 ? seconds : 1e-3; }
void tempo_shield_engine_set_alpha(tempo_shield_engine *e, double alpha) { e->alpha = alpha; }
int tempo_shield_engine_live_workers(const tempo_shield_engine *e) { return e->n_live; }
tempo_transport *tempo_shield_engine_transport(tempo_shield_engine *e) { return e->tr; }

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

/* ---- workers ---- */

enum { WHY_VERIFY, WHY_TIMEOUT, WHY_ERROR, WHY_MALFORMED, WHY_OTHER_TASK };
static const char *const why_text[] = {"failed verification", "timed out", "sent an error reply",
                                       "sent a malformed reply", "sent a reply for another task"};

static void worker_failed(tempo_shield_engine *e, int w, int why) {
  if (why == WHY_VERIFY) e->st.verify_failures++;
  else if (why == WHY_TIMEOUT) e->st.timeouts++;
  else e->st.worker_errors++;
  e->fails[w]++;
  if (e->live[w] && e->fails[w] >= MAX_FAILURES) {
    e->live[w] = false;
    e->n_live--;
    e->st.evictions++;
    e->tr->evicted++;
    fprintf(stderr, "tempo: shield: evicting worker %d: %s %d times\n", w, why_text[why], e->fails[w]);
  }
}

/* A live worker that has held no role of site s in this step (the collusion rule), or -1. */
static int spare_worker(tempo_shield_engine *e, const ssite *s) {
  for (int k = 0; k < e->nw; k++) {
    int w = (e->rr + k) % e->nw;
    if (!e->live[w]) continue;
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
  tempo_out_msg m;
  m.nseg = nseg;
  uint64_t total = 0;
  for (int i = 0; i < nseg; i++) {
    m.seg[i] = (const uint8_t *)seg[i];
    m.seg_len[i] = count[i] * tempo_msg_dtype_size(h->dtype);
    total += m.seg_len[i];
  }
  h->payload_len = total;
  if (tempo_msg_header_check(h))
    return tempo_set_error(TEMPO_STATUS_INTERNAL, "shield: built a bad request: %s", tempo_errmsg());
  tempo_msg_header_write(h, m.header);
  tempo_status st;
  if (e->audit && (st = tempo_audit_write(e->audit, TEMPO_AUDIT_UP, w, m.header, nseg, m.seg, m.seg_len)))
    return st;
  e->st.bytes_up += TEMPO_MSG_HEADER_SIZE + total;
  e->st.naive_bytes_up += TEMPO_MSG_HEADER_SIZE + total;
  return e->tr->ops->send(e->tr, w, &m);
}

static tempo_status send_task(tempo_shield_engine *e, sround *c, stask *t, int w) {
  ssite *s = c->s;
  role_slot *rs = &s->role[t->role];
  tempo_msg_header h;
  fill_header(e, &h, &s->shape, c->op);
  h.task_id = t->task_id = ++e->next_task;
  h.handle_x = rs->hx;
  h.handle_w = rs->hw;
  tempo_msg_sizes z;
  tempo_msg_split_sizes(&h, &z);
  const void *seg[3];
  size_t cnt[3];
  int nseg = 0;
  if (c->op == TEMPO_OP_FORWARD) {
    h.flags |= TEMPO_MSG_F_X_INLINE | TEMPO_MSG_F_W_INLINE | (c->keep ? TEMPO_MSG_F_KEEP : 0);
    seg[0] = role_x(s, t->role), cnt[0] = z.x, seg[1] = role_w(s, t->role), cnt[1] = z.w, nseg = 2;
    if (c->keep) e->holds[w] = true;
  } else {
    h.flags |= (c->want_dx ? TEMPO_MSG_F_WANT_DX : 0) | (c->want_dw ? TEMPO_MSG_F_WANT_DW : 0);
    seg[nseg] = role_dy(s, t->role), cnt[nseg++] = z.dy;
    const bool has = rs->cached && rs->worker == w;
    if (c->want_dw && !has) h.flags |= TEMPO_MSG_F_X_INLINE, seg[nseg] = role_x(s, t->role), cnt[nseg++] = z.x;
    if (c->want_dx && !has) h.flags |= TEMPO_MSG_F_W_INLINE, seg[nseg] = role_w(s, t->role), cnt[nseg++] = z.w;
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
  tempo_keygen_bytes(e->kg, &seed, sizeof seed);
  if (e->f64)
    return tempo_shield_verify64(r, k, cc, A, at, B, bt, C, e->cfg.verify_rounds, seed, e->vwork64) == TEMPO_STATUS_OK;
  return tempo_verify_product(r, k, cc, A, at, B, bt, C, e->cfg.verify_rounds, seed, e->vwork) == TEMPO_STATUS_OK;
}

static void accumulate(const tempo_shield_engine *e, double *acc, const void *share, int sign, size_t n) {
  if (e->f64) tempo_shield_accumulate64(acc, share, sign, n);
  else tempo_shield_accumulate(acc, share, sign, n);
}

/* Verifies every instance of role t->role's share, then adds it with its sign into the
 * accumulators. False when a check fails (nothing is accumulated then). */
static bool consume(tempo_shield_engine *e, sround *c, stask *t, const tempo_msg_header *h, const void *pay) {
  ssite *s = c->s;
  const tempo_mm_shape *sh = &s->shape;
  const int m = sh->m, n = sh->n, p = sh->p, B = sh->batch, role = t->role;
  const bool wt = sh->w_trans;
  const size_t xs = (size_t)m * n, ws = (size_t)n * p, ys = (size_t)m * p, z = es(e);
  double t0 = tempo_now();
  if (((uintptr_t)pay & (z - 1)) != 0) { /* a transport buffer not aligned for doubles */
    if (growb(&e->rcopy, &e->cap_rcopy, (size_t)h->payload_len)) return false;
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
  e->st.t_verify += t1 - t0;
  if (ok) {
    e->st.t_compute += (double)h->compute_ns * 1e-9;
    if (c->op == TEMPO_OP_FORWARD) {
      accumulate(e, e->acc, pay, tempo_shield_sign_y(role), (size_t)B * ys);
    } else {
      if (c->want_dx) accumulate(e, e->acc, dxr, tempo_shield_sign_dx(role), (size_t)B * xs);
      if (c->want_dw) accumulate(e, e->acc + (size_t)B * xs, dwr, tempo_shield_sign_dw(role), (size_t)B * ws);
    }
    e->st.t_unblind += tempo_now() - t1;
  }
  c->consume_time += tempo_now() - t0;
  return ok;
}

/* Worker w failed on task t: count it, and recompute the role on a spare worker. */
static tempo_status on_failure(tempo_shield_engine *e, sround *c, stask *t, int w, int why) {
  worker_failed(e, w, why);
  if (!t) return TEMPO_STATUS_OK;
  t->pending = false;
  int w2 = spare_worker(e, c->s);
  if (w2 < 0)
    return tempo_set_error(TEMPO_STATUS_WORKER,
                           "shield: worker %d %s and no spare worker is left that holds no other role of this "
                           "product (shield mode never gives two roles of a product to one worker)",
                           w, why_text[why]);
  role_slot *rs = &c->s->role[t->role];
  rs->worker = w2;
  c->s->seen[w2 / 64] |= 1ull << (w2 % 64);
  rs->cached = c->op == TEMPO_OP_FORWARD && c->keep;
  e->st.recomputed++;
  return send_task(e, c, t, w2);
}

static stask *pending_of(sround *c, int w, uint64_t id, bool match_id) {
  for (int i = 0; i < NR; i++) {
    stask *t = &c->tasks[i];
    if (t->pending && t->worker == w && (!match_id || t->task_id == id)) return t;
  }
  return NULL;
}

static bool reply_fits(const tempo_shield_engine *e, const sround *c, const tempo_msg_header *h) {
  const tempo_mm_shape *sh = &c->s->shape;
  unsigned want = sh->w_trans ? TEMPO_MSG_F_W_TRANS : 0;
  if (c->op == TEMPO_OP_BACKWARD)
    want |= (c->want_dx ? TEMPO_MSG_F_WANT_DX : 0) | (c->want_dw ? TEMPO_MSG_F_WANT_DW : 0);
  return h->op == TEMPO_OP_RESULT && h->dtype == (e->f64 ? TEMPO_DTYPE_F64 : TEMPO_DTYPE_F32) && h->batch == (uint32_t)sh->batch && h->m == (uint32_t)sh->m &&
         h->n == (uint32_t)sh->n && h->p == (uint32_t)sh->p && h->lo == 0 &&
         h->hi == (uint32_t)(sh->batch == 1 ? sh->m : sh->batch) && h->flags == want;
}

static tempo_status recv_msg(tempo_shield_engine *e, double timeout, tempo_in_msg *m, bool *got) {
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

static bool was_abandoned(const tempo_shield_engine *e, int w, uint64_t id) {
  if (id == 0) return false;
  for (int i = 0; i < ABANDONED; i++)
    if (e->abandoned[(size_t)w * ABANDONED + i] == id) return true;
  return false;
}

/* Sends the four role tasks and collects verified shares, recomputing failures. */
static tempo_status run_round(tempo_shield_engine *e, sround *c) {
  tempo_status st;
  const double t_start = tempo_now();
  for (int r = 0; r < NR; r++) {
    stask *t = &c->tasks[r];
    role_slot *rs = &c->s->role[r];
    memset(t, 0, sizeof *t);
    t->role = r;
    if (rs->worker < 0 || !e->live[rs->worker]) { /* holder evicted since the forward */
      rs->worker = -1;
      rs->cached = false;
      int w = spare_worker(e, c->s);
      if (w < 0) return tempo_set_error(TEMPO_STATUS_WORKER, "shield: fewer than %d usable workers left", NR);
      rs->worker = w;
      c->s->seen[w / 64] |= 1ull << (w % 64);
    }
    if ((st = send_task(e, c, t, rs->worker))) return st;
  }
  int pending = NR;
  double wcomp[NR] = {0};
  st = TEMPO_STATUS_OK;
  while (pending > 0 && !st) {
    double now = tempo_now(), deadline = 1e300;
    for (int i = 0; i < NR; i++)
      if (c->tasks[i].pending && c->tasks[i].sent_at + e->timeout < deadline) deadline = c->tasks[i].sent_at + e->timeout;
    if (now >= deadline) {
      for (int i = 0; i < NR && !st; i++) {
        stask *t = &c->tasks[i];
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
    if (w < 0 || w >= e->nw) {
      st = tempo_set_error(TEMPO_STATUS_INTERNAL, "shield: reply from unknown worker %d", w);
    } else if (tempo_msg_decode(m.data, m.len, &h, &pay)) {
      st = on_failure(e, c, pending_of(c, w, 0, false), w, WHY_MALFORMED);
    } else {
      stask *t = pending_of(c, w, h.task_id, true);
      if (!t) {
        if (!was_abandoned(e, w, h.task_id) && h.op != TEMPO_OP_ACK)
          st = on_failure(e, c, pending_of(c, w, 0, false), w, WHY_OTHER_TASK);
      } else if (h.op == TEMPO_OP_ERROR) {
        st = on_failure(e, c, t, w, WHY_ERROR);
      } else if (!reply_fits(e, c, &h)) {
        st = on_failure(e, c, t, w, WHY_MALFORMED);
      } else if (!consume(e, c, t, &h, pay)) {
        st = on_failure(e, c, t, w, WHY_VERIFY);
      } else {
        t->pending = false;
        pending--;
        wcomp[t->role] += (double)h.compute_ns * 1e-9;
        if (c->op == TEMPO_OP_FORWARD && c->keep) c->s->role[t->role].cached = true;
      }
    }
    e->tr->ops->done(e->tr, &m);
  }
  double crit = 0;
  for (int i = 0; i < NR; i++) crit = wcomp[i] > crit ? wcomp[i] : crit;
  double wait = tempo_now() - t_start - c->consume_time - crit;
  e->st.t_transfer += wait > 0 ? wait : 0;
  return st;
}

/* ---- products ---- */

static tempo_status get_site(tempo_shield_engine *e, int slot, ssite **out) {
  if (slot < 1) return tempo_set_error(TEMPO_STATUS_INTERNAL, "shield: site without a slot");
  if (slot > e->n_sites) {
    int n = slot + 16;
    ssite *s = realloc(e->sites, (size_t)n * sizeof *s);
    if (!s) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "shield: out of memory for sites");
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

static tempo_status prepare_site(tempo_shield_engine *e, ssite *s, const tempo_mm_shape *sh) {
  tempo_status st;
  if (!s->used || !same_shape(&s->shape, sh)) {
    for (int i = 0; i < s->nkeys; i++) tempo_obf_key_free(&s->keys[i]);
    free(s->keys);
    s->nkeys = 0;
    s->keys = calloc((size_t)sh->batch, sizeof *s->keys);
    if (!s->keys) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "shield: out of memory for keys");
    for (; s->nkeys < sh->batch; s->nkeys++)
      if ((st = tempo_obf_key_alloc(&s->keys[s->nkeys], sh->m, sh->n, sh->p))) return st;
    s->shape = *sh;
    s->used = true;
  }
  size_t b = (size_t)sh->batch, x, w, y, one;
  if (!tempo_mul3_size(b, (size_t)sh->m, (size_t)sh->n, &x) || !tempo_mul3_size(b, (size_t)sh->n, (size_t)sh->p, &w) ||
      !tempo_mul3_size(b, (size_t)sh->m, (size_t)sh->p, &y))
    return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "shield: product too large");
  one = x > w ? x : w;
  one = one > y ? one : y;
  const size_t z = es(e); /* x, w, y: elements of at most 2^68 bytes total by the caps; sizes below fit */
  if ((st = growb(&s->xm, &s->cap_x, x * z)) || (st = growb(&s->r, &s->cap_r, x * z)) ||
      (st = growb(&s->wm, &s->cap_w, w * z)) || (st = growb(&s->s, &s->cap_s, w * z)) ||
      (st = growb(&e->enc, &e->cap_enc, one * sizeof(double))) ||
      (st = growb(&e->enc2, &e->cap_enc2, one * sizeof(double))) ||
      (st = growd(&e->acc, &e->cap_acc, (x + w > y ? x + w : y))))
    return st;
  size_t need = 3 * ((size_t)sh->m + sh->n + sh->p) + 64;
  if ((st = growb(&e->vwork64, &e->cap_vwork64, need * sizeof(double)))) return st;
  return growb(&e->vwork, &e->cap_vwork, need * sizeof(float));
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
  tempo_keygen_bytes(e->kg, seed, sizeof seed);
  const bool wt = s->shape.w_trans;
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
  s->fwd_valid = false;
  int roles[NR];
  if (!tempo_shield_assign(e->nw, e->live, e->rr, roles))
    return tempo_set_error(TEMPO_STATUS_WORKER, "shield: fewer than %d live workers (%d left)", NR, e->n_live);
  /* advance by 4: with exactly 4 workers worker i always holds role i (a worker's view is
   * one role's view); with more, the roles spread over all workers */
  e->rr = (e->rr + NR) % e->nw;
  memset(s->seen, 0, sizeof s->seen);
  for (int r = 0; r < NR; r++) {
    s->seen[roles[r] / 64] |= 1ull << (roles[r] % 64);
    s->role[r].worker = roles[r];
    s->role[r].cached = false;
    s->role[r].hx = training ? ++e->next_handle : 0;
    s->role[r].hw = training ? ++e->next_handle : 0;
  }
  const size_t xs = (size_t)sh->m * sh->n, ws = (size_t)sh->n * sh->p, ys = (size_t)sh->m * sh->p;
  double t0 = tempo_now();
  for (int i = 0; i < sh->batch; i++) {
    if ((st = tempo_keygen_fill(e->kg, &s->keys[i]))) return st;
    mask_into(e, s, &s->keys[i], OPER_X, X + i * xs, at(s->r, i * xs, es(e)), at(s->xm, i * xs, es(e)), xs);
    mask_into(e, s, &s->keys[i], OPER_W, W + i * ws, at(s->s, i * ws, es(e)), at(s->wm, i * ws, es(e)), ws);
  }
  e->st.t_blind += tempo_now() - t0;
  e->st.encryptions += 2 * (uint64_t)sh->batch;
  e->st.naive_encryptions += 2 * (uint64_t)sh->batch;
  memset(e->acc, 0, (size_t)sh->batch * ys * sizeof *e->acc);
  sround c = {.s = s, .op = TEMPO_OP_FORWARD, .keep = training};
  if ((st = run_round(e, &c))) return st;
  double t1 = tempo_now();
  for (int i = 0; i < sh->batch; i++) {
    tempo_shield_narrow(e->acc + i * ys, e->enc, ys);
    tempo_obf_dec_y(&s->keys[i], e->enc, Y + i * ys);
  }
  e->st.t_unblind += tempo_now() - t1;
  e->st.decryptions += (uint64_t)sh->batch;
  e->st.products += (uint64_t)sh->batch;
  if (training) s->fwd_valid = true;
  else
    for (int i = 0; i < s->nkeys; i++) tempo_obf_key_wipe(&s->keys[i]);
  return TEMPO_STATUS_OK;
}

tempo_status tempo_shield_engine_backward(tempo_shield_engine *e, int slot, const tempo_mm_shape *sh, const float *dY,
                                          float *dX, float *dW, unsigned flags) {
  ssite *s;
  tempo_status st;
  if ((st = get_site(e, slot, &s))) return st;
  if (!s->fwd_valid)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT,
                           "matmul: backward without a training forward of this site in this step");
  if (!same_shape(&s->shape, sh))
    return tempo_set_error(TEMPO_STATUS_MISMATCH, "matmul: backward shape differs from its forward");
  if (!dX && !dW) return TEMPO_STATUS_OK;
  const size_t B = (size_t)sh->batch, xs = (size_t)sh->m * sh->n, ws = (size_t)sh->n * sh->p,
               ys = (size_t)sh->m * sh->p;
  if ((st = growb(&s->dym, &s->cap_dym, B * ys * es(e))) || (st = growb(&s->t, &s->cap_t, B * ys * es(e)))) return st;
  double t0 = tempo_now();
  for (size_t i = 0; i < B; i++)
    mask_into(e, s, &s->keys[i], OPER_DY, dY + i * ys, at(s->t, i * ys, es(e)), at(s->dym, i * ys, es(e)), ys);
  e->st.t_blind += tempo_now() - t0;
  e->st.encryptions += B;
  const uint64_t outs = (dX ? 1u : 0u) + (dW ? 1u : 0u);
  e->st.naive_encryptions += 2 * outs * B;
  memset(e->acc, 0, (B * xs + B * ws) * sizeof *e->acc);
  sround c = {.s = s, .op = TEMPO_OP_BACKWARD, .want_dx = dX != NULL, .want_dw = dW != NULL};
  if ((st = run_round(e, &c))) return st;
  double t1 = tempo_now();
  for (size_t i = 0; i < B; i++) {
    if (dX) {
      tempo_shield_narrow(e->acc + i * xs, e->enc, xs);
      tempo_obf_dec_dx(&s->keys[i], e->enc, dX + i * xs, flags & TEMPO_MM_ACCUM_DX);
    }
    if (dW) {
      tempo_shield_narrow(e->acc + B * xs + i * ws, e->enc, ws);
      tempo_obf_dec_dw(&s->keys[i], sh->w_trans, e->enc, dW + i * ws, flags & TEMPO_MM_ACCUM_DW);
    }
  }
  e->st.t_unblind += tempo_now() - t1;
  e->st.decryptions += outs * B;
  e->st.products += outs * B;
  return TEMPO_STATUS_OK;
}

tempo_status tempo_shield_engine_step_end(tempo_shield_engine *e) {
  for (int i = 0; i < e->n_sites; i++) {
    ssite *s = &e->sites[i];
    if (!s->used) continue;
    for (int k = 0; k < s->nkeys; k++) tempo_obf_key_wipe(&s->keys[k]);
    s->fwd_valid = false;
    for (int r = 0; r < NR; r++) s->role[r].worker = -1, s->role[r].cached = false;
  }
  uint64_t *want = calloc((size_t)e->nw, sizeof *want);
  if (!want) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "shield: out of memory");
  tempo_status st = TEMPO_STATUS_OK;
  int pending = 0;
  double t0 = tempo_now();
  for (int w = 0; w < e->nw && !st; w++) {
    if (!e->holds[w] || !e->live[w]) continue;
    tempo_msg_header h;
    tempo_msg_header_init(&h, TEMPO_OP_RELEASE);
    h.flags = TEMPO_MSG_F_RELEASE_ALL;
    h.task_id = want[w] = ++e->next_task;
    st = send_msg(e, w, &h, 0, NULL, NULL);
    pending++;
    e->holds[w] = false;
  }
  while (pending > 0 && !st) {
    double left = t0 + e->timeout - tempo_now();
    tempo_in_msg m;
    bool got = false;
    if (left <= 0) {
      for (int w = 0; w < e->nw; w++)
        if (want[w]) worker_failed(e, w, WHY_TIMEOUT);
      break;
    }
    if ((st = recv_msg(e, left, &m, &got)) || !got) continue;
    tempo_msg_header h;
    const uint8_t *pay;
    if (m.worker >= 0 && m.worker < e->nw && !tempo_msg_decode(m.data, m.len, &h, &pay) && h.op == TEMPO_OP_ACK &&
        want[m.worker] && h.task_id == want[m.worker]) {
      want[m.worker] = 0;
      pending--;
    }
    e->tr->ops->done(e->tr, &m);
  }
  free(want);
  return st;
}
