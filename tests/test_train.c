/* test_train.c - checkpoints and the training loop: serialise/parse round trip, every
 * corruption rejected, wrong-model refusal, determinism for a seed, and --resume giving
 * exactly the losses of an uninterrupted run (local mode, real Fashion-MNIST). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tempo/checkpoint.h"
#include "tempo/fileio.h"
#include "tempo/model.h"
#include "tempo/train.h"
#include "test_util.h"


static tempo_model *make_mlp(tempo_mm **mm, uint64_t seed) {
  tempo_mm_config mc;
  tempo_mm_config_default(&mc);
  mc.mode = TEMPO_MODE_LOCAL;
  assert_int_equal(tempo_mm_create(&mc, mm), TEMPO_STATUS_OK);
  tempo_model_config cfg = {.name = "mlp", .in_c = 1, .in_h = 4, .in_w = 4, .num_classes = 10, .max_batch = 2};
  tempo_model *m;
  assert_int_equal(tempo_model_create(&cfg, *mm, seed, &m), TEMPO_STATUS_OK);
  return m;
}

static void test_checkpoint_round_trip_and_corruption(void **state) {
  (void)state;
  tempo_mm *mm;
  tempo_model *m = make_mlp(&mm, 7);
  tempo_optim_config oc;
  tempo_optim_config_default(&oc, TEMPO_OPTIM_ADAMW);
  tempo_optim opt;
  assert_int_equal(tempo_optim_init(&opt, &oc, &m->params), TEMPO_STATUS_OK);
  for (size_t i = 0; i < opt.state_count; i++) opt.state[i] = (float)i * 0.5f;
  opt.step = 42;
  tempo_ckpt_meta meta = {.model = "mlp", .in_c = 1, .in_h = 4, .in_w = 4, .num_classes = 10,
                          .dataset = "fashion-mnist", .seed = 9, .step = 42, .epoch = 1, .batch_in_epoch = 3,
                          .batch_size = 2, .epochs = 2, .optim = oc, .rng = {1, 2, 3, 4}};
  uint8_t *buf;
  size_t len;
  assert_int_equal(tempo_ckpt_serialize(&meta, &m->params, &opt, &buf, &len), TEMPO_STATUS_OK);

  tempo_mm *mm2;
  tempo_model *m2 = make_mlp(&mm2, 8);
  tempo_optim opt2;
  assert_int_equal(tempo_optim_init(&opt2, &oc, &m2->params), TEMPO_STATUS_OK);
  tempo_ckpt_meta got;
  assert_int_equal(tempo_ckpt_parse(buf, len, "ckpt", &got, &m2->params, &opt2), TEMPO_STATUS_OK);
  assert_memory_equal(m2->params.data, m->params.data, m->params.count * sizeof(float));
  assert_memory_equal(opt2.state, opt.state, opt.state_count * sizeof(float));
  assert_int_equal(opt2.step, 42);
  assert_int_equal(got.batch_in_epoch, 3);
  assert_int_equal(got.rng[3], 4);
  assert_string_equal(got.dataset, "fashion-mnist");
  assert_float_equal(got.optim.beta2, oc.beta2, 0);

  /* Flipping any single byte (every byte of the header, a stride through the rest) is refused. */
  for (size_t i = 0; i < len; i += (i < 400 ? 1 : 97)) {
    buf[i] ^= 0x10;
    assert_int_equal(tempo_ckpt_parse(buf, len, "ckpt", &got, &m2->params, NULL), TEMPO_STATUS_CORRUPT);
    buf[i] ^= 0x10;
  }
  for (size_t cut = 0; cut < len; cut += 1 + cut / 3)
    assert_int_equal(tempo_ckpt_parse(buf, cut, "ckpt", &got, NULL, NULL), TEMPO_STATUS_CORRUPT);

  /* A whole file (valid checksum) with an impossible position is refused, not used. */
  uint8_t *bad;
  size_t bad_len;
  tempo_ckpt_meta neg = meta;
  neg.epoch = -1;
  assert_int_equal(tempo_ckpt_serialize(&neg, &m->params, &opt, &bad, &bad_len), TEMPO_STATUS_OK);
  assert_int_equal(tempo_ckpt_parse(bad, bad_len, "ckpt", &got, NULL, NULL), TEMPO_STATUS_CORRUPT);
  assert_non_null(strstr(tempo_errmsg(), "out of range"));
  free(bad);
  neg = meta;
  neg.batch_size = 0;
  assert_int_equal(tempo_ckpt_serialize(&neg, &m->params, &opt, &bad, &bad_len), TEMPO_STATUS_OK);
  assert_int_equal(tempo_ckpt_parse(bad, bad_len, "ckpt", &got, NULL, NULL), TEMPO_STATUS_CORRUPT);
  free(bad);

  /* A checkpoint of another model shape is a mismatch, not a crash. */
  tempo_mm_config mc;
  tempo_mm_config_default(&mc);
  mc.mode = TEMPO_MODE_LOCAL;
  tempo_model_config big = {.name = "mlp", .in_c = 1, .in_h = 5, .in_w = 5, .num_classes = 10, .max_batch = 2};
  tempo_model *m3;
  assert_int_equal(tempo_model_create(&big, mm2, 1, &m3), TEMPO_STATUS_OK);
  assert_int_equal(tempo_ckpt_parse(buf, len, "ckpt", &got, &m3->params, NULL), TEMPO_STATUS_MISMATCH);
  assert_non_null(strstr(tempo_errmsg(), "wrong --model"));
  tempo_model_free(m3);

  free(buf);
  tempo_optim_free(&opt);
  tempo_optim_free(&opt2);
  tempo_model_free(m);
  tempo_model_free(m2);
  tempo_mm_free(mm);
  tempo_mm_free(mm2);
}


static void train_cfg(tempo_train_config *c, const char *out, long max_steps) {
  test_train_cfg(c, out, max_steps, 5);
}

static void test_resume_is_exact(void **state) {
  (void)state;
  char a[128], b[128], c2[128], ck[160];
  snprintf(a, sizeof a, "%s/a", tmpdir);
  snprintf(b, sizeof b, "%s/b", tmpdir);
  snprintf(c2, sizeof c2, "%s/c", tmpdir);
  tempo_train_config c;
  tempo_train_result r;
  double la[20] = {0}, la2[20] = {0}, lb[20] = {0};

  train_cfg(&c, a, 20);
  assert_int_equal(tempo_train_run(&c, &r), TEMPO_STATUS_OK);
  assert_int_equal(r.steps, 20);
  assert_int_equal(test_read_losses(a, la, 20), 20);

  /* the same seed gives the same run */
  snprintf(ck, sizeof ck, "%s/a2", tmpdir);
  train_cfg(&c, ck, 20);
  assert_int_equal(tempo_train_run(&c, &r), TEMPO_STATUS_OK);
  assert_int_equal(test_read_losses(ck, la2, 20), 20);
  assert_memory_equal(la, la2, sizeof la);

  /* 10 steps, then resume to 20 from the checkpoint */
  train_cfg(&c, b, 10);
  assert_int_equal(tempo_train_run(&c, &r), TEMPO_STATUS_OK);
  snprintf(ck, sizeof ck, "%s/checkpoint.ckpt", b);
  train_cfg(&c, c2, 20);
  c.resume = ck;
  c.seed = 999; /* ignored: the checkpoint's seed wins */
  assert_int_equal(tempo_train_run(&c, &r), TEMPO_STATUS_OK);
  assert_int_equal(r.steps, 20);
  assert_int_equal(test_read_losses(c2, lb, 20), 10);
  for (int i = 10; i < 20; i++)
    if (la[i] != lb[i]) fail_msg("step %d: uninterrupted loss %.6f, resumed %.6f", i + 1, la[i], lb[i]);

  /* resuming with another --model is refused with a clear message */
  train_cfg(&c, c2, 20);
  c.resume = ck;
  snprintf(c.model, sizeof c.model, "resnet20");
  assert_int_equal(tempo_train_run(&c, &r), TEMPO_STATUS_MISMATCH);
  assert_non_null(strstr(tempo_errmsg(), "not 'resnet20'"));

  /* eval of the final model works and is a probability */
  snprintf(ck, sizeof ck, "%s/model.ckpt", a);
  double acc, loss;
  tempo_mm_config mc;
  tempo_mm_config_default(&mc);
  mc.mode = TEMPO_MODE_LOCAL;
  assert_int_equal(tempo_eval_checkpoint(ck, NULL, &mc, 500, &acc, &loss), TEMPO_STATUS_OK);
  assert_true(acc > 0.3 && acc <= 1.0); /* 20 steps of SGD already beat chance (0.1) by far */
}

static void test_missing_dataset(void **state) {
  (void)state;
  tempo_train_config c;
  tempo_train_result r;
  char out[128];
  snprintf(out, sizeof out, "%s/m", tmpdir);
  train_cfg(&c, out, 2);
  c.data_dir = "/nonexistent/tempo-data";
  assert_int_equal(tempo_train_run(&c, &r), TEMPO_STATUS_IO);
  assert_non_null(strstr(tempo_errmsg(), "/nonexistent/tempo-data"));
}

TEST_TMPDIR_GROUP("train")

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_checkpoint_round_trip_and_corruption),
      cmocka_unit_test(test_resume_is_exact),
      cmocka_unit_test(test_missing_dataset),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
