/* vit.h - the transformer layers of the ViT family, with explicit forward and backward,
 * float32: layer norm, GELU, row softmax, dropout, patch embedding (with cls token and
 * position embedding), and multi-head self-attention.
 *
 * Dimension letters: B = batch, N = tokens (1 cls + P patches), P = patches, D = model
 * width, H = heads, E = head width (D / H), M = MLP hidden width, C/Hi/Wi = image channels,
 * height, width, K = C * patch * patch (values of one patch), R = rows (B * N, or any count).
 *
 * Conventions as in layers.h: every product goes through the matmul entry point with a
 * site per product; parameter gradients are ACCUMULATED into the registry's grad buffer;
 * input gradients are overwritten unless a function says it accumulates. Buffers are owned
 * by the caller unless stated; nothing here allocates per call. Parameter names and layouts
 * are PyTorch's (nn.LayerNorm, nn.Conv2d, nn.Linear). */
#ifndef TEMPO_VIT_H
#define TEMPO_VIT_H

#include "tempo/layers.h"
#include "tempo/matmul.h"
#include "tempo/params.h"
#include "tempo/rng.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- layer norm over the last dimension (eps 1e-5, affine, as nn.LayerNorm) ---- */
#define TEMPO_LAYERNORM_EPS 1e-5f

typedef struct {
  int dim;          /* D */
  int w_idx, b_idx; /* "<prefix>.weight" (D), "<prefix>.bias" (D) */
} tempo_layernorm;

/* Declares the weight and bias (both no-decay). */
TEMPO_WUR tempo_status tempo_layernorm_declare(tempo_layernorm *l, tempo_params *p, const char *prefix, int dim);
/* weight = 1, bias = 0 (PyTorch's default). */
void tempo_layernorm_init(const tempo_layernorm *l, tempo_params *p);
/* y (R, D) = (x - mean) * rstd * weight + bias per row of x (R, D); keeps mean (R) and
 * rstd (R) for the backward. y must not alias x. */
void tempo_layernorm_forward(const tempo_layernorm *l, const tempo_params *p, const float *x, int rows, float *y,
                             float *mean, float *rstd);
/* dweight, dbias += ...; dx (R, D) = the input gradient, or dx += it when accumulate.
 * x, mean, rstd are the forward's. dx must not alias dy. */
void tempo_layernorm_backward(const tempo_layernorm *l, tempo_params *p, const float *x, const float *mean,
                              const float *rstd, const float *dy, int rows, float *dx, bool accumulate);

/* ---- GELU, exact erf form (PyTorch's F.gelu default) ---- */
/* y = x * Phi(x) over n values (y may equal x). */
void tempo_gelu_forward(const float *x, float *y, size_t n);
/* dx = dy * (Phi(x) + x phi(x)); x is the forward INPUT (dx may equal dy). */
void tempo_gelu_backward(const float *x, const float *dy, float *dx, size_t n);

/* ---- numerically stable softmax over rows of length n, with a logit scale ---- */
/* y (rows, n) = softmax(scale * x) per row (y may equal x). */
void tempo_softmax_rows_forward(const float *x, float *y, size_t rows, int n, float scale);
/* dx = scale * y * (dy - sum(dy * y)) per row; y is the forward output (dx may equal dy). */
void tempo_softmax_rows_backward(const float *y, const float *dy, float *dx, size_t rows, int n, float scale);

/* ---- inverted dropout: kept values are scaled by 1 / (1 - p) ---- */
/* y = x * mask / (1 - p) with mask[i] = 1 with probability 1 - p, drawn from rng (so a run
 * is deterministic for a seed). p in [0, 1). y may equal x. */
void tempo_dropout_forward(tempo_rng *rng, float p, const float *x, float *y, uint8_t *mask, size_t n);
/* dx = dy * mask / (1 - p) (dx may equal dy). */
void tempo_dropout_backward(float p, const uint8_t *mask, const float *dy, float *dx, size_t n);

/* ---- patch embedding + cls token + position embedding ----
 * The twin's Conv2d(C, D, patch, stride=patch) done as a patch-extraction pass and one
 * product patches (B*P, K) . W^T with W "patch_embed.weight" (D, C, patch, patch) used as
 * (D, K) with w_trans, plus "patch_embed.bias" (D). Token 0 of each sample is "cls_token"
 * (1, 1, D); "pos_embed" (1, N, D) is added to every token. Patches are row-major over the
 * grid, as the twin's flatten(2).transpose(1, 2). */
typedef struct {
  int in_c, in_h, in_w, patch; /* C, Hi, Wi, patch side */
  int grid_h, grid_w;          /* Hi / patch, Wi / patch */
  int patches, tokens, dim, k; /* P, N = P + 1, D, K */
  int w_idx, b_idx, cls_idx, pos_idx;
  tempo_mm_site site;
} tempo_patch_embed;

/* Declares the four tensors; Hi and Wi must be multiples of patch. */
TEMPO_WUR tempo_status tempo_patch_embed_declare(tempo_patch_embed *e, tempo_params *p, int in_c, int in_h,
                                                 int in_w, int patch, int dim);
/* Weight and bias as Conv2d's default (U(-1/sqrt(K), 1/sqrt(K))), cls token 0, position
 * embedding truncated normal (std 0.02, cut at 2 std). */
void tempo_patch_embed_init(const tempo_patch_embed *e, tempo_params *p, tempo_rng *rng);
/* out (B, N, D) from images x (B, C, Hi, Wi). patches (B*P, K) receives the extracted
 * patches and must stay unchanged until the backward; tmp (B*P, D) is scratch. */
TEMPO_WUR tempo_status tempo_patch_embed_forward(tempo_patch_embed *e, tempo_mm *mm, const tempo_params *p,
                                                 const float *x, int batch, float *patches, float *tmp, float *out);
/* Gradients of all four tensors for dout (B, N, D); tmp (B*P, D) is scratch. No input
 * gradient (the images are data). */
TEMPO_WUR tempo_status tempo_patch_embed_backward(tempo_patch_embed *e, tempo_mm *mm, tempo_params *p,
                                                  const float *patches, int batch, const float *dout, float *tmp);

/* ---- multi-head self-attention ----
 * qkv = x Wqkv^T + b ("<prefix>.qkv", (3D, D)), split as the twin's reshape(B, N, 3, H, E)
 * into contiguous Q, K, V (B*H instances of (N, E)); S = Q K^T as ONE batched product
 * (m = N, n = E, p = N, W = K with w_trans); A = softmax(S / sqrt(E)); O = A V as one
 * batched product (m = N, n = N, p = E, W = V); heads merged back to (B, N, D) and
 * projected by "<prefix>.proj" (D, D). */
typedef struct {
  int dim, heads, head_dim, tokens, max_batch; /* D, H, E, N, largest B */
  float scale;                                 /* 1 / sqrt(E) */
  tempo_linear qkv, proj;
  tempo_mm_site qk_site, av_site;
  /* Saved activations of the last forward, owned (tempo_mhsa_alloc / tempo_mhsa_free). */
  float *q, *k, *v; /* (B, H, N, E) each */
  float *att;       /* (B, H, N, N) softmax probabilities */
  float *ctx;       /* (B, N, D) merged heads: the projection's input */
} tempo_mhsa;

TEMPO_WUR tempo_status tempo_mhsa_declare(tempo_mhsa *a, tempo_params *p, const char *prefix, int dim, int heads,
                                          int tokens);
/* Allocates the saved activations for max_batch samples (once). */
TEMPO_WUR tempo_status tempo_mhsa_alloc(tempo_mhsa *a, int max_batch);
void tempo_mhsa_free(tempo_mhsa *a);
/* Linear layers as PyTorch's default. */
void tempo_mhsa_init(const tempo_mhsa *a, tempo_params *p, tempo_rng *rng);
/* Floats of scratch the forward and backward need for `batch` samples. */
size_t tempo_mhsa_scratch_floats(const tempo_mhsa *a, int batch);
/* y (B, N, D) from x (B, N, D); x must stay unchanged until the backward. y must not
 * alias x or scratch. */
TEMPO_WUR tempo_status tempo_mhsa_forward(tempo_mhsa *a, tempo_mm *mm, const tempo_params *p, const float *x,
                                          int batch, float *y, float *scratch);
/* Parameter gradients, and dx (B, N, D) = the input gradient (overwritten), for dy
 * (B, N, D) of the last forward. dx must not alias dy or scratch. */
TEMPO_WUR tempo_status tempo_mhsa_backward(tempo_mhsa *a, tempo_mm *mm, tempo_params *p, const float *x, int batch,
                                           const float *dy, float *dx, float *scratch);

#ifdef __cplusplus
}
#endif
#endif
