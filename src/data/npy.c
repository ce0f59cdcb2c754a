/* npy.c - NumPy .npy datasets (see data.h): a strict reader of the format's header, the
 * image array memory-mapped (or, sealed, decrypted into one buffer), the labels copied and
 * validated, and the per-channel normalisation statistics.
 *
 * The format (numpy.lib.format): "\x93NUMPY", major and minor version bytes, the header
 * length (u16 little-endian in version 1.0, u32 in 2.0 and 3.0), then the header: a Python
 * dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (n, ...), } padded with
 * spaces and ending in '\n' so that the data starts on a 64-byte boundary (16 before NumPy
 * 1.?; both are multiples of 16, which is what this reader requires). Version 3.0 only allows
 * UTF-8 in the header; every valid header here is ASCII anyway. The data follows, C order,
 * exactly as many bytes as the shape and dtype say.
 *
 * Why labels are copied: they index the logits, and a file mapped from disk can change under
 * the reader after it was validated. Images are only read as values (a changed float that is
 * not finite is caught by the training loop's batch check). */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/bytes.h"
#include "tempo/common.h"
#include "tempo/data.h"
#include "tempo/seal.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "npy.c reads little-endian float32 pixels in place: a big-endian host needs a conversion"
#endif

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAX_HEADER 65536 /* header bytes accepted (NumPy itself refuses more than 10000) */
#define NPY_MAX_DIMS 8
#define NPY_SEALED_MAX ((size_t)16 << 30) /* largest decrypted .npy file accepted */
#define NPY_HINT "(docs/bring-your-own.md)"

typedef enum { NPY_U1, NPY_F4, NPY_I4, NPY_I8 } npy_dtype;

typedef struct {
  npy_dtype dtype;
  int item;                    /* bytes per element */
  int ndim;
  uint64_t shape[NPY_MAX_DIMS];
  size_t data_off, data_len;   /* where the array starts, and its bytes */
} npy_header;

/* One opened .npy file: mapped (plain) or decrypted (sealed). */
typedef struct {
  uint8_t *base;
  size_t len;
  bool mapped;
  char path[4096]; /* the file actually read (PATH.sealed when sealed) */
} npy_file;

static void npy_file_release(npy_file *f) {
  if (!f->base) return;
  if (f->mapped) {
    munmap(f->base, f->len);
  } else {
    sodium_memzero(f->base, f->len);
    free(f->base);
  }
  f->base = NULL;
  f->len = 0;
}

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* The label a sealed .npy must carry: "data/" + its base name without ".sealed". */
static void sealed_label(const char *path, char *out, size_t cap) {
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  size_t n = strlen(base);
  if (ends_with(base, TEMPO_SEAL_SUFFIX)) n -= strlen(TEMPO_SEAL_SUFFIX);
  snprintf(out, cap, "data/%.*s", (int)n, base);
}

/* Opens path: with a key its sealed twin, decrypted; else the file itself, mapped read-only. */
static tempo_status npy_open(const char *path, const tempo_owner_key *key, npy_file *f) {
  memset(f, 0, sizeof *f);
  int w = key && !ends_with(path, TEMPO_SEAL_SUFFIX) ? snprintf(f->path, sizeof f->path, "%s" TEMPO_SEAL_SUFFIX, path)
                                                     : snprintf(f->path, sizeof f->path, "%s", path);
  if (w < 0 || (size_t)w >= sizeof f->path)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "npy path too long: %.200s...", path);
  if (key) {
    char label[TEMPO_SEAL_LABEL_MAX + 1];
    sealed_label(f->path, label, sizeof label);
    if (access(f->path, F_OK) != 0)
      return tempo_set_error(TEMPO_STATUS_IO, "missing sealed file %s: seal %s with 'tempo-owner seal' "
                             "(docs/confidential-io.md)", f->path, path);
    return tempo_unseal_read(f->path, key, label, NPY_SEALED_MAX, &f->base, &f->len, NULL);
  }
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    char sealed[4200];
    snprintf(sealed, sizeof sealed, "%s" TEMPO_SEAL_SUFFIX, path);
    if (err == ENOENT && access(sealed, F_OK) == 0)
      return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "%s is sealed: pass the owner key with --key-file "
                             "(docs/confidential-io.md)", sealed);
    return tempo_set_error(TEMPO_STATUS_IO, "cannot open %s: %s", path, strerror(err));
  }
  struct stat sb;
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    close(fd);
    return tempo_set_error(TEMPO_STATUS_IO, "cannot read %s: not a regular file", path);
  }
  if (sb.st_size < 10) {
    close(fd);
    return tempo_set_error(TEMPO_STATUS_CORRUPT, "%s: not a .npy file: %lld bytes, shorter than the smallest "
                           "header (np.save writes it) " NPY_HINT, path, (long long)sb.st_size);
  }
  void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int err = errno;
  close(fd);
  if (p == MAP_FAILED) return tempo_set_error(TEMPO_STATUS_IO, "cannot map %s: %s", path, strerror(err));
  f->base = p;
  f->len = (size_t)sb.st_size;
  f->mapped = true;
  return TEMPO_STATUS_OK;
}

/* ---- the header dict -------------------------------------------------------------------- */

typedef struct {
  const char *s; /* header text (not NUL-terminated) */
  size_t len, pos, at; /* at: offset of the header in the file, for messages */
  const char *path;
} cursor;

static tempo_status syntax(const cursor *c, const char *what) {
  return tempo_set_error(TEMPO_STATUS_CORRUPT, "%s: bad .npy header at byte %zu: %s (np.save writes e.g. "
                         "{'descr': '<f4', 'fortran_order': False, 'shape': (100, 3, 32, 32), }) " NPY_HINT,
                         c->path, c->at + c->pos, what);
}

static void skip_ws(cursor *c) {
  while (c->pos < c->len && (c->s[c->pos] == ' ' || c->s[c->pos] == '\t')) c->pos++;
}

static bool eat(cursor *c, char ch) {
  skip_ws(c);
  if (c->pos < c->len && c->s[c->pos] == ch) {
    c->pos++;
    return true;
  }
  return false;
}

/* A quoted string without escapes into out (cap bytes); false when malformed or too long. */
static bool read_string(cursor *c, char *out, size_t cap) {
  skip_ws(c);
  if (c->pos >= c->len || (c->s[c->pos] != '\'' && c->s[c->pos] != '"')) return false;
  const char q = c->s[c->pos++];
  size_t n = 0;
  while (c->pos < c->len && c->s[c->pos] != q) {
    const unsigned char ch = (unsigned char)c->s[c->pos];
    if (ch == '\\' || ch < 0x20 || ch >= 0x7f || n + 1 >= cap) return false;
    out[n++] = (char)ch;
    c->pos++;
  }
  if (c->pos >= c->len) return false;
  c->pos++;
  out[n] = '\0';
  return true;
}

static bool read_word(cursor *c, const char *word) {
  skip_ws(c);
  const size_t n = strlen(word);
  if (c->len - c->pos < n || memcmp(c->s + c->pos, word, n) != 0) return false;
  const char next = c->pos + n < c->len ? c->s[c->pos + n] : ' ';
  if ((next >= 'a' && next <= 'z') || (next >= 'A' && next <= 'Z') || (next >= '0' && next <= '9') || next == '_')
    return false;
  c->pos += n;
  return true;
}

/* A shape tuple: () | (d,) | (d, d, ...) with an optional trailing comma; each d decimal
 * (an 'L' suffix, as Python 2 wrote longs, is accepted). */
static tempo_status read_shape(cursor *c, npy_header *h) {
  if (!eat(c, '(')) return syntax(c, "'shape' is not a tuple");
  h->ndim = 0;
  bool comma = true, any = false;
  for (;;) {
    skip_ws(c);
    if (eat(c, ')')) break;
    if (!comma) return syntax(c, "expected ',' or ')' in the shape");
    if (c->pos >= c->len || c->s[c->pos] < '0' || c->s[c->pos] > '9')
      return syntax(c, "a dimension of the shape is not a non-negative whole number");
    uint64_t v = 0;
    while (c->pos < c->len && c->s[c->pos] >= '0' && c->s[c->pos] <= '9') {
      v = v * 10 + (uint64_t)(c->s[c->pos++] - '0');
      if (v > ((uint64_t)1 << 40)) return syntax(c, "a dimension of the shape is too large");
    }
    if (c->pos < c->len && c->s[c->pos] == 'L') c->pos++;
    if (h->ndim == NPY_MAX_DIMS) return syntax(c, "the shape has more than 8 dimensions");
    h->shape[h->ndim++] = v;
    any = true;
    comma = eat(c, ',');
    if (h->ndim == 1 && !comma) {
      skip_ws(c);
      if (c->pos < c->len && c->s[c->pos] == ')') return syntax(c, "a one-element shape needs a comma: (n,)");
    }
  }
  (void)any;
  return TEMPO_STATUS_OK;
}

static tempo_status parse_descr(const cursor *c, const char *d, npy_header *h) {
  static const struct {
    const char *s;
    npy_dtype t;
    int item;
  } ok[] = {{"|u1", NPY_U1, 1}, {"<u1", NPY_U1, 1}, {"<f4", NPY_F4, 4},
            {"<i4", NPY_I4, 4}, {"<i8", NPY_I8, 8}};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    if (strcmp(d, ok[i].s) == 0) {
      h->dtype = ok[i].t;
      h->item = ok[i].item;
      return TEMPO_STATUS_OK;
    }
  }
  if (d[0] == '>')
    return tempo_set_error(TEMPO_STATUS_MISMATCH, "%s: big-endian dtype '%s': save it little-endian, e.g. "
                           "np.save(path, x.astype(x.dtype.newbyteorder('<'))) " NPY_HINT, c->path, d);
  return tempo_set_error(TEMPO_STATUS_MISMATCH, "%s: dtype '%s' is not supported: images are uint8 ('|u1') or "
                         "float32 ('<f4'), labels int64 ('<i8'), int32 ('<i4') or uint8 ('|u1') " NPY_HINT, c->path,
                         d);
}

/* Validates the magic, version and header of f and fills h (data offset and length checked
 * against the file size). */
static tempo_status parse_npy(const npy_file *f, npy_header *h) {
  memset(h, 0, sizeof *h);
  const uint8_t *b = f->base;
  const char *path = f->path;
  if (f->len >= 8 && memcmp(b, TEMPO_SEAL_MAGIC, 8) == 0)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "%s is sealed: pass the owner key with --key-file "
                           "(docs/confidential-io.md)", path);
  if (f->len < 10 || memcmp(b, NPY_MAGIC, 6) != 0)
    return tempo_set_error(TEMPO_STATUS_CORRUPT, "%s: not a .npy file (bad magic: it must start with \\x93NUMPY; "
                           "write it with np.save) " NPY_HINT, path);
  const int major = b[6], minor = b[7];
  if ((major != 1 && major != 2 && major != 3) || minor != 0)
    return tempo_set_error(TEMPO_STATUS_CORRUPT, "%s: .npy format version %d.%d is not supported (1.0, 2.0 and 3.0 "
                           "are)", path, major, minor);
  size_t hlen, pre = major == 1 ? 10 : 12;
  if (f->len < pre)
    return tempo_set_error(TEMPO_STATUS_CORRUPT, "%s: truncated .npy header (%zu bytes)", path, f->len);
  hlen = major == 1 ? tempo_le_get16(b + 8) : tempo_le_get32(b + 8);
  if (hlen > NPY_MAX_HEADER)
    return tempo_set_error(TEMPO_STATUS_CORRUPT, "%s: .npy header length %zu is larger than %d bytes", path, hlen,
                           NPY_MAX_HEADER);
  if (hlen > f->len - pre)
    return tempo_set_error(TEMPO_STATUS_CORRUPT, "%s: truncated .npy header: %zu bytes announced, %zu in the file",
                           path, hlen, f->len - pre);
  h->data_off = pre + hlen;
  if (h->data_off % 16 != 0)
    return tempo_set_error(TEMPO_STATUS_CORRUPT, "%s: the .npy header is not padded to a multiple of 16 bytes (the "
                           "data would start at byte %zu; np.save pads it to 64)", path, h->data_off);
  cursor c = {.s = (const char *)b + pre, .len = hlen, .pos = 0, .at = pre, .path = path};
  /* the header ends with '\n' and only padding before it */
  size_t end = hlen;
  if (end == 0 || c.s[end - 1] != '\n') {
    c.pos = end;
    return syntax(&c, "the header does not end with a newline");
  }
  if (!eat(&c, '{')) return syntax(&c, "the header is not a dict ('{' expected)");
  bool have_descr = false, have_fortran = false, have_shape = false, fortran = false;
  char descr[32] = "";
  for (;;) {
    if (eat(&c, '}')) break;
    char key[32];
    if (!read_string(&c, key, sizeof key)) return syntax(&c, "expected a quoted key or '}'");
    if (!eat(&c, ':')) return syntax(&c, "expected ':' after the key");
    if (strcmp(key, "descr") == 0) {
      if (have_descr) return syntax(&c, "'descr' appears twice");
      if (!read_string(&c, descr, sizeof descr))
        return syntax(&c, "'descr' is not a simple dtype string (structured dtypes are not supported)");
      have_descr = true;
    } else if (strcmp(key, "fortran_order") == 0) {
      if (have_fortran) return syntax(&c, "'fortran_order' appears twice");
      if (read_word(&c, "True")) fortran = true;
      else if (read_word(&c, "False")) fortran = false;
      else return syntax(&c, "'fortran_order' is not True or False");
      have_fortran = true;
    } else if (strcmp(key, "shape") == 0) {
      if (have_shape) return syntax(&c, "'shape' appears twice");
      tempo_status st = read_shape(&c, h);
      if (st) return st;
      have_shape = true;
    } else {
      return syntax(&c, "unknown key (only 'descr', 'fortran_order' and 'shape' are allowed)");
    }
    if (!eat(&c, ',')) {
      if (eat(&c, '}')) break;
      return syntax(&c, "expected ',' or '}' after a value");
    }
  }
  while (c.pos < end - 1 && (c.s[c.pos] == ' ' || c.s[c.pos] == '\t')) c.pos++;
  if (c.pos != end - 1) return syntax(&c, "unexpected characters after the dict");
  if (!have_descr || !have_fortran || !have_shape)
    return syntax(&c, !have_descr ? "'descr' is missing" : !have_fortran ? "'fortran_order' is missing"
                                                                          : "'shape' is missing");
  tempo_status st = parse_descr(&c, descr, h);
  if (st) return st;
  if (fortran)
    return tempo_set_error(TEMPO_STATUS_MISMATCH, "%s: the array is in Fortran order: save it in C order with "
                           "np.save(path, np.ascontiguousarray(x)) " NPY_HINT, path);
  size_t count = 1;
  for (int i = 0; i < h->ndim; i++)
    if (!tempo_mul_size(count, (size_t)h->shape[i], &count))
      return tempo_set_error(TEMPO_STATUS_CORRUPT, "%s: the shape's size overflows", path);
  if (!tempo_mul_size(count, (size_t)h->item, &h->data_len))
    return tempo_set_error(TEMPO_STATUS_CORRUPT, "%s: the shape's size overflows", path);
  if (f->len - h->data_off != h->data_len)
    return tempo_set_error(TEMPO_STATUS_CORRUPT, "%s: the file holds %zu data bytes but its shape and dtype ('%s') "
                           "need %zu: %s", path, f->len - h->data_off, descr, h->data_len,
                           f->len - h->data_off < h->data_len ? "truncated" : "trailing bytes after the array");
  return TEMPO_STATUS_OK;
}

/* ---- one split -------------------------------------------------------------------------- */

static void shape_str(const npy_header *h, char *out, size_t cap) {
  size_t n = (size_t)snprintf(out, cap, "(");
  for (int i = 0; i < h->ndim && n < cap; i++)
    n += (size_t)snprintf(out + n, cap - n, "%s%llu", i ? ", " : "", (unsigned long long)h->shape[i]);
  if (n < cap) snprintf(out + n, cap - n, "%s)", h->ndim == 1 ? "," : "");
}

/* Fills d's shape from X's header. */
static tempo_status image_shape(const npy_file *f, const npy_header *h, tempo_npy_layout layout, tempo_dataset *d) {
  char sh[160];
  shape_str(h, sh, sizeof sh);
  if (h->dtype != NPY_U1 && h->dtype != NPY_F4)
    return tempo_set_error(TEMPO_STATUS_MISMATCH, "%s: images must be uint8 or float32, this array is %s " NPY_HINT,
                           f->path, h->dtype == NPY_I4 ? "int32" : "int64");
  uint64_t n, c = 1, hh = 1, w;
  if (h->ndim == 4) {
    if (layout == TEMPO_NPY_LAYOUT_AUTO)
      return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "%s: the images are 4-D %s: say how the dimensions are "
                             "ordered with --layout nchw (PyTorch's order) or --layout nhwc (channels last)", f->path,
                             sh);
    const bool nhwc = layout == TEMPO_NPY_LAYOUT_NHWC;
    n = h->shape[0], c = h->shape[nhwc ? 3 : 1], hh = h->shape[nhwc ? 1 : 2], w = h->shape[nhwc ? 2 : 3];
    d->nhwc = nhwc && c > 1;
  } else if (h->ndim == 3) {
    n = h->shape[0], hh = h->shape[1], w = h->shape[2];
  } else if (h->ndim == 2) {
    n = h->shape[0], w = h->shape[1];
  } else {
    return tempo_set_error(TEMPO_STATUS_MISMATCH, "%s: images have shape %s: they must be (n, c, h, w) or "
                           "(n, h, w, c) with --layout, (n, h, w) or (n, features) " NPY_HINT, f->path, sh);
  }
  if (n < 1 || n > TEMPO_DATASET_MAX_SAMPLES)
    return tempo_set_error(TEMPO_STATUS_MISMATCH, "%s: %llu images (shape %s); allowed 1..%d", f->path,
                           (unsigned long long)n, sh, TEMPO_DATASET_MAX_SAMPLES);
  if (c < 1 || hh < 1 || w < 1 || c > TEMPO_DATASET_MAX_CHANNELS || c * hh * w > TEMPO_DATASET_MAX_SAMPLE_VALUES)
    return tempo_set_error(TEMPO_STATUS_MISMATCH, "%s: images of %llux%llux%llu (shape %s): every dimension must be "
                           "at least 1, channels at most %d, values per image at most %d", f->path,
                           (unsigned long long)c, (unsigned long long)hh, (unsigned long long)w, sh,
                           TEMPO_DATASET_MAX_CHANNELS, TEMPO_DATASET_MAX_SAMPLE_VALUES);
  d->n = (int)n, d->c = (int)c, d->h = (int)hh, d->w = (int)w;
  d->pixel_type = h->dtype == NPY_F4 ? TEMPO_PIXELS_F32 : TEMPO_PIXELS_U8;
  return TEMPO_STATUS_OK;
}

/* Copies and validates Y's labels into d (d->n already set from X). */
static tempo_status read_labels(const npy_file *f, const npy_header *h, const char *x_path, int classes,
                                tempo_dataset *d) {
  char sh[160];
  shape_str(h, sh, sizeof sh);
  if (h->dtype == NPY_F4)
    return tempo_set_error(TEMPO_STATUS_MISMATCH, "%s: labels must be integers (int64, int32 or uint8), this array "
                           "is float32: save y.astype(np.int64) " NPY_HINT, f->path);
  if (h->ndim != 1)
    return tempo_set_error(TEMPO_STATUS_MISMATCH, "%s: labels have shape %s: they must be 1-D (n,), e.g. "
                           "y.reshape(-1) " NPY_HINT, f->path, sh);
  if (h->shape[0] != (uint64_t)d->n)
    return tempo_set_error(TEMPO_STATUS_MISMATCH, "%s holds %llu labels but %s holds %d images: X and Y must have "
                           "one label per image", f->path, (unsigned long long)h->shape[0], x_path, d->n);
  const size_t bytes = h->data_len;
  if (!(d->labels = malloc(bytes ? bytes : 1)))
    return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "%s: cannot allocate %zu bytes for the labels", f->path, bytes);
  memcpy(d->labels, f->base + h->data_off, bytes);
  d->label_bytes = h->item;
  const int64_t cap = classes > 0 ? classes : TEMPO_DATASET_MAX_CLASSES;
  int64_t max = -1;
  for (size_t i = 0; i < (size_t)d->n; i++) {
    const uint8_t *p = d->labels + i * (size_t)h->item;
    const int64_t v = h->item == 1 ? p[0] : h->item == 4 ? (int32_t)tempo_le_get32(p) : (int64_t)tempo_le_get64(p);
    if (v < 0)
      return tempo_set_error(TEMPO_STATUS_CORRUPT, "%s: label %lld of sample %zu is negative: labels are class "
                             "indices 0, 1, ...", f->path, (long long)v, i);
    if (v >= cap)
      return tempo_set_error(TEMPO_STATUS_MISMATCH, "%s: label %lld of sample %zu is out of range 0..%lld%s", f->path,
                             (long long)v, i, (long long)cap - 1,
                             classes > 0 ? " (the classes of the training split or --classes)" : "");
    if (v > max) max = v;
  }
  d->num_classes = classes > 0 ? classes : (int)max + 1;
  if (d->num_classes < 2)
    return tempo_set_error(TEMPO_STATUS_MISMATCH, "%s: every label is 0: a classifier needs at least 2 classes "
                           "(pass --classes N when some classes are absent from the data)", f->path);
  return TEMPO_STATUS_OK;
}

tempo_status tempo_npy_load_split(const char *x_path, const char *y_path, tempo_npy_layout layout, int classes,
                                  const tempo_owner_key *key, tempo_dataset *out) {
  if (!out) return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "tempo_npy_load_split: out is NULL");
  memset(out, 0, sizeof *out);
  if (!x_path || !y_path)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "an npy split needs both its images (X) and labels (Y)");
  if (classes < 0 || classes > TEMPO_DATASET_MAX_CLASSES)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "classes must be 2..%d", TEMPO_DATASET_MAX_CLASSES);
  npy_file fx, fy;
  npy_header hx, hy;
  memset(&fy, 0, sizeof fy);
  tempo_status st = npy_open(x_path, key, &fx);
  if (st) return st;
  if ((st = parse_npy(&fx, &hx)) || (st = image_shape(&fx, &hx, layout, out))) goto fail;
  if ((st = npy_open(y_path, key, &fy)) || (st = parse_npy(&fy, &hy)) ||
      (st = read_labels(&fy, &hy, fx.path, classes, out)))
    goto fail;
  npy_file_release(&fy);
  out->kind = TEMPO_DATASET_NPY;
  out->images = fx.base + hx.data_off;
  out->store = fx.base;
  out->store_len = fx.len;
  out->store_mapped = fx.mapped;
  out->wipe = key != NULL;
  if (out->pixel_type == TEMPO_PIXELS_F32) {
    const long bad = tempo_floats_find_nonfinite((const float *)(const void *)out->images, hx.data_len / 4);
    if (bad >= 0) {
      const size_t per = (size_t)out->c * out->h * out->w;
      st = tempo_set_error(TEMPO_STATUS_CORRUPT, "%s: image %zu holds a non-finite value (NaN or infinity) at "
                           "element %zu", fx.path, (size_t)bad / per, (size_t)bad % per);
      tempo_dataset_free(out);
      return st;
    }
  }
  return TEMPO_STATUS_OK;
fail:
  npy_file_release(&fy);
  npy_file_release(&fx);
  if (out->labels) sodium_memzero(out->labels, (size_t)out->n * (size_t)out->label_bytes);
  free(out->labels);
  memset(out, 0, sizeof *out);
  return st;
}

/* ---- statistics and the two splits ------------------------------------------------------ */

void tempo_dataset_compute_norm(tempo_dataset *d) {
  const size_t plane = (size_t)d->h * d->w, per = plane * d->c;
  const int nc = d->c;
  for (int ch = 0; ch < nc; ch++) {
    double mean = 0.0, var = 0.0;
    const double count = (double)d->n * (double)plane;
    if (d->pixel_type == TEMPO_PIXELS_U8) { /* a histogram: exact sums in one pass */
      uint64_t hist[256] = {0};
      for (size_t i = 0; i < (size_t)d->n; i++) {
        const uint8_t *s = d->images + i * per;
        if (d->nhwc)
          for (size_t p = 0; p < plane; p++) hist[s[p * nc + ch]]++;
        else
          for (size_t p = 0; p < plane; p++) hist[s[ch * plane + p]]++;
      }
      for (int v = 0; v < 256; v++) mean += (double)hist[v] * (v / 255.0);
      mean /= count;
      for (int v = 0; v < 256; v++) var += (double)hist[v] * (v / 255.0 - mean) * (v / 255.0 - mean);
    } else { /* two passes in double */
      const float *x = (const float *)(const void *)d->images;
      for (int pass = 0; pass < 2; pass++) {
        double sum = 0.0;
        for (size_t i = 0; i < (size_t)d->n; i++) {
          const float *s = x + i * per;
          for (size_t p = 0; p < plane; p++) {
            const double v = d->nhwc ? s[p * nc + ch] : s[ch * plane + p];
            sum += pass == 0 ? v : (v - mean) * (v - mean);
          }
        }
        if (pass == 0) mean = sum / count;
        else var = sum;
      }
    }
    const double sd = sqrt(var / count);
    d->mean[ch] = (float)mean;
    d->std[ch] = sd > 0 && (float)sd > 0 ? (float)sd : 1.0f; /* a constant channel: only centred */
  }
  d->has_norm = true;
}

bool tempo_npy_layout_parse(const char *s, tempo_npy_layout *out) {
  if (!s || !out) return false;
  if (strcmp(s, "nchw") == 0) *out = TEMPO_NPY_LAYOUT_NCHW;
  else if (strcmp(s, "nhwc") == 0) *out = TEMPO_NPY_LAYOUT_NHWC;
  else return false;
  return true;
}

int tempo_npy_parse_floats(const char *s, bool positive, float *out) {
  int n = 0;
  if (!s || !*s) return 0;
  for (const char *p = s;;) {
    char *end;
    errno = 0;
    const double v = strtod(p, &end);
    if (end == p || errno || !isfinite(v) || (float)v != (float)v || !isfinite((float)v) || (positive && !(v > 0)) ||
        (positive && !((float)v > 0)) || n == TEMPO_DATASET_MAX_CHANNELS)
      return 0;
    out[n++] = (float)v;
    if (*end == '\0') return n;
    if (*end != ',') return 0;
    p = end + 1;
  }
}

/* Gives d the normalisation of cfg (given) or of ref (computed). */
static tempo_status set_norm(const tempo_npy_config *cfg, const tempo_dataset *ref, tempo_dataset *d) {
  if (cfg->norm_count > 0) {
    if (cfg->norm_count != 1 && cfg->norm_count != d->c)
      return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "--mean/--std give %d values but the images have %d "
                             "channels: give 1 value or %d", cfg->norm_count, d->c, d->c);
    for (int ch = 0; ch < d->c; ch++) {
      const int k = cfg->norm_count == 1 ? 0 : ch;
      if (!isfinite(cfg->mean[k]) || !(cfg->std[k] > 0) || !isfinite(cfg->std[k]))
        return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "--mean must be finite and --std positive");
      d->mean[ch] = cfg->mean[k];
      d->std[ch] = cfg->std[k];
    }
    d->has_norm = true;
    return TEMPO_STATUS_OK;
  }
  memcpy(d->mean, ref->mean, sizeof d->mean);
  memcpy(d->std, ref->std, sizeof d->std);
  d->has_norm = true;
  return TEMPO_STATUS_OK;
}

tempo_status tempo_npy_load(const tempo_npy_config *cfg, const tempo_owner_key *key, tempo_dataset *train,
                            tempo_dataset *test) {
  tempo_dataset tr, te;
  memset(&tr, 0, sizeof tr);
  memset(&te, 0, sizeof te);
  if (train) memset(train, 0, sizeof *train);
  if (test) memset(test, 0, sizeof *test);
  if (!cfg) return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "tempo_npy_load: cfg is NULL");
  if ((cfg->train_x == NULL) != (cfg->train_y == NULL))
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "--data npy needs both --train-x and --train-y");
  if ((cfg->test_x == NULL) != (cfg->test_y == NULL))
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "a test split needs both --test-x and --test-y");
  if (train && !cfg->train_x)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "--data npy needs the training split: --train-x X.npy "
                           "--train-y Y.npy");
  if (!cfg->train_x && cfg->norm_count == 0)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "npy inputs are normalised with the training split's "
                           "statistics: pass --train-x and --train-y, or --mean and --std (the run's "
                           "metrics.jsonl config record lists them)");
  if (!cfg->train_x && cfg->num_classes == 0)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "without a training split the class count must be given");
  tempo_status st = TEMPO_STATUS_OK;
  int classes = cfg->num_classes;
  if (cfg->train_x) {
    if ((st = tempo_npy_load_split(cfg->train_x, cfg->train_y, cfg->layout, classes, key, &tr))) goto fail;
    classes = tr.num_classes;
    tempo_dataset_compute_norm(&tr);
    if ((st = set_norm(cfg, &tr, &tr))) goto fail;
  }
  if (test && cfg->test_x) {
    if ((st = tempo_npy_load_split(cfg->test_x, cfg->test_y, cfg->layout, classes, key, &te))) goto fail;
    if (cfg->train_x && (te.c != tr.c || te.h != tr.h || te.w != tr.w || te.pixel_type != tr.pixel_type)) {
      st = tempo_set_error(TEMPO_STATUS_MISMATCH, "%s: test images are %dx%dx%d %s, training images %dx%dx%d %s: both "
                           "splits must have the same shape and dtype", cfg->test_x, te.c, te.h, te.w,
                           te.pixel_type == TEMPO_PIXELS_F32 ? "float32" : "uint8", tr.c, tr.h, tr.w,
                           tr.pixel_type == TEMPO_PIXELS_F32 ? "float32" : "uint8");
      goto fail;
    }
    if ((st = set_norm(cfg, &tr, &te))) goto fail;
  }
  if (train) *train = tr;
  else tempo_dataset_free(&tr);
  if (test) *test = te;
  return TEMPO_STATUS_OK;
fail:
  tempo_dataset_free(&tr);
  tempo_dataset_free(&te);
  return st;
}
