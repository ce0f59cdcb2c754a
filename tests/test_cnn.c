/* test_cnn.c - conv2d, batch norm, pooling and residual add: the forward against naive
 * double-precision references, finite-difference gradient checks on tiny odd shapes
 * (stride 1 and 2, padding 0 and 1, kernels 1 and 3, NHWC and NCHW inputs), the dx
 * accumulate flag, batch-norm running statistics and eval mode. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"
#include "tempo/cnn.h"
#include "tempo/common.h"
#include "test_util.h"

#define EPS 1e-3
#define ATOL 2e-3
#define RTOL 1e-2

static tempo_mm *local_mm(void) {
  tempo_mm_config cfg;
  tempo_mm_config_default(&cfg);
  cfg.mode = TEMPO_MODE_LOCAL;
  tempo_mm *mm = NULL;
  assert_int_equal(tempo_mm_create(&cfg, &mm), TEMPO_STATUS_OK);
  return mm;
}

/* ------------------------------------------------------------------ conv2d */
typedef struct {
  tempo_mm *mm;
  tempo_params p;
  tempo_conv2d l;
  int batch;
  float *x, *cols, *y, *r, *dcols, *dx;
  size_t xn, yn;
} conv_ctx;

static double conv_loss(void *vc) {
  conv_ctx *c = vc;
  assert_int_equal(tempo_conv2d_forward(&c->l, c->mm, &c->p, c->x, c->batch, c->cols, c->y), TEMPO_STATUS_OK);
  return gradcheck_project(c->y, c->r, c->yn);
}

/* x value at (b, h, w, ci) in the layer's input layout. */
static double conv_x(const conv_ctx *c, int b, int h, int w, int ci) {
  const tempo_conv2d *l = &c->l;
  if (l->in_layout == TEMPO_LAYOUT_NCHW) return c->x[(((size_t)b * l->cin + ci) * l->in_h + h) * l->in_w + w];
  return c->x[(((size_t)b * l->in_h + h) * l->in_w + w) * l->cin + ci];
}

static void check_conv(int cin, int cout, int k, int stride, int pad, int h, int w, tempo_layout layout, bool bias) {
  conv_ctx c = {.mm = local_mm(), .batch = 2};
  tempo_params_init(&c.p);
  assert_int_equal(tempo_conv2d_declare(&c.l, &c.p, "conv", cin, cout, k, stride, pad, bias, h, w, layout),
                   TEMPO_STATUS_OK);
  assert_int_equal(tempo_params_finalize(&c.p), TEMPO_STATUS_OK);
  const tempo_conv2d *l = &c.l;
  assert_int_equal(l->out_h, (h + 2 * pad - k) / stride + 1);
  assert_int_equal(l->direct, k == 1 && stride == 1 && pad == 0 && layout == TEMPO_LAYOUT_NHWC);
  tempo_rng rng;
  tempo_rng_seed(&rng, (uint64_t)(cin * 1000 + cout * 100 + k * 10 + stride), 7);
  tempo_conv2d_init_kaiming(&c.l, &c.p, &rng);
  if (bias) test_randn(tempo_params_ptr(&c.p, l->b_idx), (size_t)cout, &rng);
  c.xn = (size_t)c.batch * cin * h * w;
  c.yn = (size_t)c.batch * l->out_h * l->out_w * cout;
  const size_t cn = tempo_conv2d_cols_floats(l, c.batch);
  c.x = tempo_alloc_floats(c.xn);
  c.dx = tempo_alloc_floats(c.xn);
  c.y = tempo_alloc_floats(c.yn);
  c.r = tempo_alloc_floats(c.yn);
  c.cols = cn ? tempo_alloc_floats(cn) : NULL;
  c.dcols = cn ? tempo_alloc_floats(cn) : NULL;
  test_randn(c.x, c.xn, &rng);
  test_randn(c.r, c.yn, &rng);

  /* forward against a naive double-precision convolution; y is NHWC */
  conv_loss(&c);
  const float *wt = tempo_params_ptr(&c.p, l->w_idx);
  double maxerr = 0.0;
  for (int b = 0; b < c.batch; b++)
    for (int oh = 0; oh < l->out_h; oh++)
      for (int ow = 0; ow < l->out_w; ow++)
        for (int co = 0; co < cout; co++) {
          double s = bias ? tempo_params_ptr(&c.p, l->b_idx)[co] : 0.0;
          for (int ci = 0; ci < cin; ci++)
            for (int i = 0; i < k; i++)
              for (int j = 0; j < k; j++) {
                const int ih = oh * stride - pad + i, iw = ow * stride - pad + j;
                if (ih >= 0 && ih < h && iw >= 0 && iw < w)
                  s += wt[((co * cin + ci) * k + i) * k + j] * conv_x(&c, b, ih, iw, ci);
              }
          const double got = c.y[(((size_t)b * l->out_h + oh) * l->out_w + ow) * cout + co];
          maxerr = fmax(maxerr, fabs(got - s));
        }
  assert_true(maxerr < 1e-4);

  /* analytic gradients for L = sum y * r */
  tempo_params_zero_grad(&c.p);
  assert_int_equal(tempo_conv2d_backward(&c.l, c.mm, &c.p, c.x, c.batch, c.cols, c.r, c.dcols, c.dx, 0),
                   TEMPO_STATUS_OK);
  assert_int_equal(gradcheck("conv x", conv_loss, &c, c.x, c.dx, c.xn, EPS, ATOL, RTOL), 0);
  assert_int_equal(gradcheck("conv W", conv_loss, &c, tempo_params_ptr(&c.p, l->w_idx),
                             tempo_params_grad(&c.p, l->w_idx), (size_t)cout * cin * k * k, EPS, ATOL, RTOL),
                   0);
  if (bias)
    assert_int_equal(gradcheck("conv b", conv_loss, &c, tempo_params_ptr(&c.p, l->b_idx),
                               tempo_params_grad(&c.p, l->b_idx), (size_t)cout, EPS, ATOL, RTOL),
                     0);

  /* accumulate: dx = 0.5 + grad, dW doubles */
  float *dx1 = tempo_alloc_floats(c.xn);
  memcpy(dx1, c.dx, c.xn * sizeof *dx1);
  for (size_t i = 0; i < c.xn; i++) c.dx[i] = 0.5f;
  conv_loss(&c);
  assert_int_equal(tempo_conv2d_backward(&c.l, c.mm, &c.p, c.x, c.batch, c.cols, c.r, c.dcols, c.dx,
                                         TEMPO_CONV_ACCUM_DX),
                   TEMPO_STATUS_OK);
  for (size_t i = 0; i < c.xn; i++) assert_float_equal(c.dx[i], 0.5f + dx1[i], 1e-5);
  /* dx NULL: only the weight gradient */
  assert_int_equal(tempo_conv2d_backward(&c.l, c.mm, &c.p, c.x, c.batch, c.cols, c.r, NULL, NULL, 0),
                   TEMPO_STATUS_OK);
  tempo_free_floats(dx1);
  tempo_free_floats(c.x);
  tempo_free_floats(c.dx);
  tempo_free_floats(c.y);
  tempo_free_floats(c.r);
  tempo_free_floats(c.cols);
  tempo_free_floats(c.dcols);
  tempo_params_free(&c.p);
  tempo_mm_free(c.mm);
}

static void test_conv_gradients(void **state) {
  (void)state;
  check_conv(3, 4, 3, 1, 1, 5, 5, TEMPO_LAYOUT_NHWC, false);
  check_conv(2, 3, 3, 2, 1, 7, 6, TEMPO_LAYOUT_NHWC, true);
  check_conv(3, 2, 3, 2, 0, 7, 7, TEMPO_LAYOUT_NCHW, false);
  check_conv(2, 3, 3, 1, 0, 4, 5, TEMPO_LAYOUT_NCHW, true);
  check_conv(3, 5, 3, 1, 1, 3, 3, TEMPO_LAYOUT_NCHW, false);
  check_conv(4, 3, 1, 1, 0, 5, 5, TEMPO_LAYOUT_NHWC, false); /* direct: no im2col */
  check_conv(3, 5, 1, 2, 0, 5, 5, TEMPO_LAYOUT_NHWC, false); /* strided 1x1 (projection shortcut) */
  check_conv(3, 2, 1, 1, 0, 3, 4, TEMPO_LAYOUT_NCHW, true);
  check_conv(2, 2, 5, 3, 2, 9, 8, TEMPO_LAYOUT_NHWC, true);
}

static void test_conv_bad_geometry(void **state) {
  (void)state;
  tempo_params p;
  tempo_conv2d l;
  tempo_params_init(&p);
  assert_int_equal(tempo_conv2d_declare(&l, &p, "c", 3, 4, 5, 1, 0, false, 3, 3, TEMPO_LAYOUT_NHWC),
                   TEMPO_STATUS_INVALID_ARGUMENT);
  assert_int_equal(tempo_conv2d_declare(&l, &p, "c", 3, 4, 3, 0, 1, false, 8, 8, TEMPO_LAYOUT_NHWC),
                   TEMPO_STATUS_INVALID_ARGUMENT);
  assert_int_equal(tempo_conv2d_declare(&l, &p, "c", 0, 4, 3, 1, 1, false, 8, 8, TEMPO_LAYOUT_NHWC),
                   TEMPO_STATUS_INVALID_ARGUMENT);
  tempo_params_free(&p);
}

/* ------------------------------------------------------------------ batch norm */
#define BN_R 18 /* 2 samples x 3 x 3 pixels */
#define BN_C 3
typedef struct {
  tempo_params p;
  tempo_bn2d bn;
  bool training, relu, use_res;
  float x[BN_R * BN_C], res[BN_R * BN_C], y[BN_R * BN_C], r[BN_R * BN_C];
} bn_ctx;

static double bn_loss(void *vc) {
  bn_ctx *c = vc;
  tempo_bn2d_forward(&c->bn, &c->p, c->training, c->x, BN_R, c->use_res ? c->res : NULL, c->relu, c->y);
  return gradcheck_project(c->y, c->r, BN_R * BN_C);
}

static void bn_setup(bn_ctx *c, uint64_t seed) {
  tempo_params_init(&c->p);
  assert_int_equal(tempo_bn2d_declare(&c->bn, &c->p, "bn", BN_C), TEMPO_STATUS_OK);
  assert_int_equal(tempo_params_finalize(&c->p), TEMPO_STATUS_OK);
  tempo_bn2d_init(&c->bn, &c->p);
  assert_int_equal(tempo_params_find(&c->p, "bn.running_var"), c->bn.var_idx);
  tempo_rng rng;
  tempo_rng_seed(&rng, seed, 3);
  test_randn(c->x, BN_R * BN_C, &rng);
  for (int i = 0; i < BN_R * BN_C; i++) c->x[i] = c->x[i] * (float)(1 + i % BN_C) + 0.5f * (float)(i % BN_C);
  test_randn(c->res, BN_R * BN_C, &rng);
  test_randn(c->r, BN_R * BN_C, &rng);
  float *g = tempo_params_ptr(&c->p, c->bn.w_idx), *b = tempo_params_ptr(&c->p, c->bn.b_idx);
  for (int i = 0; i < BN_C; i++) g[i] = 0.5f + 0.3f * (float)i, b[i] = 0.1f * (float)i - 0.05f;
}

static void bn_gradcheck(bool training, bool relu, bool use_res) {
  bn_ctx c = {.training = training, .relu = relu, .use_res = use_res};
  bn_setup(&c, 11 + training * 2 + relu * 4 + use_res);
  float dy[BN_R * BN_C], dx[BN_R * BN_C];
  bn_loss(&c);
  /* the residual's mask is the caller's: apply it, the result is also the gradient of res */
  for (int i = 0; i < BN_R * BN_C; i++) dy[i] = (relu && use_res) ? (c.y[i] > 0 ? c.r[i] : 0.0f) : c.r[i];
  tempo_params_zero_grad(&c.p);
  tempo_bn2d_backward(&c.bn, &c.p, c.x, BN_R, (relu && !use_res) ? c.y : NULL, dy, dx);
  assert_int_equal(gradcheck("bn x", bn_loss, &c, c.x, dx, BN_R * BN_C, EPS, ATOL, RTOL), 0);
  assert_int_equal(gradcheck("bn gamma", bn_loss, &c, tempo_params_ptr(&c.p, c.bn.w_idx),
                             tempo_params_grad(&c.p, c.bn.w_idx), BN_C, EPS, ATOL, RTOL),
                   0);
  assert_int_equal(gradcheck("bn beta", bn_loss, &c, tempo_params_ptr(&c.p, c.bn.b_idx),
                             tempo_params_grad(&c.p, c.bn.b_idx), BN_C, EPS, ATOL, RTOL),
                   0);
  if (use_res) assert_int_equal(gradcheck("bn res", bn_loss, &c, c.res, dy, BN_R * BN_C, EPS, ATOL, RTOL), 0);
  /* dx may alias dy */
  float d2[BN_R * BN_C];
  memcpy(d2, dy, sizeof d2);
  tempo_bn2d_backward(&c.bn, &c.p, c.x, BN_R, (relu && !use_res) ? c.y : NULL, d2, d2);
  for (int i = 0; i < BN_R * BN_C; i++) assert_float_equal(d2[i], dx[i], 1e-6);
  tempo_bn2d_free(&c.bn);
  tempo_params_free(&c.p);
}

static void test_bn_gradients(void **state) {
  (void)state;
  bn_gradcheck(true, false, false);
  bn_gradcheck(true, true, false);
  bn_gradcheck(true, true, true);
  bn_gradcheck(true, false, true);
  bn_gradcheck(false, false, false);
  bn_gradcheck(false, true, false);
}

static void test_bn_statistics(void **state) {
  (void)state;
  bn_ctx c = {.training = true};
  bn_setup(&c, 5);
  const float *g = tempo_params_ptr(&c.p, c.bn.w_idx), *b = tempo_params_ptr(&c.p, c.bn.b_idx);
  float *rm = tempo_params_ptr(&c.p, c.bn.mean_idx), *rv = tempo_params_ptr(&c.p, c.bn.var_idx);
  bn_loss(&c);
  for (int ch = 0; ch < BN_C; ch++) {
    double m = 0, v = 0;
    for (int r = 0; r < BN_R; r++) m += c.x[r * BN_C + ch];
    m /= BN_R;
    for (int r = 0; r < BN_R; r++) v += (c.x[r * BN_C + ch] - m) * (c.x[r * BN_C + ch] - m);
    /* running: 0.9 * init + 0.1 * batch (unbiased variance) */
    assert_float_equal(rm[ch], 0.1 * m, 1e-6);
    assert_float_equal(rv[ch], 0.9 + 0.1 * v / (BN_R - 1), 1e-5);
    /* normalisation uses the biased variance */
    for (int r = 0; r < BN_R; r++) {
      const double want = g[ch] * (c.x[r * BN_C + ch] - m) / sqrt(v / BN_R + 1e-5) + b[ch];
      assert_float_equal(c.y[r * BN_C + ch], want, 1e-5);
    }
  }
  /* eval: running statistics, batch statistics untouched */
  for (int ch = 0; ch < BN_C; ch++) rm[ch] = 0.25f * (float)ch, rv[ch] = 2.0f + (float)ch;
  tempo_bn2d_forward(&c.bn, &c.p, false, c.x, BN_R, NULL, false, c.y);
  for (int ch = 0; ch < BN_C; ch++) {
    assert_float_equal(rm[ch], 0.25f * (float)ch, 0);
    assert_float_equal(rv[ch], 2.0f + (float)ch, 0);
    for (int r = 0; r < BN_R; r++) {
      const double want = g[ch] * (c.x[r * BN_C + ch] - rm[ch]) / sqrt(rv[ch] + 1e-5) + b[ch];
      assert_float_equal(c.y[r * BN_C + ch], want, 1e-5);
    }
  }
  /* a constant offset of 1e4 changes nothing in training mode (shifted sums stay accurate) */
  float y0[BN_R * BN_C];
  tempo_bn2d_forward(&c.bn, &c.p, true, c.x, BN_R, NULL, false, y0);
  for (int i = 0; i < BN_R * BN_C; i++) c.x[i] += 1e4f;
  tempo_bn2d_forward(&c.bn, &c.p, true, c.x, BN_R, NULL, false, c.y);
  for (int i = 0; i < BN_R * BN_C; i++) assert_float_equal(c.y[i], y0[i], 2e-3);
  tempo_bn2d_free(&c.bn);
  tempo_params_free(&c.p);
}

/* ------------------------------------------------------------------ pooling, residual */
#define PB 2
#define PH 5
#define PW 6
#define PC 3
#define PN (PB * PH * PW * PC)
typedef struct {
  int kind; /* 0 max, 1 avg, 2 gap */
  int k, stride, pad, oh, ow;
  float x[PN], y[PN], r[PN];
  int32_t arg[PN];
} pool_ctx;

static double pool_loss(void *vc) {
  pool_ctx *c = vc;
  size_t n = (size_t)PB * c->oh * c->ow * PC;
  if (c->kind == 0) tempo_maxpool2d_forward(c->x, PB, PH, PW, PC, c->k, c->stride, c->pad, c->y, c->arg);
  if (c->kind == 1) tempo_avgpool2d_forward(c->x, PB, PH, PW, PC, c->k, c->stride, c->pad, c->y);
  if (c->kind == 2) tempo_gap_forward(c->x, PB, PH * PW, PC, c->y), n = PB * PC;
  return gradcheck_project(c->y, c->r, n);
}

static void pool_check(int kind, int k, int stride, int pad) {
  pool_ctx c = {.kind = kind, .k = k, .stride = stride, .pad = pad};
  c.oh = kind == 2 ? 1 : tempo_conv_out_size(PH, k, stride, pad);
  c.ow = kind == 2 ? 1 : tempo_conv_out_size(PW, k, stride, pad);
  tempo_rng rng;
  tempo_rng_seed(&rng, 100 + kind * 10 + k, 1);
  /* distinct values 0.01 apart: no ties, so the max is stable under +-eps */
  uint32_t perm[PN];
  for (uint32_t i = 0; i < PN; i++) perm[i] = i;
  tempo_rng_shuffle_u32(&rng, perm, PN);
  for (int i = 0; i < PN; i++) c.x[i] = 0.01f * (float)perm[i] - 1.0f;
  test_randn(c.r, PN, &rng);
  float dx[PN];
  pool_loss(&c);
  if (kind == 0) {
    tempo_maxpool2d_backward(c.r, c.arg, PB, PH, PW, PC, c.oh, c.ow, dx);
    /* the forward against a direct max */
    for (int b = 0; b < PB; b++)
      for (int i = 0; i < c.oh; i++)
        for (int j = 0; j < c.ow; j++)
          for (int ch = 0; ch < PC; ch++) {
            float m = -1e30f;
            for (int di = 0; di < k; di++)
              for (int dj = 0; dj < k; dj++) {
                const int ih = i * stride - pad + di, iw = j * stride - pad + dj;
                if (ih >= 0 && ih < PH && iw >= 0 && iw < PW) m = fmaxf(m, c.x[((b * PH + ih) * PW + iw) * PC + ch]);
              }
            assert_float_equal(c.y[((b * c.oh + i) * c.ow + j) * PC + ch], m, 0);
          }
  }
  if (kind == 1) tempo_avgpool2d_backward(c.r, PB, PH, PW, PC, k, stride, pad, dx);
  if (kind == 2) tempo_gap_backward(c.r, PB, PH * PW, PC, dx);
  assert_int_equal(gradcheck("pool x", pool_loss, &c, c.x, dx, PN, EPS, ATOL, RTOL), 0);
}

static void test_pool_gradients(void **state) {
  (void)state;
  pool_check(0, 2, 2, 0);
  pool_check(0, 3, 2, 1);
  pool_check(0, 3, 1, 1);
  pool_check(1, 2, 2, 0);
  pool_check(1, 3, 2, 1);
  pool_check(2, 0, 0, 0);
  /* gap forward value */
  float x[2 * 3 * 2] = {1, 2, 3, 4, 5, 6, -1, -2, -3, -4, -5, -6}, y[4];
  tempo_gap_forward(x, 2, 3, 2, y);
  assert_float_equal(y[0], 3.0f, 1e-6);
  assert_float_equal(y[1], 4.0f, 1e-6);
  assert_float_equal(y[2], -3.0f, 1e-6);
  assert_float_equal(y[3], -4.0f, 1e-6);
}

static void test_residual_add(void **state) {
  (void)state;
  float a[4] = {1, -2, 3, -4}, b[4] = {0.5f, 1, -4, 5}, y[4];
  tempo_residual_add(a, b, y, 4, false);
  assert_float_equal(y[2], -1.0f, 0);
  tempo_residual_add(a, b, a, 4, true);
  assert_float_equal(a[0], 1.5f, 0);
  assert_float_equal(a[1], 0.0f, 0);
  assert_float_equal(a[2], 0.0f, 0);
  assert_float_equal(a[3], 1.0f, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_conv_gradients), cmocka_unit_test(test_conv_bad_geometry),
      cmocka_unit_test(test_bn_gradients),   cmocka_unit_test(test_bn_statistics),
      cmocka_unit_test(test_pool_gradients), cmocka_unit_test(test_residual_add),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
