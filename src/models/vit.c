/* vit.c - the ViT family: vit-mini, vit-tiny and the small test variant vit-test, defined
 * as the PyTorch twin (tools/peer_bench.py): Conv2d patch embedding (patch 7 for 28x28
 * inputs, else 4), learned cls token and position embedding, pre-LayerNorm blocks
 *   x = x + proj(attn(norm1(x)));  x = x + fc2(gelu(fc1(norm2(x))))
 * a final LayerNorm and a Linear head on the cls token. Parameter names are the twin's.
 * Optional dropout (cfg.dropout, training only) on the embedding output and on both
 * residual branches, drawn from m->rng.
 *
 * B = batch, N = tokens, D = width, M = MLP hidden width, P = patches, K = values per
 * patch, C = classes, L = depth. The final LayerNorm runs on the cls rows only: the head
 * reads nothing else, so the other rows would get zero gradient anyway.
 *
 * Memory: every saved activation sits in one arena allocated at init for max_batch; the
 * backward scratch is shared by all blocks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tempo/common.h"
#include "tempo/model.h"
#include "tempo/vit.h"
#include "nn/vit_simd.h"

typedef struct {
  const char *name;
  int dim, depth, heads, mlp;
} vit_variant;

static const vit_variant variants[] = {
    {"vit-mini", 128, 6, 4, 256},
    {"vit-tiny", 192, 12, 3, 768},
    {"vit-test", 16, 2, 2, 32},
};

typedef struct {
  tempo_layernorm norm1, norm2;
  tempo_mhsa attn;
  tempo_linear fc1, fc2;
  float *ln1, *ln2;     /* (B, N, D) norm outputs */
  float *mean1, *rstd1; /* (B*N) */
  float *mean2, *rstd2; /* (B*N) */
  float *mid;           /* (B, N, D) stream after the attention residual */
  float *h_pre, *h_act; /* (B, N, M) fc1 output, gelu output */
  uint8_t *mask_attn, *mask_mlp; /* (B, N, D) dropout masks, or NULL */
} vit_block;

typedef struct {
  vit_variant v;
  int tokens;
  tempo_patch_embed embed;
  vit_block *blocks;     /* (L) */
  tempo_layernorm norm;
  tempo_linear head;
  float *arena;          /* every float buffer below except the attention layers' own */
  uint8_t *mask_arena;   /* dropout masks, NULL when cfg.dropout == 0 */
  float *patches;        /* (B*P, K) */
  float **xs;            /* (L + 1) streams (B, N, D): embedding output, then each block's output */
  float *cls, *cls_ln;   /* (B, D) final-norm input (cls rows) and output */
  float *cls_mean, *cls_rstd; /* (B) */
  uint8_t *mask_embed;   /* (B, N, D) or NULL */
  /* scratch */
  float *attn_scratch;   /* tempo_mhsa_scratch_floats(max_batch) */
  float *dh;             /* (B, N, M) */
  float *dln, *dt, *ds;  /* (B, N, D) */
  float *dcls;           /* (B, D) */
  int batch;
  bool dropped;          /* the last forward applied dropout */
} vit_impl;

/* Hands out 64-byte aligned views of one buffer; with base == NULL it only counts. */
typedef struct {
  float *base;
  size_t used;
} vit_arena;

static float *take(vit_arena *a, size_t n) {
  float *p = a->base ? a->base + a->used : NULL;
  a->used += (n + 15) & ~(size_t)15;
  return p;
}

static void layout(vit_impl *s, vit_arena *a, int max_b, size_t attn_scratch) {
  const size_t d = (size_t)s->v.dim, rows = (size_t)max_b * s->tokens, u = rows * d, hm = rows * s->v.mlp;
  s->patches = take(a, (size_t)max_b * s->embed.patches * s->embed.k);
  for (int l = 0; l <= s->v.depth; l++) s->xs[l] = take(a, u);
  for (int l = 0; l < s->v.depth; l++) {
    vit_block *b = &s->blocks[l];
    b->ln1 = take(a, u), b->ln2 = take(a, u), b->mid = take(a, u);
    b->mean1 = take(a, rows), b->rstd1 = take(a, rows), b->mean2 = take(a, rows), b->rstd2 = take(a, rows);
    b->h_pre = take(a, hm), b->h_act = take(a, hm);
  }
  s->cls = take(a, (size_t)max_b * d), s->cls_ln = take(a, (size_t)max_b * d), s->dcls = take(a, (size_t)max_b * d);
  s->cls_mean = take(a, (size_t)max_b), s->cls_rstd = take(a, (size_t)max_b);
  s->attn_scratch = take(a, attn_scratch);
  s->dh = take(a, hm);
  s->dln = take(a, u), s->dt = take(a, u), s->ds = take(a, u);
}

/* y += x over n values. */
__attribute__((noinline)) TEMPO_VIT_CLONES
static void add_into(float *restrict y, const float *restrict x, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) vstore(y + i, vload(y + i) + vload(x + i));
  for (; i < n; i++) y[i] += x[i];
}

static tempo_status vit_forward(tempo_model *m, const float *x, int batch, float *logits) {
  vit_impl *s = m->impl;
  if (batch < 1 || batch > m->cfg.max_batch)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "%s: batch %d outside 1..%d", s->v.name, batch,
                           m->cfg.max_batch);
  const int d = s->v.dim, n = s->tokens, rows = batch * n;
  const size_t u = (size_t)rows * d, hm = (size_t)rows * s->v.mlp;
  const float p_drop = m->cfg.dropout;
  const bool drop = m->training && p_drop > 0.0f;
  s->batch = batch;
  s->dropped = drop;
  tempo_status st = tempo_patch_embed_forward(&s->embed, m->mm, &m->params, x, batch, s->patches, s->attn_scratch,
                                              s->xs[0]);
  if (st) return st;
  if (drop) tempo_dropout_forward(&m->rng, p_drop, s->xs[0], s->xs[0], s->mask_embed, u);
  for (int l = 0; l < s->v.depth; l++) {
    vit_block *b = &s->blocks[l];
    const float *in = s->xs[l];
    float *out = s->xs[l + 1], *mid = b->mid;
    tempo_layernorm_forward(&b->norm1, &m->params, in, rows, b->ln1, b->mean1, b->rstd1);
    if ((st = tempo_mhsa_forward(&b->attn, m->mm, &m->params, b->ln1, batch, mid, s->attn_scratch))) return st;
    if (drop) tempo_dropout_forward(&m->rng, p_drop, mid, mid, b->mask_attn, u);
    add_into(mid, in, u);
    tempo_layernorm_forward(&b->norm2, &m->params, mid, rows, b->ln2, b->mean2, b->rstd2);
    if ((st = tempo_linear_forward(&b->fc1, m->mm, &m->params, b->ln2, rows, b->h_pre))) return st;
    tempo_gelu_forward(b->h_pre, b->h_act, hm);
    if ((st = tempo_linear_forward(&b->fc2, m->mm, &m->params, b->h_act, rows, out))) return st;
    if (drop) tempo_dropout_forward(&m->rng, p_drop, out, out, b->mask_mlp, u);
    add_into(out, mid, u);
  }
  const float *last = s->xs[s->v.depth];
  for (int i = 0; i < batch; i++) memcpy(s->cls + (size_t)i * d, last + (size_t)i * n * d, (size_t)d * sizeof(float));
  tempo_layernorm_forward(&s->norm, &m->params, s->cls, batch, s->cls_ln, s->cls_mean, s->cls_rstd);
  return tempo_linear_forward(&s->head, m->mm, &m->params, s->cls_ln, batch, logits);
}

static tempo_status vit_backward(tempo_model *m, const float *dlogits, int batch) {
  vit_impl *s = m->impl;
  if (batch != s->batch)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "%s: backward batch mismatch", s->v.name);
  const int d = s->v.dim, n = s->tokens, rows = batch * n;
  const size_t u = (size_t)rows * d, hm = (size_t)rows * s->v.mlp;
  const float p_drop = m->cfg.dropout;
  tempo_status st = tempo_linear_backward(&s->head, m->mm, &m->params, s->cls_ln, batch, dlogits, s->dcls);
  if (st) return st;
  /* ds = d(last stream): the final norm's input gradient on the cls rows, zero elsewhere. */
  float *ds = s->ds;
  memset(ds, 0, u * sizeof *ds);
  tempo_layernorm_backward(&s->norm, &m->params, s->cls, s->cls_mean, s->cls_rstd, s->dcls, batch, s->dln, false);
  for (int i = 0; i < batch; i++) memcpy(ds + (size_t)i * n * d, s->dln + (size_t)i * d, (size_t)d * sizeof *ds);
  for (int l = s->v.depth - 1; l >= 0; l--) {
    vit_block *b = &s->blocks[l];
    /* MLP branch: out = mid + drop(fc2(gelu(fc1(norm2(mid))))) */
    const float *g = ds;
    if (s->dropped) tempo_dropout_backward(p_drop, b->mask_mlp, ds, s->dt, u), g = s->dt;
    if ((st = tempo_linear_backward(&b->fc2, m->mm, &m->params, b->h_act, rows, g, s->dh))) return st;
    tempo_gelu_backward(b->h_pre, s->dh, s->dh, hm);
    if ((st = tempo_linear_backward(&b->fc1, m->mm, &m->params, b->ln2, rows, s->dh, s->dln))) return st;
    tempo_layernorm_backward(&b->norm2, &m->params, b->mid, b->mean2, b->rstd2, s->dln, rows, ds, true);
    /* attention branch: mid = in + drop(attn(norm1(in))) */
    g = ds;
    if (s->dropped) tempo_dropout_backward(p_drop, b->mask_attn, ds, s->dt, u), g = s->dt;
    if ((st = tempo_mhsa_backward(&b->attn, m->mm, &m->params, b->ln1, batch, g, s->dln, s->attn_scratch)))
      return st;
    tempo_layernorm_backward(&b->norm1, &m->params, s->xs[l], b->mean1, b->rstd1, s->dln, rows, ds, true);
  }
  if (s->dropped) tempo_dropout_backward(p_drop, s->mask_embed, ds, ds, u);
  return tempo_patch_embed_backward(&s->embed, m->mm, &m->params, s->patches, batch, ds, s->dln);
}

static void vit_destroy(tempo_model *m) {
  vit_impl *s = m->impl;
  if (!s) return;
  if (s->blocks)
    for (int l = 0; l < s->v.depth; l++) tempo_mhsa_free(&s->blocks[l].attn);
  free(s->blocks);
  free(s->xs);
  tempo_free_floats(s->arena);
  free(s->mask_arena);
  free(s);
  m->impl = NULL;
}

static const tempo_model_ops vit_ops = {vit_forward, vit_backward, vit_destroy};

static tempo_status declare_all(vit_impl *s, tempo_model *m) {
  const tempo_model_config *c = &m->cfg;
  const int patch = c->in_h == 28 && c->in_w == 28 ? 7 : 4, d = s->v.dim;
  char name[TEMPO_PARAM_NAME_MAX];
  tempo_status st = tempo_patch_embed_declare(&s->embed, &m->params, c->in_c, c->in_h, c->in_w, patch, d);
  if (st) return st;
  s->embed.site.kind |= TEMPO_SITE_RAW_INPUT; /* the protection policy's classes (matmul.h) */
  s->tokens = s->embed.tokens;
  for (int l = 0; l < s->v.depth; l++) {
    vit_block *b = &s->blocks[l];
    snprintf(name, sizeof name, "blocks.%d.norm1", l);
    if ((st = tempo_layernorm_declare(&b->norm1, &m->params, name, d))) return st;
    snprintf(name, sizeof name, "blocks.%d.attn", l);
    if ((st = tempo_mhsa_declare(&b->attn, &m->params, name, d, s->v.heads, s->tokens))) return st;
    snprintf(name, sizeof name, "blocks.%d.norm2", l);
    if ((st = tempo_layernorm_declare(&b->norm2, &m->params, name, d))) return st;
    snprintf(name, sizeof name, "blocks.%d.fc1", l);
    if ((st = tempo_linear_declare(&b->fc1, &m->params, name, d, s->v.mlp, true))) return st;
    snprintf(name, sizeof name, "blocks.%d.fc2", l);
    if ((st = tempo_linear_declare(&b->fc2, &m->params, name, s->v.mlp, d, true))) return st;
  }
  if ((st = tempo_layernorm_declare(&s->norm, &m->params, "norm", d)) ||
      (st = tempo_linear_declare(&s->head, &m->params, "head", d, c->num_classes, true)))
    return st;
  s->head.site.kind |= TEMPO_SITE_HEAD;
  return tempo_params_finalize(&m->params);
}

/* Initialisation as the twin: Conv2d/Linear PyTorch defaults, LayerNorm (1, 0), cls token 0,
 * position embedding truncated normal std 0.02 (the twin draws an untruncated normal). */
static void init_all(vit_impl *s, tempo_model *m) {
  tempo_patch_embed_init(&s->embed, &m->params, &m->rng);
  for (int l = 0; l < s->v.depth; l++) {
    vit_block *b = &s->blocks[l];
    tempo_layernorm_init(&b->norm1, &m->params);
    tempo_mhsa_init(&b->attn, &m->params, &m->rng);
    tempo_layernorm_init(&b->norm2, &m->params);
    tempo_linear_init_default(&b->fc1, &m->params, &m->rng);
    tempo_linear_init_default(&b->fc2, &m->params, &m->rng);
  }
  tempo_layernorm_init(&s->norm, &m->params);
  tempo_linear_init_default(&s->head, &m->params, &m->rng);
}

tempo_status tempo_vit_init(tempo_model *m) {
  const tempo_model_config *c = &m->cfg;
  const vit_variant *v = NULL;
  for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++)
    if (strcmp(variants[i].name, c->name) == 0) v = &variants[i];
  if (!v) return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "vit: unknown variant '%s'", c->name);
  if (!(c->dropout >= 0.0f && c->dropout < 1.0f))
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "%s: dropout %g outside [0, 1)", c->name, c->dropout);
  vit_impl *s = calloc(1, sizeof *s);
  if (!s) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "out of memory creating %s", c->name);
  m->impl = s;
  m->ops = &vit_ops;
  s->v = *v;
  s->blocks = calloc((size_t)v->depth, sizeof *s->blocks);
  s->xs = calloc((size_t)v->depth + 1, sizeof *s->xs);
  if (!s->blocks || !s->xs) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "out of memory creating %s", c->name);
  tempo_status st = declare_all(s, m);
  if (st) return st;
  for (int l = 0; l < v->depth; l++)
    if ((st = tempo_mhsa_alloc(&s->blocks[l].attn, c->max_batch))) return st;
  /* One arena: count, allocate, carve. Sizes are bounded by the per-layer checks
   * (tempo_mhsa_alloc succeeded for the same max_batch) and the 64-bit size_t. */
  const size_t attn_scratch = tempo_mhsa_scratch_floats(&s->blocks[0].attn, c->max_batch);
  vit_arena a = {NULL, 0};
  layout(s, &a, c->max_batch, attn_scratch);
  if (!(s->arena = tempo_alloc_floats(a.used)))
    return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "out of memory for %s activations (%zu MB)", c->name,
                           a.used * sizeof(float) >> 20);
  a = (vit_arena){s->arena, 0};
  layout(s, &a, c->max_batch, attn_scratch);
  if (c->dropout > 0.0f) {
    const size_t u = (size_t)c->max_batch * s->tokens * v->dim;
    if (!(s->mask_arena = malloc(u * (2 * (size_t)v->depth + 1))))
      return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "out of memory for %s dropout masks", c->name);
    s->mask_embed = s->mask_arena;
    for (int l = 0; l < v->depth; l++) {
      s->blocks[l].mask_attn = s->mask_arena + u * (1 + 2 * (size_t)l);
      s->blocks[l].mask_mlp = s->mask_arena + u * (2 + 2 * (size_t)l);
    }
  }
  init_all(s, m);
  return TEMPO_STATUS_OK;
}
