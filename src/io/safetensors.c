/* safetensors.c - validating reader and atomic writer of the safetensors format. */
#include "tempo/safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/bytes.h"
#include "tempo/common.h"
#include "tempo/fileio.h"

#define ST_MAX_HEADER (100u << 20)  /* 100 MiB of JSON, as the reference implementation */
#define ST_MAX_FILE ((size_t)64 << 30)
#define ST_MAX_TENSORS 1000000

struct tempo_st_file {
  uint8_t *buf; /* whole file */
  size_t len;
  tempo_st_tensor *t;
  int n, cap;
};

static const struct {
  const char *name;
  size_t size;
} dtypes[] = {[TEMPO_ST_F32] = {"F32", 4}, [TEMPO_ST_F64] = {"F64", 8}, [TEMPO_ST_I32] = {"I32", 4},
              [TEMPO_ST_I64] = {"I64", 8}, [TEMPO_ST_U8] = {"U8", 1},   [TEMPO_ST_F16] = {"F16", 2},
              [TEMPO_ST_BF16] = {"BF16", 2}};

/* ---- a small JSON reader for the header: objects, strings, integer arrays, and
 * values of __metadata__ (strings). Anything else is rejected. */
typedef struct {
  const char *p, *end;
  const char *what;
} js;

static void skip_ws(js *j) {
  while (j->p < j->end && (*j->p == ' ' || *j->p == '\n' || *j->p == '\r' || *j->p == '\t')) j->p++;
}

static tempo_status bad(js *j, const char *why) {
  return tempo_set_error(TEMPO_STATUS_CORRUPT, "%s: bad safetensors header: %s", j->what, why);
}

static tempo_status expect(js *j, char c) {
  skip_ws(j);
  if (j->p >= j->end || *j->p != c) return bad(j, "unexpected character");
  j->p++;
  return TEMPO_STATUS_OK;
}

/* Reads a string into out (cap bytes, NUL-terminated); escapes other than \" \\ \/ are rejected. */
static tempo_status read_string(js *j, char *out, size_t cap) {
  tempo_status st = expect(j, '"');
  if (st) return st;
  size_t n = 0;
  while (j->p < j->end && *j->p != '"') {
    char c = *j->p++;
    if (c == '\\') {
      if (j->p >= j->end) break;
      c = *j->p++;
      if (c != '"' && c != '\\' && c != '/') return bad(j, "unsupported escape in a string");
    } else if ((unsigned char)c < 0x20) {
      return bad(j, "control character in a string");
    }
    if (n + 1 >= cap) return bad(j, "string too long");
    out[n++] = c;
  }
  if (j->p >= j->end) return bad(j, "unterminated string");
  j->p++;
  out[n] = '\0';
  return TEMPO_STATUS_OK;
}

static tempo_status read_uint(js *j, uint64_t *v) {
  skip_ws(j);
  if (j->p >= j->end || *j->p < '0' || *j->p > '9') return bad(j, "expected a non-negative integer");
  uint64_t x = 0;
  while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
    if (x > (UINT64_MAX - 9) / 10) return bad(j, "integer too large");
    x = x * 10 + (uint64_t)(*j->p++ - '0');
  }
  *v = x;
  return TEMPO_STATUS_OK;
}

static bool peek(js *j, char c) {
  skip_ws(j);
  return j->p < j->end && *j->p == c;
}

static tempo_status read_uint_array(js *j, uint64_t *vals, int cap, int *n) {
  tempo_status st = expect(j, '[');
  if (st) return st;
  *n = 0;
  if (peek(j, ']')) return expect(j, ']');
  for (;;) {
    if (*n >= cap) return bad(j, "array too long");
    if ((st = read_uint(j, &vals[(*n)++]))) return st;
    if (peek(j, ',')) {
      j->p++;
      continue;
    }
    return expect(j, ']');
  }
}

static tempo_status skip_metadata(js *j) {
  char tmp[4096];
  tempo_status st = expect(j, '{');
  if (st) return st;
  if (peek(j, '}')) return expect(j, '}');
  for (;;) {
    if ((st = read_string(j, tmp, sizeof tmp)) || (st = expect(j, ':')) || (st = read_string(j, tmp, sizeof tmp)))
      return st;
    if (peek(j, ',')) {
      j->p++;
      continue;
    }
    return expect(j, '}');
  }
}

static tempo_status add_tensor(tempo_st_file *f, tempo_st_tensor **out) {
  if (f->n == f->cap) {
    if (f->n >= ST_MAX_TENSORS) return tempo_set_error(TEMPO_STATUS_CORRUPT, "too many tensors");
    int cap = f->cap ? 2 * f->cap : 64;
    tempo_st_tensor *t = realloc(f->t, (size_t)cap * sizeof *t);
    if (!t) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "out of memory reading tensors");
    f->t = t;
    f->cap = cap;
  }
  *out = &f->t[f->n++];
  memset(*out, 0, sizeof **out);
  return TEMPO_STATUS_OK;
}

static tempo_status parse_entry(js *j, tempo_st_file *f, const char *name, uint64_t (*ranges)[2]) {
  tempo_st_tensor *t = NULL;
  tempo_status st = add_tensor(f, &t);
  if (st) return st;
  snprintf(t->name, sizeof t->name, "%s", name);
  bool have_dtype = false, have_shape = false, have_off = false;
  uint64_t off[4];
  if ((st = expect(j, '{'))) return st;
  for (;;) {
    char key[32], val[16];
    if ((st = read_string(j, key, sizeof key)) || (st = expect(j, ':'))) return st;
    if (strcmp(key, "dtype") == 0) {
      if ((st = read_string(j, val, sizeof val))) return st;
      int found = -1;
      for (size_t d = 0; d < sizeof dtypes / sizeof dtypes[0]; d++)
        if (strcmp(val, dtypes[d].name) == 0) found = (int)d;
      if (found < 0) return bad(j, "unknown dtype");
      t->dtype = (tempo_st_dtype)found;
      have_dtype = true;
    } else if (strcmp(key, "shape") == 0) {
      uint64_t dims[TEMPO_ST_MAX_DIMS];
      if ((st = read_uint_array(j, dims, TEMPO_ST_MAX_DIMS, &t->ndim))) return st;
      for (int d = 0; d < t->ndim; d++) {
        if (dims[d] > (uint64_t)INT64_MAX) return bad(j, "dimension too large");
        t->shape[d] = (int64_t)dims[d];
      }
      have_shape = true;
    } else if (strcmp(key, "data_offsets") == 0) {
      int n;
      if ((st = read_uint_array(j, off, 4, &n))) return st;
      if (n != 2 || off[0] > off[1]) return bad(j, "data_offsets must be [begin, end] with begin <= end");
      have_off = true;
    } else {
      return bad(j, "unknown key in a tensor entry");
    }
    if (peek(j, ',')) {
      j->p++;
      continue;
    }
    if ((st = expect(j, '}'))) return st;
    break;
  }
  if (!have_dtype || !have_shape || !have_off) return bad(j, "tensor entry lacks dtype, shape or data_offsets");
  size_t numel = 1, bytes;
  for (int d = 0; d < t->ndim; d++)
    if (!tempo_mul_size(numel, (size_t)t->shape[d], &numel)) return bad(j, "shape overflows");
  if (!tempo_mul_size(numel, dtypes[t->dtype].size, &bytes) || bytes != off[1] - off[0])
    return bad(j, "byte range does not match dtype and shape");
  t->nbytes = bytes;
  ranges[f->n - 1][0] = off[0];
  ranges[f->n - 1][1] = off[1];
  return TEMPO_STATUS_OK;
}

static int cmp_range(const void *a, const void *b) {
  const uint64_t *x = a, *y = b;
  return x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : (x[1] < y[1] ? -1 : x[1] > y[1]);
}

tempo_status tempo_st_parse(const uint8_t *buf, size_t len, const char *what, tempo_st_file **out) {
  *out = NULL;
  if (len >= 8 && memcmp(buf, "TMPOCKPT", 8) == 0)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT,
                           "%s is a Tempo checkpoint, not a safetensors file: continue it with --resume, evaluate it "
                           "with 'tempo eval', or convert it with 'tempo-owner export --format safetensors'", what);
  if (len >= 8 && memcmp(buf, "TMPOSEAL", 8) == 0)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "%s is sealed: pass the owner key (--key-file)", what);
  if (len >= 4 && memcmp(buf, "PK\x03\x04", 4) == 0)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT,
                           "%s is a zip archive (the torch.save format), not safetensors: convert it in Python with "
                           "safetensors.torch.save_file(torch.load(PATH), 'model.safetensors')", what);
  /* a pickle's first bytes (0x80, protocol 2..5) are also the low bytes of valid header
   * lengths (640, 896, ... mod 65536): name it only when the length is impossible anyway */
  const bool pickle = len >= 2 && buf[0] == 0x80 && buf[1] >= 2 && buf[1] <= 5;
  const uint64_t hlen = len >= 8 ? tempo_le_get64(buf) : 0;
  if (len < 8 || hlen < 2 || hlen > ST_MAX_HEADER || hlen > len - 8) {
    if (pickle)
      return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT,
                             "%s is a Python pickle (an old torch.save file), not safetensors: convert it in Python "
                             "with safetensors.torch.save_file(torch.load(PATH), 'model.safetensors')", what);
    if (len < 8) return tempo_set_error(TEMPO_STATUS_CORRUPT, "%s: too short for a safetensors file", what);
    return tempo_set_error(TEMPO_STATUS_CORRUPT, "%s: safetensors header length %llu is impossible (file %zu bytes)",
                           what, (unsigned long long)hlen, len);
  }
  tempo_st_file *f = calloc(1, sizeof *f);
  uint64_t (*ranges)[2] = NULL;
  tempo_status st = TEMPO_STATUS_OK;
  if (!f || !(f->buf = malloc(len))) {
    st = tempo_set_error(TEMPO_STATUS_NO_MEMORY, "out of memory reading %s", what);
    goto fail;
  }
  memcpy(f->buf, buf, len);
  f->len = len;
  /* Each entry takes at least ~40 header bytes, which bounds the range table. */
  size_t max_entries = hlen / 16 + 1;
  ranges = calloc(max_entries, sizeof *ranges);
  if (!ranges) {
    st = tempo_set_error(TEMPO_STATUS_NO_MEMORY, "out of memory reading %s", what);
    goto fail;
  }
  js j = {(const char *)f->buf + 8, (const char *)f->buf + 8 + hlen, what};
  if ((st = expect(&j, '{'))) goto fail;
  if (!peek(&j, '}')) {
    for (;;) {
      char name[TEMPO_ST_NAME_MAX];
      if ((st = read_string(&j, name, sizeof name)) || (st = expect(&j, ':'))) goto fail;
      if (strcmp(name, "__metadata__") == 0) {
        if ((st = skip_metadata(&j))) goto fail;
      } else {
        if ((size_t)f->n >= max_entries) {
          st = bad(&j, "too many entries");
          goto fail;
        }
        if (tempo_st_get(f, name)) {
          st = bad(&j, "duplicate tensor name");
          goto fail;
        }
        if ((st = parse_entry(&j, f, name, ranges))) goto fail;
      }
      if (peek(&j, ',')) {
        j.p++;
        continue;
      }
      break;
    }
  }
  if ((st = expect(&j, '}'))) goto fail;
  skip_ws(&j);
  if (j.p != j.end) {
    st = bad(&j, "trailing bytes after the JSON header");
    goto fail;
  }
  /* Ranges: inside the data, non-overlapping, covering it exactly. */
  const size_t data_len = len - 8 - (size_t)hlen;
  const uint8_t *data = f->buf + 8 + hlen;
  for (int i = 0; i < f->n; i++) {
    if (ranges[i][1] > data_len) {
      st = tempo_set_error(TEMPO_STATUS_CORRUPT, "%s: tensor '%s' lies beyond the end of the file (truncated?)",
                           what, f->t[i].name);
      goto fail;
    }
    f->t[i].data = data + ranges[i][0];
  }
  qsort(ranges, (size_t)f->n, sizeof *ranges, cmp_range);
  uint64_t pos = 0;
  for (int i = 0; i < f->n; i++) {
    if (ranges[i][0] != pos) {
      st = tempo_set_error(TEMPO_STATUS_CORRUPT, "%s: tensor byte ranges overlap or leave gaps", what);
      goto fail;
    }
    pos = ranges[i][1];
  }
  if (pos != data_len) {
    st = tempo_set_error(TEMPO_STATUS_CORRUPT, "%s: %llu bytes after the last tensor", what,
                         (unsigned long long)(data_len - pos));
    goto fail;
  }
  free(ranges);
  *out = f;
  return TEMPO_STATUS_OK;
fail:
  free(ranges);
  tempo_st_close(f);
  return st;
}

tempo_status tempo_st_open(const char *path, tempo_st_file **out) {
  uint8_t *buf;
  size_t len;
  tempo_status st = tempo_read_file(path, ST_MAX_FILE, &buf, &len);
  if (st) return st;
  st = tempo_st_parse(buf, len, path, out);
  free(buf);
  return st;
}

void tempo_st_close(tempo_st_file *f) {
  if (!f) return;
  free(f->buf);
  free(f->t);
  free(f);
}

int tempo_st_count(const tempo_st_file *f) { return f->n; }
const tempo_st_tensor *tempo_st_at(const tempo_st_file *f, int i) { return (i >= 0 && i < f->n) ? &f->t[i] : NULL; }

const tempo_st_tensor *tempo_st_get(const tempo_st_file *f, const char *name) {
  for (int i = 0; i < f->n; i++)
    if (strcmp(f->t[i].name, name) == 0) return &f->t[i];
  return NULL;
}

size_t tempo_st_numel(const tempo_st_tensor *t) {
  size_t n = 1;
  for (int d = 0; d < t->ndim; d++) n *= (size_t)t->shape[d];
  return n;
}

/* IEEE 754 half and bfloat16 (little-endian bit patterns) to float32, exactly. */
static float f16_to_f32(uint16_t h) {
  const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  uint32_t u;
  if (e == 0x1f) {
    u = sign | 0x7f800000u | (m << 13); /* infinity or NaN */
  } else if (e != 0) {
    u = sign | ((e + 112) << 23) | (m << 13);
  } else if (m == 0) {
    u = sign;
  } else { /* subnormal half: m * 2^-24 */
    float f = (float)m * 0x1p-24f;
    memcpy(&u, &f, 4);
    u |= sign;
  }
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static float bf16_to_f32(uint16_t h) {
  const uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

tempo_status tempo_st_read_f32(const tempo_st_tensor *t, float *out, size_t count) {
  if (tempo_st_numel(t) != count)
    return tempo_set_error(TEMPO_STATUS_MISMATCH, "tensor '%s' has %zu elements, expected %zu", t->name,
                           tempo_st_numel(t), count);
  if (t->dtype == TEMPO_ST_F32) {
    memcpy(out, t->data, count * sizeof(float));
  } else if (t->dtype == TEMPO_ST_F64) {
    for (size_t i = 0; i < count; i++) {
      double d;
      memcpy(&d, (const uint8_t *)t->data + i * 8, 8);
      out[i] = (float)d;
    }
  } else if (t->dtype == TEMPO_ST_F16 || t->dtype == TEMPO_ST_BF16) {
    const uint8_t *b = t->data;
    for (size_t i = 0; i < count; i++)
      out[i] = t->dtype == TEMPO_ST_F16 ? f16_to_f32((uint16_t)(b[2 * i] | b[2 * i + 1] << 8))
                                        : bf16_to_f32((uint16_t)(b[2 * i] | b[2 * i + 1] << 8));
  } else {
    return tempo_set_error(TEMPO_STATUS_MISMATCH, "tensor '%s' has dtype %s, expected F32, F64, F16 or BF16", t->name,
                           dtypes[t->dtype].name);
  }
  return TEMPO_STATUS_OK;
}

tempo_status tempo_st_serialize(const tempo_st_tensor *t, int n, uint8_t **out, size_t *out_len) {
  *out = NULL;
  size_t cap = 64 + (size_t)n * (TEMPO_ST_NAME_MAX + 64 + TEMPO_ST_MAX_DIMS * 22), hl = 0, data = 0;
  char *h = malloc(cap);
  if (!h) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "out of memory writing safetensors");
  hl += (size_t)snprintf(h + hl, cap - hl, "{");
  for (int i = 0; i < n; i++) {
    if (strchr(t[i].name, '"') || strchr(t[i].name, '\\')) {
      free(h);
      return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "tensor name '%s' has a quote or backslash", t[i].name);
    }
    hl += (size_t)snprintf(h + hl, cap - hl, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[", i ? "," : "", t[i].name,
                           dtypes[t[i].dtype].name);
    for (int d = 0; d < t[i].ndim; d++)
      hl += (size_t)snprintf(h + hl, cap - hl, "%s%lld", d ? "," : "", (long long)t[i].shape[d]);
    hl += (size_t)snprintf(h + hl, cap - hl, "],\"data_offsets\":[%zu,%zu]}", data, data + t[i].nbytes);
    data += t[i].nbytes;
  }
  hl += (size_t)snprintf(h + hl, cap - hl, "}");
  while (hl % 8) h[hl++] = ' '; /* pad so the data starts 8-byte aligned */
  size_t total = 8 + hl + data;
  uint8_t *buf = malloc(total);
  if (!buf) {
    free(h);
    return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "out of memory writing safetensors");
  }
  tempo_le_put64(buf, (uint64_t)hl);
  memcpy(buf + 8, h, hl);
  free(h);
  size_t pos = 8 + hl;
  for (int i = 0; i < n; i++) {
    memcpy(buf + pos, t[i].data, t[i].nbytes);
    pos += t[i].nbytes;
  }
  *out = buf;
  *out_len = total;
  return TEMPO_STATUS_OK;
}

tempo_status tempo_st_write(const char *path, const tempo_st_tensor *t, int n) {
  uint8_t *buf;
  size_t len;
  tempo_status st = tempo_st_serialize(t, n, &buf, &len);
  if (st) return st;
  const void *parts[1] = {buf};
  st = tempo_write_file_atomic(path, parts, &len, 1);
  free(buf);
  return st;
}
