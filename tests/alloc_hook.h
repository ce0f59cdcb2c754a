/* alloc_hook.h - TESTS ONLY: a counting allocator for allocation-failure injection
 * (tests/test_alloc_fail.c), SQLite style.
 *
 * tests/alloc_hook.c defines __wrap_malloc, __wrap_calloc, __wrap_realloc, __wrap_posix_memalign,
 * __wrap_aligned_alloc, __wrap_strdup and __wrap_free; the Makefile links ONLY test_alloc_fail with
 * -Wl,--wrap=... for them, so every allocation of the statically linked library code (libtempo.a)
 * and of the test goes through the hook, and nothing shipped carries it. Allocations inside shared
 * libraries (libc internals, OpenBLAS, libsodium, oneDNN) are not seen.
 *
 * While armed the hook
 *   - counts the allocations made on the thread that armed it (the master), and fails the
 *     fail_at-th of them (1-based; 0 = never) once: it returns NULL (ENOMEM) and remembers the
 *     caller's address;
 *   - tracks every live block allocated while armed, on any thread (the in-process worker threads
 *     too), so alloc_hook_live() after a run has freed everything is its leak count.
 * Thread-safe (one mutex); the table is static (the hook never allocates). */
#ifndef TEMPO_TESTS_ALLOC_HOOK_H
#define TEMPO_TESTS_ALLOC_HOOK_H

#include <stddef.h>

/* Starts counting on the calling thread and tracking on all threads; fail_at = 0: count only. */
void alloc_hook_arm(long fail_at);
/* As alloc_hook_arm; with all set, counts and fails the allocations of every thread (the
 * in-process workers too: which one is the n-th then depends on the threads' timing). */
void alloc_hook_arm_threads(long fail_at, int all);
/* Stops counting and failing; tracked blocks stay tracked (their frees still remove them). */
void alloc_hook_disarm(void);
/* Allocations counted on the arming thread since the last arm. */
long alloc_hook_count(void);
/* Whether the fail_at-th allocation was reached (and failed) since the last arm. */
int alloc_hook_injected(void);
/* The return address of the failed allocation's caller (NULL if none). */
void *alloc_hook_injected_site(void);
/* Blocks allocated while armed and not yet freed; with sites set, one of them: sites[0] its
 * allocation's caller (and, with backtraces on, its callers' callers in sites[1..]), *first_size its size. */
#define ALLOC_HOOK_SITES 8
long alloc_hook_live(void **sites, size_t *first_size);
/* Records a backtrace for every tracked block from now on (slow: for diagnosing a leak). */
void alloc_hook_backtraces(int on);
/* Forgets every tracked block (after a leak was reported, so the next run starts at zero). */
void alloc_hook_forget(void);
/* Writes "name+0xOFFSET" (the object file and offset of a code address, for addr2line) into buf. */
void alloc_hook_describe(const void *site, char *buf, size_t len);

#endif
