/* audit.c - the audit trail writer and its validating reader (audit.h,
 * docs/audit-format.md). */
#include "tempo/audit.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/bytes.h"
#include "tempo/common.h"

struct tempo_audit_writer {
  FILE *f;
  char *path;
  uint64_t seq;
};

struct tempo_audit_reader {
  FILE *f;
  uint64_t seq;
  uint8_t *buf;
  size_t cap;
};


tempo_status tempo_audit_writer_open(const char *dir, tempo_audit_writer **out) {
  *out = NULL;
  size_t n = strlen(dir) + sizeof "/" TEMPO_AUDIT_FILE;
  tempo_audit_writer *w = calloc(1, sizeof *w);
  char *path = malloc(n);
  if (!w || !path) {
    free(w);
    free(path);
    return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "audit: out of memory");
  }
  snprintf(path, n, "%s/%s", dir, TEMPO_AUDIT_FILE);
  w->f = fopen(path, "wb");
  if (!w->f) {
    tempo_status st = tempo_set_error(TEMPO_STATUS_IO, "audit: cannot create %s: %s", path, strerror(errno));
    free(path);
    free(w);
    return st;
  }
  w->path = path;
  uint8_t h[TEMPO_AUDIT_FILE_HEADER_SIZE] = {0};
  memcpy(h, TEMPO_AUDIT_MAGIC, 8);
  tempo_le_put32(h + 8, TEMPO_AUDIT_VERSION);
  tempo_le_put32(h + 12, TEMPO_AUDIT_FILE_HEADER_SIZE);
  tempo_le_put32(h + 16, TEMPO_AUDIT_RECORD_HEADER_SIZE);
  tempo_le_put32(h + 20, TEMPO_MSG_HEADER_SIZE);
  if (fwrite(h, sizeof h, 1, w->f) != 1) {
    tempo_status st = tempo_set_error(TEMPO_STATUS_IO, "audit: cannot write %s", path);
    fclose(w->f);
    free(w->path);
    free(w);
    return st;
  }
  *out = w;
  return TEMPO_STATUS_OK;
}

tempo_status tempo_audit_write(tempo_audit_writer *w, int direction, int worker, const uint8_t *header, int nseg,
                               const uint8_t *const *seg, const size_t *seg_len) {
  uint64_t len = TEMPO_MSG_HEADER_SIZE;
  for (int i = 0; i < nseg; i++) len += seg_len[i];
  uint8_t r[TEMPO_AUDIT_RECORD_HEADER_SIZE] = {0};
  tempo_le_put32(r, TEMPO_AUDIT_RECORD_MAGIC);
  r[4] = (uint8_t)direction;
  r[6] = (uint8_t)worker;
  r[7] = (uint8_t)(worker >> 8);
  tempo_le_put64(r + 8, w->seq);
  tempo_le_put64(r + 16, len);
  bool ok = fwrite(r, sizeof r, 1, w->f) == 1 && fwrite(header, TEMPO_MSG_HEADER_SIZE, 1, w->f) == 1;
  for (int i = 0; ok && i < nseg; i++)
    if (seg_len[i]) ok = fwrite(seg[i], seg_len[i], 1, w->f) == 1;
  if (!ok) return tempo_set_error(TEMPO_STATUS_IO, "audit: cannot write %s: %s", w->path, strerror(errno));
  w->seq++;
  return TEMPO_STATUS_OK;
}

tempo_status tempo_audit_writer_close(tempo_audit_writer *w) {
  if (!w) return TEMPO_STATUS_OK;
  tempo_status st = TEMPO_STATUS_OK;
  if (fclose(w->f) != 0) st = tempo_set_error(TEMPO_STATUS_IO, "audit: cannot close %s", w->path);
  free(w->path);
  free(w);
  return st;
}

tempo_status tempo_audit_open(const char *path, tempo_audit_reader **out) {
  *out = NULL;
  FILE *f = fopen(path, "rb");
  if (!f) return tempo_set_error(TEMPO_STATUS_IO, "audit: cannot open %s: %s", path, strerror(errno));
  uint8_t h[TEMPO_AUDIT_FILE_HEADER_SIZE];
  if (fread(h, sizeof h, 1, f) != 1) {
    fclose(f);
    return tempo_set_error(TEMPO_STATUS_CORRUPT, "audit: %s: truncated file header", path);
  }
  bool zeros = true;
  for (size_t i = 24; i < sizeof h; i++) zeros = zeros && h[i] == 0;
  if (memcmp(h, TEMPO_AUDIT_MAGIC, 8) != 0 || tempo_le_get32(h + 8) != TEMPO_AUDIT_VERSION ||
      tempo_le_get32(h + 12) != TEMPO_AUDIT_FILE_HEADER_SIZE || tempo_le_get32(h + 16) != TEMPO_AUDIT_RECORD_HEADER_SIZE ||
      tempo_le_get32(h + 20) != TEMPO_MSG_HEADER_SIZE || !zeros) {
    fclose(f);
    return tempo_set_error(TEMPO_STATUS_CORRUPT, "audit: %s is not a version-%u audit trail", path,
                           TEMPO_AUDIT_VERSION);
  }
  tempo_audit_reader *r = calloc(1, sizeof *r);
  if (!r) {
    fclose(f);
    return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "audit: out of memory");
  }
  r->f = f;
  *out = r;
  return TEMPO_STATUS_OK;
}

tempo_status tempo_audit_next(tempo_audit_reader *r, tempo_audit_record *rec, bool *end) {
  *end = false;
  uint8_t h[TEMPO_AUDIT_RECORD_HEADER_SIZE];
  size_t got = fread(h, 1, sizeof h, r->f);
  if (got == 0 && feof(r->f)) {
    *end = true;
    return TEMPO_STATUS_OK;
  }
  if (got != sizeof h) return tempo_set_error(TEMPO_STATUS_CORRUPT, "audit: truncated record %llu", (unsigned long long)r->seq);
  uint64_t len = tempo_le_get64(h + 16);
  if (tempo_le_get32(h) != TEMPO_AUDIT_RECORD_MAGIC || h[4] > 1 || h[5] != 0 || tempo_le_get64(h + 8) != r->seq ||
      len < TEMPO_MSG_HEADER_SIZE || len > TEMPO_MSG_HEADER_SIZE + TEMPO_MSG_MAX_PAYLOAD)
    return tempo_set_error(TEMPO_STATUS_CORRUPT, "audit: bad framing of record %llu", (unsigned long long)r->seq);
  uint8_t mh[TEMPO_MSG_HEADER_SIZE];
  if (fread(mh, sizeof mh, 1, r->f) != 1)
    return tempo_set_error(TEMPO_STATUS_CORRUPT, "audit: truncated message in record %llu", (unsigned long long)r->seq);
  tempo_status st = tempo_msg_header_read(mh, sizeof mh, &rec->header);
  if (st) return tempo_set_error(TEMPO_STATUS_CORRUPT, "audit: record %llu: %s", (unsigned long long)r->seq, tempo_errmsg());
  if (rec->header.payload_len != len - TEMPO_MSG_HEADER_SIZE)
    return tempo_set_error(TEMPO_STATUS_CORRUPT, "audit: record %llu: length disagrees with its header",
                           (unsigned long long)r->seq);
  size_t pl = (size_t)rec->header.payload_len;
  if (pl > r->cap) {
    uint8_t *b = realloc(r->buf, pl);
    if (!b) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "audit: out of memory for a %zu-byte payload", pl);
    r->buf = b;
    r->cap = pl;
  }
  if (pl && fread(r->buf, pl, 1, r->f) != 1)
    return tempo_set_error(TEMPO_STATUS_CORRUPT, "audit: truncated payload in record %llu", (unsigned long long)r->seq);
  rec->direction = h[4];
  rec->worker = h[6] | (h[7] << 8);
  rec->seq = r->seq++;
  rec->payload = r->buf;
  return TEMPO_STATUS_OK;
}

void tempo_audit_close(tempo_audit_reader *r) {
  if (!r) return;
  fclose(r->f);
  free(r->buf);
  free(r);
}
