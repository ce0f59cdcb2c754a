/* matmul.c - the matrix-product entry point (see matmul.h): argument checks, the local
 * (tempo_sgemm) path, statistics, and dispatch to the offload engine for other modes. */
#include "tempo/matmul.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "offload/engine.h"
#include "offload/scheme.h"
#include "tempo/common.h"
#include "tempo/gemm.h"
#include "tempo/parallel.h"

struct tempo_mm {
  tempo_mm_config cfg;
  tempo_engine *engine; /* every mode but local */
  bool training;
  int next_slot;
  tempo_mm_stats run, step;
  tempo_mm_shape *rec; /* tempo_mm_record_shapes: (rec_cap) */
  int rec_cap, *rec_count;
};

void tempo_mm_config_default(tempo_mm_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->mode = TEMPO_MODE_TEMPO;
  cfg->workers = 2;
  cfg->verify_rounds = 1;
  cfg->threads = 1;
}

tempo_protect tempo_mm_config_protect(const tempo_mm_config *cfg) {
  if (cfg->mode == TEMPO_MODE_LOCAL) return TEMPO_PROTECT_NONE; /* nothing leaves the master anyway */
  if (cfg->protect != TEMPO_PROTECT_DEFAULT) return cfg->protect;
  return cfg->mode == TEMPO_MODE_TEMPO ? TEMPO_PROTECT_GUARDED : TEMPO_PROTECT_NONE;
}

tempo_status tempo_mm_create(const tempo_mm_config *cfg, tempo_mm **out) {
  *out = NULL;
  if (cfg->workers < 1 || cfg->workers > 256 || cfg->verify_rounds < 0 || cfg->verify_rounds > 64 ||
      cfg->threads < 1 || cfg->threads > 256)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT,
                           "engine: workers must be 1..256, verify rounds 0..64, threads 1..256");
  if ((unsigned)cfg->mode > TEMPO_MODE_SHIELD)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "engine: unknown mode %d", (int)cfg->mode);
  if ((unsigned)cfg->protect > TEMPO_PROTECT_ALL)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "engine: unknown protection policy %d", (int)cfg->protect);
  tempo_mm *mm = calloc(1, sizeof *mm);
  if (!mm) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "out of memory creating the engine");
  mm->cfg = *cfg;
  mm->cfg.audit_dir = NULL;
  mm->cfg.protect = tempo_mm_config_protect(cfg);
  if (cfg->mode == TEMPO_MODE_LOCAL) {
    tempo_gemm_set_threads(cfg->threads);
  } else {
    tempo_scheme *sc;
    tempo_status st = cfg->mode == TEMPO_MODE_SHIELD ? tempo_scheme_shield_create(cfg, &sc)
                                                     : tempo_scheme_tempo_create(cfg, &sc);
    /* the master's own threads (the pool) run its Enc/Dec passes and element-wise layers;
     * products are never split over them (gemm threads stay 1: in-process workers share the
     * process and call tempo_sgemm from their own threads) */
    tempo_parallel_set_threads(cfg->threads);
    /* the engine takes sc over; it sets one BLAS thread (in-process workers share the process) */
    tempo_mm_config ec = *cfg;
    ec.protect = mm->cfg.protect;
    if (!st) st = tempo_engine_create(&ec, sc, &mm->engine);
    if (st) {
      free(mm);
      return st;
    }
  }
  *out = mm;
  return TEMPO_STATUS_OK;
}

void tempo_mm_free(tempo_mm *mm) {
  if (!mm) return;
  tempo_engine_free(mm->engine);
  free(mm);
}
tempo_mode tempo_mm_mode(const tempo_mm *mm) { return mm->cfg.mode; }
tempo_protect tempo_mm_protect(const tempo_mm *mm) { return mm->cfg.protect; }

/* The engine for this site's products, or NULL when the master computes them (local mode,
 * or the protection policy's MASTER route). */
static tempo_engine *engine_for(const tempo_mm *mm, const tempo_mm_site *site) {
  return mm->engine && tempo_engine_route(mm->engine, site->kind) != TEMPO_ROUTE_MASTER ? mm->engine : NULL;
}
void tempo_mm_set_training(tempo_mm *mm, bool training) { mm->training = training; }

static tempo_status check_shape(const tempo_mm_shape *s) {
  if (s->batch < 1 || s->m < 1 || s->n < 1 || s->p < 1)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "matmul: bad shape batch=%d m=%d n=%d p=%d",
                           s->batch, s->m, s->n, s->p);
  return TEMPO_STATUS_OK;
}

/* Local mode's counters, and every mode's flops, added where the engine's are. */
static void count(tempo_mm *mm, const tempo_mm_shape *s, int outs, uint64_t products, double t) {
  const tempo_mm_stats d = {.products = products, .t_local = t,
                            .flops = 2ull * (uint64_t)outs * (uint64_t)s->batch * (uint64_t)s->m * (uint64_t)s->n *
                                     (uint64_t)s->p};
  tempo_mm_stats_add(&mm->run, &d);
  tempo_mm_stats_add(&mm->step, &d);
}

bool tempo_mm_takes_rows(const tempo_mm *mm, const tempo_mm_site *site, const tempo_mm_shape *s) {
  return engine_for(mm, site) && tempo_engine_scheme(mm->engine)->x_rows && s->batch == 1 && s->n >= 1 &&
         s->n <= TEMPO_ROWS_MAX_COLS;
}

/* tempo_mm_forward, with X or (Xr != NULL) its rows. */
static tempo_status forward(tempo_mm *mm, tempo_mm_site *site, const tempo_mm_shape *s, const float *X,
                            const tempo_rows *Xr, const float *W, float *Y) {
  tempo_status st = check_shape(s);
  if (st) return st;
  if (Xr && (!tempo_mm_takes_rows(mm, site, s) || Xr->rows != s->m || Xr->cols != s->n || !Xr->fill))
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT,
                           "matmul: X by rows needs an offloaded batch-1 product of at most %d columns, and a "
                           "source of its shape (%dx%d)", TEMPO_ROWS_MAX_COLS, s->m, s->n);
  if (site->slot == 0) site->slot = ++mm->next_slot;
  if (mm->rec) {
    if (*mm->rec_count < mm->rec_cap) mm->rec[*mm->rec_count] = *s;
    ++*mm->rec_count;
  }
  if (engine_for(mm, site)) {
    st = tempo_engine_forward(mm->engine, site->slot, site->kind, s, X, Xr, W, Y, mm->training);
    tempo_engine_take_stats(mm->engine, &mm->run, &mm->step);
    if (!st) count(mm, s, 1, 0, 0);
    return st;
  }
  double t0 = tempo_now();
  const size_t xs = (size_t)s->m * s->n, ws = (size_t)s->n * s->p, ys = (size_t)s->m * s->p;
  for (int b = 0; b < s->batch; b++)
    tempo_sgemm(false, s->w_trans, s->m, s->p, s->n, 1.0f, X + b * xs, s->n, W + b * ws, s->w_trans ? s->n : s->p,
                0.0f, Y + b * ys, s->p);
  count(mm, s, 1, (uint64_t)s->batch, tempo_now() - t0);
  return TEMPO_STATUS_OK;
}

tempo_status tempo_mm_forward(tempo_mm *mm, tempo_mm_site *site, const tempo_mm_shape *s, const float *X,
                              const float *W, float *Y) {
  return forward(mm, site, s, X, NULL, W, Y);
}

tempo_status tempo_mm_forward_rows(tempo_mm *mm, tempo_mm_site *site, const tempo_mm_shape *s, const tempo_rows *X,
                                   const float *W, float *Y) {
  if (!X) return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "matmul: no row source");
  return forward(mm, site, s, NULL, X, W, Y);
}

void tempo_mm_record_shapes(tempo_mm *mm, tempo_mm_shape *buf, int cap, int *count) {
  mm->rec = buf;
  mm->rec_cap = buf ? cap : 0;
  mm->rec_count = buf ? count : NULL;
  if (buf) *count = 0;
}

tempo_status tempo_mm_backward(tempo_mm *mm, tempo_mm_site *site, const tempo_mm_shape *s, const float *X,
                               const float *W, const float *dY, float *dX, float *dW, unsigned flags) {
  bool sunk;
  return tempo_mm_backward_rows(mm, site, s, X, W, dY, dX, NULL, dW, flags, &sunk);
}

tempo_status tempo_mm_backward_rows(tempo_mm *mm, tempo_mm_site *site, const tempo_mm_shape *s, const float *X,
                                    const float *W, const float *dY, float *dX, const tempo_rows_sink *dXs, float *dW,
                                    unsigned flags, bool *sunk) {
  *sunk = false;
  tempo_status st = check_shape(s);
  if (st) return st;
  if (site->slot == 0) return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "matmul: backward before forward");
  if (dXs && (!dX || s->batch != 1 || dXs->rows != s->m || dXs->cols != s->n || !dXs->add))
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "matmul: a dX row sink needs dX, batch 1 and the (m, n) shape");
  if (engine_for(mm, site)) {
    st = tempo_engine_backward(mm->engine, site->slot, s, dY, dX, dXs, dW, flags, sunk);
    tempo_engine_take_stats(mm->engine, &mm->run, &mm->step);
    if (!st) count(mm, s, (dX != NULL) + (dW != NULL), 0, 0);
    return st;
  }
  double t0 = tempo_now();
  const size_t xs = (size_t)s->m * s->n, ws = (size_t)s->n * s->p, ys = (size_t)s->m * s->p;
  const float bx = (flags & TEMPO_MM_ACCUM_DX) ? 1.0f : 0.0f, bw = (flags & TEMPO_MM_ACCUM_DW) ? 1.0f : 0.0f;
  for (int b = 0; b < s->batch; b++) {
    const float *x = X + b * xs, *w = W + b * ws, *dy = dY + b * ys;
    if (dX) /* dX (m,n) = dY (m,p) . W^T */
      tempo_sgemm(false, !s->w_trans, s->m, s->n, s->p, 1.0f, dy, s->p, w, s->w_trans ? s->n : s->p, bx,
                  dX + b * xs, s->n);
    if (dW) {
      if (s->w_trans) /* dW_stored (p,n) = dY^T (p,m) . X (m,n) */
        tempo_sgemm(true, false, s->p, s->n, s->m, 1.0f, dy, s->p, x, s->n, bw, dW + b * ws, s->n);
      else /* dW (n,p) = X^T (n,m) . dY (m,p) */
        tempo_sgemm(true, false, s->n, s->p, s->m, 1.0f, x, s->n, dy, s->p, bw, dW + b * ws, s->p);
    }
  }
  /* dX and dW are a product each, as the engine counts them: protected products computed here
   * and offloaded ones add up in one run */
  const int outs = (dX != NULL) + (dW != NULL);
  count(mm, s, outs, (uint64_t)outs * (uint64_t)s->batch, tempo_now() - t0);
  return TEMPO_STATUS_OK;
}

void tempo_mm_step_end(tempo_mm *mm) {
  if (!mm->engine) return;
  if (tempo_engine_step_end(mm->engine)) fprintf(stderr, "tempo: step end: %s\n", tempo_errmsg());
  tempo_engine_take_stats(mm->engine, &mm->run, &mm->step);
}

void tempo_mm_set_timeout(tempo_mm *mm, double seconds) {
  if (mm->engine) tempo_engine_set_timeout(mm->engine, seconds);
}

tempo_status tempo_mm_streams_save(const tempo_mm *mm, uint8_t *out, size_t cap, size_t *len) {
  *len = 0;
  return mm->engine ? tempo_engine_streams_save(mm->engine, out, cap, len) : TEMPO_STATUS_OK;
}

tempo_status tempo_mm_streams_restore(tempo_mm *mm, const uint8_t *in, size_t len) {
  return mm->engine && len > 0 ? tempo_engine_streams_restore(mm->engine, in, len) : TEMPO_STATUS_OK;
}

int tempo_mm_live_workers(const tempo_mm *mm) { return mm->engine ? tempo_engine_live_workers(mm->engine) : 0; }

tempo_transport *tempo_mm_test_transport(tempo_mm *mm) { return mm->engine ? tempo_engine_transport(mm->engine) : NULL; }

/* Shield tuning goes into the config, then to the scheme for the following products. */
static tempo_status shield_configure(tempo_mm *mm, bool f32, double alpha, const char *what) {
  if (!mm || mm->cfg.mode != TEMPO_MODE_SHIELD || !mm->engine ||
      !tempo_scheme_shield_configure(tempo_engine_scheme(mm->engine), f32, alpha))
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "shield: %s needs a shield-mode engine", what);
  mm->cfg.shield_f32 = f32;
  mm->cfg.shield_alpha = alpha;
  return TEMPO_STATUS_OK;
}

tempo_status tempo_shield_set_alpha(tempo_mm *mm, double alpha) {
  if (!(alpha > 0))
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "shield: alpha needs a shield-mode engine and alpha > 0");
  return shield_configure(mm, mm ? mm->cfg.shield_f32 : false, alpha, "set_alpha");
}

tempo_status tempo_shield_set_float64(tempo_mm *mm, bool f64) { return shield_configure(mm, !f64, 0, "set_float64"); }

void tempo_mm_stats_run(const tempo_mm *mm, tempo_mm_stats *out) { *out = mm->run; }

void tempo_mm_stats_step(tempo_mm *mm, tempo_mm_stats *out) {
  *out = mm->step;
  memset(&mm->step, 0, sizeof mm->step);
}
