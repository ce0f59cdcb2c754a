/* attention.c - multi-head self-attention and the row softmax (see vit.h).
 * B = batch, N = tokens, D = width, H = heads, E = head width, T = B*H instances.
 *
 * Scratch layout (tempo_mhsa_scratch_floats), with U = B*N*D:
 *   r1 (3U): forward: qkv (B, N, 3D); backward: dctx (B, N, D) then dO (T, N, E), later
 *            dqkv (B, N, 3D) once those are dead;
 *   r2 (3U): forward: O = A V (T, N, E); backward: dQ, dK, dV (T, N, E) each;
 *   r3 (T*N*N): backward: dA, then dS in place. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tempo/common.h"
#include "tempo/vit.h"
#include "vit_simd.h"

/* One row: y = softmax(scale * x), 8 values at a time; the n % 8 tail values go one by
 * one (a broadcast vexp per value) rather than through a padded vector, which stalls on
 * store forwarding in every row. */
TEMPO_VIT_CLONES
void tempo_softmax_rows_forward(const float *x, float *y, size_t rows, int n, float scale) {
  const int full = n & ~7;
  for (size_t r = 0; r < rows; r++) {
    const float *xr = x + r * (size_t)n;
    float *yr = y + r * (size_t)n;
    v8f m8 = vset(-__builtin_inff());
    for (int i = 0; i < full; i += 8) m8 = vmax(m8, vload(xr + i));
    float mx = vhmax(m8);
    for (int i = full; i < n; i++) mx = xr[i] > mx ? xr[i] : mx;
    const v8f vmx = vset(mx), vsc = vset(scale);
    v8f s8 = vset(0.0f);
    for (int i = 0; i < full; i += 8) {
      const v8f e = vexp((vload(xr + i) - vmx) * vsc);
      vstore(yr + i, e);
      s8 += e;
    }
    float sum = vsum(s8);
    for (int i = full; i < n; i++) sum += yr[i] = vexp(vset((xr[i] - mx) * scale))[0];
    const float inv = 1.0f / sum;
    const v8f vinv = vset(inv);
    for (int i = 0; i < full; i += 8) vstore(yr + i, vload(yr + i) * vinv);
    for (int i = full; i < n; i++) yr[i] *= inv;
  }
}

/* dx = scale * y * (dy - <y, dy>) per row; tails value by value as in the forward. */
TEMPO_VIT_CLONES
void tempo_softmax_rows_backward(const float *y, const float *dy, float *dx, size_t rows, int n, float scale) {
  const int full = n & ~7;
  for (size_t r = 0; r < rows; r++) {
    const float *yr = y + r * (size_t)n, *dyr = dy + r * (size_t)n;
    float *dxr = dx + r * (size_t)n;
    v8f d8 = vset(0.0f);
    for (int i = 0; i < full; i += 8) d8 += vload(yr + i) * vload(dyr + i);
    float dot = vsum(d8);
    for (int i = full; i < n; i++) dot += yr[i] * dyr[i];
    const v8f vdot = vset(dot), vsc = vset(scale);
    for (int i = 0; i < full; i += 8) vstore(dxr + i, vsc * vload(yr + i) * (vload(dyr + i) - vdot));
    for (int i = full; i < n; i++) dxr[i] = scale * yr[i] * (dyr[i] - dot);
  }
}

tempo_status tempo_mhsa_declare(tempo_mhsa *a, tempo_params *p, const char *prefix, int dim, int heads, int tokens) {
  char name[TEMPO_PARAM_NAME_MAX];
  memset(a, 0, sizeof *a);
  if (heads < 1 || dim < heads || dim % heads || tokens < 1)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "attention %s: dim %d, heads %d, tokens %d", prefix, dim,
                           heads, tokens);
  a->dim = dim, a->heads = heads, a->head_dim = dim / heads, a->tokens = tokens;
  a->scale = (float)(1.0 / sqrt((double)a->head_dim));
  snprintf(name, sizeof name, "%s.qkv", prefix);
  tempo_status st = tempo_linear_declare(&a->qkv, p, name, dim, 3 * dim, true);
  if (st) return st;
  snprintf(name, sizeof name, "%s.proj", prefix);
  return tempo_linear_declare(&a->proj, p, name, dim, dim, true);
}

tempo_status tempo_mhsa_alloc(tempo_mhsa *a, int max_batch) {
  size_t u, att;
  if (max_batch < 1 || !tempo_mul3_size((size_t)max_batch, (size_t)a->tokens, (size_t)a->dim, &u) ||
      !tempo_mul3_size((size_t)max_batch * a->heads, (size_t)a->tokens, (size_t)a->tokens, &att))
    return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "attention: activation size overflows");
  tempo_mhsa_free(a);
  a->max_batch = max_batch;
  a->q = tempo_alloc_floats(u);
  a->k = tempo_alloc_floats(u);
  a->v = tempo_alloc_floats(u);
  a->ctx = tempo_alloc_floats(u);
  a->att = tempo_alloc_floats(att);
  if (!a->q || !a->k || !a->v || !a->ctx || !a->att) {
    tempo_mhsa_free(a);
    return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "out of memory for attention activations");
  }
  return TEMPO_STATUS_OK;
}

void tempo_mhsa_free(tempo_mhsa *a) {
  tempo_free_floats(a->q);
  tempo_free_floats(a->k);
  tempo_free_floats(a->v);
  tempo_free_floats(a->ctx);
  tempo_free_floats(a->att);
  a->q = a->k = a->v = a->ctx = a->att = NULL;
  a->max_batch = 0;
}

void tempo_mhsa_init(const tempo_mhsa *a, tempo_params *p, tempo_rng *rng) {
  tempo_linear_init_default(&a->qkv, p, rng);
  tempo_linear_init_default(&a->proj, p, rng);
}

size_t tempo_mhsa_scratch_floats(const tempo_mhsa *a, int batch) {
  const size_t u = (size_t)batch * a->tokens * a->dim;
  return 6 * u + (size_t)batch * a->heads * a->tokens * a->tokens;
}

/* Copies one head's E values: inline 8-wide moves when E is a multiple of 8 (E is 32 or
 * 64 in the reference models, where a libc call per 128 bytes costs more than the copy). */
VS_INLINE void copy_head(float *restrict dst, const float *restrict src, int e) {
  if (e & 7) {
    memcpy(dst, src, (size_t)e * sizeof *dst);
    return;
  }
  for (int i = 0; i < e; i += 8) vstore(dst + i, vload(src + i));
}

/* (B, N, 3D) rows -> three (T, N, E) blocks: the twin's reshape(B, N, 3, H, E).permute(2, 0, 3, 1, 4). */
/* noinline: a clone inlined into a non-cloned caller would lose its AVX2 body; no loop
 * distribution: GCC would turn copy_head's loop back into a memmove call. */
#define HEADS_FN __attribute__((noinline, optimize("no-tree-loop-distribute-patterns"))) TEMPO_VIT_CLONES
HEADS_FN
static void split_heads3(const tempo_mhsa *a, int batch, const float *qkv, float *q, float *k, float *v) {
  const int n = a->tokens, h = a->heads, e = a->head_dim, d = a->dim;
  for (int b = 0; b < batch; b++)
    for (int t = 0; t < n; t++) {
      const float *row = qkv + ((size_t)b * n + t) * 3 * d;
      for (int hh = 0; hh < h; hh++) {
        const size_t dst = (((size_t)b * h + hh) * n + t) * e;
        copy_head(q + dst, row + hh * e, e);
        copy_head(k + dst, row + d + hh * e, e);
        copy_head(v + dst, row + 2 * d + hh * e, e);
      }
    }
}

/* The inverse of split_heads3. */
HEADS_FN
static void merge_heads3(const tempo_mhsa *a, int batch, const float *q, const float *k, const float *v,
                         float *qkv) {
  const int n = a->tokens, h = a->heads, e = a->head_dim, d = a->dim;
  for (int b = 0; b < batch; b++)
    for (int t = 0; t < n; t++) {
      float *row = qkv + ((size_t)b * n + t) * 3 * d;
      for (int hh = 0; hh < h; hh++) {
        const size_t src = (((size_t)b * h + hh) * n + t) * e;
        copy_head(row + hh * e, q + src, e);
        copy_head(row + d + hh * e, k + src, e);
        copy_head(row + 2 * d + hh * e, v + src, e);
      }
    }
}

/* (T, N, E) <-> (B, N, D); to_heads selects the direction. */
HEADS_FN
static void permute_heads(const tempo_mhsa *a, int batch, const float *src, float *dst, bool to_heads) {
  const int n = a->tokens, h = a->heads, e = a->head_dim, d = a->dim;
  for (int b = 0; b < batch; b++)
    for (int t = 0; t < n; t++) {
      const size_t row = ((size_t)b * n + t) * d;
      for (int hh = 0; hh < h; hh++) {
        const size_t hd = (((size_t)b * h + hh) * n + t) * e;
        if (to_heads)
          copy_head(dst + hd, src + row + hh * e, e);
        else
          copy_head(dst + row + hh * e, src + hd, e);
      }
    }
}

tempo_status tempo_mhsa_forward(tempo_mhsa *a, tempo_mm *mm, const tempo_params *p, const float *x, int batch,
                                float *y, float *scratch) {
  if (batch < 1 || batch > a->max_batch)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "attention: batch %d outside 1..%d", batch, a->max_batch);
  const int n = a->tokens, e = a->head_dim, inst = batch * a->heads, rows = batch * n;
  const size_t u = (size_t)rows * a->dim;
  float *r1 = scratch, *r2 = scratch + 3 * u;
  tempo_status st = tempo_linear_forward(&a->qkv, mm, p, x, rows, r1);
  if (st) return st;
  split_heads3(a, batch, r1, a->q, a->k, a->v);
  const tempo_mm_shape qk = {.batch = inst, .m = n, .n = e, .p = n, .w_trans = true};
  if ((st = tempo_mm_forward(mm, &a->qk_site, &qk, a->q, a->k, a->att))) return st;
  tempo_softmax_rows_forward(a->att, a->att, (size_t)inst * n, n, a->scale);
  const tempo_mm_shape av = {.batch = inst, .m = n, .n = n, .p = e, .w_trans = false};
  if ((st = tempo_mm_forward(mm, &a->av_site, &av, a->att, a->v, r2))) return st;
  permute_heads(a, batch, r2, a->ctx, false);
  return tempo_linear_forward(&a->proj, mm, p, a->ctx, rows, y);
}

tempo_status tempo_mhsa_backward(tempo_mhsa *a, tempo_mm *mm, tempo_params *p, const float *x, int batch,
                                 const float *dy, float *dx, float *scratch) {
  if (batch < 1 || batch > a->max_batch)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "attention: batch %d outside 1..%d", batch, a->max_batch);
  const int n = a->tokens, e = a->head_dim, inst = batch * a->heads, rows = batch * n;
  const size_t u = (size_t)rows * a->dim;
  float *r1 = scratch, *r2 = scratch + 3 * u, *r3 = scratch + 6 * u;
  float *dctx = r1, *d_o = r1 + u, *dq = r2, *dk = r2 + u, *dv = r2 + 2 * u;
  tempo_status st = tempo_linear_backward(&a->proj, mm, p, a->ctx, rows, dy, dctx);
  if (st) return st;
  permute_heads(a, batch, dctx, d_o, true);
  const tempo_mm_shape av = {.batch = inst, .m = n, .n = n, .p = e, .w_trans = false};
  if ((st = tempo_mm_backward(mm, &a->av_site, &av, a->att, a->v, d_o, r3, dv, 0))) return st;
  tempo_softmax_rows_backward(a->att, r3, r3, (size_t)inst * n, n, a->scale);
  const tempo_mm_shape qk = {.batch = inst, .m = n, .n = e, .p = n, .w_trans = true};
  if ((st = tempo_mm_backward(mm, &a->qk_site, &qk, a->q, a->k, r3, dq, dk, 0))) return st;
  merge_heads3(a, batch, dq, dk, dv, r1);
  return tempo_linear_backward(&a->qkv, mm, p, x, rows, r1, dx);
}
