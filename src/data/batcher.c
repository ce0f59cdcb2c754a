/* batcher.c - batches of normalised, optionally shuffled and augmented samples.
 *
 * Determinism: the order of epoch e is a Fisher-Yates permutation from an rng seeded with
 * (seed, stream(e)); the augmentation of a sample is drawn from an rng seeded with
 * (seed, stream(e, dataset index)). Neither depends on what was read before, so seeking to
 * (e, k) yields exactly the batches an uninterrupted run yields there. */
#include "tempo/data.h"

#include <stdlib.h>
#include <string.h>

#include "tempo/common.h"
#include "tempo/rng.h"

/* Domain constants keep the shuffle and augmentation streams apart. */
#define STREAM_SHUFFLE 0x53485546464c45ULL /* "SHUFFLE" */
#define STREAM_AUGMENT 0x4155474d454e54ULL /* "AUGMENT" */

static uint64_t mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

tempo_status tempo_batcher_init(tempo_batcher *b, const tempo_dataset *d, int batch_size, uint64_t seed,
                                bool shuffle, const tempo_augment *aug) {
  if (!b) return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "tempo_batcher_init: b is NULL");
  memset(b, 0, sizeof *b);
  if (!d || !d->images || !d->labels || d->n < 1)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "tempo_batcher_init: empty or unloaded dataset");
  if (d->c < 1 || d->c > (d->has_norm ? TEMPO_DATASET_MAX_CHANNELS : 3) || d->h < 1 || d->w < 1)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "tempo_batcher_init: bad image shape %dx%dx%d", d->c, d->h,
                           d->w);
  if (batch_size < 1)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "tempo_batcher_init: batch size %d < 1", batch_size);
  if (aug && aug->crop && (aug->pad < 0 || aug->pad > d->h || aug->pad > d->w))
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "tempo_batcher_init: crop padding %d outside 0..%d", aug->pad,
                           d->h < d->w ? d->h : d->w);
  size_t perm_bytes;
  if (!tempo_mul_size((size_t)d->n, sizeof(uint32_t), &perm_bytes))
    return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "tempo_batcher_init: permutation size overflows");
  b->perm = malloc(perm_bytes);
  b->lut = d->pixel_type == TEMPO_PIXELS_U8 ? malloc((size_t)d->c * 256 * sizeof(float)) : NULL;
  if (!b->perm || (d->pixel_type == TEMPO_PIXELS_U8 && !b->lut)) {
    tempo_batcher_free(b);
    return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "tempo_batcher_init: cannot allocate %zu bytes", perm_bytes);
  }
  b->d = d;
  b->batch_size = batch_size;
  b->seed = seed;
  b->shuffle = shuffle;
  if (aug) {
    b->aug = *aug;
    if (!b->aug.crop) b->aug.pad = 0;
  }
  b->perm_epoch = -1;
  /* Same arithmetic as torchvision: ToTensor (p / 255 in float) then Normalize ((x - m) / s). */
  b->mean = d->has_norm ? d->mean : tempo_dataset_mean(d->kind);
  b->std = d->has_norm ? d->std : tempo_dataset_std(d->kind);
  if (b->lut)
    for (int c = 0; c < d->c; c++)
      for (int p = 0; p < 256; p++) b->lut[c * 256 + p] = ((float)p / 255.0f - b->mean[c]) / b->std[c];
  tempo_batcher_seek(b, 0, 0);
  return TEMPO_STATUS_OK;
}

void tempo_batcher_set_drop_last(tempo_batcher *b, bool drop_last) { b->drop_last = drop_last; }

int tempo_batcher_batches_per_epoch(const tempo_batcher *b) {
  int n = b->d->n, bs = b->batch_size;
  return b->drop_last ? n / bs : n / bs + (n % bs != 0);
}

/* Builds the sample order of `epoch` into b->perm (identity when not shuffling). */
static void build_perm(tempo_batcher *b, int epoch) {
  uint32_t n = (uint32_t)b->d->n;
  for (uint32_t i = 0; i < n; i++) b->perm[i] = i;
  if (b->shuffle) {
    tempo_rng r;
    tempo_rng_seed(&r, b->seed, mix64(STREAM_SHUFFLE ^ (uint64_t)epoch));
    tempo_rng_shuffle_u32(&r, b->perm, n);
  }
  b->perm_epoch = epoch;
}

void tempo_batcher_seek(tempo_batcher *b, int epoch, int batch_index) {
  TEMPO_ASSERT(epoch >= 0 && batch_index >= 0);
  b->epoch = epoch;
  b->batch = batch_index;
  if (b->perm_epoch != epoch) build_perm(b, epoch);
}

void tempo_batcher_position(const tempo_batcher *b, int *epoch, int *batch_index) {
  if (epoch) *epoch = b->epoch;
  if (batch_index) *batch_index = b->batch;
}

/* The normalised value of channel c at offset p (y * w + x) of the sample at src. */
static inline float pixel_at(const tempo_batcher *b, const uint8_t *src, int c, size_t p) {
  const tempo_dataset *d = b->d;
  const size_t k = d->nhwc ? p * (size_t)d->c + (size_t)c : (size_t)c * d->h * d->w + p;
  if (d->pixel_type == TEMPO_PIXELS_U8) return b->lut[c * 256 + src[k]];
  float v;
  memcpy(&v, src + 4 * k, 4);
  return (v - b->mean[c]) / b->std[c];
}

/* The normalised value of a raw 0 (crop padding) in channel c. */
static inline float zero_at(const tempo_batcher *b, int c) {
  return b->lut ? b->lut[c * 256] : (0.0f - b->mean[c]) / b->std[c];
}

static size_t sample_bytes(const tempo_dataset *d) {
  return (size_t)d->c * d->h * d->w * (d->pixel_type == TEMPO_PIXELS_F32 ? 4 : 1);
}

/* Writes sample `idx` of the dataset, normalised, into x (c, h, w). */
static void write_plain(const tempo_batcher *b, size_t idx, float *x) {
  const tempo_dataset *d = b->d;
  size_t plane = (size_t)d->h * (size_t)d->w;
  const uint8_t *src = d->images + idx * sample_bytes(d);
  if (d->pixel_type == TEMPO_PIXELS_U8 && !d->nhwc) { /* the built-in datasets: a table per channel */
    for (int c = 0; c < d->c; c++) {
      const float *lut = b->lut + c * 256;
      for (size_t i = 0; i < plane; i++) x[c * plane + i] = lut[src[c * plane + i]];
    }
    return;
  }
  for (int c = 0; c < d->c; c++)
    for (size_t i = 0; i < plane; i++) x[c * plane + i] = pixel_at(b, src, c, i);
}

/* Writes sample `idx` shifted by (dy, dx) and optionally mirrored: out(y, x) =
 * in(y + dy, x' + dx) with x' = w - 1 - x when flipped, raw 0 outside the image. */
static void write_augmented(const tempo_batcher *b, size_t idx, int dy, int dx, bool flip, float *x) {
  const tempo_dataset *d = b->d;
  int h = d->h, w = d->w;
  size_t plane = (size_t)h * (size_t)w;
  const uint8_t *src = d->images + idx * sample_bytes(d);
  for (int c = 0; c < d->c; c++) {
    const float zero = zero_at(b, c);
    float *out = x + c * plane;
    for (int y = 0; y < h; y++) {
      int sy = y + dy;
      float *row = out + (size_t)y * w;
      if (sy < 0 || sy >= h) {
        for (int xx = 0; xx < w; xx++) row[xx] = zero;
        continue;
      }
      for (int xx = 0; xx < w; xx++) {
        int sx = (flip ? w - 1 - xx : xx) + dx;
        row[xx] = (sx >= 0 && sx < w) ? pixel_at(b, src, c, (size_t)sy * w + sx) : zero;
      }
    }
  }
}

int tempo_batcher_next(tempo_batcher *b, float *x, int *y) {
  const tempo_dataset *d = b->d;
  if (b->batch >= tempo_batcher_batches_per_epoch(b)) return 0;
  if (b->perm_epoch != b->epoch) build_perm(b, b->epoch);
  size_t start = (size_t)b->batch * (size_t)b->batch_size;
  int count = b->batch_size;
  if (start + (size_t)count > (size_t)d->n) count = (int)((size_t)d->n - start);
  size_t sample = (size_t)d->c * (size_t)d->h * (size_t)d->w;
  bool augment = b->aug.crop || b->aug.flip;
  uint64_t epoch_key = mix64(STREAM_AUGMENT ^ (uint64_t)b->epoch);
  for (int i = 0; i < count; i++) {
    uint32_t idx = b->perm[start + (size_t)i];
    float *xi = x + (size_t)i * sample;
    y[i] = tempo_dataset_label(d, idx);
    if (!augment) {
      write_plain(b, idx, xi);
      continue;
    }
    tempo_rng r;
    tempo_rng_seed(&r, b->seed, mix64(epoch_key ^ idx));
    int dy = 0, dx = 0;
    bool flip = false;
    if (b->aug.crop && b->aug.pad > 0) {
      uint64_t span = 2 * (uint64_t)b->aug.pad + 1;
      dy = (int)tempo_rng_below(&r, span) - b->aug.pad;
      dx = (int)tempo_rng_below(&r, span) - b->aug.pad;
    }
    if (b->aug.flip) flip = tempo_rng_u64(&r) >> 63;
    write_augmented(b, idx, dy, dx, flip, xi);
  }
  b->batch++;
  return count;
}

void tempo_batcher_free(tempo_batcher *b) {
  if (!b) return;
  free(b->perm);
  free(b->lut);
  memset(b, 0, sizeof *b);
}
