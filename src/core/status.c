/* status.c - status names and thread-local error messages (status.h). */
#include "tempo/status.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char errbuf[512];

const char *tempo_status_str(tempo_status s) {
  switch (s) {
  case TEMPO_STATUS_OK: return "ok";
  case TEMPO_STATUS_INVALID_ARGUMENT: return "invalid argument";
  case TEMPO_STATUS_NO_MEMORY: return "out of memory";
  case TEMPO_STATUS_IO: return "I/O error";
  case TEMPO_STATUS_CORRUPT: return "corrupt data";
  case TEMPO_STATUS_MISMATCH: return "mismatch";
  case TEMPO_STATUS_VERIFY_FAILED: return "verification failed";
  case TEMPO_STATUS_WORKER: return "worker failure";
  case TEMPO_STATUS_UNSUPPORTED: return "unsupported";
  case TEMPO_STATUS_NUMERIC: return "numeric error";
  case TEMPO_STATUS_INTERNAL: return "internal error";
  case TEMPO_STATUS_BAD_RELAY: return "bad relay";
  }
  return "unknown status";
}

tempo_status tempo_set_error(tempo_status s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(errbuf, sizeof errbuf, fmt, ap);
  va_end(ap);
  return s;
}

const char *tempo_errmsg(void) { return errbuf; }
void tempo_clear_error(void) { errbuf[0] = '\0'; }
