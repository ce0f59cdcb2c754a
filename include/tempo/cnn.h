/* cnn.h - convolutional layers with explicit forward and backward, float32: conv2d lowered
 * to a matrix product (im2col), 2-D batch norm, max/average/global-average pooling and the
 * residual add.
 *
 * Layout: activations are NHWC inside the network: a tensor (B, H, W, C) is a row-major
 * matrix (B*H*W, C), which is exactly the output of a lowered convolution, so a 1x1 stride-1
 * convolution needs no im2col and batch norm reduces over rows. Only the first layer reads
 * the model's NCHW input (tempo_conv2d in_layout = TEMPO_LAYOUT_NCHW).
 *
 * Letters: B batch, H/W input height/width, OH/OW output height/width, C channels,
 * Ci/Co conv in/out channels, K = Ci*kh*kw (a column of the lowered product), R rows.
 *
 * Gradients of parameters are ACCUMULATED into the registry's grad buffer; input gradients
 * are overwritten unless a flag says accumulate. Every matrix product goes through the
 * matmul entry point: the conv weight (Co, Ci, kh, kw) is used as the (Co, K) matrix with
 * w_trans, so X = cols (B*OH*OW, K) and Y (B*OH*OW, Co) is NHWC. */
#ifndef TEMPO_CNN_H
#define TEMPO_CNN_H

#include "tempo/matmul.h"
#include "tempo/params.h"
#include "tempo/rng.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  TEMPO_LAYOUT_NHWC = 0, /* (B, H, W, C): the internal layout */
  TEMPO_LAYOUT_NCHW = 1, /* (B, C, H, W): the model input (PyTorch's layout) */
} tempo_layout;

/* Output size of a convolution or pooling window: floor((in + 2 pad - k) / stride) + 1. */
int tempo_conv_out_size(int in, int k, int stride, int pad);

/* ------------------------------------------------------------------ conv2d */
typedef struct {
  int cin, cout, kh, kw, stride, pad;
  int in_h, in_w, out_h, out_w;
  tempo_layout in_layout;
  bool direct; /* 1x1, stride 1, pad 0, NHWC input: the input itself is the product's X */
  int w_idx, b_idx; /* registry indices; b_idx = -1 without bias */
  tempo_mm_site site;
  int lowering; /* how the last forward was lowered (conv.c: whole batch, or tiles in local mode) */
} tempo_conv2d;

/* Declares "<prefix>.weight" (Co, Ci, k, k) and, with bias, "<prefix>.bias" (Co) for an
 * input of in_h x in_w pixels in in_layout. Bad sizes (an empty output, k < 1, stride < 1,
 * pad < 0 or pad >= k) -> TEMPO_STATUS_INVALID_ARGUMENT. */
TEMPO_WUR tempo_status tempo_conv2d_declare(tempo_conv2d *l, tempo_params *p, const char *prefix, int cin, int cout,
                                            int k, int stride, int pad, bool bias, int in_h, int in_w,
                                            tempo_layout in_layout);
/* Floats of the column buffer for `batch` samples: the columns (B*OH*OW, K) and, for
 * tap-major layers (see tempo_im2col), the layer's weight and weight-gradient copies behind
 * them; 0 when l->direct. */
size_t tempo_conv2d_cols_floats(const tempo_conv2d *l, int batch);
/* Kaiming-normal, fan_out, ReLU gain: W ~ N(0, 2 / (Co*kh*kw)); bias (if any) as PyTorch's
 * default, U(-1/sqrt(K), 1/sqrt(K)). */
void tempo_conv2d_init_kaiming(const tempo_conv2d *l, tempo_params *p, tempo_rng *rng);

/* cols (B*OH*OW, K) from x (B, H, W, Ci) NHWC or (B, Ci, H, W) NCHW as l->in_layout says;
 * padding is 0. Column order: (ci, i, j), the weight's (Co, Ci, kh, kw) layout, for NCHW
 * inputs and 1x1 kernels; tap-major (i, j, ci) for larger kernels on NHWC inputs, so a window
 * row is one contiguous run of kw*Ci input floats (the products then use a (Co, kh, kw, Ci)
 * copy of the weight, kept in the column buffer). */
void tempo_im2col(const tempo_conv2d *l, const float *x, int batch, float *cols);
/* tempo_im2col's columns as a row source (rows.h): row u of the (B*OH*OW, K) matrix is
 * written by the same row functions, so every float is the one tempo_im2col writes. src is
 * the source's context, filled here; it and x must outlive the source's use. */
typedef struct {
  const tempo_conv2d *l;
  const float *x;
} tempo_conv2d_src;
tempo_rows tempo_conv2d_rows(const tempo_conv2d *l, const float *x, int batch, tempo_conv2d_src *src);
/* tempo_col2im's adds as a row sink (rows.h), for tap-major columns (NHWC input, kernel
 * larger than 1x1): row u of the (B*OH*OW, K) dX is added onto dx (input layout) exactly as
 * tempo_col2im adds it (dx is not cleared: the caller zeroes it unless accumulating). ctx is
 * the sink's context, filled here; it and dx must outlive the sink's use. */
typedef struct {
  const tempo_conv2d *l;
  float *dx;
} tempo_conv2d_sink;
tempo_rows_sink tempo_conv2d_dx_sink(const tempo_conv2d *l, float *dx, int batch, tempo_conv2d_sink *ctx);
/* dx (input layout) = [dx +] the sum of cols' entries back onto their input pixels
 * (the adjoint of tempo_im2col); overwrites dx unless accumulate. */
void tempo_col2im(const tempo_conv2d *l, const float *cols, int batch, float *dx, bool accumulate);

/* y (B*OH*OW, Co) NHWC from x. cols (tempo_conv2d_cols_floats) receives the lowered input
 * and, like x, must stay unchanged until the backward (NULL when l->direct). In local mode
 * with one thread the lowering runs in tiles and cols is scratch for both calls (the
 * backward lowers x again). A product offloaded from rows (matmul.h tempo_mm_takes_rows:
 * plain and tempo modes) never writes the columns: its Enc pass lowers x row by row
 * (tempo_conv2d_rows); cols then holds only the tap-major weight copy. */
TEMPO_WUR tempo_status tempo_conv2d_forward(tempo_conv2d *l, tempo_mm *mm, const tempo_params *p, const float *x,
                                            int batch, float *cols, float *y);

enum { TEMPO_CONV_ACCUM_DX = 1u << 0 /* dx += ... instead of dx = ... */ };

/* dW (+ db) += from dy (B*OH*OW, Co); when dx != NULL, dx (input layout) = [dx +] the input
 * gradient, going through dcols (a scratch of tempo_conv2d_cols_floats, NULL when direct).
 * x and cols are what the forward got and produced. */
TEMPO_WUR tempo_status tempo_conv2d_backward(tempo_conv2d *l, tempo_mm *mm, tempo_params *p, const float *x,
                                             int batch, const float *cols, const float *dy, float *dcols, float *dx,
                                             unsigned flags);

/* ------------------------------------------------------------------ batch norm 2d */
typedef struct {
  int c;
  float momentum, eps; /* 0.1, 1e-5 */
  int w_idx, b_idx, mean_idx, var_idx; /* weight, bias; running_mean, running_var (STATE) */
  float *save;         /* (5 + 32, C) owned: batch mean, 1/sqrt(var + eps), three scratch rows, 32 rows of per-block scratch */
  double *acc;         /* (2 (1 + 16), C) owned: reduction accumulators and the 16 fixed blocks' partial sums */
  bool batch_stats;    /* the last forward normalised with batch statistics */
} tempo_bn2d;

/* Declares "<prefix>.weight", "<prefix>.bias" (C, no decay) and the STATE tensors
 * "<prefix>.running_mean", "<prefix>.running_var" (C); allocates save/acc. */
TEMPO_WUR tempo_status tempo_bn2d_declare(tempo_bn2d *bn, tempo_params *p, const char *prefix, int c);
/* weight 1, bias 0, running mean 0, running variance 1 (after finalize). */
void tempo_bn2d_init(const tempo_bn2d *bn, tempo_params *p);
/* Frees save/acc (the tensors belong to the registry). NULL-safe fields. */
void tempo_bn2d_free(tempo_bn2d *bn);

/* y (R, C) = [relu](gamma * (x - mu) / sqrt(var + eps) + beta [+ res]) over rows R = B*H*W.
 * training: mu/var are the batch's (biased variance) and the running statistics are updated
 * with momentum (unbiased variance; R >= 2); otherwise the running statistics are used.
 * res (R, C) may be NULL. y must not alias x (the backward needs x). */
void tempo_bn2d_forward(tempo_bn2d *bn, tempo_params *p, bool training, const float *x, int rows,
                        const float *res, bool relu, float *y);
/* dgamma, dbeta += and dx (R, C) = the input gradient for dy, for the last forward on x.
 * relu_y: the forward output when it had relu (dy is masked by relu_y > 0), else NULL
 * (a residual's mask must be applied by the caller, who also routes it to the shortcut).
 * dx may alias dy. */
void tempo_bn2d_backward(tempo_bn2d *bn, tempo_params *p, const float *x, int rows, const float *relu_y,
                         const float *dy, float *dx);

/* ------------------------------------------------------------------ pooling, residual (NHWC) */
/* y (B, OH, OW, C) = max over k x k windows (padding never wins); argmax (B*OH*OW*C) keeps
 * the input offset of each maximum for the backward. */
void tempo_maxpool2d_forward(const float *x, int batch, int h, int w, int c, int k, int stride, int pad, float *y,
                             int32_t *argmax);
/* dx (B, H, W, C) = dy routed to the argmax positions (overwritten). */
void tempo_maxpool2d_backward(const float *dy, const int32_t *argmax, int batch, int h, int w, int c, int oh,
                              int ow, float *dx);
/* Average over k x k windows, zero padding counted (PyTorch's count_include_pad). */
void tempo_avgpool2d_forward(const float *x, int batch, int h, int w, int c, int k, int stride, int pad, float *y);
void tempo_avgpool2d_backward(const float *dy, int batch, int h, int w, int c, int k, int stride, int pad,
                              float *dx);
/* y (B, C) = mean over the H*W pixels of x (B, H*W, C). */
void tempo_gap_forward(const float *x, int batch, int hw, int c, float *y);
/* dx (B, H*W, C) = dy (B, C) / (H*W) at every pixel (overwritten). */
void tempo_gap_backward(const float *dy, int batch, int hw, int c, float *dx);
/* y = [relu](a + b) over n values (y may alias a or b). */
void tempo_residual_add(const float *a, const float *b, float *y, size_t n, bool relu);

#ifdef __cplusplus
}
#endif
#endif
