/* test_data_batcher.c - the batcher: normalisation values, batch counts, shuffle as a
 * permutation that depends on (seed, epoch), determinism, seek equality (the --resume
 * guarantee), and augmentation (shape kept, flip is a mirror, crop shifts by at most pad),
 * on synthetic in-memory datasets plus one pass over the real Fashion-MNIST train split. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tempo/common.h"
#include "tempo/data.h"
#include "tempo/rng.h"

/* A synthetic dataset of n images (c, h, w); pixel bytes from fill(i, k) or random. */
static tempo_dataset make_ds(tempo_dataset_kind kind, int n, int c, int h, int w, uint64_t seed) {
  tempo_dataset d;
  memset(&d, 0, sizeof d);
  d.kind = kind, d.n = n, d.c = c, d.h = h, d.w = w, d.num_classes = 10;
  size_t px = (size_t)n * c * h * w;
  d.images = malloc(px);
  d.labels = malloc((size_t)n);
  assert_non_null(d.images);
  assert_non_null(d.labels);
  tempo_rng r;
  tempo_rng_seed(&r, seed, 99);
  for (size_t k = 0; k < px; k++) d.images[k] = (uint8_t)(1 + tempo_rng_below(&r, 255)); /* 1..255, never 0 */
  for (int i = 0; i < n; i++) d.labels[i] = (uint8_t)(i % 10);
  return d;
}

/* Encodes the sample index in pixels 0 and 1 so the order can be read back from x. */
static void tag_indices(tempo_dataset *d) {
  size_t s = (size_t)d->c * d->h * d->w;
  for (int i = 0; i < d->n; i++) d->images[i * s] = (uint8_t)(i & 255), d->images[i * s + 1] = (uint8_t)(i >> 8);
}

static int pixel_of(const tempo_dataset *d, int c, float v) {
  double p = ((double)v * tempo_dataset_std(d->kind)[c] + tempo_dataset_mean(d->kind)[c]) * 255.0;
  return (int)lround(p);
}

static int index_of(const tempo_dataset *d, const float *x) { return pixel_of(d, 0, x[0]) + 256 * pixel_of(d, 0, x[1]); }

static size_t sample_size(const tempo_dataset *d) { return (size_t)d->c * d->h * d->w; }

static void test_normalisation(void **state) {
  (void)state;
  for (int kind = 0; kind < 2; kind++) {
    int c = kind ? 3 : 1;
    tempo_dataset d = make_ds((tempo_dataset_kind)kind, 3, c, 4, 4, 1);
    size_t s = sample_size(&d);
    d.images[0] = 0, d.images[1] = 255, d.images[2] = 128;
    if (c == 3) d.images[16] = 0, d.images[32] = 255, d.images[33] = 73;
    tempo_batcher b;
    assert_int_equal(tempo_batcher_init(&b, &d, 3, 7, false, NULL), TEMPO_STATUS_OK);
    float *x = calloc(3 * s, sizeof *x);
    int y[3];
    assert_int_equal(tempo_batcher_next(&b, x, y), 3);
    const double m[3] = {kind ? 0.4914 : 0.2860, 0.4822, 0.4465}, sd[3] = {kind ? 0.2470 : 0.3530, 0.2435, 0.2616};
    assert_float_equal(x[0], (0.0 - m[0]) / sd[0], 1e-6);
    assert_float_equal(x[1], (1.0 - m[0]) / sd[0], 1e-6);
    assert_float_equal(x[2], (128.0 / 255.0 - m[0]) / sd[0], 1e-6);
    if (c == 3) {
      assert_float_equal(x[16], (0.0 - m[1]) / sd[1], 1e-6);
      assert_float_equal(x[32], (1.0 - m[2]) / sd[2], 1e-6);
      assert_float_equal(x[33], (73.0 / 255.0 - m[2]) / sd[2], 1e-6);
    }
    /* Every value of every sample, unshuffled, in file order. */
    for (size_t k = 0; k < 3 * s; k++) {
      int ch = (int)(k % s) / 16;
      assert_float_equal(x[k], (d.images[k] / 255.0 - m[ch]) / sd[ch], 1e-6);
    }
    for (int i = 0; i < 3; i++) assert_int_equal(y[i], i);
    free(x);
    tempo_batcher_free(&b);
    tempo_dataset_free(&d);
  }
}

static void test_batch_counts(void **state) {
  (void)state;
  tempo_dataset d = make_ds(TEMPO_DATASET_FASHION_MNIST, 10, 1, 2, 2, 3);
  tempo_batcher b;
  assert_int_equal(tempo_batcher_init(&b, &d, 3, 1, true, NULL), TEMPO_STATUS_OK);
  float x[3 * 4];
  int y[3];
  assert_int_equal(tempo_batcher_batches_per_epoch(&b), 4);
  const int expect[] = {3, 3, 3, 1, 0, 0};
  for (int i = 0; i < 6; i++) assert_int_equal(tempo_batcher_next(&b, x, y), expect[i]);
  int e, k;
  tempo_batcher_position(&b, &e, &k);
  assert_int_equal(e, 0);
  assert_int_equal(k, 4);
  tempo_batcher_set_drop_last(&b, true);
  assert_int_equal(tempo_batcher_batches_per_epoch(&b), 3);
  tempo_batcher_seek(&b, 1, 0);
  const int expect_drop[] = {3, 3, 3, 0};
  for (int i = 0; i < 4; i++) assert_int_equal(tempo_batcher_next(&b, x, y), expect_drop[i]);
  tempo_batcher_seek(&b, 1, 7); /* past the end */
  assert_int_equal(tempo_batcher_next(&b, x, y), 0);
  tempo_batcher_free(&b);
  /* Batch larger than the dataset: one partial batch, or none with drop_last. */
  assert_int_equal(tempo_batcher_init(&b, &d, 64, 1, false, NULL), TEMPO_STATUS_OK);
  assert_int_equal(tempo_batcher_batches_per_epoch(&b), 1);
  tempo_batcher_set_drop_last(&b, true);
  assert_int_equal(tempo_batcher_batches_per_epoch(&b), 0);
  tempo_batcher_free(&b);
  tempo_batcher_free(&b); /* zeroed: safe */
  tempo_batcher_free(NULL);
  tempo_dataset_free(&d);
}

/* Reads one epoch's sample order (dataset indices) into order (n). */
static void epoch_order(tempo_batcher *b, const tempo_dataset *d, int epoch, int *order) {
  size_t s = sample_size(d);
  float *x = malloc((size_t)b->batch_size * s * sizeof *x);
  int *y = malloc((size_t)b->batch_size * sizeof *y);
  assert_non_null(x);
  assert_non_null(y);
  tempo_batcher_seek(b, epoch, 0);
  int pos = 0, got;
  while ((got = tempo_batcher_next(b, x, y)) > 0) {
    for (int i = 0; i < got; i++, pos++) {
      order[pos] = index_of(d, x + i * s);
      assert_int_equal(y[i], order[pos] % 10); /* the label travels with its image */
    }
  }
  assert_int_equal(pos, d->n);
  free(x);
  free(y);
}

static void test_shuffle_permutation(void **state) {
  (void)state;
  const int n = 1000;
  tempo_dataset d = make_ds(TEMPO_DATASET_FASHION_MNIST, n, 1, 3, 3, 5);
  tag_indices(&d);
  int *o[6];
  for (int i = 0; i < 6; i++) assert_non_null(o[i] = malloc(n * sizeof(int)));
  tempo_batcher a, b, c, plain;
  assert_int_equal(tempo_batcher_init(&a, &d, 64, 42, true, NULL), TEMPO_STATUS_OK);
  assert_int_equal(tempo_batcher_init(&b, &d, 100, 42, true, NULL), TEMPO_STATUS_OK);
  assert_int_equal(tempo_batcher_init(&c, &d, 64, 43, true, NULL), TEMPO_STATUS_OK);
  assert_int_equal(tempo_batcher_init(&plain, &d, 64, 42, false, NULL), TEMPO_STATUS_OK);
  epoch_order(&a, &d, 0, o[0]);
  epoch_order(&a, &d, 1, o[1]);
  epoch_order(&b, &d, 0, o[2]); /* same seed, other batch size */
  epoch_order(&c, &d, 0, o[3]); /* other seed */
  epoch_order(&plain, &d, 3, o[4]);
  epoch_order(&a, &d, 0, o[5]); /* epoch 0 again after epoch 1 */
  for (int k = 0; k < 4; k++) {
    char *seen = calloc(n, 1);
    for (int i = 0; i < n; i++) {
      assert_in_range(o[k][i], 0, n - 1);
      assert_int_equal(seen[o[k][i]], 0);
      seen[o[k][i]] = 1;
    }
    free(seen);
  }
  int fixed = 0, same01 = 0, same03 = 0;
  for (int i = 0; i < n; i++) {
    fixed += o[0][i] == i;
    same01 += o[0][i] == o[1][i];
    same03 += o[0][i] == o[3][i];
    assert_int_equal(o[4][i], i); /* no shuffle: file order in every epoch */
  }
  /* A random permutation has about one fixed point; allow a generous margin. */
  assert_true(fixed < 20);
  assert_true(same01 < 20);
  assert_true(same03 < 20);
  assert_memory_equal(o[0], o[2], n * sizeof(int));
  assert_memory_equal(o[0], o[5], n * sizeof(int));
  tempo_batcher_free(&a), tempo_batcher_free(&b), tempo_batcher_free(&c), tempo_batcher_free(&plain);
  for (int i = 0; i < 6; i++) free(o[i]);
  tempo_dataset_free(&d);
}

/* Iterating to batch k of epoch e and seeking to (e, k) give identical batches, with
 * shuffling and augmentation on, on a dataset with a partial last batch. */
static void test_seek_equality(void **state) {
  (void)state;
  tempo_dataset d = make_ds(TEMPO_DATASET_CIFAR10, 103, 3, 8, 8, 11);
  const int bs = 10, epochs = 3;
  size_t s = sample_size(&d);
  tempo_augment aug = {.crop = true, .pad = 2, .flip = true};
  tempo_batcher run;
  assert_int_equal(tempo_batcher_init(&run, &d, bs, 2024, true, &aug), TEMPO_STATUS_OK);
  int nb = tempo_batcher_batches_per_epoch(&run);
  assert_int_equal(nb, 11);
  float *xs = calloc((size_t)epochs * nb * bs * s, sizeof(float));
  int *ys = calloc((size_t)epochs * nb * bs, sizeof(int));
  int counts[3][11];
  for (int e = 0; e < epochs; e++) {
    tempo_batcher_seek(&run, e, 0);
    for (int k = 0; k < nb; k++)
      counts[e][k] = tempo_batcher_next(&run, xs + ((size_t)e * nb + k) * bs * s, ys + ((size_t)e * nb + k) * bs);
    assert_int_equal(tempo_batcher_next(&run, xs, ys), 0);
  }
  float *x = malloc(bs * s * sizeof(float));
  int y[10];
  tempo_batcher b;
  assert_int_equal(tempo_batcher_init(&b, &d, bs, 2024, true, &aug), TEMPO_STATUS_OK);
  /* Jump around, backwards included, and read a few batches from each position. */
  const int pos[][2] = {{2, 7}, {0, 3}, {1, 10}, {0, 0}, {2, 0}, {1, 4}};
  for (size_t p = 0; p < sizeof pos / sizeof pos[0]; p++) {
    tempo_batcher_seek(&b, pos[p][0], pos[p][1]);
    for (int k = pos[p][1]; k < nb && k < pos[p][1] + 3; k++) {
      int e = pos[p][0];
      int got = tempo_batcher_next(&b, x, y);
      assert_int_equal(got, counts[e][k]);
      assert_memory_equal(x, xs + ((size_t)e * nb + k) * bs * s, (size_t)got * s * sizeof(float));
      assert_memory_equal(y, ys + ((size_t)e * nb + k) * bs, (size_t)got * sizeof(int));
    }
  }
  assert_int_equal(counts[0][10], 3);
  /* Augmented epochs differ from each other (fresh crops/flips and order per epoch). */
  assert_memory_not_equal(xs, xs + (size_t)nb * bs * s, (size_t)bs * s * sizeof(float));
  free(x), free(xs), free(ys);
  tempo_batcher_free(&b), tempo_batcher_free(&run);
  tempo_dataset_free(&d);
}

/* out == in shifted by (dy, dx) (raw 0 outside) and mirrored when flip, for every channel. */
static bool matches(const tempo_batcher *b, const uint8_t *in, const float *out, int dy, int dx, bool flip) {
  const tempo_dataset *d = b->d;
  for (int c = 0; c < d->c; c++)
    for (int y = 0; y < d->h; y++)
      for (int x = 0; x < d->w; x++) {
        int sy = y + dy, sx = (flip ? d->w - 1 - x : x) + dx;
        int p = (sy >= 0 && sy < d->h && sx >= 0 && sx < d->w) ? in[(c * d->h + sy) * d->w + sx] : 0;
        if (out[(c * d->h + y) * d->w + x] != b->lut[c * 256 + p]) return false;
      }
  return true;
}

/* Runs one augmented epoch next to an unaugmented one (same seed, same order) and checks that
 * each output is the source image under some allowed transform; returns how many distinct
 * (dy, dx, flip) transforms occurred. */
static int check_augmented(tempo_dataset *d, const tempo_augment *aug) {
  const int bs = 16;
  size_t s = sample_size(d);
  tempo_batcher a, plain;
  assert_int_equal(tempo_batcher_init(&a, d, bs, 77, true, aug), TEMPO_STATUS_OK);
  assert_int_equal(tempo_batcher_init(&plain, d, bs, 77, true, NULL), TEMPO_STATUS_OK);
  const float guard = -1234.5f;
  float *x = malloc((bs * s + 8) * sizeof(float)), *xp = malloc(bs * s * sizeof(float));
  int y[16], yp[16];
  char used[2][9][9] = {{{0}}};
  int distinct = 0, got;
  for (size_t k = 0; k < bs * s + 8; k++) x[k] = guard;
  while ((got = tempo_batcher_next(&a, x, y)) > 0) {
    assert_int_equal(tempo_batcher_next(&plain, xp, yp), got);
    assert_memory_equal(y, yp, got * sizeof(int)); /* augmentation does not change the order */
    for (int k = 0; k < 8; k++) assert_true(x[bs * s + k] == guard); /* nothing written past the batch */
    for (int i = 0; i < got; i++) {
      int idx = index_of(d, xp + i * s);
      const uint8_t *in = d->images + (size_t)idx * s;
      int pad = aug->crop ? aug->pad : 0, found = 0;
      for (int f = 0; f <= (aug->flip ? 1 : 0); f++)
        for (int dy = -pad; dy <= pad; dy++)
          for (int dx = -pad; dx <= pad; dx++)
            if (matches(&a, in, x + i * s, dy, dx, f)) {
              found = 1;
              if (!used[f][dy + 4][dx + 4]) used[f][dy + 4][dx + 4] = 1, distinct++;
            }
      if (!found) fail_msg("sample %d is not a shift within %d (flip %d) of its source", idx, pad, aug->flip);
    }
  }
  free(x), free(xp);
  tempo_batcher_free(&a), tempo_batcher_free(&plain);
  return distinct;
}

static void test_flip_is_mirror(void **state) {
  (void)state;
  tempo_dataset d = make_ds(TEMPO_DATASET_FASHION_MNIST, 300, 1, 6, 7, 21);
  tag_indices(&d);
  tempo_augment aug = {.flip = true};
  assert_int_equal(check_augmented(&d, &aug), 2); /* identity and mirror, nothing else */
  tempo_dataset_free(&d);
}

static void test_crop_shift_within_pad(void **state) {
  (void)state;
  for (int kind = 0; kind < 2; kind++) {
    int c = kind ? 3 : 1;
    tempo_dataset d = make_ds((tempo_dataset_kind)kind, 500, c, 12, 10, 31 + kind);
    tag_indices(&d);
    tempo_augment aug = {.crop = true, .pad = 3, .flip = kind == 1};
    int distinct = check_augmented(&d, &aug);
    /* 49 shifts (98 with flip) drawn 500 times: nearly all occur, none outside the pad. */
    print_message("kind %d: %d distinct transforms\n", kind, distinct);
    assert_in_range(distinct, kind ? 85 : 45, kind ? 98 : 49);
    tempo_dataset_free(&d);
  }
  /* pad 0 crops nothing. */
  tempo_dataset d = make_ds(TEMPO_DATASET_CIFAR10, 50, 3, 5, 5, 3);
  tag_indices(&d);
  tempo_augment none = {.crop = true, .pad = 0};
  assert_int_equal(check_augmented(&d, &none), 1);
  tempo_dataset_free(&d);
}

static void test_invalid_arguments(void **state) {
  (void)state;
  tempo_dataset d = make_ds(TEMPO_DATASET_FASHION_MNIST, 4, 1, 5, 5, 1);
  tempo_batcher b;
  assert_int_equal(tempo_batcher_init(&b, &d, 0, 1, false, NULL), TEMPO_STATUS_INVALID_ARGUMENT);
  assert_null(b.perm);
  tempo_augment big = {.crop = true, .pad = 6};
  assert_int_equal(tempo_batcher_init(&b, &d, 2, 1, false, &big), TEMPO_STATUS_INVALID_ARGUMENT);
  assert_non_null(strstr(tempo_errmsg(), "padding 6"));
  tempo_augment neg = {.crop = true, .pad = -1};
  assert_int_equal(tempo_batcher_init(&b, &d, 2, 1, false, &neg), TEMPO_STATUS_INVALID_ARGUMENT);
  tempo_dataset empty;
  memset(&empty, 0, sizeof empty);
  assert_int_equal(tempo_batcher_init(&b, &empty, 2, 1, false, NULL), TEMPO_STATUS_INVALID_ARGUMENT);
  assert_int_equal(tempo_batcher_init(&b, NULL, 2, 1, false, NULL), TEMPO_STATUS_INVALID_ARGUMENT);
  tempo_batcher_free(&b);
  tempo_dataset_free(&d);
}

/* One shuffled, augmented epoch over the real train split: every label seen 6000 times and
 * the normalised pixels have mean ~0 and std ~1 (the constants are the split's statistics). */
static void test_real_epoch(void **state) {
  (void)state;
  tempo_dataset d;
  tempo_status st = tempo_dataset_load(TEMPO_DATASET_FASHION_MNIST, NULL, true, &d);
  if (st != TEMPO_STATUS_OK) print_error("%s\n", tempo_errmsg());
  assert_int_equal(st, TEMPO_STATUS_OK);
  const int bs = 256;
  size_t s = sample_size(&d);
  float *x = malloc(bs * s * sizeof(float));
  int y[256], hist[10] = {0};
  for (int pass = 0; pass < 2; pass++) {
    tempo_augment aug = {.crop = pass == 1, .pad = 2, .flip = pass == 1};
    tempo_batcher b;
    assert_int_equal(tempo_batcher_init(&b, &d, bs, 5, true, &aug), TEMPO_STATUS_OK);
    tempo_batcher_seek(&b, 4, 0);
    double sum = 0, sq = 0, t0 = tempo_now();
    long total = 0;
    int got;
    while ((got = tempo_batcher_next(&b, x, y)) > 0) {
      for (size_t k = 0; k < (size_t)got * s; k++) sum += x[k], sq += (double)x[k] * x[k];
      for (int i = 0; i < got; i++) hist[y[i]]++;
      total += got;
    }
    double secs = tempo_now() - t0;
    double mean = sum / ((double)total * s), sd = sqrt(sq / ((double)total * s) - mean * mean);
    print_message("epoch (aug %d): %ld samples in %.3f s (incl. stats), mean %.4f std %.4f\n", pass, total, secs, mean,
                  sd);
    assert_int_equal(total, 60000);
    if (pass == 0) {
      assert_float_equal(mean, 0.0, 0.01);
      assert_float_equal(sd, 1.0, 0.01);
    } else { /* zero padding adds background: the mean drops a little, std stays near 1 */
      assert_true(mean < 0.0 && mean > -0.1);
      assert_float_equal(sd, 1.0, 0.05);
    }
    tempo_batcher_free(&b);
  }
  for (int c = 0; c < 10; c++) assert_int_equal(hist[c], 12000);
  free(x);
  tempo_dataset_free(&d);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_normalisation),        cmocka_unit_test(test_batch_counts),
      cmocka_unit_test(test_shuffle_permutation),  cmocka_unit_test(test_seek_equality),
      cmocka_unit_test(test_flip_is_mirror),       cmocka_unit_test(test_crop_shift_within_pad),
      cmocka_unit_test(test_invalid_arguments),    cmocka_unit_test(test_real_epoch),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
