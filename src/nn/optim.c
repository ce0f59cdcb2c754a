/* optim.c - SGD with momentum, AdamW, and the learning-rate schedules (see optim.h). */
#include "tempo/optim.h"

#include <math.h>
#include <string.h>

#include "tempo/common.h"

bool tempo_optim_kind_parse(const char *s, tempo_optim_kind *out) {
  if (strcmp(s, "sgd") == 0) *out = TEMPO_OPTIM_SGD;
  else if (strcmp(s, "adamw") == 0) *out = TEMPO_OPTIM_ADAMW;
  else return false;
  return true;
}

const char *tempo_optim_kind_name(tempo_optim_kind k) { return k == TEMPO_OPTIM_ADAMW ? "adamw" : "sgd"; }

bool tempo_sched_kind_parse(const char *s, tempo_sched_kind *out) {
  if (strcmp(s, "constant") == 0) *out = TEMPO_SCHED_CONSTANT;
  else if (strcmp(s, "cosine") == 0) *out = TEMPO_SCHED_COSINE;
  else return false;
  return true;
}

const char *tempo_sched_kind_name(tempo_sched_kind k) { return k == TEMPO_SCHED_COSINE ? "cosine" : "constant"; }

void tempo_optim_config_default(tempo_optim_config *c, tempo_optim_kind kind) {
  memset(c, 0, sizeof *c);
  c->kind = kind;
  c->momentum = 0.9f;
  c->beta1 = 0.9f;
  c->beta2 = 0.999f;
  c->eps = 1e-8f;
  c->schedule = TEMPO_SCHED_COSINE;
  if (kind == TEMPO_OPTIM_SGD) {
    c->lr = 0.05f;
    c->weight_decay = 5e-4f;
  } else {
    c->lr = 1e-3f;
    c->weight_decay = 0.05f;
  }
}

tempo_status tempo_optim_init(tempo_optim *o, const tempo_optim_config *cfg, const tempo_params *p) {
  memset(o, 0, sizeof *o);
  if (!(cfg->lr > 0.0f) || !(cfg->weight_decay >= 0.0f) || !(cfg->momentum >= 0.0f && cfg->momentum < 1.0f) ||
      cfg->warmup_steps < 0 || cfg->total_steps < 0)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT,
                           "optimizer: lr must be > 0, weight decay >= 0, momentum in [0, 1)");
  o->cfg = *cfg;
  o->state_count = p->count * (cfg->kind == TEMPO_OPTIM_ADAMW ? 2 : 1);
  o->state = tempo_alloc_floats(o->state_count);
  if (!o->state) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "out of memory for optimizer state");
  return TEMPO_STATUS_OK;
}

void tempo_optim_free(tempo_optim *o) {
  if (!o) return;
  tempo_free_floats(o->state);
  memset(o, 0, sizeof *o);
}

float tempo_optim_lr(const tempo_optim *o) {
  const tempo_optim_config *c = &o->cfg;
  const long t = o->step;
  if (c->schedule == TEMPO_SCHED_CONSTANT) return c->lr;
  if (t < c->warmup_steps) return c->lr * (float)(t + 1) / (float)c->warmup_steps;
  const long span = c->total_steps - c->warmup_steps;
  if (span <= 0) return c->lr;
  double frac = (double)(t - c->warmup_steps) / (double)span;
  if (frac > 1.0) frac = 1.0;
  return (float)(0.5 * c->lr * (1.0 + cos(M_PI * frac)));
}

tempo_status tempo_optim_step(tempo_optim *o, tempo_params *p) {
  for (size_t i = 0; i < p->count; i++)
    if (!isfinite(p->grad[i]))
      return tempo_set_error(TEMPO_STATUS_NUMERIC,
                             "non-finite gradient at step %ld: lower --lr or check the data", o->step);
  const float lr = tempo_optim_lr(o), wd = o->cfg.weight_decay;
  for (int t = 0; t < p->n; t++) {
    const tempo_param_info *in = &p->info[t];
    if (in->flags & TEMPO_PARAM_STATE) continue;
    float *w = p->data + in->offset;
    const float *g = p->grad + in->offset;
    const float decay = (in->flags & TEMPO_PARAM_NO_DECAY) ? 0.0f : wd;
    const size_t n = in->count;
    if (o->cfg.kind == TEMPO_OPTIM_SGD) {
      float *v = o->state + in->offset;
      const float mu = o->cfg.momentum;
      if (o->step == 0) /* PyTorch initialises the buffer to the first gradient */
        for (size_t i = 0; i < n; i++) v[i] = g[i] + decay * w[i];
      else
        for (size_t i = 0; i < n; i++) v[i] = mu * v[i] + g[i] + decay * w[i];
      for (size_t i = 0; i < n; i++) w[i] -= lr * v[i];
    } else {
      float *m = o->state + in->offset, *v = o->state + p->count + in->offset;
      const float b1 = o->cfg.beta1, b2 = o->cfg.beta2, eps = o->cfg.eps;
      const double bc1 = 1.0 - pow(b1, (double)(o->step + 1)), bc2 = 1.0 - pow(b2, (double)(o->step + 1));
      const float step_size = (float)(lr / bc1), rbc2 = (float)(1.0 / sqrt(bc2));
      for (size_t i = 0; i < n; i++) {
        w[i] -= lr * decay * w[i];
        m[i] = b1 * m[i] + (1.0f - b1) * g[i];
        v[i] = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
        w[i] -= step_size * m[i] / (sqrtf(v[i]) * rbc2 + eps);
      }
    }
  }
  o->step++;
  return TEMPO_STATUS_OK;
}
