/* shield_engine.h - the shield mode of the offload engine (internal; shield.h and
 * docs/shield.md describe the scheme). Same calling convention as engine.h: matmul.c
 * checks arguments, assigns slots, keeps statistics and dispatches here in shield mode. */
#ifndef TEMPO_OFFLOAD_SHIELD_ENGINE_H
#define TEMPO_OFFLOAD_SHIELD_ENGINE_H

#include "offload/transport.h"
#include "tempo/matmul.h"

typedef struct tempo_shield_engine tempo_shield_engine;

/* INVALID_ARGUMENT when cfg->workers < TEMPO_SHIELD_MIN_WORKERS. */
TEMPO_WUR tempo_status tempo_shield_engine_create(const tempo_mm_config *cfg, tempo_shield_engine **out);
void tempo_shield_engine_free(tempo_shield_engine *e); /* NULL is fine */
TEMPO_WUR tempo_status tempo_shield_engine_forward(tempo_shield_engine *e, int slot, const tempo_mm_shape *s,
                                                   const float *X, const float *W, float *Y, bool training);
TEMPO_WUR tempo_status tempo_shield_engine_backward(tempo_shield_engine *e, int slot, const tempo_mm_shape *s,
                                                    const float *dY, float *dX, float *dW, unsigned flags);
TEMPO_WUR tempo_status tempo_shield_engine_step_end(tempo_shield_engine *e);
void tempo_shield_engine_take_stats(tempo_shield_engine *e, tempo_mm_stats *run, tempo_mm_stats *step);
void tempo_shield_engine_set_timeout(tempo_shield_engine *e, double seconds);
void tempo_shield_engine_set_alpha(tempo_shield_engine *e, double alpha);
int tempo_shield_engine_live_workers(const tempo_shield_engine *e);
tempo_transport *tempo_shield_engine_transport(tempo_shield_engine *e);

/* Implemented in matmul.c: the shield engine of a shield-mode tempo_mm, else NULL. */
tempo_shield_engine *tempo_mm_shield_engine(tempo_mm *mm);

#endif
