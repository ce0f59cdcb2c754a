/* resnet.c - the CIFAR-style ResNets of the PyTorch twin (tools/peer_bench.py): a 3x3
 * stride-1 stem conv + BN + ReLU, stages of BasicBlocks or Bottlenecks (stride 2 at the
 * start of every stage but the first, on the 3x3 conv: torchvision v1.5), projection
 * shortcuts (1x1 conv + BN) where the shape changes, global average pool, Linear head.
 *
 *   resnet20  Basic [3,3,3]      16/32/64          stem 16
 *   resnet18  Basic [2,2,2,2]    64/128/256/512    stem 64
 *   resnet50  Bottleneck [3,4,6,3] 64/128/256/512 (x4) stem 64
 *   resnet-test       Basic [1,2] 4/8 stem 4        (golden fixture)
 *   resnet-test-bneck Bottleneck [1,1] 2/4 (x4) stem 4 (golden fixture)
 *
 * Activations are NHWC (see cnn.h); the input is NCHW. B = batch, Cf = final channels.
 * Every activation and scratch buffer lives in one arena allocated at init for max_batch. */
/* -O2's "very cheap" vectoriser skips loops that need a remainder; see bn.c. */
#pragma GCC optimize("vect-cost-model=dynamic")

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tempo/cnn.h"
#include "tempo/common.h"
#include "tempo/layers.h"
#include "tempo/model.h"

#define MAX_STAGES 4
#define MAX_UNITS 3

typedef struct {
  const char *name;
  bool bottleneck;
  int stages;
  int blocks[MAX_STAGES];
  int widths[MAX_STAGES];
  int stem;
} resnet_variant;

static const resnet_variant variants[] = {
    {"resnet20", false, 3, {3, 3, 3}, {16, 32, 64}, 16},
    {"resnet18", false, 4, {2, 2, 2, 2}, {64, 128, 256, 512}, 64},
    {"resnet50", true, 4, {3, 4, 6, 3}, {64, 128, 256, 512}, 64},
    {"resnet-test", false, 2, {1, 2}, {4, 8}, 4},
    {"resnet-test-bneck", true, 2, {1, 1}, {2, 4}, 4},
};

/* conv -> BN [-> + residual] [-> ReLU], with the buffers its backward needs. */
typedef struct {
  tempo_conv2d conv;
  tempo_bn2d bn;
  float *cols; /* (B*OH*OW, K) lowered input, NULL for direct 1x1 convs */
  float *y;    /* (B*OH*OW, Co) conv output (BN input) */
  float *a;    /* (B*OH*OW, Co) BN output after residual/ReLU */
} unit;

typedef struct {
  unit u[MAX_UNITS]; /* conv1..conv3 */
  int n_units;
  unit sc;           /* projection shortcut when has_sc */
  bool has_sc;
  const float *in;   /* (B*H*W, Ci) block input: the previous block's (or the stem's) output */
} block;

typedef struct {
  unit stem;
  block *blocks;
  int n_blocks;
  int final_c, final_hw;
  tempo_linear fc;
  float *arena;
  float *pooled;  /* (B, Cf) */
  float *dpooled; /* (B, Cf) */
  float *g[4];    /* 4 x (B * max activation) gradient buffers, rotated through the blocks */
  float *dcols;   /* (max cols) input-gradient columns scratch */
  const float *x; /* (B, C, H, W) last forward input, owned by the caller */
  int batch;
} resnet_impl;

static tempo_status unit_declare(unit *u, tempo_params *p, const char *conv_name, const char *bn_name, int cin,
                                 int cout, int k, int stride, int h, int w, tempo_layout layout) {
  tempo_status st = tempo_conv2d_declare(&u->conv, p, conv_name, cin, cout, k, stride, k / 2, false, h, w, layout);
  return st ? st : tempo_bn2d_declare(&u->bn, p, bn_name, cout);
}

static size_t unit_out(const unit *u, int batch) {
  return (size_t)batch * u->conv.out_h * u->conv.out_w * u->conv.cout;
}

static tempo_status unit_forward(unit *u, tempo_model *m, const float *x, int batch, const float *res, bool relu) {
  tempo_status st = tempo_conv2d_forward(&u->conv, m->mm, &m->params, x, batch, u->cols, u->y);
  if (st) return st;
  tempo_bn2d_forward(&u->bn, &m->params, m->training, u->y, batch * u->conv.out_h * u->conv.out_w, res, relu, u->a);
  return TEMPO_STATUS_OK;
}

/* dy (the gradient of u->a, masked by the caller when the unit had a residual) -> t (BN
 * input gradient), then dx (conv input gradient, NULL to skip) [accumulated]. */
static tempo_status unit_backward(unit *u, tempo_model *m, resnet_impl *s, const float *x, const float *dy,
                                  bool had_relu, float *t, float *dx, unsigned flags) {
  tempo_bn2d_backward(&u->bn, &m->params, u->y, s->batch * u->conv.out_h * u->conv.out_w, had_relu ? u->a : NULL,
                      dy, t);
  return tempo_conv2d_backward(&u->conv, m->mm, &m->params, x, s->batch, u->cols, t, s->dcols, dx, flags);
}

/* g = g where out > 0, else 0 (the block output's ReLU). */
static void relu_mask(const float *restrict out, float *restrict g, size_t n) {
  for (size_t i = 0; i < n; i++) {
    const float v = g[i];
    g[i] = out[i] > 0.0f ? v : 0.0f;
  }
}

static tempo_status resnet_forward(tempo_model *m, const float *x, int batch, float *logits) {
  resnet_impl *s = m->impl;
  if (batch < 1 || batch > m->cfg.max_batch)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "resnet: batch %d outside 1..%d", batch, m->cfg.max_batch);
  s->x = x;
  s->batch = batch;
  tempo_status st = unit_forward(&s->stem, m, x, batch, NULL, true);
  for (int i = 0; i < s->n_blocks && !st; i++) {
    block *bk = &s->blocks[i];
    if (bk->has_sc && (st = unit_forward(&bk->sc, m, bk->in, batch, NULL, false))) break;
    const float *res = bk->has_sc ? bk->sc.a : bk->in;
    for (int k = 0; k < bk->n_units && !st; k++) {
      const bool last = k == bk->n_units - 1;
      st = unit_forward(&bk->u[k], m, k ? bk->u[k - 1].a : bk->in, batch, last ? res : NULL, true);
    }
  }
  if (st) return st;
  const unit *top = &s->blocks[s->n_blocks - 1].u[s->blocks[s->n_blocks - 1].n_units - 1];
  tempo_gap_forward(top->a, batch, s->final_hw, s->final_c, s->pooled);
  return tempo_linear_forward(&s->fc, m->mm, &m->params, s->pooled, batch, logits);
}

static tempo_status resnet_backward(tempo_model *m, const float *dlogits, int batch) {
  resnet_impl *s = m->impl;
  if (batch != s->batch) return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "resnet: backward batch mismatch");
  tempo_status st = tempo_linear_backward(&s->fc, m->mm, &m->params, s->pooled, batch, dlogits, s->dpooled);
  if (st) return st;
  float *g = s->g[0], *t1 = s->g[1], *t2 = s->g[2], *dx = s->g[3];
  tempo_gap_backward(s->dpooled, batch, s->final_hw, s->final_c, g);
  for (int i = s->n_blocks - 1; i >= 0; i--) {
    block *bk = &s->blocks[i];
    unit *last = &bk->u[bk->n_units - 1];
    /* g = d(block out) masked by the output ReLU: the gradient of both branches' sum */
    relu_mask(last->a, g, unit_out(last, batch));
    const float *dy = g;
    for (int k = bk->n_units - 1; k >= 0; k--) {
      unit *u = &bk->u[k];
      if ((st = unit_backward(u, m, s, k ? bk->u[k - 1].a : bk->in, dy, k != bk->n_units - 1, t1, k ? t2 : dx, 0)))
        return st;
      dy = t2;
    }
    if (bk->has_sc) {
      if ((st = unit_backward(&bk->sc, m, s, bk->in, g, false, t1, dx, TEMPO_CONV_ACCUM_DX))) return st;
    } else {
      tempo_residual_add(dx, g, dx, unit_out(last, batch), false);
    }
    float *tmp = g; /* dx becomes the next block's output gradient */
    g = dx;
    dx = tmp;
  }
  return unit_backward(&s->stem, m, s, s->x, g, true, t1, NULL, 0);
}

static void unit_free(unit *u) { tempo_bn2d_free(&u->bn); }

static void resnet_destroy(tempo_model *m) {
  resnet_impl *s = m->impl;
  if (!s) return;
  unit_free(&s->stem);
  for (int i = 0; i < s->n_blocks; i++) {
    for (int k = 0; k < s->blocks[i].n_units; k++) unit_free(&s->blocks[i].u[k]);
    unit_free(&s->blocks[i].sc);
  }
  free(s->blocks);
  tempo_free_floats(s->arena);
  free(s);
  m->impl = NULL;
}

static const tempo_model_ops resnet_ops = {resnet_forward, resnet_backward, resnet_destroy};

/* Declares one block's units for an input (h, w, cin); returns its output size in *h, *w. */
static tempo_status block_declare(block *bk, tempo_params *p, int idx, bool bottleneck, int cin, int planes,
                                  int stride, int *h, int *w) {
  char cn[48], bnn[48];
  const int cout = bottleneck ? 4 * planes : planes;
  tempo_status st = TEMPO_STATUS_OK;
  const int ks[3] = {bottleneck ? 1 : 3, 3, 1};
  const int strides[3] = {bottleneck ? 1 : stride, bottleneck ? stride : 1, 1};
  bk->n_units = bottleneck ? 3 : 2;
  int ci = cin, hh = *h, ww = *w;
  for (int k = 0; k < bk->n_units && !st; k++) {
    snprintf(cn, sizeof cn, "layers.%d.conv%d", idx, k + 1);
    snprintf(bnn, sizeof bnn, "layers.%d.bn%d", idx, k + 1);
    const int co = k == bk->n_units - 1 ? cout : planes;
    st = unit_declare(&bk->u[k], p, cn, bnn, ci, co, ks[k], strides[k], hh, ww, TEMPO_LAYOUT_NHWC);
    if (!st) ci = co, hh = bk->u[k].conv.out_h, ww = bk->u[k].conv.out_w;
  }
  bk->has_sc = stride != 1 || cin != cout;
  if (!st && bk->has_sc) {
    snprintf(cn, sizeof cn, "layers.%d.shortcut.0", idx);
    snprintf(bnn, sizeof bnn, "layers.%d.shortcut.1", idx);
    st = unit_declare(&bk->sc, p, cn, bnn, cin, cout, 1, stride, *h, *w, TEMPO_LAYOUT_NHWC);
  }
  *h = hh;
  *w = ww;
  return st;
}

/* Sizes (floats) of a unit's buffers for max_batch; the cols size also raises *max_cols. */
static bool unit_sizes(const unit *u, int batch, size_t *total, size_t *max_act, size_t *max_cols, bool need_dx) {
  const size_t cols = tempo_conv2d_cols_floats(&u->conv, batch), out = unit_out(u, batch);
  const size_t in = (size_t)batch * u->conv.in_h * u->conv.in_w * u->conv.cin;
  if (!u->conv.direct && cols == 0) return false;
  if (need_dx && cols > *max_cols) *max_cols = cols;
  if (out > *max_act) *max_act = out;
  if (in > *max_act) *max_act = in;
  *total += cols + 2 * out;
  return *total >= cols; /* crude wrap check; the sizes are far below SIZE_MAX / 4 */
}

static float *carve(float **cur, size_t n) {
  float *p = n ? *cur : NULL;
  *cur += (n + 15) & ~(size_t)15; /* keep 64-byte alignment */
  return p;
}

static void unit_carve(unit *u, int batch, float **cur) {
  u->cols = carve(cur, tempo_conv2d_cols_floats(&u->conv, batch));
  u->y = carve(cur, unit_out(u, batch));
  u->a = carve(cur, unit_out(u, batch));
}

static void unit_init(unit *u, tempo_params *p, tempo_rng *rng) {
  tempo_conv2d_init_kaiming(&u->conv, p, rng);
  tempo_bn2d_init(&u->bn, p);
}

tempo_status tempo_resnet_init(tempo_model *m) {
  const tempo_model_config *c = &m->cfg;
  const resnet_variant *v = NULL;
  for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++)
    if (strcmp(variants[i].name, c->name) == 0) v = &variants[i];
  if (!v) return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "resnet: unknown variant '%s'", c->name);
  resnet_impl *s = calloc(1, sizeof *s);
  if (!s) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "out of memory creating %s", c->name);
  m->impl = s;
  m->ops = &resnet_ops;
  for (int i = 0; i < v->stages; i++) s->n_blocks += v->blocks[i];
  s->blocks = calloc((size_t)s->n_blocks, sizeof *s->blocks);
  if (!s->blocks) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "out of memory creating %s", c->name);

  tempo_status st = unit_declare(&s->stem, &m->params, "stem.0", "stem.1", c->in_c, v->stem, 3, 1, c->in_h,
                                 c->in_w, TEMPO_LAYOUT_NCHW);
  int h = c->in_h, w = c->in_w, cin = v->stem, idx = 0;
  for (int sg = 0; sg < v->stages && !st; sg++)
    for (int b = 0; b < v->blocks[sg] && !st; b++, idx++) {
      const int stride = sg > 0 && b == 0 ? 2 : 1;
      st = block_declare(&s->blocks[idx], &m->params, idx, v->bottleneck, cin, v->widths[sg], stride, &h, &w);
      cin = v->bottleneck ? 4 * v->widths[sg] : v->widths[sg];
    }
  if (st) return st;
  s->final_c = cin;
  s->final_hw = h * w;
  if ((st = tempo_linear_declare(&s->fc, &m->params, "fc", cin, c->num_classes, true)) ||
      (st = tempo_params_finalize(&m->params)))
    return st;
  s->stem.conv.site.kind |= TEMPO_SITE_RAW_INPUT; /* the protection policy's classes (matmul.h) */
  s->fc.site.kind |= TEMPO_SITE_HEAD;

  /* one arena: every unit's cols/y/a, pooled, dpooled, 4 gradient buffers, dcols */
  const int mb = c->max_batch;
  size_t total = 0, max_act = 0, max_cols = 0;
  bool ok = unit_sizes(&s->stem, mb, &total, &max_act, &max_cols, false);
  for (int i = 0; i < s->n_blocks && ok; i++) {
    for (int k = 0; k < s->blocks[i].n_units && ok; k++)
      ok = unit_sizes(&s->blocks[i].u[k], mb, &total, &max_act, &max_cols, true);
    if (ok && s->blocks[i].has_sc) ok = unit_sizes(&s->blocks[i].sc, mb, &total, &max_act, &max_cols, true);
  }
  const size_t pooled = (size_t)mb * s->final_c;
  size_t grads;
  if (!ok || !tempo_mul_size(max_act + 16, 4, &grads) || SIZE_MAX - total < grads + max_cols + 2 * pooled + 1024)
    return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "%s: activation size overflows for batch %d", c->name, mb);
  total += grads + max_cols + 2 * pooled + 1024;
  s->arena = tempo_alloc_floats(total);
  if (!s->arena)
    return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "%s: out of memory for %zu MiB of activations (batch %d)",
                           c->name, total * sizeof(float) >> 20, mb);
  float *cur = s->arena;
  unit_carve(&s->stem, mb, &cur);
  const float *prev = s->stem.a;
  for (int i = 0; i < s->n_blocks; i++) {
    block *bk = &s->blocks[i];
    bk->in = prev;
    for (int k = 0; k < bk->n_units; k++) unit_carve(&bk->u[k], mb, &cur);
    if (bk->has_sc) unit_carve(&bk->sc, mb, &cur);
    prev = bk->u[bk->n_units - 1].a;
  }
  for (int i = 0; i < 4; i++) s->g[i] = carve(&cur, max_act);
  s->dcols = carve(&cur, max_cols);
  s->pooled = carve(&cur, pooled);
  s->dpooled = carve(&cur, pooled);
  TEMPO_ASSERT(cur <= s->arena + total);

  /* Kaiming-normal (fan_out) convs, BN 1/0, PyTorch-default Linear */
  unit_init(&s->stem, &m->params, &m->rng);
  for (int i = 0; i < s->n_blocks; i++) {
    for (int k = 0; k < s->blocks[i].n_units; k++) unit_init(&s->blocks[i].u[k], &m->params, &m->rng);
    if (s->blocks[i].has_sc) unit_init(&s->blocks[i].sc, &m->params, &m->rng);
  }
  tempo_linear_init_default(&s->fc, &m->params, &m->rng);
  return TEMPO_STATUS_OK;
}
