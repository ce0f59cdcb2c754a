/* test_netfile.c - network description files (netfile.h, docs/network-format.md):
 *   - the six built-in models (and the three golden test variants) built from their files give
 *     the reference C builders' parameters (names, shapes, flags, values) and, over SGD steps,
 *     the same losses, gradients and weights bit for bit, in local and in tempo mode;
 *   - the compiled-in files are the shipped nets files, each named as its file;
 *   - nets/examples/small-cnn.net (not a built-in): PyTorch state_dict names, a directional
 *     finite-difference check of the whole network's gradient, flatten in PyTorch's order;
 *   - a corpus of malformed files (tests/fixtures/bad-nets) each refused with its exact
 *     "FILE:LINE:COLUMN: reason", and generated ones (bounds, truncations, mutations) that must
 *     fail cleanly, never crash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tempo/common.h"
#include "tempo/fileio.h"
#include "tempo/layers.h"
#include "tempo/matmul.h"
#include "tempo/model.h"
#include "tempo/netfile.h"
#include "tempo/rng.h"
#include "test_util.h"

/* ------------------------------------------------------------------ built-ins == reference */
static void assert_same_params(const tempo_model *a, const tempo_model *b) {
  assert_int_equal(a->params.n, b->params.n);
  assert_int_equal(a->params.count, b->params.count);
  assert_int_equal(a->params.state_count, b->params.state_count);
  for (int i = 0; i < a->params.n; i++) {
    const tempo_param_info *x = &a->params.info[i], *y = &b->params.info[i];
    assert_string_equal(x->name, y->name);
    assert_int_equal(x->ndim, y->ndim);
    assert_memory_equal(x->shape, y->shape, sizeof x->shape);
    assert_int_equal(x->offset, y->offset);
    assert_int_equal(x->flags, y->flags);
  }
  assert_memory_equal(a->params.data, b->params.data, a->params.count * sizeof(float));
  if (a->params.state_count)
    assert_memory_equal(a->params.state, b->params.state, a->params.state_count * sizeof(float));
}

/* One SGD step on (x, y); returns the loss. */
static double sgd_step(tempo_model *m, const float *x, const int *y, int batch, float *logits, float *dlogits) {
  const int c = m->cfg.num_classes;
  tempo_params_zero_grad(&m->params);
  assert_int_equal(m->ops->forward(m, x, batch, logits), TEMPO_STATUS_OK);
  const double loss = tempo_softmax_xent(logits, y, batch, c, dlogits, NULL);
  assert_int_equal(m->ops->backward(m, dlogits, batch), TEMPO_STATUS_OK);
  tempo_mm_step_end(m->mm);
  for (size_t i = 0; i < m->params.count; i++) m->params.data[i] -= 0.05f * m->params.grad[i];
  return loss;
}

/* Builds `name` from its file (built-in text, or tests/fixtures/nets/NAME.net when fixture)
 * and from the reference builder, then compares parameters and `steps` SGD steps. */
static void check_equivalent(const char *name, bool fixture, int c, int h, int w, float dropout, tempo_mode mode,
                             int steps) {
  enum { B = 2, C = 10 };
  tempo_mm *mm1 = test_make_mm(mode, 2, 77, NULL), *mm2 = test_make_mm(mode, 2, 77, NULL);
  tempo_model_config cfg = {.in_c = c, .in_h = h, .in_w = w, .num_classes = C, .max_batch = B, .dropout = dropout};
  snprintf(cfg.name, sizeof cfg.name, "%s", name);
  tempo_model *a = NULL, *b = NULL;
  if (fixture) {
    char path[128];
    snprintf(path, sizeof path, "tests/fixtures/nets/%s.net", name);
    tempo_net *net = NULL;
    assert_int_equal(tempo_net_parse_file(path, &net), TEMPO_STATUS_OK);
    assert_string_equal(net->name, name);
    assert_int_equal(tempo_model_create_net(net, &cfg, mm1, 5, &a), TEMPO_STATUS_OK);
    tempo_net_free(net);
  } else {
    assert_int_equal(tempo_model_create(&cfg, mm1, 5, &a), TEMPO_STATUS_OK);
  }
  assert_int_equal(tempo_model_create_reference(&cfg, mm2, 5, &b), TEMPO_STATUS_OK);
  assert_ptr_not_equal(a->ops, b->ops); /* really two implementations */
  assert_same_params(a, b);

  const size_t in_n = (size_t)B * c * h * w;
  float *x = malloc(in_n * sizeof *x), *l1 = malloc(B * C * sizeof *l1), *l2 = malloc(B * C * sizeof *l2);
  float *d1 = malloc(B * C * sizeof *d1), *d2 = malloc(B * C * sizeof *d2);
  int y[B];
  tempo_rng r;
  tempo_rng_seed(&r, 11, 0);
  for (int s = 0; s < steps; s++) {
    test_randn(x, in_n, &r);
    for (int i = 0; i < B; i++) y[i] = (int)(tempo_rng_u64(&r) % C);
    const double la = sgd_step(a, x, y, B, l1, d1), lb = sgd_step(b, x, y, B, l2, d2);
    if (memcmp(&la, &lb, sizeof la)) fail_msg("%s step %d: loss %.17g from the file, %.17g from the builder", name, s, la, lb);
    assert_memory_equal(l1, l2, B * C * sizeof *l1);
    assert_memory_equal(a->params.grad, b->params.grad, a->params.count * sizeof(float));
    assert_true(isfinite(la) && la > 0.0);
  }
  assert_same_params(a, b); /* weights and running statistics after the steps */
  /* eval mode too (running statistics, no dropout) */
  a->training = b->training = false;
  tempo_mm_set_training(mm1, false);
  tempo_mm_set_training(mm2, false);
  assert_int_equal(a->ops->forward(a, x, B, l1), TEMPO_STATUS_OK);
  assert_int_equal(b->ops->forward(b, x, B, l2), TEMPO_STATUS_OK);
  tempo_mm_step_end(mm1);
  tempo_mm_step_end(mm2);
  assert_memory_equal(l1, l2, B * C * sizeof *l1);
  free(x), free(l1), free(l2), free(d1), free(d2);
  tempo_model_free(a);
  tempo_model_free(b);
  tempo_mm_free(mm1);
  tempo_mm_free(mm2);
}

static void test_builtins_local(void **state) {
  (void)state;
  check_equivalent("mlp", false, 1, 28, 28, 0.0f, TEMPO_MODE_LOCAL, 3);
  check_equivalent("resnet20", false, 3, 32, 32, 0.0f, TEMPO_MODE_LOCAL, 2);
  check_equivalent("resnet18", false, 3, 8, 8, 0.0f, TEMPO_MODE_LOCAL, 1);
  check_equivalent("resnet50", false, 3, 8, 8, 0.0f, TEMPO_MODE_LOCAL, 1);
  check_equivalent("vit-mini", false, 1, 28, 28, 0.1f, TEMPO_MODE_LOCAL, 2); /* patch 7, dropout */
  check_equivalent("vit-tiny", false, 3, 16, 16, 0.0f, TEMPO_MODE_LOCAL, 1); /* patch 4 */
  check_equivalent("resnet-test", true, 3, 8, 8, 0.0f, TEMPO_MODE_LOCAL, 3);
  check_equivalent("resnet-test-bneck", true, 1, 10, 10, 0.0f, TEMPO_MODE_LOCAL, 3);
  check_equivalent("vit-test", true, 1, 28, 28, 0.2f, TEMPO_MODE_LOCAL, 3);
}

/* Blinded products on 2 in-process workers: same product order, hence same keys and bits. */
static void test_builtins_tempo(void **state) {
  (void)state;
  check_equivalent("mlp", false, 1, 28, 28, 0.0f, TEMPO_MODE_TEMPO, 2);
  check_equivalent("resnet20", false, 3, 16, 16, 0.0f, TEMPO_MODE_TEMPO, 2);
  check_equivalent("resnet-test-bneck", true, 1, 10, 10, 0.0f, TEMPO_MODE_TEMPO, 2);
  check_equivalent("vit-test", true, 3, 32, 32, 0.1f, TEMPO_MODE_TEMPO, 2);
}

/* The compiled-in texts are the shipped files, named as their files; `tempo models` lists the
 * six and no test variant. */
static void test_builtin_texts(void **state) {
  (void)state;
  const char *const want[] = {"mlp", "resnet20", "resnet18", "resnet50", "vit-mini", "vit-tiny"};
  const char *const *names = tempo_model_names();
  int n = 0;
  for (; names[n]; n++) {
    assert_true(n < 6);
    assert_string_equal(names[n], want[n]);
    char path[64];
    snprintf(path, sizeof path, "nets/%s.net", names[n]);
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(tempo_read_file(path, TEMPO_NET_FILE_MAX, &buf, &len), TEMPO_STATUS_OK);
    const char *text = tempo_net_builtin_text(names[n]);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    assert_memory_equal(text, buf, len);
    free(buf);
    tempo_net *net = NULL;
    assert_int_equal(tempo_net_parse(text, strlen(text), path, &net), TEMPO_STATUS_OK);
    assert_string_equal(net->name, names[n]);
    tempo_net_free(net);
  }
  assert_int_equal(n, 6);
  assert_null(tempo_net_builtin_text("resnet-test"));
  assert_null(tempo_net_builtin_text("vit-test"));
}

/* ------------------------------------------------------------------ small-cnn */
static tempo_model *small_cnn(tempo_mm *mm, int max_batch) {
  tempo_net *net = NULL;
  assert_int_equal(tempo_net_parse_file("nets/examples/small-cnn.net", &net), TEMPO_STATUS_OK);
  int c, h, w, k;
  size_t params;
  assert_int_equal(tempo_net_resolve(net, 0, 0, 0, 0, &c, &h, &w, &k, &params), TEMPO_STATUS_OK);
  assert_int_equal(c, 3), assert_int_equal(h, 12), assert_int_equal(w, 12), assert_int_equal(k, 7);
  tempo_model_config cfg = {.in_c = c, .in_h = h, .in_w = w, .num_classes = k, .max_batch = max_batch};
  tempo_model *m = NULL;
  assert_int_equal(tempo_model_create_net(net, &cfg, mm, 3, &m), TEMPO_STATUS_OK);
  assert_int_equal(m->params.count, params);
  assert_string_equal(m->cfg.name, "small-cnn");
  /* a file that declares its input refuses another shape, and another class count */
  tempo_model *bad = NULL;
  cfg.in_c = 1;
  assert_int_equal(tempo_model_create_net(net, &cfg, mm, 3, &bad), TEMPO_STATUS_MISMATCH);
  assert_null(bad);
  cfg.in_c = 3, cfg.num_classes = 10;
  assert_int_equal(tempo_model_create_net(net, &cfg, mm, 3, &bad), TEMPO_STATUS_MISMATCH);
  tempo_net_free(net);
  return m;
}

static void test_small_cnn_names(void **state) {
  (void)state;
  tempo_mm *mm = test_make_mm(TEMPO_MODE_LOCAL, 1, 1, NULL);
  tempo_model *m = small_cnn(mm, 4);
  /* the PyTorch module's state_dict (docs/network-format.md), in registration order */
  static const char *const want[][2] = {
      {"features.0.weight", "[16, 3, 3, 3]"}, {"features.0.bias", "[16]"},
      {"features.1.weight", "[16]"}, {"features.1.bias", "[16]"},
      {"features.1.running_mean", "[16]"}, {"features.1.running_var", "[16]"},
      {"block1.conv1.weight", "[16, 16, 3, 3]"}, {"block1.bn1.weight", "[16]"},
      {"block1.bn1.bias", "[16]"}, {"block1.bn1.running_mean", "[16]"},
      {"block1.bn1.running_var", "[16]"}, {"block1.conv2.weight", "[16, 16, 3, 3]"},
      {"block1.bn2.weight", "[16]"}, {"block1.bn2.bias", "[16]"},
      {"block1.bn2.running_mean", "[16]"}, {"block1.bn2.running_var", "[16]"},
      {"block2.conv1.weight", "[32, 16, 3, 3]"}, {"block2.bn1.weight", "[32]"},
      {"block2.bn1.bias", "[32]"}, {"block2.bn1.running_mean", "[32]"},
      {"block2.bn1.running_var", "[32]"}, {"block2.conv2.weight", "[32, 32, 3, 3]"},
      {"block2.bn2.weight", "[32]"}, {"block2.bn2.bias", "[32]"},
      {"block2.bn2.running_mean", "[32]"}, {"block2.bn2.running_var", "[32]"},
      {"block2.shortcut.0.weight", "[32, 16, 1, 1]"}, {"block2.shortcut.1.weight", "[32]"},
      {"block2.shortcut.1.bias", "[32]"}, {"block2.shortcut.1.running_mean", "[32]"},
      {"block2.shortcut.1.running_var", "[32]"}, {"fc1.weight", "[64, 288]"},
      {"fc1.bias", "[64]"}, {"head.weight", "[7, 64]"}, {"head.bias", "[7]"},
  };
  assert_int_equal(m->params.n, sizeof want / sizeof want[0]);
  for (int i = 0; i < m->params.n; i++) {
    char shape[64];
    tempo_params_shape_str(&m->params, i, shape, sizeof shape);
    assert_string_equal(m->params.info[i].name, want[i][0]);
    assert_string_equal(shape, want[i][1]);
  }
  tempo_model_free(m);
  tempo_mm_free(mm);
}

static double loss_at(tempo_model *m, const float *x, const int *y, int batch, float *logits) {
  assert_int_equal(m->ops->forward(m, x, batch, logits), TEMPO_STATUS_OK);
  tempo_mm_step_end(m->mm);
  return tempo_softmax_xent(logits, y, batch, m->cfg.num_classes, NULL, NULL);
}

/* The analytic gradient of the whole network (conv, bn, relu, maxpool, both residual kinds,
 * flatten, linear) against a central difference along a random direction. */
static void test_small_cnn_gradient(void **state) {
  (void)state;
  enum { B = 4 };
  tempo_mm *mm = test_make_mm(TEMPO_MODE_LOCAL, 1, 1, NULL);
  tempo_model *m = small_cnn(mm, B);
  const size_t in_n = (size_t)B * 3 * 12 * 12, np = m->params.count;
  float *x = malloc(in_n * sizeof *x), logits[B * 7], dlogits[B * 7];
  float *dir = malloc(np * sizeof *dir), *w0 = malloc(np * sizeof *w0);
  int y[B] = {0, 3, 6, 2};
  tempo_rng r;
  tempo_rng_seed(&r, 5, 0);
  test_randn(x, in_n, &r);
  test_randn(dir, np, &r);
  memcpy(w0, m->params.data, np * sizeof *w0);
  tempo_params_zero_grad(&m->params);
  assert_int_equal(m->ops->forward(m, x, B, logits), TEMPO_STATUS_OK);
  tempo_softmax_xent(logits, y, B, 7, dlogits, NULL);
  assert_int_equal(m->ops->backward(m, dlogits, B), TEMPO_STATUS_OK);
  tempo_mm_step_end(mm);
  double gd = 0.0, norm = 0.0;
  for (size_t i = 0; i < np; i++) gd += (double)m->params.grad[i] * dir[i], norm += (double)dir[i] * dir[i];
  const double h = 1e-4 / sqrt(norm / (double)np); /* small: few ReLUs and max-pool winners switch */
  for (size_t i = 0; i < np; i++) m->params.data[i] = w0[i] + (float)(h * dir[i]);
  const double lp = loss_at(m, x, y, B, logits);
  for (size_t i = 0; i < np; i++) m->params.data[i] = w0[i] - (float)(h * dir[i]);
  const double lm = loss_at(m, x, y, B, logits);
  const double fd = (lp - lm) / (2.0 * h);
  print_message("directional derivative: analytic %.6g, central difference %.6g\n", gd, fd);
  assert_true(fabs(gd) > 1e-3);
  assert_true(fabs(fd - gd) <= 0.05 * fabs(gd));
  free(x), free(dir), free(w0);
  tempo_model_free(m);
  tempo_mm_free(mm);
}

/* ---- a naive NCHW reference of the PyTorch twin in docs/network-format.md (eval mode),
 * reading the weights by their state_dict names: what `load_state_dict(strict=True)` of the
 * export gives PyTorch. */
static const float *pw(const tempo_model *m, const char *name) {
  const int i = tempo_params_find(&m->params, name);
  assert_true(i >= 0);
  return tempo_params_ptr(&m->params, i);
}

/* y (co, oh, ow) = conv(x (ci, h, w)), zero padding */
static void ref_conv(const float *x, int ci, int h, int w, const float *wt, const float *b, int co, int k, int stride,
                     int pad, float *y, int *oh, int *ow) {
  *oh = (h + 2 * pad - k) / stride + 1, *ow = (w + 2 * pad - k) / stride + 1;
  for (int o = 0; o < co; o++)
    for (int i = 0; i < *oh; i++)
      for (int j = 0; j < *ow; j++) {
        double acc = b ? b[o] : 0.0;
        for (int c = 0; c < ci; c++)
          for (int u = 0; u < k; u++)
            for (int v = 0; v < k; v++) {
              const int yy = i * stride - pad + u, xx = j * stride - pad + v;
              if (yy >= 0 && yy < h && xx >= 0 && xx < w)
                acc += (double)wt[((o * ci + c) * k + u) * k + v] * x[(c * h + yy) * w + xx];
            }
        y[(o * *oh + i) * *ow + j] = (float)acc;
      }
}

static void ref_bn(const tempo_model *m, const char *name, float *x, int c, int hw) {
  char n[96];
  snprintf(n, sizeof n, "%s.weight", name);
  const float *g = pw(m, n);
  snprintf(n, sizeof n, "%s.bias", name);
  const float *b = pw(m, n);
  snprintf(n, sizeof n, "%s.running_mean", name);
  const float *mu = pw(m, n);
  snprintf(n, sizeof n, "%s.running_var", name);
  const float *var = pw(m, n);
  for (int ch = 0; ch < c; ch++)
    for (int p = 0; p < hw; p++) {
      float *v = &x[ch * hw + p];
      *v = (float)(g[ch] * ((double)*v - mu[ch]) / sqrt((double)var[ch] + 1e-5) + b[ch]);
    }
}

static void ref_relu(float *x, int n) {
  for (int i = 0; i < n; i++) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

/* Block(cin, cout, stride) of the twin on x (cin, h, w) -> y (cout, h', w') */
static void ref_block(const tempo_model *m, const char *p, const float *x, int cin, int h, int w, int cout, int stride,
                      float *y, int *oh, int *ow) {
  char n[96];
  float t[16 * 6 * 6], sc[16 * 6 * 6]; /* the largest branch output of small-cnn */
  int h1, w1, h2, w2;
  snprintf(n, sizeof n, "%s.conv1.weight", p);
  ref_conv(x, cin, h, w, pw(m, n), NULL, cout, 3, stride, 1, t, &h1, &w1);
  snprintf(n, sizeof n, "%s.bn1", p);
  ref_bn(m, n, t, cout, h1 * w1);
  ref_relu(t, cout * h1 * w1);
  snprintf(n, sizeof n, "%s.conv2.weight", p);
  ref_conv(t, cout, h1, w1, pw(m, n), NULL, cout, 3, 1, 1, y, &h2, &w2);
  snprintf(n, sizeof n, "%s.bn2", p);
  ref_bn(m, n, y, cout, h2 * w2);
  if (stride != 1 || cin != cout) {
    int hs, ws;
    snprintf(n, sizeof n, "%s.shortcut.0.weight", p);
    ref_conv(x, cin, h, w, pw(m, n), NULL, cout, 1, stride, 0, sc, &hs, &ws);
    snprintf(n, sizeof n, "%s.shortcut.1", p);
    ref_bn(m, n, sc, cout, hs * ws);
  } else {
    memcpy(sc, x, (size_t)cin * h * w * sizeof *sc);
  }
  for (int i = 0; i < cout * h2 * w2; i++) y[i] += sc[i];
  ref_relu(y, cout * h2 * w2);
  *oh = h2, *ow = w2;
}

static void ref_small_cnn(const tempo_model *m, const float *x, float *logits) {
  float a[16 * 12 * 12], p[16 * 6 * 6], b1[16 * 6 * 6], b2[32 * 3 * 3], f[64];
  int h, w;
  ref_conv(x, 3, 12, 12, pw(m, "features.0.weight"), pw(m, "features.0.bias"), 16, 3, 1, 1, a, &h, &w);
  ref_bn(m, "features.1", a, 16, 144);
  ref_relu(a, 16 * 144);
  for (int c = 0; c < 16; c++) /* MaxPool2d(2) */
    for (int i = 0; i < 6; i++)
      for (int j = 0; j < 6; j++) {
        float v = a[(c * 12 + 2 * i) * 12 + 2 * j];
        for (int u = 0; u < 2; u++)
          for (int t = 0; t < 2; t++) v = fmaxf(v, a[(c * 12 + 2 * i + u) * 12 + 2 * j + t]);
        p[(c * 6 + i) * 6 + j] = v;
      }
  ref_block(m, "block1", p, 16, 6, 6, 16, 1, b1, &h, &w);
  ref_block(m, "block2", b1, 16, 6, 6, 32, 2, b2, &h, &w);
  const float *w1 = pw(m, "fc1.weight"), *bb1 = pw(m, "fc1.bias"), *w2 = pw(m, "head.weight"), *bb2 = pw(m, "head.bias");
  for (int o = 0; o < 64; o++) { /* torch.flatten(x, 1): b2 is already (C, H, W) */
    double acc = bb1[o];
    for (int i = 0; i < 288; i++) acc += (double)w1[o * 288 + i] * b2[i];
    f[o] = acc > 0.0 ? (float)acc : 0.0f;
  }
  for (int o = 0; o < 7; o++) {
    double acc = bb2[o];
    for (int i = 0; i < 64; i++) acc += (double)w2[o * 64 + i] * f[i];
    logits[o] = (float)acc;
  }
}

/* The file's model computes what its PyTorch twin computes: after a few SGD steps (so that
 * running statistics and weights are not the initial ones), eval-mode logits in tempo mode
 * with 2 workers against the naive reference. */
static void test_small_cnn_is_its_twin(void **state) {
  (void)state;
  enum { B = 3 };
  tempo_mm *mm = test_make_mm(TEMPO_MODE_TEMPO, 2, 9, NULL);
  tempo_model *m = small_cnn(mm, B);
  const size_t in_n = (size_t)B * 3 * 12 * 12;
  float *x = malloc(in_n * sizeof *x), logits[B * 7], dlogits[B * 7], want[7];
  int y[B] = {1, 4, 6};
  tempo_rng r;
  tempo_rng_seed(&r, 21, 0);
  for (int s = 0; s < 3; s++) {
    test_randn(x, in_n, &r);
    sgd_step(m, x, y, B, logits, dlogits);
  }
  m->training = false;
  tempo_mm_set_training(mm, false);
  test_randn(x, in_n, &r);
  assert_int_equal(m->ops->forward(m, x, B, logits), TEMPO_STATUS_OK);
  tempo_mm_step_end(mm);
  for (int b = 0; b < B; b++) {
    ref_small_cnn(m, x + (size_t)b * 3 * 144, want);
    for (int k = 0; k < 7; k++)
      if (fabsf(logits[b * 7 + k] - want[k]) > 1e-3f * (1.0f + fabsf(want[k])))
        fail_msg("sample %d class %d: %g from the file's model, %g from the PyTorch-semantics reference", b, k,
                 logits[b * 7 + k], want[k]);
  }
  free(x);
  tempo_model_free(m);
  tempo_mm_free(mm);
}

/* flatten after a conv is PyTorch's (C, H, W) order: with identity weights the logits are the
 * input itself, in NCHW order. */
static void test_flatten_order(void **state) {
  (void)state;
  static const char text[] = "[net]\nname = id\ninput = 2x2x3\nclasses = 12\n"
                             "[conv]\nname = c\nfilters = 2\nsize = 1\nbias = false\n"
                             "[flatten]\n[linear]\nname = fc\nbias = false\n";
  tempo_net *net = NULL;
  assert_int_equal(tempo_net_parse(text, sizeof text - 1, "id.net", &net), TEMPO_STATUS_OK);
  tempo_mm *mm = test_make_mm(TEMPO_MODE_LOCAL, 1, 1, NULL);
  tempo_model_config cfg = {.in_c = 2, .in_h = 2, .in_w = 3, .num_classes = 12, .max_batch = 1};
  tempo_model *m = NULL;
  assert_int_equal(tempo_model_create_net(net, &cfg, mm, 1, &m), TEMPO_STATUS_OK);
  float *cw = tempo_params_ptr(&m->params, tempo_params_find(&m->params, "c.weight"));
  float *fw = tempo_params_ptr(&m->params, tempo_params_find(&m->params, "fc.weight"));
  memset(cw, 0, 4 * sizeof *cw);
  cw[0] = cw[3] = 1.0f;
  memset(fw, 0, 144 * sizeof *fw);
  for (int i = 0; i < 12; i++) fw[i * 12 + i] = 1.0f;
  float x[12], logits[12];
  for (int i = 0; i < 12; i++) x[i] = (float)(i + 1);
  assert_int_equal(m->ops->forward(m, x, 1, logits), TEMPO_STATUS_OK);
  tempo_mm_step_end(mm);
  assert_memory_equal(x, logits, sizeof x);
  tempo_model_free(m);
  tempo_mm_free(mm);
  tempo_net_free(net);
}

/* ------------------------------------------------------------------ malformed files */
typedef struct {
  const char *file;
  tempo_status status;
  const char *where; /* "LINE:COLUMN: reason", after "tests/fixtures/bad-nets/FILE:" */
} bad_case;

static const bad_case bad_cases[] = {
    {"01-no-net.net", TEMPO_STATUS_CORRUPT, "1:1: the file must start with [net] (its name, input and classes)"},
    {"02-unknown-key.net", TEMPO_STATUS_CORRUPT,
     "6:1: unknown key 'fliters' in [conv] (it takes: name, filters, size, stride, pad, bias)"},
    {"03-duplicate-key.net", TEMPO_STATUS_CORRUPT, "6:1: 'size' is set twice in this [conv]"},
    {"04-huge-number.net", TEMPO_STATUS_CORRUPT, "5:11: filters must be from 1 to 65536, got 99999999999999"},
    {"05-unknown-section.net", TEMPO_STATUS_CORRUPT, "3:1: unknown section [convolution] (sections: net, conv,"},
    {"06-missing-size.net", TEMPO_STATUS_CORRUPT, "3:1: [conv] needs 'size'"},
    {"07-unclosed-residual.net", TEMPO_STATUS_CORRUPT, "3:1: this [residual] block is never closed with [end]"},
    {"08-end-outside.net", TEMPO_STATUS_CORRUPT, "6:1: [end] outside a [residual] block"},
    {"09-residual-shapes.net", TEMPO_STATUS_INVALID_ARGUMENT,
     "7:1: [residual] the main branch gives a 16x8x8 feature map but the identity shortcut gives a 8x8x8 feature "
     "map: add a projection [shortcut]"},
    {"10-linear-on-map.net", TEMPO_STATUS_INVALID_ARGUMENT,
     "7:1: [linear] needs features or tokens, not a 8x8x8 feature map: put [flatten] or [gap] before it"},
    {"11-empty-output.net", TEMPO_STATUS_INVALID_ARGUMENT,
     "4:1: [conv] size 5, stride 9, pad 0 leaves no output on the input image 1x4x4"},
    {"12-two-values.net", TEMPO_STATUS_CORRUPT, "2:9: one value per key"},
    {"13-bad-bool.net", TEMPO_STATUS_CORRUPT, "5:8: bias must be true or false, got 'yes'"},
    {"14-no-head.net", TEMPO_STATUS_CORRUPT, "5:1: the last layer must be the [linear] head (it is [relu])"},
    {"15-bad-input.net", TEMPO_STATUS_CORRUPT, "3:9: input must be CHANNELSxHEIGHTxWIDTH (as 3x32x32), got '3x32'"},
    {"16-unclosed-header.net", TEMPO_STATUS_CORRUPT, "3:1: a section header needs its closing ']'"},
    {"17-control-char.net", TEMPO_STATUS_CORRUPT, "4:1: control character 0x01 (a network file is plain text)"},
    {"18-patch-divides.net", TEMPO_STATUS_INVALID_ARGUMENT, "4:1: [patch_embed] patch 4 does not divide the 30x30 image"},
    {"19-heads-divide.net", TEMPO_STATUS_INVALID_ARGUMENT, "6:1: [encoder] 3 heads do not divide the width 16"},
    {"20-dropout-range.net", TEMPO_STATUS_CORRUPT, "4:5: p must be at least 0 and below 1, got 1.5"},
    {"21-head-classes.net", TEMPO_STATUS_INVALID_ARGUMENT,
     "6:1: [linear] the head has out = 5 but the network has 7 classes"},
    {"22-duplicate-name.net", TEMPO_STATUS_CORRUPT, "7:1: name 'fc' is already used by the layer at line 4"},
    {"23-hex-number.net", TEMPO_STATUS_CORRUPT, "5:7: out needs a whole number, got '0x10'"},
    {"24-no-name.net", TEMPO_STATUS_CORRUPT, "1:1: [net] needs 'name' (the model's name in checkpoints)"},
    {"25-empty.net", TEMPO_STATUS_CORRUPT, "1:1: no [net] section: not a network file"},
};

static void test_bad_corpus(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
    char path[128], want[512];
    snprintf(path, sizeof path, "tests/fixtures/bad-nets/%s", bad_cases[i].file);
    snprintf(want, sizeof want, "%s:%s", path, bad_cases[i].where);
    tempo_net *net = (tempo_net *)&net; /* must be reset to NULL */
    const tempo_status st = tempo_net_parse_file(path, &net);
    if (st != bad_cases[i].status || strncmp(tempo_errmsg(), want, strlen(want)) != 0)
      fail_msg("%s: got status %d '%s', want %d '%s'", path, st, tempo_errmsg(), bad_cases[i].status, want);
    assert_null(net);
  }
  tempo_net *net = NULL;
  assert_int_equal(tempo_net_parse_file("tests/fixtures/bad-nets/no-such-file.net", &net), TEMPO_STATUS_IO);
}

static tempo_status parse_str(const char *s, size_t len) {
  tempo_net *net = NULL;
  tempo_status st = tempo_net_parse(s, len, "gen.net", &net);
  tempo_net_free(net);
  return st;
}

/* Generated inputs: bounds, then every truncation and random mutations of a real file; each
 * parses or fails with a FILE:LINE:COLUMN message, without crashing (ASan in `make check`). */
static void test_generated_bad(void **state) {
  (void)state;
  /* a line past TEMPO_NET_LINE_MAX */
  char *big = malloc(TEMPO_NET_FILE_MAX + 64);
  int n = snprintf(big, 64, "[net]\nname = a\n# ");
  memset(big + n, 'x', TEMPO_NET_LINE_MAX);
  strcpy(big + n + TEMPO_NET_LINE_MAX, "\n[flatten]\n[linear]\n");
  assert_int_equal(parse_str(big, strlen(big)), TEMPO_STATUS_CORRUPT);
  assert_non_null(strstr(tempo_errmsg(), "gen.net:3:1025: the line is longer than 1024 characters"));
  /* more layers than TEMPO_NET_LAYERS_MAX */
  size_t len = (size_t)snprintf(big, 64, "[net]\nname = a\n");
  for (int i = 0; i <= TEMPO_NET_LAYERS_MAX; i++) len += (size_t)snprintf(big + len, 16, "[relu]\n");
  assert_int_equal(parse_str(big, len), TEMPO_STATUS_CORRUPT);
  assert_non_null(strstr(tempo_errmsg(), "more than 4096 layers"));
  /* larger than TEMPO_NET_FILE_MAX */
  memset(big, '#', TEMPO_NET_FILE_MAX + 1);
  assert_int_equal(parse_str(big, TEMPO_NET_FILE_MAX + 1), TEMPO_STATUS_CORRUPT);
  assert_non_null(strstr(tempo_errmsg(), "gen.net:1:1: the file is larger than 1048576 bytes"));
  free(big);
  /* a NUL byte, a non-ASCII byte outside a comment (fine inside one) */
  static const char nul[] = "[net]\nname = a\0\n[flatten]\n[linear]\n";
  assert_int_equal(parse_str(nul, sizeof nul - 1), TEMPO_STATUS_CORRUPT);
  assert_non_null(strstr(tempo_errmsg(), "gen.net:2:9: control character 0x00"));
  static const char utf[] = "[net]\nname = caf\xc3\xa9\n[flatten]\n[linear]\n";
  assert_int_equal(parse_str(utf, sizeof utf - 1), TEMPO_STATUS_CORRUPT);
  assert_non_null(strstr(tempo_errmsg(), "gen.net:2:11: byte 0xc3: only ASCII outside comments"));
  static const char utf_ok[] = "[net]\nname = a # caf\xc3\xa9\n[flatten]\n[linear]\n";
  assert_int_equal(parse_str(utf_ok, sizeof utf_ok - 1), TEMPO_STATUS_OK);
  /* shapes too large are refused before anything is allocated */
  static const char wide[] = "[net]\nname = a\ninput = 64x65536x65536\n[flatten]\n[linear]\n";
  assert_int_equal(parse_str(wide, sizeof wide - 1), TEMPO_STATUS_MISMATCH);
  static const char many[] = "[net]\nname = a\ninput = 3x64x64\n[conv]\nfilters = 65536\nsize = 64\npad = 32\n[gap]\n"
                             "[linear]\n";
  assert_int_equal(parse_str(many, sizeof many - 1), TEMPO_STATUS_INVALID_ARGUMENT);
  /* nested blocks, blocks without a main branch, a shortcut that is not a projection */
  static const char nest[] = "[net]\nname = a\n[residual]\n[residual]\n[end]\n[end]\n[linear]\n";
  assert_int_equal(parse_str(nest, sizeof nest - 1), TEMPO_STATUS_CORRUPT);
  assert_non_null(strstr(tempo_errmsg(), "gen.net:4:1: [residual] inside the [residual] block opened at line 3"));
  static const char empty[] = "[net]\nname = a\n[residual]\n[end]\n[flatten]\n[linear]\n";
  assert_int_equal(parse_str(empty, sizeof empty - 1), TEMPO_STATUS_CORRUPT);
  assert_non_null(strstr(tempo_errmsg(), "gen.net:4:1: the [residual] block at line 3 has no main branch"));
  static const char sc[] = "[net]\nname = a\ninput = 3x8x8\n[conv]\nfilters = 4\nsize = 3\n[residual]\n[relu]\n"
                           "[shortcut]\n[relu]\n[end]\n[gap]\n[linear]\n";
  assert_int_equal(parse_str(sc, sizeof sc - 1), TEMPO_STATUS_INVALID_ARGUMENT);
  assert_non_null(strstr(tempo_errmsg(), "gen.net:10:1: [relu] a shortcut branch starts with a [conv]"));

  /* every truncation and 2000 random byte mutations of small-cnn.net */
  uint8_t *text = NULL;
  size_t tl = 0;
  assert_int_equal(tempo_read_file("nets/examples/small-cnn.net", TEMPO_NET_FILE_MAX, &text, &tl), TEMPO_STATUS_OK);
  assert_int_equal(parse_str((const char *)text, tl), TEMPO_STATUS_OK);
  int ok = 0, failed = 0;
  for (size_t k = 0; k < tl; k++) {
    const tempo_status st = parse_str((const char *)text, k);
    if (st == TEMPO_STATUS_OK) {
      ok++;
    } else {
      failed++;
      assert_true(st == TEMPO_STATUS_CORRUPT || st == TEMPO_STATUS_INVALID_ARGUMENT);
      assert_non_null(strstr(tempo_errmsg(), "gen.net:"));
    }
  }
  assert_true(failed > 0 && ok > 0); /* cut after a complete head: still a network */
  uint8_t *mut = malloc(tl);
  tempo_rng r;
  tempo_rng_seed(&r, 99, 0);
  for (int it = 0; it < 2000; it++) {
    memcpy(mut, text, tl);
    const int edits = 1 + (int)(tempo_rng_u64(&r) % 4);
    for (int e = 0; e < edits; e++) mut[tempo_rng_u64(&r) % tl] = (uint8_t)(tempo_rng_u64(&r) & 0xff);
    const tempo_status st = parse_str((const char *)mut, tl);
    assert_true(st == TEMPO_STATUS_OK || st == TEMPO_STATUS_CORRUPT || st == TEMPO_STATUS_INVALID_ARGUMENT ||
                st == TEMPO_STATUS_MISMATCH);
    if (st) assert_non_null(strstr(tempo_errmsg(), "gen.net"));
  }
  free(mut);
  free(text);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bad_corpus),        cmocka_unit_test(test_generated_bad),
      cmocka_unit_test(test_builtin_texts),     cmocka_unit_test(test_flatten_order),
      cmocka_unit_test(test_small_cnn_names),   cmocka_unit_test(test_small_cnn_gradient),
      cmocka_unit_test(test_small_cnn_is_its_twin),
      cmocka_unit_test(test_builtins_local),    cmocka_unit_test(test_builtins_tempo),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
