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

/* A batch norm's running variance "<prefix>.running_var" (a STATE tensor): PyTorch's
 * BatchNorm2d has a third buffer beside it, "<prefix>.num_batches_tracked". */
static bool is_bn_var(const tempo_param_info *in) {
  const size_t n = strlen(in->name), k = strlen(".running_var");
  return (in->flags & TEMPO_PARAM_STATE) && n > k && strcmp(in->name + n - k, ".running_var") == 0;
}

tempo_status tempo_params_save_st(const tempo_params *p, const char *path) {
  /* num_batches_tracked: an int64 scalar, 0 (only BatchNorm's momentum=None mode reads it);
   * written so that PyTorch's load_state_dict(strict=True) finds every buffer it has */
  static const int64_t zero = 0;
  int n = 0;
  for (int i = 0; i < p->n; i++) n += 1 + is_bn_var(&p->info[i]);
  tempo_st_tensor *t = calloc((size_t)(n ? n : 1), sizeof *t);
  if (!t) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "out of memory exporting weights");
  int k = 0;
  for (int i = 0; i < p->n; i++) {
    const tempo_param_info *in = &p->info[i];
    snprintf(t[k].name, sizeof t[k].name, "%s", in->name);
    t[k].dtype = TEMPO_ST_F32;
    t[k].ndim = in->ndim;
    for (int d = 0; d < in->ndim; d++) t[k].shape[d] = in->shape[d];
    t[k].data = tempo_params_ptr(p, i);
    t[k].nbytes = in->count * sizeof(float);
    k++;
    if (is_bn_var(in)) {
      const size_t base = strlen(in->name) - strlen("running_var");
      snprintf(t[k].name, sizeof t[k].name, "%.*snum_batches_tracked", (int)base, in->name);
      t[k].dtype = TEMPO_ST_I64;
      t[k].ndim = 0;
      t[k].data = &zero;
      t[k].nbytes = sizeof zero;
      k++;
    }
  }
  tempo_status st = tempo_st_write(path, t, n);
  free(t);
  return st;
}
