/* params.h - the parameter registry: one contiguous buffer per role.
 *
 * A model declares its tensors (with the PyTorch twin's names and layouts, e.g.
 * "fc1.weight" of shape (out, in)), then finalises the registry, which allocates
 *   data  - every trainable parameter, contiguous        (count floats)
 *   grad  - their gradients, same layout                  (count floats)
 *   state - non-trainable buffers (batch-norm running statistics) (state_count floats)
 * Checkpointing, zeroing gradients and optimizer updates are then single passes, and
 * tensors are found by name for golden fixtures and safetensors interop.
 * Ownership: the registry owns all three buffers; tempo_params_free releases them. */
#ifndef TEMPO_PARAMS_H
#define TEMPO_PARAMS_H

#include "tempo/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TEMPO_PARAM_NAME_MAX 64
#define TEMPO_PARAM_MAX_DIMS 4

enum {
  TEMPO_PARAM_NO_DECAY = 1u << 0, /* biases, norm weights, embeddings: no weight decay */
  TEMPO_PARAM_STATE = 1u << 1,    /* a non-trainable buffer, lives in `state` */
};

typedef struct {
  char name[TEMPO_PARAM_NAME_MAX];
  int ndim;
  int shape[TEMPO_PARAM_MAX_DIMS];
  size_t offset; /* into data/grad, or into state for TEMPO_PARAM_STATE */
  size_t count;
  uint32_t flags;
} tempo_param_info;

typedef struct {
  tempo_param_info *info;
  int n, cap;
  float *data;  /* (count) */
  float *grad;  /* (count) */
  float *state; /* (state_count) */
  size_t count, state_count;
  bool finalized;
} tempo_params;

void tempo_params_init(tempo_params *p);
/* Declares a tensor; returns its index in *idx. Only before finalize. */
TEMPO_WUR tempo_status tempo_params_add(tempo_params *p, const char *name, int ndim, const int *shape,
                                        uint32_t flags, int *idx);
/* Allocates data, grad and state (zero-filled). */
TEMPO_WUR tempo_status tempo_params_finalize(tempo_params *p);
/* Pointer to tensor idx inside data (or state for STATE tensors). */
float *tempo_params_ptr(const tempo_params *p, int idx);
/* Pointer to the gradient of tensor idx (NULL for STATE tensors). */
float *tempo_params_grad(const tempo_params *p, int idx);
/* Index of the tensor with this name, or -1. */
int tempo_params_find(const tempo_params *p, const char *name);
/* The first tensor (trainable or state) holding a NaN or an infinity: its index, with the
 * element in *elem; -1 when every value is finite. One pass over data and state. */
int tempo_params_find_nonfinite(const tempo_params *p, size_t *elem);
/* Shape of tensor idx as "[d0, d1, ...]" into buf (cap bytes, NUL-terminated). */
void tempo_params_shape_str(const tempo_params *p, int idx, char *buf, size_t cap);
void tempo_params_zero_grad(tempo_params *p);
void tempo_params_free(tempo_params *p);

#ifdef __cplusplus
}
#endif
#endif
