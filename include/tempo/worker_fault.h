/* worker_fault.h - TESTS ONLY: a worker that cheats (src/worker/fault.c).
 *
 * The fault injector sits on the worker core's hooks (worker.h, tempo_worker_hooks): the
 * core computes honestly, then the injector falsifies what the fault says. It is linked
 * into libtempo.a (the in-process transport's test hooks use it) and into the test-only
 * worker program build/tests/tempo-worker-faulty, never into the shipped tempo-worker
 * (tests/test_worker_program.sh checks with nm).
 *
 * A worker cheats on its result requests (FORWARD/BACKWARD), numbered 0, 1, ... on that
 * worker from when the fault is first set (the tests set it before the first request): on
 * request i when i >= start and (i - start) % period == 0 (bad-relay and flood number the
 * relays it passes on and the ACKs it sends instead). Separately it can
 * corrupt the dW' sums it forms in reduction chains (worker.h, tempo_worker_handle_chain). */
#ifndef TEMPO_WORKER_FAULT_H
#define TEMPO_WORKER_FAULT_H

#include "tempo/worker.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  TEMPO_FAULT_NONE = 0,
  TEMPO_FAULT_WRONG_ELEMENT, /* one element of the result changed */
  TEMPO_FAULT_SCALE,         /* the whole result scaled by 1.05 */
  TEMPO_FAULT_STALE,         /* an earlier task's result of the same size replayed */
  TEMPO_FAULT_ZERO,          /* a zero result */
  TEMPO_FAULT_OTHER_TASK,    /* the reply carries another task's id */
  TEMPO_FAULT_ERROR_REPLY,   /* an ERROR reply instead of the result */
  TEMPO_FAULT_NO_REPLY,      /* no reply at all (a stall) */
  TEMPO_FAULT_COUNT_,        /* the kinds above cheat on results; those below count their own events */
  TEMPO_FAULT_BAD_RELAY = TEMPO_FAULT_COUNT_, /* one byte of each W' it relays on flipped (results honest) */
  TEMPO_FAULT_FLOOD,         /* an unasked 2 GiB garbage frame before each ACK (MPI; results honest) */
  TEMPO_FAULT_LATE_RELAY,    /* each W' it relays on passed on 3 s late (an honest but slow relayer) */
  TEMPO_FAULT_KINDS_,
} tempo_fault_kind;

typedef struct {
  tempo_fault_kind kind;
  uint32_t start;  /* first result request to cheat on */
  uint32_t period; /* cheat every `period` requests from there (>= 1) */
} tempo_worker_fault;

const char *tempo_fault_name(tempo_fault_kind k);

/* Cheat as described above (kind NONE turns it off). Installs the injector on w's hooks
 * (replacing any others) the first time; call only while w handles no request. Out of
 * memory for the injector (a few hundred bytes) leaves w honest. */
void tempo_worker_set_fault(tempo_worker *w, const tempo_worker_fault *f);
/* From the from-th dW' sum this worker forms in a reduction chain on (counting from 0),
 * every sum it passes on or returns is wrong (scaled by 1.05); -1 turns it off. */
void tempo_worker_set_bad_sum(tempo_worker *w, long from);
/* How many replies or sums were actually falsified so far (0 without an injector). */
uint64_t tempo_worker_faults_injected(const tempo_worker *w);

#ifdef __cplusplus
}
#endif
#endif
