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

#include <signal.h>
#include <sodium.h>
#include <unistd.h>

#include "core/bytes.h"
#include "tempo/checkpoint.h"
#include "tempo/fileio.h"
#include "tempo/obf.h"
#include "tempo/model.h"
#include "tempo/train.h"
#include "test_util.h"
#include "train/run_files.h"


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

/* ---- resume: the engine's random streams, checkpoint version 2, the run folder ---- */

static bool have_fashion_mnist(void) {
  return access("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz", R_OK) == 0;
}

/* A key generator's saved state continues its stream exactly, in another generator too;
 * malformed records are refused without touching the generator. */
static void test_keygen_state(void **state) {
  (void)state;
  uint8_t secret[32] = {7}, other[32] = {9};
  tempo_keygen *a, *b;
  assert_int_equal(tempo_keygen_create(secret, NULL, &a), TEMPO_STATUS_OK);
  assert_int_equal(tempo_keygen_create(other, NULL, &b), TEMPO_STATUS_OK);
  uint8_t st0[TEMPO_KEYGEN_STATE_BYTES], st[TEMPO_KEYGEN_STATE_BYTES], x[6000], y[6000], z[6000];
  tempo_keygen_state_save(a, st0); /* fresh: nothing drawn yet */
  assert_true(tempo_keygen_state_valid(st0));
  tempo_keygen_bytes(a, x, 5003); /* past one 4096-byte refill, at an odd position */
  tempo_keygen_state_save(a, st);
  tempo_keygen_bytes(a, x, sizeof x);
  assert_int_equal(tempo_keygen_state_restore(b, st), TEMPO_STATUS_OK);
  tempo_keygen_bytes(b, y, sizeof y);
  assert_memory_equal(x, y, sizeof x);
  assert_int_equal(tempo_keygen_state_restore(b, st0), TEMPO_STATUS_OK); /* back to the start */
  tempo_keygen_bytes(b, z, 5003);
  tempo_keygen_bytes(b, y, sizeof y);
  assert_memory_equal(x, y, sizeof x);
  /* malformed: position past the buffer, a reserved field, a buffer without its refill */
  uint8_t bad[TEMPO_KEYGEN_STATE_BYTES];
  memcpy(bad, st, sizeof bad);
  bad[41] = 0x20; /* pos 8192 + ... */
  assert_false(tempo_keygen_state_valid(bad));
  assert_int_equal(tempo_keygen_state_restore(b, bad), TEMPO_STATUS_CORRUPT);
  memcpy(bad, st, sizeof bad);
  bad[47] = 1;
  assert_int_equal(tempo_keygen_state_restore(b, bad), TEMPO_STATUS_CORRUPT);
  memcpy(bad, st, sizeof bad);
  memset(bad + 32, 0, 8); /* nonce 0 with pos < 4096 */
  assert_int_equal(tempo_keygen_state_restore(b, bad), TEMPO_STATUS_CORRUPT);
  tempo_keygen_bytes(b, z, 64); /* b was left as it was: still a's stream after 5003 + 6000 bytes */
  tempo_keygen_bytes(a, y, 64);
  assert_memory_equal(y, z, 64);
  sodium_memzero(st, sizeof st);
  tempo_keygen_free(a);
  tempo_keygen_free(b);
}

/* The same forward product on two tempo engines of different key seeds is bit-identical once
 * one has the other's streams; bad records are CORRUPT; local mode has none and ignores one. */
static void test_mm_streams(void **state) {
  (void)state;
  tempo_mm *a = test_make_mm(TEMPO_MODE_TEMPO, 2, 11, NULL), *b = test_make_mm(TEMPO_MODE_TEMPO, 2, 12, NULL);
  tempo_mm_set_training(a, false);
  tempo_mm_set_training(b, false);
  enum { M = 5, N = 7, P = 3 };
  float X[M * N], W[N * P], ya[M * P], yb[M * P];
  tempo_rng rng;
  tempo_rng_seed(&rng, 3, 0);
  test_randn(X, M * N, &rng);
  test_randn(W, N * P, &rng);
  tempo_mm_shape sh = {.batch = 1, .m = M, .n = N, .p = P};
  tempo_mm_site sa = {0}, sb = {0};
  uint8_t rec[TEMPO_MM_STREAMS_MAX];
  size_t len;
  assert_int_equal(tempo_mm_forward(a, &sa, &sh, X, W, ya), TEMPO_STATUS_OK); /* a's streams move on */
  assert_int_equal(tempo_mm_streams_save(a, rec, sizeof rec, &len), TEMPO_STATUS_OK);
  assert_true(len > 0 && len <= TEMPO_MM_STREAMS_MAX);
  assert_int_equal(tempo_mm_streams_restore(b, rec, len), TEMPO_STATUS_OK);
  assert_int_equal(tempo_mm_forward(a, &sa, &sh, X, W, ya), TEMPO_STATUS_OK);
  assert_int_equal(tempo_mm_forward(b, &sb, &sh, X, W, yb), TEMPO_STATUS_OK);
  assert_memory_equal(ya, yb, sizeof ya);
  size_t small;
  assert_int_equal(tempo_mm_streams_save(a, rec, 8, &small), TEMPO_STATUS_INVALID_ARGUMENT);
  assert_int_equal(tempo_mm_streams_save(a, rec, sizeof rec, &len), TEMPO_STATUS_OK);
  uint8_t bad[TEMPO_MM_STREAMS_MAX];
  for (size_t i = 0; i < 4; i++) { /* the record's version, count and reserved bytes */
    memcpy(bad, rec, len);
    bad[i] ^= 0x40;
    assert_int_equal(tempo_mm_streams_restore(b, bad, len), TEMPO_STATUS_CORRUPT);
    assert_non_null(strstr(tempo_errmsg(), "random-stream state"));
  }
  assert_int_equal(tempo_mm_streams_restore(b, rec, len - 1), TEMPO_STATUS_CORRUPT);
  assert_int_equal(tempo_mm_streams_restore(b, rec, 0), TEMPO_STATUS_OK); /* none: keep the streams */
  tempo_mm *l = test_make_mm(TEMPO_MODE_LOCAL, 1, 0, NULL);
  assert_int_equal(tempo_mm_streams_save(l, bad, sizeof bad, &small), TEMPO_STATUS_OK);
  assert_int_equal(small, 0);
  assert_int_equal(tempo_mm_streams_restore(l, rec, len), TEMPO_STATUS_OK);
  sodium_memzero(rec, sizeof rec);
  tempo_mm_free(l);
  tempo_mm_free(a);
  tempo_mm_free(b);
}

/* Version 2 keeps the stream record, dropout and augmentation; version 1 files still read;
 * a bad record size or flag in a file with a valid checksum is CORRUPT, never a crash. */
static void test_checkpoint_v2_and_v1(void **state) {
  (void)state;
  tempo_mm *mm;
  tempo_model *m = make_mlp(&mm, 5);
  tempo_ckpt_meta meta = {.model = "mlp", .in_c = 1, .in_h = 4, .in_w = 4, .num_classes = 10,
                          .dataset = "fashion-mnist", .seed = 9, .step = 3, .batch_size = 2, .epochs = 1,
                          .dropout = 0.25f, .augment = true, .streams_len = 100};
  tempo_optim_config_default(&meta.optim, TEMPO_OPTIM_SGD);
  for (int i = 0; i < 100; i++) meta.streams[i] = (uint8_t)(i * 7 + 1);
  uint8_t *buf;
  size_t len;
  assert_int_equal(tempo_ckpt_serialize(&meta, &m->params, NULL, &buf, &len), TEMPO_STATUS_OK);
  tempo_ckpt_meta got;
  assert_int_equal(tempo_ckpt_parse(buf, len, "v2", &got, &m->params, NULL), TEMPO_STATUS_OK);
  assert_false(got.v1);
  assert_true(got.augment);
  assert_float_equal(got.dropout, 0.25f, 0);
  assert_int_equal(got.streams_len, 100);
  assert_memory_equal(got.streams, meta.streams, 100);
  assert_int_equal(tempo_le_get32(buf + 8), TEMPO_CKPT_VERSION);

  /* version 1: the same header up to optim_count, no version-2 fields, no record */
  const uint32_t h2 = tempo_le_get32(buf + 12), h1 = h2 - 16;
  const size_t v1_len = len - 16 - 100;
  uint8_t *v1 = malloc(v1_len);
  assert_non_null(v1);
  memcpy(v1, buf, 16 + h1);
  tempo_le_put32(v1 + 8, 1);
  tempo_le_put32(v1 + 12, h1);
  memcpy(v1 + 16 + h1, buf + 16 + h2, 8);                                      /* optimizer step */
  memcpy(v1 + 16 + h1 + 8, buf + 16 + h2 + 8 + 100, len - 32 - (16 + h2 + 8 + 100)); /* the floats */
  crypto_generichash(v1 + v1_len - 32, 32, v1, v1_len - 32, NULL, 0);
  tempo_mm *mm2;
  tempo_model *m2 = make_mlp(&mm2, 6);
  assert_int_equal(tempo_ckpt_parse(v1, v1_len, "v1", &got, &m2->params, NULL), TEMPO_STATUS_OK);
  assert_true(got.v1);
  assert_int_equal(got.streams_len, 0);
  assert_int_equal(got.step, 3);
  assert_memory_equal(m2->params.data, m->params.data, m->params.count * sizeof(float));
  free(v1);

  /* a valid checksum over a record size past the limit, or an unknown flag: CORRUPT */
  const size_t at_flags = 16 + h1 + 4, at_len = at_flags + 4;
  for (int k = 0; k < 3; k++) {
    uint8_t *bad = malloc(len);
    assert_non_null(bad);
    memcpy(bad, buf, len);
    if (k == 0) tempo_le_put32(bad + at_len, TEMPO_CKPT_STREAMS_MAX + 1);
    if (k == 1) tempo_le_put32(bad + at_len, 0xffffffffu);
    if (k == 2) tempo_le_put32(bad + at_flags, 6);
    crypto_generichash(bad + len - 32, 32, bad, len - 32, NULL, 0);
    assert_int_equal(tempo_ckpt_parse(bad, len, "bad", &got, NULL, NULL), TEMPO_STATUS_CORRUPT);
    free(bad);
  }
  /* a record shorter than the header says: the sizes no longer add up */
  uint8_t *bad = malloc(len);
  assert_non_null(bad);
  memcpy(bad, buf, len);
  tempo_le_put32(bad + at_len, 99);
  crypto_generichash(bad + len - 32, 32, bad, len - 32, NULL, 0);
  assert_int_equal(tempo_ckpt_parse(bad, len, "bad", &got, NULL, NULL), TEMPO_STATUS_CORRUPT);
  free(bad);
  free(buf);
  tempo_model_free(m);
  tempo_model_free(m2);
  tempo_mm_free(mm);
  tempo_mm_free(mm2);
}

/* Metrics cut back to a checkpoint: later step records go, records without a step stay, a
 * cut-off last line goes. */
static void test_metrics_keep(void **state) {
  (void)state;
  char text[] = "{\"type\":\"config\",\"start_step\":0,\"max_steps\":9}\n"
                "{\"step\":1,\"epoch\":1,\"loss\":2.0}\n"
                "{\"step\":2,\"epoch\":1,\"loss\":1.5}\n"
                "{\"epoch\":1,\"step\":2,\"test_loss\":1.4}\n"
                "{\"summary\":{\"steps\":2}}\n"
                "{\"step\":3,\"epoch\":1,\"loss\":1.2}\n"
                "{\"step\":12,\"epoch\":1,\"loss\":1.1}\n"
                "{\"step\":4,\"ep";
  const char *want = "{\"type\":\"config\",\"start_step\":0,\"max_steps\":9}\n"
                     "{\"step\":1,\"epoch\":1,\"loss\":2.0}\n"
                     "{\"step\":2,\"epoch\":1,\"loss\":1.5}\n"
                     "{\"epoch\":1,\"step\":2,\"test_loss\":1.4}\n"
                     "{\"summary\":{\"steps\":2}}\n";
  const size_t keep = tempo_run_metrics_keep(text, strlen(text), 2);
  assert_int_equal(keep, strlen(want));
  assert_memory_equal(text, want, keep);
  char dir[4096];
  assert_true(tempo_run_dir_of("runs/r20/checkpoint.ckpt", dir, sizeof dir));
  assert_string_equal(dir, "runs/r20");
  assert_true(tempo_run_dir_of("checkpoint.ckpt", dir, sizeof dir));
  assert_string_equal(dir, ".");
  assert_true(tempo_run_dir_of("/checkpoint.ckpt", dir, sizeof dir));
  assert_string_equal(dir, "/");
  assert_false(tempo_run_dir_of("a/b", dir, 1));
}

/* A tempo-mode checkpoint whose stream record is damaged (valid checksum) is refused with a
 * CORRUPT error naming the file; a stop request checkpoints and returns; resuming it in tempo
 * mode ends where an uninterrupted run ends, bit for bit. */
static void test_resume_streams_and_stop(void **state) {
  (void)state;
  if (!have_fashion_mnist()) {
    print_message("skipped: no Fashion-MNIST\n");
    return;
  }
  char full[160], part[160], ck[200], bad[200], path_a[200], path_b[200];
  snprintf(full, sizeof full, "%s/tfull", tmpdir);
  snprintf(part, sizeof part, "%s/tpart", tmpdir);
  tempo_train_config c;
  tempo_train_result r;
  train_cfg(&c, full, 12);
  c.engine.mode = TEMPO_MODE_TEMPO;
  c.engine.seed = 21;
  assert_int_equal(tempo_train_run(&c, &r), TEMPO_STATUS_OK);

  volatile sig_atomic_t stop = 1; /* set before the first step: a checkpoint at step 0 */
  train_cfg(&c, part, 12);
  c.engine.mode = TEMPO_MODE_TEMPO;
  c.engine.seed = 21;
  c.stop = &stop;
  assert_int_equal(tempo_train_run(&c, &r), TEMPO_STATUS_OK);
  assert_true(r.stopped);
  assert_int_equal(r.steps, 0);
  snprintf(ck, sizeof ck, "%s/checkpoint.ckpt", part);
  assert_string_equal(r.checkpoint, ck);
  snprintf(path_a, sizeof path_a, "%s/model.ckpt", part);
  assert_int_not_equal(access(path_a, F_OK), 0); /* no model of an interrupted run */

  /* the stream record damaged in a whole file */
  tempo_ckpt_meta meta;
  assert_int_equal(tempo_ckpt_load(ck, &meta, NULL, NULL), TEMPO_STATUS_OK);
  assert_true(meta.streams_len > 0); /* tempo mode: the record is there */
  uint8_t *buf;
  size_t len;
  assert_int_equal(tempo_read_file(ck, (size_t)1 << 30, &buf, &len), TEMPO_STATUS_OK);
  const uint32_t h2 = tempo_le_get32(buf + 12);
  buf[16 + h2 + 8] ^= 0x7f; /* the record's version byte */
  crypto_generichash(buf + len - 32, 32, buf, len - 32, NULL, 0);
  snprintf(bad, sizeof bad, "%s/bad.ckpt", part);
  const void *parts[1] = {buf};
  assert_int_equal(tempo_write_file_atomic(bad, parts, &len, 1), TEMPO_STATUS_OK);
  free(buf);
  sodium_memzero(&meta, sizeof meta);
  train_cfg(&c, part, 12);
  c.engine.mode = TEMPO_MODE_TEMPO;
  c.resume = bad;
  assert_int_equal(tempo_train_run(&c, &r), TEMPO_STATUS_CORRUPT);
  assert_non_null(strstr(tempo_errmsg(), bad));
  assert_non_null(strstr(tempo_errmsg(), "random-stream state"));

  /* resume the stopped run: no key seed, its folder by default */
  tempo_train_config_default(&c);
  c.engine.threads = 1;
  c.log_every = 1;
  c.quiet = true;
  c.progress = 0;
  c.resume = ck;
  assert_int_equal(tempo_train_run(&c, &r), TEMPO_STATUS_OK);
  assert_int_equal(r.steps, 12);
  assert_false(r.stopped);
  snprintf(path_b, sizeof path_b, "%s/model.ckpt", full);
  uint8_t *fa, *fb;
  size_t la, lb;
  assert_int_equal(tempo_read_file(path_a, (size_t)1 << 30, &fa, &la), TEMPO_STATUS_OK);
  assert_int_equal(tempo_read_file(path_b, (size_t)1 << 30, &fb, &lb), TEMPO_STATUS_OK);
  assert_int_equal(la, lb);
  assert_memory_equal(fa, fb, la);
  free(fa);
  free(fb);
  double l1[12], l2[12];
  assert_int_equal(test_read_losses(full, l1, 12), 12);
  assert_int_equal(test_read_losses(part, l2, 12), 12);
  assert_memory_equal(l1, l2, sizeof l1);
}

TEST_TMPDIR_GROUP("train")

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_checkpoint_round_trip_and_corruption),
      cmocka_unit_test(test_resume_is_exact),
      cmocka_unit_test(test_missing_dataset),
      cmocka_unit_test(test_keygen_state),
      cmocka_unit_test(test_mm_streams),
      cmocka_unit_test(test_checkpoint_v2_and_v1),
      cmocka_unit_test(test_metrics_keep),
      cmocka_unit_test(test_resume_streams_and_stop),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
