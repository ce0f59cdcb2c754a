/* checkpoint.c - checkpoint serialisation with a BLAKE2b checksum (see checkpoint.h). */
#include "tempo/checkpoint.h"

#include <math.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "core/bytes.h"
#include "tempo/common.h"
#include "tempo/fileio.h"
#include "tempo/seal.h"

#define CKPT_MAGIC "TMPOCKPT"
#define CKPT_SUM 32
#define CKPT_MAX_FILE ((size_t)16 << 30)

typedef struct {
  uint8_t *p;
  size_t pos, cap;
} wbuf;

static void put(wbuf *w, const void *src, size_t n) {
  TEMPO_ASSERT(w->pos + n <= w->cap);
  memcpy(w->p + w->pos, src, n);
  w->pos += n;
}
static void put_u32(wbuf *w, uint32_t v) {
  uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
  put(w, b, 4);
}
static void put_u64(wbuf *w, uint64_t v) {
  put_u32(w, (uint32_t)v);
  put_u32(w, (uint32_t)(v >> 32));
}
static void put_f32(wbuf *w, float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  put_u32(w, u);
}
static void put_floats(wbuf *w, const float *a, size_t n) {
  for (size_t i = 0; i < n; i++) put_f32(w, a[i]); /* explicit little-endian on any host */
}

typedef struct {
  const uint8_t *p;
  size_t pos, len;
  bool bad;
} rbuf;

static void get(rbuf *r, void *dst, size_t n) {
  if (r->bad || n > r->len - r->pos) {
    r->bad = true;
    memset(dst, 0, n);
    return;
  }
  memcpy(dst, r->p + r->pos, n);
  r->pos += n;
}
static uint32_t get_u32(rbuf *r) {
  uint8_t b[4];
  get(r, b, 4);
  return tempo_le_get32(b);
}
static uint64_t get_u64(rbuf *r) {
  uint64_t lo = get_u32(r);
  return lo | (uint64_t)get_u32(r) << 32;
}
static float get_f32(rbuf *r) {
  uint32_t u = get_u32(r);
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* The header fields, in order; shared by writer and reader so they cannot drift apart.
 * Version 2 appends f32 dropout, u32 flags (bit 0: augment), u32 stream-record bytes and a
 * reserved u32 (0); the stream record itself follows the optimizer's step. */
#define CKPT_HEADER_BYTES_V1 (32 + 4 * 4 + 32 + 8 + 8 + 4 * 4 + 8 + (4 + 7 * 4 + 4 + 8 + 8) + 4 * 8 + 3 * 8)
#define CKPT_HEADER_BYTES (CKPT_HEADER_BYTES_V1 + 4 * 4)
#define CKPT_FLAG_AUGMENT 1u

static void write_header(wbuf *w, const tempo_ckpt_meta *m) {
  put(w, m->model, 32);
  put_u32(w, (uint32_t)m->in_c);
  put_u32(w, (uint32_t)m->in_h);
  put_u32(w, (uint32_t)m->in_w);
  put_u32(w, (uint32_t)m->num_classes);
  put(w, m->dataset, 32);
  put_u64(w, m->seed);
  put_u64(w, (uint64_t)m->step);
  put_u32(w, (uint32_t)m->epoch);
  put_u32(w, (uint32_t)m->batch_in_epoch);
  put_u32(w, (uint32_t)m->batch_size);
  put_u32(w, (uint32_t)m->epochs);
  put_u64(w, (uint64_t)m->max_steps);
  const tempo_optim_config *o = &m->optim;
  put_u32(w, (uint32_t)o->kind);
  put_f32(w, o->lr);
  put_f32(w, o->momentum);
  put_f32(w, o->weight_decay);
  put_f32(w, o->beta1);
  put_f32(w, o->beta2);
  put_f32(w, o->eps);
  put_f32(w, 0.0f); /* reserved */
  put_u32(w, (uint32_t)o->schedule);
  put_u64(w, (uint64_t)o->warmup_steps);
  put_u64(w, (uint64_t)o->total_steps);
  for (int i = 0; i < 4; i++) put_u64(w, m->rng[i]);
  put_u64(w, m->param_count);
  put_u64(w, m->state_count);
  put_u64(w, m->optim_count);
  put_f32(w, m->dropout);
  put_u32(w, m->augment ? CKPT_FLAG_AUGMENT : 0);
  put_u32(w, m->streams_len);
  put_u32(w, 0); /* reserved */
}

/* Reads the header of a version-1 (v1) or version-2 file; false when a version-2 field is
 * out of range (flags, stream-record size, dropout). */
static bool read_header(rbuf *r, tempo_ckpt_meta *m, bool v1) {
  sodium_memzero(m, sizeof *m);
  get(r, m->model, 32);
  m->model[31] = '\0';
  m->in_c = (int32_t)get_u32(r);
  m->in_h = (int32_t)get_u32(r);
  m->in_w = (int32_t)get_u32(r);
  m->num_classes = (int32_t)get_u32(r);
  get(r, m->dataset, 32);
  m->dataset[31] = '\0';
  m->seed = get_u64(r);
  m->step = (int64_t)get_u64(r);
  m->epoch = (int32_t)get_u32(r);
  m->batch_in_epoch = (int32_t)get_u32(r);
  m->batch_size = (int32_t)get_u32(r);
  m->epochs = (int32_t)get_u32(r);
  m->max_steps = (int64_t)get_u64(r);
  tempo_optim_config *o = &m->optim;
  o->kind = (tempo_optim_kind)get_u32(r);
  o->lr = get_f32(r);
  o->momentum = get_f32(r);
  o->weight_decay = get_f32(r);
  o->beta1 = get_f32(r);
  o->beta2 = get_f32(r);
  o->eps = get_f32(r);
  (void)get_f32(r);
  o->schedule = (tempo_sched_kind)get_u32(r);
  o->warmup_steps = (long)get_u64(r);
  o->total_steps = (long)get_u64(r);
  for (int i = 0; i < 4; i++) m->rng[i] = get_u64(r);
  m->param_count = get_u64(r);
  m->state_count = get_u64(r);
  m->optim_count = get_u64(r);
  m->v1 = v1;
  if (v1) return true;
  m->dropout = get_f32(r);
  const uint32_t flags = get_u32(r);
  m->augment = (flags & CKPT_FLAG_AUGMENT) != 0;
  m->streams_len = get_u32(r);
  const uint32_t reserved = get_u32(r);
  return (flags & ~CKPT_FLAG_AUGMENT) == 0 && reserved == 0 && m->streams_len <= TEMPO_CKPT_STREAMS_MAX &&
         m->dropout >= 0.0f && m->dropout < 1.0f;
}

tempo_status tempo_ckpt_serialize(const tempo_ckpt_meta *meta, const tempo_params *p, const tempo_optim *opt,
                                  uint8_t **out, size_t *len) {
  tempo_ckpt_meta m = *meta;
  m.param_count = p->count;
  m.state_count = p->state_count;
  m.optim_count = opt ? opt->state_count : 0;
  TEMPO_ASSERT(m.streams_len <= TEMPO_CKPT_STREAMS_MAX);
  size_t floats = m.param_count + m.state_count + m.optim_count, bytes;
  wbuf w = {.p = NULL};
  if (!tempo_mul_size(floats, 4, &bytes)) {
    sodium_memzero(&m, sizeof m);
    return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "checkpoint too large");
  }
  w.cap = 8 + 8 + CKPT_HEADER_BYTES + 8 + m.streams_len + bytes + CKPT_SUM;
  if (!(w.p = malloc(w.cap))) {
    sodium_memzero(&m, sizeof m);
    return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "out of memory writing checkpoint");
  }
  put(&w, CKPT_MAGIC, 8);
  put_u32(&w, TEMPO_CKPT_VERSION);
  put_u32(&w, CKPT_HEADER_BYTES);
  write_header(&w, &m);
  put_u64(&w, opt ? (uint64_t)opt->step : 0);
  put(&w, m.streams, m.streams_len);
  sodium_memzero(&m, sizeof m);
  put_floats(&w, p->data, p->count);
  put_floats(&w, p->state, p->state_count);
  if (opt) put_floats(&w, opt->state, opt->state_count);
  crypto_generichash(w.p + w.pos, CKPT_SUM, w.p, w.pos, NULL, 0);
  w.pos += CKPT_SUM;
  TEMPO_ASSERT(w.pos == w.cap);
  *out = w.p;
  *len = w.pos;
  return TEMPO_STATUS_OK;
}

/* The header's positions and sizes are used as they are by the training loop (a checksum
 * only proves the file is whole, not that whoever wrote it was honest): range-check them. */
static bool meta_in_range(const tempo_ckpt_meta *m) {
  return m->step >= 0 && m->epoch >= 0 && m->batch_in_epoch >= 0 && m->batch_size > 0 && m->epochs >= 0 &&
         m->max_steps >= 0 && m->in_c > 0 && m->in_h > 0 && m->in_w > 0 && m->num_classes > 0 &&
         m->optim.warmup_steps >= 0 && m->optim.total_steps >= 0;
}

tempo_status tempo_ckpt_parse(const uint8_t *buf, size_t len, const char *what, tempo_ckpt_meta *meta,
                              tempo_params *p, tempo_optim *opt) {
  if (len >= 8 && memcmp(buf, TEMPO_SEAL_MAGIC, 8) == 0)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "%s is sealed: pass the owner key (--key-file)", what);
  if (len < 16 + CKPT_SUM || memcmp(buf, CKPT_MAGIC, 8) != 0)
    return tempo_set_error(TEMPO_STATUS_CORRUPT, "%s is not a Tempo checkpoint (bad magic or too short)", what);
  uint8_t sum[CKPT_SUM];
  crypto_generichash(sum, CKPT_SUM, buf, len - CKPT_SUM, NULL, 0);
  if (sodium_memcmp(sum, buf + len - CKPT_SUM, CKPT_SUM) != 0)
    return tempo_set_error(TEMPO_STATUS_CORRUPT, "%s is corrupt or truncated (checksum mismatch)", what);
  rbuf r = {.p = buf, .pos = 8, .len = len - CKPT_SUM};
  uint32_t version = get_u32(&r), hbytes = get_u32(&r);
  if ((version != 1 && version != TEMPO_CKPT_VERSION) ||
      hbytes != (version == 1 ? CKPT_HEADER_BYTES_V1 : CKPT_HEADER_BYTES))
    return tempo_set_error(TEMPO_STATUS_CORRUPT,
                           "%s has checkpoint version %u (header %u bytes); this build reads versions 1 and %u", what,
                           version, hbytes, TEMPO_CKPT_VERSION);
  if (!read_header(&r, meta, version == 1)) {
    const uint32_t n = meta->streams_len;
    sodium_memzero(meta, sizeof *meta);
    return tempo_set_error(TEMPO_STATUS_CORRUPT,
                           "%s: bad stream-state record or training flags in the header (a record of %u bytes, "
                           "at most %d)", what, n, TEMPO_CKPT_STREAMS_MAX);
  }
  uint64_t opt_step = get_u64(&r);
  get(&r, meta->streams, meta->streams_len);
  size_t floats, bytes;
  if (r.bad || meta->param_count > len || meta->state_count > len || meta->optim_count > len ||
      !tempo_mul_size((size_t)(meta->param_count + meta->state_count + meta->optim_count), 4, &bytes) ||
      bytes != r.len - r.pos)
    return tempo_set_error(TEMPO_STATUS_CORRUPT, "%s: sizes in the header do not match the file", what);
  if (!meta_in_range(meta))
    return tempo_set_error(TEMPO_STATUS_CORRUPT, "%s: a position or size in the header is out of range", what);
  floats = (size_t)meta->param_count;
  if (!p) return TEMPO_STATUS_OK;
  if (meta->param_count != p->count || meta->state_count != p->state_count)
    return tempo_set_error(TEMPO_STATUS_MISMATCH,
                           "%s holds a '%s' model for %dx%dx%d inputs and %d classes with %llu parameters and %llu "
                           "state values; this model has %zu and %zu (wrong --model, or another input size?)", what,
                           meta->model, meta->in_c, meta->in_h, meta->in_w, meta->num_classes,
                           (unsigned long long)meta->param_count, (unsigned long long)meta->state_count, p->count,
                           p->state_count);
  for (size_t i = 0; i < floats; i++) p->data[i] = get_f32(&r);
  for (size_t i = 0; i < p->state_count; i++) p->state[i] = get_f32(&r);
  size_t bad_at;
  const int bad_t = tempo_params_find_nonfinite(p, &bad_at);
  if (bad_t >= 0)
    return tempo_set_error(TEMPO_STATUS_CORRUPT, "%s: tensor '%s' holds a non-finite value (NaN or infinity) at "
                           "element %zu: the run that wrote it diverged or the file was altered", what,
                           p->info[bad_t].name, bad_at);
  if (opt) {
    if (meta->optim_count != opt->state_count)
      return tempo_set_error(TEMPO_STATUS_MISMATCH, "%s has no matching optimizer state for resuming", what);
    for (size_t i = 0; i < opt->state_count; i++) opt->state[i] = get_f32(&r);
    const long bad = tempo_floats_find_nonfinite(opt->state, opt->state_count);
    if (bad >= 0)
      return tempo_set_error(TEMPO_STATUS_CORRUPT, "%s: the optimizer state holds a non-finite value at element "
                             "%ld: the run that wrote it diverged or the file was altered", what, bad);
    opt->step = (long)opt_step;
  }
  return TEMPO_STATUS_OK;
}

tempo_status tempo_ckpt_save(const char *path, const tempo_ckpt_meta *meta, const tempo_params *p,
                             const tempo_optim *opt) {
  uint8_t *buf;
  size_t len;
  tempo_status st = tempo_ckpt_serialize(meta, p, opt, &buf, &len);
  if (st) return st;
  const void *parts[1] = {buf};
  st = tempo_write_file_atomic(path, parts, &len, 1);
  sodium_memzero(buf, len); /* the stream record is a secret */
  free(buf);
  return st;
}

tempo_status tempo_ckpt_load(const char *path, tempo_ckpt_meta *meta, tempo_params *p, tempo_optim *opt) {
  uint8_t *buf;
  size_t len;
  tempo_status st = tempo_read_file(path, CKPT_MAX_FILE, &buf, &len);
  if (st) return st;
  st = tempo_ckpt_parse(buf, len, path, meta, p, opt);
  sodium_memzero(buf, len);
  free(buf);
  return st;
}

tempo_status tempo_ckpt_save_sealed(const char *path, const tempo_owner_key *key, const tempo_ckpt_meta *meta,
                                    const tempo_params *p, const tempo_optim *opt) {
  if (!key) return tempo_ckpt_save(path, meta, p, opt);
  uint8_t *buf;
  size_t len;
  tempo_status st = tempo_ckpt_serialize(meta, p, opt, &buf, &len);
  if (st) return st;
  st = tempo_seal_write(path, key, TEMPO_SEAL_LABEL_CHECKPOINT, buf, len, 0);
  sodium_memzero(buf, len);
  free(buf);
  return st;
}

tempo_status tempo_ckpt_load_sealed(const char *path, const tempo_owner_key *key, tempo_ckpt_meta *meta,
                                    tempo_params *p, tempo_optim *opt) {
  if (!key) return tempo_ckpt_load(path, meta, p, opt);
  uint8_t *buf;
  size_t len;
  tempo_status st = tempo_unseal_read(path, key, TEMPO_SEAL_LABEL_CHECKPOINT, CKPT_MAX_FILE, &buf, &len, NULL);
  if (st) return st;
  st = tempo_ckpt_parse(buf, len, path, meta, p, opt);
  sodium_memzero(buf, len);
  free(buf);
  return st;
}
