/* parallel.c - the persistent pool of parallel.h. A job is (fn, arg, tasks); tasks are taken
 * from an atomic counter by the caller and the helpers; a generation counter wakes the helpers
 * and a done counter tells the caller when the last task finished. */
#include "tempo/parallel.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define POOL_MAX 64

static struct {
  pthread_mutex_t run;  /* held by the caller of a parallel job: one job at a time */
  pthread_mutex_t lock; /* guards the fields below and the condition variables */
  pthread_cond_t wake, done;
  int want;             /* threads wanted, caller included */
  int started;          /* helpers running */
  unsigned long gen;    /* job generation */
  void (*fn)(void *, int);
  void *arg;
  int tasks;
  atomic_int next;      /* next task to take */
  int finished;         /* helpers done with the current job */
  int joined;           /* helpers taking part in the current job */
} pool = {.run = PTHREAD_MUTEX_INITIALIZER, .lock = PTHREAD_MUTEX_INITIALIZER,
          .wake = PTHREAD_COND_INITIALIZER, .done = PTHREAD_COND_INITIALIZER, .want = 1};

static void take_tasks(void (*fn)(void *, int), void *arg, int tasks) {
  for (int t; (t = atomic_fetch_add(&pool.next, 1)) < tasks;) fn(arg, t);
}

/* gen0: the generation when the helper was created (under the lock, before the job that
 * created it was published), so it cannot miss that job. */
static void *helper(void *gen0) {
  pthread_mutex_lock(&pool.lock);
  unsigned long seen = (unsigned long)(uintptr_t)gen0;
  for (;;) {
    while (pool.gen == seen) pthread_cond_wait(&pool.wake, &pool.lock);
    seen = pool.gen;
    void (*fn)(void *, int) = pool.fn;
    void *arg = pool.arg;
    const int tasks = pool.tasks;
    pthread_mutex_unlock(&pool.lock);
    take_tasks(fn, arg, tasks);
    pthread_mutex_lock(&pool.lock);
    if (++pool.finished == pool.joined) pthread_cond_signal(&pool.done);
  }
  return NULL;
}

void tempo_parallel_set_threads(int threads) {
  if (threads < 1) threads = 1;
  if (threads > POOL_MAX) threads = POOL_MAX;
  pthread_mutex_lock(&pool.lock);
  pool.want = threads;
  pthread_mutex_unlock(&pool.lock);
}

int tempo_parallel_threads(void) {
  pthread_mutex_lock(&pool.lock);
  const int t = pool.want;
  pthread_mutex_unlock(&pool.lock);
  return t;
}

void tempo_parallel_for(int tasks, void (*fn)(void *arg, int task), void *arg) {
  if (tasks <= 0) return;
  if (tasks == 1 || pthread_mutex_trylock(&pool.run) != 0) {
    for (int t = 0; t < tasks; t++) fn(arg, t);
    return;
  }
  pthread_mutex_lock(&pool.lock);
  /* helpers only ever grow in number (after lowering the count, the extra ones still take tasks) */
  while (pool.started < pool.want - 1) {
    pthread_t th;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    const int rc = pthread_create(&th, &at, helper, (void *)(uintptr_t)pool.gen);
    pthread_attr_destroy(&at);
    if (rc != 0) break; /* fewer helpers: the caller does more of the tasks */
    pool.started++;
  }
  const int helpers = pool.want - 1 < pool.started ? pool.want - 1 : pool.started;
  if (helpers <= 0) {
    pthread_mutex_unlock(&pool.lock);
    pthread_mutex_unlock(&pool.run);
    for (int t = 0; t < tasks; t++) fn(arg, t);
    return;
  }
  pool.fn = fn;
  pool.arg = arg;
  pool.tasks = tasks;
  atomic_store(&pool.next, 0);
  pool.finished = 0;
  pool.joined = pool.started; /* every started helper wakes and reports, even with no task left */
  pool.gen++;
  pthread_cond_broadcast(&pool.wake);
  pthread_mutex_unlock(&pool.lock);
  take_tasks(fn, arg, tasks);
  pthread_mutex_lock(&pool.lock);
  while (pool.finished < pool.joined) pthread_cond_wait(&pool.done, &pool.lock);
  pthread_mutex_unlock(&pool.lock);
  pthread_mutex_unlock(&pool.run);
}
