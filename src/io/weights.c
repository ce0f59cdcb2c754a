/* weights.c - registry <-> safetensors by name (see weights.h). */
#include "tempo/weights.h"

#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "tempo/common.h"

tempo_status tempo_params_load_st(tempo_params *p, const tempo_st_file *f, bool strict, int *loaded) {
  int n = 0;
  for (int i = 0; i < p->n; i++) {
    const tempo_param_info *in = &p->info[i];
    const tempo_st_tensor *t = tempo_st_get(f, in->name);
    if (!t) {
      if (strict) return tempo_set_error(TEMPO_STATUS_MISMATCH, "weights file lacks tensor '%s'", in->name);
      continue;
    }
    bool same = t->ndim == in->ndim;
    for (int d = 0; same && d < in->ndim; d++) same = t->shape[d] == in->shape[d];
    if (!same) {
      char want[96], got[96];
      size_t k = (size_t)snprintf(got, sizeof got, "[");
      for (int d = 0; d < t->ndim && k < sizeof got; d++)
        k += (size_t)snprintf(got + k, sizeof got - k, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
      if (k < sizeof got) snprintf(got + k, sizeof got - k, "]");
      tempo_params_shape_str(p, i, want, sizeof want);
      return tempo_set_error(TEMPO_STATUS_MISMATCH, "tensor '%s' has shape %s in the weights file; this model's is %s "
                             "(is it for another model or input size?)", in->name, got, want);
    }
    float *dst = tempo_params_ptr(p, i);
    tempo_status st = tempo_st_read_f32(t, dst, in->count);
    if (st) return st;
    const long j = tempo_floats_find_nonfinite(dst, in->count);
    if (j >= 0)
      return tempo_set_error(TEMPO_STATUS_CORRUPT, "tensor '%s' holds %s at element %ld: the weights are not finite "
                             "(fix or re-export them; training from them would hide the damage)",
                             in->name, isnan(dst[j]) ? "NaN" : "an infinity", j);
    n++;
  }
  if (loaded) *loaded = n;
  return TEMPO_STATUS_OK;
}

tempo_status tempo_params_save_st(const tempo_params *p, const char *path) {
  tempo_st_tensor *t = calloc((size_t)(p->n ? p->n : 1), sizeof *t);
  if (!t) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "out of memory exporting weights");
  for (int i = 0; i < p->n; i++) {
    const tempo_param_info *in = &p->info[i];
    snprintf(t[i].name, sizeof t[i].name, "%s", in->name);
    t[i].dtype = TEMPO_ST_F32;
    t[i].ndim = in->ndim;
    for (int d = 0; d < in->ndim; d++) t[i].shape[d] = in->shape[d];
    t[i].data = tempo_params_ptr(p, i);
    t[i].nbytes = in->count * sizeof(float);
  }
  tempo_status st = tempo_st_write(path, t, p->n);
  free(t);
  return st;
}
