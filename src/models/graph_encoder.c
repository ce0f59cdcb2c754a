/* graph_encoder.c - the [encoder] layer of network files: vit.c's pre-norm block (the same
 * calls in the same order, so a ViT file reproduces vit.c bit for bit). Names under the
 * layer's prefix: norm1, attn.qkv, attn.proj, norm2, fc1, fc2 (timm's Block).
 * B batch, N tokens, D width, M MLP width. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tempo/common.h"
#include "models/graph.h"
#include "nn/vit_simd.h"

/* y += x over n values. */
__attribute__((noinline)) TEMPO_VIT_CLONES
static void add_into(float *restrict y, const float *restrict x, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) vstore(y + i, vload(y + i) + vload(x + i));
  for (; i < n; i++) y[i] += x[i];
}

tempo_status graph_encoder_declare(tempo_model *m, graph_node *g, const tempo_net_layer *L) {
  graph_encoder *e = calloc(1, sizeof *e);
  if (!e) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "out of memory creating %s", m->cfg.name);
  g->enc = e;
  e->heads = L->heads, e->mlp = L->mlp;
  const int d = g->in.c, n = g->in.h;
  char name[TEMPO_PARAM_NAME_MAX + 16]; /* the parser bounds prefixes to 40 characters */
  tempo_params *p = &m->params;
  tempo_status st;
  snprintf(name, sizeof name, "%s.norm1", L->name);
  if ((st = tempo_layernorm_declare(&e->norm1, p, name, d))) return st;
  snprintf(name, sizeof name, "%s.attn", L->name);
  if ((st = tempo_mhsa_declare(&e->attn, p, name, d, e->heads, n))) return st;
  snprintf(name, sizeof name, "%s.norm2", L->name);
  if ((st = tempo_layernorm_declare(&e->norm2, p, name, d))) return st;
  snprintf(name, sizeof name, "%s.fc1", L->name);
  if ((st = tempo_linear_declare(&e->fc1, p, name, d, e->mlp, true))) return st;
  snprintf(name, sizeof name, "%s.fc2", L->name);
  return tempo_linear_declare(&e->fc2, p, name, e->mlp, d, true);
}

tempo_status graph_encoder_alloc(graph_node *g, int max_batch) { return tempo_mhsa_alloc(&g->enc->attn, max_batch); }

tempo_status graph_encoder_masks(graph_node *g, int max_batch) {
  graph_encoder *e = g->enc;
  if (!(g->p > 0.0f)) return TEMPO_STATUS_OK;
  const size_t u = (size_t)max_batch * g->in.h * g->in.c;
  if (!(e->mask_attn = malloc(2 * u))) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "out of memory for dropout masks");
  e->mask_mlp = e->mask_attn + u;
  return TEMPO_STATUS_OK;
}

void graph_encoder_layout(graph_node *g, graph_arena *a, int mb) {
  graph_encoder *e = g->enc;
  const size_t rows = (size_t)mb * g->in.h, u = rows * g->in.c, hm = rows * e->mlp;
  e->ln1 = graph_take(a, u), e->ln2 = graph_take(a, u), e->mid = graph_take(a, u);
  e->mean1 = graph_take(a, rows), e->rstd1 = graph_take(a, rows);
  e->mean2 = graph_take(a, rows), e->rstd2 = graph_take(a, rows);
  e->h_pre = graph_take(a, hm), e->h_act = graph_take(a, hm);
  g->buf = graph_take(a, u);
}

void graph_encoder_init(tempo_model *m, graph_node *g) {
  graph_encoder *e = g->enc;
  tempo_layernorm_init(&e->norm1, &m->params);
  tempo_mhsa_init(&e->attn, &m->params, &m->rng);
  tempo_layernorm_init(&e->norm2, &m->params);
  tempo_linear_init_default(&e->fc1, &m->params, &m->rng);
  tempo_linear_init_default(&e->fc2, &m->params, &m->rng);
}

void graph_encoder_free(graph_node *g) {
  if (!g->enc) return;
  tempo_mhsa_free(&g->enc->attn);
  free(g->enc->mask_attn);
  free(g->enc);
  g->enc = NULL;
}

tempo_status graph_encoder_forward(tempo_model *m, graph_impl *s, graph_node *g, const float *in, int batch) {
  graph_encoder *e = g->enc;
  const int rows = batch * g->in.h;
  const size_t u = (size_t)rows * g->in.c, hm = (size_t)rows * e->mlp;
  const bool drop = m->training && g->p > 0.0f;
  float *out = g->buf, *mid = e->mid;
  e->dropped = drop;
  tempo_status st;
  tempo_layernorm_forward(&e->norm1, &m->params, in, rows, e->ln1, e->mean1, e->rstd1);
  if ((st = tempo_mhsa_forward(&e->attn, m->mm, &m->params, e->ln1, batch, mid, s->attn_scratch))) return st;
  if (drop) tempo_dropout_forward(&m->rng, g->p, mid, mid, e->mask_attn, u);
  add_into(mid, in, u);
  tempo_layernorm_forward(&e->norm2, &m->params, mid, rows, e->ln2, e->mean2, e->rstd2);
  if ((st = tempo_linear_forward(&e->fc1, m->mm, &m->params, e->ln2, rows, e->h_pre))) return st;
  tempo_gelu_forward(e->h_pre, e->h_act, hm);
  if ((st = tempo_linear_forward(&e->fc2, m->mm, &m->params, e->h_act, rows, out))) return st;
  if (drop) tempo_dropout_forward(&m->rng, g->p, out, out, e->mask_mlp, u);
  add_into(out, mid, u);
  return TEMPO_STATUS_OK;
}

tempo_status graph_encoder_backward(tempo_model *m, graph_impl *s, graph_node *g, float *ds) {
  graph_encoder *e = g->enc;
  const int batch = s->batch, rows = batch * g->in.h;
  const size_t u = (size_t)rows * g->in.c, hm = (size_t)rows * e->mlp;
  tempo_status st;
  /* MLP branch: out = mid + drop(fc2(gelu(fc1(norm2(mid))))) */
  const float *gr = ds;
  if (e->dropped) tempo_dropout_backward(g->p, e->mask_mlp, ds, s->dt, u), gr = s->dt;
  if ((st = tempo_linear_backward(&e->fc2, m->mm, &m->params, e->h_act, rows, gr, s->dh))) return st;
  tempo_gelu_backward(e->h_pre, s->dh, s->dh, hm);
  if ((st = tempo_linear_backward(&e->fc1, m->mm, &m->params, e->ln2, rows, s->dh, s->dln))) return st;
  tempo_layernorm_backward(&e->norm2, &m->params, e->mid, e->mean2, e->rstd2, s->dln, rows, ds, true);
  /* attention branch: mid = in + drop(attn(norm1(in))) */
  gr = ds;
  if (e->dropped) tempo_dropout_backward(g->p, e->mask_attn, ds, s->dt, u), gr = s->dt;
  if ((st = tempo_mhsa_backward(&e->attn, m->mm, &m->params, e->ln1, batch, gr, s->dln, s->attn_scratch))) return st;
  tempo_layernorm_backward(&e->norm1, &m->params, g->x, e->mean1, e->rstd1, s->dln, rows, ds, true);
  return TEMPO_STATUS_OK;
}
