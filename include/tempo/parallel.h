/* parallel.h - a tiny persistent thread pool for the master's own passes (the GEMM split of
 * tempo_sgemm, element-wise layer passes). One process-wide pool; helpers sleep on a condition
 * variable between jobs (no spinning: on a loaded 2-core machine a spinning helper takes the
 * core the caller needs).
 *
 * tempo_parallel_for(tasks, fn, arg) runs fn(arg, t) for every t in [0, tasks), on the caller
 * and up to threads-1 helpers, and returns when all are done. Tasks must write disjoint data.
 * A call made while the pool is busy (from a helper, or from another thread at the same time)
 * runs its tasks serially on the caller, so nesting and concurrent callers are safe. */
#ifndef TEMPO_PARALLEL_H
#define TEMPO_PARALLEL_H

#ifdef __cplusplus
extern "C" {
#endif

/* Threads of the pool, caller included: 1..64 (clamped). 1 (the default) runs everything on
 * the caller. Helpers are started on the first parallel call after this. */
void tempo_parallel_set_threads(int threads);
int tempo_parallel_threads(void);

void tempo_parallel_for(int tasks, void (*fn)(void *arg, int task), void *arg);

#ifdef __cplusplus
}
#endif
#endif
