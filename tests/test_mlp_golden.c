/* test_mlp_golden.c - the MLP against PyTorch (tests/golden/make_mlp.py): logits, loss, every
 * gradient of one step, and the losses of 5 SGD steps (lr 0.1, momentum 0.9).
 * Tolerances: logits and gradients within 1e-5 * max|value| + 1e-6 (float32 with different
 * summation orders); losses within 1e-5 relative. */
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
#include "tempo/weights.h"
#include "test_util.h"


static void test_mlp_matches_pytorch(void **state) {
  (void)state;
  tempo_st_file *f;
  assert_int_equal(tempo_st_open("tests/golden/mlp.safetensors", &f), TEMPO_STATUS_OK);
  tempo_mm_config mc;
  tempo_mm_config_default(&mc);
  mc.mode = TEMPO_MODE_LOCAL;
  tempo_mm *mm;
  assert_int_equal(tempo_mm_create(&mc, &mm), TEMPO_STATUS_OK);
  tempo_model_config cfg = {.name = "mlp", .in_c = 1, .in_h = 6, .in_w = 6, .num_classes = 10, .max_batch = 8};
  tempo_model *m;
  assert_int_equal(tempo_model_create(&cfg, mm, 1, &m), TEMPO_STATUS_OK);
  int loaded;
  assert_int_equal(tempo_params_load_st(&m->params, f, true, &loaded), TEMPO_STATUS_OK);
  assert_int_equal(loaded, 6);

  float x[8 * 36], logits[80], want[80], dlogits[80], loss_want, losses_want[5];
  int labels[8];
  int32_t l32[8];
  assert_int_equal(tempo_st_read_f32(tempo_st_get(f, "x"), x, 8 * 36), TEMPO_STATUS_OK);
  memcpy(l32, tempo_st_get(f, "labels")->data, sizeof l32);
  for (int i = 0; i < 8; i++) labels[i] = l32[i];
  assert_int_equal(tempo_st_read_f32(tempo_st_get(f, "logits"), want, 80), TEMPO_STATUS_OK);
  assert_int_equal(tempo_st_read_f32(tempo_st_get(f, "loss"), &loss_want, 1), TEMPO_STATUS_OK);
  assert_int_equal(tempo_st_read_f32(tempo_st_get(f, "sgd_losses"), losses_want, 5), TEMPO_STATUS_OK);

  tempo_params_zero_grad(&m->params);
  assert_int_equal(m->ops->forward(m, x, 8, logits), TEMPO_STATUS_OK);
  assert_close("logits", logits, want, 80, 1e-5);
  double loss = tempo_softmax_xent(logits, labels, 8, 10, dlogits, NULL);
  assert_float_equal(loss, loss_want, 1e-5 * loss_want);
  assert_int_equal(m->ops->backward(m, dlogits, 8), TEMPO_STATUS_OK);
  for (int i = 0; i < m->params.n; i++) {
    const tempo_param_info *in = &m->params.info[i];
    char name[96];
    snprintf(name, sizeof name, "grad.%s", in->name);
    float *g = malloc(in->count * sizeof(float));
    assert_int_equal(tempo_st_read_f32(tempo_st_get(f, name), g, in->count), TEMPO_STATUS_OK);
    assert_close(name, tempo_params_grad(&m->params, i), g, in->count, 1e-5);
    free(g);
  }

  /* 5 SGD steps from the same initial weights */
  assert_int_equal(tempo_params_load_st(&m->params, f, true, NULL), TEMPO_STATUS_OK);
  golden_sgd_steps("mlp", m, x, labels, 8, 10, losses_want, 1e-5, logits, dlogits);
  tempo_model_free(m);
  tempo_mm_free(mm);
  tempo_st_close(f);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_mlp_matches_pytorch)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
