/* sigblock.h - blocking the asynchronous signals on the calling thread around a call that must
 * not take one: oneDNN 2.x's JIT kernels point rsp into a heap workspace (oneDNN issue #4845,
 * fixed upstream by PR #4855 in 2026; Debian 12 ships 2.6.3), so a signal handled on a thread
 * inside one writes its frame into the heap and a later free() aborts (a Ctrl-C during training
 * did). Such a signal waits until the call returns; one sent to the process goes to a thread not
 * in a call. Synchronous signals (faults, abort) stay deliverable. Two rt_sigprocmask calls
 * (0.5 us here). */
#ifndef TEMPO_CORE_SIGBLOCK_H
#define TEMPO_CORE_SIGBLOCK_H

#include <pthread.h>
#include <signal.h>
#include <stddef.h>

/* Blocks them; *old receives the mask to restore with tempo_async_signals_restore. */
static inline void tempo_async_signals_block(sigset_t *old) {
  sigset_t async;
  sigfillset(&async);
  static const int sync_sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGABRT, SIGSYS};
  for (size_t i = 0; i < sizeof sync_sigs / sizeof sync_sigs[0]; i++) sigdelset(&async, sync_sigs[i]);
  pthread_sigmask(SIG_BLOCK, &async, old);
}

static inline void tempo_async_signals_restore(const sigset_t *old) { pthread_sigmask(SIG_SETMASK, old, NULL); }

#endif
