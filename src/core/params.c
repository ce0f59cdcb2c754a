/* params.c - the parameter registry (see params.h). */
#include "tempo/params.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tempo/common.h"

void tempo_params_init(tempo_params *p) { memset(p, 0, sizeof *p); }

tempo_status tempo_params_add(tempo_params *p, const char *name, int ndim, const int *shape, uint32_t flags,
                              int *idx) {
  if (p->finalized || ndim < 1 || ndim > TEMPO_PARAM_MAX_DIMS || strlen(name) >= TEMPO_PARAM_NAME_MAX)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "bad parameter declaration '%s'", name);
  if (tempo_params_find(p, name) >= 0)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "duplicate parameter name '%s'", name);
  if (p->n == p->cap) {
    int cap = p->cap ? 2 * p->cap : 32;
    tempo_param_info *ni = realloc(p->info, (size_t)cap * sizeof *ni);
    if (!ni) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "out of memory declaring parameters");
    p->info = ni;
    p->cap = cap;
  }
  tempo_param_info *t = &p->info[p->n];
  memset(t, 0, sizeof *t);
  strcpy(t->name, name);
  t->ndim = ndim;
  size_t count = 1;
  for (int d = 0; d < ndim; d++) {
    if (shape[d] <= 0 || !tempo_mul_size(count, (size_t)shape[d], &count))
      return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "bad shape for parameter '%s'", name);
    t->shape[d] = shape[d];
  }
  t->count = count;
  t->flags = flags;
  size_t *total = (flags & TEMPO_PARAM_STATE) ? &p->state_count : &p->count;
  /* 16-float alignment of every tensor keeps vector loads aligned. */
  t->offset = (*total + 15) & ~(size_t)15;
  *total = t->offset + count;
  if (idx) *idx = p->n;
  p->n++;
  return TEMPO_STATUS_OK;
}

tempo_status tempo_params_finalize(tempo_params *p) {
  if (p->finalized) return TEMPO_STATUS_OK;
  p->data = tempo_alloc_floats(p->count);
  p->grad = tempo_alloc_floats(p->count);
  p->state = tempo_alloc_floats(p->state_count);
  if (!p->data || !p->grad || !p->state) {
    tempo_free_floats(p->data);
    tempo_free_floats(p->grad);
    tempo_free_floats(p->state);
    p->data = p->grad = p->state = NULL;
    return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "out of memory allocating %zu parameters", p->count);
  }
  p->finalized = true;
  return TEMPO_STATUS_OK;
}

float *tempo_params_ptr(const tempo_params *p, int idx) {
  TEMPO_ASSERT(p->finalized && idx >= 0 && idx < p->n);
  const tempo_param_info *t = &p->info[idx];
  return ((t->flags & TEMPO_PARAM_STATE) ? p->state : p->data) + t->offset;
}

float *tempo_params_grad(const tempo_params *p, int idx) {
  TEMPO_ASSERT(p->finalized && idx >= 0 && idx < p->n);
  const tempo_param_info *t = &p->info[idx];
  return (t->flags & TEMPO_PARAM_STATE) ? NULL : p->grad + t->offset;
}

int tempo_params_find(const tempo_params *p, const char *name) {
  for (int i = 0; i < p->n; i++)
    if (strcmp(p->info[i].name, name) == 0) return i;
  return -1;
}

void tempo_params_zero_grad(tempo_params *p) {
  if (p->grad) memset(p->grad, 0, p->count * sizeof(float));
}

void tempo_params_free(tempo_params *p) {
  if (!p) return;
  free(p->info);
  tempo_free_floats(p->data);
  tempo_free_floats(p->grad);
  tempo_free_floats(p->state);
  memset(p, 0, sizeof *p);
}

int tempo_params_find_nonfinite(const tempo_params *p, size_t *elem) {
  for (int i = 0; i < p->n; i++) {
    const long j = tempo_floats_find_nonfinite(tempo_params_ptr(p, i), p->info[i].count);
    if (j >= 0) {
      if (elem) *elem = (size_t)j;
      return i;
    }
  }
  return -1;
}

void tempo_params_shape_str(const tempo_params *p, int idx, char *buf, size_t cap) {
  size_t n = 0;
  const tempo_param_info *in = &p->info[idx];
  n += (size_t)snprintf(buf, cap, "[");
  for (int d = 0; d < in->ndim && n < cap; d++) n += (size_t)snprintf(buf + n, cap - n, "%s%d", d ? ", " : "", in->shape[d]);
  if (n < cap) snprintf(buf + n, cap - n, "]");
}
