/* test_seal_train.c - sealed datasets and sealed training runs on real Fashion-MNIST:
 * a sealed split (gzip'd or raw IDX inside) loads byte-identical to the plain one; swapped,
 * tampered, truncated-inside, trailing-garbage, wrong-content and missing sealed files are
 * refused; a sealed run writes only sealed outputs, follows exactly the plain run's losses,
 * resumes from a sealed checkpoint on the same trajectory (appending to the sealed metrics),
 * refuses a tampered checkpoint, evaluates sealed and unsealed to the same accuracy, and starts
 * from sealed --init-from weights exactly as from plain ones. Local mode. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "tempo/checkpoint.h"
#include "tempo/data.h"
#include "tempo/fileio.h"
#include "tempo/model.h"
#include "tempo/seal.h"
#include "tempo/train.h"
#include "tempo/weights.h"
#include "test_util.h"

#define FM "/usr/share/datasets/fashion-mnist"
static char tmpdir[64], sealed_dir[96];
static tempo_owner_key *key;
static const char *const fm_files[4] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                                        "t10k-labels-idx1-ubyte"};

static void seal_as(const char *src, const char *dst_dir, const char *dst_name, const char *label) {
  char out[256];
  snprintf(out, sizeof out, "%s/%s", dst_dir, dst_name);
  assert_int_equal(tempo_seal_file(src, out, key, label, 0), TEMPO_STATUS_OK);
}

static void seal_bytes(const void *b, size_t n, const char *dir, const char *name, const char *label) {
  char out[256];
  snprintf(out, sizeof out, "%s/%s", dir, name);
  assert_int_equal(tempo_seal_write(out, key, label, b, n, 0), TEMPO_STATUS_OK);
}

static uint8_t *gunzip(const char *path, size_t *len) {
  gzFile f = gzopen(path, "rb");
  assert_non_null(f);
  size_t cap = 1 << 20, n = 0;
  uint8_t *b = malloc(cap);
  int r;
  while ((r = gzread(f, b + n, (unsigned)(cap - n))) > 0) {
    n += (size_t)r;
    if (n == cap) b = realloc(b, cap *= 2);
  }
  gzclose(f);
  *len = n;
  return b;
}

static void make_dir(char *buf, size_t cap, const char *name) {
  snprintf(buf, cap, "%s/%s", tmpdir, name);
  assert_int_equal(tempo_mkdir_p(buf), TEMPO_STATUS_OK);
}

static void expect_load(const char *dir, tempo_status want, const char *msg_part) {
  tempo_dataset d;
  tempo_status st = tempo_dataset_load_sealed(TEMPO_DATASET_FASHION_MNIST, dir, false, key, &d);
  if (st != want) fail_msg("%s: status %d (%s), expected %d", dir, st, tempo_errmsg(), want);
  if (msg_part && !strstr(tempo_errmsg(), msg_part)) fail_msg("'%s' not in '%s'", msg_part, tempo_errmsg());
  if (!st) tempo_dataset_free(&d);
}

static void test_sealed_dataset(void **state) {
  (void)state;
  tempo_dataset plain, sealed;
  assert_int_equal(tempo_dataset_load(TEMPO_DATASET_FASHION_MNIST, FM, false, &plain), TEMPO_STATUS_OK);
  assert_int_equal(tempo_dataset_load_sealed(TEMPO_DATASET_FASHION_MNIST, sealed_dir, false, key, &sealed),
                   TEMPO_STATUS_OK);
  assert_int_equal(sealed.n, plain.n);
  assert_int_equal(sealed.h, 28);
  assert_memory_equal(sealed.images, plain.images, (size_t)plain.n * 784);
  assert_memory_equal(sealed.labels, plain.labels, (size_t)plain.n);
  tempo_dataset_free(&sealed);

  /* raw (uncompressed) IDX inside the sealed files */
  char raw[128], src[256];
  make_dir(raw, sizeof raw, "raw");
  size_t ilen, llen;
  uint8_t *img = gunzip(FM "/t10k-images-idx3-ubyte.gz", &ilen), *lab = gunzip(FM "/t10k-labels-idx1-ubyte.gz", &llen);
  seal_bytes(img, ilen, raw, "t10k-images-idx3-ubyte.sealed", "data/t10k-images-idx3-ubyte");
  seal_bytes(lab, llen, raw, "t10k-labels-idx1-ubyte.sealed", "data/t10k-labels-idx1-ubyte");
  assert_int_equal(tempo_dataset_load_sealed(TEMPO_DATASET_FASHION_MNIST, raw, false, key, &sealed), TEMPO_STATUS_OK);
  assert_memory_equal(sealed.images, plain.images, (size_t)plain.n * 784);
  assert_memory_equal(sealed.labels, plain.labels, (size_t)plain.n);
  tempo_dataset_free(&sealed);

  /* the loader's own validation applies to the decrypted bytes */
  seal_bytes(lab, llen - 1, raw, "t10k-labels-idx1-ubyte.sealed", "data/t10k-labels-idx1-ubyte");
  expect_load(raw, TEMPO_STATUS_CORRUPT, "truncated label data");
  uint8_t *lab2 = malloc(llen + 1);
  memcpy(lab2, lab, llen);
  lab2[llen] = 0;
  seal_bytes(lab2, llen + 1, raw, "t10k-labels-idx1-ubyte.sealed", "data/t10k-labels-idx1-ubyte");
  expect_load(raw, TEMPO_STATUS_CORRUPT, "unexpected bytes");
  memcpy(lab2, lab, llen);
  lab2[8] = 10; /* a label out of range */
  seal_bytes(lab2, llen, raw, "t10k-labels-idx1-ubyte.sealed", "data/t10k-labels-idx1-ubyte");
  expect_load(raw, TEMPO_STATUS_CORRUPT, "out of range");
  seal_bytes(img, ilen, raw, "t10k-labels-idx1-ubyte.sealed", "data/t10k-labels-idx1-ubyte"); /* owner's mix-up */
  expect_load(raw, TEMPO_STATUS_CORRUPT, "bad magic");
  free(lab2);

  /* gzip inside: truncated stream, damaged stream, trailing garbage */
  size_t glen;
  uint8_t *gz;
  assert_int_equal(tempo_read_file(FM "/t10k-labels-idx1-ubyte.gz", 1 << 26, &gz, &glen), TEMPO_STATUS_OK);
  char gzd[128];
  make_dir(gzd, sizeof gzd, "gz");
  seal_as(FM "/t10k-images-idx3-ubyte.gz", gzd, "t10k-images-idx3-ubyte.gz.sealed", "data/t10k-images-idx3-ubyte");
  seal_bytes(gz, glen - 5, gzd, "t10k-labels-idx1-ubyte.gz.sealed", "data/t10k-labels-idx1-ubyte");
  expect_load(gzd, TEMPO_STATUS_CORRUPT, "gzip");
  gz[glen - 6] ^= 0xff; /* inside the CRC */
  seal_bytes(gz, glen, gzd, "t10k-labels-idx1-ubyte.gz.sealed", "data/t10k-labels-idx1-ubyte");
  expect_load(gzd, TEMPO_STATUS_CORRUPT, "gzip");
  gz[glen - 6] ^= 0xff;
  uint8_t *gz2 = malloc(glen + 3);
  memcpy(gz2, gz, glen);
  memcpy(gz2 + glen, "abc", 3);
  seal_bytes(gz2, glen + 3, gzd, "t10k-labels-idx1-ubyte.gz.sealed", "data/t10k-labels-idx1-ubyte");
  expect_load(gzd, TEMPO_STATUS_CORRUPT, "unexpected bytes");
  seal_bytes(gz, glen, gzd, "t10k-labels-idx1-ubyte.gz.sealed", "data/t10k-labels-idx1-ubyte");
  expect_load(gzd, TEMPO_STATUS_OK, NULL);
  free(gz2);
  free(gz);

  /* swapped sealed files (authentic, other role) and tampering */
  char sw[128], a[256], b[256];
  make_dir(sw, sizeof sw, "swapped");
  snprintf(src, sizeof src, "%s/t10k-labels-idx1-ubyte.gz.sealed", sealed_dir);
  snprintf(a, sizeof a, "%s/t10k-images-idx3-ubyte.gz.sealed", sw);
  snprintf(b, sizeof b, "%s/train-labels-idx1-ubyte.gz.sealed", sealed_dir);
  size_t n;
  uint8_t *bytes;
  assert_int_equal(tempo_read_file(src, 1 << 26, &bytes, &n), TEMPO_STATUS_OK);
  const void *parts[1] = {bytes};
  assert_int_equal(tempo_write_file_atomic(a, parts, &n, 1), TEMPO_STATUS_OK);
  snprintf(a, sizeof a, "%s/t10k-labels-idx1-ubyte.gz.sealed", sw);
  free(bytes);
  assert_int_equal(tempo_read_file(b, 1 << 26, &bytes, &n), TEMPO_STATUS_OK); /* train labels as test labels */
  parts[0] = bytes;
  assert_int_equal(tempo_write_file_atomic(a, parts, &n, 1), TEMPO_STATUS_OK);
  expect_load(sw, TEMPO_STATUS_MISMATCH, "swapped");
  seal_as(FM "/t10k-images-idx3-ubyte.gz", sw, "t10k-images-idx3-ubyte.gz.sealed", "data/t10k-images-idx3-ubyte");
  expect_load(sw, TEMPO_STATUS_MISMATCH, "data/train-labels-idx1-ubyte");
  bytes[n / 2] ^= 4;
  assert_int_equal(tempo_write_file_atomic(a, parts, &n, 1), TEMPO_STATUS_OK);
  expect_load(sw, TEMPO_STATUS_CORRUPT, a);
  free(bytes);

  /* with a key, plain files are not read */
  expect_load(FM, TEMPO_STATUS_IO, "tempo-owner seal");
  tempo_dataset_free(&plain);
  free(img);
  free(lab);
}

/* Losses of every step line of the sealed metrics (losses[step-1]); returns lines read. */
static int read_sealed_losses(const char *dir, double *losses, int cap) {
  char path[256];
  snprintf(path, sizeof path, "%s/metrics.jsonl.sealed", dir);
  uint8_t *buf;
  size_t len;
  if (tempo_unseal_read(path, key, TEMPO_SEAL_LABEL_METRICS, 1 << 26, &buf, &len, NULL))
    fail_msg("%s", tempo_errmsg());
  char *text = malloc(len + 1);
  memcpy(text, buf, len);
  text[len] = '\0';
  free(buf);
  int n = test_parse_losses(text, losses, cap);
  free(text);
  return n;
}


static void train_cfg(tempo_train_config *c, const char *out, long max_steps, bool sealed) {
  test_train_cfg(c, out, max_steps, 11);
  c->data_dir = sealed ? sealed_dir : FM;
  c->key = sealed ? key : NULL;
}

static bool exists(const char *dir, const char *name) {
  char p[256];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  return access(p, F_OK) == 0;
}

static void test_sealed_training(void **state) {
  (void)state;
  char a[128], p[128], b[128], ck[192];
  snprintf(a, sizeof a, "%s/run-a", tmpdir);
  snprintf(p, sizeof p, "%s/run-plain", tmpdir);
  snprintf(b, sizeof b, "%s/run-b", tmpdir);
  tempo_train_config c;
  tempo_train_result r;
  double la[20] = {0}, lp[20] = {0}, lb[20] = {0};

  train_cfg(&c, a, 20, true);
  assert_int_equal(tempo_train_run(&c, &r), TEMPO_STATUS_OK);
  assert_int_equal(r.steps, 20);
  assert_true(exists(a, "checkpoint.ckpt.sealed") && exists(a, "model.ckpt.sealed") &&
              exists(a, "metrics.jsonl.sealed"));
  assert_false(exists(a, "checkpoint.ckpt") || exists(a, "model.ckpt") || exists(a, "metrics.jsonl"));
  assert_int_equal(read_sealed_losses(a, la, 20), 20);

  /* sealing changes nothing about the trajectory */
  train_cfg(&c, p, 20, false);
  assert_int_equal(tempo_train_run(&c, &r), TEMPO_STATUS_OK);
  assert_int_equal(test_read_losses(p, lp, 20), 20);
  assert_memory_equal(la, lp, sizeof la);

  /* 10 steps, then resume into the same folder from the sealed checkpoint up to 20 */
  train_cfg(&c, b, 10, true);
  assert_int_equal(tempo_train_run(&c, &r), TEMPO_STATUS_OK);
  snprintf(ck, sizeof ck, "%s/checkpoint.ckpt.sealed", b);
  train_cfg(&c, b, 20, true);
  c.resume = ck;
  assert_int_equal(tempo_train_run(&c, &r), TEMPO_STATUS_OK);
  assert_int_equal(r.steps, 20);
  assert_int_equal(read_sealed_losses(b, lb, 20), 20); /* the first run's 10 lines were kept */
  for (int i = 0; i < 20; i++)
    if (la[i] != lb[i]) fail_msg("step %d: uninterrupted loss %.6f, resumed %.6f", i + 1, la[i], lb[i]);

  /* a flipped byte in the sealed checkpoint: resume refused */
  char bad[192];
  snprintf(bad, sizeof bad, "%s/bad.ckpt.sealed", tmpdir);
  uint8_t *bytes;
  size_t n;
  assert_int_equal(tempo_read_file(ck, 1 << 28, &bytes, &n), TEMPO_STATUS_OK);
  bytes[n / 3] ^= 0x20;
  const void *parts[1] = {bytes};
  assert_int_equal(tempo_write_file_atomic(bad, parts, &n, 1), TEMPO_STATUS_OK);
  free(bytes);
  train_cfg(&c, b, 30, true);
  c.resume = bad;
  assert_int_equal(tempo_train_run(&c, &r), TEMPO_STATUS_CORRUPT);
  assert_non_null(strstr(tempo_errmsg(), bad));

  /* evaluation: sealed model + sealed data == unsealed model + plain data */
  tempo_mm_config mc;
  tempo_mm_config_default(&mc);
  mc.mode = TEMPO_MODE_LOCAL;
  double acc_s, loss_s, acc_p, loss_p;
  snprintf(ck, sizeof ck, "%s/model.ckpt.sealed", a);
  assert_int_equal(tempo_eval_checkpoint_sealed(ck, sealed_dir, key, &mc, 500, &acc_s, &loss_s), TEMPO_STATUS_OK);
  char plain_ck[192];
  snprintf(plain_ck, sizeof plain_ck, "%s/model.ckpt", a);
  assert_int_equal(tempo_unseal_file(ck, plain_ck, key, TEMPO_SEAL_LABEL_CHECKPOINT, NULL), TEMPO_STATUS_OK);
  assert_int_equal(tempo_eval_checkpoint(plain_ck, FM, &mc, 500, &acc_p, &loss_p), TEMPO_STATUS_OK);
  assert_true(acc_s > 0.3);
  assert_true(acc_s == acc_p && loss_s == loss_p);

  /* --init-from: sealed weights give exactly the run that plain weights give */
  tempo_mm *mm;
  assert_int_equal(tempo_mm_create(&mc, &mm), TEMPO_STATUS_OK);
  tempo_model_config cfg = {.name = "mlp", .in_c = 1, .in_h = 28, .in_w = 28, .num_classes = 10, .max_batch = 1};
  tempo_model *m;
  assert_int_equal(tempo_model_create(&cfg, mm, 99, &m), TEMPO_STATUS_OK);
  tempo_ckpt_meta meta;
  assert_int_equal(tempo_ckpt_load(plain_ck, &meta, &m->params, NULL), TEMPO_STATUS_OK);
  char st_plain[192], st_sealed[192], i1[128], i2[128];
  snprintf(st_plain, sizeof st_plain, "%s/init.safetensors", tmpdir);
  snprintf(st_sealed, sizeof st_sealed, "%s/init.safetensors.sealed", tmpdir);
  assert_int_equal(tempo_params_save_st(&m->params, st_plain), TEMPO_STATUS_OK);
  assert_int_equal(tempo_seal_file(st_plain, st_sealed, key, TEMPO_SEAL_LABEL_WEIGHTS, 0), TEMPO_STATUS_OK);
  tempo_model_free(m);
  tempo_mm_free(mm);
  snprintf(i1, sizeof i1, "%s/init-plain", tmpdir);
  snprintf(i2, sizeof i2, "%s/init-sealed", tmpdir);
  double l1[5] = {0}, l2[5] = {0};
  train_cfg(&c, i1, 5, false);
  c.init_from = st_plain;
  assert_int_equal(tempo_train_run(&c, &r), TEMPO_STATUS_OK);
  train_cfg(&c, i2, 5, true);
  c.init_from = st_sealed;
  assert_int_equal(tempo_train_run(&c, &r), TEMPO_STATUS_OK);
  assert_int_equal(test_read_losses(i1, l1, 5), 5);
  assert_int_equal(read_sealed_losses(i2, l2, 5), 5);
  assert_memory_equal(l1, l2, sizeof l1);
  assert_true(l1[0] < la[0]); /* it started from the trained weights, not from scratch */
  /* with a key, plain init weights are refused */
  train_cfg(&c, i2, 5, true);
  c.init_from = st_plain;
  assert_int_equal(tempo_train_run(&c, &r), TEMPO_STATUS_CORRUPT);
}

static int setup(void **state) {
  (void)state;
  snprintf(tmpdir, sizeof tmpdir, "/tmp/tempo-test-seal-train-XXXXXX");
  if (!mkdtemp(tmpdir)) return -1;
  snprintf(sealed_dir, sizeof sealed_dir, "%s/sealed", tmpdir);
  if (tempo_mkdir_p(sealed_dir) || tempo_owner_key_generate(&key)) return -1;
  for (int i = 0; i < 4; i++) {
    char src[256], dst[256], label[64];
    snprintf(src, sizeof src, FM "/%s.gz", fm_files[i]);
    snprintf(dst, sizeof dst, "%s/%s.gz.sealed", sealed_dir, fm_files[i]);
    if (tempo_seal_default_label(src, label, sizeof label) || tempo_seal_file(src, dst, key, label, 0)) return -1;
  }
  return 0;
}

static int teardown(void **state) {
  (void)state;
  tempo_owner_key_free(key);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
  return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sealed_dataset),
      cmocka_unit_test(test_sealed_training),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
