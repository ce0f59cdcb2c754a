/* common.h - small helpers used across the library: an always-on assert for internal
 * invariants, overflow-checked size arithmetic, aligned buffers, a monotonic clock.
 * Data from files, the network or a worker is never checked with TEMPO_ASSERT. */
#ifndef TEMPO_COMMON_H
#define TEMPO_COMMON_H

#include "tempo/status.h"

#ifdef __cplusplus
extern "C" {
#endif

void tempo_assert_fail(const char *expr, const char *file, int line) __attribute__((noreturn));
#define TEMPO_ASSERT(e) ((e) ? (void)0 : tempo_assert_fail(#e, __FILE__, __LINE__))

/* a*b (and a*b*c) into *out; false on overflow. */
static inline bool tempo_mul_size(size_t a, size_t b, size_t *out) { return !__builtin_mul_overflow(a, b, out); }
static inline bool tempo_mul3_size(size_t a, size_t b, size_t c, size_t *out) {
  size_t t;
  return tempo_mul_size(a, b, &t) && tempo_mul_size(t, c, out);
}

/* 64-byte aligned allocation of n floats, zero-filled; NULL on failure or overflow.
 * Free with tempo_free_floats(). */
float *tempo_alloc_floats(size_t n);
void tempo_free_floats(float *p);

/* Makes *bufp (NULL or a tempo_alloc_floats buffer, cast from any pointer type) hold at least
 * `bytes` bytes, 64-byte aligned; *cap counts its bytes. Grow only: a larger buffer replaces
 * the old one, contents not kept. TEMPO_STATUS_NO_MEMORY (*bufp NULL, *cap 0) on failure. */
TEMPO_WUR tempo_status tempo_grow_buffer(void *bufp, size_t *cap, size_t bytes);

/* The index of the first NaN or infinity in a[0..n) (NULL: none), or -1: one multiply-add
 * per element, then a scan only when something is not finite. */
long tempo_floats_find_nonfinite(const float *a, size_t n);

/* Seconds on a monotonic clock. */
double tempo_now(void);

#ifdef __cplusplus
}
#endif
#endif
