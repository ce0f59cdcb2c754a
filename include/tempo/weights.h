/* weights.h - moving a parameter registry to and from safetensors files by name
 * (PyTorch state_dict names and layouts): golden fixtures, `tempo-owner export` and
 * `--init-from`. Trainable tensors and state buffers (batch-norm running statistics)
 * are both included. */
#ifndef TEMPO_WEIGHTS_H
#define TEMPO_WEIGHTS_H

#include "tempo/params.h"
#include "tempo/safetensors.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Copies every registry tensor from the file (matched by name, shapes must be equal).
 * strict: a registry tensor missing from the file is an error (TEMPO_STATUS_MISMATCH);
 * otherwise it keeps its value. Extra tensors in the file are ignored.
 * *loaded (optional) receives the number of tensors copied. */
TEMPO_WUR tempo_status tempo_params_load_st(tempo_params *p, const tempo_st_file *f, bool strict, int *loaded);
/* Writes every registry tensor (F32) to path, atomically. */
TEMPO_WUR tempo_status tempo_params_save_st(const tempo_params *p, const char *path);

#ifdef __cplusplus
}
#endif
#endif
