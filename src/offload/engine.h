/* engine.h - the offload engine behind matmul.h's plain and tempo modes (internal).
 *
 * matmul.c checks arguments, assigns site slots and keeps the statistics; the engine
 * blinds operands (obf.h), splits a product across live workers, sends it through a
 * transport, verifies every result on the master, decrypts it, and recomputes results
 * that fail on another worker, evicting workers that fail 3 times. docs/protocol.md
 * describes the messages and the verification choice. */
#ifndef TEMPO_OFFLOAD_ENGINE_H
#define TEMPO_OFFLOAD_ENGINE_H

#include "offload/transport.h"
#include "tempo/matmul.h"

#define TEMPO_ENGINE_MAX_FAILURES 3         /* a worker failing this often is evicted */
#define TEMPO_ENGINE_DEFAULT_TIMEOUT 60.0   /* seconds a worker may take for one reply */
#define TEMPO_ENGINE_MIN_SPLIT_FLOPS 65536.0 /* smaller products go to one worker whole */
#define TEMPO_ENGINE_BLOCKS_PER_WORKER 4    /* instance blocks per worker of a batched product */

typedef struct tempo_engine tempo_engine;

TEMPO_WUR tempo_status tempo_engine_create(const tempo_mm_config *cfg, tempo_engine **out);
void tempo_engine_free(tempo_engine *e); /* NULL is fine; joins the workers */

TEMPO_WUR tempo_status tempo_engine_forward(tempo_engine *e, int slot, const tempo_mm_shape *s, const float *X,
                                            const float *W, float *Y, bool training);
TEMPO_WUR tempo_status tempo_engine_backward(tempo_engine *e, int slot, const tempo_mm_shape *s, const float *dY,
                                             float *dX, float *dW, unsigned flags);
/* Wipes the step's keys and releases the workers' operands (waits for their ACKs). */
TEMPO_WUR tempo_status tempo_engine_step_end(tempo_engine *e);

/* Adds the counters gathered since the last call to *run and *step, then clears them. */
void tempo_engine_take_stats(tempo_engine *e, tempo_mm_stats *run, tempo_mm_stats *step);
void tempo_engine_set_timeout(tempo_engine *e, double seconds);
int tempo_engine_live_workers(const tempo_engine *e);
tempo_transport *tempo_engine_transport(tempo_engine *e);

/* Test hook (implemented in matmul.c): the engine's transport, NULL in local mode. */
tempo_transport *tempo_mm_test_transport(tempo_mm *mm);

#endif
