/* status.h - status codes and error messages shared by every Tempo module.
 *
 * Library functions return a tempo_status (0 = success, negative = failure). The
 * function that fails first records a one-line human message with tempo_set_error();
 * callers read it with tempo_errmsg(). The message is thread-local, so worker
 * threads do not overwrite the master's message. */
#ifndef TEMPO_STATUS_H
#define TEMPO_STATUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define TEMPO_WUR __attribute__((warn_unused_result))
#define TEMPO_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define TEMPO_WUR
#define TEMPO_PRINTF(a, b)
#endif

typedef enum {
  TEMPO_STATUS_OK = 0,
  TEMPO_STATUS_INVALID_ARGUMENT = -1, /* a caller passed a bad value (usage error) */
  TEMPO_STATUS_NO_MEMORY = -2,        /* an allocation failed or a size overflowed */
  TEMPO_STATUS_IO = -3,               /* a file could not be opened, read or written */
  TEMPO_STATUS_CORRUPT = -4,          /* a file or message is malformed, truncated or fails its checksum */
  TEMPO_STATUS_MISMATCH = -5,         /* well-formed input that does not fit (wrong model, shape) */
  TEMPO_STATUS_VERIFY_FAILED = -6,    /* a worker's result failed the integrity check */
  TEMPO_STATUS_WORKER = -7,           /* a worker died, stalled, or no worker is left */
  TEMPO_STATUS_UNSUPPORTED = -8,      /* the feature is not built in or not available here */
  TEMPO_STATUS_NUMERIC = -9,          /* a value became NaN or infinite */
  TEMPO_STATUS_INTERNAL = -10,        /* a broken invariant (a bug) */
  TEMPO_STATUS_BAD_RELAY = -11,       /* bytes another worker relayed failed their authenticator, were
                                       * empty or never came (an ERROR reply's code: the master blames
                                       * the relayer, not the receiver; docs/protocol.md) */
} tempo_status;

/* A static, human-readable name for a status ("ok", "I/O error", ...). */
const char *tempo_status_str(tempo_status s);

/* Records the thread's last error message and returns s, so callers can write
 * `return tempo_set_error(TEMPO_STATUS_IO, "cannot open %s: %s", path, strerror(errno));` */
tempo_status tempo_set_error(tempo_status s, const char *fmt, ...) TEMPO_PRINTF(2, 3);

/* The calling thread's last error message (never NULL; "" when none was set). */
const char *tempo_errmsg(void);

/* Clears the calling thread's error message. */
void tempo_clear_error(void);

#ifdef __cplusplus
}
#endif
#endif
