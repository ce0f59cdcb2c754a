/* test_resnet.c - the reference ResNets build with the PyTorch twin's parameter counts and
 * state_dict names (tools/peer_bench.py, 3x32x32 inputs), adapt to 1x28x28 inputs, reject
 * bad batches, and resnet20 on 1x28x28 (28 -> 14 -> 7 pixels, odd grids) fits a fixed
 * batch of 8 with SGD: the loss falls below half its first value in 12 steps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tempo/layers.h"
#include "tempo/model.h"
#include "tempo/optim.h"

static tempo_mm *local_mm(void) {
  tempo_mm_config mc;
  tempo_mm_config_default(&mc);
  mc.mode = TEMPO_MODE_LOCAL;
  tempo_mm *mm;
  assert_int_equal(tempo_mm_create(&mc, &mm), TEMPO_STATUS_OK);
  return mm;
}

static tempo_model *build(tempo_mm *mm, const char *name, int c, int hw, int max_batch) {
  tempo_model_config cfg = {.in_c = c, .in_h = hw, .in_w = hw, .num_classes = 10, .max_batch = max_batch};
  snprintf(cfg.name, sizeof cfg.name, "%s", name);
  tempo_model *m = NULL;
  assert_int_equal(tempo_model_create(&cfg, mm, 3, &m), TEMPO_STATUS_OK);
  return m;
}

/* Trainable parameters and state floats (the registry's counts include alignment padding). */
static void counts(const tempo_model *m, size_t *trainable, size_t *state) {
  *trainable = *state = 0;
  for (int i = 0; i < m->params.n; i++)
    *((m->params.info[i].flags & TEMPO_PARAM_STATE) ? state : trainable) += m->params.info[i].count;
}

static void expect(const char *name, int c, int hw, size_t want, size_t want_state) {
  tempo_mm *mm = local_mm();
  tempo_model *m = build(mm, name, c, hw, 2);
  size_t n, st;
  counts(m, &n, &st);
  if (n != want || st != want_state)
    fail_msg("%s %dx%dx%d: %zu parameters, %zu state (want %zu, %zu)", name, c, hw, hw, n, st, want, want_state);
  tempo_model_free(m);
  tempo_mm_free(mm);
}

static void test_parameter_counts(void **state) {
  (void)state;
  /* the twin's counts; state = 2 x BN channels (running mean and variance) */
  expect("resnet20", 3, 32, 272474, 2 * 784);
  expect("resnet18", 3, 32, 11173962, 2 * 4800);
  expect("resnet50", 3, 32, 23520842, 2 * 26560);
  /* 1x28x28: only the stem changes (3 -> 1 input channel of a 3x3 conv) */
  expect("resnet20", 1, 28, 272474 - 2 * 16 * 9, 2 * 784);
  expect("resnet18", 1, 28, 11173962 - 2 * 64 * 9, 2 * 4800);
}

static void test_names(void **state) {
  (void)state;
  tempo_mm *mm = local_mm();
  tempo_model *m = build(mm, "resnet50", 3, 32, 1);
  static const char *const names[] = {
      "stem.0.weight", "stem.1.weight", "stem.1.running_var", "layers.0.conv1.weight", "layers.0.bn3.bias",
      "layers.0.shortcut.0.weight", "layers.0.shortcut.1.running_mean", "layers.3.conv2.weight",
      "layers.15.conv3.weight", "fc.weight", "fc.bias"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (tempo_params_find(&m->params, names[i]) < 0) fail_msg("resnet50 has no %s", names[i]);
  assert_int_equal(tempo_params_find(&m->params, "layers.1.shortcut.0.weight"), -1); /* identity */
  assert_int_equal(tempo_params_find(&m->params, "layers.16.conv1.weight"), -1);
  const int w = tempo_params_find(&m->params, "layers.3.conv2.weight");
  assert_int_equal(m->params.info[w].ndim, 4);
  assert_int_equal(m->params.info[w].shape[0], 128);
  assert_int_equal(m->params.info[w].shape[1], 128);
  assert_int_equal(m->params.info[w].shape[2], 3);
  /* Kaiming fan_out: std sqrt(2 / (128 * 9)) = 0.0417 over 147456 weights */
  const float *p = tempo_params_ptr(&m->params, w);
  double s2 = 0;
  for (size_t i = 0; i < m->params.info[w].count; i++) s2 += (double)p[i] * p[i];
  assert_float_equal(sqrt(s2 / (double)m->params.info[w].count), sqrt(2.0 / (128 * 9)), 1e-3);
  const float *rv = tempo_params_ptr(&m->params, tempo_params_find(&m->params, "layers.3.bn2.running_var"));
  assert_float_equal(rv[0], 1.0f, 0);
  tempo_model_free(m);
  tempo_mm_free(mm);
}

static void test_bad_batch(void **state) {
  (void)state;
  tempo_mm *mm = local_mm();
  tempo_model *m = build(mm, "resnet-test", 3, 8, 2);
  float x[3 * 3 * 8 * 8] = {0}, logits[30];
  assert_int_equal(m->ops->forward(m, x, 3, logits), TEMPO_STATUS_INVALID_ARGUMENT);
  assert_int_equal(m->ops->forward(m, x, 0, logits), TEMPO_STATUS_INVALID_ARGUMENT);
  assert_int_equal(m->ops->forward(m, x, 2, logits), TEMPO_STATUS_OK);
  assert_int_equal(m->ops->backward(m, logits, 1), TEMPO_STATUS_INVALID_ARGUMENT);
  tempo_model_free(m);
  tempo_mm_free(mm);
}

static void test_resnet20_fits_a_batch(void **state) {
  (void)state;
  enum { B = 8, IMG = 28 * 28 };
  tempo_mm *mm = local_mm();
  tempo_model *m = build(mm, "resnet20", 1, 28, B);
  static float x[B * IMG];
  float logits[B * 10], dlogits[B * 10];
  int labels[B];
  tempo_rng rng;
  tempo_rng_seed(&rng, 9, 0);
  for (int i = 0; i < B * IMG; i++) x[i] = (float)tempo_rng_normal(&rng);
  for (int i = 0; i < B; i++) labels[i] = i % 10;
  tempo_optim_config oc;
  tempo_optim_config_default(&oc, TEMPO_OPTIM_SGD);
  oc.lr = 0.05f;
  oc.weight_decay = 0.0f;
  tempo_optim opt;
  assert_int_equal(tempo_optim_init(&opt, &oc, &m->params), TEMPO_STATUS_OK);
  tempo_mm_set_training(mm, true);
  double first = 0, loss = 0;
  for (int s = 0; s < 12; s++) {
    tempo_params_zero_grad(&m->params);
    assert_int_equal(m->ops->forward(m, x, B, logits), TEMPO_STATUS_OK);
    loss = tempo_softmax_xent(logits, labels, B, 10, dlogits, NULL);
    assert_true(isfinite(loss));
    if (s == 0) first = loss;
    assert_int_equal(m->ops->backward(m, dlogits, B), TEMPO_STATUS_OK);
    assert_int_equal(tempo_optim_step(&opt, &m->params), TEMPO_STATUS_OK);
    tempo_mm_step_end(mm);
  }
  if (!(loss < 0.5 * first)) fail_msg("loss %g after 12 steps, first %g", loss, first);
  tempo_optim_free(&opt);
  tempo_model_free(m);
  tempo_mm_free(mm);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parameter_counts),
      cmocka_unit_test(test_names),
      cmocka_unit_test(test_bad_batch),
      cmocka_unit_test(test_resnet20_fits_a_batch),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
