/* graph.h - internal: the nodes of a model built from a network file (graph.c) and its
 * transformer encoder blocks (graph_encoder.c). Letters as in graph.c. */
#ifndef TEMPO_MODELS_GRAPH_H
#define TEMPO_MODELS_GRAPH_H

#include "tempo/cnn.h"
#include "tempo/layers.h"
#include "tempo/model.h"
#include "tempo/netfile.h"
#include "tempo/vit.h"
#include "models/netfile_shape.h"

/* Hands out 64-byte aligned views of one buffer; with base == NULL it only counts. */
typedef struct {
  float *base;
  size_t used;
} graph_arena;
float *graph_take(graph_arena *a, size_t n);

/* A pre-norm transformer block: x + proj(attn(norm1(x))), then + fc2(gelu(fc1(norm2(.)))). */
typedef struct {
  tempo_layernorm norm1, norm2;
  tempo_mhsa attn;
  tempo_linear fc1, fc2;
  int heads, mlp;                 /* H, M */
  float *ln1, *ln2, *mid;         /* (B, N, D) */
  float *mean1, *rstd1, *mean2, *rstd2; /* (B*N) */
  float *h_pre, *h_act;           /* (B, N, M) */
  uint8_t *mask_attn, *mask_mlp;  /* (B, N, D) dropout masks, or NULL (owned: one malloc at mask_attn) */
  bool dropped;                   /* the last forward applied dropout */
} graph_encoder;

typedef struct {
  tempo_net_kind kind;
  tempo_shape in, out;      /* per sample */
  int size, stride, pad;    /* windows; the patch side for patch_embed */
  float p;                  /* dropout probability (resolved) */
  int n_main, n_short;      /* residual: its branches */
  bool in_block;            /* a node of a residual block's branch */
  bool need_dx;             /* an earlier node has parameters: compute the input gradient */
  bool relu_fused, skip;    /* bn applies the next [relu]; that [relu] does nothing */
  bool in_place;            /* relu on its input */
  bool res_fused;           /* bn: the last of a main branch: adds res and the block's ReLU */
  bool fused, block_relu;   /* residual: its last main node is a fused bn; ReLU after the add */
  bool dropped;             /* dropout applied in the last forward */
  tempo_conv2d conv;
  float *cols;              /* conv: (B*OH*OW, K) lowered input */
  tempo_bn2d bn;
  tempo_linear lin;
  tempo_layernorm ln;
  float *mean, *rstd;       /* layernorm: (R) */
  tempo_patch_embed pe;
  float *patches;           /* (B*P, K) */
  graph_encoder *enc;       /* owned */
  int32_t *argmax;          /* maxpool: (B * out) owned */
  uint8_t *mask;            /* dropout: (B * in) owned */
  float *buf;               /* output buffer (arena), NULL for aliases */
  const float *x, *y;       /* the last forward's input and output */
  const float *res;         /* fused bn: the shortcut of the last forward */
} graph_node;

typedef struct {
  int n_nodes;
  graph_node *nodes;        /* (n_nodes), the file's layers */
  float *arena;
  float *g[4];              /* gradient buffers (B * largest activation) */
  float *dcols;             /* conv input-gradient columns */
  float *attn_scratch;      /* attention scratch, patch embedding products */
  float *dh, *dln, *dt;     /* encoder backward scratch: (B, N, M), (B, N, D) x 2 */
  int batch;
} graph_impl;

/* Builds m (cfg, mm, rng and an empty registry set) from net: walks its shapes for m->cfg's
 * input and classes, declares, allocates and initialises in layer order. */
TEMPO_WUR tempo_status tempo_graph_init(tempo_model *m, const tempo_net *net);

/* graph_encoder.c */
TEMPO_WUR tempo_status graph_encoder_declare(tempo_model *m, graph_node *g, const tempo_net_layer *L);
TEMPO_WUR tempo_status graph_encoder_alloc(graph_node *g, int max_batch);
TEMPO_WUR tempo_status graph_encoder_masks(graph_node *g, int max_batch);
void graph_encoder_layout(graph_node *g, graph_arena *a, int max_batch);
void graph_encoder_init(tempo_model *m, graph_node *g);
void graph_encoder_free(graph_node *g);
TEMPO_WUR tempo_status graph_encoder_forward(tempo_model *m, graph_impl *s, graph_node *g, const float *x, int batch);
/* In place: dy (B, N, D), the gradient of the block's output, becomes its input's. */
TEMPO_WUR tempo_status graph_encoder_backward(tempo_model *m, graph_impl *s, graph_node *g, float *dy);

#endif
