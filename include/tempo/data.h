/* data.h - datasets (Fashion-MNIST, CIFAR-10, NumPy .npy arrays), batching, normalisation
 * and augmentation.
 *
 * Dimension letters: n = samples, c = channels, h = height, w = width, b = batch.
 *
 * The built-in loaders read a whole split into one owned (n, c, h, w) byte buffer and
 * validate the files at the trust boundary: magic numbers, dimensions, sizes (capped before
 * any allocation), truncation, gzip integrity and label range. The .npy loader (npy.c)
 * memory-maps the image array instead (a sealed one is decrypted into one buffer, wiped when
 * freed) and copies only the labels, which it validates. A batcher then walks a loaded
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

typedef enum {
  TEMPO_DATASET_FASHION_MNIST = 0,
  TEMPO_DATASET_CIFAR10 = 1,
  TEMPO_DATASET_NPY = 2, /* the user's .npy arrays (tempo_npy_load) */
} tempo_dataset_kind;

/* Largest split a loader accepts (samples); bigger headers or files are rejected as corrupt
 * before anything is allocated. */
#define TEMPO_DATASET_MAX_SAMPLES 1000000
/* Bounds of a .npy dataset: channels, classes, and values per sample (c * h * w). */
#define TEMPO_DATASET_MAX_CHANNELS 256
#define TEMPO_DATASET_MAX_CLASSES 65536
#define TEMPO_DATASET_MAX_SAMPLE_VALUES (1 << 24)

/* Parses "fashion-mnist" / "cifar10" / "npy"; false if unknown (then *out is untouched). */
bool tempo_dataset_kind_parse(const char *s, tempo_dataset_kind *out);
/* "fashion-mnist", "cifar10" or "npy" (static string; "unknown" for a bad value). */
const char *tempo_dataset_kind_name(tempo_dataset_kind k);
/* Default folder: /usr/share/datasets/fashion-mnist for Fashion-MNIST (Debian package
 * dataset-fashion-mnist), ./data/cifar-10-batches-bin for CIFAR-10, "" for npy (its files
 * are named one by one). Static string. */
const char *tempo_dataset_default_dir(tempo_dataset_kind k);
/* Per-channel normalisation constants (static arrays of 3; Fashion-MNIST uses index 0):
 * Fashion-MNIST mean 0.2860 std 0.3530; CIFAR-10 mean (0.4914, 0.4822, 0.4465),
 * std (0.2470, 0.2435, 0.2616). npy has no constants (its statistics come from the data
 * or the user): these return Fashion-MNIST's for it. */
const float *tempo_dataset_mean(tempo_dataset_kind k);
const float *tempo_dataset_std(tempo_dataset_kind k);

/* How the pixels of a dataset are stored. */
typedef enum {
  TEMPO_PIXELS_U8 = 0,  /* bytes 0..255; normalised as (p / 255 - mean) / std (torchvision's ToTensor) */
  TEMPO_PIXELS_F32 = 1, /* little-endian float32, finite; normalised as (v - mean) / std */
} tempo_pixel_type;

typedef struct {
  tempo_dataset_kind kind;
  int n;           /* samples */
  int c, h, w;     /* image shape (1x28x28, 3x32x32, or the .npy array's) */
  int num_classes; /* 10, or a .npy dataset's */
  uint8_t *images; /* (n, c, h, w) pixels, or (n, h, w, c) when nhwc; pixel_type values; owned
                      (malloc'ed, or inside the mapping or buffer that store holds: read only) */
  uint8_t *labels; /* (n) little-endian integers of label_bytes bytes each, in [0, num_classes); owned */
  tempo_pixel_type pixel_type; /* TEMPO_PIXELS_U8 for the built-in datasets */
  bool nhwc;                   /* images are (n, h, w, c) (channels last) */
  int label_bytes;             /* 1 (0 = 1: uint8), 4 (int32) or 8 (int64) */
  /* Normalisation: x = (value - mean[c]) / std[c], value = p / 255 for u8 pixels. When
   * has_norm is false the batcher uses tempo_dataset_mean/std(kind) (c <= 3). */
  bool has_norm;
  float mean[TEMPO_DATASET_MAX_CHANNELS], std[TEMPO_DATASET_MAX_CHANNELS];
  /* private: the mapping (store_mapped) or the decrypted file buffer that images points into
   * (NULL: images is malloc'ed), and whether the buffers hold sealed plaintext (wiped when freed). */
  void *store;
  size_t store_len;
  bool store_mapped, wipe;
} tempo_dataset;

/* Label i of d (i < d->n), decoded from its label_bytes. */
int tempo_dataset_label(const tempo_dataset *d, size_t i);

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
/* Frees the buffers (unmaps a mapping; wipes sealed plaintext first) and zeroes *d. Safe on
 * a zeroed struct and on NULL. */
void tempo_dataset_free(tempo_dataset *d);

/* ---- NumPy .npy datasets (npy.c; docs/bring-your-own.md) ----------------------------------
 * One split is two .npy files (format versions 1.0, 2.0 and 3.0, C order):
 *   X  images: uint8 ('|u1') or little-endian float32 ('<f4'), shape (n, c, h, w) or
 *      (n, h, w, c) as the layout says, (n, h, w) (one channel) or (n, d) (1 x 1 x d);
 *   Y  labels: int64 ('<i8'), int32 ('<i4') or uint8 ('|u1'), shape (n), in [0, classes).
 * X is memory-mapped (never copied); Y is copied and validated. With an owner key each file
 * is read sealed instead (PATH.sealed, or PATH itself when it ends in .sealed), decrypted
 * into one buffer that tempo_dataset_free wipes; its label must be "data/<base name>" (the
 * label `tempo-owner seal` gives it), so sealed files renamed into another role are refused. */
typedef enum {
  TEMPO_NPY_LAYOUT_AUTO = 0, /* only for 2-D and 3-D X; a 4-D X needs one of the two below */
  TEMPO_NPY_LAYOUT_NCHW = 1,
  TEMPO_NPY_LAYOUT_NHWC = 2,
} tempo_npy_layout;

typedef struct {
  const char *train_x, *train_y; /* the training split (NULL: none; then mean/std must be given) */
  const char *test_x, *test_y;   /* the test split: both or neither */
  tempo_npy_layout layout;
  int num_classes;               /* 0 = the largest training label + 1 */
  int norm_count;                /* 0: per-channel statistics of the training split; else 1 (every
                                    channel) or c values given in mean and std */
  float mean[TEMPO_DATASET_MAX_CHANNELS], std[TEMPO_DATASET_MAX_CHANNELS];
} tempo_npy_config;

/* Parses "nchw" / "nhwc"; false if unknown. */
bool tempo_npy_layout_parse(const char *s, tempo_npy_layout *out);
/* Parses "v" or "v1,v2,..." (at most TEMPO_DATASET_MAX_CHANNELS finite numbers; positive when
 * positive is set) into out; returns the count, 0 when s is malformed. */
int tempo_npy_parse_floats(const char *s, bool positive, float *out);

/* Loads the splits cfg names: train (may be NULL: then the training files, when named, are
 * only read for their statistics and classes) and test (may be NULL; zeroed when cfg has no
 * test split). Both get kind TEMPO_DATASET_NPY, the training split's class count (or
 * cfg->num_classes) and its normalisation (computed: per channel, the mean and the
 * population standard deviation over all its pixels, of p / 255 for uint8 and of v for
 * float32; a constant channel gets std 1). Errors, each naming the file and what to do:
 *   TEMPO_STATUS_IO        a file is missing or unreadable (or only its sealed twin is there
 *                          without a key: TEMPO_STATUS_INVALID_ARGUMENT),
 *   TEMPO_STATUS_CORRUPT   bad magic, version, header length or dict syntax, file size not
 *                          what the shape says, a negative label, a non-finite float pixel,
 *                          and (sealed) every authentication failure,
 *   TEMPO_STATUS_MISMATCH  a well-formed array that does not fit: dtype, fortran_order, number
 *                          of dimensions, too large, X and Y counts, a label >= the classes,
 *                          the test images' shape or type differ from the training images',
 *                          a sealed file of another role,
 *   TEMPO_STATUS_INVALID_ARGUMENT  cfg itself (a 4-D X without a layout, a test X without Y,
 *                          no training split and no mean/std, norm_count not 1 or c).
 * On failure *train and *test are zeroed. */
TEMPO_WUR tempo_status tempo_npy_load(const tempo_npy_config *cfg, const tempo_owner_key *key, tempo_dataset *train,
                                      tempo_dataset *test);
/* Loads one split (X, Y) without normalisation (has_norm false) into *out; num_classes is the
 * largest label + 1, or labels must be below classes when classes > 0. Errors as above. */
TEMPO_WUR tempo_status tempo_npy_load_split(const char *x_path, const char *y_path, tempo_npy_layout layout,
                                            int classes, const tempo_owner_key *key, tempo_dataset *out);
/* Sets d's normalisation to the per-channel statistics of its own pixels (see tempo_npy_load). */
void tempo_dataset_compute_norm(tempo_dataset *d);

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
  float *lut;        /* (c, 256) normalised value of each raw pixel value (u8 pixels), owned */
  const float *mean, *std; /* (c) the normalisation in use (f32 pixels) */
} tempo_batcher;

/* Prepares a batcher over d positioned at epoch 0, batch 0. shuffle: the order of each
 * epoch is a permutation drawn from (seed, epoch); otherwise samples come in file order.
 * aug: NULL or an all-false struct = none. Normalises with d's mean and std (has_norm), else
 * tempo_dataset_mean/std(d->kind): x = (pixel / 255 - mean[c]) / std[c] in float for u8
 * pixels, (v - mean[c]) / std[c] for f32 ones; crop padding is raw value 0 in both. Errors:
 * TEMPO_STATUS_INVALID_ARGUMENT (NULL pointers, empty dataset, batch_size < 1, pad out of
 * range, more than 3 channels without has_norm), TEMPO_STATUS_NO_MEMORY. */
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
/* Frees the permutation and the table and zeroes *b. Safe on a zeroed struct and on NULL. */
void tempo_batcher_free(tempo_batcher *b);

#ifdef __cplusplus
}
#endif
#endif
