/* alloc_hook.c - TESTS ONLY: the counting, failing, tracking allocator of alloc_hook.h, linked
 * into build/tests/test_alloc_fail with -Wl,--wrap (Makefile); never into a shipped binary. */
#include "alloc_hook.h"

#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
int __real_posix_memalign(void **out, size_t align, size_t n);
void *__real_aligned_alloc(size_t align, size_t n);
char *__real_strdup(const char *s);
void __real_free(void *p);

/* Live blocks: open addressing with linear probing and backward-shift deletion. */
#define SLOTS (1u << 18)
#define SITE_DEPTH ALLOC_HOOK_SITES
typedef struct {
  void *p;
  size_t size;
  void *site[SITE_DEPTH];
} slot;
static slot table[SLOTS];
static long live;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static volatile int armed;           /* counting and tracking on */
static volatile int deep;            /* record a backtrace per tracked block */
static _Thread_local int is_counted; /* the thread that armed */
static int every_thread;             /* count and fail on every thread */
static long count, fail_at;
static int injected;
static void *injected_site;

static size_t home(const void *p) {
  uint64_t h = (uint64_t)(uintptr_t)p * 0x9E3779B97F4A7C15ull;
  return (size_t)(h >> 40) & (SLOTS - 1);
}

__attribute__((noinline)) static void track(void *p, size_t size, void *caller) {
  pthread_mutex_lock(&mu);
  if (live + 1 < (long)SLOTS / 2) { /* a full table only loses leak reports, never memory */
    size_t i = home(p);
    while (table[i].p) i = (i + 1) & (SLOTS - 1);
    table[i].p = p;
    table[i].size = size;
    memset(table[i].site, 0, sizeof table[i].site);
    table[i].site[0] = caller;
    live++;
    if (deep) { /* frames 0-1 are track and the wrapper; backtrace does not use the wrapped malloc */
      void *frames[SITE_DEPTH + 2];
      const int n = backtrace(frames, SITE_DEPTH + 2);
      for (int k = 2; k < n; k++) table[i].site[k - 2] = frames[k];
    }
  }
  pthread_mutex_unlock(&mu);
}

static void untrack(void *p) {
  if (!p || !__atomic_load_n(&live, __ATOMIC_RELAXED)) return;
  pthread_mutex_lock(&mu);
  size_t i = home(p);
  while (table[i].p && table[i].p != p) i = (i + 1) & (SLOTS - 1);
  if (table[i].p) {
    live--;
    table[i].p = NULL;
    for (size_t j = (i + 1) & (SLOTS - 1); table[j].p; j = (j + 1) & (SLOTS - 1)) {
      const size_t h = home(table[j].p);
      /* move j into the hole i when its home is not in (i, j] (cyclically) */
      if ((j > i && (h <= i || h > j)) || (j < i && h <= i && h > j)) {
        table[i] = table[j];
        table[j].p = NULL;
        i = j;
      }
    }
  }
  pthread_mutex_unlock(&mu);
}

/* True when this allocation is to fail. */
static int should_fail(void *caller) {
  if (!armed || !(is_counted || every_thread)) return 0;
  if (__atomic_add_fetch(&count, 1, __ATOMIC_SEQ_CST) != fail_at) return 0;
  injected = 1;
  injected_site = caller;
  return 1;
}

void alloc_hook_arm(long n) { alloc_hook_arm_threads(n, 0); }

void alloc_hook_arm_threads(long n, int all) {
  every_thread = all;
  count = 0;
  fail_at = n;
  injected = 0;
  injected_site = NULL;
  is_counted = 1;
  __atomic_store_n(&armed, 1, __ATOMIC_SEQ_CST);
}

void alloc_hook_disarm(void) {
  __atomic_store_n(&armed, 0, __ATOMIC_SEQ_CST);
  is_counted = 0;
}

long alloc_hook_count(void) { return __atomic_load_n(&count, __ATOMIC_SEQ_CST); }
int alloc_hook_injected(void) { return injected; }
void *alloc_hook_injected_site(void) { return injected_site; }

void alloc_hook_backtraces(int on) {
  if (on) { /* the first backtrace() loads libgcc_s (mallocs): do it outside the hook's lock */
    void *f[2];
    backtrace(f, 2);
  }
  deep = on;
}

long alloc_hook_live(void **sites, size_t *first_size) {
  pthread_mutex_lock(&mu);
  const long n = live;
  if (sites) memset(sites, 0, ALLOC_HOOK_SITES * sizeof *sites);
  for (size_t i = 0; n && sites && i < SLOTS; i++)
    if (table[i].p) {
      memcpy(sites, table[i].site, sizeof table[i].site);
      if (first_size) *first_size = table[i].size;
      break;
    }
  pthread_mutex_unlock(&mu);
  return n;
}

void alloc_hook_forget(void) {
  pthread_mutex_lock(&mu);
  memset(table, 0, sizeof table);
  live = 0;
  pthread_mutex_unlock(&mu);
}

void alloc_hook_describe(const void *site, char *buf, size_t len) {
  Dl_info info;
  if (site && dladdr(site, &info) && info.dli_fname) {
    const char *base = strrchr(info.dli_fname, '/');
    snprintf(buf, len, "%s+0x%lx%s%s", base ? base + 1 : info.dli_fname,
             (unsigned long)((uintptr_t)site - (uintptr_t)info.dli_fbase), info.dli_sname ? " " : "",
             info.dli_sname ? info.dli_sname : "");
  } else {
    snprintf(buf, len, "%p", site);
  }
}

#define CALLER __builtin_extract_return_addr(__builtin_return_address(0))

void *__wrap_malloc(size_t n) {
  void *caller = CALLER;
  if (should_fail(caller)) return errno = ENOMEM, NULL;
  void *p = __real_malloc(n);
  if (p && armed) track(p, n, caller);
  return p;
}

void *__wrap_calloc(size_t n, size_t size) {
  void *caller = CALLER;
  if (should_fail(caller)) return errno = ENOMEM, NULL;
  void *p = __real_calloc(n, size);
  if (p && armed) track(p, n * size, caller);
  return p;
}

void *__wrap_realloc(void *old, size_t n) {
  void *caller = CALLER;
  if (should_fail(caller)) return errno = ENOMEM, NULL; /* old stays valid, as realloc's does */
  void *p = __real_realloc(old, n);
  if (p || n == 0) untrack(old);
  if (p && armed) track(p, n, caller);
  return p;
}

int __wrap_posix_memalign(void **out, size_t align, size_t n) {
  void *caller = CALLER;
  if (should_fail(caller)) return ENOMEM;
  const int rc = __real_posix_memalign(out, align, n);
  if (rc == 0 && armed) track(*out, n, caller);
  return rc;
}

void *__wrap_aligned_alloc(size_t align, size_t n) {
  void *caller = CALLER;
  if (should_fail(caller)) return errno = ENOMEM, NULL;
  void *p = __real_aligned_alloc(align, n);
  if (p && armed) track(p, n, caller);
  return p;
}

char *__wrap_strdup(const char *s) {
  void *caller = CALLER;
  if (should_fail(caller)) return errno = ENOMEM, NULL;
  char *p = __real_strdup(s);
  if (p && armed) track(p, strlen(s) + 1, caller);
  return p;
}

void __wrap_free(void *p) {
  if (p) untrack(p);
  __real_free(p);
}
