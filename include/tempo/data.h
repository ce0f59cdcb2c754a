/* data.h - datasets (Fashion-MNIST, CIFAR-10), batching, normalisation and augmentation.
 *
 * Dimension letters: n = samples, c = channels, h = height, w = width, b = batch.
 *
 * Loading reads a whole split into one owned (n, c, h, w) byte buffer and validates the
 * files at the trust boundary: magic numbers, dimensions, sizes (capped before any
 * allocation), truncation, gzip integrity and label range. A batcher then walks a loaded
 * dataset in batches of normalised floats. Its shuffle order and its augmentation draws
 * are pure functions of (seed, epoch, sample), never of how many batches were read
 * before, so tempo_batcher_seek() reproduces an uninterrupted run exactly (--resume). */
#ifndef TEMPO_DATA_H
#define TEMPO_DATA_H

#include <stdbool.h>
#include <stdint.h>

#include "tempo/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { TEMPO_DATASET_FASHION_MNIST = 0, TEMPO_DATASET_CIFAR10 = 1 } tempo_dataset_kind;

/* Largest split a loader accepts (samples); bigger headers or files are rejected as corrupt
 * before anything is allocated. */
#define TEMPO_DATASET_MAX_SAMPLES 1000000

/* Parses "fashion-mnist" / "cifar10"; false if unknown (then *out is untouched). */
bool tempo_dataset_kind_parse(const char *s, tempo_dataset_kind *out);
/* "fashion-mnist" or "cifar10" (static string; "unknown" for a bad value). */
const char *tempo_dataset_kind_name(tempo_dataset_kind k);
/* Default folder: /usr/share/datasets/fashion-mnist for Fashion-MNIST (Debian package
 * dataset-fashion-mnist), ./data/cifar-10-batches-bin for CIFAR-10. Static string. */
const char *tempo_dataset_default_dir(tempo_dataset_kind k);
/* Per-channel normalisation constants (static arrays of 3; Fashion-MNIST uses index 0):
 * Fashion-MNIST mean 0.2860 std 0.3530; CIFAR-10 mean (0.4914, 0.4822, 0.4465),
 * std (0.2470, 0.2435, 0.2616). */
const float *tempo_dataset_mean(tempo_dataset_kind k);
const float *tempo_dataset_std(tempo_dataset_kind k);

typedef struct {
  tempo_dataset_kind kind;
  int n;           /* samples */
  int c, h, w;     /* image shape: 1x28x28 or 3x32x32 */
  int num_classes; /* 10 */
  uint8_t *images; /* (n, c, h, w) raw pixels, owned */
  uint8_t *labels; /* (n) in [0, num_classes), owned */
} tempo_dataset;

/* Loads the train or test split from dir (NULL = tempo_dataset_default_dir(kind)).
 *   Fashion-MNIST: {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz, or the same names
 *                  without .gz (uncompressed IDX); 28x28 images.
 *   CIFAR-10:      data_batch_1..5.bin (train) or test_batch.bin (test); records of
 *                  1 label byte + 3072 pixel bytes (R plane, G plane, B plane), exactly
 *                  10000 records per file (any other size is refused as truncated or foreign).
 * A missing plain file whose sealed twin (F.sealed) is there is TEMPO_STATUS_INVALID_ARGUMENT:
 * the folder is sealed and needs the owner key.
 * On success *out owns its buffers (free with tempo_dataset_free). On failure *out is zeroed
 * and the status is
 *   TEMPO_STATUS_IO       a file is missing or unreadable,
 *   TEMPO_STATUS_CORRUPT  bad magic, wrong dims, truncated or oversized data, trailing bytes,
 *                         gzip errors, image/label count mismatch, a label out of range,
 *   TEMPO_STATUS_NO_MEMORY, TEMPO_STATUS_INVALID_ARGUMENT (bad kind, NULL out, path too long),
 * with a one-line message (tempo_errmsg) naming the file, the problem and what to do. */
TEMPO_WUR tempo_status tempo_dataset_load(tempo_dataset_kind kind, const char *dir, bool train, tempo_dataset *out);
/* As tempo_dataset_load, but with an owner key (seal.h) every file is read sealed: file F
 * above is read from F.sealed (Fashion-MNIST: <base>.gz.sealed, else <base>.sealed) and must
 * carry the label "data/<F without .gz>" (e.g. "data/train-labels-idx1-ubyte"), so sealed
 * files swapped between roles are refused. The decrypted bytes go through the same header,
 * size, gzip and label validation as plain files. Plain files are ignored when a key is
 * given (the host could substitute them). Extra errors: TEMPO_STATUS_CORRUPT (tampered,
 * truncated, wrong key), TEMPO_STATUS_MISMATCH (an authentic file of another role).
 * key NULL = tempo_dataset_load. */
typedef struct tempo_owner_key tempo_owner_key;
TEMPO_WUR tempo_status tempo_dataset_load_sealed(tempo_dataset_kind kind, const char *dir, bool train,
                                                 const tempo_owner_key *key, tempo_dataset *out);
/* Frees the buffers and zeroes *d. Safe on a zeroed struct and on NULL. */
void tempo_dataset_free(tempo_dataset *d);

/* Augmentation, applied in torchvision's order RandomCrop(h, padding=pad) then
 * RandomHorizontalFlip(0.5). Crop: the image is shifted by (dy, dx), each uniform in
 * [-pad, pad]; pixels from outside the image are raw value 0 before normalisation (zero
 * padding, as torchvision pads the uint8 image). Flip: mirrors x with probability 1/2. */
typedef struct {
  bool crop;
  int pad; /* 0 <= pad <= min(h, w); used only when crop is set */
  bool flip;
} tempo_augment;

/* Iterates over a dataset in batches. The fields are private; the struct is public so it
 * can live on the stack. The dataset must outlive the batcher and stay unchanged. */
typedef struct {
  const tempo_dataset *d;
  int batch_size;
  uint64_t seed;
  bool shuffle, drop_last;
  tempo_augment aug; /* crop/flip both false = no augmentation */
  uint32_t *perm;    /* (n) sample order of perm_epoch, owned */
  int perm_epoch;    /* epoch perm was built for, -1 = none */
  int epoch, batch;  /* position: next batch to return */
  float lut[3][256]; /* (c, pixel) normalised value of each raw pixel value */
} tempo_batcher;

/* Prepares a batcher over d positioned at epoch 0, batch 0. shuffle: the order of each
 * epoch is a permutation drawn from (seed, epoch); otherwise samples come in file order.
 * aug: NULL or an all-false struct = none. Normalises with tempo_dataset_mean/std(d->kind):
 * x = (pixel / 255 - mean[c]) / std[c] in float. Errors: TEMPO_STATUS_INVALID_ARGUMENT
 * (NULL pointers, empty dataset, batch_size < 1, pad out of range), TEMPO_STATUS_NO_MEMORY. */
TEMPO_WUR tempo_status tempo_batcher_init(tempo_batcher *b, const tempo_dataset *d, int batch_size, uint64_t seed,
                                          bool shuffle, const tempo_augment *aug);
/* Drop the last partial batch of each epoch (default false). Affects batches_per_epoch. */
void tempo_batcher_set_drop_last(tempo_batcher *b, bool drop_last);
/* Number of batches per epoch: ceil(n / batch_size), or floor when drop_last is set. */
int tempo_batcher_batches_per_epoch(const tempo_batcher *b);
/* Positions the iterator at batch `batch_index` of epoch `epoch` (both 0-based, >= 0;
 * a batch_index past the end makes the next call return 0). */
void tempo_batcher_seek(tempo_batcher *b, int epoch, int batch_index);
/* The current position (the epoch and batch the next call to tempo_batcher_next returns). */
void tempo_batcher_position(const tempo_batcher *b, int *epoch, int *batch_index);
/* Fills x (batch_size, c, h, w) floats and y (batch_size) labels and advances one batch;
 * returns the number of samples written (< batch_size only for the last partial batch;
 * 0 at the end of the epoch, after which the caller seeks to the next epoch). */
int tempo_batcher_next(tempo_batcher *b, float *x, int *y);
/* Frees the permutation and zeroes *b. Safe on a zeroed struct and on NULL. */
void tempo_batcher_free(tempo_batcher *b);

#ifdef __cplusplus
}
#endif
#endif
