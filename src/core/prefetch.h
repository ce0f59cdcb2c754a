/* prefetch.h - software prefetches of one cache line that the compiler keeps. Internal,
 * header-only. GCC 12 at -O2 deletes a loop whose only effect is _mm_prefetch or
 * __builtin_prefetch (mix.c's and mix512.c's row prefetch loops were gone), so these are asm
 * statements; elsewhere they do nothing. A prefetch never faults, so any address will do. */
#ifndef TEMPO_CORE_PREFETCH_H
#define TEMPO_CORE_PREFETCH_H

#if defined(__x86_64__) || defined(__i386__)
static inline void tempo_prefetch_l1(const void *p) { __asm__ volatile("prefetcht0 %0" : : "m"(*(const char *)p)); }
static inline void tempo_prefetch_l2(const void *p) { __asm__ volatile("prefetcht1 %0" : : "m"(*(const char *)p)); }
static inline void tempo_prefetch_w(const void *p) { __asm__ volatile("prefetchw %0" : : "m"(*(const char *)p)); }
#else
static inline void tempo_prefetch_l1(const void *p) { (void)p; }
static inline void tempo_prefetch_l2(const void *p) { (void)p; }
static inline void tempo_prefetch_w(const void *p) { (void)p; }
#endif

#endif
