/* matmul.h - THE matrix-product entry point. Every product of training and inference
 * (linear layers, lowered convolutions, attention's Q K^T and A V, and all their
 * backward products) goes through this module; no layer calls BLAS directly.
 *
 * Behind it sits the offload engine, whose mode decides where a product runs:
 *   local  - the master computes it (OpenBLAS): the pure-TEE baseline;
 *   plain  - workers compute it, unblinded (insecure upper bound, same messages);
 *   tempo  - workers compute it MM-obfuscated; the master verifies and decrypts;
 *   shield - MM-obfuscation plus fresh additive masks over 4 roles (shield.h).
 * Layers never know which mode runs.
 *
 * Shapes: one product instance is Y = X . W with X (m, n), W (n, p), Y (m, p), row-major
 * float32. With w_trans the operand is stored as (p, n) (PyTorch's Linear/conv layout,
 * or K for Q K^T) and the product is Y = X . W_stored^T. `batch` independent instances
 * (attention heads x samples) are stored back to back; each gets its own key.
 *
 * A product has a site: a small struct the layer owns, zero-initialised, that ties a
 * forward product to its backward products (the engine keeps keys and the workers keep
 * the blinded operands between them). In training mode a forward product keeps that
 * state until tempo_mm_step_end(); the layer must keep X and W unchanged until then. */
#ifndef TEMPO_MATMUL_H
#define TEMPO_MATMUL_H

#include "tempo/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  TEMPO_MODE_LOCAL = 0,
  TEMPO_MODE_PLAIN = 1,
  TEMPO_MODE_TEMPO = 2,
  TEMPO_MODE_SHIELD = 3,
} tempo_mode;

const char *tempo_mode_name(tempo_mode m);
/* Parses "local", "plain", "tempo", "shield"; false if unknown. */
bool tempo_mode_parse(const char *s, tempo_mode *out);

typedef struct {
  int batch;    /* independent instances, >= 1 */
  int m, n, p;  /* X (m, n), W (n, p), Y (m, p) */
  bool w_trans; /* W stored as (p, n) */
} tempo_mm_shape;

typedef struct {
  int slot; /* assigned by the engine on first use; 0 = unassigned */
} tempo_mm_site;

typedef struct {
  tempo_mode mode;       /* default TEMPO_MODE_TEMPO */
  int workers;           /* in-process worker threads for plain/tempo (default 2) */
  int verify_rounds;     /* Freivalds vectors per result (default 1) */
  int threads;           /* BLAS threads of the master in local mode (default 1) */
  const char *audit_dir; /* record every message here when not NULL */
  uint64_t seed;         /* seeds the per-run key stream; 0 = fresh randomness */
} tempo_mm_config;

/* Counters per run (and per step: see tempo_mm_stats_step). Times in seconds. */
typedef struct {
  uint64_t products;            /* products computed (forward and backward, each instance once) */
  uint64_t encryptions;         /* operand encryptions done by the master */
  uint64_t decryptions;         /* result decryptions done by the master */
  uint64_t naive_encryptions;   /* what blinding every backward product from scratch would need */
  uint64_t bytes_up, bytes_down;           /* message bytes master->workers, workers->master */
  uint64_t naive_bytes_up;                 /* upload bytes without the key-shift reuse */
  uint64_t verify_failures;     /* results rejected by the integrity check */
  uint64_t recomputed;          /* products recomputed on another worker */
  uint64_t evictions;           /* workers evicted */
  uint64_t worker_errors;       /* error replies, malformed replies, replies naming another task */
  uint64_t timeouts;            /* requests a worker did not answer in time */
  /* t_blind: Enc passes; t_unblind: Dec passes; t_verify: integrity checks; t_compute:
   * the workers' compute time as they report it (summed over workers); t_transfer: time
   * the master waited for replies minus the busiest worker's compute; t_local: local mode. */
  double t_blind, t_transfer, t_compute, t_verify, t_unblind, t_local;
} tempo_mm_stats;

typedef struct tempo_mm tempo_mm;

void tempo_mm_config_default(tempo_mm_config *cfg);
TEMPO_WUR tempo_status tempo_mm_create(const tempo_mm_config *cfg, tempo_mm **out);
void tempo_mm_free(tempo_mm *mm);
tempo_mode tempo_mm_mode(const tempo_mm *mm);

/* Training on: forward products keep state for their backward products until step_end. */
void tempo_mm_set_training(tempo_mm *mm, bool training);

/* Y = X . W for each instance. Y is overwritten. */
TEMPO_WUR tempo_status tempo_mm_forward(tempo_mm *mm, tempo_mm_site *site, const tempo_mm_shape *shape,
                                        const float *X, const float *W, float *Y);

enum {
  TEMPO_MM_ACCUM_DX = 1u << 0, /* dX += ... instead of dX = ... */
  TEMPO_MM_ACCUM_DW = 1u << 1, /* dW += ... instead of dW = ... */
};

/* The backward products of the site's last forward product, for the gradient dY (m, p):
 *   dX = dY . W^T    (m, n)            when dX != NULL
 *   dW = X^T . dY    (n, p), or (p, n) in the stored layout with w_trans, when dW != NULL
 * X and W must be the operands given to the forward product (the local mode computes
 * with them; offloaded modes use them to verify). */
TEMPO_WUR tempo_status tempo_mm_backward(tempo_mm *mm, tempo_mm_site *site, const tempo_mm_shape *shape,
                                         const float *X, const float *W, const float *dY, float *dX,
                                         float *dW, unsigned flags);

/* Records the shape of every later forward product into buf (cap entries; *count
 * counts them, also past cap) until called again with buf NULL. Used by the privacy
 * report, which needs the products of one step but none of their values. */
void tempo_mm_record_shapes(tempo_mm *mm, tempo_mm_shape *buf, int cap, int *count);

/* Ends a training step: wipes the step's keys and releases the workers' operands. */
void tempo_mm_step_end(tempo_mm *mm);

/* Seconds a worker may take to answer one request before the product is recomputed
 * elsewhere (default 60). No effect in local mode. */
void tempo_mm_set_timeout(tempo_mm *mm, double seconds);
/* Workers not evicted (0 in local mode). */
int tempo_mm_live_workers(const tempo_mm *mm);

/* Run totals and the totals since the last tempo_mm_stats_step call (then reset). */
void tempo_mm_stats_run(const tempo_mm *mm, tempo_mm_stats *out);
void tempo_mm_stats_step(tempo_mm *mm, tempo_mm_stats *out);

#ifdef __cplusplus
}
#endif
#endif
