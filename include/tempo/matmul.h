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
 * state until tempo_mm_step_end(); the layer must keep X and W unchanged until then.
 * The layer (or its model) declares what the product exposes in site.kind (TEMPO_SITE_*:
 * raw input, head, overlapping im2col) before the first product; the protection policy
 * (tempo_mm_config.protect) decides from it whether the product is blinded as usual,
 * blinded with mixing blocks, or computed by the master (docs/obfuscation.md). */
#ifndef TEMPO_MATMUL_H
#define TEMPO_MATMUL_H

#include "tempo/mm_types.h"
#include "tempo/rows.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tempo_mm tempo_mm;

/* The defaults: tempo mode, 2 in-process workers, 1 check vector, 1 thread. */
void tempo_mm_config_default(tempo_mm_config *cfg);
TEMPO_WUR tempo_status tempo_mm_create(const tempo_mm_config *cfg, tempo_mm **out);
void tempo_mm_free(tempo_mm *mm);
tempo_mode tempo_mm_mode(const tempo_mm *mm);
/* The protection policy in force (resolved: never TEMPO_PROTECT_DEFAULT; local mode: none). */
tempo_protect tempo_mm_protect(const tempo_mm *mm);
/* The policy an engine made from cfg would use (cfg->protect, or the mode's default). */
tempo_protect tempo_mm_config_protect(const tempo_mm_config *cfg);

/* Training on: forward products keep state for their backward products until step_end. */
void tempo_mm_set_training(tempo_mm *mm, bool training);

/* Y = X . W for each instance. Y is overwritten. */
TEMPO_WUR tempo_status tempo_mm_forward(tempo_mm *mm, tempo_mm_site *site, const tempo_mm_shape *shape,
                                        const float *X, const float *W, float *Y);

/* Whether tempo_mm_forward_rows can take this product's X by rows: a batch-1 product that
 * the site's route sends to workers, under a scheme that blinds from rows (plain, tempo),
 * with n <= TEMPO_ROWS_MAX_COLS. The master computes every other product itself and needs
 * X materialised, also in the backward. */
bool tempo_mm_takes_rows(const tempo_mm *mm, const tempo_mm_site *site, const tempo_mm_shape *shape);
/* tempo_mm_forward with X given by a row source (rows.h; X->rows == m, X->cols == n), read
 * during this call only: the Enc pass gathers its rows into a small scratch and blinds them,
 * so the plaintext X is never written. The backward of the product needs no X (pass NULL
 * there). INVALID_ARGUMENT unless tempo_mm_takes_rows. */
TEMPO_WUR tempo_status tempo_mm_forward_rows(tempo_mm *mm, tempo_mm_site *site, const tempo_mm_shape *shape,
                                             const tempo_rows *X, const float *W, float *Y);


/* The backward products of the site's last forward product, for the gradient dY (m, p):
 *   dX = dY . W^T    (m, n)            when dX != NULL
 *   dW = X^T . dY    (n, p), or (p, n) in the stored layout with w_trans, when dW != NULL
 * X and W must be the operands given to the forward product (the local mode computes
 * with them; offloaded modes use them to verify). */
TEMPO_WUR tempo_status tempo_mm_backward(tempo_mm *mm, tempo_mm_site *site, const tempo_mm_shape *shape,
                                         const float *X, const float *W, const float *dY, float *dX,
                                         float *dW, unsigned flags);

/* tempo_mm_backward with dX taken by a row sink (rows.h; dXs->rows == m, dXs->cols == n,
 * batch 1) where the product's route allows: each verified row of the blinded dX' is
 * decrypted and added into the sink's destination as it arrives, so dX is never written.
 * *sunk says whether it was (then dX is untouched); otherwise dX holds dX as
 * tempo_mm_backward writes it and the caller scatters it itself. dXs NULL: tempo_mm_backward. */
TEMPO_WUR tempo_status tempo_mm_backward_rows(tempo_mm *mm, tempo_mm_site *site, const tempo_mm_shape *shape,
                                              const float *X, const float *W, const float *dY, float *dX,
                                              const tempo_rows_sink *dXs, float *dW, unsigned flags, bool *sunk);

/* Records the shape of every later forward product into buf (cap entries; *count
 * counts them, also past cap) until called again with buf NULL. Used by the privacy
 * report, which needs the products of one step but none of their values. */
void tempo_mm_record_shapes(tempo_mm *mm, tempo_mm_shape *buf, int cap, int *count);

/* Ends a training step: wipes the step's keys and releases the workers' operands. */
void tempo_mm_step_end(tempo_mm *mm);

/* Seconds a worker may take to answer one request before the product is recomputed
 * elsewhere (default 60). No effect in local mode. */
void tempo_mm_set_timeout(tempo_mm *mm, double seconds);
/* The state of the engine's random streams (the key stream and the verification stream),
 * for checkpoints: restoring it into an engine of the same mode continues exactly the
 * trajectory of the engine that saved it (between steps only: never inside one). At most
 * TEMPO_MM_STREAMS_MAX bytes; none (*len 0) in local mode. It is a secret that reproduces
 * every key of the run: keep it only in the master's own (sealable) checkpoint and wipe
 * it (sodium_memzero) after use. Restore: len 0 keeps the fresh streams, local mode ignores
 * the record; a malformed record is TEMPO_STATUS_CORRUPT and changes nothing. */
#define TEMPO_MM_STREAMS_MAX 256
TEMPO_WUR tempo_status tempo_mm_streams_save(const tempo_mm *mm, uint8_t *out, size_t cap, size_t *len);
TEMPO_WUR tempo_status tempo_mm_streams_restore(tempo_mm *mm, const uint8_t *in, size_t len);

/* Workers not evicted (0 in local mode). */
int tempo_mm_live_workers(const tempo_mm *mm);

/* Run totals and the totals since the last tempo_mm_stats_step call (then reset). */
void tempo_mm_stats_run(const tempo_mm *mm, tempo_mm_stats *out);
void tempo_mm_stats_step(tempo_mm *mm, tempo_mm_stats *out);

/* Shield mode (shield.h): sets the mask scale alpha (> 0) for the following products
 * (INVALID_ARGUMENT if mm is not in shield mode or alpha <= 0). At creation
 * tempo_mm_config.shield_alpha sets it. */
TEMPO_WUR tempo_status tempo_shield_set_alpha(tempo_mm *mm, double alpha);
/* Shield mode: float64 (true, the default) or float32 shares for the following products;
 * resets alpha to that dtype's default (TEMPO_SHIELD_DEFAULT_ALPHA or _F32); call
 * tempo_shield_set_alpha after it to override. At creation tempo_mm_config.shield_f32
 * and shield_alpha choose. INVALID_ARGUMENT if mm is not in shield mode. */
TEMPO_WUR tempo_status tempo_shield_set_float64(tempo_mm *mm, bool f64);

/* Test hook: the engine's transport (src/offload/transport.h), NULL in local mode. */
struct tempo_transport *tempo_mm_test_transport(tempo_mm *mm);

#ifdef __cplusplus
}
#endif
#endif
