/* netfile_shape.h - internal: the shapes a network file's layers see, computed once by
 * tempo_net_walk for the parser's checks (tempo_net_resolve) and the model builder (graph.c).
 *
 * Kinds: IMG the model's input (B, C, H, W) NCHW; MAP a feature map (B, H, W, C) NHWC (the
 * layout of cnn.h); TOK tokens (B, N, D) with h = N, c = D; VEC features (B, c). */
#ifndef TEMPO_MODELS_NETFILE_SHAPE_H
#define TEMPO_MODELS_NETFILE_SHAPE_H

#include "tempo/netfile.h"

typedef enum { TEMPO_SHAPE_IMG, TEMPO_SHAPE_MAP, TEMPO_SHAPE_TOK, TEMPO_SHAPE_VEC } tempo_shape_kind;

typedef struct {
  tempo_shape_kind kind;
  int c, h, w;
} tempo_shape;

/* Floats of one sample of s. */
static inline size_t tempo_shape_floats(tempo_shape s) { return (size_t)s.c * s.h * s.w; }

/* Walks the layers for input c x h x w (IMG) and `classes` classes (the file's values win
 * where it sets them; 0 and unset = unknown: the head is not checked). Fills in[i], out[i]
 * (each n_layers, may be NULL) and the patch side each [patch_embed] resolves to (into
 * the layer copy `patch`, may be NULL). Errors: TEMPO_STATUS_INVALID_ARGUMENT "FILE:LINE:COL: ...". */
TEMPO_WUR tempo_status tempo_net_walk(const tempo_net *net, int c, int h, int w, int classes, tempo_shape *in,
                                      tempo_shape *out, int *patch, size_t *params);

#endif
