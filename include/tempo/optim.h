/* optim.h - optimizers over a parameter registry, and learning-rate schedules.
 *
 * SGD with momentum follows PyTorch: g += wd * w (when decaying); v = mu v + g; w -= lr v.
 * AdamW follows PyTorch's AdamW: w -= lr wd w; m, v moments with bias correction.
 * Parameters flagged TEMPO_PARAM_NO_DECAY get no weight decay. The optimizer owns its
 * state buffer (one contiguous buffer, 1x or 2x the parameter count), saved in checkpoints. */
#ifndef TEMPO_OPTIM_H
#define TEMPO_OPTIM_H

#include "tempo/params.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { TEMPO_OPTIM_SGD = 0, TEMPO_OPTIM_ADAMW = 1 } tempo_optim_kind;
typedef enum { TEMPO_SCHED_CONSTANT = 0, TEMPO_SCHED_COSINE = 1 } tempo_sched_kind;

typedef struct {
  tempo_optim_kind kind;
  float lr;            /* peak learning rate */
  float momentum;      /* SGD (default 0.9) */
  float weight_decay;  /* default 5e-4 for SGD, 0.05 for AdamW */
  float beta1, beta2, eps; /* AdamW (0.9, 0.999, 1e-8) */
  tempo_sched_kind schedule;
  long warmup_steps;   /* cosine: linear warm-up from 0 over these steps */
  long total_steps;    /* cosine: decays to 0 at this step */
} tempo_optim_config;

typedef struct {
  tempo_optim_config cfg;
  long step;     /* updates done so far */
  float *state;  /* SGD: v (count); AdamW: m (count) then v (count) */
  size_t state_count;
} tempo_optim;

bool tempo_optim_kind_parse(const char *s, tempo_optim_kind *out);
const char *tempo_optim_kind_name(tempo_optim_kind k);
bool tempo_sched_kind_parse(const char *s, tempo_sched_kind *out);
const char *tempo_sched_kind_name(tempo_sched_kind k);
/* Defaults for a kind (lr 0.05 SGD / 1e-3 AdamW, cosine schedule to the end of the run). */
void tempo_optim_config_default(tempo_optim_config *c, tempo_optim_kind kind);

TEMPO_WUR tempo_status tempo_optim_init(tempo_optim *o, const tempo_optim_config *cfg, const tempo_params *p);
void tempo_optim_free(tempo_optim *o);
/* The learning rate that the next step will use. */
float tempo_optim_lr(const tempo_optim *o);
/* One update of p->data from p->grad. Non-finite gradients -> TEMPO_STATUS_NUMERIC, nothing changed. */
TEMPO_WUR tempo_status tempo_optim_step(tempo_optim *o, tempo_params *p);

#ifdef __cplusplus
}
#endif
#endif
