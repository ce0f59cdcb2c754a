/* mlp.c - the reference MLP: flatten -> Linear(in, 256) -> ReLU -> Linear(256, 256) -> ReLU
 * -> Linear(256, classes). Parameter names match the PyTorch twin (fc1, fc2, fc3).
 * B = batch, I = c*h*w inputs, H = 256 hidden units, C = classes. */
#include <stdlib.h>

#include "tempo/common.h"
#include "tempo/layers.h"
#include "tempo/model.h"

#define MLP_HIDDEN 256

typedef struct {
  tempo_linear fc1, fc2, fc3;
  const float *x; /* (B, I) the last forward input (owned by the caller) */
  float *h1;      /* (B, H) relu(fc1 x) */
  float *h2;      /* (B, H) relu(fc2 h1) */
  float *dh;      /* (B, H) gradient scratch */
  int batch;
} mlp_impl;

static tempo_status mlp_forward(tempo_model *m, const float *x, int batch, float *logits) {
  mlp_impl *s = m->impl;
  const size_t hn = (size_t)batch * MLP_HIDDEN;
  if (batch < 1 || batch > m->cfg.max_batch)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "mlp: batch %d outside 1..%d", batch, m->cfg.max_batch);
  s->x = x;
  s->batch = batch;
  tempo_status st = tempo_linear_forward(&s->fc1, m->mm, &m->params, x, batch, s->h1);
  if (st) return st;
  tempo_relu_forward(s->h1, s->h1, hn);
  if ((st = tempo_linear_forward(&s->fc2, m->mm, &m->params, s->h1, batch, s->h2))) return st;
  tempo_relu_forward(s->h2, s->h2, hn);
  return tempo_linear_forward(&s->fc3, m->mm, &m->params, s->h2, batch, logits);
}

static tempo_status mlp_backward(tempo_model *m, const float *dlogits, int batch) {
  mlp_impl *s = m->impl;
  const size_t hn = (size_t)batch * MLP_HIDDEN;
  if (batch != s->batch) return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "mlp: backward batch mismatch");
  tempo_status st = tempo_linear_backward(&s->fc3, m->mm, &m->params, s->h2, batch, dlogits, s->dh);
  if (st) return st;
  tempo_relu_backward(s->h2, s->dh, s->dh, hn);
  /* fc2's dx may not alias its dy: use h2 (no longer needed) as the fc2 input-gradient buffer. */
  if ((st = tempo_linear_backward(&s->fc2, m->mm, &m->params, s->h1, batch, s->dh, s->h2))) return st;
  tempo_relu_backward(s->h1, s->h2, s->h2, hn);
  return tempo_linear_backward(&s->fc1, m->mm, &m->params, s->x, batch, s->h2, NULL);
}

static void mlp_destroy(tempo_model *m) {
  mlp_impl *s = m->impl;
  if (!s) return;
  tempo_free_floats(s->h1);
  tempo_free_floats(s->h2);
  tempo_free_floats(s->dh);
  free(s);
  m->impl = NULL;
}

static const tempo_model_ops mlp_ops = {mlp_forward, mlp_backward, mlp_destroy};

tempo_status tempo_mlp_init(tempo_model *m) {
  const tempo_model_config *c = &m->cfg;
  mlp_impl *s = calloc(1, sizeof *s);
  if (!s) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "out of memory creating mlp");
  m->impl = s;
  m->ops = &mlp_ops;
  const int in = c->in_c * c->in_h * c->in_w;
  tempo_status st;
  if ((st = tempo_linear_declare(&s->fc1, &m->params, "fc1", in, MLP_HIDDEN, true)) ||
      (st = tempo_linear_declare(&s->fc2, &m->params, "fc2", MLP_HIDDEN, MLP_HIDDEN, true)) ||
      (st = tempo_linear_declare(&s->fc3, &m->params, "fc3", MLP_HIDDEN, c->num_classes, true)) ||
      (st = tempo_params_finalize(&m->params)))
    return st;
  s->fc1.site.kind |= TEMPO_SITE_RAW_INPUT; /* the protection policy's classes (matmul.h) */
  s->fc3.site.kind |= TEMPO_SITE_HEAD;
  const size_t hn = (size_t)c->max_batch * MLP_HIDDEN;
  s->h1 = tempo_alloc_floats(hn);
  s->h2 = tempo_alloc_floats(hn);
  s->dh = tempo_alloc_floats(hn);
  if (!s->h1 || !s->h2 || !s->dh) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "out of memory for mlp activations");
  tempo_linear_init_default(&s->fc1, &m->params, &m->rng);
  tempo_linear_init_default(&s->fc2, &m->params, &m->rng);
  tempo_linear_init_default(&s->fc3, &m->params, &m->rng);
  return TEMPO_STATUS_OK;
}
