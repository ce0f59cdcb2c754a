/* audit.h - the audit trail: every message leaving or reaching the master, recorded
 * byte for byte (header + payload) in one file, "<audit_dir>/trail.tat", for the attack
 * tools and tests (format: docs/audit-format.md).
 *
 * The reader validates everything it reads (file header, record framing, sequence
 * numbers, and each message header with the protocol decoder) before allocating the
 * payload buffer, and returns TEMPO_STATUS_CORRUPT on the first inconsistency. */
#ifndef TEMPO_AUDIT_H
#define TEMPO_AUDIT_H

#include "tempo/protocol.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TEMPO_AUDIT_FILE "trail.tat"
#define TEMPO_AUDIT_MAGIC "TEMPOAUD"
#define TEMPO_AUDIT_VERSION 1u
#define TEMPO_AUDIT_FILE_HEADER_SIZE 32u
#define TEMPO_AUDIT_RECORD_HEADER_SIZE 24u
#define TEMPO_AUDIT_RECORD_MAGIC 0x43455254u /* "TREC" */

enum { TEMPO_AUDIT_UP = 0, TEMPO_AUDIT_DOWN = 1 }; /* master->worker, worker->master */

typedef struct tempo_audit_writer tempo_audit_writer;

/* Creates (truncates) <dir>/trail.tat. The folder must exist. */
TEMPO_WUR tempo_status tempo_audit_writer_open(const char *dir, tempo_audit_writer **out);
/* Appends one message: its 80 header bytes and payload segments. */
TEMPO_WUR tempo_status tempo_audit_write(tempo_audit_writer *w, int direction, int worker, const uint8_t *header,
                                         int nseg, const uint8_t *const *seg, const size_t *seg_len);
/* Flushes and closes (NULL is fine). */
TEMPO_WUR tempo_status tempo_audit_writer_close(tempo_audit_writer *w);

typedef struct {
  int direction;          /* TEMPO_AUDIT_UP or TEMPO_AUDIT_DOWN */
  int worker;             /* worker index */
  uint64_t seq;           /* record number, from 0 */
  tempo_msg_header header; /* decoded and validated */
  const uint8_t *payload; /* header.payload_len bytes; valid until the next call */
} tempo_audit_record;

typedef struct tempo_audit_reader tempo_audit_reader;

TEMPO_WUR tempo_status tempo_audit_open(const char *path, tempo_audit_reader **out);
/* Reads the next record; *end true (and OK) at a clean end of file. */
TEMPO_WUR tempo_status tempo_audit_next(tempo_audit_reader *r, tempo_audit_record *rec, bool *end);
void tempo_audit_close(tempo_audit_reader *r); /* NULL is fine */

#ifdef __cplusplus
}
#endif
#endif
