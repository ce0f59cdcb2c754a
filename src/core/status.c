/* status.c - status names, thread-local error messages, the always-on assert, small utilities. */
#define _POSIX_C_SOURCE 200809L
#include "tempo/common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

void tempo_assert_fail(const char *expr, const char *file, int line) {
  fprintf(stderr, "tempo: internal assertion failed at %s:%d: %s\n", file, line, expr);
  abort();
}

float *tempo_alloc_floats(size_t n) {
  size_t bytes;
  if (!tempo_mul_size(n ? n : 1, sizeof(float), &bytes)) return NULL;
  bytes = (bytes + 63) & ~(size_t)63;
  float *p = aligned_alloc(64, bytes);
  if (p) memset(p, 0, bytes);
  return p;
}

void tempo_free_floats(float *p) { free(p); }

double tempo_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
