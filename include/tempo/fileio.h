/* fileio.h - whole-file reads with a size cap, and atomic writes (temp file in the same
 * folder, fsync, rename, fsync of the folder), so a crash mid-write never loses the
 * older file. Errors name the path. */
#ifndef TEMPO_FILEIO_H
#define TEMPO_FILEIO_H

#include "tempo/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Reads all of path into a malloc'ed buffer (*out, *len; caller frees). Files larger
 * than max_len give TEMPO_STATUS_CORRUPT; missing/unreadable files TEMPO_STATUS_IO. */
TEMPO_WUR tempo_status tempo_read_file(const char *path, size_t max_len, uint8_t **out, size_t *len);
/* Writes the concatenation of n parts atomically to path. */
TEMPO_WUR tempo_status tempo_write_file_atomic(const char *path, const void *const *parts, const size_t *lens,
                                               int n);
/* Streaming atomic writes, for writers that produce a file piece by piece:
 * tempo_atomic_open creates a temp file beside path (mode 0600, not following links;
 * tmp receives its name, cap bytes), tempo_write_all writes to it (naming path in errors),
 * and tempo_atomic_finish syncs, closes and renames it over path when st is OK, or closes
 * and removes it otherwise, returning the first error. */
TEMPO_WUR tempo_status tempo_atomic_open(const char *path, char *tmp, size_t cap, int *fd);
TEMPO_WUR tempo_status tempo_write_all(int fd, const void *buf, size_t n, const char *path);
TEMPO_WUR tempo_status tempo_atomic_finish(int fd, const char *tmp, const char *path, tempo_status st);

/* Creates a directory (and parents) if missing. */
TEMPO_WUR tempo_status tempo_mkdir_p(const char *path);

#ifdef __cplusplus
}
#endif
#endif
