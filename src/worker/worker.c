/* worker.c - the worker core (worker.h): request validation, the operand cache, the
 * backend call (backend_cpu.c by default; src/cuda for GPUs) and a member's step of a dW'
 * reduction chain. No key, model or dataset code is reachable from here, and no fault
 * injection: tests cheat through the hooks (fault.c). */
#include "tempo/worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tempo/bf16.h"
#include "tempo/common.h"

enum { KIND_X = 1, KIND_W = 2 };

typedef struct {
  uint64_t handle;
  int kind;
  uint32_t batch, m, n, p, lo, hi;
  bool w_trans;
  uint16_t dtype;    /* TEMPO_DTYPE_*: a cached operand serves only requests of its dtype */
  const void *data; /* the operand: borrowed (stable request) or == owned */
  void *owned;
  size_t count; /* elements */
  size_t bytes; /* count * element size */
} cache_entry;

struct tempo_worker {
  tempo_worker_config cfg;
  cache_entry *ent;
  size_t n_ent, cap_ent;
  uint64_t owned_bytes;
  float *scratch[3]; /* payload tensors that straddle segments are gathered here */
  size_t scratch_cap[3]; /* bytes */
  float *wide[3]; /* bfloat16 operands dY*, X', W' widened to float32 (a backend without a bf16 GEMM) */
  size_t wide_cap[3]; /* bytes */
  tempo_worker_hooks hooks; /* all NULL in production */
  bool has_hooks;
};

void tempo_worker_config_default(tempo_worker_config *cfg) {
  cfg->max_handles = 65536;
  cfg->max_cache_bytes = (uint64_t)8 << 30;
  cfg->backend = NULL;
  cfg->hooks = NULL;
}

tempo_status tempo_worker_create(const tempo_worker_config *cfg, tempo_worker **out) {
  *out = NULL;
  tempo_worker *w = calloc(1, sizeof *w);
  if (!w) {
    if (cfg && cfg->hooks && cfg->hooks->destroy) cfg->hooks->destroy(cfg->hooks->ctx); /* ours even so */
    return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "out of memory creating a worker");
  }
  if (cfg)
    w->cfg = *cfg;
  else
    tempo_worker_config_default(&w->cfg);
  if (!w->cfg.backend) w->cfg.backend = tempo_backend_cpu();
  tempo_worker_set_hooks(w, w->cfg.hooks);
  w->cfg.hooks = NULL;
  *out = w;
  return TEMPO_STATUS_OK;
}

/* The backend key of a cache entry (never 0). */
static uint64_t entry_key(uint64_t handle, int kind) { return (handle << 1) | (uint64_t)(kind - 1); }

static void entry_clear(tempo_worker *w, cache_entry *e) {
  if (e->handle && w->cfg.backend->forget) w->cfg.backend->forget(w->cfg.backend->ctx, entry_key(e->handle, e->kind));
  if (e->owned) {
    w->owned_bytes -= e->bytes;
    tempo_free_floats(e->owned);
  }
  memset(e, 0, sizeof *e);
}

void tempo_worker_free(tempo_worker *w) {
  if (!w) return;
  for (size_t i = 0; i < w->n_ent; i++) entry_clear(w, &w->ent[i]);
  free(w->ent);
  for (int i = 0; i < 3; i++) tempo_free_floats(w->scratch[i]), tempo_free_floats(w->wide[i]);
  tempo_worker_set_hooks(w, NULL);
  free(w);
}

size_t tempo_worker_handle_count(const tempo_worker *w) { return w->n_ent; }

int tempo_worker_precision(const tempo_worker *w) { return w->cfg.backend->precision; }

const tempo_worker_hooks *tempo_worker_get_hooks(const tempo_worker *w) { return w->has_hooks ? &w->hooks : NULL; }

void tempo_worker_set_hooks(tempo_worker *w, const tempo_worker_hooks *h) {
  const tempo_worker_hooks old = w->hooks;
  const bool had = w->has_hooks;
  memset(&w->hooks, 0, sizeof w->hooks);
  if (h) w->hooks = *h; /* copied first: h may point at the worker's own hooks */
  w->has_hooks = h != NULL;
  if (had && old.destroy && !(h && w->hooks.ctx == old.ctx)) old.destroy(old.ctx);
}

static cache_entry *find(tempo_worker *w, uint64_t handle, int kind) {
  for (size_t i = 0; i < w->n_ent; i++)
    if (w->ent[i].handle == handle && w->ent[i].kind == kind) return &w->ent[i];
  return NULL;
}

static void release(tempo_worker *w, uint64_t handle) {
  for (size_t i = 0; i < w->n_ent;) {
    if (w->ent[i].handle == handle) {
      entry_clear(w, &w->ent[i]);
      w->ent[i] = w->ent[--w->n_ent];
      memset(&w->ent[w->n_ent], 0, sizeof w->ent[0]);
    } else {
      i++;
    }
  }
}

/* Does a cached operand fit this request? X' must be the same split; W' of a row split
 * (batch 1) is the whole W', so only its dims must agree. */
static bool entry_fits(const cache_entry *e, const tempo_msg_header *h) {
  const bool wt = h->flags & TEMPO_MSG_F_W_TRANS;
  if (e->batch != h->batch || e->n != h->n || e->dtype != h->dtype) return false;
  if (e->kind == KIND_X) return e->m == h->m && e->lo == h->lo && e->hi == h->hi;
  if (e->p != h->p || e->w_trans != wt) return false;
  return h->batch == 1 || (e->lo == h->lo && e->hi == h->hi);
}

static tempo_status store(tempo_worker *w, const tempo_msg_header *h, int kind, uint64_t handle, const void *src,
                          size_t count, bool stable) {
  const size_t bytes = count * tempo_msg_dtype_size(h->dtype); /* <= the checked payload size */
  release(w, handle); /* a handle names one operand of each kind; replace */
  if (w->n_ent >= w->cfg.max_handles)
    return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "worker: operand cache full (%u handles)", w->cfg.max_handles);
  if (w->n_ent == w->cap_ent) {
    size_t cap = w->cap_ent ? 2 * w->cap_ent : 16;
    cache_entry *e = realloc(w->ent, cap * sizeof *e);
    if (!e) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "worker: out of memory for the cache");
    w->ent = e;
    w->cap_ent = cap;
  }
  cache_entry e = {.handle = handle, .kind = kind, .batch = h->batch, .m = h->m, .n = h->n, .p = h->p,
                   .lo = h->lo, .hi = h->hi, .w_trans = (h->flags & TEMPO_MSG_F_W_TRANS) != 0,
                   .dtype = h->dtype, .count = count, .bytes = bytes};
  if (stable) {
    e.data = src;
  } else {
    if (w->owned_bytes + bytes > w->cfg.max_cache_bytes)
      return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "worker: operand cache above its byte limit");
    e.owned = tempo_alloc_floats((bytes + sizeof(float) - 1) / sizeof(float));
    if (!e.owned) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "worker: out of memory caching an operand");
    memcpy(e.owned, src, bytes);
    e.data = e.owned;
    w->owned_bytes += bytes;
  }
  w->ent[w->n_ent++] = e;
  return TEMPO_STATUS_OK;
}

/* The payload tensor at byte offset `off` of `count` elements of `esize` bytes: a pointer
 * into a segment when it lies in one (and is element-aligned), else a gathered copy in
 * scratch slot `slot`. */
static tempo_status tensor_at(tempo_worker *w, const tempo_msg_view *v, size_t off, size_t count, size_t esize,
                              int slot, const void **out, bool *borrowed) {
  const size_t bytes = count * esize;
  size_t base = 0;
  for (int i = 0; i < v->nseg; i++) {
    if (off >= base && off + bytes <= base + v->seg_len[i]) {
      const uint8_t *p = v->seg[i] + (off - base);
      if (((uintptr_t)p & (esize - 1)) == 0) {
        *out = p;
        *borrowed = true;
        return TEMPO_STATUS_OK;
      }
      break;
    }
    base += v->seg_len[i];
  }
  if (w->scratch_cap[slot] < bytes) {
    tempo_free_floats(w->scratch[slot]);
    w->scratch[slot] = tempo_alloc_floats((bytes + sizeof(float) - 1) / sizeof(float));
    w->scratch_cap[slot] = w->scratch[slot] ? bytes : 0;
    if (!w->scratch[slot]) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "worker: out of memory");
  }
  uint8_t *dst = (uint8_t *)w->scratch[slot];
  size_t done = 0;
  base = 0;
  for (int i = 0; i < v->nseg && done < bytes; i++) {
    size_t s_lo = base, s_hi = base + v->seg_len[i];
    size_t a = off + done;
    if (a >= s_lo && a < s_hi) {
      size_t take = s_hi - a < bytes - done ? s_hi - a : bytes - done;
      memcpy(dst + done, v->seg[i] + (a - s_lo), take);
      done += take;
    }
    base = s_hi;
  }
  if (done != bytes) return tempo_set_error(TEMPO_STATUS_CORRUPT, "worker: payload shorter than its tensors");
  *out = w->scratch[slot];
  *borrowed = false;
  return TEMPO_STATUS_OK;
}

/* Looks up a cached operand for this request (ERROR reply text on failure). */
static tempo_status cached(tempo_worker *w, const tempo_msg_header *h, int kind, const void **out) {
  uint64_t handle = kind == KIND_X ? h->handle_x : h->handle_w;
  cache_entry *e = find(w, handle, kind);
  if (!e)
    return tempo_set_error(TEMPO_STATUS_MISMATCH, "worker: unknown %s handle %llu", kind == KIND_X ? "X'" : "W'",
                           (unsigned long long)handle);
  if (!entry_fits(e, h))
    return tempo_set_error(TEMPO_STATUS_MISMATCH, "worker: handle %llu holds an operand of another shape",
                           (unsigned long long)handle);
  *out = e->data;
  return TEMPO_STATUS_OK;
}

/* A bfloat16 operand of `count` elements widened to float32 into reused buffer `slot` (NULL
 * stays NULL). */
static tempo_status widen(tempo_worker *w, int slot, const void *src, size_t count, const float **out) {
  *out = NULL;
  if (!src) return TEMPO_STATUS_OK;
  if (w->wide_cap[slot] < count * sizeof(float)) {
    tempo_free_floats(w->wide[slot]);
    w->wide[slot] = tempo_alloc_floats(count);
    w->wide_cap[slot] = w->wide[slot] ? count * sizeof(float) : 0;
    if (!w->wide[slot]) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "worker: out of memory widening an operand");
  }
  tempo_bf16_unpack(src, w->wide[slot], count);
  *out = w->wide[slot];
  return TEMPO_STATUS_OK;
}

/* The products of a BF16 request: the backend's own bfloat16 GEMM, or float32 on widened operands. */
static tempo_status run_bf16(tempo_worker *w, const tempo_msg_header *h, const tempo_gemm_desc *d,
                             const tempo_msg_sizes *sz, const void *X, uint64_t xkey, const void *W, uint64_t wkey,
                             const void *dY, float *dX, float *dW, float *Y) {
  const tempo_backend *be = w->cfg.backend;
  tempo_status st = TEMPO_STATUS_UNSUPPORTED;
  if (h->op == TEMPO_OP_FORWARD && be->forward_bf16) st = be->forward_bf16(be->ctx, d, X, xkey, W, wkey, Y);
  if (h->op == TEMPO_OP_BACKWARD && be->backward_bf16) st = be->backward_bf16(be->ctx, d, X, xkey, W, wkey, dY, dX, dW);
  if (st != TEMPO_STATUS_UNSUPPORTED) return st; /* else: no bfloat16 kernel for it, widened */
  const float *xf, *wf, *dyf;
  if ((st = widen(w, 0, dY, sz->dy, &dyf)) || (st = widen(w, 1, X, sz->x, &xf)) || (st = widen(w, 2, W, sz->w, &wf)))
    return st;
  if (h->op == TEMPO_OP_FORWARD) return be->forward(be->ctx, d, xf, xkey, wf, wkey, Y);
  return be->backward(be->ctx, d, xf, xkey, wf, wkey, dyf, dX, dW);
}

static tempo_status ack(tempo_msgbuf *reply, uint64_t task_id) {
  tempo_msg_header rh;
  tempo_msg_header_init(&rh, TEMPO_OP_ACK);
  rh.task_id = task_id;
  uint8_t *p;
  return tempo_msgbuf_start(reply, &rh, 0, &p);
}

/* Runs one valid request; a failure status here becomes an ERROR reply. */
static tempo_status run(tempo_worker *w, const tempo_msg_header *h, const tempo_msg_view *v, tempo_msgbuf *reply,
                        bool *send_reply) {
  tempo_status st;
  if (h->op == TEMPO_OP_RELEASE) {
    if (h->flags & TEMPO_MSG_F_RELEASE_ALL) {
      for (size_t i = 0; i < w->n_ent; i++) entry_clear(w, &w->ent[i]);
      w->n_ent = 0;
      if (w->cfg.backend->forget) w->cfg.backend->forget(w->cfg.backend->ctx, 0);
    } else {
      if (h->handle_x) release(w, h->handle_x);
      if (h->handle_w) release(w, h->handle_w);
    }
    return ack(reply, h->task_id);
  }
  if (h->op != TEMPO_OP_STORE && h->op != TEMPO_OP_FORWARD && h->op != TEMPO_OP_BACKWARD)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "worker: %s is not a request", tempo_msg_op_name(h->op));
  tempo_msg_sizes sz;
  tempo_msg_split_sizes(h, &sz);
  const unsigned f = h->flags;
  const bool f64 = h->dtype == TEMPO_DTYPE_F64, bf16 = h->dtype == TEMPO_DTYPE_BF16;
  const size_t es = tempo_msg_dtype_size(h->dtype); /* 2, 4 or 8: the header passed its check */
  const size_t rs = tempo_msg_result_size(h->dtype); /* the result's: 4 or 8 */
  const tempo_backend *be = w->cfg.backend;
  if (f64 && h->op != TEMPO_OP_STORE && (!be->forward64 || !be->backward64))
    return tempo_set_error(TEMPO_STATUS_UNSUPPORTED, "worker: backend '%s' has no float64 GEMM", be->name);
  size_t off = 0;
  const void *dY = NULL, *X = NULL, *W = NULL;
  bool bx = false, bw = false, bd = false;
  if (h->op == TEMPO_OP_BACKWARD) {
    if ((st = tensor_at(w, v, off, sz.dy, es, 0, &dY, &bd))) return st;
    off += sz.dy * es;
  }
  if (f & TEMPO_MSG_F_X_INLINE) {
    if ((st = tensor_at(w, v, off, sz.x, es, 1, &X, &bx))) return st;
    off += sz.x * es;
  }
  if (f & TEMPO_MSG_F_W_INLINE) {
    if ((st = tensor_at(w, v, off, sz.w, es, 2, &W, &bw))) return st;
    off += sz.w * es;
  }
  const bool keep = h->op == TEMPO_OP_STORE || (f & TEMPO_MSG_F_KEEP);
  if (keep && X && (st = store(w, h, KIND_X, h->handle_x, X, sz.x, v->stable && bx))) return st;
  if (keep && W && (st = store(w, h, KIND_W, h->handle_w, W, sz.w, v->stable && bw))) return st;
  if (h->op == TEMPO_OP_STORE) return ack(reply, h->task_id);

  const bool want_dx = f & TEMPO_MSG_F_WANT_DX, want_dw = f & TEMPO_MSG_F_WANT_DW;
  const bool need_x = h->op == TEMPO_OP_FORWARD || want_dw, need_w = h->op == TEMPO_OP_FORWARD || want_dx;
  /* keys: the operand is (or now is) in the cache, so the backend may keep its copy */
  const uint64_t xkey = need_x && (keep || !X) ? entry_key(h->handle_x, KIND_X) : 0;
  const uint64_t wkey = need_w && (keep || !W) ? entry_key(h->handle_w, KIND_W) : 0;
  if (need_x && !X && (st = cached(w, h, KIND_X, &X))) return st;
  if (need_w && !W && (st = cached(w, h, KIND_W, &W))) return st;

  tempo_msg_header rh;
  tempo_msg_header_init(&rh, TEMPO_OP_RESULT);
  rh.task_id = h->task_id;
  rh.dtype = h->dtype;
  rh.batch = h->batch, rh.m = h->m, rh.n = h->n, rh.p = h->p, rh.lo = h->lo, rh.hi = h->hi;
  rh.flags = f & (TEMPO_MSG_F_W_TRANS | TEMPO_MSG_F_WANT_DX | TEMPO_MSG_F_WANT_DW);
  uint64_t bytes;
  if (!tempo_msg_payload_bytes(&rh, &bytes)) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "worker: result too big");
  uint8_t *pay;
  if ((st = tempo_msgbuf_start(reply, &rh, bytes, &pay))) return st;
  double t0 = tempo_now();
  const tempo_gemm_desc d = {.cnt = h->batch == 1 ? 1 : (int)(h->hi - h->lo),
                             .rows = h->batch == 1 ? (int)(h->hi - h->lo) : (int)h->m,
                             .n = (int)h->n, .p = (int)h->p, .w_trans = (f & TEMPO_MSG_F_W_TRANS) != 0};
  if (bf16) {
    float *out = (float *)pay;
    const bool fwd = h->op == TEMPO_OP_FORWARD;
    st = run_bf16(w, h, &d, &sz, fwd || want_dw ? X : NULL, xkey, fwd || want_dx ? W : NULL, wkey, dY,
                  !fwd && want_dx ? out : NULL, !fwd && want_dw ? out + (want_dx ? sz.dx : 0) : NULL, fwd ? out : NULL);
  } else if (f64) {
    double *out = (double *)pay;
    if (h->op == TEMPO_OP_FORWARD)
      st = be->forward64(be->ctx, &d, X, xkey, W, wkey, out);
    else
      st = be->backward64(be->ctx, &d, X, xkey, W, wkey, dY, want_dx ? out : NULL,
                          want_dw ? out + (want_dx ? sz.dx : 0) : NULL);
  } else {
    float *out = (float *)pay;
    if (h->op == TEMPO_OP_FORWARD)
      st = be->forward(be->ctx, &d, X, xkey, W, wkey, out);
    else
      st = be->backward(be->ctx, &d, X, xkey, W, wkey, dY, want_dx ? out : NULL,
                        want_dw ? out + (want_dx ? sz.dx : 0) : NULL);
  }
  if (st) return st;
  rh.compute_ns = (uint64_t)((tempo_now() - t0) * 1e9);
  if (rh.compute_ns == 0) rh.compute_ns = 1;

  if (w->hooks.result && (st = w->hooks.result(w->hooks.ctx, &rh, pay, (size_t)(bytes / rs), send_reply)))
    return st;
  tempo_msg_header_write(&rh, reply->data);
  return TEMPO_STATUS_OK;
}

tempo_status tempo_worker_handle(tempo_worker *w, const tempo_msg_view *v, tempo_msgbuf *reply, bool *send_reply) {
  *send_reply = true;
  tempo_msg_header h;
  uint64_t task = 0;
  size_t total = 0;
  tempo_status st = tempo_msg_header_read(v->header, TEMPO_MSG_HEADER_SIZE, &h);
  if (!st) {
    task = h.task_id;
    if (v->nseg < 0 || v->nseg > 4) st = tempo_set_error(TEMPO_STATUS_CORRUPT, "worker: bad segment count");
    for (int i = 0; !st && i < v->nseg; i++) total += v->seg_len[i];
    if (!st && total != h.payload_len)
      st = tempo_set_error(TEMPO_STATUS_CORRUPT, "worker: %zu payload bytes received, header says %llu", total,
                           (unsigned long long)h.payload_len);
  }
  if (!st) st = run(w, &h, v, reply, send_reply);
  if (st) {
    char text[512];
    snprintf(text, sizeof text, "%s", tempo_errmsg());
    return tempo_msg_encode_error(reply, task, st, text);
  }
  return TEMPO_STATUS_OK;
}

tempo_status tempo_worker_handle_buf(tempo_worker *w, const uint8_t *msg, size_t len, tempo_msgbuf *reply,
                                     bool *send_reply) {
  tempo_msg_view v = {.header = msg, .nseg = 1, .stable = false};
  if (len < TEMPO_MSG_HEADER_SIZE) {
    *send_reply = true;
    return tempo_msg_encode_error(reply, 0, TEMPO_STATUS_CORRUPT, "worker: truncated header");
  }
  v.seg[0] = msg + TEMPO_MSG_HEADER_SIZE;
  v.seg_len[0] = len - TEMPO_MSG_HEADER_SIZE;
  return tempo_worker_handle(w, &v, reply, send_reply);
}

/* Makes the ERROR reply of a chain request that cannot be reduced (false when it can). */
static bool chain_refused(const tempo_msg_view *v, tempo_msgbuf *reply, tempo_status *st) {
  tempo_msg_header h;
  if (tempo_msg_header_read(v->header, TEMPO_MSG_HEADER_SIZE, &h)) return false; /* the core answers that */
  if (h.op == TEMPO_OP_BACKWARD && (h.flags & TEMPO_MSG_F_WANT_DW) && h.batch == 1) return false;
  *st = tempo_msg_encode_error(reply, h.task_id, TEMPO_STATUS_INVALID_ARGUMENT,
                               "worker: a dW' reduction chain needs a row-split BACKWARD with WANT_DW");
  return true;
}

/* sum[i] = prev[i] + own[i] in the request's dtype: prev is untrusted bytes of any
 * alignment, sum may be own. */
static void add_partial(void *sum, const uint8_t *prev, const void *own, size_t count, bool f64) {
  if (f64) {
    double *s = sum;
    const double *o = own;
    for (size_t i = 0; i < count; i++) {
      double a;
      memcpy(&a, prev + i * sizeof a, sizeof a);
      s[i] = a + o[i];
    }
    return;
  }
  float *s = sum;
  const float *o = own;
  for (size_t i = 0; i < count; i++) {
    float a;
    memcpy(&a, prev + i * sizeof a, sizeof a);
    s[i] = a + o[i];
  }
}

/* Puts the digest of the partial we received into our reply's header (protocol.h,
 * tempo_msg_chain_digest): the master's evidence when the chain's sum turns out wrong. */
static void report_prev(tempo_msgbuf *reply, const uint8_t *prev, size_t len) {
  tempo_msg_header rh;
  if (tempo_msg_header_read(reply->data, reply->len, &rh) || rh.op == TEMPO_OP_ERROR) return;
  uint8_t d[TEMPO_MSG_CHAIN_DIGEST];
  tempo_msg_chain_digest(prev ? prev : (const uint8_t *)"", prev ? len : 0, d);
  tempo_msg_chain_digest_put(&rh, d);
  tempo_msg_header_write(&rh, reply->data);
}

static tempo_status chain_reply(tempo_worker *w, const tempo_msg_view *v, tempo_worker_chain *c,
                                tempo_msgbuf *reply, bool *send_reply, const uint8_t **prev, size_t *prev_len);

tempo_status tempo_worker_handle_chain(tempo_worker *w, const tempo_msg_view *v, tempo_worker_chain *c,
                                       tempo_msgbuf *reply, bool *send_reply) {
  const uint8_t *prev = NULL;
  size_t prev_len = 0;
  tempo_status st = chain_reply(w, v, c, reply, send_reply, &prev, &prev_len);
  if (!st && !c->first) report_prev(reply, prev, prev_len);
  return st;
}

/* tempo_worker_handle_chain without the report; *prev, *prev_len: what the predecessor sent. */
static tempo_status chain_reply(tempo_worker *w, const tempo_msg_view *v, tempo_worker_chain *c,
                                tempo_msgbuf *reply, bool *send_reply, const uint8_t **prevp, size_t *prev_lenp) {
  *send_reply = true;
  if (c->pass) c->pass->len = 0;
  if (!c->last && !c->pass)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "worker: a chain member needs a pass buffer");
  tempo_status st = TEMPO_STATUS_OK;
  if (!chain_refused(v, reply, &st)) st = tempo_worker_handle(w, v, reply, send_reply);
  /* our own reply: a RESULT with dW' is what can be reduced; an ERROR reply goes out as it is */
  tempo_msg_header h;
  const uint8_t *pay = NULL;
  const bool valid = !st && !tempo_msg_decode(reply->data, reply->len, &h, &pay) && h.op == TEMPO_OP_RESULT &&
                     (h.flags & TEMPO_MSG_F_WANT_DW) && h.batch == 1;
  tempo_msg_sizes z = {0};
  if (valid) tempo_msg_split_sizes(&h, &z);
  const size_t es = valid ? tempo_msg_result_size(h.dtype) : 0; /* 4 or 8: the reply decoded */
  const bool f64 = valid && h.dtype == TEMPO_DTYPE_F64;
  const size_t dx_bytes = valid && (h.flags & TEMPO_MSG_F_WANT_DX) ? z.dx * es : 0;
  const size_t dw_bytes = z.dw * es;
  uint8_t *own = valid ? reply->data + TEMPO_MSG_HEADER_SIZE + dx_bytes : NULL; /* 16-byte aligned */
  bool broken = !valid;
  const uint8_t *prev = NULL;
  size_t prev_len = 0;
  if (!c->first) {
    c->take_prev(c->ctx, dw_bytes, &prev, &prev_len);
    if (!prev || prev_len != dw_bytes) broken = true; /* none, or of the wrong size: not added */
    *prevp = prev, *prev_lenp = prev_len;
  }
  uint8_t *sum = own; /* the last member sums into its reply */
  if (valid && !broken && !c->last) {
    if (c->pass->cap < dw_bytes) {
      uint8_t *b = realloc(c->pass->data, dw_bytes);
      if (b) c->pass->data = b, c->pass->cap = dw_bytes;
    }
    if (c->pass->cap >= dw_bytes) sum = c->pass->data; /* realloc: aligned for doubles */
    else broken = true; /* out of memory: an empty partial */
  }
  if (valid && !broken) {
    if (c->first) {
      if (sum != own) memcpy(sum, own, dw_bytes);
    } else {
      add_partial(sum, prev, own, z.dw, f64);
    }
  }
  if (valid && w->hooks.sum) w->hooks.sum(w->hooks.ctx, sum, z.dw, f64);
  if (st) return st;
  if (c->last || !valid) return TEMPO_STATUS_OK;
  if (!broken) c->pass->len = dw_bytes;
  if (dx_bytes) { /* dX' only: dW' went down the chain */
    h.flags &= ~(uint32_t)TEMPO_MSG_F_WANT_DW;
    h.payload_len = dx_bytes;
    tempo_msg_header_write(&h, reply->data);
    reply->len = TEMPO_MSG_HEADER_SIZE + dx_bytes;
    return TEMPO_STATUS_OK;
  }
  return ack(reply, h.task_id);
}
