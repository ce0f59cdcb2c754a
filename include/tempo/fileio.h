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
/* Creates a directory (and parents) if missing. */
TEMPO_WUR tempo_status tempo_mkdir_p(const char *path);

#ifdef __cplusplus
}
#endif
#endif
