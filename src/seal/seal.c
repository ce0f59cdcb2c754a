/* seal.c - sealed files: chunked, authenticated streaming encryption with libsodium's
 * crypto_secretstream_xchacha20poly1305 (layout in seal.h). Writers and readers stream one
 * chunk at a time; outputs appear atomically (temp file, fsync, rename) and only complete. */
#include "seal_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tempo/common.h"
#include "tempo/fileio.h"

#define FIXED_BYTES 44 /* magic .. reserved, before the label */
#define SS_HEADER crypto_secretstream_xchacha20poly1305_HEADERBYTES
#define SS_ABYTES crypto_secretstream_xchacha20poly1305_ABYTES
#define MAX_HEADER (FIXED_BYTES + TEMPO_SEAL_LABEL_MAX + SS_HEADER)

typedef crypto_secretstream_xchacha20poly1305_state ss_state;

/* ---------------------------------------------------------------- small I/O helpers */

/* Reads exactly n bytes; *got receives how many arrived before end of file. */
static tempo_status read_full(int fd, void *buf, size_t n, size_t *got, const char *path) {
  uint8_t *p = buf;
  *got = 0;
  while (*got < n) {
    ssize_t r = read(fd, p + *got, n - *got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return tempo_set_error(TEMPO_STATUS_IO, "cannot read %s: %s", path, strerror(errno));
    if (r == 0) break;
    *got += (size_t)r;
  }
  return TEMPO_STATUS_OK;
}

/* ---------------------------------------------------------------- header */

static tempo_status check_label(const char *label, const char *what) {
  size_t n = label ? strlen(label) : 0;
  if (n < 1 || n > TEMPO_SEAL_LABEL_MAX)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "%s: a seal label must have 1..%d characters", what,
                           TEMPO_SEAL_LABEL_MAX);
  return TEMPO_STATUS_OK;
}

/* Number of chunks for len plaintext bytes; false on overflow of the file size. */
static bool layout(uint64_t len, uint32_t chunk, size_t label_len, uint64_t *nchunks, uint64_t *file_size) {
  uint64_t n = len == 0 ? 1 : (len - 1) / chunk + 1;
  uint64_t tags, sz;
  if (__builtin_mul_overflow(n, (uint64_t)SS_ABYTES, &tags) || __builtin_add_overflow(len, tags, &sz) ||
      __builtin_add_overflow(sz, (uint64_t)(FIXED_BYTES + label_len + SS_HEADER), &sz))
    return false;
  *nchunks = n;
  *file_size = sz;
  return true;
}

/* Writes the authenticated part of the header (returns its length, the associated data). */
static size_t put_header(uint8_t *h, const tempo_owner_key *k, const char *label, uint32_t chunk, uint64_t len) {
  size_t n = strlen(label);
  memcpy(h, TEMPO_SEAL_MAGIC, 8);
  tempo_le_put32(h + 8, TEMPO_SEAL_VERSION);
  tempo_le_put32(h + 12, chunk);
  tempo_le_put64(h + 16, len);
  memcpy(h + 24, k->id, TEMPO_OWNER_KEY_ID_BYTES);
  h[40] = (uint8_t)n, h[41] = (uint8_t)(n >> 8), h[42] = 0, h[43] = 0;
  memcpy(h + FIXED_BYTES, label, n);
  return FIXED_BYTES + n;
}

/* ---------------------------------------------------------------- sealing */

typedef tempo_status (*src_fn)(void *ctx, uint8_t *buf, size_t n);

/* Seals len bytes pulled from src into fd. */
static tempo_status seal_stream(int fd, const char *path, const tempo_owner_key *k, const char *label,
                                uint32_t chunk, uint64_t len, src_fn src, void *ctx) {
  uint64_t nchunks, fsize;
  if (!layout(len, chunk, strlen(label), &nchunks, &fsize))
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "%s: input too large to seal", path);
  uint8_t h[MAX_HEADER];
  size_t ad = put_header(h, k, label, chunk, len);
  ss_state *ss = sodium_malloc(sizeof *ss);
  uint8_t *plain = malloc(chunk), *cipher = malloc((size_t)chunk + SS_ABYTES);
  tempo_status st = TEMPO_STATUS_OK;
  if (!ss || !plain || !cipher) {
    st = tempo_set_error(TEMPO_STATUS_NO_MEMORY, "out of memory sealing %s", path);
    goto out;
  }
  crypto_secretstream_xchacha20poly1305_init_push(ss, h + ad, k->key);
  if ((st = tempo_write_all(fd, h, ad + SS_HEADER, path))) goto out;
  uint64_t left = len;
  for (uint64_t i = 0; i < nchunks; i++) {
    size_t n = left < chunk ? (size_t)left : chunk;
    if ((st = src(ctx, plain, n))) goto out;
    unsigned long long clen;
    uint8_t tag = i + 1 == nchunks ? crypto_secretstream_xchacha20poly1305_TAG_FINAL
                                   : crypto_secretstream_xchacha20poly1305_TAG_MESSAGE;
    crypto_secretstream_xchacha20poly1305_push(ss, cipher, &clen, plain, n, h, ad, tag);
    if ((st = tempo_write_all(fd, cipher, (size_t)clen, path))) goto out;
    left -= n;
  }
out:
  if (plain) sodium_memzero(plain, chunk);
  free(plain);
  free(cipher);
  sodium_free(ss); /* zeroes the stream state (it holds a subkey) */
  return st;
}

typedef struct {
  const uint8_t *p;
} mem_src;

static tempo_status mem_read(void *ctx, uint8_t *buf, size_t n) {
  mem_src *m = ctx;
  if (n) memcpy(buf, m->p, n);
  m->p += n;
  return TEMPO_STATUS_OK;
}

typedef struct {
  int fd;
  const char *path;
} fd_src;

static tempo_status fd_read(void *ctx, uint8_t *buf, size_t n) {
  fd_src *f = ctx;
  size_t got;
  tempo_status st = read_full(f->fd, buf, n, &got, f->path);
  if (!st && got != n) st = tempo_set_error(TEMPO_STATUS_IO, "%s shrank while it was being sealed", f->path);
  return st;
}

static tempo_status seal_args(const tempo_owner_key *k, const char *label, uint32_t *chunk, const char *what) {
  if (!k) return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "%s: no owner key given", what);
  if (*chunk == 0) *chunk = TEMPO_SEAL_CHUNK_DEFAULT;
  if (*chunk < TEMPO_SEAL_CHUNK_MIN || *chunk > TEMPO_SEAL_CHUNK_MAX)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "%s: chunk size %u is outside %u..%u", what, *chunk,
                           TEMPO_SEAL_CHUNK_MIN, TEMPO_SEAL_CHUNK_MAX);
  tempo_status st = check_label(label, what);
  return st ? st : tempo_seal_sodium_init();
}

tempo_status tempo_seal_write(const char *path, const tempo_owner_key *k, const char *label, const void *data,
                              size_t len, uint32_t chunk_size) {
  tempo_status st = seal_args(k, label, &chunk_size, path);
  if (st) return st;
  char tmp[4200];
  int fd;
  if ((st = tempo_atomic_open(path, tmp, sizeof tmp, &fd))) return st;
  mem_src m = {data};
  st = seal_stream(fd, path, k, label, chunk_size, len, mem_read, &m);
  return tempo_atomic_finish(fd, tmp, path, st);
}

tempo_status tempo_seal_file(const char *in_path, const char *out_path, const tempo_owner_key *k, const char *label,
                             uint32_t chunk_size) {
  tempo_status st = seal_args(k, label, &chunk_size, in_path);
  if (st) return st;
  int in = open(in_path, O_RDONLY | O_CLOEXEC);
  if (in < 0) return tempo_set_error(TEMPO_STATUS_IO, "cannot open %s: %s", in_path, strerror(errno));
  struct stat sb;
  if (fstat(in, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    close(in);
    return tempo_set_error(TEMPO_STATUS_IO, "%s is not a regular file", in_path);
  }
  char tmp[4200];
  int fd;
  if ((st = tempo_atomic_open(out_path, tmp, sizeof tmp, &fd))) {
    close(in);
    return st;
  }
  fd_src f = {in, in_path};
  st = seal_stream(fd, out_path, k, label, chunk_size, (uint64_t)sb.st_size, fd_read, &f);
  if (!st) { /* the input must end where fstat said */
    uint8_t extra;
    size_t got;
    st = read_full(in, &extra, 1, &got, in_path);
    if (!st && got) st = tempo_set_error(TEMPO_STATUS_IO, "%s grew while it was being sealed", in_path);
  }
  close(in);
  return tempo_atomic_finish(fd, tmp, out_path, st);
}

/* ---------------------------------------------------------------- unsealing */

typedef tempo_status (*sink_fn)(void *ctx, const uint8_t *buf, size_t n);

/* Parsed and size-checked header of an open sealed file. */
typedef struct {
  uint8_t h[MAX_HEADER];
  size_t ad;          /* authenticated header bytes */
  uint32_t chunk;
  uint64_t len, nchunks;
  char label[TEMPO_SEAL_LABEL_MAX + 1];
} sealed_hdr;

static tempo_status read_header(int fd, const char *path, const tempo_owner_key *k, sealed_hdr *s) {
  struct stat sb;
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode))
    return tempo_set_error(TEMPO_STATUS_IO, "%s is not a regular file", path);
  size_t got;
  tempo_status st = read_full(fd, s->h, FIXED_BYTES, &got, path);
  if (st) return st;
  if (got < FIXED_BYTES || memcmp(s->h, TEMPO_SEAL_MAGIC, 8) != 0)
    return tempo_set_error(TEMPO_STATUS_CORRUPT, "%s is not a sealed Tempo file (bad magic or too short)", path);
  uint32_t version = tempo_le_get32(s->h + 8);
  if (version != TEMPO_SEAL_VERSION)
    return tempo_set_error(TEMPO_STATUS_CORRUPT, "%s has sealed-file version %u; this build reads version %d", path,
                           version, TEMPO_SEAL_VERSION);
  s->chunk = tempo_le_get32(s->h + 12);
  s->len = tempo_le_get64(s->h + 16);
  size_t n = (size_t)s->h[40] | (size_t)s->h[41] << 8;
  uint64_t fsize;
  if (s->chunk < TEMPO_SEAL_CHUNK_MIN || s->chunk > TEMPO_SEAL_CHUNK_MAX || n < 1 || n > TEMPO_SEAL_LABEL_MAX ||
      s->h[42] || s->h[43] || !layout(s->len, s->chunk, n, &s->nchunks, &fsize))
    return tempo_set_error(TEMPO_STATUS_CORRUPT, "%s: sealed-file header is damaged (chunk size %u, label length %zu)",
                           path, s->chunk, n);
  if ((uint64_t)sb.st_size != fsize)
    return tempo_set_error(TEMPO_STATUS_CORRUPT, "%s is truncated or extended: %lld bytes, its header implies %llu",
                           path, (long long)sb.st_size, (unsigned long long)fsize);
  if ((st = read_full(fd, s->h + FIXED_BYTES, n + SS_HEADER, &got, path))) return st;
  if (got != n + SS_HEADER) return tempo_set_error(TEMPO_STATUS_CORRUPT, "%s is truncated (header)", path);
  s->ad = FIXED_BYTES + n;
  memcpy(s->label, s->h + FIXED_BYTES, n);
  s->label[n] = '\0';
  if (sodium_memcmp(s->h + 24, k->id, TEMPO_OWNER_KEY_ID_BYTES) != 0) {
    char want[2 * TEMPO_OWNER_KEY_ID_BYTES + 1], have[2 * TEMPO_OWNER_KEY_ID_BYTES + 1];
    sodium_bin2hex(want, sizeof want, s->h + 24, TEMPO_OWNER_KEY_ID_BYTES);
    tempo_owner_key_id_hex(k, have);
    return tempo_set_error(TEMPO_STATUS_CORRUPT, "%s was sealed with owner key %s, not with this key (%s): wrong "
                           "--key-file, or the file was tampered with", path, want, have);
  }
  return TEMPO_STATUS_OK;
}

/* Authenticates and decrypts every chunk of an open sealed file into sink. */
static tempo_status unseal_stream(int fd, const char *path, const tempo_owner_key *k, sealed_hdr *s,
                                  const char *label, sink_fn sink, void *ctx) {
  ss_state *ss = sodium_malloc(sizeof *ss);
  uint8_t *cipher = malloc((size_t)s->chunk + SS_ABYTES), *plain = malloc(s->chunk);
  tempo_status st = TEMPO_STATUS_OK;
  if (!ss || !cipher || !plain) {
    st = tempo_set_error(TEMPO_STATUS_NO_MEMORY, "out of memory unsealing %s", path);
    goto out;
  }
  if (crypto_secretstream_xchacha20poly1305_init_pull(ss, s->h + s->ad, k->key) != 0) {
    st = tempo_set_error(TEMPO_STATUS_CORRUPT, "%s: sealed-stream header is invalid", path);
    goto out;
  }
  uint64_t left = s->len;
  for (uint64_t i = 0; i < s->nchunks; i++) {
    size_t n = left < s->chunk ? (size_t)left : s->chunk, got;
    if ((st = read_full(fd, cipher, n + SS_ABYTES, &got, path))) goto out;
    if (got != n + SS_ABYTES) {
      st = tempo_set_error(TEMPO_STATUS_CORRUPT, "%s is truncated in chunk %llu of %llu", path,
                           (unsigned long long)i + 1, (unsigned long long)s->nchunks);
      goto out;
    }
    unsigned long long plen;
    uint8_t tag;
    const uint8_t want = i + 1 == s->nchunks ? crypto_secretstream_xchacha20poly1305_TAG_FINAL
                                             : crypto_secretstream_xchacha20poly1305_TAG_MESSAGE;
    if (crypto_secretstream_xchacha20poly1305_pull(ss, plain, &plen, &tag, cipher, n + SS_ABYTES, s->h, s->ad) != 0 ||
        plen != n || tag != want) {
      st = tempo_set_error(TEMPO_STATUS_CORRUPT, "%s is corrupt or was tampered with: chunk %llu of %llu fails "
                           "authentication", path, (unsigned long long)i + 1, (unsigned long long)s->nchunks);
      goto out;
    }
    if (i == 0 && label && strcmp(label, s->label) != 0) {
      st = tempo_set_error(TEMPO_STATUS_MISMATCH, "%s holds sealed '%s', not the expected '%s': the files were "
                           "swapped or renamed", path, s->label, label);
      goto out;
    }
    if ((st = sink(ctx, plain, n))) goto out;
    left -= n;
  }
out:
  if (plain) sodium_memzero(plain, s->chunk);
  free(plain);
  free(cipher);
  sodium_free(ss);
  return st;
}

typedef struct {
  uint8_t *p;
  size_t pos;
} mem_sink;

static tempo_status mem_write(void *ctx, const uint8_t *buf, size_t n) {
  mem_sink *m = ctx;
  if (n) memcpy(m->p + m->pos, buf, n);
  m->pos += n;
  return TEMPO_STATUS_OK;
}

typedef struct {
  int fd;
  const char *path;
} fd_sink;

static tempo_status fd_write(void *ctx, const uint8_t *buf, size_t n) {
  fd_sink *f = ctx;
  return tempo_write_all(f->fd, buf, n, f->path);
}

static tempo_status open_sealed(const char *path, const tempo_owner_key *k, int *fd) {
  if (!k) return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "%s: no owner key given", path);
  tempo_status st = tempo_seal_sodium_init();
  if (st) return st;
  *fd = open(path, O_RDONLY | O_CLOEXEC);
  if (*fd < 0)
    return tempo_set_error(TEMPO_STATUS_IO, "cannot open %s: %s", path, strerror(errno));
  return TEMPO_STATUS_OK;
}

tempo_status tempo_unseal_read(const char *path, const tempo_owner_key *k, const char *label, size_t max_len,
                               uint8_t **out, size_t *len, char *label_out) {
  *out = NULL;
  *len = 0;
  int fd;
  tempo_status st = open_sealed(path, k, &fd);
  if (st) return st;
  sealed_hdr s;
  mem_sink m = {0};
  if ((st = read_header(fd, path, k, &s))) goto out;
  if (s.len > max_len) {
    st = tempo_set_error(TEMPO_STATUS_CORRUPT, "%s: sealed content of %llu bytes exceeds the limit of %zu", path,
                         (unsigned long long)s.len, max_len);
    goto out;
  }
  if (!(m.p = malloc(s.len ? (size_t)s.len : 1))) {
    st = tempo_set_error(TEMPO_STATUS_NO_MEMORY, "%s: cannot allocate %llu bytes", path, (unsigned long long)s.len);
    goto out;
  }
  if ((st = unseal_stream(fd, path, k, &s, label, mem_write, &m))) {
    sodium_memzero(m.p, m.pos);
    free(m.p);
    goto out;
  }
  *out = m.p;
  *len = (size_t)s.len;
  if (label_out) memcpy(label_out, s.label, strlen(s.label) + 1);
out:
  close(fd);
  return st;
}

tempo_status tempo_unseal_file(const char *in_path, const char *out_path, const tempo_owner_key *k,
                               const char *label, char *label_out) {
  int in;
  tempo_status st = open_sealed(in_path, k, &in);
  if (st) return st;
  sealed_hdr s;
  if ((st = read_header(in, in_path, k, &s))) {
    close(in);
    return st;
  }
  char tmp[4200];
  int fd;
  if ((st = tempo_atomic_open(out_path, tmp, sizeof tmp, &fd))) {
    close(in);
    return st;
  }
  fd_sink f = {fd, tmp};
  st = unseal_stream(in, in_path, k, &s, label, fd_write, &f);
  close(in);
  st = tempo_atomic_finish(fd, tmp, out_path, st);
  if (!st && label_out) memcpy(label_out, s.label, strlen(s.label) + 1);
  return st;
}

bool tempo_is_sealed_file(const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  uint8_t magic[8];
  size_t got = 0;
  tempo_status st = read_full(fd, magic, sizeof magic, &got, path);
  close(fd);
  return !st && got == 8 && memcmp(magic, TEMPO_SEAL_MAGIC, 8) == 0;
}

tempo_status tempo_seal_default_label(const char *path, char *out, size_t cap) {
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  size_t n = strlen(base);
  const size_t sl = strlen(TEMPO_SEAL_SUFFIX);
  if (n > sl && strcmp(base + n - sl, TEMPO_SEAL_SUFFIX) == 0) n -= sl;
#define ENDS(s) (n >= strlen(s) && strncmp(base + n - strlen(s), s, strlen(s)) == 0)
  const char *fixed = ENDS(".safetensors") ? TEMPO_SEAL_LABEL_WEIGHTS
                      : ENDS(".ckpt")      ? TEMPO_SEAL_LABEL_CHECKPOINT
                      : ENDS(".jsonl")     ? TEMPO_SEAL_LABEL_METRICS
                                           : NULL;
  if (!fixed && ENDS(".gz")) n -= 3;
#undef ENDS
  int w = fixed ? snprintf(out, cap, "%s", fixed) : snprintf(out, cap, "data/%.*s", (int)n, base);
  if (n == 0 || w < 0 || (size_t)w >= cap || (size_t)w > TEMPO_SEAL_LABEL_MAX)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "cannot derive a seal label from '%s' (pass --label)", path);
  return TEMPO_STATUS_OK;
}
