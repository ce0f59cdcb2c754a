/* common.c - the always-on assert, aligned buffers and the monotonic clock (common.h). */
#define _POSIX_C_SOURCE 200809L
#include "tempo/common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

long tempo_floats_find_nonfinite(const float *a, size_t n) {
  float acc = 0.0f;
  for (size_t i = 0; a && i < n; i++) acc += a[i] * 0.0f; /* NaN iff some a[i] is NaN or infinite */
  if (acc == 0.0f) return -1;
  for (size_t i = 0; i < n; i++)
    if (!isfinite(a[i])) return (long)i;
  return -1;
}

tempo_status tempo_grow_buffer(void *bufp, size_t *cap, size_t bytes) {
  float **buf = bufp;
  if (*buf && *cap >= bytes) return TEMPO_STATUS_OK;
  tempo_free_floats(*buf);
  *buf = tempo_alloc_floats(bytes / sizeof(float) + 1);
  *cap = *buf ? bytes : 0;
  return *buf ? TEMPO_STATUS_OK : tempo_set_error(TEMPO_STATUS_NO_MEMORY, "out of memory for %zu bytes", bytes);
}

double tempo_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
