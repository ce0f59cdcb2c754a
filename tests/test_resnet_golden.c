/* test_resnet_golden.c - the ResNets against PyTorch (tests/golden/make_resnet.py: the twin's
 * CIFAR ResNet in two small shapes, "resnet-test" BasicBlocks on 3x9x9 and
 * "resnet-test-bneck" Bottlenecks on 1x10x10). Per shape: eval-mode logits (running
 * statistics), train-mode logits, loss, every gradient (conv, BN, fc), the BN running
 * statistics after the forward, and the losses of 5 SGD steps (lr 0.1, momentum 0.9).
 * Tolerances: logits, gradients and running statistics within 1e-4 * max|value| + 1e-6
 * (float32 with different summation orders; batch norm over a few dozen rows amplifies
 * rounding; the largest error seen is 5e-6 relative, in a BN bias gradient); losses
 * within 1e-5 relative (SGD losses 1e-4: five steps compound the differences). The same
 * checks, same tolerances, run in tempo mode (obfuscated products on in-process workers;
 * its errors were below 1e-5 too). */
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
#include "tempo/safetensors.h"
#include "test_util.h"

#define C 10
#define MAXB 4


static const tempo_st_tensor *get(const tempo_st_file *f, const char *prefix, const char *name) {
  char full[160];
  snprintf(full, sizeof full, "%s%s", prefix, name);
  const tempo_st_tensor *t = tempo_st_get(f, full);
  if (!t) fail_msg("fixture has no tensor %s", full);
  return t;
}

static void read_into(const tempo_st_file *f, const char *prefix, const char *name, float *out, size_t n) {
  assert_int_equal(tempo_st_read_f32(get(f, prefix, name), out, n), TEMPO_STATUS_OK);
}

/* Loads every registry tensor from "<prefix><name>". */
static void load_weights(tempo_model *m, const tempo_st_file *f, const char *prefix) {
  for (int i = 0; i < m->params.n; i++) {
    const tempo_param_info *in = &m->params.info[i];
    read_into(f, prefix, in->name, tempo_params_ptr(&m->params, i), in->count);
  }
}

/* Trainable parameters (the registry's count also holds alignment padding). */
static size_t trainable_count(const tempo_model *m) {
  size_t n = 0;
  for (int i = 0; i < m->params.n; i++)
    if (!(m->params.info[i].flags & TEMPO_PARAM_STATE)) n += m->params.info[i].count;
  return n;
}

static float *read_alloc(const tempo_st_file *f, const char *prefix, const char *name, size_t n) {
  float *p = malloc(n * sizeof *p);
  assert_non_null(p);
  read_into(f, prefix, name, p, n);
  return p;
}

static void check_variant(const char *model, const char *prefix, int batch, int c, int h, int w, size_t nparams,
                          tempo_mode mode, double tol) {
  tempo_st_file *f;
  assert_int_equal(tempo_st_open("tests/golden/resnet.safetensors", &f), TEMPO_STATUS_OK);
  tempo_mm_config mc;
  tempo_mm_config_default(&mc);
  mc.mode = mode;
  mc.seed = 77;
  tempo_mm *mm;
  assert_int_equal(tempo_mm_create(&mc, &mm), TEMPO_STATUS_OK);
  tempo_model_config cfg = {.in_c = c, .in_h = h, .in_w = w, .num_classes = C, .max_batch = MAXB};
  snprintf(cfg.name, sizeof cfg.name, "%s", model);
  tempo_model *m;
  assert_int_equal(tempo_model_create(&cfg, mm, 1, &m), TEMPO_STATUS_OK);
  assert_int_equal(trainable_count(m), nparams); /* printed by make_resnet.py */
  load_weights(m, f, prefix);

  const size_t xn = (size_t)batch * c * h * w;
  float *x = read_alloc(f, prefix, "x", xn);
  float logits[MAXB * C], dlogits[MAXB * C], want[MAXB * C], loss_want, losses_want[5];
  int labels[MAXB];
  int32_t l32[MAXB];
  const tempo_st_tensor *lt = get(f, prefix, "labels");
  assert_int_equal(lt->nbytes, (size_t)batch * sizeof(int32_t));
  memcpy(l32, lt->data, lt->nbytes);
  for (int i = 0; i < batch; i++) labels[i] = l32[i];
  read_into(f, prefix, "loss", &loss_want, 1);
  read_into(f, prefix, "sgd_losses", losses_want, 5);

  /* eval mode: running statistics */
  m->training = false;
  assert_int_equal(m->ops->forward(m, x, batch, logits), TEMPO_STATUS_OK);
  read_into(f, prefix, "eval_logits", want, (size_t)batch * C);
  assert_close("eval_logits", logits, want, (size_t)batch * C, tol);

  /* train mode: batch statistics, running statistics updated, every gradient */
  m->training = true;
  tempo_mm_set_training(mm, true);
  tempo_params_zero_grad(&m->params);
  assert_int_equal(m->ops->forward(m, x, batch, logits), TEMPO_STATUS_OK);
  read_into(f, prefix, "logits", want, (size_t)batch * C);
  assert_close("logits", logits, want, (size_t)batch * C, tol);
  double loss = tempo_softmax_xent(logits, labels, batch, C, dlogits, NULL);
  assert_float_equal(loss, loss_want, 0.1 * tol * loss_want);
  assert_int_equal(m->ops->backward(m, dlogits, batch), TEMPO_STATUS_OK);
  int grads = 0, stats = 0;
  for (int i = 0; i < m->params.n; i++) {
    const tempo_param_info *in = &m->params.info[i];
    char name[96];
    const bool state = (in->flags & TEMPO_PARAM_STATE) != 0;
    snprintf(name, sizeof name, "%s.%s", state ? "after" : "grad", in->name);
    float *ref = read_alloc(f, prefix, name, in->count);
    assert_close(name, state ? tempo_params_ptr(&m->params, i) : tempo_params_grad(&m->params, i), ref, in->count,
                 tol);
    free(ref);
    state ? stats++ : grads++;
  }
  assert_true(stats >= 2 && grads > stats);
  tempo_mm_step_end(mm);

  /* 5 SGD steps from the same initial weights */
  load_weights(m, f, prefix);
  golden_sgd_steps(model, m, x, labels, batch, C, losses_want, tol, logits, dlogits);
  free(x);
  tempo_model_free(m);
  tempo_mm_free(mm);
  tempo_st_close(f);
}

static void test_resnet_basic_matches_pytorch(void **state) {
  (void)state;
  check_variant("resnet-test", "basic/", 4, 3, 9, 9, 2638, TEMPO_MODE_LOCAL, 1e-4);
}

static void test_resnet_bottleneck_matches_pytorch(void **state) {
  (void)state;
  check_variant("resnet-test-bneck", "bneck/", 3, 1, 10, 10, 794, TEMPO_MODE_LOCAL, 1e-4);
}

/* The same through the offload engine (MM-obfuscated products on worker threads, verified
 * and decrypted by the master): checks that the layers keep every product's X and W
 * unchanged from its forward to its backward, as the engine requires. */
static void test_resnet_tempo_mode(void **state) {
  (void)state;
  check_variant("resnet-test", "basic/", 4, 3, 9, 9, 2638, TEMPO_MODE_TEMPO, 1e-4);
  check_variant("resnet-test-bneck", "bneck/", 3, 1, 10, 10, 794, TEMPO_MODE_TEMPO, 1e-4);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_resnet_basic_matches_pytorch),
      cmocka_unit_test(test_resnet_bottleneck_matches_pytorch),
      cmocka_unit_test(test_resnet_tempo_mode),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
