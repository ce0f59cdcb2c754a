/* test_npy.c - NumPy .npy datasets (src/data/npy.c), on files this test writes itself:
 * exact round trips (uint8 and float32 images, NCHW, NHWC, 3-D and 2-D arrays, int64, int32
 * and uint8 labels, format versions 1.0, 2.0 and 3.0) with the image array memory-mapped, not
 * copied; the normalisation statistics against an independent double computation and given
 * ones; the test split's classes and shape checks; a corpus of malformed files, each with its
 * status and message asserted, plus random mutations of a valid file (no crash, run it under
 * SANITIZE=address,undefined); sealed arrays (decrypted into one buffer, wrong key, a file
 * renamed into another role, a sealed file read without the key); and a training run on an
 * npy dataset of 3x12x12 images and 7 classes, its checkpoint evaluated again. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tempo/data.h"
#include "tempo/rng.h"
#include "tempo/seal.h"
#include "tempo/train.h"
#include "test_util.h"
#include "train/run_data.h"

TEST_TMPDIR_GROUP("npy")

/* ---- writing .npy files ------------------------------------------------------------------ */

/* The header np.save writes for (descr, fortran, shape), padded with spaces and '\n' so that
 * the data starts at a multiple of 64, in format version `major`.0. Returns its bytes. */
static size_t npy_header(uint8_t *out, int major, const char *dict_body) {
  const size_t pre = major == 1 ? 10 : 12;
  char dict[1024];
  int dl = snprintf(dict, sizeof dict, "%s", dict_body);
  size_t total = pre + (size_t)dl + 1;
  total = (total + 63) / 64 * 64;
  const size_t hlen = total - pre;
  memcpy(out, "\x93NUMPY", 6);
  out[6] = (uint8_t)major, out[7] = 0;
  if (major == 1) {
    out[8] = (uint8_t)hlen, out[9] = (uint8_t)(hlen >> 8);
  } else {
    for (int i = 0; i < 4; i++) out[8 + i] = (uint8_t)(hlen >> (8 * i));
  }
  memcpy(out + pre, dict, (size_t)dl);
  memset(out + pre + dl, ' ', hlen - (size_t)dl - 1);
  out[total - 1] = '\n';
  return total;
}

static void write_bytes(const char *path, const void *a, size_t na, const void *b, size_t nb) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  if (na) assert_int_equal(fwrite(a, 1, na, f), na);
  if (nb) assert_int_equal(fwrite(b, 1, nb, f), nb);
  assert_int_equal(fclose(f), 0);
}

static void shape_text(char *out, size_t cap, const long *shape, int ndim) {
  size_t n = (size_t)snprintf(out, cap, "(");
  for (int i = 0; i < ndim; i++) n += (size_t)snprintf(out + n, cap - n, "%s%ld", i ? ", " : "", shape[i]);
  snprintf(out + n, cap - n, "%s)", ndim == 1 ? "," : "");
}

/* Writes tmpdir/name as np.save(name, array) would. */
static void write_npy(const char *name, int major, const char *descr, const long *shape, int ndim, const void *data,
                      size_t bytes, char *path_out) {
  char sh[256], dict[512], path[256];
  shape_text(sh, sizeof sh, shape, ndim);
  snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr, sh);
  uint8_t hdr[1200];
  size_t h = npy_header(hdr, major, dict);
  snprintf(path, sizeof path, "%s/%s", tmpdir, name);
  write_bytes(path, hdr, h, data, bytes);
  if (path_out) strcpy(path_out, path);
}

/* tmpdir/name in a ring of 64 buffers (configs keep several alive at once). */
static char *tpath(const char *name) {
  static char buf[64][256];
  static int k;
  k = (k + 1) % 64;
  snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
  return buf[k];
}

/* A learnable dataset: class k lights up a class-dependent pattern, plus uniform noise. u8,
 * (n, c, h, w); labels int64. */
static void make_patterns(uint8_t *x, int64_t *y, int n, int c, int h, int w, int classes, uint64_t seed) {
  tempo_rng r;
  tempo_rng_seed(&r, seed, 7);
  for (int i = 0; i < n; i++) {
    const int k = (int)tempo_rng_below(&r, (uint64_t)classes);
    y[i] = k;
    for (int ch = 0; ch < c; ch++)
      for (int yy = 0; yy < h; yy++)
        for (int xx = 0; xx < w; xx++) {
          const bool on = ((yy * 3 + xx * (k + 1) + ch * k) % classes) == k % classes;
          const int v = (on ? 170 : 40) + (int)tempo_rng_below(&r, 60);
          x[(((size_t)i * c + ch) * h + yy) * w + xx] = (uint8_t)v;
        }
  }
}

static void expect_split(const char *x, const char *y, tempo_npy_layout layout, const tempo_owner_key *key,
                         tempo_status want, const char *msg) {
  tempo_dataset d;
  tempo_status st = tempo_npy_load_split(x, y, layout, 0, key, &d);
  if (st != want) fail_msg("%s: status %d (%s), expected %d", x, st, tempo_errmsg(), want);
  if (msg && !strstr(tempo_errmsg(), msg)) fail_msg("%s: '%s' not in '%s'", x, msg, tempo_errmsg());
  if (st == TEMPO_STATUS_OK) {
    tempo_dataset_free(&d);
  } else {
    assert_null(d.images);
    assert_null(d.labels);
  }
}

/* ---- round trips ------------------------------------------------------------------------- */

static void test_u8_nchw_mapped(void **state) {
  (void)state;
  enum { N = 9, C = 3, H = 5, W = 4 };
  static uint8_t x[N * C * H * W];
  static int64_t y[N];
  for (size_t i = 0; i < sizeof x; i++) x[i] = (uint8_t)(i * 37 + 11);
  for (int i = 0; i < N; i++) y[i] = (i * 5) % 7;
  char px[256], py[256];
  const long sx[4] = {N, C, H, W}, sy[1] = {N};
  write_npy("a_x.npy", 1, "|u1", sx, 4, x, sizeof x, px);
  write_npy("a_y.npy", 1, "<i8", sy, 1, y, sizeof y, py);
  tempo_dataset d;
  assert_int_equal(tempo_npy_load_split(px, py, TEMPO_NPY_LAYOUT_NCHW, 0, NULL, &d), TEMPO_STATUS_OK);
  assert_int_equal(d.kind, TEMPO_DATASET_NPY);
  assert_int_equal(d.n, N), assert_int_equal(d.c, C), assert_int_equal(d.h, H), assert_int_equal(d.w, W);
  assert_int_equal(d.num_classes, 7); /* largest label 6 */
  assert_int_equal(d.pixel_type, TEMPO_PIXELS_U8);
  assert_false(d.nhwc);
  /* mapped, not copied: the images are the file's bytes after its 128-byte header */
  assert_true(d.store_mapped);
  assert_ptr_equal(d.images, (uint8_t *)d.store + 128);
  assert_int_equal(d.store_len, 128 + sizeof x);
  assert_memory_equal(d.images, x, sizeof x);
  for (int i = 0; i < N; i++) assert_int_equal(tempo_dataset_label(&d, (size_t)i), y[i]);
  tempo_dataset_free(&d);
  assert_null(d.store);
}

/* The same images stored NHWC, as 3-D and as 2-D arrays, with int32/uint8 labels and format
 * versions 2.0 and 3.0, give exactly the batches of the NCHW original. */
static void test_layouts_and_versions(void **state) {
  (void)state;
  enum { N = 6, C = 3, H = 4, W = 5 };
  static uint8_t nchw[N * C * H * W], nhwc[N * H * W * C];
  int32_t y32[N];
  uint8_t y8[N];
  for (int i = 0; i < N; i++) {
    y32[i] = i % 3, y8[i] = (uint8_t)(i % 3);
    for (int c = 0; c < C; c++)
      for (int p = 0; p < H * W; p++) {
        const uint8_t v = (uint8_t)((i * 91 + c * 29 + p * 7) & 255);
        nchw[(i * C + c) * H * W + p] = v;
        nhwc[(i * H * W + p) * C + c] = v;
      }
  }
  const long s4[4] = {N, C, H, W}, s4h[4] = {N, H, W, C}, sy[1] = {N};
  char a[256], b[256], ya[256], yb[256];
  write_npy("l_nchw.npy", 1, "|u1", s4, 4, nchw, sizeof nchw, a);
  write_npy("l_nhwc.npy", 2, "|u1", s4h, 4, nhwc, sizeof nhwc, b);
  write_npy("l_y32.npy", 3, "<i4", sy, 1, y32, sizeof y32, ya);
  write_npy("l_y8.npy", 1, "|u1", sy, 1, y8, sizeof y8, yb);
  tempo_dataset d1, d2;
  assert_int_equal(tempo_npy_load_split(a, ya, TEMPO_NPY_LAYOUT_NCHW, 0, NULL, &d1), TEMPO_STATUS_OK);
  assert_int_equal(tempo_npy_load_split(b, yb, TEMPO_NPY_LAYOUT_NHWC, 0, NULL, &d2), TEMPO_STATUS_OK);
  assert_true(d2.nhwc);
  assert_int_equal(d2.c, C), assert_int_equal(d2.h, H), assert_int_equal(d2.w, W);
  tempo_dataset_compute_norm(&d1);
  tempo_dataset_compute_norm(&d2);
  for (int c = 0; c < C; c++) {
    assert_float_equal(d1.mean[c], d2.mean[c], 0);
    assert_float_equal(d1.std[c], d2.std[c], 0);
  }
  static float x1[N * C * H * W], x2[N * C * H * W];
  int l1[N], l2[N];
  tempo_batcher b1, b2;
  tempo_augment aug = {.crop = true, .pad = 2, .flip = true};
  for (int augmented = 0; augmented < 2; augmented++) {
    assert_int_equal(tempo_batcher_init(&b1, &d1, N, 5, true, augmented ? &aug : NULL), TEMPO_STATUS_OK);
    assert_int_equal(tempo_batcher_init(&b2, &d2, N, 5, true, augmented ? &aug : NULL), TEMPO_STATUS_OK);
    assert_int_equal(tempo_batcher_next(&b1, x1, l1), N);
    assert_int_equal(tempo_batcher_next(&b2, x2, l2), N);
    assert_memory_equal(x1, x2, sizeof x1);
    assert_memory_equal(l1, l2, sizeof l1);
    tempo_batcher_free(&b1);
    tempo_batcher_free(&b2);
  }
  tempo_dataset_free(&d1);
  tempo_dataset_free(&d2);

  /* (n, h, w): one channel; (n, d): 1 x 1 x d */
  const long s3[3] = {N, H * C, W}, s2[2] = {N, C * H * W};
  write_npy("l_3d.npy", 1, "|u1", s3, 3, nchw, sizeof nchw, a);
  write_npy("l_2d.npy", 1, "|u1", s2, 2, nchw, sizeof nchw, b);
  assert_int_equal(tempo_npy_load_split(a, ya, TEMPO_NPY_LAYOUT_AUTO, 0, NULL, &d1), TEMPO_STATUS_OK);
  assert_int_equal(d1.c, 1), assert_int_equal(d1.h, H * C), assert_int_equal(d1.w, W);
  assert_int_equal(tempo_npy_load_split(b, ya, TEMPO_NPY_LAYOUT_AUTO, 0, NULL, &d2), TEMPO_STATUS_OK);
  assert_int_equal(d2.c, 1), assert_int_equal(d2.h, 1), assert_int_equal(d2.w, C * H * W);
  assert_memory_equal(d1.images, nchw, sizeof nchw);
  assert_memory_equal(d2.images, nchw, sizeof nchw);
  tempo_dataset_free(&d1);
  tempo_dataset_free(&d2);
}

/* float32 images: statistics against a double computation here, and the batcher's values
 * exactly (v - mean) / std in float, for NCHW and NHWC (crop padding is raw 0). */
static void test_f32_norm(void **state) {
  (void)state;
  enum { N = 7, C = 2, H = 3, W = 3 };
  static float x[N * C * H * W], xh[N * H * W * C];
  int64_t y[N];
  tempo_rng r;
  tempo_rng_seed(&r, 3, 3);
  for (int i = 0; i < N; i++) {
    y[i] = i % 2;
    for (int c = 0; c < C; c++)
      for (int p = 0; p < H * W; p++) {
        const float v = (float)(tempo_rng_normal(&r) * (c + 1) * 3.0 + 100.0 * c);
        x[(i * C + c) * H * W + p] = v;
        xh[(i * H * W + p) * C + c] = v;
      }
  }
  const long s4[4] = {N, C, H, W}, s4h[4] = {N, H, W, C}, sy[1] = {N};
  char a[256], b[256], py[256];
  write_npy("f_x.npy", 1, "<f4", s4, 4, x, sizeof x, a);
  write_npy("f_xh.npy", 1, "<f4", s4h, 4, xh, sizeof xh, b);
  write_npy("f_y.npy", 1, "<i8", sy, 1, y, sizeof y, py);
  tempo_npy_config cfg = {.train_x = a, .train_y = py, .layout = TEMPO_NPY_LAYOUT_NCHW};
  tempo_dataset d, dh;
  assert_int_equal(tempo_npy_load(&cfg, NULL, &d, NULL), TEMPO_STATUS_OK);
  cfg.train_x = b, cfg.layout = TEMPO_NPY_LAYOUT_NHWC;
  assert_int_equal(tempo_npy_load(&cfg, NULL, &dh, NULL), TEMPO_STATUS_OK);
  assert_int_equal(d.pixel_type, TEMPO_PIXELS_F32);
  assert_true(d.has_norm);
  for (int c = 0; c < C; c++) {
    double s = 0, q = 0;
    for (int i = 0; i < N; i++)
      for (int p = 0; p < H * W; p++) s += x[(i * C + c) * H * W + p];
    const double m = s / (N * H * W);
    for (int i = 0; i < N; i++)
      for (int p = 0; p < H * W; p++) q += (x[(i * C + c) * H * W + p] - m) * (x[(i * C + c) * H * W + p] - m);
    assert_float_equal(d.mean[c], (float)m, 0);
    assert_float_equal(d.std[c], (float)sqrt(q / (N * H * W)), 1e-6 * d.std[c]);
    assert_float_equal(dh.mean[c], d.mean[c], 1e-5 * fabs(d.mean[c]) + 1e-6); /* summation order differs */
  }
  static float out[N * C * H * W];
  int lab[N];
  tempo_batcher bt;
  assert_int_equal(tempo_batcher_init(&bt, &d, N, 1, false, NULL), TEMPO_STATUS_OK);
  assert_int_equal(tempo_batcher_next(&bt, out, lab), N);
  for (int i = 0; i < N * C * H * W; i++) {
    const int c = (i / (H * W)) % C;
    assert_true(out[i] == (x[i] - d.mean[c]) / d.std[c]);
  }
  tempo_batcher_free(&bt);
  /* a crop of 1 pixel down: the top row is padding, raw 0 */
  tempo_augment aug = {.crop = true, .pad = 1};
  assert_int_equal(tempo_batcher_init(&bt, &dh, 1, 1, false, &aug), TEMPO_STATUS_OK);
  bool padded = false;
  for (int e = 0; e < 20 && !padded; e++) {
    tempo_batcher_seek(&bt, e, 0);
    assert_int_equal(tempo_batcher_next(&bt, out, lab), 1);
    for (int c = 0; c < C; c++)
      if (out[c * H * W] == (0.0f - dh.mean[c]) / dh.std[c] && out[c * H * W + 1] == out[c * H * W]) padded = true;
  }
  assert_true(padded);
  tempo_batcher_free(&bt);
  tempo_dataset_free(&d);
  tempo_dataset_free(&dh);

  /* given statistics: one value for every channel, or one per channel */
  cfg.train_x = a, cfg.layout = TEMPO_NPY_LAYOUT_NCHW, cfg.norm_count = 1, cfg.mean[0] = 2.0f, cfg.std[0] = 4.0f;
  assert_int_equal(tempo_npy_load(&cfg, NULL, &d, NULL), TEMPO_STATUS_OK);
  assert_float_equal(d.mean[1], 2.0f, 0), assert_float_equal(d.std[1], 4.0f, 0);
  tempo_dataset_free(&d);
  cfg.norm_count = 3, cfg.mean[1] = cfg.mean[2] = 0, cfg.std[1] = cfg.std[2] = 1;
  assert_int_equal(tempo_npy_load(&cfg, NULL, &d, NULL), TEMPO_STATUS_INVALID_ARGUMENT);
  assert_non_null(strstr(tempo_errmsg(), "give 1 value or 2"));
  float v[TEMPO_DATASET_MAX_CHANNELS];
  assert_int_equal(tempo_npy_parse_floats("0.5,0.25,1e-3", true, v), 3);
  assert_float_equal(v[2], 1e-3f, 0);
  assert_int_equal(tempo_npy_parse_floats("0.5,", false, v), 0);
  assert_int_equal(tempo_npy_parse_floats("0,1", true, v), 0);
  assert_int_equal(tempo_npy_parse_floats("nan", false, v), 0);
  assert_int_equal(tempo_npy_parse_floats("1e300", false, v), 0);
}

/* uint8 statistics against a double computation; a constant channel gets std 1. */
static void test_u8_stats(void **state) {
  (void)state;
  enum { N = 5, C = 2, P = 6 };
  uint8_t x[N * C * P];
  uint8_t y[N] = {0, 1, 0, 1, 1};
  for (int i = 0; i < N * C * P; i++) x[i] = (i / P) % 2 ? 77 : (uint8_t)(i * 13);
  const long s[4] = {N, C, 2, 3}, sy[1] = {N};
  char a[256], b[256];
  write_npy("s_x.npy", 1, "|u1", s, 4, x, sizeof x, a);
  write_npy("s_y.npy", 1, "|u1", sy, 1, y, sizeof y, b);
  tempo_dataset d;
  assert_int_equal(tempo_npy_load_split(a, b, TEMPO_NPY_LAYOUT_NCHW, 0, NULL, &d), TEMPO_STATUS_OK);
  tempo_dataset_compute_norm(&d);
  double s0 = 0, q0 = 0;
  for (int i = 0; i < N; i++)
    for (int p = 0; p < P; p++) s0 += x[(i * C) * P + p] / 255.0;
  const double m0 = s0 / (N * P);
  for (int i = 0; i < N; i++)
    for (int p = 0; p < P; p++) q0 += pow(x[(i * C) * P + p] / 255.0 - m0, 2);
  assert_float_equal(d.mean[0], (float)m0, 1e-7);
  assert_float_equal(d.std[0], (float)sqrt(q0 / (N * P)), 1e-7);
  assert_float_equal(d.mean[1], 77 / 255.0f, 1e-7);
  assert_float_equal(d.std[1], 1.0f, 0);
  tempo_dataset_free(&d);
}

/* The test split takes the training split's classes and statistics; its labels and shape are
 * checked against them. */
static void test_splits(void **state) {
  (void)state;
  enum { N = 8, C = 1, H = 4, W = 4 };
  uint8_t x[N * C * H * W], x2[N * 2 * H * W];
  int64_t y[N], yt[N], ybad[N];
  for (int i = 0; i < N * H * W; i++) x[i] = (uint8_t)(i * 5);
  memset(x2, 9, sizeof x2);
  for (int i = 0; i < N; i++) y[i] = i % 4, yt[i] = (i + 1) % 4, ybad[i] = i % 5;
  const long s[3] = {N, H, W}, s4[4] = {N, 2, H, W}, sy[1] = {N};
  write_npy("t_x.npy", 1, "|u1", s, 3, x, sizeof x, NULL);
  write_npy("t_y.npy", 1, "<i8", sy, 1, y, sizeof y, NULL);
  write_npy("t_yt.npy", 1, "<i8", sy, 1, yt, sizeof yt, NULL);
  write_npy("t_ybad.npy", 1, "<i8", sy, 1, ybad, sizeof ybad, NULL);
  write_npy("t_x2.npy", 1, "|u1", s4, 4, x2, sizeof x2, NULL);
  tempo_npy_config cfg = {.train_x = tpath("t_x.npy"), .train_y = tpath("t_y.npy"), .test_x = tpath("t_x.npy"),
                          .test_y = tpath("t_yt.npy"), .layout = TEMPO_NPY_LAYOUT_NCHW};
  tempo_dataset tr, te;
  assert_int_equal(tempo_npy_load(&cfg, NULL, &tr, &te), TEMPO_STATUS_OK);
  assert_int_equal(tr.num_classes, 4), assert_int_equal(te.num_classes, 4);
  assert_float_equal(te.mean[0], tr.mean[0], 0), assert_float_equal(te.std[0], tr.std[0], 0);
  assert_int_equal(tempo_dataset_label(&te, 0), 1);
  tempo_dataset_free(&tr), tempo_dataset_free(&te);
  /* --classes: more classes than the labels show */
  cfg.num_classes = 9;
  assert_int_equal(tempo_npy_load(&cfg, NULL, &tr, &te), TEMPO_STATUS_OK);
  assert_int_equal(tr.num_classes, 9), assert_int_equal(te.num_classes, 9);
  tempo_dataset_free(&tr), tempo_dataset_free(&te);
  cfg.num_classes = 0;
  /* a test label beyond the training classes */
  cfg.test_y = tpath("t_ybad.npy");
  assert_int_equal(tempo_npy_load(&cfg, NULL, &tr, &te), TEMPO_STATUS_MISMATCH);
  if (!strstr(tempo_errmsg(), "label 4 of sample 4 is out of range 0..3")) fail_msg("%s", tempo_errmsg());
  assert_null(tr.images), assert_null(te.images);
  /* another image shape in the test split */
  cfg.test_x = tpath("t_x2.npy"), cfg.test_y = tpath("t_yt.npy");
  assert_int_equal(tempo_npy_load(&cfg, NULL, &tr, &te), TEMPO_STATUS_MISMATCH);
  assert_non_null(strstr(tempo_errmsg(), "test images are 2x4x4 uint8, training images 1x4x4 uint8"));
  /* configuration errors */
  cfg.test_y = NULL;
  assert_int_equal(tempo_npy_load(&cfg, NULL, &tr, &te), TEMPO_STATUS_INVALID_ARGUMENT);
  assert_non_null(strstr(tempo_errmsg(), "--test-x and --test-y"));
  tempo_npy_config only_test = {.test_x = tpath("t_x.npy"), .test_y = tpath("t_yt.npy")};
  assert_int_equal(tempo_npy_load(&only_test, NULL, NULL, &te), TEMPO_STATUS_INVALID_ARGUMENT);
  assert_non_null(strstr(tempo_errmsg(), "--mean and --std"));
  only_test.norm_count = 1, only_test.mean[0] = 0.5f, only_test.std[0] = 0.25f, only_test.num_classes = 4;
  assert_int_equal(tempo_npy_load(&only_test, NULL, NULL, &te), TEMPO_STATUS_OK);
  assert_int_equal(te.num_classes, 4);
  tempo_dataset_free(&te);
  /* the built-in loader points npy users at the right options */
  assert_int_equal(tempo_dataset_load(TEMPO_DATASET_NPY, NULL, true, &tr), TEMPO_STATUS_INVALID_ARGUMENT);
  assert_non_null(strstr(tempo_errmsg(), "--train-x"));
  tempo_dataset_kind k;
  assert_true(tempo_dataset_kind_parse("npy", &k));
  assert_int_equal(k, TEMPO_DATASET_NPY);
  assert_string_equal(tempo_dataset_kind_name(TEMPO_DATASET_NPY), "npy");
}

/* ---- the malformed corpus ------------------------------------------------------------------ */

typedef struct {
  const char *name;
  int major;              /* 0: raw bytes below instead of a generated header */
  const char *dict;       /* the header dict */
  size_t data;            /* data bytes after the header */
  tempo_status want;
  const char *msg;
} bad_case;

/* Valid labels for the X cases (4 labels) and a valid X for the Y cases (4 images of 2x2). */
static void write_bad(const bad_case *b, char *path) {
  uint8_t hdr[70000];
  size_t h = npy_header(hdr, b->major, b->dict);
  static uint8_t data[4096];
  memset(data, 1, sizeof data);
  snprintf(path, 256, "%s/%s", tmpdir, b->name);
  write_bytes(path, hdr, h, data, b->data);
}

static void test_malformed_corpus(void **state) {
  (void)state;
  const int64_t y[4] = {0, 1, 0, 1};
  const uint8_t x[16] = {0};
  const long sy[1] = {4}, sx[3] = {4, 2, 2};
  char py[256], px[256], p[256];
  write_npy("ok_y.npy", 1, "<i8", sy, 1, y, sizeof y, py);
  write_npy("ok_x.npy", 1, "|u1", sx, 3, x, sizeof x, px);
  const char *ok = "{'descr': '|u1', 'fortran_order': False, 'shape': (4, 2, 2), }";
  static const bad_case xs[] = {
      {"big_endian.npy", 1, "{'descr': '>f4', 'fortran_order': False, 'shape': (4, 2, 2), }", 64,
       TEMPO_STATUS_MISMATCH, "big-endian dtype '>f4'"},
      {"float64.npy", 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (4, 2, 2), }", 128,
       TEMPO_STATUS_MISMATCH, "dtype '<f8' is not supported"},
      {"fortran.npy", 1, "{'descr': '|u1', 'fortran_order': True, 'shape': (4, 2, 2), }", 16, TEMPO_STATUS_MISMATCH,
       "Fortran order"},
      {"fortran_word.npy", 1, "{'descr': '|u1', 'fortran_order': Truely, 'shape': (4, 2, 2), }", 16,
       TEMPO_STATUS_CORRUPT, "'fortran_order' is not True or False"},
      {"no_colon.npy", 1, "{'descr' '|u1', 'fortran_order': False, 'shape': (4, 2, 2), }", 16, TEMPO_STATUS_CORRUPT,
       "expected ':' after the key"},
      {"unknown_key.npy", 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (4, 2, 2), 'x': 1}", 16,
       TEMPO_STATUS_CORRUPT, "unknown key"},
      {"dup_key.npy", 1, "{'descr': '|u1', 'descr': '|u1', 'fortran_order': False, 'shape': (4, 2, 2)}", 16,
       TEMPO_STATUS_CORRUPT, "'descr' appears twice"},
      {"no_shape.npy", 1, "{'descr': '|u1', 'fortran_order': False}", 16, TEMPO_STATUS_CORRUPT, "'shape' is missing"},
      {"not_dict.npy", 1, "['descr', '|u1']", 16, TEMPO_STATUS_CORRUPT, "the header is not a dict"},
      {"shape_int.npy", 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (16), }", 16, TEMPO_STATUS_CORRUPT,
       "a one-element shape needs a comma"},
      {"shape_neg.npy", 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (4, -2, 2), }", 16,
       TEMPO_STATUS_CORRUPT, "not a non-negative whole number"},
      {"shape_9d.npy", 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,4), }", 4,
       TEMPO_STATUS_CORRUPT, "more than 8 dimensions"},
      {"shape_huge.npy", 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (1099511627776, 1099511627776), }", 16,
       TEMPO_STATUS_CORRUPT, "overflows"},
      {"structured.npy", 1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (4,), }", 16,
       TEMPO_STATUS_CORRUPT, "not a simple dtype string"},
      {"truncated.npy", 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (4, 2, 2), }", 15, TEMPO_STATUS_CORRUPT,
       "holds 15 data bytes but its shape and dtype ('|u1') need 16: truncated"},
      {"trailing.npy", 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (4, 2, 2), }", 17, TEMPO_STATUS_CORRUPT,
       "trailing bytes after the array"},
      {"empty_dim.npy", 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (4, 0, 2), }", 0,
       TEMPO_STATUS_MISMATCH, "every dimension must be at least 1"},
      {"zero_images.npy", 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (0, 2, 2), }", 0,
       TEMPO_STATUS_MISMATCH, "0 images"},
      {"five_d.npy", 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (4, 1, 1, 2, 2), }", 16,
       TEMPO_STATUS_MISMATCH, "images have shape (4, 1, 1, 2, 2)"},
      {"int_images.npy", 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (4, 2, 2), }", 64,
       TEMPO_STATUS_MISMATCH, "images must be uint8 or float32"},
      {"v2_ok_count.npy", 2, "{'descr': '|u1', 'fortran_order': False, 'shape': (5, 2, 2), }", 20,
       TEMPO_STATUS_MISMATCH, "holds 4 labels but"},
      {"garbage_after.npy", 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (4, 2, 2), } x", 16,
       TEMPO_STATUS_CORRUPT, "unexpected characters after the dict"},
      {"escape.npy", 1, "{'descr': '|u\\1', 'fortran_order': False, 'shape': (4, 2, 2), }", 16, TEMPO_STATUS_CORRUPT,
       "not a simple dtype string"},
  };
  for (size_t i = 0; i < sizeof xs / sizeof xs[0]; i++) {
    write_bad(&xs[i], p);
    expect_split(p, py, TEMPO_NPY_LAYOUT_AUTO, NULL, xs[i].want, xs[i].msg);
  }
  static const bad_case ys[] = {
      {"y_2d.npy", 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (4, 1), }", 32, TEMPO_STATUS_MISMATCH,
       "labels have shape (4, 1): they must be 1-D"},
      {"y_float.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", 16, TEMPO_STATUS_MISMATCH,
       "labels must be integers"},
      {"y_short.npy", 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }", 24, TEMPO_STATUS_MISMATCH,
       "holds 3 labels but"},
  };
  for (size_t i = 0; i < sizeof ys / sizeof ys[0]; i++) {
    write_bad(&ys[i], p);
    expect_split(px, p, TEMPO_NPY_LAYOUT_AUTO, NULL, ys[i].want, ys[i].msg);
  }
  /* label values */
  const int64_t neg[4] = {0, 1, -1, 1}, big[4] = {0, 1, 70000, 1}, zeros[4] = {0};
  write_npy("y_neg.npy", 1, "<i8", sy, 1, neg, sizeof neg, p);
  expect_split(px, p, TEMPO_NPY_LAYOUT_AUTO, NULL, TEMPO_STATUS_CORRUPT, "label -1 of sample 2 is negative");
  write_npy("y_big.npy", 1, "<i8", sy, 1, big, sizeof big, p);
  expect_split(px, p, TEMPO_NPY_LAYOUT_AUTO, NULL, TEMPO_STATUS_MISMATCH, "label 70000 of sample 2 is out of range");
  write_npy("y_zeros.npy", 1, "<i8", sy, 1, zeros, sizeof zeros, p);
  expect_split(px, p, TEMPO_NPY_LAYOUT_AUTO, NULL, TEMPO_STATUS_MISMATCH, "at least 2 classes");

  /* non-finite float pixels */
  float f[16] = {0};
  f[9] = NAN;
  write_npy("nan.npy", 1, "<f4", sx, 3, f, sizeof f, p);
  expect_split(p, py, TEMPO_NPY_LAYOUT_AUTO, NULL, TEMPO_STATUS_CORRUPT, "image 2 holds a non-finite value");
  /* 4-D without a layout */
  const long s4[4] = {4, 1, 2, 2};
  write_npy("four_d.npy", 1, "|u1", s4, 4, x, sizeof x, p);
  expect_split(p, py, TEMPO_NPY_LAYOUT_AUTO, NULL, TEMPO_STATUS_INVALID_ARGUMENT, "--layout nchw");
  expect_split(p, py, TEMPO_NPY_LAYOUT_NHWC, NULL, TEMPO_STATUS_OK, NULL);

  /* raw byte-level damage */
  uint8_t hdr[200];
  size_t h = npy_header(hdr, 1, ok);
  uint8_t buf[400];
  memcpy(buf, hdr, h);
  memset(buf + h, 0, 16);
  snprintf(p, sizeof p, "%s/raw.npy", tmpdir);
  buf[0] = 'X';
  write_bytes(p, buf, h + 16, NULL, 0);
  expect_split(p, py, TEMPO_NPY_LAYOUT_AUTO, NULL, TEMPO_STATUS_CORRUPT, "bad magic");
  buf[0] = 0x93, buf[6] = 4;
  write_bytes(p, buf, h + 16, NULL, 0);
  expect_split(p, py, TEMPO_NPY_LAYOUT_AUTO, NULL, TEMPO_STATUS_CORRUPT, "version 4.0 is not supported");
  buf[6] = 1, buf[8] = 0xff, buf[9] = 0x0f; /* 4095 header bytes announced */
  write_bytes(p, buf, h + 16, NULL, 0);
  expect_split(p, py, TEMPO_NPY_LAYOUT_AUTO, NULL, TEMPO_STATUS_CORRUPT, "truncated .npy header: 4095 bytes");
  buf[8] = (uint8_t)(h - 10 - 1), buf[9] = 0; /* one byte short: not a multiple of 16 */
  write_bytes(p, buf, h + 16, NULL, 0);
  expect_split(p, py, TEMPO_NPY_LAYOUT_AUTO, NULL, TEMPO_STATUS_CORRUPT, "not padded to a multiple of 16");
  buf[8] = (uint8_t)(h - 10), buf[h - 1] = ' '; /* no newline */
  write_bytes(p, buf, h + 16, NULL, 0);
  expect_split(p, py, TEMPO_NPY_LAYOUT_AUTO, NULL, TEMPO_STATUS_CORRUPT, "does not end with a newline");
  buf[h - 1] = '\n';
  uint8_t v2[16] = {0x93, 'N', 'U', 'M', 'P', 'Y', 2, 0, 0, 0, 2, 0}; /* 128 KiB header announced */
  write_bytes(p, v2, sizeof v2, NULL, 0);
  expect_split(p, py, TEMPO_NPY_LAYOUT_AUTO, NULL, TEMPO_STATUS_CORRUPT, "header length 131072 is larger");
  write_bytes(p, buf, 7, NULL, 0);
  expect_split(p, py, TEMPO_NPY_LAYOUT_AUTO, NULL, TEMPO_STATUS_CORRUPT, "not a .npy file: 7 bytes");
  write_bytes(p, NULL, 0, NULL, 0);
  expect_split(p, py, TEMPO_NPY_LAYOUT_AUTO, NULL, TEMPO_STATUS_CORRUPT, "not a .npy file: 0 bytes");
  expect_split(tpath("missing.npy"), py, TEMPO_NPY_LAYOUT_AUTO, NULL, TEMPO_STATUS_IO, "cannot open");
  expect_split(tmpdir, py, TEMPO_NPY_LAYOUT_AUTO, NULL, TEMPO_STATUS_IO, "not a regular file");
  /* the intact file loads: the corpus above fails for the reasons named, not by accident */
  memcpy(buf, hdr, h);
  write_bytes(p, buf, h + 16, NULL, 0);
  expect_split(p, py, TEMPO_NPY_LAYOUT_AUTO, NULL, TEMPO_STATUS_OK, NULL);

  /* random damage to a valid file: any result but a crash, and a refusal leaves nothing */
  tempo_rng r;
  tempo_rng_seed(&r, 11, 0);
  int refused = 0;
  for (int t = 0; t < 3000; t++) {
    memcpy(buf, hdr, h);
    memset(buf + h, 1, 16);
    size_t len = h + 16;
    const int edits = 1 + (int)tempo_rng_below(&r, 3);
    for (int e = 0; e < edits; e++) buf[tempo_rng_below(&r, len)] = (uint8_t)tempo_rng_below(&r, 256);
    if (tempo_rng_below(&r, 4) == 0) len = (size_t)tempo_rng_below(&r, len + 1);
    write_bytes(p, buf, len, NULL, 0);
    tempo_dataset d;
    tempo_status st = tempo_npy_load_split(p, py, TEMPO_NPY_LAYOUT_NCHW, 0, NULL, &d);
    if (st == TEMPO_STATUS_OK) {
      assert_true(d.n >= 1 && d.num_classes == 2);
      tempo_dataset_free(&d);
    } else {
      refused++;
      assert_null(d.images);
      assert_true(tempo_errmsg()[0] != '\0');
    }
  }
  assert_true(refused > 1000);
}

/* ---- sealed arrays ----------------------------------------------------------------------- */

static void test_sealed(void **state) {
  (void)state;
  enum { N = 6, C = 2, H = 3, W = 3 };
  uint8_t x[N * C * H * W];
  int64_t y[N];
  for (size_t i = 0; i < sizeof x; i++) x[i] = (uint8_t)(i * 3);
  for (int i = 0; i < N; i++) y[i] = i % 3;
  const long s[4] = {N, C, H, W}, sy[1] = {N};
  char px[256], py[256], out[300];
  write_npy("sx.npy", 1, "|u1", s, 4, x, sizeof x, px);
  write_npy("sy.npy", 1, "<i8", sy, 1, y, sizeof y, py);
  tempo_owner_key *key, *other;
  assert_int_equal(tempo_owner_key_generate(&key), TEMPO_STATUS_OK);
  assert_int_equal(tempo_owner_key_generate(&other), TEMPO_STATUS_OK);
  char label[TEMPO_SEAL_LABEL_MAX + 1];
  assert_int_equal(tempo_seal_default_label(px, label, sizeof label), TEMPO_STATUS_OK);
  assert_string_equal(label, "data/sx.npy"); /* what `tempo-owner seal` gives it */
  snprintf(out, sizeof out, "%s.sealed", px);
  assert_int_equal(tempo_seal_file(px, out, key, label, 1024), TEMPO_STATUS_OK);
  snprintf(out, sizeof out, "%s.sealed", py);
  assert_int_equal(tempo_seal_file(py, out, key, "data/sy.npy", 0), TEMPO_STATUS_OK);
  tempo_dataset plain, sealed;
  assert_int_equal(tempo_npy_load_split(px, py, TEMPO_NPY_LAYOUT_NCHW, 0, NULL, &plain), TEMPO_STATUS_OK);
  /* named as X.npy or X.npy.sealed */
  assert_int_equal(tempo_npy_load_split(px, out, TEMPO_NPY_LAYOUT_NCHW, 0, key, &sealed), TEMPO_STATUS_OK);
  assert_false(sealed.store_mapped);
  assert_true(sealed.wipe);
  assert_ptr_equal(sealed.images, (uint8_t *)sealed.store + 128);
  assert_int_equal(sealed.n, N), assert_int_equal(sealed.num_classes, 3);
  assert_memory_equal(sealed.images, plain.images, sizeof x);
  assert_memory_equal(sealed.labels, plain.labels, sizeof y);
  tempo_dataset_free(&sealed);
  tempo_dataset_free(&plain);
  /* the wrong key */
  expect_split(px, py, TEMPO_NPY_LAYOUT_NCHW, other, TEMPO_STATUS_CORRUPT, "sx.npy.sealed");
  /* a sealed file renamed into another role: authentic, but its label says sx.npy */
  char moved[300];
  snprintf(moved, sizeof moved, "%s/sz.npy.sealed", tmpdir);
  snprintf(out, sizeof out, "%s.sealed", px);
  assert_int_equal(rename(out, moved), 0);
  expect_split(tpath("sz.npy"), py, TEMPO_NPY_LAYOUT_NCHW, key, TEMPO_STATUS_MISMATCH, NULL);
  expect_split(px, py, TEMPO_NPY_LAYOUT_NCHW, key, TEMPO_STATUS_IO, "missing sealed file");
  /* a sealed file read without the key */
  assert_int_equal(unlink(tpath("sy.npy")), 0);
  expect_split(px, py, TEMPO_NPY_LAYOUT_NCHW, NULL, TEMPO_STATUS_INVALID_ARGUMENT, "is sealed: pass the owner key");
  expect_split(px, tpath("sy.npy.sealed"), TEMPO_NPY_LAYOUT_NCHW, NULL, TEMPO_STATUS_INVALID_ARGUMENT,
               "sy.npy.sealed is sealed: pass the owner key");
  tempo_owner_key_free(key);
  tempo_owner_key_free(other);
}

/* ---- training on an npy dataset ------------------------------------------------------------ */

/* 3x12x12 images, 7 classes: mlp trains to well above chance in local mode, tempo mode follows
 * the same first steps, and the checkpoint evaluates to the run's accuracy again. */
static void test_train_npy(void **state) {
  (void)state;
  enum { NTR = 448, NTE = 112, C = 3, H = 12, W = 12, K = 7 };
  static uint8_t xtr[NTR * C * H * W], xte[NTE * C * H * W];
  static int64_t ytr[NTR], yte[NTE];
  make_patterns(xtr, ytr, NTR, C, H, W, K, 1);
  make_patterns(xte, yte, NTE, C, H, W, K, 2);
  const long s1[4] = {NTR, C, H, W}, s2[4] = {NTE, C, H, W}, y1[1] = {NTR}, y2[1] = {NTE};
  write_npy("tr_x.npy", 1, "|u1", s1, 4, xtr, sizeof xtr, NULL);
  write_npy("tr_y.npy", 1, "<i8", y1, 1, ytr, sizeof ytr, NULL);
  write_npy("te_x.npy", 1, "|u1", s2, 4, xte, sizeof xte, NULL);
  write_npy("te_y.npy", 1, "<i8", y2, 1, yte, sizeof yte, NULL);
  tempo_train_config c;
  char out[128];
  snprintf(out, sizeof out, "%s/run", tmpdir);
  test_train_cfg(&c, out, 0, 1);
  c.dataset = TEMPO_DATASET_NPY;
  c.npy.train_x = tpath("tr_x.npy"), c.npy.train_y = tpath("tr_y.npy");
  c.npy.test_x = tpath("te_x.npy"), c.npy.test_y = tpath("te_y.npy");
  c.npy.layout = TEMPO_NPY_LAYOUT_NCHW;
  c.no_eval = false;
  c.epochs = 3;
  c.optim.lr = 0.05f;
  tempo_train_result res;
  assert_int_equal(tempo_train_run(&c, &res), TEMPO_STATUS_OK);
  assert_int_equal(res.steps, 3 * NTR / 32);
  print_message("npy run: test accuracy %.4f after 3 epochs\n", res.test_acc);
  if (!(res.test_acc > 0.6)) fail_msg("test accuracy %.3f after 3 epochs (chance 1/7)", res.test_acc);
  /* the config record names the files and the exact normalisation */
  char path[300];
  snprintf(path, sizeof path, "%s/metrics.jsonl", out);
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  char line[4096];
  assert_non_null(fgets(line, sizeof line, f));
  fclose(f);
  assert_non_null(strstr(line, "\"dataset\":\"npy\""));
  assert_non_null(strstr(line, "\"input\":[3,12,12],\"classes\":7,\"train_images\":448,\"test_images\":112"));
  assert_non_null(strstr(line, "\"mean\":["));
  assert_non_null(strstr(line, "tr_x.npy"));

  snprintf(path, sizeof path, "%s/model.ckpt", out);
  tempo_train_config e;
  tempo_train_config_default(&e);
  e.engine.mode = TEMPO_MODE_LOCAL, e.engine.threads = 1, e.quiet = true, e.progress = 0, e.batch_size = 50;
  double acc, loss;
  assert_int_equal(tempo_eval_run(&e, path, &acc, &loss), TEMPO_STATUS_INVALID_ARGUMENT); /* no files */
  assert_non_null(strstr(tempo_errmsg(), "was trained on npy data"));
  e.npy = c.npy;
  assert_int_equal(tempo_eval_run(&e, path, &acc, &loss), TEMPO_STATUS_OK);
  assert_float_equal(acc, res.test_acc, 1e-12);
  assert_float_equal(loss, res.test_loss, 1e-4);
  e.npy.num_classes = 8;
  assert_int_equal(tempo_eval_run(&e, path, &acc, &loss), TEMPO_STATUS_MISMATCH);

  /* tempo mode, 2 in-process workers: the same data and model train the same first steps */
  tempo_train_config t = c;
  char out2[128];
  snprintf(out2, sizeof out2, "%s/run_tempo", tmpdir);
  t.out_dir = out2, t.epochs = 1, t.max_steps = 4, t.no_eval = true;
  t.engine.mode = TEMPO_MODE_TEMPO, t.engine.workers = 2, t.engine.seed = 5;
  tempo_train_config l = t;
  char out3[128];
  snprintf(out3, sizeof out3, "%s/run_local", tmpdir);
  l.out_dir = out3, l.engine.mode = TEMPO_MODE_LOCAL;
  assert_int_equal(tempo_train_run(&t, &res), TEMPO_STATUS_OK);
  assert_int_equal(res.stats.verify_failures, 0);
  assert_true(res.stats.products > 0);
  assert_int_equal(tempo_train_run(&l, &res), TEMPO_STATUS_OK);
  double lt[4], ll[4];
  assert_int_equal(test_read_losses(out2, lt, 4), 4);
  assert_int_equal(test_read_losses(out3, ll, 4), 4);
  for (int i = 0; i < 4; i++)
    if (fabs(lt[i] - ll[i]) > 1e-3 * fabs(ll[i])) fail_msg("step %d: tempo loss %g, local %g", i + 1, lt[i], ll[i]);

  /* a model that declares another input shape or class count than the data is refused */
  tempo_dataset d;
  assert_int_equal(tempo_npy_load(&c.npy, NULL, &d, NULL), TEMPO_STATUS_OK);
  tempo_mm *mm = test_make_mm(TEMPO_MODE_LOCAL, 1, 1, NULL);
  tempo_model *m;
  tempo_model_config mc = {.name = "mlp", .in_c = 1, .in_h = 12, .in_w = 12, .num_classes = K, .max_batch = 4};
  assert_int_equal(tempo_model_create(&mc, mm, 1, &m), TEMPO_STATUS_OK);
  assert_int_equal(tempo_run_check_model(m, &d), TEMPO_STATUS_MISMATCH);
  assert_non_null(strstr(tempo_errmsg(), "takes 1x12x12 inputs (channels x height x width) but the npy images are 3x12x12"));
  tempo_model_free(m);
  mc.in_c = 3, mc.num_classes = 9;
  assert_int_equal(tempo_model_create(&mc, mm, 1, &m), TEMPO_STATUS_OK);
  assert_int_equal(tempo_run_check_model(m, &d), TEMPO_STATUS_MISMATCH);
  assert_non_null(strstr(tempo_errmsg(), "predicts 9 classes but the npy data has 7 (labels 0..6): pass --classes"));
  tempo_model_free(m);
  mc.num_classes = K;
  assert_int_equal(tempo_model_create(&mc, mm, 1, &m), TEMPO_STATUS_OK);
  assert_int_equal(tempo_run_check_model(m, &d), TEMPO_STATUS_OK);
  tempo_model_free(m);
  tempo_mm_free(mm);
  tempo_dataset_free(&d);

  /* resuming an npy run: the same files again, the same trajectory as an uninterrupted run */
  tempo_train_config a = l, b2 = l;
  char outa[128], outb[128], ck[160];
  snprintf(outa, sizeof outa, "%s/run_a", tmpdir);
  snprintf(outb, sizeof outb, "%s/run_b", tmpdir);
  a.out_dir = outa, a.max_steps = 8;
  b2.out_dir = outb, b2.max_steps = 5;
  assert_int_equal(tempo_train_run(&a, &res), TEMPO_STATUS_OK);
  assert_int_equal(tempo_train_run(&b2, &res), TEMPO_STATUS_OK);
  snprintf(ck, sizeof ck, "%s/checkpoint.ckpt", outb);
  tempo_train_config rb;
  test_train_cfg(&rb, NULL, 8, 0);
  rb.resume = ck;
  assert_int_equal(tempo_train_run(&rb, &res), TEMPO_STATUS_INVALID_ARGUMENT); /* no files */
  assert_non_null(strstr(tempo_errmsg(), "was trained on npy data: pass its files again"));
  rb.npy = l.npy;
  assert_int_equal(tempo_train_run(&rb, &res), TEMPO_STATUS_OK);
  assert_int_equal(res.steps, 8);
  double la[8], lb[8];
  assert_int_equal(test_read_losses(outa, la, 8), 8);
  assert_int_equal(test_read_losses(outb, lb, 8), 8);
  assert_memory_equal(la, lb, sizeof la);

  /* no test split: the run trains and does not evaluate */
  tempo_train_config n = l;
  n.npy.test_x = n.npy.test_y = NULL;
  n.no_eval = false;
  assert_int_equal(tempo_train_run(&n, &res), TEMPO_STATUS_OK);
  assert_true(res.test_acc < 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_u8_nchw_mapped), cmocka_unit_test(test_layouts_and_versions),
      cmocka_unit_test(test_f32_norm),       cmocka_unit_test(test_u8_stats),
      cmocka_unit_test(test_splits),         cmocka_unit_test(test_malformed_corpus),
      cmocka_unit_test(test_sealed),         cmocka_unit_test(test_train_npy),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
