/* test_data.c - dataset loaders: real Fashion-MNIST, generated IDX and CIFAR-10 files, and
 * every rejection path (missing, unreadable, truncated, bad magic, corrupt gzip, wrong dims,
 * labels out of range) with the status and a message that names the file.
 *
 * The expected Fashion-MNIST values were read independently with
 *   /usr/bin/python3 -c "import gzip; l=gzip.open('.../train-labels-idx1-ubyte.gz').read(); print(list(l[8:18]))"
 * (and likewise for the image rows and sums) from the Debian package dataset-fashion-mnist. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <ftw.h>
#include <zlib.h>

#include <cmocka.h>

#include "tempo/common.h"
#include "tempo/data.h"

#define FMNIST_DIR "/usr/share/datasets/fashion-mnist"

/* ---- helpers ------------------------------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(path);
}

static void make_tmpdir(char *buf, size_t cap) {
  snprintf(buf, cap, "/tmp/tempo_test_data_XXXXXX");
  assert_non_null(mkdtemp(buf));
}

static void remove_tree(const char *dir) { assert_int_equal(nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS), 0); }

static void write_file(const char *dir, const char *name, const void *data, size_t len) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  if (len) assert_int_equal(fwrite(data, 1, len, f), len);
  assert_int_equal(fclose(f), 0);
}

static void write_gz(const char *dir, const char *name, const void *data, size_t len) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  gzFile f = gzopen(path, "wb");
  assert_non_null(f);
  if (len) assert_int_equal(gzwrite(f, data, (unsigned)len), (int)len);
  assert_int_equal(gzclose(f), Z_OK);
}

static uint8_t *read_whole(const char *dir, const char *name, size_t *len) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  *len = (size_t)ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *buf = malloc(*len);
  assert_non_null(buf);
  assert_int_equal(fread(buf, 1, *len, f), *len);
  fclose(f);
  return buf;
}

static void put_be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

/* A small IDX pair: images (n, rows, cols) with pixel (i, k) = (i * 37 + k * 11) & 255 and
 * labels i % 10, as buffers the caller may alter before writing. */
typedef struct {
  uint8_t *img, *lab;
  size_t img_len, lab_len;
} idx_pair;

static idx_pair make_idx(uint32_t n, uint32_t rows, uint32_t cols) {
  idx_pair p;
  size_t px = (size_t)rows * cols;
  p.img_len = 16 + n * px;
  p.lab_len = 8 + n;
  p.img = malloc(p.img_len);
  p.lab = malloc(p.lab_len);
  assert_non_null(p.img);
  assert_non_null(p.lab);
  put_be32(p.img, 0x803), put_be32(p.img + 4, n), put_be32(p.img + 8, rows), put_be32(p.img + 12, cols);
  put_be32(p.lab, 0x801), put_be32(p.lab + 4, n);
  for (uint32_t i = 0; i < n; i++) {
    for (size_t k = 0; k < px; k++) p.img[16 + i * px + k] = (uint8_t)((i * 37 + k * 11) & 255);
    p.lab[8 + i] = (uint8_t)(i % 10);
  }
  return p;
}

static void free_idx(idx_pair *p) { free(p->img), free(p->lab); }

static void write_idx(const char *dir, const char *split, const idx_pair *p, bool gz) {
  char name[64];
  snprintf(name, sizeof name, "%s-images-idx3-ubyte%s", split, gz ? ".gz" : "");
  (gz ? write_gz : write_file)(dir, name, p->img, p->img_len);
  snprintf(name, sizeof name, "%s-labels-idx1-ubyte%s", split, gz ? ".gz" : "");
  (gz ? write_gz : write_file)(dir, name, p->lab, p->lab_len);
}

/* Loads from dir and expects status st with a message containing every given fragment. */
static void expect_fail(tempo_dataset_kind kind, const char *dir, bool train, tempo_status st, const char *frag1,
                        const char *frag2) {
  tempo_dataset d;
  memset(&d, 0xab, sizeof d);
  tempo_clear_error();
  tempo_status got = tempo_dataset_load(kind, dir, train, &d);
  if (got != st || !strstr(tempo_errmsg(), frag1) || (frag2 && !strstr(tempo_errmsg(), frag2)))
    print_error("expected status %d with '%s' / '%s', got %d: %s\n", st, frag1, frag2 ? frag2 : "", got,
                tempo_errmsg());
  if (getenv("TEMPO_TEST_VERBOSE")) print_message("%d: %s\n", got, tempo_errmsg());
  assert_int_equal(got, st);
  assert_non_null(strstr(tempo_errmsg(), frag1));
  if (frag2) assert_non_null(strstr(tempo_errmsg(), frag2));
  assert_null(d.images); /* zeroed on failure */
  assert_null(d.labels);
  assert_int_equal(d.n, 0);
}

/* ---- names ----------------------------------------------------------------------------- */

static void test_kind_names(void **state) {
  (void)state;
  tempo_dataset_kind k = TEMPO_DATASET_CIFAR10;
  assert_true(tempo_dataset_kind_parse("fashion-mnist", &k));
  assert_int_equal(k, TEMPO_DATASET_FASHION_MNIST);
  assert_true(tempo_dataset_kind_parse("cifar10", &k));
  assert_int_equal(k, TEMPO_DATASET_CIFAR10);
  k = TEMPO_DATASET_FASHION_MNIST;
  assert_false(tempo_dataset_kind_parse("mnist", &k));
  assert_false(tempo_dataset_kind_parse("CIFAR10", &k));
  assert_false(tempo_dataset_kind_parse("", &k));
  assert_false(tempo_dataset_kind_parse(NULL, &k));
  assert_int_equal(k, TEMPO_DATASET_FASHION_MNIST);
  assert_string_equal(tempo_dataset_kind_name(TEMPO_DATASET_FASHION_MNIST), "fashion-mnist");
  assert_string_equal(tempo_dataset_kind_name(TEMPO_DATASET_CIFAR10), "cifar10");
  assert_string_equal(tempo_dataset_default_dir(TEMPO_DATASET_FASHION_MNIST), FMNIST_DIR);
  assert_string_equal(tempo_dataset_default_dir(TEMPO_DATASET_CIFAR10), "./data/cifar-10-batches-bin");
  assert_float_equal(tempo_dataset_mean(TEMPO_DATASET_FASHION_MNIST)[0], 0.2860f, 0);
  assert_float_equal(tempo_dataset_std(TEMPO_DATASET_FASHION_MNIST)[0], 0.3530f, 0);
  assert_float_equal(tempo_dataset_mean(TEMPO_DATASET_CIFAR10)[2], 0.4465f, 0);
  assert_float_equal(tempo_dataset_std(TEMPO_DATASET_CIFAR10)[1], 0.2435f, 0);
  tempo_dataset z;
  memset(&z, 0, sizeof z);
  tempo_dataset_free(&z);
  tempo_dataset_free(NULL);
}

/* ---- real Fashion-MNIST ------------------------------------------------------------------ */

static long image_sum(const tempo_dataset *d, int i) {
  long s = 0;
  for (int k = 0; k < 784; k++) s += d->images[(size_t)i * 784 + k];
  return s;
}

static void check_real(bool train, int n, const uint8_t first[10], const uint8_t last[5], const uint8_t row14[28],
                       long sum_first, long sum_last) {
  tempo_dataset d;
  double t0 = tempo_now();
  tempo_status st = tempo_dataset_load(TEMPO_DATASET_FASHION_MNIST, NULL, train, &d);
  double secs = tempo_now() - t0;
  if (st != TEMPO_STATUS_OK) print_error("%s\n", tempo_errmsg());
  assert_int_equal(st, TEMPO_STATUS_OK);
  print_message("loaded Fashion-MNIST %s (%d images) in %.3f s\n", train ? "train" : "test", d.n, secs);
  assert_int_equal(d.kind, TEMPO_DATASET_FASHION_MNIST);
  assert_int_equal(d.n, n);
  assert_int_equal(d.c, 1);
  assert_int_equal(d.h, 28);
  assert_int_equal(d.w, 28);
  assert_int_equal(d.num_classes, 10);
  assert_memory_equal(d.labels, first, 10);
  assert_memory_equal(d.labels + n - 5, last, 5);
  assert_memory_equal(d.images + 14 * 28, row14, 28);
  assert_int_equal(image_sum(&d, 0), sum_first);
  assert_int_equal(image_sum(&d, n - 1), sum_last);
  int hist[10] = {0};
  for (int i = 0; i < n; i++) hist[d.labels[i]]++;
  for (int c = 0; c < 10; c++) assert_int_equal(hist[c], n / 10);
  tempo_dataset_free(&d);
  assert_null(d.images);
}

static void test_fmnist_train_real(void **state) {
  (void)state;
  static const uint8_t first[10] = {9, 0, 0, 3, 0, 2, 7, 2, 5, 5}, last[5] = {5, 1, 3, 0, 5};
  static const uint8_t row14[28] = {0,   0,   1,   4,   6,   7,   2,   0,   0,   0,   0,   0,   237, 226,
                                    217, 223, 222, 219, 222, 221, 216, 223, 229, 215, 218, 255, 77,  0};
  check_real(true, 60000, first, last, row14, 76247, 16684);
}

static void test_fmnist_test_real(void **state) {
  (void)state;
  static const uint8_t first[10] = {9, 2, 1, 1, 6, 1, 4, 6, 5, 7}, last[5] = {9, 1, 8, 1, 5};
  static const uint8_t row14[28] = {0,   0,   0,   0,   0,   0,   2,   4,   1,   0,   0,   0,   98,  136,
                                    110, 109, 110, 162, 135, 144, 149, 159, 167, 144, 158, 169, 119, 0};
  check_real(false, 10000, first, last, row14, 33456, 24390);
}

/* ---- generated IDX files --------------------------------------------------------------- */

static void check_generated_idx(bool gz) {
  char dir[64];
  make_tmpdir(dir, sizeof dir);
  idx_pair p = make_idx(7, 28, 28);
  write_idx(dir, "t10k", &p, gz);
  tempo_dataset d;
  assert_int_equal(tempo_dataset_load(TEMPO_DATASET_FASHION_MNIST, dir, false, &d), TEMPO_STATUS_OK);
  assert_int_equal(d.n, 7);
  assert_memory_equal(d.images, p.img + 16, 7 * 784);
  assert_memory_equal(d.labels, p.lab + 8, 7);
  assert_int_equal(d.labels[3], 3);
  assert_int_equal(d.images[2 * 784 + 5], (2 * 37 + 5 * 11) & 255);
  tempo_dataset_free(&d);
  /* The train split is absent from this folder. */
  expect_fail(TEMPO_DATASET_FASHION_MNIST, dir, true, TEMPO_STATUS_IO, "train-images-idx3-ubyte", "--data-dir");
  free_idx(&p);
  remove_tree(dir);
}

static void test_fmnist_generated_gz(void **state) {
  (void)state;
  check_generated_idx(true);
}

static void test_fmnist_generated_plain(void **state) {
  (void)state;
  check_generated_idx(false);
}

static void test_fmnist_missing(void **state) {
  (void)state;
  expect_fail(TEMPO_DATASET_FASHION_MNIST, "/nonexistent/tempo-data", true, TEMPO_STATUS_IO,
              "/nonexistent/tempo-data/train-images-idx3-ubyte.gz", "apt-get install");
  /* Images present, labels missing: the message names the labels file. */
  char dir[64];
  make_tmpdir(dir, sizeof dir);
  idx_pair p = make_idx(3, 28, 28);
  write_gz(dir, "train-images-idx3-ubyte.gz", p.img, p.img_len);
  expect_fail(TEMPO_DATASET_FASHION_MNIST, dir, true, TEMPO_STATUS_IO, "train-labels-idx1-ubyte", "--data-dir");
  /* A folder where the labels file should be is unreadable, not corrupt. */
  char sub[128];
  snprintf(sub, sizeof sub, "%s/train-labels-idx1-ubyte.gz", dir);
  assert_int_equal(mkdir(sub, 0700), 0);
  expect_fail(TEMPO_DATASET_FASHION_MNIST, dir, true, TEMPO_STATUS_IO, sub, "directory");
  free_idx(&p);
  remove_tree(dir);
}

/* Writes the pair (images altered by the caller) and expects CORRUPT naming `bad_file`. */
static void expect_corrupt_idx(const idx_pair *p, bool gz, const char *bad_file, const char *what) {
  char dir[64], name[160];
  make_tmpdir(dir, sizeof dir);
  write_idx(dir, "train", p, gz);
  snprintf(name, sizeof name, "%s/%s%s", dir, bad_file, gz ? ".gz" : "");
  expect_fail(TEMPO_DATASET_FASHION_MNIST, dir, true, TEMPO_STATUS_CORRUPT, name, what);
  remove_tree(dir);
}

static void test_fmnist_bad_headers(void **state) {
  (void)state;
  for (int gz = 0; gz < 2; gz++) {
    idx_pair p = make_idx(4, 28, 28);
    put_be32(p.img, 0x804);
    expect_corrupt_idx(&p, gz, "train-images-idx3-ubyte", "magic");
    put_be32(p.img, 0x803);
    put_be32(p.lab, 0x803); /* an image magic in the label file */
    expect_corrupt_idx(&p, gz, "train-labels-idx1-ubyte", "magic");
    put_be32(p.lab, 0x801);
    put_be32(p.lab + 4, 5); /* label count differs from image count */
    expect_corrupt_idx(&p, gz, "train-labels-idx1-ubyte", "5 labels for 4 images");
    put_be32(p.lab + 4, 4);
    put_be32(p.img + 4, 0xffffffffu); /* absurd count: rejected before allocating */
    expect_corrupt_idx(&p, gz, "train-images-idx3-ubyte", "4294967295 images");
    put_be32(p.img + 4, 0);
    expect_corrupt_idx(&p, gz, "train-images-idx3-ubyte", "0 images");
    put_be32(p.img + 4, 4);
    p.lab[8 + 2] = 10; /* label out of range */
    expect_corrupt_idx(&p, gz, "train-labels-idx1-ubyte", "out of range");
    p.lab[8 + 2] = 2;
    free_idx(&p);
    /* Wrong dims: 32x32 images with a consistent size. */
    p = make_idx(2, 32, 32);
    expect_corrupt_idx(&p, gz, "train-images-idx3-ubyte", "32x32");
    free_idx(&p);
    p = make_idx(2, 28, 27);
    expect_corrupt_idx(&p, gz, "train-images-idx3-ubyte", "28x27");
    free_idx(&p);
  }
}

static void test_fmnist_truncated(void **state) {
  (void)state;
  const size_t n = 5;
  for (int gz = 0; gz < 2; gz++) {
    idx_pair p = make_idx((uint32_t)n, 28, 28);
    size_t full = p.img_len;
    /* Cut the image file in the header, right after it, mid-data and one byte short. */
    const size_t cuts[] = {0, 3, 15, 16, 16 + 784 * 2 + 100, full - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
      p.img_len = cuts[i];
      expect_corrupt_idx(&p, gz, "train-images-idx3-ubyte", "truncated");
    }
    p.img_len = full;
    size_t lab_full = p.lab_len;
    p.lab_len = 6;
    expect_corrupt_idx(&p, gz, "train-labels-idx1-ubyte", "truncated");
    p.lab_len = lab_full - 1;
    expect_corrupt_idx(&p, gz, "train-labels-idx1-ubyte", "truncated");
    p.lab_len = lab_full;
    free_idx(&p);
  }
  /* Extra bytes after the data are rejected as well. */
  idx_pair p = make_idx(2, 28, 28);
  uint8_t *longer = realloc(p.img, p.img_len + 3);
  assert_non_null(longer);
  p.img = longer;
  memset(p.img + p.img_len, 7, 3);
  p.img_len += 3;
  expect_corrupt_idx(&p, false, "train-images-idx3-ubyte", "after the data");
  expect_corrupt_idx(&p, true, "train-images-idx3-ubyte", "after the data");
  free_idx(&p);
}

static void test_fmnist_corrupt_gzip(void **state) {
  (void)state;
  idx_pair p = make_idx(6, 28, 28);
  char dir[64], path[160];
  make_tmpdir(dir, sizeof dir);
  write_idx(dir, "train", &p, true);
  size_t len;
  uint8_t *gz = read_whole(dir, "train-images-idx3-ubyte.gz", &len);
  assert_true(len > 40);
  snprintf(path, sizeof path, "%s/train-images-idx3-ubyte.gz", dir);

  /* The compressed stream cut in half: zlib reports an unexpected end. */
  write_file(dir, "train-images-idx3-ubyte.gz", gz, len / 2);
  expect_fail(TEMPO_DATASET_FASHION_MNIST, dir, true, TEMPO_STATUS_CORRUPT, path, NULL);
  /* The 8-byte trailer (CRC32, size) cut off: the data decompress but the stream is incomplete. */
  write_file(dir, "train-images-idx3-ubyte.gz", gz, len - 8);
  expect_fail(TEMPO_DATASET_FASHION_MNIST, dir, true, TEMPO_STATUS_CORRUPT, path, "gzip");
  /* A wrong CRC in the trailer. */
  gz[len - 8] ^= 0x5a;
  write_file(dir, "train-images-idx3-ubyte.gz", gz, len);
  expect_fail(TEMPO_DATASET_FASHION_MNIST, dir, true, TEMPO_STATUS_CORRUPT, path, "gzip");
  gz[len - 8] ^= 0x5a;
  /* A gzip header followed by garbage instead of a deflate stream. */
  uint8_t garbage[64];
  memcpy(garbage, gz, 10);
  for (int i = 10; i < 64; i++) garbage[i] = (uint8_t)(0xff - i);
  write_file(dir, "train-images-idx3-ubyte.gz", garbage, sizeof garbage);
  expect_fail(TEMPO_DATASET_FASHION_MNIST, dir, true, TEMPO_STATUS_CORRUPT, path, "gzip");
  /* Restored, the same folder loads. */
  write_file(dir, "train-images-idx3-ubyte.gz", gz, len);
  tempo_dataset d;
  assert_int_equal(tempo_dataset_load(TEMPO_DATASET_FASHION_MNIST, dir, true, &d), TEMPO_STATUS_OK);
  assert_int_equal(d.n, 6);
  tempo_dataset_free(&d);
  free(gz);
  free_idx(&p);
  remove_tree(dir);
}

/* ---- generated CIFAR-10 files ------------------------------------------------------------ */

/* Record r of file f: label (f * 3 + r) % 10, pixel k = (f * 31 + r * 7 + k * 13) & 255. */
static uint8_t cifar_pixel(int f, int r, int k) { return (uint8_t)((f * 31 + r * 7 + k * 13) & 255); }

static void write_cifar(const char *dir, const char *name, int f, int records) {
  size_t len = (size_t)records * 3073;
  uint8_t *buf = malloc(len ? len : 1);
  assert_non_null(buf);
  for (int r = 0; r < records; r++) {
    buf[(size_t)r * 3073] = (uint8_t)((f * 3 + r) % 10);
    for (int k = 0; k < 3072; k++) buf[(size_t)r * 3073 + 1 + k] = cifar_pixel(f, r, k);
  }
  write_file(dir, name, buf, len);
  free(buf);
}

#define CIFAR_N 10000 /* records in every file of the binary version */

static void write_cifar_set(const char *dir) {
  char name[32];
  for (int f = 1; f <= 5; f++) {
    snprintf(name, sizeof name, "data_batch_%d.bin", f);
    write_cifar(dir, name, f, CIFAR_N);
  }
  write_cifar(dir, "test_batch.bin", 0, CIFAR_N);
}

static void test_cifar_generated(void **state) {
  (void)state;
  char dir[64];
  make_tmpdir(dir, sizeof dir);
  write_cifar_set(dir);
  tempo_dataset d;
  assert_int_equal(tempo_dataset_load(TEMPO_DATASET_CIFAR10, dir, true, &d), TEMPO_STATUS_OK);
  assert_int_equal(d.kind, TEMPO_DATASET_CIFAR10);
  assert_int_equal(d.n, 5 * CIFAR_N);
  assert_int_equal(d.c, 3);
  assert_int_equal(d.h, 32);
  assert_int_equal(d.w, 32);
  assert_int_equal(d.num_classes, 10);
  int i = 0;
  for (int f = 1; f <= 5; f++) {
    for (int r = 0; r < CIFAR_N; r++, i++) {
      if (d.labels[i] != (f * 3 + r) % 10) fail_msg("sample %d label %d", i, d.labels[i]);
      for (int k = 0; k < 3072; k += (r < 3 || r == CIFAR_N - 1) ? 1 : 97)
        if (d.images[(size_t)i * 3072 + k] != cifar_pixel(f, r, k)) fail_msg("sample %d pixel %d", i, k);
    }
  }
  /* Channel planes stay in file order: R = bytes 0..1023, G = 1024.., B = 2048... */
  assert_int_equal(d.images[3072 * (size_t)(CIFAR_N + 2) + 1024 + 5], cifar_pixel(2, 2, 1024 + 5));
  tempo_dataset_free(&d);
  assert_int_equal(tempo_dataset_load(TEMPO_DATASET_CIFAR10, dir, false, &d), TEMPO_STATUS_OK);
  assert_int_equal(d.n, CIFAR_N);
  assert_int_equal(d.labels[3], 3);
  assert_int_equal(d.images[3 * 3072 + 3071], cifar_pixel(0, 3, 3071));
  tempo_dataset_free(&d);
  remove_tree(dir);
}

static void test_cifar_errors(void **state) {
  (void)state;
  expect_fail(TEMPO_DATASET_CIFAR10, "/nonexistent/cifar", false, TEMPO_STATUS_IO, "/nonexistent/cifar/test_batch.bin",
              "--data-dir");
  char dir[64], path[160];
  make_tmpdir(dir, sizeof dir);
  write_cifar_set(dir);

  snprintf(path, sizeof path, "%s/data_batch_3.bin", dir);
  assert_int_equal(remove(path), 0);
  expect_fail(TEMPO_DATASET_CIFAR10, dir, true, TEMPO_STATUS_IO, path, "cifar-10-binary");
  assert_int_equal(mkdir(path, 0700), 0); /* a folder in its place */
  expect_fail(TEMPO_DATASET_CIFAR10, dir, true, TEMPO_STATUS_IO, path, "regular file");
  assert_int_equal(rmdir(path), 0);
  write_file(dir, "data_batch_3.bin", "", 0); /* empty */
  expect_fail(TEMPO_DATASET_CIFAR10, dir, true, TEMPO_STATUS_CORRUPT, path, "exactly 10000 records");
  write_cifar(dir, "data_batch_3.bin", 3, CIFAR_N);

  /* Truncated inside the first record's pixels, in the second record's label, mid-data, at a
   * record boundary (9999 whole records: refused, not trained on silently), one byte short. */
  size_t len;
  uint8_t *buf = read_whole(dir, "test_batch.bin", &len);
  assert_int_equal(len, (size_t)CIFAR_N * 3073);
  snprintf(path, sizeof path, "%s/test_batch.bin", dir);
  const size_t cuts[] = {1, 3000, 3073 + 1, 2 * 3073 + 1500, (size_t)(CIFAR_N - 1) * 3073, 3 * 3073, len - 1};
  for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
    write_file(dir, "test_batch.bin", buf, cuts[i]);
    expect_fail(TEMPO_DATASET_CIFAR10, dir, false, TEMPO_STATUS_CORRUPT, path, "truncated");
  }
  /* A label out of range in the last record. */
  buf[(size_t)(CIFAR_N - 1) * 3073] = 10;
  write_file(dir, "test_batch.bin", buf, len);
  expect_fail(TEMPO_DATASET_CIFAR10, dir, false, TEMPO_STATUS_CORRUPT, path, "label 10 of record 9999");
  buf[(size_t)(CIFAR_N - 1) * 3073] = 255;
  write_file(dir, "test_batch.bin", buf, len);
  expect_fail(TEMPO_DATASET_CIFAR10, dir, false, TEMPO_STATUS_CORRUPT, path, "out of range");
  free(buf);
  /* The train split still loads: errors in one split do not leak into the other. */
  tempo_dataset d;
  assert_int_equal(tempo_dataset_load(TEMPO_DATASET_CIFAR10, dir, true, &d), TEMPO_STATUS_OK);
  assert_int_equal(d.n, 5 * CIFAR_N);
  tempo_dataset_free(&d);
  remove_tree(dir);
}

static void test_bad_arguments(void **state) {
  (void)state;
  assert_int_equal(tempo_dataset_load(TEMPO_DATASET_FASHION_MNIST, NULL, true, NULL), TEMPO_STATUS_INVALID_ARGUMENT);
  tempo_dataset d;
  assert_int_equal(tempo_dataset_load((tempo_dataset_kind)7, NULL, true, &d), TEMPO_STATUS_INVALID_ARGUMENT);
  assert_null(d.images);
  char longdir[5000];
  memset(longdir, 'a', sizeof longdir - 1);
  longdir[sizeof longdir - 1] = '\0';
  assert_int_equal(tempo_dataset_load(TEMPO_DATASET_CIFAR10, longdir, true, &d), TEMPO_STATUS_INVALID_ARGUMENT);
  assert_non_null(strstr(tempo_errmsg(), "too long"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_kind_names),
      cmocka_unit_test(test_fmnist_train_real),
      cmocka_unit_test(test_fmnist_test_real),
      cmocka_unit_test(test_fmnist_generated_gz),
      cmocka_unit_test(test_fmnist_generated_plain),
      cmocka_unit_test(test_fmnist_missing),
      cmocka_unit_test(test_fmnist_bad_headers),
      cmocka_unit_test(test_fmnist_truncated),
      cmocka_unit_test(test_fmnist_corrupt_gzip),
      cmocka_unit_test(test_cifar_generated),
      cmocka_unit_test(test_cifar_errors),
      cmocka_unit_test(test_bad_arguments),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
