/* engine.h - the offload engine behind matmul.h's plain, tempo and shield modes (internal).
 *
 * matmul.c checks arguments, assigns site slots and keeps the statistics; the engine
 * splits every product into blocks over the live workers (for each of the scheme's
 * shares, on workers that hold no other share of the product), has the scheme
 * (scheme.h) blind the operands, sends the blocks through a transport (relaying W' and
 * adding dW' partials among the workers where the transport can), checks every result,
 * has the scheme decode it, and recomputes results that fail on another worker, evicting
 * workers that fail 3 times. docs/protocol.md describes the messages and the checks. */
#ifndef TEMPO_OFFLOAD_ENGINE_H
#define TEMPO_OFFLOAD_ENGINE_H

#include "offload/scheme.h"
#include "offload/transport.h"
#include "tempo/mm_types.h"

#define TEMPO_ENGINE_MIN_SPLIT_FLOPS 65536.0 /* smaller products go to one worker whole */
#define TEMPO_ENGINE_BLOCKS_PER_WORKER 4    /* instance blocks per worker of a batched product */

typedef struct tempo_engine tempo_engine;

/* The protection policy (mm_types.h tempo_protect, docs/obfuscation.md "Protection policy"):
 * how a product of a site of `kind` (TEMPO_SITE_*) runs under the resolved policy p.
 *   none:    every product WORKERS;
 *   ends:    raw-input and head products MASTER (small: a stem's few input channels, a head's
 *            few classes), the rest WORKERS;
 *   spatial: ends, and spatial products MIXED;
 *   all:     ends, and every other product MIXED.
 * A scheme that cannot mix (scheme.h can_mix false) has its MIXED products computed by the
 * master. */
typedef enum {
  TEMPO_ROUTE_WORKERS = 0, /* blinded by the mode's scheme, as without a policy */
  TEMPO_ROUTE_MIXED = 1,   /* blinded with mixing blocks (tempo_product.mixed) */
  TEMPO_ROUTE_MASTER = 2,  /* computed by the master (matmul.c's local path): no worker sees it */
} tempo_route;
tempo_route tempo_protect_route(tempo_protect p, unsigned kind, bool can_mix);
/* The route of a product of a site of `kind` in engine e (its policy and scheme). */
tempo_route tempo_engine_route(const tempo_engine *e, unsigned kind);

/* Takes over sc (freed with the engine, also on error). INVALID_ARGUMENT when the
 * transport has fewer workers than the scheme needs. */
TEMPO_WUR tempo_status tempo_engine_create(const tempo_mm_config *cfg, tempo_scheme *sc, tempo_engine **out);
void tempo_engine_free(tempo_engine *e); /* NULL is fine; joins the workers */

/* A product the route sends to workers (WORKERS or MIXED; MASTER products never reach the
 * engine). kind: the site's TEMPO_SITE_* flags; the backward uses the forward's route. Xr:
 * X given by rows instead (X NULL; batch 1, a scheme with x_rows), read during this call only. */
TEMPO_WUR tempo_status tempo_engine_forward(tempo_engine *e, int slot, unsigned kind, const tempo_mm_shape *s,
                                            const float *X, const tempo_rows *Xr, const float *W, float *Y,
                                            bool training);
/* dXs (NULL: none): dX taken by a row sink where this product allows (a batch-1 single-share
 * row split whose dX' check rides in its decryption, not accumulated): *sunk then says so and
 * dX is not written; otherwise dX is. */
TEMPO_WUR tempo_status tempo_engine_backward(tempo_engine *e, int slot, const tempo_mm_shape *s, const float *dY,
                                             float *dX, const tempo_rows_sink *dXs, float *dW, unsigned flags,
                                             bool *sunk);
/* Wipes the step's keys and releases the workers' operands (waits for their ACKs). */
TEMPO_WUR tempo_status tempo_engine_step_end(tempo_engine *e);

/* Adds the counters gathered since the last call to *run and *step, then clears them. */
void tempo_engine_take_stats(tempo_engine *e, tempo_mm_stats *run, tempo_mm_stats *step);
void tempo_engine_set_timeout(tempo_engine *e, double seconds);
int tempo_engine_live_workers(const tempo_engine *e);
tempo_transport *tempo_engine_transport(tempo_engine *e);
tempo_scheme *tempo_engine_scheme(tempo_engine *e);
/* The state of the key and verification streams (rounds.h tempo_rounds_streams_save). */
TEMPO_WUR tempo_status tempo_engine_streams_save(const tempo_engine *e, uint8_t *out, size_t cap, size_t *len);
TEMPO_WUR tempo_status tempo_engine_streams_restore(tempo_engine *e, const uint8_t *in, size_t len);

#endif
