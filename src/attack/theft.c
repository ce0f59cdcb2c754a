/* theft.c - model theft helpers for the suite: a model on the master's own BLAS (local
 * mode), test accuracy, and fine-tuning on a small labelled set (attack_internal.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attack/attack_internal.h"
#include "tempo/common.h"
#include "tempo/layers.h"

tempo_status tempo_attack_model_create(const char *name, uint64_t seed, tempo_attack_model *out) {
  memset(out, 0, sizeof *out);
  tempo_mm_config mc;
  tempo_mm_config_default(&mc);
  mc.mode = TEMPO_MODE_LOCAL;
  mc.threads = 2;
  tempo_status st = tempo_mm_create(&mc, &out->mm);
  if (st) return st;
  tempo_model_config cfg = {.in_c = 1, .in_h = 28, .in_w = 28, .num_classes = 10, .max_batch = ATTACK_BATCH};
  snprintf(cfg.name, sizeof cfg.name, "%s", name);
  if ((st = tempo_model_create(&cfg, out->mm, seed, &out->model))) {
    tempo_mm_free(out->mm);
    out->mm = NULL;
  }
  return st;
}

void tempo_attack_model_free(tempo_attack_model *a) {
  tempo_model_free(a->model);
  tempo_mm_free(a->mm);
  memset(a, 0, sizeof *a);
}

tempo_status tempo_attack_accuracy(tempo_attack_model *a, const tempo_dataset *test, int samples, double *acc) {
  tempo_model *m = a->model;
  float *x = tempo_alloc_floats((size_t)ATTACK_BATCH * test->c * test->h * test->w);
  float *logits = tempo_alloc_floats((size_t)ATTACK_BATCH * 10);
  int *y = malloc(ATTACK_BATCH * sizeof *y);
  tempo_batcher b;
  tempo_status st = TEMPO_STATUS_NO_MEMORY;
  if (!x || !logits || !y) goto out;
  if ((st = tempo_batcher_init(&b, test, ATTACK_BATCH, 0, false, NULL))) goto out;
  m->training = false;
  tempo_mm_set_training(a->mm, false);
  long correct = 0, seen = 0;
  int n;
  while (seen < samples && (n = tempo_batcher_next(&b, x, y)) > 0) {
    if ((st = m->ops->forward(m, x, n, logits))) break;
    int ok;
    tempo_softmax_xent(logits, y, n, 10, NULL, &ok);
    correct += ok;
    seen += n;
  }
  tempo_batcher_free(&b);
  *acc = seen ? (double)correct / seen : 0;
out:
  tempo_free_floats(x), tempo_free_floats(logits), free(y);
  if (st == TEMPO_STATUS_NO_MEMORY) tempo_set_error(st, "attack: out of memory");
  return st;
}

tempo_status tempo_attack_finetune(tempo_attack_model *a, const tempo_dataset *small, int steps, float lr) {
  tempo_model *m = a->model;
  const int bs = 32;
  float *x = tempo_alloc_floats((size_t)bs * small->c * small->h * small->w);
  float *logits = tempo_alloc_floats((size_t)bs * 10), *dl = tempo_alloc_floats((size_t)bs * 10);
  int *y = malloc(bs * sizeof *y);
  tempo_optim opt = {0};
  tempo_batcher b;
  bool have_b = false;
  tempo_status st = TEMPO_STATUS_OK;
  if (!x || !logits || !dl || !y) {
    st = tempo_set_error(TEMPO_STATUS_NO_MEMORY, "attack: out of memory");
    goto out;
  }
  tempo_optim_config oc;
  tempo_optim_config_default(&oc, TEMPO_OPTIM_SGD);
  oc.lr = lr;
  oc.schedule = TEMPO_SCHED_COSINE;
  oc.total_steps = steps;
  if ((st = tempo_optim_init(&opt, &oc, &m->params))) goto out;
  if ((st = tempo_batcher_init(&b, small, bs, 77, true, NULL))) goto out;
  have_b = true;
  tempo_batcher_set_drop_last(&b, true);
  m->training = true;
  tempo_mm_set_training(a->mm, true);
  int epoch = 0;
  for (int s = 0; s < steps; s++) {
    int n = tempo_batcher_next(&b, x, y);
    if (n == 0) {
      tempo_batcher_seek(&b, ++epoch, 0);
      n = tempo_batcher_next(&b, x, y);
    }
    tempo_params_zero_grad(&m->params);
    if ((st = m->ops->forward(m, x, n, logits))) break;
    tempo_softmax_xent(logits, y, n, 10, dl, NULL);
    if ((st = m->ops->backward(m, dl, n))) break;
    if ((st = tempo_optim_step(&opt, &m->params))) break;
    tempo_mm_step_end(a->mm);
  }
  m->training = false;
  tempo_mm_set_training(a->mm, false);
out:
  if (have_b) tempo_batcher_free(&b);
  tempo_optim_free(&opt);
  tempo_free_floats(x), tempo_free_floats(logits), tempo_free_floats(dl), free(y);
  return st;
}

/* Re-estimates the batch-norm running statistics of the current weights (the standard
 * trick after swapping weights): `batches` training-mode forwards on the small set, with a
 * zero gradient so nothing else changes. No effect on models without batch norm. */
tempo_status tempo_attack_recalibrate(tempo_attack_model *a, const tempo_dataset *small, int batches) {
  tempo_model *m = a->model;
  const int bs = 64;
  float *x = tempo_alloc_floats((size_t)bs * small->c * small->h * small->w);
  float *logits = tempo_alloc_floats((size_t)bs * 10), *dl = tempo_alloc_floats((size_t)bs * 10);
  int *y = malloc(bs * sizeof *y);
  tempo_batcher b;
  tempo_status st = TEMPO_STATUS_OK;
  if (!x || !logits || !dl || !y) {
    st = tempo_set_error(TEMPO_STATUS_NO_MEMORY, "attack: out of memory");
    goto out;
  }
  if ((st = tempo_batcher_init(&b, small, bs, 78, true, NULL))) goto out;
  tempo_batcher_set_drop_last(&b, true);
  m->training = true;
  tempo_mm_set_training(a->mm, true);
  int epoch = 0;
  for (int s = 0; s < batches && !st; s++) {
    int n = tempo_batcher_next(&b, x, y);
    if (n == 0) {
      tempo_batcher_seek(&b, ++epoch, 0);
      n = tempo_batcher_next(&b, x, y);
    }
    if ((st = m->ops->forward(m, x, n, logits))) break;
    st = m->ops->backward(m, dl, n); /* dl is all zeros */
    tempo_mm_step_end(a->mm);
  }
  tempo_params_zero_grad(&m->params);
  tempo_batcher_free(&b);
  m->training = false;
  tempo_mm_set_training(a->mm, false);
out:
  tempo_free_floats(x), tempo_free_floats(logits), tempo_free_floats(dl), free(y);
  return st;
}

/* The first `n` samples of d (d is shuffled by nobody: the file order is already mixed). */
tempo_status tempo_attack_subset(const tempo_dataset *d, int n, tempo_dataset *out) {
  memset(out, 0, sizeof *out);
  if (n > d->n) n = d->n;
  size_t img = (size_t)d->c * d->h * d->w;
  *out = *d;
  out->n = n;
  out->store = NULL, out->store_len = 0, out->store_mapped = false; /* its own copies, below */
  out->images = malloc((size_t)n * img);
  out->labels = malloc((size_t)n);
  if (!out->images || !out->labels) {
    free(out->images), free(out->labels);
    memset(out, 0, sizeof *out);
    return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "attack: out of memory");
  }
  memcpy(out->images, d->images, (size_t)n * img);
  memcpy(out->labels, d->labels, (size_t)n);
  return TEMPO_STATUS_OK;
}
