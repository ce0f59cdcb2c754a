/* test_gather.c - X given by rows (rows.h, issue 12 item 3): the Enc pass that gathers each
 * im2col row from the activation (tempo_obf_enc_x_rows, _check_rows) writes the very floats,
 * and forms the very check dots, that the pass on the materialised column matrix does, bit
 * for bit: channel-major (NCHW stem, 1x1) and tap-major layouts, strides 1 and 2, padding,
 * every kernel, 1 and 4 threads, identity, tempo and mixed keys (b = 4 tiles and portable
 * loops). Through the engine: a conv's forward and backward offloaded from rows give the same
 * Y, dW and dx as the product on the materialised columns under the same key seed, in plain
 * and tempo mode, policies none and spatial, with and without the checks fused into the X'
 * pass (1, 0 and 3 check rounds); the master's byte count drops by exactly the
 * column matrix's read less the activation's; a non-finite input is found through the
 * source; tempo_mm_forward_rows refuses products the master computes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "obf/obf_internal.h"
#include "offload/transport.h"
#include "tempo/cnn.h"
#include "tempo/common.h"
#include "tempo/obf.h"
#include "test_util.h"

typedef struct {
  int cin, k, stride, pad, h, w, batch;
  tempo_layout layout;
} geom;

static const geom GEOMS[] = {
    {3, 3, 1, 1, 9, 7, 3, TEMPO_LAYOUT_NCHW},   /* the stem: channel-major columns */
    {16, 3, 1, 1, 8, 8, 4, TEMPO_LAYOUT_NHWC},  /* tap-major, Ci % 16 == 0 (im2col's vector path) */
    {5, 3, 2, 1, 9, 9, 3, TEMPO_LAYOUT_NHWC},   /* tap-major, stride 2, odd sizes */
    {8, 1, 2, 0, 7, 6, 2, TEMPO_LAYOUT_NHWC},   /* 1x1 stride 2: channel-major, no padding */
    {7, 5, 2, 2, 11, 10, 2, TEMPO_LAYOUT_NHWC}, /* 5x5, pad 2 */
    {4, 3, 2, 0, 8, 8, 2, TEMPO_LAYOUT_NCHW},   /* NCHW, stride 2, no padding */
};

static tempo_keygen *keygen(void) {
  uint8_t secret[32] = {11};
  tempo_keyspace ks;
  tempo_keyspace_default(&ks);
  tempo_keygen *g;
  assert_int_equal(tempo_keygen_create(secret, &ks, &g), TEMPO_STATUS_OK);
  return g;
}

/* A declared layer of geometry g with cout output channels (parameters in *p). */
static void layer(const geom *g, int cout, tempo_params *p, tempo_conv2d *l) {
  tempo_params_init(p);
  assert_int_equal(tempo_conv2d_declare(l, p, "c", g->cin, cout, g->k, g->stride, g->pad, false, g->h, g->w, g->layout),
                   TEMPO_STATUS_OK);
  assert_int_equal(tempo_params_finalize(p), TEMPO_STATUS_OK);
}

/* X' (and, with dots, the check dots) from the materialised columns and from the rows, bit
 * for bit, for key k of shape (m, n, p). */
static void compare_enc(const tempo_obf_key *k, const float *cols, const tempo_rows *xr, bool dots, tempo_rng *r) {
  const int m = k->m, n = k->n, nd = 2;
  float *a = tempo_alloc_floats((size_t)m * n), *b = tempo_alloc_floats((size_t)m * n);
  assert_non_null(a);
  assert_non_null(b);
  memset(a, 0x5a, (size_t)m * n * sizeof *a); /* different garbage: every float must be written */
  memset(b, 0xa5, (size_t)m * n * sizeof *b);
  if (!dots) {
    tempo_obf_enc_x(k, cols, a);
    tempo_obf_enc_x_rows(k, xr, b);
    assert_memory_equal(a, b, (size_t)m * n * sizeof *a);
  } else {
    double *w = malloc(sizeof(double) * 2 * nd * n), *y = malloc(sizeof(double) * 4 * nd * m);
    double *u = malloc(sizeof(double) * 2 * nd * n);
    assert_non_null(w);
    assert_non_null(y);
    assert_non_null(u);
    const double *wq[2], *wbq[2];
    double *ya[2], *yba[2], *yb[2], *ybb[2];
    for (int q = 0; q < nd; q++) {
      double *wr = w + (size_t)2 * q * n;
      for (int j = 0; j < 2 * n; j++) wr[j] = j < n ? tempo_rng_normal(r) : fabs(tempo_rng_normal(r));
      wq[q] = wr, wbq[q] = wr + n;
      ya[q] = y + (size_t)(4 * q) * m, yba[q] = ya[q] + m, yb[q] = yba[q] + m, ybb[q] = yb[q] + m;
    }
    tempo_obf_enc_x_check(k, cols, a, nd, wq, wbq, ya, yba, u);
    tempo_obf_enc_x_check_rows(k, xr, b, nd, wq, wbq, yb, ybb, u);
    assert_memory_equal(a, b, (size_t)m * n * sizeof *a);
    for (int q = 0; q < nd; q++) {
      assert_memory_equal(ya[q], yb[q], (size_t)m * sizeof(double));
      assert_memory_equal(yba[q], ybb[q], (size_t)m * sizeof(double));
    }
    free(w), free(y), free(u);
  }
  tempo_free_floats(a);
  tempo_free_floats(b);
}

static const int KERNELS[] = {TEMPO_OBF_KERNEL_AUTO, TEMPO_OBF_KERNEL_NAIVE, TEMPO_OBF_KERNEL_SCATTER_SCALAR,
                              TEMPO_OBF_KERNEL_SCATTER, TEMPO_OBF_KERNEL_SCATTER_NT, TEMPO_OBF_KERNEL_PERMUTE};

/* One geometry: the source's rows equal tempo_im2col's, and every pass agrees. */
static void gather_case(tempo_keygen *g, const geom *ge, int threads) {
  tempo_params p;
  tempo_conv2d l;
  layer(ge, 6, &p, &l);
  tempo_rng r;
  tempo_rng_seed(&r, (uint64_t)(ge->cin * 100 + ge->k * 10 + ge->stride), 3);
  const size_t xn = (size_t)ge->batch * ge->h * ge->w * ge->cin;
  const int m = ge->batch * l.out_h * l.out_w, n = ge->cin * ge->k * ge->k;
  float *x = tempo_alloc_floats(xn), *cols = tempo_alloc_floats((size_t)m * n), *rows = tempo_alloc_floats((size_t)m * n);
  assert_non_null(x);
  assert_non_null(cols);
  assert_non_null(rows);
  test_randn(x, xn, &r);
  for (size_t i = 0; i < xn; i += 7) x[i] = 0.0f; /* exact zeros, as after a ReLU */
  tempo_im2col(&l, x, ge->batch, cols);
  tempo_conv2d_src src;
  const tempo_rows xr = tempo_conv2d_rows(&l, x, ge->batch, &src);
  assert_int_equal(xr.rows, m);
  assert_int_equal(xr.cols, n);
  assert_true(xr.bytes == sizeof(float) * xn);
  xr.fill(xr.ctx, 0, m, rows);
  assert_memory_equal(cols, rows, (size_t)m * n * sizeof *cols);
  for (int lo = 0; lo < m; lo += 5) { /* any range, any order */
    const int hi = lo + 3 < m ? lo + 3 : m;
    xr.fill(xr.ctx, lo, hi, rows);
    assert_memory_equal(cols + (size_t)lo * n, rows, (size_t)(hi - lo) * n * sizeof *cols);
  }
  tempo_obf_set_threads(threads);
  tempo_obf_key k = {0};
  assert_int_equal(tempo_obf_key_alloc(&k, m, n, 6), TEMPO_STATUS_OK);
  for (int kind = 0; kind < 3; kind++) { /* identity (plain), tempo, tempo with mixing blocks */
    if (kind > 0) assert_int_equal(tempo_keygen_fill(g, &k), TEMPO_STATUS_OK);
    if (kind == 2) assert_int_equal(tempo_keygen_fill_mix(g, &k, 4), TEMPO_STATUS_OK);
    for (size_t kk = 0; kk < sizeof KERNELS / sizeof KERNELS[0]; kk++) {
      tempo_obf_set_kernel(KERNELS[kk]);
      for (int sc = 0; sc < (kind == 2 ? 2 : 1); sc++) {
        tempo_obf_mix_force_scalar(sc == 1);
        compare_enc(&k, cols, &xr, false, &r);
        compare_enc(&k, cols, &xr, true, &r);
      }
    }
    tempo_obf_mix_force_scalar(false);
    tempo_obf_set_kernel(TEMPO_OBF_KERNEL_AUTO);
  }
  tempo_obf_key_free(&k);
  tempo_obf_set_threads(1);
  tempo_free_floats(x), tempo_free_floats(cols), tempo_free_floats(rows);
  tempo_params_free(&p);
}

static void test_gather_small(void **state) {
  (void)state;
  tempo_keygen *g = keygen();
  for (size_t i = 0; i < sizeof GEOMS / sizeof GEOMS[0]; i++) gather_case(g, &GEOMS[i], 1);
  tempo_keygen_free(g);
}

/* Large enough that the passes split over 4 threads (>= 2 x 256k elements) and take their
 * non-temporal stores (>= 8 MiB out): 8 x 32 x 32 pixels, 144 columns; and the stem. */
static void test_gather_threads(void **state) {
  (void)state;
  tempo_keygen *g = keygen();
  const geom big[] = {{16, 3, 1, 1, 32, 32, 16, TEMPO_LAYOUT_NHWC}, {3, 3, 1, 1, 32, 32, 8, TEMPO_LAYOUT_NCHW},
                      {32, 3, 2, 1, 16, 16, 16, TEMPO_LAYOUT_NHWC}};
  for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) gather_case(g, &big[i], 4);
  tempo_keygen_free(g);
}

/* ---- through the engine ---- */

static int verify_rounds = 1; /* of the engines made next */

static tempo_mm *engine(tempo_mode mode, tempo_protect protect, int threads) {
  tempo_mm_config cfg;
  tempo_mm_config_default(&cfg);
  cfg.verify_rounds = verify_rounds;
  cfg.mode = mode;
  cfg.seed = 77;
  cfg.protect = protect;
  cfg.threads = threads;
  tempo_mm *mm;
  assert_int_equal(tempo_mm_create(&cfg, &mm), TEMPO_STATUS_OK);
  tempo_mm_set_training(mm, true);
  return mm;
}

/* wt[o][t][c] = W[o][c][t]: the weight in the tap-major columns' order (conv.c). */
static void tap_weight(const tempo_conv2d *l, const float *W, bool tap, float *wt) {
  const int kk = l->kh * l->kw, cin = l->cin;
  for (int o = 0; o < l->cout; o++)
    for (int c = 0; c < cin; c++)
      for (int t = 0; t < kk; t++)
        wt[tap ? ((size_t)o * kk + t) * cin + c : ((size_t)o * cin + c) * kk + t] = W[((size_t)o * cin + c) * kk + t];
}

/* A conv's step offloaded from rows (tempo_conv2d_forward/backward) against the same products
 * on the materialised columns (tempo_mm_forward/backward, tempo_col2im) in an engine with the
 * same seed: Y, dW and dx bit for bit, and the master's bytes. */
static void engine_case(const geom *ge, tempo_mode mode, tempo_protect protect, int threads) {
  const int cout = 16;
  tempo_params p;
  tempo_conv2d l;
  layer(ge, cout, &p, &l);
  tempo_rng r;
  tempo_rng_seed(&r, 5, 1);
  test_randn(tempo_params_ptr(&p, l.w_idx), (size_t)cout * ge->cin * ge->k * ge->k, &r);
  const size_t xn = (size_t)ge->batch * ge->h * ge->w * ge->cin;
  const int m = ge->batch * l.out_h * l.out_w, n = ge->cin * ge->k * ge->k;
  const size_t cf = tempo_conv2d_cols_floats(&l, ge->batch), yn = (size_t)m * cout;
  float *x = tempo_alloc_floats(xn), *cols = tempo_alloc_floats(cf), *dcols = tempo_alloc_floats(cf);
  float *y1 = tempo_alloc_floats(yn), *y2 = tempo_alloc_floats(yn), *dy = tempo_alloc_floats(yn);
  float *dx1 = tempo_alloc_floats(xn), *dx2 = tempo_alloc_floats(xn), *c2 = tempo_alloc_floats((size_t)m * n);
  float *dc2 = tempo_alloc_floats((size_t)m * n), *wt = tempo_alloc_floats((size_t)cout * n);
  float *dw1 = tempo_alloc_floats((size_t)cout * n), *dw2 = tempo_alloc_floats((size_t)cout * n);
  assert_true(x && cols && dcols && y1 && y2 && dy && dx1 && dx2 && c2 && dc2 && wt && dw1 && dw2);
  test_randn(x, xn, &r);
  test_randn(dy, yn, &r);
  const bool tap = ge->layout == TEMPO_LAYOUT_NHWC && ge->k > 1;
  tap_weight(&l, tempo_params_ptr(&p, l.w_idx), tap, wt);
  tempo_mm *a = engine(mode, protect, threads), *b = engine(mode, protect, threads);
  tempo_mm_shape s = {.batch = 1, .m = m, .n = n, .p = cout, .w_trans = true};
  assert_true(tempo_mm_takes_rows(a, &l.site, &s));
  tempo_mm_site site2 = {.kind = l.site.kind};
  tempo_mm_stats st1, st2;
  tempo_mm_stats_step(a, &st1), tempo_mm_stats_step(b, &st2);
  assert_int_equal(tempo_conv2d_forward(&l, a, &p, x, ge->batch, cols, y1), TEMPO_STATUS_OK);
  tempo_im2col(&l, x, ge->batch, c2);
  assert_int_equal(tempo_mm_forward(b, &site2, &s, c2, wt, y2), TEMPO_STATUS_OK);
  assert_memory_equal(y1, y2, yn * sizeof *y1);
  tempo_mm_stats_step(a, &st1), tempo_mm_stats_step(b, &st2);
  /* the rows' Enc pass reads the activation instead of reading the columns */
  assert_true(st2.master_bytes - st1.master_bytes == sizeof(float) * (uint64_t)m * n - sizeof(float) * xn);
  memset(tempo_params_grad(&p, l.w_idx), 0, sizeof(float) * (size_t)cout * n);
  assert_int_equal(tempo_conv2d_backward(&l, a, &p, x, ge->batch, cols, dy, dcols, dx1, 0), TEMPO_STATUS_OK);
  memcpy(dw1, tempo_params_grad(&p, l.w_idx), sizeof(float) * (size_t)cout * n);
  assert_int_equal(tempo_mm_backward(b, &site2, &s, c2, wt, dy, dc2, dw2, 0), TEMPO_STATUS_OK);
  tempo_col2im(&l, dc2, ge->batch, dx2, false);
  if (tap && mode == TEMPO_MODE_TEMPO && verify_rounds >= 1) {
    /* dX went onto dx by rows (a row sink, rows.h) in the key's row order: the same terms as
     * col2im's, summed in another order, so each element within the two orders' rounding
     * 2 (k^2 - 1) 2^-24 of the sum of its terms' magnitudes (col2im of |dX|) */
    float *ab = tempo_alloc_floats((size_t)m * n), *sa = tempo_alloc_floats(xn);
    assert_true(ab && sa);
    for (size_t i = 0; i < (size_t)m * n; i++) ab[i] = fabsf(dc2[i]);
    tempo_col2im(&l, ab, ge->batch, sa, false);
    const double kk = (double)ge->k * ge->k;
    size_t differ = 0;
    for (size_t i = 0; i < xn; i++) {
      if (dx1[i] != dx2[i]) differ++;
      if (!(fabs((double)dx1[i] - dx2[i]) <= 2 * (kk - 1) * 0x1p-24 * 1.0001 * sa[i]))
        fail_msg("dx[%zu] by rows %.9g, by columns %.9g (terms' magnitude %.3g)", i, dx1[i], dx2[i], sa[i]);
    }
    if (ge->batch * l.out_h * l.out_w >= 1024 && differ == 0) fail_msg("dx by rows equals col2im's bit for bit: no row sink?");
    tempo_free_floats(ab), tempo_free_floats(sa);
  } else {
    assert_memory_equal(dx1, dx2, xn * sizeof *dx1); /* plain keys' rows come in col2im's order */
  }
  if (tap) { /* the layer adds its tap-major gradient back in the weight's layout */
    float *g = tempo_alloc_floats((size_t)cout * n);
    assert_non_null(g);
    memset(g, 0, sizeof(float) * (size_t)cout * n);
    const int kk = l.kh * l.kw, cin = l.cin;
    for (int o = 0; o < cout; o++)
      for (int c = 0; c < cin; c++)
        for (int t = 0; t < kk; t++) g[((size_t)o * cin + c) * kk + t] += dw2[((size_t)o * kk + t) * cin + c];
    memcpy(dw2, g, sizeof(float) * (size_t)cout * n);
    tempo_free_floats(g);
  }
  assert_memory_equal(dw1, dw2, sizeof(float) * (size_t)cout * n);
  tempo_mm_step_end(a), tempo_mm_step_end(b);
  tempo_mm_free(a), tempo_mm_free(b);
  float *bufs[] = {x, cols, dcols, y1, y2, dy, dx1, dx2, c2, dc2, wt, dw1, dw2};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) tempo_free_floats(bufs[i]);
  tempo_params_free(&p);
}

static void test_engine_rows(void **state) {
  (void)state;
  const geom gs[] = {{16, 3, 1, 1, 8, 8, 4, TEMPO_LAYOUT_NHWC}, {5, 3, 2, 1, 9, 9, 3, TEMPO_LAYOUT_NHWC},
                     {8, 1, 2, 0, 7, 6, 2, TEMPO_LAYOUT_NHWC}, {3, 3, 1, 1, 9, 7, 3, TEMPO_LAYOUT_NCHW},
                     {16, 3, 1, 1, 32, 32, 8, TEMPO_LAYOUT_NHWC}};
  const tempo_protect pol[] = {TEMPO_PROTECT_NONE, TEMPO_PROTECT_SPATIAL};
  for (size_t i = 0; i < sizeof gs / sizeof gs[0]; i++)
    for (int mode = 0; mode < 2; mode++)
      for (int q = 0; q < 2; q++) engine_case(&gs[i], mode ? TEMPO_MODE_TEMPO : TEMPO_MODE_PLAIN, pol[q], i == 4 ? 2 : 1);
  /* no fused checks (none, or too many rounds for the X' pass's dots): X' from rows all the same */
  for (int rounds = 0; rounds <= 3; rounds += 3) {
    verify_rounds = rounds;
    for (int q = 0; q < 2; q++) engine_case(&gs[0], TEMPO_MODE_TEMPO, pol[q], 1);
  }
  verify_rounds = 1;
}

/* ---- dX by rows: a failed block resumes where its added rows end ---- */

/* Worker 1's first dX' reply of a backward gets one element of its last row off by 1e-2 of
 * that row's largest magnitude: the block's chunks before the last passed and were added to
 * dx, the last fails, the honest worker recomputes the block and only its rows from the
 * failed chunk on are added. */
typedef struct {
  int cheats;
} late_cheat;

static tempo_status late_result(void *ctx, tempo_msg_header *rh, void *pay, size_t count, bool *send_reply) {
  (void)count, (void)send_reply;
  late_cheat *lc = ctx;
  if (lc->cheats || !(rh->flags & TEMPO_MSG_F_WANT_DX) || rh->batch != 1) return TEMPO_STATUS_OK;
  const size_t rows = rh->hi - rh->lo, n = rh->n;
  float *row = (float *)pay + (rows - 1) * n, mx = 0;
  for (size_t j = 0; j < n; j++) mx = fmaxf(mx, fabsf(row[j]));
  row[n / 2] += row[n / 2] < 0 ? -1e-2f * mx : 1e-2f * mx;
  lc->cheats++;
  return TEMPO_STATUS_OK;
}

static void late_destroy(void *ctx) { (void)ctx; }

static late_cheat late;

static tempo_status late_transport(void *ctx, int requested, tempo_transport **out) {
  (void)ctx;
  tempo_status st = tempo_transport_inproc_create(requested, out);
  const tempo_worker_hooks h = {.ctx = &late, .result = late_result, .destroy = late_destroy};
  if (!st) tempo_transport_inproc_set_hooks(*out, 1, &h);
  return st;
}

static void test_rows_resume(void **state) {
  (void)state;
  const geom ge = {16, 3, 1, 1, 32, 32, 8, TEMPO_LAYOUT_NHWC}; /* 8192 rows: blocks of several chunks */
  const int cout = 16;
  float *dx[2] = {NULL, NULL};
  tempo_mm_stats st[2];
  size_t xn = 0;
  for (int rogue = 0; rogue < 2; rogue++) {
    tempo_params p;
    tempo_conv2d l;
    layer(&ge, cout, &p, &l);
    tempo_rng r;
    tempo_rng_seed(&r, 5, 1);
    const int n = ge.cin * ge.k * ge.k;
    test_randn(tempo_params_ptr(&p, l.w_idx), (size_t)cout * n, &r);
    xn = (size_t)ge.batch * ge.h * ge.w * ge.cin;
    const int m = ge.batch * l.out_h * l.out_w;
    const size_t cf = tempo_conv2d_cols_floats(&l, ge.batch);
    float *x = tempo_alloc_floats(xn), *cols = tempo_alloc_floats(cf), *dcols = tempo_alloc_floats(cf);
    float *y = tempo_alloc_floats((size_t)m * cout), *dy = tempo_alloc_floats((size_t)m * cout);
    dx[rogue] = tempo_alloc_floats(xn);
    assert_true(x && cols && dcols && y && dy && dx[rogue]);
    test_randn(x, xn, &r);
    test_randn(dy, (size_t)m * cout, &r);
    tempo_mm_config cfg;
    tempo_mm_config_default(&cfg);
    cfg.mode = TEMPO_MODE_TEMPO, cfg.seed = 77, cfg.protect = TEMPO_PROTECT_NONE;
    if (rogue) cfg.transport = late_transport;
    late.cheats = 0;
    tempo_mm *mm;
    assert_int_equal(tempo_mm_create(&cfg, &mm), TEMPO_STATUS_OK);
    tempo_mm_set_training(mm, true);
    assert_int_equal(tempo_conv2d_forward(&l, mm, &p, x, ge.batch, cols, y), TEMPO_STATUS_OK);
    assert_int_equal(tempo_conv2d_backward(&l, mm, &p, x, ge.batch, cols, dy, dcols, dx[rogue], 0), TEMPO_STATUS_OK);
    tempo_mm_stats_run(mm, &st[rogue]);
    if (rogue) assert_int_equal(late.cheats, 1);
    tempo_mm_step_end(mm);
    tempo_mm_free(mm);
    float *bufs[] = {x, cols, dcols, y, dy};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) tempo_free_floats(bufs[i]);
    tempo_params_free(&p);
  }
  assert_int_equal((int)st[0].verify_failures, 0);
  assert_int_equal((int)st[1].verify_failures, 1); /* the late chunk, once */
  assert_true(st[1].recomputed >= 1);
  /* the rows added from the cheat's reply are the honest worker's floats, added in the same
   * (block, then key row) order: dx bit for bit the honest run's */
  assert_memory_equal(dx[0], dx[1], xn * sizeof(float));
  tempo_free_floats(dx[0]), tempo_free_floats(dx[1]);
}

/* A NaN in the activation: the check of the blinded product fails and the master, scanning X
 * through its source, names the input, not a worker. */
static void test_rows_nonfinite(void **state) {
  (void)state;
  const geom ge = {16, 3, 1, 1, 8, 8, 2, TEMPO_LAYOUT_NHWC};
  tempo_params p;
  tempo_conv2d l;
  layer(&ge, 16, &p, &l);
  tempo_rng r;
  tempo_rng_seed(&r, 9, 1);
  test_randn(tempo_params_ptr(&p, l.w_idx), (size_t)16 * 144, &r);
  const size_t xn = (size_t)2 * 8 * 8 * 16;
  float *x = tempo_alloc_floats(xn), *cols = tempo_alloc_floats(tempo_conv2d_cols_floats(&l, 2));
  float *y = tempo_alloc_floats((size_t)2 * 64 * 16);
  assert_true(x && cols && y);
  test_randn(x, xn, &r);
  x[(size_t)(1 * 64 + 3 * 8 + 4) * 16 + 5] = NAN; /* sample 1, pixel (3, 4), channel 5 */
  tempo_conv2d_src src;
  const tempo_rows xr = tempo_conv2d_rows(&l, x, 2, &src);
  float v = 0;
  const long at = tempo_rows_find_nonfinite(&xr, &v);
  /* the first row holding it: pixel (2, 3) of sample 1 sees it at tap (2, 2) */
  assert_int_equal(at, (long)(64 + 2 * 8 + 3) * 144 + (2 * 3 + 2) * 16 + 5);
  assert_true(isnan(v));
  tempo_mm *mm = engine(TEMPO_MODE_TEMPO, TEMPO_PROTECT_NONE, 1);
  assert_int_equal(tempo_conv2d_forward(&l, mm, &p, x, 2, cols, y), TEMPO_STATUS_NUMERIC);
  assert_non_null(strstr(tempo_errmsg(), "X (the layer's input)"));
  tempo_mm_free(mm);
  tempo_free_floats(x), tempo_free_floats(cols), tempo_free_floats(y);
  tempo_params_free(&p);
}

/* Products the master computes (local mode, the policy's master route, shield's scheme) or
 * rows too wide take no row source. */
static void test_rows_refused(void **state) {
  (void)state;
  const geom ge = {3, 3, 1, 1, 6, 6, 1, TEMPO_LAYOUT_NCHW};
  tempo_params p;
  tempo_conv2d l;
  layer(&ge, 4, &p, &l);
  tempo_conv2d_src src;
  float x[108] = {0}, w[108] = {0}, y[144];
  const tempo_rows xr = tempo_conv2d_rows(&l, x, 1, &src);
  tempo_mm_shape s = {.batch = 1, .m = 36, .n = 27, .p = 4, .w_trans = true};
  tempo_mm *loc = engine(TEMPO_MODE_LOCAL, TEMPO_PROTECT_DEFAULT, 1);
  assert_false(tempo_mm_takes_rows(loc, &l.site, &s));
  assert_int_equal(tempo_mm_forward_rows(loc, &l.site, &s, &xr, w, y), TEMPO_STATUS_INVALID_ARGUMENT);
  tempo_mm *t = engine(TEMPO_MODE_TEMPO, TEMPO_PROTECT_SPATIAL, 1);
  tempo_mm_site raw = {.kind = TEMPO_SITE_RAW_INPUT};
  assert_false(tempo_mm_takes_rows(t, &raw, &s)); /* the stem stays on the master */
  assert_true(tempo_mm_takes_rows(t, &l.site, &s));
  tempo_mm_shape wide = s, two = s, other = s;
  wide.n = TEMPO_ROWS_MAX_COLS + 1, two.batch = 2, other.m = 35;
  assert_false(tempo_mm_takes_rows(t, &l.site, &wide));
  assert_false(tempo_mm_takes_rows(t, &l.site, &two));
  assert_int_equal(tempo_mm_forward_rows(t, &l.site, &other, &xr, w, y), TEMPO_STATUS_INVALID_ARGUMENT);
  assert_int_equal(tempo_mm_forward_rows(t, &l.site, &s, NULL, w, y), TEMPO_STATUS_INVALID_ARGUMENT);
  tempo_mm_free(t);
  tempo_mm_free(loc);
  tempo_mm_config cfg;
  tempo_mm_config_default(&cfg);
  cfg.mode = TEMPO_MODE_SHIELD;
  cfg.workers = 4;
  tempo_mm *sh;
  assert_int_equal(tempo_mm_create(&cfg, &sh), TEMPO_STATUS_OK);
  assert_false(tempo_mm_takes_rows(sh, &l.site, &s));
  tempo_mm_free(sh);
  tempo_params_free(&p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_gather_small), cmocka_unit_test(test_gather_threads), cmocka_unit_test(test_engine_rows),
      cmocka_unit_test(test_rows_resume),
      cmocka_unit_test(test_rows_nonfinite), cmocka_unit_test(test_rows_refused)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
