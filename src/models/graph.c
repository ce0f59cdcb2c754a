/* graph.c - a model built from a network file (netfile.h): the layers run in file order
 * through the same layer functions (cnn.h, layers.h, vit.h) the reference builders use, in
 * the same order, so a file that describes a reference model gives its parameters, products
 * and losses bit for bit (tests/test_netfile.c).
 *
 * Nodes are the file's layers, same indices. A [residual] node at i is followed by its main
 * branch (i+1 .. i+n_main) and its shortcut (the next n_short). Fusions that change no value:
 * a [relu] right after a [bn] runs inside the BN (tempo_bn2d_forward's relu); the last [bn] of
 * a main branch also adds the shortcut and the block's ReLU (as resnet.c's units).
 *
 * Buffers: every node's output lives in one arena sized for max_batch (aliases for layers that
 * change nothing: flatten of a flat input, dropout off, in-place ReLU); gradients ping-pong
 * between g[0], g[1] at the top level and g[2], g[3] inside blocks. A node computes an input
 * gradient only when some earlier node has parameters (need_dx): no wasted products.
 * B = batch, R = rows (B x positions), N = tokens, D = width. */
#pragma GCC optimize("vect-cost-model=dynamic")

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tempo/cnn.h"
#include "tempo/common.h"
#include "tempo/layers.h"
#include "tempo/model.h"
#include "tempo/netfile.h"
#include "tempo/vit.h"
#include "models/graph.h"
#include "models/netfile_shape.h"

float *graph_take(graph_arena *a, size_t n) {
  if (!n) return NULL;
  float *p = a->base ? a->base + a->used : NULL;
  a->used += (n + 15) & ~(size_t)15;
  return p;
}
#define take graph_take

static size_t rows_of(tempo_shape s) { return (size_t)s.h * s.w; } /* rows per sample */

static bool has_params(tempo_net_kind k) {
  return k == TEMPO_NET_CONV || k == TEMPO_NET_BN || k == TEMPO_NET_LINEAR || k == TEMPO_NET_LAYERNORM ||
         k == TEMPO_NET_PATCH_EMBED || k == TEMPO_NET_ENCODER;
}

/* ------------------------------------------------------------------ forward */
static const float *forward_range(tempo_model *m, graph_impl *s, int from, int n, const float *x, int batch,
                                  float *logits, tempo_status *st);

static const float *node_forward(tempo_model *m, graph_impl *s, int i, const float *x, int batch, float *logits,
                                 tempo_status *st) {
  graph_node *g = &s->nodes[i];
  const size_t in_n = (size_t)batch * tempo_shape_floats(g->in), out_n = (size_t)batch * tempo_shape_floats(g->out);
  const int rows = batch * (int)rows_of(g->out);
  float *y = g->buf;
  g->x = x;
  switch (g->kind) {
  case TEMPO_NET_CONV: *st = tempo_conv2d_forward(&g->conv, m->mm, &m->params, x, batch, g->cols, y); break;
  case TEMPO_NET_BN:
    tempo_bn2d_forward(&g->bn, &m->params, m->training, x, rows, g->res, g->res_fused ? g->block_relu : g->relu_fused,
                       y);
    break;
  case TEMPO_NET_RELU:
    if (g->skip) return x;
    if (!y) y = (float *)x; /* in place: the producer's backward does not need its output */
    tempo_relu_forward(x, y, in_n);
    break;
  case TEMPO_NET_GELU: tempo_gelu_forward(x, y, in_n); break;
  case TEMPO_NET_MAXPOOL:
    tempo_maxpool2d_forward(x, batch, g->in.h, g->in.w, g->in.c, g->size, g->stride, g->pad, y, g->argmax);
    break;
  case TEMPO_NET_AVGPOOL:
    tempo_avgpool2d_forward(x, batch, g->in.h, g->in.w, g->in.c, g->size, g->stride, g->pad, y);
    break;
  case TEMPO_NET_GAP: tempo_gap_forward(x, batch, (int)rows_of(g->in), g->in.c, y); break;
  case TEMPO_NET_FLATTEN:
    if (!y) return x; /* already in PyTorch's (C, H, W) order */
    for (int b = 0; b < batch; b++) { /* NHWC -> NCHW */
      const float *src = x + (size_t)b * tempo_shape_floats(g->in);
      float *dst = y + (size_t)b * tempo_shape_floats(g->in);
      const size_t hw = rows_of(g->in), c = (size_t)g->in.c;
      for (size_t p = 0; p < hw; p++)
        for (size_t ch = 0; ch < c; ch++) dst[ch * hw + p] = src[p * c + ch];
    }
    break;
  case TEMPO_NET_LINEAR:
    if (logits) y = logits;
    *st = tempo_linear_forward(&g->lin, m->mm, &m->params, x, batch * (int)rows_of(g->in), y);
    break;
  case TEMPO_NET_DROPOUT:
    g->dropped = m->training && g->p > 0.0f;
    if (!g->dropped) return x;
    tempo_dropout_forward(&m->rng, g->p, x, y, g->mask, in_n);
    break;
  case TEMPO_NET_LAYERNORM:
    tempo_layernorm_forward(&g->ln, &m->params, x, batch * (int)rows_of(g->in), y, g->mean, g->rstd);
    break;
  case TEMPO_NET_PATCH_EMBED:
    *st = tempo_patch_embed_forward(&g->pe, m->mm, &m->params, x, batch, g->patches, s->attn_scratch, y);
    break;
  case TEMPO_NET_ENCODER: *st = graph_encoder_forward(m, s, g, x, batch); break;
  case TEMPO_NET_CLS: {
    const size_t d = (size_t)g->in.c, nd = (size_t)g->in.h * d;
    for (int b = 0; b < batch; b++) memcpy(y + (size_t)b * d, x + (size_t)b * nd, d * sizeof(float));
    break;
  }
  case TEMPO_NET_RESIDUAL: {
    const float *sc = x;
    if (g->n_short) sc = forward_range(m, s, i + 1 + g->n_main, g->n_short, x, batch, NULL, st);
    if (*st) return NULL;
    graph_node *last = &s->nodes[i + g->n_main];
    if (g->fused) last->res = sc;
    const float *a = forward_range(m, s, i + 1, g->n_main, x, batch, NULL, st);
    if (*st) return NULL;
    if (g->fused) y = (float *)a;
    else tempo_residual_add(a, sc, y, out_n, g->block_relu);
    break;
  }
  default: *st = tempo_set_error(TEMPO_STATUS_INTERNAL, "graph: layer kind %d", (int)g->kind); return NULL;
  }
  g->y = y;
  return y;
}

static const float *forward_range(tempo_model *m, graph_impl *s, int from, int n, const float *x, int batch,
                                  float *logits, tempo_status *st) {
  const float *cur = x;
  for (int i = from; i < from + n && !*st; i++) {
    const bool last = logits && i == s->n_nodes - 1;
    cur = node_forward(m, s, i, cur, batch, last ? logits : NULL, st);
    if (s->nodes[i].kind == TEMPO_NET_RESIDUAL) i += s->nodes[i].n_main + s->nodes[i].n_short;
  }
  return cur;
}

static tempo_status graph_forward(tempo_model *m, const float *x, int batch, float *logits) {
  graph_impl *s = m->impl;
  if (batch < 1 || batch > m->cfg.max_batch)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "%s: batch %d outside 1..%d", m->cfg.name, batch,
                           m->cfg.max_batch);
  s->batch = batch;
  tempo_status st = TEMPO_STATUS_OK;
  forward_range(m, s, 0, s->n_nodes, x, batch, logits, &st);
  return st;
}

/* ------------------------------------------------------------------ backward */
static void relu_mask(const float *restrict out, float *restrict g, size_t n) {
  for (size_t i = 0; i < n; i++) {
    const float v = g[i];
    g[i] = out[i] > 0.0f ? v : 0.0f;
  }
}

static float *backward_range(tempo_model *m, graph_impl *s, int from, int n, float *dy, float *sa, float *sb,
                             float *final, bool accum, tempo_status *st);

/* The input gradient of node i for dy (the gradient of its output) into dx (NULL: not needed;
 * accum: add into dx). Returns where the input gradient is (dx, or dy for in-place layers). */
static float *node_backward(tempo_model *m, graph_impl *s, int i, float *dy, float *dx, float *scratch, bool accum,
                            tempo_status *st) {
  graph_node *g = &s->nodes[i];
  const int batch = s->batch;
  const size_t in_n = (size_t)batch * tempo_shape_floats(g->in);
  const int rows_in = batch * (int)rows_of(g->in), rows_out = batch * (int)rows_of(g->out);
  if (!dx && !has_params(g->kind) && g->kind != TEMPO_NET_RESIDUAL) return NULL;
  switch (g->kind) {
  case TEMPO_NET_CONV:
    *st = tempo_conv2d_backward(&g->conv, m->mm, &m->params, g->x, batch, g->cols, dy, s->dcols, dx,
                                accum ? TEMPO_CONV_ACCUM_DX : 0);
    return dx;
  case TEMPO_NET_BN:
    if (!dx) dx = scratch;
    tempo_bn2d_backward(&g->bn, &m->params, g->x, rows_out, g->relu_fused && !g->res_fused ? g->y : NULL, dy, dx);
    return dx;
  case TEMPO_NET_RELU:
    if (g->skip) return dy;
    tempo_relu_backward(g->y, dy, dx, in_n);
    return dx;
  case TEMPO_NET_GELU: tempo_gelu_backward(g->x, dy, dx, in_n); return dx;
  case TEMPO_NET_MAXPOOL:
    tempo_maxpool2d_backward(dy, g->argmax, batch, g->in.h, g->in.w, g->in.c, g->out.h, g->out.w, dx);
    return dx;
  case TEMPO_NET_AVGPOOL:
    tempo_avgpool2d_backward(dy, batch, g->in.h, g->in.w, g->in.c, g->size, g->stride, g->pad, dx);
    return dx;
  case TEMPO_NET_GAP: tempo_gap_backward(dy, batch, (int)rows_of(g->in), g->in.c, dx); return dx;
  case TEMPO_NET_FLATTEN:
    if (!g->buf) {
      if (dx != dy) memcpy(dx, dy, in_n * sizeof(float));
      return dx;
    }
    for (int b = 0; b < batch; b++) { /* NCHW -> NHWC */
      const float *src = dy + (size_t)b * tempo_shape_floats(g->in);
      float *dst = dx + (size_t)b * tempo_shape_floats(g->in);
      const size_t hw = rows_of(g->in), c = (size_t)g->in.c;
      for (size_t p = 0; p < hw; p++)
        for (size_t ch = 0; ch < c; ch++) dst[p * c + ch] = src[ch * hw + p];
    }
    return dx;
  case TEMPO_NET_LINEAR: *st = tempo_linear_backward(&g->lin, m->mm, &m->params, g->x, rows_in, dy, dx); return dx;
  case TEMPO_NET_DROPOUT:
    if (g->dropped) tempo_dropout_backward(g->p, g->mask, dy, dx, in_n);
    else if (dx != dy) memcpy(dx, dy, in_n * sizeof(float));
    return dx;
  case TEMPO_NET_LAYERNORM:
    tempo_layernorm_backward(&g->ln, &m->params, g->x, g->mean, g->rstd, dy, rows_in, dx ? dx : scratch, false);
    return dx;
  case TEMPO_NET_PATCH_EMBED:
    *st = tempo_patch_embed_backward(&g->pe, m->mm, &m->params, g->patches, batch, dy, s->dln);
    return NULL;
  case TEMPO_NET_ENCODER:
    *st = graph_encoder_backward(m, s, g, dy);
    if (!*st && dx && dx != dy) memcpy(dx, dy, in_n * sizeof(float));
    return dx ? dx : dy;
  case TEMPO_NET_CLS: {
    const size_t d = (size_t)g->in.c, nd = (size_t)g->in.h * d;
    memset(dx, 0, in_n * sizeof(float));
    for (int b = 0; b < batch; b++) memcpy(dx + (size_t)b * nd, dy + (size_t)b * d, d * sizeof(float));
    return dx;
  }
  case TEMPO_NET_RESIDUAL: {
    const size_t out_n = (size_t)batch * tempo_shape_floats(g->out);
    if (g->block_relu) relu_mask(g->y, dy, out_n);
    backward_range(m, s, i + 1, g->n_main, dy, s->g[2], s->g[3], dx, false, st);
    if (*st) return NULL;
    if (g->n_short) backward_range(m, s, i + 1 + g->n_main, g->n_short, dy, s->g[2], s->g[3], dx, true, st);
    else if (dx) tempo_residual_add(dx, dy, dx, out_n, false);
    return dx;
  }
  default: *st = tempo_set_error(TEMPO_STATUS_INTERNAL, "graph: layer kind %d", (int)g->kind); return NULL;
  }
}

/* Backward through nodes from..from+n-1 (one range: the top level or a branch) for dy, the
 * gradient of the range's output; the first node's input gradient goes into final. */
static float *backward_range(tempo_model *m, graph_impl *s, int from, int n, float *dy, float *sa, float *sb,
                             float *final, bool accum, tempo_status *st) {
  float *cur = dy;
  for (int i = from + n - 1; i >= from && !*st; i--) {
    graph_node *g = &s->nodes[i];
    if (g->in_block != s->nodes[from].in_block) continue; /* a block's own nodes: run by the block */
    float *other = cur == sa ? sb : sa;
    float *dx = !g->need_dx ? NULL : i == from ? final : other;
    /* layers that may work in place do, except on the range's own input (a block's shortcut
     * reads it after the main branch) */
    const bool in_place = g->kind == TEMPO_NET_ENCODER || g->kind == TEMPO_NET_DROPOUT ||
                          (g->kind == TEMPO_NET_RELU && !g->skip) || (g->kind == TEMPO_NET_FLATTEN && !g->buf);
    if (dx && i != from && cur != dy && in_place) dx = cur;
    cur = node_backward(m, s, i, cur, dx, other, i == from && accum, st);
    if (!cur) break; /* nothing before needs a gradient */
  }
  return cur;
}

static tempo_status graph_backward(tempo_model *m, const float *dlogits, int batch) {
  graph_impl *s = m->impl;
  if (batch != s->batch)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "%s: backward batch mismatch", m->cfg.name);
  tempo_status st = TEMPO_STATUS_OK;
  /* the head is a [linear]: it only reads dlogits */
  backward_range(m, s, 0, s->n_nodes, (float *)dlogits, s->g[0], s->g[1], NULL, false, &st);
  return st;
}

/* ------------------------------------------------------------------ build */
static void graph_destroy(tempo_model *m) {
  graph_impl *s = m->impl;
  if (!s) return;
  for (int i = 0; s->nodes && i < s->n_nodes; i++) { /* nodes is NULL when its allocation failed */
    graph_node *g = &s->nodes[i];
    tempo_bn2d_free(&g->bn);
    free(g->argmax);
    free(g->mask);
    graph_encoder_free(g);
  }
  free(s->nodes);
  tempo_free_floats(s->arena);
  free(s);
  m->impl = NULL;
}

static const tempo_model_ops graph_ops = {graph_forward, graph_backward, graph_destroy};

static tempo_status declare(tempo_model *m, graph_impl *s, const tempo_net *net) {
  tempo_params *p = &m->params;
  tempo_status st = TEMPO_STATUS_OK;
  for (int i = 0; i < s->n_nodes && !st; i++) {
    graph_node *g = &s->nodes[i];
    const tempo_net_layer *L = &net->layers[i];
    switch (g->kind) {
    case TEMPO_NET_CONV:
      st = tempo_conv2d_declare(&g->conv, p, L->name, g->in.c, g->out.c, L->size, L->stride, L->pad, L->bias != 0,
                                g->in.h, g->in.w, g->in.kind == TEMPO_SHAPE_IMG ? TEMPO_LAYOUT_NCHW : TEMPO_LAYOUT_NHWC);
      break;
    case TEMPO_NET_BN: st = tempo_bn2d_declare(&g->bn, p, L->name, g->in.c); break;
    case TEMPO_NET_LINEAR: st = tempo_linear_declare(&g->lin, p, L->name, g->in.c, g->out.c, L->bias != 0); break;
    case TEMPO_NET_LAYERNORM: st = tempo_layernorm_declare(&g->ln, p, L->name, g->in.c); break;
    case TEMPO_NET_PATCH_EMBED:
      st = tempo_patch_embed_declare(&g->pe, p, g->in.c, g->in.h, g->in.w, g->size, g->out.c);
      break;
    case TEMPO_NET_ENCODER: st = graph_encoder_declare(m, g, L); break;
    default: break;
    }
  }
  if (st) return st;
  /* the protection policy's classes (matmul.h): products that read the raw input (no layer
   * with parameters before them) and the head */
  for (int i = 0; i < s->n_nodes; i++) {
    graph_node *g = &s->nodes[i];
    tempo_mm_site *site = g->kind == TEMPO_NET_CONV ? &g->conv.site : g->kind == TEMPO_NET_LINEAR ? &g->lin.site
                          : g->kind == TEMPO_NET_PATCH_EMBED ? &g->pe.site : NULL;
    if (site && !g->need_dx) site->kind |= TEMPO_SITE_RAW_INPUT;
    if (site && i == s->n_nodes - 1) site->kind |= TEMPO_SITE_HEAD;
  }
  return tempo_params_finalize(p);
}

/* Output buffers, scratch and saved activations: counted with a.base == NULL, then carved. */
static void layout(graph_impl *s, graph_arena *a, int mb) {
  size_t max_act = 0, max_cols = 0, attn = 0, enc_u = 0, enc_h = 0;
  for (int i = 0; i < s->n_nodes; i++) {
    graph_node *g = &s->nodes[i];
    const size_t in_n = (size_t)mb * tempo_shape_floats(g->in), out_n = (size_t)mb * tempo_shape_floats(g->out);
    const size_t rows = (size_t)mb * rows_of(g->in);
    if (in_n > max_act) max_act = in_n;
    if (out_n > max_act) max_act = out_n;
    g->buf = NULL;
    switch (g->kind) {
    case TEMPO_NET_CONV: {
      const size_t cols = tempo_conv2d_cols_floats(&g->conv, mb);
      g->cols = take(a, cols);
      if (g->need_dx && cols > max_cols) max_cols = cols;
      g->buf = take(a, out_n);
      break;
    }
    case TEMPO_NET_RELU:
      if (!g->skip && !g->in_place) g->buf = take(a, out_n);
      break;
    case TEMPO_NET_FLATTEN:
      if (g->in.kind == TEMPO_SHAPE_MAP && rows_of(g->in) > 1) g->buf = take(a, out_n);
      break;
    case TEMPO_NET_DROPOUT:
      if (g->p > 0.0f) g->buf = take(a, out_n);
      break;
    case TEMPO_NET_LAYERNORM:
      g->buf = take(a, out_n), g->mean = take(a, rows), g->rstd = take(a, rows);
      break;
    case TEMPO_NET_PATCH_EMBED: {
      const size_t pk = (size_t)mb * g->pe.patches * g->pe.k, pd = (size_t)mb * g->pe.patches * g->pe.dim;
      g->patches = take(a, pk);
      g->buf = take(a, out_n);
      if (pd > attn) attn = pd;
      break;
    }
    case TEMPO_NET_ENCODER: {
      const size_t sc = tempo_mhsa_scratch_floats(&g->enc->attn, mb), h = (size_t)mb * g->in.h * g->enc->mlp;
      if (sc > attn) attn = sc;
      if (out_n > enc_u) enc_u = out_n;
      if (h > enc_h) enc_h = h;
      graph_encoder_layout(g, a, mb);
      break;
    }
    case TEMPO_NET_RESIDUAL:
      if (!s->nodes[i].fused) g->buf = take(a, out_n);
      break;
    case TEMPO_NET_LINEAR:
      if (i != s->n_nodes - 1) g->buf = take(a, out_n);
      break;
    default: g->buf = take(a, out_n); break; /* bn, gelu, pools, gap, cls */
    }
  }
  for (int k = 0; k < 4; k++) s->g[k] = take(a, max_act);
  s->dcols = take(a, max_cols);
  s->attn_scratch = take(a, attn);
  s->dh = take(a, enc_h);
  s->dln = take(a, enc_u > attn ? enc_u : attn);
  s->dt = take(a, enc_u);
}

/* Fusion and gradient flags, from the walked shapes. */
static void plan(graph_impl *s, const tempo_net *net) {
  bool params_before = false;
  for (int i = 0; i < s->n_nodes; i++) {
    graph_node *g = &s->nodes[i];
    const tempo_net_layer *L = &net->layers[i];
    g->need_dx = params_before;
    if (g->kind == TEMPO_NET_RESIDUAL) {
      g->block_relu = L->relu != 0;
      g->fused = s->nodes[i + g->n_main].kind == TEMPO_NET_BN;
      if (g->fused) s->nodes[i + g->n_main].res_fused = true, s->nodes[i + g->n_main].block_relu = g->block_relu;
      bool bp = params_before, any = false;
      for (int j = 1; j <= g->n_main; j++) { /* main branch: its own chain */
        graph_node *c = &s->nodes[i + j];
        c->in_block = true;
        c->need_dx = j == 1 ? g->need_dx : bp;
        bp = bp || has_params(c->kind);
        any = any || has_params(c->kind);
      }
      for (int j = 1; j <= g->n_short; j++) {
        graph_node *c = &s->nodes[i + g->n_main + j];
        c->in_block = true;
        c->need_dx = j == 1 ? g->need_dx : true;
        any = any || has_params(c->kind);
      }
      params_before = params_before || any;
      i += g->n_main + g->n_short;
      continue;
    }
    params_before = params_before || has_params(g->kind);
  }
  /* [bn] [relu] in the same chain: the BN applies the ReLU; a ReLU after a layer with its
   * own output buffer runs in place (that layer's backward never reads its output). */
  for (int i = 1; i < s->n_nodes; i++) {
    graph_node *g = &s->nodes[i], *prev = &s->nodes[i - 1];
    if (g->kind != TEMPO_NET_RELU || prev->in_block != g->in_block || prev->kind == TEMPO_NET_RESIDUAL) continue;
    const bool first_of_branch = g->in_block && s->nodes[i - 1].kind == TEMPO_NET_RESIDUAL;
    if (first_of_branch) continue;
    if (prev->kind == TEMPO_NET_BN && !prev->res_fused) prev->relu_fused = true, g->skip = true;
    else if (prev->kind == TEMPO_NET_CONV || prev->kind == TEMPO_NET_LINEAR || prev->kind == TEMPO_NET_LAYERNORM ||
             prev->kind == TEMPO_NET_GAP || prev->kind == TEMPO_NET_CLS)
      g->in_place = true;
  }
}

tempo_status tempo_graph_init(tempo_model *m, const tempo_net *net) {
  const tempo_model_config *c = &m->cfg;
  graph_impl *s = calloc(1, sizeof *s);
  if (!s) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "out of memory creating %s", c->name);
  m->impl = s;
  m->ops = &graph_ops;
  s->n_nodes = net->n_layers;
  s->nodes = calloc((size_t)net->n_layers, sizeof *s->nodes);
  tempo_shape *shapes = calloc(2 * (size_t)net->n_layers, sizeof *shapes);
  int *patch = calloc((size_t)net->n_layers, sizeof *patch);
  tempo_status st = TEMPO_STATUS_OK;
  if (!s->nodes || !shapes || !patch) st = tempo_set_error(TEMPO_STATUS_NO_MEMORY, "out of memory creating %s", c->name);
  if (!st) st = tempo_net_walk(net, c->in_c, c->in_h, c->in_w, c->num_classes, shapes, shapes + net->n_layers, patch,
                               NULL);
  if (!st && net->in_c && (net->in_c != c->in_c || net->in_h != c->in_h || net->in_w != c->in_w))
    st = tempo_set_error(TEMPO_STATUS_MISMATCH, "%s takes %dx%dx%d inputs; the data is %dx%dx%d", net->file,
                         net->in_c, net->in_h, net->in_w, c->in_c, c->in_h, c->in_w);
  if (!st && net->classes && net->classes != c->num_classes)
    st = tempo_set_error(TEMPO_STATUS_MISMATCH, "%s has %d classes; the model is configured for %d", net->file,
                         net->classes, c->num_classes);
  for (int i = 0; !st && i < s->n_nodes; i++) {
    graph_node *g = &s->nodes[i];
    const tempo_net_layer *L = &net->layers[i];
    g->kind = L->kind;
    g->in = shapes[i], g->out = shapes[net->n_layers + i];
    g->size = L->kind == TEMPO_NET_PATCH_EMBED ? patch[i] : L->size;
    g->stride = L->stride, g->pad = L->pad;
    g->n_main = L->kind == TEMPO_NET_RESIDUAL ? L->n_main : 0;
    g->n_short = L->kind == TEMPO_NET_RESIDUAL ? L->n_short : 0;
    g->p = L->p >= 0.0f ? L->p : c->dropout;
    if ((L->kind == TEMPO_NET_DROPOUT || L->kind == TEMPO_NET_ENCODER) && !(g->p >= 0.0f && g->p < 1.0f))
      st = tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "%s: dropout %g outside [0, 1)", c->name, g->p);
  }
  free(shapes);
  free(patch);
  if (st) return st;
  plan(s, net);
  if ((st = declare(m, s, net))) return st;
  for (int i = 0; i < s->n_nodes; i++)
    if (s->nodes[i].kind == TEMPO_NET_ENCODER && (st = graph_encoder_alloc(&s->nodes[i], c->max_batch))) return st;
  graph_arena a = {NULL, 0};
  layout(s, &a, c->max_batch);
  if (!(s->arena = tempo_alloc_floats(a.used)))
    return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "%s: out of memory for %zu MiB of activations (batch %d)", c->name,
                           a.used * sizeof(float) >> 20, c->max_batch);
  a = (graph_arena){s->arena, 0};
  layout(s, &a, c->max_batch);
  for (int i = 0; i < s->n_nodes; i++) {
    graph_node *g = &s->nodes[i];
    const size_t out_n = (size_t)c->max_batch * tempo_shape_floats(g->out);
    if (g->kind == TEMPO_NET_MAXPOOL && !(g->argmax = malloc(out_n * sizeof *g->argmax)))
      return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "out of memory for %s pooling indices", c->name);
    if (g->kind == TEMPO_NET_DROPOUT && g->p > 0.0f && !(g->mask = malloc(out_n)))
      return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "out of memory for %s dropout masks", c->name);
    if (g->kind == TEMPO_NET_ENCODER && (st = graph_encoder_masks(g, c->max_batch))) return st;
  }
  /* initialisation in layer order: Kaiming-normal convs, BN (1, 0), PyTorch-default Linear,
   * LayerNorm (1, 0), patch embedding and encoders as the ViT twin */
  for (int i = 0; i < s->n_nodes; i++) {
    graph_node *g = &s->nodes[i];
    switch (g->kind) {
    case TEMPO_NET_CONV: tempo_conv2d_init_kaiming(&g->conv, &m->params, &m->rng); break;
    case TEMPO_NET_BN: tempo_bn2d_init(&g->bn, &m->params); break;
    case TEMPO_NET_LINEAR: tempo_linear_init_default(&g->lin, &m->params, &m->rng); break;
    case TEMPO_NET_LAYERNORM: tempo_layernorm_init(&g->ln, &m->params); break;
    case TEMPO_NET_PATCH_EMBED: tempo_patch_embed_init(&g->pe, &m->params, &m->rng); break;
    case TEMPO_NET_ENCODER: graph_encoder_init(m, g); break;
    default: break;
    }
  }
  return TEMPO_STATUS_OK;
}
