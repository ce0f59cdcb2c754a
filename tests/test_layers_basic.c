/* test_layers_basic.c - linear, ReLU and softmax cross-entropy: finite-difference gradient
 * checks on tiny shapes, and the loss against a hand-computed value. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>

#include "gradcheck.h"
#include "tempo/layers.h"

typedef struct {
  tempo_mm *mm;
  tempo_params p;
  tempo_linear l;
  float x[5 * 7], y[5 * 3], r[5 * 3];
  int rows;
} lin_ctx;

static double lin_loss(void *vc) {
  lin_ctx *c = vc;
  assert_int_equal(tempo_linear_forward(&c->l, c->mm, &c->p, c->x, c->rows, c->y), TEMPO_STATUS_OK);
  tempo_relu_forward(c->y, c->y, (size_t)c->rows * 3);
  return gradcheck_project(c->y, c->r, (size_t)c->rows * 3);
}

static void test_linear_relu_gradients(void **state) {
  (void)state;
  lin_ctx c = {.rows = 5};
  tempo_mm_config cfg;
  tempo_mm_config_default(&cfg);
  cfg.mode = TEMPO_MODE_LOCAL;
  assert_int_equal(tempo_mm_create(&cfg, &c.mm), TEMPO_STATUS_OK);
  tempo_params_init(&c.p);
  assert_int_equal(tempo_linear_declare(&c.l, &c.p, "fc", 7, 3, true), TEMPO_STATUS_OK);
  assert_int_equal(tempo_params_finalize(&c.p), TEMPO_STATUS_OK);
  tempo_rng rng;
  tempo_rng_seed(&rng, 1, 0);
  tempo_linear_init_default(&c.l, &c.p, &rng);
  for (int i = 0; i < 35; i++) c.x[i] = (float)tempo_rng_normal(&rng);
  for (int i = 0; i < 15; i++) c.r[i] = (float)tempo_rng_normal(&rng);

  /* analytic gradients */
  lin_loss(&c);
  float dy[15], dx[35];
  for (int i = 0; i < 15; i++) dy[i] = c.r[i];
  tempo_relu_backward(c.y, dy, dy, 15);
  tempo_params_zero_grad(&c.p);
  assert_int_equal(tempo_linear_backward(&c.l, c.mm, &c.p, c.x, 5, dy, dx), TEMPO_STATUS_OK);

  assert_int_equal(gradcheck("x", lin_loss, &c, c.x, dx, 35, 1e-3, 1e-3, 1e-2), 0);
  assert_int_equal(gradcheck("W", lin_loss, &c, tempo_params_ptr(&c.p, c.l.w_idx),
                             tempo_params_grad(&c.p, c.l.w_idx), 21, 1e-3, 1e-3, 1e-2), 0);
  assert_int_equal(gradcheck("b", lin_loss, &c, tempo_params_ptr(&c.p, c.l.b_idx),
                             tempo_params_grad(&c.p, c.l.b_idx), 3, 1e-3, 1e-3, 1e-2), 0);
  tempo_params_free(&c.p);
  tempo_mm_free(c.mm);
}

typedef struct {
  float z[3 * 4];
  int labels[3];
} xent_ctx;

static double xent_loss(void *vc) {
  xent_ctx *c = vc;
  return tempo_softmax_xent(c->z, c->labels, 3, 4, NULL, NULL);
}

static void test_softmax_xent(void **state) {
  (void)state;
  /* logits (0, 0) label 0: loss = log 2 */
  float z2[2] = {0, 0}, d2[2];
  int l2[1] = {0}, ok;
  assert_float_equal(tempo_softmax_xent(z2, l2, 1, 2, d2, &ok), 0.6931471805599453, 1e-9);
  assert_float_equal(d2[0], -0.5f, 1e-7);
  assert_float_equal(d2[1], 0.5f, 1e-7);
  /* large logits stay finite */
  float z3[3] = {1000, -1000, 0};
  int l3[1] = {1};
  assert_float_equal(tempo_softmax_xent(z3, l3, 1, 3, NULL, &ok), 2000.0, 1e-6);
  assert_int_equal(ok, 0);

  xent_ctx c = {.labels = {0, 3, 2}};
  tempo_rng rng;
  tempo_rng_seed(&rng, 2, 0);
  for (int i = 0; i < 12; i++) c.z[i] = (float)tempo_rng_normal(&rng);
  float d[12];
  tempo_softmax_xent(c.z, c.labels, 3, 4, d, NULL);
  assert_int_equal(gradcheck("logits", xent_loss, &c, c.z, d, 12, 1e-3, 1e-4, 1e-2), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_linear_relu_gradients),
      cmocka_unit_test(test_softmax_xent),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
