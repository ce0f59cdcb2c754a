/* test_newcomer.c - what a newcomer trips over (issue 15), at the library level:
 *   - one NaN in loaded weights (--init-from safetensors, a checkpoint) is refused at load time
 *     with a message naming the tensor; a diverging run stops with "loss is not finite at step N";
 *   - a run ended by max_steps evaluates on the test split (unless no_eval) and its
 *     metrics.jsonl starts with a config record, every record carrying "time" and "elapsed";
 *   - misleading messages: a Tempo checkpoint, a zip or a pickle given as safetensors; shape
 *     mismatches print both shapes; F16 and BF16 safetensors are converted on import;
 *   - tempo_plot_metrics draws one polyline point per logged step. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tempo/checkpoint.h"
#include "tempo/plot.h"
#include "tempo/safetensors.h"
#include "tempo/train.h"
#include "tempo/weights.h"
#include "test_util.h"

/* The Fashion-MNIST MLP with a fresh local engine. */
static tempo_model *make_mlp(tempo_mm **mm) {
  *mm = test_make_mm(TEMPO_MODE_LOCAL, 1, 1, NULL);
  tempo_model_config mc = {.name = "mlp", .in_c = 1, .in_h = 28, .in_w = 28, .num_classes = 10, .max_batch = 4};
  tempo_model *m;
  assert_int_equal(tempo_model_create(&mc, *mm, 3, &m), TEMPO_STATUS_OK);
  return m;
}

static char *read_text(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  rewind(f);
  char *t = malloc((size_t)len + 1);
  size_t got = t ? fread(t, 1, (size_t)len, f) : 0;
  fclose(f);
  if (t) t[got] = '\0';
  return t;
}

static void write_bytes(const char *path, const void *b, size_t n) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(b, 1, n, f), n);
  assert_int_equal(fclose(f), 0);
}

static void expect_msg(const char *frag) {
  if (!strstr(tempo_errmsg(), frag)) fail_msg("'%s' not in: %s", frag, tempo_errmsg());
}

static void test_nan_in_init_weights_refused(void **state) {
  (void)state;
  tempo_mm *mm;
  tempo_model *m = make_mlp(&mm);
  const int i = tempo_params_find(&m->params, "fc2.weight");
  assert_true(i >= 0);
  tempo_params_ptr(&m->params, i)[17] = NAN;
  char st[160], out[160];
  snprintf(st, sizeof st, "%s/nan.safetensors", tmpdir);
  assert_int_equal(tempo_params_save_st(&m->params, st), TEMPO_STATUS_OK);
  /* straight through the loader */
  tempo_st_file *f;
  assert_int_equal(tempo_st_open(st, &f), TEMPO_STATUS_OK);
  assert_int_equal(tempo_params_load_st(&m->params, f, true, NULL), TEMPO_STATUS_CORRUPT);
  expect_msg("'fc2.weight'");
  expect_msg("NaN at element 17");
  tempo_st_close(f);
  /* and as --init-from: the run refuses to start, naming the file and the tensor */
  tempo_train_config c;
  tempo_train_result r;
  snprintf(out, sizeof out, "%s/nan-init", tmpdir);
  test_train_cfg(&c, out, 3, 1);
  c.init_from = st;
  assert_int_equal(tempo_train_run(&c, &r), TEMPO_STATUS_CORRUPT);
  expect_msg("fc2.weight");
  expect_msg(st);
  tempo_model_free(m);
  tempo_mm_free(mm);
}

static void test_nan_in_checkpoint_refused(void **state) {
  (void)state;
  tempo_mm *mm;
  tempo_model *m = make_mlp(&mm);
  const int i = tempo_params_find(&m->params, "fc3.bias");
  assert_true(i >= 0);
  tempo_params_ptr(&m->params, i)[2] = -INFINITY;
  tempo_optim_config oc;
  tempo_optim_config_default(&oc, TEMPO_OPTIM_SGD);
  tempo_ckpt_meta meta = {.model = "mlp", .in_c = 1, .in_h = 28, .in_w = 28, .num_classes = 10,
                          .dataset = "fashion-mnist", .seed = 1, .batch_size = 64, .epochs = 1, .optim = oc};
  char ck[160];
  snprintf(ck, sizeof ck, "%s/inf.ckpt", tmpdir);
  assert_int_equal(tempo_ckpt_save(ck, &meta, &m->params, NULL), TEMPO_STATUS_OK);
  tempo_mm_config mc;
  tempo_mm_config_default(&mc);
  mc.mode = TEMPO_MODE_LOCAL;
  double acc, loss;
  assert_int_equal(tempo_eval_checkpoint(ck, NULL, &mc, 256, &acc, &loss), TEMPO_STATUS_CORRUPT);
  expect_msg("'fc3.bias'");
  expect_msg("non-finite");
  tempo_model_free(m);
  tempo_mm_free(mm);
}

static void test_diverging_run_stops(void **state) {
  (void)state;
  tempo_train_config c;
  tempo_train_result r;
  char out[160];
  snprintf(out, sizeof out, "%s/diverge", tmpdir);
  test_train_cfg(&c, out, 50, 1);
  c.optim.lr = 100.0f;
  c.optim.momentum = 0.0f;
  assert_int_equal(tempo_train_run(&c, &r), TEMPO_STATUS_NUMERIC);
  expect_msg("loss is not finite at step ");
  expect_msg("lower --lr");
}

static void test_max_steps_evaluates_and_metrics(void **state) {
  (void)state;
  tempo_train_config c;
  tempo_train_result r;
  char out[160], path[200];
  snprintf(out, sizeof out, "%s/eval-end", tmpdir);
  test_train_cfg(&c, out, 6, 2);
  c.log_every = 2;
  c.no_eval = false;
  assert_int_equal(tempo_train_run(&c, &r), TEMPO_STATUS_OK);
  assert_true(r.test_acc > 0.1 && r.test_acc <= 1.0);
  snprintf(path, sizeof path, "%s/metrics.jsonl", out);
  char *text = read_text(path);
  assert_non_null(text);
  assert_true(strncmp(text, "{\"type\":\"config\",\"time\":\"20", 27) == 0);
  const char *keys[] = {"\"model\":\"mlp\"", "\"dataset\":\"fashion-mnist\"", "\"batch_size\":32", "\"lr\":",
                        "\"momentum\":", "\"weight_decay\":", "\"schedule\":\"cosine\"", "\"mode\":\"local\"",
                        "\"workers\":0", "\"verify_rounds\":1", "\"threads\":1", "\"seed\":2", "\"key_seed\":null",
                        "\"max_steps\":6", "\"tempo_version\":", "\"optimizer\":\"sgd\""};
  const char *nl = strchr(text, '\n');
  assert_non_null(nl);
  for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
    const char *at = strstr(text, keys[k]);
    if (!at || at > nl) fail_msg("config record lacks %s", keys[k]);
  }
  int lines = 0;
  for (const char *l = text; *l; l = strchr(l, '\n') + 1) {
    const char *e = strchr(l, '\n');
    assert_non_null(e);
    const char *t = strstr(l, "\"time\":\"20"), *el = strstr(l, "\"elapsed\":");
    if (!t || t > e || !el || el > e) fail_msg("record %d has no time/elapsed: %.80s", lines, l);
    lines++;
  }
  assert_int_equal(lines, 1 + 3 + 1 + 1); /* config, 3 step records, the test evaluation, the summary */
  assert_non_null(strstr(text, "\"test_acc\":0."));
  assert_null(strstr(text, "\"test_acc\":-1"));
  free(text);
  double losses[6];
  assert_int_equal(test_read_losses(out, losses, 6), 3); /* the old readers still parse the step records */

  snprintf(path, sizeof path, "%s/metrics.svg", out);
  char in[200];
  snprintf(in, sizeof in, "%s/metrics.jsonl", out);
  long steps = 0;
  assert_int_equal(tempo_plot_metrics(in, path, "a <run> & more", &steps), TEMPO_STATUS_OK);
  assert_int_equal(steps, 3);
  text = read_text(path);
  assert_non_null(text);
  assert_non_null(strstr(text, "<svg"));
  assert_non_null(strstr(text, "a &lt;run&gt; &amp; more"));
  assert_non_null(strstr(text, "class=\"loss\""));
  assert_non_null(strstr(text, "class=\"test_acc\""));
  free(text);

  /* no_eval: nothing evaluated */
  snprintf(out, sizeof out, "%s/no-eval", tmpdir);
  test_train_cfg(&c, out, 3, 2);
  c.no_eval = true;
  assert_int_equal(tempo_train_run(&c, &r), TEMPO_STATUS_OK);
  assert_true(r.test_acc < 0);
}

static void test_plot_refuses_bad_input(void **state) {
  (void)state;
  char in[160], svg[160];
  snprintf(in, sizeof in, "%s/bad.jsonl", tmpdir);
  snprintf(svg, sizeof svg, "%s/bad.svg", tmpdir);
  write_bytes(in, "{\"type\":\"config\"}\nnot json\n", 27);
  assert_int_equal(tempo_plot_metrics(in, svg, NULL, NULL), TEMPO_STATUS_CORRUPT);
  expect_msg("no step record");
  const char *nan_line = "{\"step\":1,\"epoch\":1,\"loss\":nan,\"acc\":0.1,\"images_per_s\":5}\n";
  write_bytes(in, nan_line, strlen(nan_line));
  assert_int_equal(tempo_plot_metrics(in, svg, NULL, NULL), TEMPO_STATUS_CORRUPT);
  expect_msg("line 1");
  const char *huge = "{\"step\":1,\"epoch\":1,\"loss\":1e300,\"acc\":0.1,\"images_per_s\":5}\n";
  write_bytes(in, huge, strlen(huge));
  assert_int_equal(tempo_plot_metrics(in, svg, NULL, NULL), TEMPO_STATUS_CORRUPT);
  /* a tick step below the values' resolution (1e15 and 0.25 less: ticks of 0.05, ulp 0.125): the
   * tick loops are counted, no hang */
  const char *flat = "{\"step\":1,\"epoch\":1,\"loss\":1e15,\"acc\":0.1,\"images_per_s\":5}\n"
                     "{\"step\":2,\"epoch\":1,\"loss\":999999999999999.75,\"acc\":0.1,\"images_per_s\":5}\n";
  write_bytes(in, flat, strlen(flat));
  assert_int_equal(tempo_plot_metrics(in, svg, NULL, NULL), TEMPO_STATUS_OK);
  assert_int_equal(tempo_plot_metrics("/nonexistent/metrics.jsonl", svg, NULL, NULL), TEMPO_STATUS_IO);
}

static void test_foreign_files_as_safetensors(void **state) {
  (void)state;
  char p[160];
  tempo_st_file *f;
  snprintf(p, sizeof p, "%s/model.ckpt", tmpdir);
  write_bytes(p, "TMPOCKPT\x02\x00\x00\x00 and more bytes", 25);
  assert_int_equal(tempo_st_open(p, &f), TEMPO_STATUS_INVALID_ARGUMENT);
  expect_msg("is a Tempo checkpoint");
  expect_msg("--resume");
  snprintf(p, sizeof p, "%s/model.pt", tmpdir);
  write_bytes(p, "PK\x03\x04\x00\x00\x00\x00\x00\x00\x00\x00", 12);
  assert_int_equal(tempo_st_open(p, &f), TEMPO_STATUS_INVALID_ARGUMENT);
  expect_msg("zip archive");
  expect_msg("safetensors.torch.save_file");
  snprintf(p, sizeof p, "%s/old.pt", tmpdir);
  write_bytes(p, "\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8", 12);
  assert_int_equal(tempo_st_open(p, &f), TEMPO_STATUS_INVALID_ARGUMENT);
  expect_msg("pickle");
  assert_null(strstr(tempo_errmsg(), "header length"));
  /* a valid file whose header length is 640 starts with the bytes 0x80 0x02 too: it loads */
  char hdr[641];
  const char *json = "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
  memset(hdr, ' ', 640);
  memcpy(hdr, json, strlen(json));
  uint8_t file[8 + 640 + 4] = {0x80, 0x02};
  memcpy(file + 8, hdr, 640);
  snprintf(p, sizeof p, "%s/len640.safetensors", tmpdir);
  write_bytes(p, (const char *)file, sizeof file);
  assert_int_equal(tempo_st_open(p, &f), TEMPO_STATUS_OK);
  tempo_st_close(f);
}

static void test_shape_mismatch_prints_both(void **state) {
  (void)state;
  tempo_mm *mm;
  tempo_model *m = make_mlp(&mm);
  float w[12] = {0};
  tempo_st_tensor t = {.name = "fc1.weight", .dtype = TEMPO_ST_F32, .ndim = 2, .shape = {3, 4}, .data = w,
                       .nbytes = sizeof w};
  char p[160];
  snprintf(p, sizeof p, "%s/shape.safetensors", tmpdir);
  assert_int_equal(tempo_st_write(p, &t, 1), TEMPO_STATUS_OK);
  tempo_st_file *f;
  assert_int_equal(tempo_st_open(p, &f), TEMPO_STATUS_OK);
  assert_int_equal(tempo_params_load_st(&m->params, f, false, NULL), TEMPO_STATUS_MISMATCH);
  char want[64];
  tempo_params_shape_str(&m->params, tempo_params_find(&m->params, "fc1.weight"), want, sizeof want);
  assert_string_equal(want, "[256, 784]");
  expect_msg("[3, 4]");
  expect_msg(want);
  tempo_st_close(f);

  /* a checkpoint whose counts do not fit the model it names: both sides' counts */
  tempo_params small;
  tempo_params_init(&small);
  int shape[1] = {10}, idx;
  assert_int_equal(tempo_params_add(&small, "w", 1, shape, 0, &idx), TEMPO_STATUS_OK);
  assert_int_equal(tempo_params_finalize(&small), TEMPO_STATUS_OK);
  tempo_optim_config oc;
  tempo_optim_config_default(&oc, TEMPO_OPTIM_SGD);
  tempo_ckpt_meta meta = {.model = "mlp", .in_c = 1, .in_h = 28, .in_w = 28, .num_classes = 10,
                          .dataset = "fashion-mnist", .seed = 1, .batch_size = 64, .epochs = 1, .optim = oc};
  snprintf(p, sizeof p, "%s/small.ckpt", tmpdir);
  assert_int_equal(tempo_ckpt_save(p, &meta, &small, NULL), TEMPO_STATUS_OK);
  tempo_ckpt_meta got;
  assert_int_equal(tempo_ckpt_load(p, &got, &m->params, NULL), TEMPO_STATUS_MISMATCH);
  expect_msg("with 10 parameters");
  char n[64];
  snprintf(n, sizeof n, "this model has %zu", m->params.count);
  expect_msg(n);
  expect_msg("1x28x28");
  tempo_params_free(&small);
  tempo_model_free(m);
  tempo_mm_free(mm);
}

static void test_f16_bf16_imported(void **state) {
  (void)state;
  const uint16_t h[6] = {0x3c00, 0xc000, 0x3800, 0x7bff, 0x0001, 0x8000}; /* 1, -2, 0.5, 65504, 2^-24, -0 */
  const uint16_t b[3] = {0x3f80, 0xc040, 0x4049};                         /* 1, -3, 3.140625 */
  tempo_st_tensor t[2] = {
      {.name = "h", .dtype = TEMPO_ST_F16, .ndim = 1, .shape = {6}, .data = h, .nbytes = sizeof h},
      {.name = "b", .dtype = TEMPO_ST_BF16, .ndim = 1, .shape = {3}, .data = b, .nbytes = sizeof b}};
  char p[160];
  snprintf(p, sizeof p, "%s/half.safetensors", tmpdir);
  assert_int_equal(tempo_st_write(p, t, 2), TEMPO_STATUS_OK);
  tempo_st_file *f;
  assert_int_equal(tempo_st_open(p, &f), TEMPO_STATUS_OK);
  float o[6];
  assert_int_equal(tempo_st_read_f32(tempo_st_get(f, "h"), o, 6), TEMPO_STATUS_OK);
  assert_true(o[0] == 1.0f && o[1] == -2.0f && o[2] == 0.5f && o[3] == 65504.0f && o[4] == 0x1p-24f);
  assert_true(o[5] == 0.0f && signbit(o[5]));
  assert_int_equal(tempo_st_read_f32(tempo_st_get(f, "b"), o, 3), TEMPO_STATUS_OK);
  assert_true(o[0] == 1.0f && o[1] == -3.0f && o[2] == 3.140625f);
  tempo_st_close(f);
}

TEST_TMPDIR_GROUP("newcomer")

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_nan_in_init_weights_refused),
      cmocka_unit_test(test_nan_in_checkpoint_refused),
      cmocka_unit_test(test_diverging_run_stops),
      cmocka_unit_test(test_max_steps_evaluates_and_metrics),
      cmocka_unit_test(test_plot_refuses_bad_input),
      cmocka_unit_test(test_foreign_files_as_safetensors),
      cmocka_unit_test(test_shape_mismatch_prints_both),
      cmocka_unit_test(test_f16_bf16_imported),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
