/* embed.c - patch embedding + cls token + position embedding (see vit.h).
 * B = batch, C/Hi/Wi = image, G = patch side, P = patches, N = P + 1 tokens, D = width,
 * K = C*G*G. A patch row holds its values in Conv2d weight order (c, ki, kj), so the
 * weight (D, C, G, G) is used as a (D, K) matrix with w_trans. */
#include <math.h>
#include <string.h>

#include "tempo/common.h"
#include "tempo/vit.h"

tempo_status tempo_patch_embed_declare(tempo_patch_embed *e, tempo_params *p, int in_c, int in_h, int in_w,
                                       int patch, int dim) {
  memset(e, 0, sizeof *e);
  if (in_c < 1 || patch < 1 || dim < 1 || in_h < patch || in_w < patch || in_h % patch || in_w % patch)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT,
                           "patch embedding: input %dx%dx%d is not a grid of %dx%d patches", in_c, in_h, in_w,
                           patch, patch);
  e->in_c = in_c, e->in_h = in_h, e->in_w = in_w, e->patch = patch, e->dim = dim;
  e->grid_h = in_h / patch, e->grid_w = in_w / patch;
  e->patches = e->grid_h * e->grid_w;
  e->tokens = e->patches + 1;
  e->k = in_c * patch * patch;
  tempo_status st;
  if ((st = tempo_params_add(p, "patch_embed.weight", 4, (int[]){dim, in_c, patch, patch}, 0, &e->w_idx)) ||
      (st = tempo_params_add(p, "patch_embed.bias", 1, (int[]){dim}, TEMPO_PARAM_NO_DECAY, &e->b_idx)) ||
      (st = tempo_params_add(p, "cls_token", 3, (int[]){1, 1, dim}, TEMPO_PARAM_NO_DECAY, &e->cls_idx)) ||
      (st = tempo_params_add(p, "pos_embed", 3, (int[]){1, e->tokens, dim}, TEMPO_PARAM_NO_DECAY, &e->pos_idx)))
    return st;
  return TEMPO_STATUS_OK;
}

void tempo_patch_embed_init(const tempo_patch_embed *e, tempo_params *p, tempo_rng *rng) {
  const double bound = 1.0 / sqrt((double)e->k);
  float *w = tempo_params_ptr(p, e->w_idx), *b = tempo_params_ptr(p, e->b_idx);
  for (size_t i = 0; i < (size_t)e->dim * e->k; i++) w[i] = (float)((2.0 * tempo_rng_uniform(rng) - 1.0) * bound);
  for (int i = 0; i < e->dim; i++) b[i] = (float)((2.0 * tempo_rng_uniform(rng) - 1.0) * bound);
  float *cls = tempo_params_ptr(p, e->cls_idx), *pos = tempo_params_ptr(p, e->pos_idx);
  for (int i = 0; i < e->dim; i++) cls[i] = 0.0f;
  for (size_t i = 0; i < (size_t)e->tokens * e->dim; i++) pos[i] = (float)tempo_rng_trunc_normal(rng, 0.02);
}

/* patches (B*P, K): row (b, gy, gx) holds x[b, c, gy*G + ki, gx*G + kj] at c*G*G + ki*G + kj. */
static void extract_patches(const tempo_patch_embed *e, const float *x, int batch, float *patches) {
  const int g = e->patch, c_n = e->in_c, h = e->in_h, w = e->in_w;
  for (int b = 0; b < batch; b++)
    for (int gy = 0; gy < e->grid_h; gy++)
      for (int gx = 0; gx < e->grid_w; gx++) {
        float *row = patches + ((size_t)(b * e->grid_h + gy) * e->grid_w + gx) * e->k;
        for (int c = 0; c < c_n; c++) {
          const float *src = x + (((size_t)b * c_n + c) * h + (size_t)gy * g) * w + (size_t)gx * g;
          for (int ki = 0; ki < g; ki++, row += g) memcpy(row, src + (size_t)ki * w, (size_t)g * sizeof *row);
        }
      }
}

tempo_status tempo_patch_embed_forward(tempo_patch_embed *e, tempo_mm *mm, const tempo_params *p, const float *x,
                                       int batch, float *patches, float *tmp, float *out) {
  const int d = e->dim, np = e->patches, nt = e->tokens;
  extract_patches(e, x, batch, patches);
  const tempo_mm_shape s = {.batch = 1, .m = batch * np, .n = e->k, .p = d, .w_trans = true};
  tempo_status st = tempo_mm_forward(mm, &e->site, &s, patches, tempo_params_ptr(p, e->w_idx), tmp);
  if (st) return st;
  const float *restrict bias = tempo_params_ptr(p, e->b_idx), *restrict cls = tempo_params_ptr(p, e->cls_idx),
                        *restrict pos = tempo_params_ptr(p, e->pos_idx);
  for (int b = 0; b < batch; b++) {
    float *restrict o = out + (size_t)b * nt * d;
    for (int i = 0; i < d; i++) o[i] = cls[i] + pos[i];
    for (int t = 1; t < nt; t++) {
      const float *restrict src = tmp + ((size_t)b * np + t - 1) * d, *restrict pt = pos + (size_t)t * d;
      float *restrict ot = o + (size_t)t * d;
      for (int i = 0; i < d; i++) ot[i] = src[i] + bias[i] + pt[i];
    }
  }
  return TEMPO_STATUS_OK;
}

tempo_status tempo_patch_embed_backward(tempo_patch_embed *e, tempo_mm *mm, tempo_params *p, const float *patches,
                                        int batch, const float *dout, float *tmp) {
  const int d = e->dim, np = e->patches, nt = e->tokens;
  float *restrict db = tempo_params_grad(p, e->b_idx), *restrict dcls = tempo_params_grad(p, e->cls_idx),
                  *restrict dpos = tempo_params_grad(p, e->pos_idx);
  for (int b = 0; b < batch; b++) {
    const float *restrict g = dout + (size_t)b * nt * d;
    for (int i = 0; i < d; i++) dcls[i] += g[i], dpos[i] += g[i];
    for (int t = 1; t < nt; t++) {
      const float *restrict gt = g + (size_t)t * d;
      float *restrict dst = tmp + ((size_t)b * np + t - 1) * d, *restrict dpt = dpos + (size_t)t * d;
      for (int i = 0; i < d; i++) {
        dst[i] = gt[i];
        db[i] += gt[i];
        dpt[i] += gt[i];
      }
    }
  }
  const tempo_mm_shape s = {.batch = 1, .m = batch * np, .n = e->k, .p = d, .w_trans = true};
  return tempo_mm_backward(mm, &e->site, &s, patches, tempo_params_ptr(p, e->w_idx), tmp, NULL,
                           tempo_params_grad(p, e->w_idx), TEMPO_MM_ACCUM_DW);
}
