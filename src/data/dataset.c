/* dataset.c - loaders for Fashion-MNIST (IDX, gzip'd or plain) and CIFAR-10 (binary batches).
 *
 * Every header field and file size is validated and capped before anything is allocated;
 * the whole split is read into one (n, c, h, w) byte buffer. gzip is read through zlib,
 * which also reads uncompressed files transparently; the CRC at the end of a gzip stream is
 * checked by reading one byte past the expected data. */
#include "tempo/data.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "core/bytes.h"
#include "tempo/common.h"
#include "tempo/seal.h"

#define FMNIST_HINT "apt-get install --reinstall dataset-fashion-mnist or pass --data-dir"
#define CIFAR_HINT "extract cifar-10-binary.tar.gz (www.cs.toronto.edu/~kriz/cifar.html) into ./data or pass --data-dir"
#define CIFAR_RECORD 3073 /* 1 label byte + 3 * 32 * 32 pixel bytes */
#define CIFAR_BATCH 10000 /* records in every file of the binary version */
#define PATH_CAP 4096
#define SEALED_HINT "seal the dataset files with 'tempo-owner seal' (docs/confidential-io.md)"
#define SEALED_MAX ((size_t)1 << 30) /* largest decrypted dataset file accepted */

static const float fmnist_mean[3] = {0.2860f, 0.2860f, 0.2860f};
static const float fmnist_std[3] = {0.3530f, 0.3530f, 0.3530f};
static const float cifar_mean[3] = {0.4914f, 0.4822f, 0.4465f};
static const float cifar_std[3] = {0.2470f, 0.2435f, 0.2616f};

bool tempo_dataset_kind_parse(const char *s, tempo_dataset_kind *out) {
  if (!s || !out) return false;
  if (strcmp(s, "fashion-mnist") == 0) {
    *out = TEMPO_DATASET_FASHION_MNIST;
    return true;
  }
  if (strcmp(s, "cifar10") == 0) {
    *out = TEMPO_DATASET_CIFAR10;
    return true;
  }
  if (strcmp(s, "npy") == 0) {
    *out = TEMPO_DATASET_NPY;
    return true;
  }
  return false;
}

const char *tempo_dataset_kind_name(tempo_dataset_kind k) {
  switch (k) {
  case TEMPO_DATASET_FASHION_MNIST: return "fashion-mnist";
  case TEMPO_DATASET_CIFAR10: return "cifar10";
  case TEMPO_DATASET_NPY: return "npy";
  }
  return "unknown";
}

const char *tempo_dataset_default_dir(tempo_dataset_kind k) {
  switch (k) {
  case TEMPO_DATASET_FASHION_MNIST: return "/usr/share/datasets/fashion-mnist";
  case TEMPO_DATASET_CIFAR10: return "./data/cifar-10-batches-bin";
  case TEMPO_DATASET_NPY: return "";
  }
  return "";
}

const float *tempo_dataset_mean(tempo_dataset_kind k) {
  return k == TEMPO_DATASET_CIFAR10 ? cifar_mean : fmnist_mean;
}

const float *tempo_dataset_std(tempo_dataset_kind k) { return k == TEMPO_DATASET_CIFAR10 ? cifar_std : fmnist_std; }

void tempo_dataset_free(tempo_dataset *d) {
  if (!d) return;
  const size_t lab = (size_t)(d->label_bytes > 0 ? d->label_bytes : 1) * (size_t)(d->n > 0 ? d->n : 0);
  if (d->store && d->store_mapped) {
    munmap(d->store, d->store_len);
  } else if (d->store) {
    sodium_memzero(d->store, d->store_len);
    free(d->store);
  } else {
    size_t img = 0;
    if (d->wipe && d->images && tempo_mul_size((size_t)d->n * (size_t)(d->pixel_type == TEMPO_PIXELS_F32 ? 4 : 1),
                                               (size_t)d->c * d->h * d->w, &img))
      sodium_memzero(d->images, img);
    free(d->images);
  }
  if (d->wipe && d->labels) sodium_memzero(d->labels, lab);
  free(d->labels);
  memset(d, 0, sizeof *d);
}

int tempo_dataset_label(const tempo_dataset *d, size_t i) {
  const uint8_t *p = d->labels;
  switch (d->label_bytes) {
  case 4: return (int)(int32_t)tempo_le_get32(p + 4 * i);
  case 8: return (int)(int64_t)tempo_le_get64(p + 8 * i);
  default: return p[i];
  }
}

static uint32_t be32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static tempo_status join_path(char *buf, const char *dir, const char *name, const char *suffix) {
  int len = snprintf(buf, PATH_CAP, "%s/%s%s", dir, name, suffix);
  if (len < 0 || len >= PATH_CAP)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "dataset path too long: %.200s/%s", dir, name);
  return TEMPO_STATUS_OK;
}

/* Opens path (a regular file) for zlib; on failure *err is an errno value, or -1 for a
 * path that is not a regular file. */
static gzFile gz_open_regular(const char *path, int *err) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *err = errno;
    return NULL;
  }
  struct stat sb;
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    *err = fstat(fd, &sb) != 0 ? errno : S_ISDIR(sb.st_mode) ? EISDIR : -1;
    close(fd);
    return NULL;
  }
  gzFile f = gzdopen(fd, "rb");
  if (!f) {
    *err = ENOMEM;
    close(fd);
  }
  return f;
}

/* Opens dir/base.gz, else dir/base (uncompressed); path receives the name that was opened. */
static tempo_status idx_open(const char *dir, const char *base, char *path, gzFile *out) {
  tempo_status st;
  int err = 0;
  *out = NULL;
  if ((st = join_path(path, dir, base, ".gz")) != TEMPO_STATUS_OK) return st;
  gzFile f = gz_open_regular(path, &err);
  if (!f && err == ENOENT) {
    if ((st = join_path(path, dir, base, "")) != TEMPO_STATUS_OK) return st;
    f = gz_open_regular(path, &err);
    if (!f && err == ENOENT) {
      char sealed[PATH_CAP];
      if (!join_path(sealed, dir, base, ".gz" TEMPO_SEAL_SUFFIX) &&
          (access(sealed, F_OK) == 0 || (!join_path(sealed, dir, base, TEMPO_SEAL_SUFFIX) && access(sealed, F_OK) == 0)))
        return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "%s is sealed: pass the owner key with --key-file "
                               "(docs/confidential-io.md)", sealed);
      return tempo_set_error(TEMPO_STATUS_IO, "missing Fashion-MNIST file %s/%s.gz (nor %s): " FMNIST_HINT, dir,
                             base, base);
    }
  }
  if (!f) return tempo_set_error(TEMPO_STATUS_IO, "cannot open %s: %s; " FMNIST_HINT, path,
                                 err < 0 ? "not a regular file" : strerror(err));
  gzbuffer(f, 1u << 18);
  *out = f;
  return TEMPO_STATUS_OK;
}

/* zlib's error message without the "<fd:N>: " prefix that gzdopen'ed files carry. */
static const char *gz_message(gzFile f, int *zerr) {
  const char *msg = gzerror(f, zerr);
  const char *colon = strstr(msg, ": ");
  return msg[0] == '<' && colon ? colon + 2 : msg;
}

/* Reads exactly len bytes; a short read is truncation, a zlib failure a gzip error. */
static tempo_status gz_read_exact(gzFile f, const char *path, void *buf, size_t len, const char *what) {
  uint8_t *p = buf;
  size_t got = 0;
  while (got < len) {
    size_t want = len - got;
    if (want > (1u << 30)) want = 1u << 30;
    int r = gzread(f, p + got, (unsigned)want);
    if (r < 0) {
      int zerr = Z_OK;
      const char *msg = gz_message(f, &zerr);
      if (zerr == Z_ERRNO)
        return tempo_set_error(TEMPO_STATUS_IO, "cannot read %s: %s; " FMNIST_HINT, path, strerror(errno));
      return tempo_set_error(TEMPO_STATUS_CORRUPT, "%s: gzip error while reading the %s (%s); " FMNIST_HINT, path,
                             what, msg);
    }
    if (r == 0) {
      int zerr = Z_OK;
      const char *msg = gz_message(f, &zerr);
      return tempo_set_error(TEMPO_STATUS_CORRUPT, "%s: truncated %s: %zu of %zu bytes%s%s%s; " FMNIST_HINT, path, what,
                             got, len, zerr != Z_OK ? " (gzip: " : "", zerr != Z_OK ? msg : "",
                             zerr != Z_OK ? ")" : "");
    }
    got += (size_t)r;
  }
  return TEMPO_STATUS_OK;
}

/* Checks that nothing follows the data; reading past the end also verifies the gzip CRC. */
static tempo_status gz_expect_end(gzFile f, const char *path) {
  uint8_t extra;
  int r = gzread(f, &extra, 1);
  int zerr = Z_OK;
  const char *msg = gz_message(f, &zerr);
  if (r < 0 || (zerr != Z_OK && zerr != Z_BUF_ERROR))
    return tempo_set_error(TEMPO_STATUS_CORRUPT, "%s: gzip error at the end of the data (%s); " FMNIST_HINT, path, msg);
  if (zerr == Z_BUF_ERROR)
    return tempo_set_error(TEMPO_STATUS_CORRUPT, "%s: gzip stream truncated (%s); " FMNIST_HINT, path, msg);
  if (r > 0)
    return tempo_set_error(TEMPO_STATUS_CORRUPT, "%s: unexpected bytes after the data; " FMNIST_HINT, path);
  return TEMPO_STATUS_OK;
}

/* An IDX file being read: through zlib from disk, or from decrypted bytes in memory
 * (inflated when they are gzip'd), so both get the same validation. */
typedef struct {
  gzFile gz;        /* plain file, or NULL */
  uint8_t *mem;     /* (mem_len) decrypted bytes, owned; wiped at close */
  size_t mem_len, pos;
  bool gzip, zs_ready, zs_end;
  z_stream zs;
} idx_src;

static void src_close(idx_src *s) {
  if (s->gz) gzclose(s->gz);
  if (s->zs_ready) inflateEnd(&s->zs);
  if (s->mem) sodium_memzero(s->mem, s->mem_len);
  free(s->mem);
  memset(s, 0, sizeof *s);
}

/* Opens dir/base.gz.sealed, else dir/base.sealed, and decrypts it into memory. */
static tempo_status sealed_open(const char *dir, const char *base, const tempo_owner_key *key, char *path,
                                idx_src *s) {
  char label[96];
  tempo_status st;
  snprintf(label, sizeof label, "data/%s", base);
  if ((st = join_path(path, dir, base, ".gz" TEMPO_SEAL_SUFFIX))) return st;
  if (access(path, F_OK) != 0) {
    if ((st = join_path(path, dir, base, TEMPO_SEAL_SUFFIX))) return st;
    if (access(path, F_OK) != 0)
      return tempo_set_error(TEMPO_STATUS_IO, "missing sealed Fashion-MNIST file %s/%s.gz.sealed (nor %s.sealed): "
                             SEALED_HINT, dir, base, base);
  }
  if ((st = tempo_unseal_read(path, key, label, SEALED_MAX, &s->mem, &s->mem_len, NULL))) return st;
  if (s->mem_len >= 2 && s->mem[0] == 0x1f && s->mem[1] == 0x8b) {
    if (inflateInit2(&s->zs, 16 + MAX_WBITS) != Z_OK)
      return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "%s: cannot start zlib", path);
    s->zs_ready = s->gzip = true;
    s->zs.next_in = s->mem;
    s->zs.avail_in = (uInt)(s->mem_len > UINT32_MAX ? UINT32_MAX : s->mem_len); /* capped at 1 GiB above */
  }
  return TEMPO_STATUS_OK;
}

/* Reads exactly len bytes from s (see gz_read_exact). */
static tempo_status src_read_exact(idx_src *s, const char *path, void *buf, size_t len, const char *what) {
  if (s->gz) return gz_read_exact(s->gz, path, buf, len, what);
  if (!s->gzip) {
    if (len > s->mem_len - s->pos)
      return tempo_set_error(TEMPO_STATUS_CORRUPT, "%s: truncated %s: %zu of %zu bytes; " SEALED_HINT, path, what,
                             s->mem_len - s->pos, len);
    memcpy(buf, s->mem + s->pos, len);
    s->pos += len;
    return TEMPO_STATUS_OK;
  }
  s->zs.next_out = buf;
  s->zs.avail_out = (uInt)len; /* len <= 16 + 784 * TEMPO_DATASET_MAX_SAMPLES < 4 GiB */
  while (s->zs.avail_out > 0) {
    if (s->zs_end) {
      if (s->zs.avail_in >= 2 && s->zs.next_in[0] == 0x1f && s->zs.next_in[1] == 0x8b) { /* next gzip member */
        inflateReset(&s->zs);
        s->zs_end = false;
      } else {
        return tempo_set_error(TEMPO_STATUS_CORRUPT, "%s: truncated %s: %zu of %zu bytes; " SEALED_HINT, path, what,
                               len - s->zs.avail_out, len);
      }
    }
    int r = inflate(&s->zs, Z_NO_FLUSH);
    if (r == Z_STREAM_END) {
      s->zs_end = true;
    } else if (r == Z_BUF_ERROR) {
      return tempo_set_error(TEMPO_STATUS_CORRUPT, "%s: gzip stream truncated in the %s; " SEALED_HINT, path, what);
    } else if (r != Z_OK) {
      return tempo_set_error(TEMPO_STATUS_CORRUPT, "%s: gzip error while reading the %s (%s); " SEALED_HINT, path,
                             what, s->zs.msg ? s->zs.msg : "bad data");
    }
  }
  return TEMPO_STATUS_OK;
}

/* Checks that nothing follows the data (and, for gzip, that the stream ends with its CRC). */
static tempo_status src_expect_end(idx_src *s, const char *path) {
  if (s->gz) return gz_expect_end(s->gz, path);
  if (s->gzip && !s->zs_end) {
    uint8_t extra;
    s->zs.next_out = &extra;
    s->zs.avail_out = 1;
    int r = inflate(&s->zs, Z_NO_FLUSH);
    if (r == Z_STREAM_END && s->zs.avail_out == 1)
      s->zs_end = true;
    else if (r == Z_OK || (r == Z_STREAM_END && s->zs.avail_out == 0))
      return tempo_set_error(TEMPO_STATUS_CORRUPT, "%s: unexpected bytes after the data; " SEALED_HINT, path);
    else
      return tempo_set_error(TEMPO_STATUS_CORRUPT, "%s: gzip stream truncated or damaged at the end (%s); " SEALED_HINT,
                             path, s->zs.msg ? s->zs.msg : "no end marker");
  }
  bool left = s->gzip ? s->zs.avail_in > 0 : s->pos < s->mem_len;
  if (left) return tempo_set_error(TEMPO_STATUS_CORRUPT, "%s: unexpected bytes after the data; " SEALED_HINT, path);
  return TEMPO_STATUS_OK;
}

static tempo_status src_open(const char *dir, const char *base, const tempo_owner_key *key, char *path,
                             idx_src *s) {
  memset(s, 0, sizeof *s);
  return key ? sealed_open(dir, base, key, path, s) : idx_open(dir, base, path, &s->gz);
}

static tempo_status load_fmnist(const char *dir, bool train, const tempo_owner_key *key, tempo_dataset *out) {
  const char *split = train ? "train" : "t10k";
  char base[64], path[PATH_CAP];
  uint8_t hdr[16];
  idx_src f;
  memset(&f, 0, sizeof f);
  tempo_status st;

  /* Images: magic 0x00000803, n, rows, cols (big-endian), then n*rows*cols bytes. */
  snprintf(base, sizeof base, "%s-images-idx3-ubyte", split);
  if ((st = src_open(dir, base, key, path, &f)) != TEMPO_STATUS_OK) goto fail_file;
  if ((st = src_read_exact(&f, path, hdr, 16, "IDX header")) != TEMPO_STATUS_OK) goto fail_file;
  uint32_t magic = be32(hdr), n = be32(hdr + 4), rows = be32(hdr + 8), cols = be32(hdr + 12);
  if (magic != 0x00000803u) {
    st = tempo_set_error(TEMPO_STATUS_CORRUPT, "%s: bad magic 0x%08x (an IDX image file has 0x00000803); " FMNIST_HINT,
                         path, magic);
    goto fail_file;
  }
  if (rows != 28 || cols != 28) {
    st = tempo_set_error(TEMPO_STATUS_CORRUPT, "%s: images are %ux%u, Fashion-MNIST's are 28x28; " FMNIST_HINT, path,
                         rows, cols);
    goto fail_file;
  }
  if (n == 0 || n > TEMPO_DATASET_MAX_SAMPLES) {
    st = tempo_set_error(TEMPO_STATUS_CORRUPT, "%s: header claims %u images (allowed 1..%d); " FMNIST_HINT, path, n,
                         TEMPO_DATASET_MAX_SAMPLES);
    goto fail_file;
  }
  size_t img_bytes;
  if (!tempo_mul_size(n, 28 * 28, &img_bytes)) {
    st = tempo_set_error(TEMPO_STATUS_NO_MEMORY, "%s: image size overflows", path);
    goto fail_file;
  }
  out->images = malloc(img_bytes);
  if (!out->images) {
    st = tempo_set_error(TEMPO_STATUS_NO_MEMORY, "%s: cannot allocate %zu bytes for the images", path, img_bytes);
    goto fail_file;
  }
  if ((st = src_read_exact(&f, path, out->images, img_bytes, "image data")) != TEMPO_STATUS_OK) goto fail_file;
  if ((st = src_expect_end(&f, path)) != TEMPO_STATUS_OK) goto fail_file;
  src_close(&f);

  /* Labels: magic 0x00000801, n (big-endian), then n bytes in 0..9. */
  snprintf(base, sizeof base, "%s-labels-idx1-ubyte", split);
  if ((st = src_open(dir, base, key, path, &f)) != TEMPO_STATUS_OK) goto fail_file;
  if ((st = src_read_exact(&f, path, hdr, 8, "IDX header")) != TEMPO_STATUS_OK) goto fail_file;
  magic = be32(hdr);
  uint32_t nl = be32(hdr + 4);
  if (magic != 0x00000801u) {
    st = tempo_set_error(TEMPO_STATUS_CORRUPT, "%s: bad magic 0x%08x (an IDX label file has 0x00000801); " FMNIST_HINT,
                         path, magic);
    goto fail_file;
  }
  if (nl != n) {
    st = tempo_set_error(TEMPO_STATUS_CORRUPT, "%s: %u labels for %u images; " FMNIST_HINT, path, nl, n);
    goto fail_file;
  }
  out->labels = malloc(n);
  if (!out->labels) {
    st = tempo_set_error(TEMPO_STATUS_NO_MEMORY, "%s: cannot allocate %u bytes for the labels", path, n);
    goto fail_file;
  }
  if ((st = src_read_exact(&f, path, out->labels, n, "label data")) != TEMPO_STATUS_OK) goto fail_file;
  if ((st = src_expect_end(&f, path)) != TEMPO_STATUS_OK) goto fail_file;
  for (uint32_t i = 0; i < n; i++) {
    if (out->labels[i] >= 10) {
      st = tempo_set_error(TEMPO_STATUS_CORRUPT, "%s: label %u of sample %u is out of range 0..9; " FMNIST_HINT, path,
                           out->labels[i], i);
      goto fail_file;
    }
  }
  src_close(&f);
  out->n = (int)n;
  out->c = 1;
  out->h = out->w = 28;
  return TEMPO_STATUS_OK;

fail_file:
  src_close(&f);
  return st;
}

/* Copies `records` CIFAR-10 records from rec into images/labels, validating the labels. */
static tempo_status cifar_split_records(const uint8_t *rec, size_t records, const char *path, uint8_t *images,
                                        uint8_t *labels) {
  for (size_t r = 0; r < records; r++, rec += CIFAR_RECORD) {
    if (rec[0] >= 10)
      return tempo_set_error(TEMPO_STATUS_CORRUPT, "%s: label %d of record %zu is out of range 0..9", path, rec[0], r);
    labels[r] = rec[0];
    memcpy(images + r * (CIFAR_RECORD - 1), rec + 1, CIFAR_RECORD - 1);
  }
  return TEMPO_STATUS_OK;
}

/* CIFAR-10 from sealed files: every file is decrypted and size-checked first, then the
 * records are copied into the split's buffers and the decrypted copies wiped. */
static tempo_status load_cifar_sealed(const char *dir, bool train, const tempo_owner_key *key, tempo_dataset *out) {
  enum { MAX_FILES = 5 };
  char paths[MAX_FILES][PATH_CAP];
  uint8_t *bufs[MAX_FILES] = {0};
  size_t lens[MAX_FILES] = {0}, total = 0;
  int nf = train ? 5 : 1;
  tempo_status st = TEMPO_STATUS_OK;
  for (int i = 0; i < nf; i++) {
    char name[32], label[48];
    if (train)
      snprintf(name, sizeof name, "data_batch_%d.bin", i + 1);
    else
      snprintf(name, sizeof name, "test_batch.bin");
    snprintf(label, sizeof label, "data/%s", name);
    if ((st = join_path(paths[i], dir, name, TEMPO_SEAL_SUFFIX))) goto done;
    if (access(paths[i], F_OK) != 0) {
      st = tempo_set_error(TEMPO_STATUS_IO, "missing sealed CIFAR-10 file %s: " SEALED_HINT, paths[i]);
      goto done;
    }
    if ((st = tempo_unseal_read(paths[i], key, label, SEALED_MAX, &bufs[i], &lens[i], NULL))) goto done;
    if (lens[i] != (size_t)CIFAR_BATCH * CIFAR_RECORD) {
      st = tempo_set_error(TEMPO_STATUS_CORRUPT, "%s: truncated or not CIFAR-10: %zu bytes (%zu records%s); every "
                           "file of the binary version holds exactly %d records of %d bytes", paths[i], lens[i],
                           lens[i] / CIFAR_RECORD, lens[i] % CIFAR_RECORD ? " and a partial one" : "", CIFAR_BATCH,
                           CIFAR_RECORD);
      goto done;
    }
    total += lens[i] / CIFAR_RECORD;
    if (total > TEMPO_DATASET_MAX_SAMPLES) {
      st = tempo_set_error(TEMPO_STATUS_CORRUPT, "%s: the split would exceed %d records", paths[i],
                           TEMPO_DATASET_MAX_SAMPLES);
      goto done;
    }
  }
  out->images = malloc(total * (CIFAR_RECORD - 1)); /* total <= 1e6: no overflow */
  out->labels = malloc(total);
  if (!out->images || !out->labels) {
    st = tempo_set_error(TEMPO_STATUS_NO_MEMORY, "cannot allocate CIFAR-10 buffers for %s", dir);
    goto done;
  }
  size_t k = 0;
  for (int i = 0; i < nf; i++) {
    size_t records = lens[i] / CIFAR_RECORD;
    if ((st = cifar_split_records(bufs[i], records, paths[i], out->images + k * (CIFAR_RECORD - 1),
                                  out->labels + k)))
      goto done;
    k += records;
  }
  out->n = (int)total;
  out->c = 3;
  out->h = out->w = 32;
done:
  for (int i = 0; i < nf; i++) {
    if (bufs[i]) sodium_memzero(bufs[i], lens[i]);
    free(bufs[i]);
  }
  return st;
}

static tempo_status load_cifar(const char *dir, bool train, tempo_dataset *out) {
  enum { MAX_FILES = 5 };
  char paths[MAX_FILES][PATH_CAP];
  FILE *files[MAX_FILES] = {0};
  size_t records[MAX_FILES] = {0};
  int nf = train ? 5 : 1;
  size_t total = 0;
  tempo_status st = TEMPO_STATUS_OK;

  /* Pass 1: open every file and validate its size, so nothing is allocated for a bad set. */
  for (int i = 0; i < nf; i++) {
    char name[32];
    if (train)
      snprintf(name, sizeof name, "data_batch_%d.bin", i + 1);
    else
      snprintf(name, sizeof name, "test_batch.bin");
    if ((st = join_path(paths[i], dir, name, "")) != TEMPO_STATUS_OK) goto done;
    files[i] = fopen(paths[i], "rb");
    if (!files[i] && errno == ENOENT) {
      char sealed[PATH_CAP];
      if (!join_path(sealed, dir, name, TEMPO_SEAL_SUFFIX) && access(sealed, F_OK) == 0) {
        st = tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "%s is sealed: pass the owner key with --key-file "
                             "(docs/confidential-io.md)", sealed);
        goto done;
      }
      errno = ENOENT;
    }
    if (!files[i]) {
      st = tempo_set_error(TEMPO_STATUS_IO, "%s %s: %s; " CIFAR_HINT, errno == ENOENT ? "missing CIFAR-10 file" : "cannot open",
                           paths[i], strerror(errno));
      goto done;
    }
    struct stat sb;
    if (fstat(fileno(files[i]), &sb) != 0 || !S_ISREG(sb.st_mode)) {
      st = tempo_set_error(TEMPO_STATUS_IO, "cannot read %s: not a regular file; " CIFAR_HINT, paths[i]);
      goto done;
    }
    if (sb.st_size != (off_t)CIFAR_BATCH * CIFAR_RECORD) {
      st = tempo_set_error(TEMPO_STATUS_CORRUPT,
                           "%s: truncated or not CIFAR-10: %lld bytes (%lld records%s); every file of the binary "
                           "version holds exactly %d records of %d bytes; " CIFAR_HINT,
                           paths[i], (long long)sb.st_size, (long long)(sb.st_size / CIFAR_RECORD),
                           sb.st_size % CIFAR_RECORD ? " and a partial one" : "", CIFAR_BATCH, CIFAR_RECORD);
      goto done;
    }
    records[i] = (size_t)(sb.st_size / CIFAR_RECORD);
    total += records[i];
    if (total > TEMPO_DATASET_MAX_SAMPLES) {
      st = tempo_set_error(TEMPO_STATUS_CORRUPT, "%s: the split would exceed %d records; " CIFAR_HINT, paths[i],
                           TEMPO_DATASET_MAX_SAMPLES);
      goto done;
    }
  }

  size_t img_bytes;
  if (!tempo_mul_size(total, CIFAR_RECORD - 1, &img_bytes)) {
    st = tempo_set_error(TEMPO_STATUS_NO_MEMORY, "CIFAR-10 image size overflows");
    goto done;
  }
  out->images = malloc(img_bytes);
  out->labels = malloc(total);
  if (!out->images || !out->labels) {
    st = tempo_set_error(TEMPO_STATUS_NO_MEMORY, "cannot allocate %zu bytes for CIFAR-10 in %s", img_bytes, dir);
    goto done;
  }

  /* Pass 2: read the records; a file that shrank since fstat is reported as truncated. */
  size_t k = 0;
  for (int i = 0; i < nf; i++) {
    for (size_t r = 0; r < records[i]; r++, k++) {
      int lab = fgetc(files[i]);
      uint8_t *img = out->images + k * (CIFAR_RECORD - 1);
      if (lab == EOF || fread(img, 1, CIFAR_RECORD - 1, files[i]) != CIFAR_RECORD - 1) {
        st = tempo_set_error(ferror(files[i]) ? TEMPO_STATUS_IO : TEMPO_STATUS_CORRUPT,
                             "%s: %s in record %zu of %zu; " CIFAR_HINT, paths[i],
                             ferror(files[i]) ? "read error" : "truncated", r, records[i]);
        goto done;
      }
      if (lab >= 10) {
        st = tempo_set_error(TEMPO_STATUS_CORRUPT, "%s: label %d of record %zu is out of range 0..9; " CIFAR_HINT,
                             paths[i], lab, r);
        goto done;
      }
      out->labels[k] = (uint8_t)lab;
    }
  }
  out->n = (int)total;
  out->c = 3;
  out->h = out->w = 32;

done:
  for (int i = 0; i < nf; i++)
    if (files[i]) fclose(files[i]);
  return st;
}

tempo_status tempo_dataset_load(tempo_dataset_kind kind, const char *dir, bool train, tempo_dataset *out) {
  return tempo_dataset_load_sealed(kind, dir, train, NULL, out);
}

tempo_status tempo_dataset_load_sealed(tempo_dataset_kind kind, const char *dir, bool train,
                                       const tempo_owner_key *key, tempo_dataset *out) {
  if (!out) return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "tempo_dataset_load: out is NULL");
  memset(out, 0, sizeof *out);
  if (kind == TEMPO_DATASET_NPY)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "an npy dataset is named file by file: pass --train-x, "
                           "--train-y (and --test-x, --test-y) with --data npy");
  if (kind != TEMPO_DATASET_FASHION_MNIST && kind != TEMPO_DATASET_CIFAR10)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "unknown dataset kind %d", (int)kind);
  if (!dir) dir = tempo_dataset_default_dir(kind);
  tempo_status st = kind == TEMPO_DATASET_FASHION_MNIST ? load_fmnist(dir, train, key, out)
                    : key                              ? load_cifar_sealed(dir, train, key, out)
                                                       : load_cifar(dir, train, out);
  if (st != TEMPO_STATUS_OK) {
    tempo_dataset_free(out);
    return st;
  }
  out->kind = kind;
  out->num_classes = 10;
  out->wipe = key != NULL; /* sealed plaintext */
  return TEMPO_STATUS_OK;
}
