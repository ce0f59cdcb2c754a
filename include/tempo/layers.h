/* layers.h - basic layers with explicit forward and backward, float32.
 *
 * Shapes: R = rows (samples, or samples x positions), I = in features, O = out features,
 * C = classes. Layers never call BLAS: every product goes through the matmul entry point.
 * Gradients of parameters are ACCUMULATED into the registry's grad buffer; input gradients
 * (dx) are overwritten. */
#ifndef TEMPO_LAYERS_H
#define TEMPO_LAYERS_H

#include "tempo/matmul.h"
#include "tempo/params.h"
#include "tempo/rng.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Linear: y = x W^T + b, W stored (O, I) as in PyTorch. */
typedef struct {
  int in, out;
  int w_idx, b_idx; /* registry indices; b_idx = -1 without bias */
  tempo_mm_site site;
} tempo_linear;

/* Declares "<prefix>.weight" (O, I) and, with bias, "<prefix>.bias" (O). */
TEMPO_WUR tempo_status tempo_linear_declare(tempo_linear *l, tempo_params *p, const char *prefix, int in, int out,
                                            bool bias);
/* PyTorch's default: W, b ~ U(-1/sqrt(I), 1/sqrt(I)). */
void tempo_linear_init_default(const tempo_linear *l, tempo_params *p, tempo_rng *rng);
/* y (R, O) from x (R, I). */
TEMPO_WUR tempo_status tempo_linear_forward(tempo_linear *l, tempo_mm *mm, const tempo_params *p, const float *x,
                                            int rows, float *y);
/* dW += dy^T x, db += sum dy, and dx (R, I) = dy W when dx != NULL. x is the forward input. */
TEMPO_WUR tempo_status tempo_linear_backward(tempo_linear *l, tempo_mm *mm, tempo_params *p, const float *x,
                                             int rows, const float *dy, float *dx);

/* y = max(x, 0) over n values (y may equal x). */
void tempo_relu_forward(const float *x, float *y, size_t n);
/* dx = dy where y > 0, else 0 (dx may equal dy). y is the forward output. */
void tempo_relu_backward(const float *y, const float *dy, float *dx, size_t n);

/* Mean softmax cross-entropy of logits (B, C) against labels (B). Returns the loss;
 * writes dlogits (B, C) = (softmax - onehot) / B when dlogits != NULL, and the number of
 * correct argmax predictions into *correct when not NULL. Labels must be in [0, C). */
double tempo_softmax_xent(const float *logits, const int *labels, int batch, int classes, float *dlogits,
                          int *correct);

#ifdef __cplusplus
}
#endif
#endif
