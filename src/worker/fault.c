/* fault.c - TESTS ONLY: the fault injector (tempo/worker_fault.h) on the worker core's
 * hooks. Linked into libtempo.a and the test-only worker program, never into the shipped
 * tempo-worker. */
#include "tempo/worker_fault.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tempo/common.h"

typedef struct {
  tempo_worker_fault fault;
  long bad_sum_from; /* -1: honest sums */
  uint64_t n_results, n_sums, n_relays, n_acks, n_injected, last_task;
  uint8_t *stale[4]; /* the last honest result payloads of 4 sizes, for TEMPO_FAULT_STALE */
  size_t stale_len[4], stale_cap[4]; /* bytes */
  int stale_next;
} injector;

const char *tempo_fault_name(tempo_fault_kind k) {
  static const char *const names[] = {"none", "wrong-element", "scale", "stale", "zero",
                                      "other-task", "error-reply", "no-reply", "bad-relay", "flood", "late-relay"};
  return (unsigned)k < TEMPO_FAULT_KINDS_ ? names[k] : "?";
}

/* Falsifies a result payload (count elements, float32 or float64 as f64 says) as the
 * fault says; false when it could not (stale with no earlier result of this size), in
 * which case the reply stays honest. */
static bool cheat_payload(injector *in, tempo_msg_header *rh, void *pay, size_t count, bool f64) {
  float *pf = pay;
  double *pd = pay;
  const size_t bytes = count * (f64 ? sizeof(double) : sizeof(float));
  switch (in->fault.kind) {
  case TEMPO_FAULT_WRONG_ELEMENT: {
    if (!count) return false;
    size_t i = (size_t)(rh->task_id * 2654435761u) % count;
    if (f64) pd[i] += 1.0 + 0.5 * fabs(pd[i]);
    else pf[i] += 1.0f + 0.5f * fabsf(pf[i]);
    return true;
  }
  case TEMPO_FAULT_SCALE:
    for (size_t i = 0; i < count; i++) {
      if (f64) pd[i] *= 1.05;
      else pf[i] *= 1.05f;
    }
    return true;
  case TEMPO_FAULT_ZERO: memset(pay, 0, bytes); return true;
  case TEMPO_FAULT_STALE:
    for (int i = 0; i < 4; i++)
      if (in->stale[i] && in->stale_len[i] == bytes) {
        memcpy(pay, in->stale[i], bytes);
        return true;
      }
    return false;
  case TEMPO_FAULT_OTHER_TASK:
    rh->task_id = in->last_task != rh->task_id ? in->last_task : rh->task_id ^ ((uint64_t)1 << 63);
    return true;
  default: return false;
  }
}

static void remember_stale(injector *in, const void *pay, size_t bytes) {
  if (in->fault.kind != TEMPO_FAULT_STALE) return;
  int k = -1;
  for (int i = 0; i < 4 && k < 0; i++)
    if (in->stale[i] && in->stale_len[i] == bytes) k = i;
  if (k < 0) k = in->stale_next++ % 4;
  if (in->stale_cap[k] < bytes) {
    uint8_t *s = realloc(in->stale[k], bytes);
    if (!s) return;
    in->stale[k] = s;
    in->stale_cap[k] = bytes;
  }
  memcpy(in->stale[k], pay, bytes);
  in->stale_len[k] = bytes;
}

/* Whether event number idx of the fault's own kind is one to cheat on. */
static bool due(const tempo_worker_fault *f, uint64_t idx) {
  return idx >= f->start && (idx - f->start) % f->period == 0;
}

/* The result hook: cheats on result request i as the fault says. */
static tempo_status on_result(void *ctx, tempo_msg_header *rh, void *pay, size_t count, bool *send_reply) {
  injector *in = ctx;
  const tempo_worker_fault *fl = &in->fault;
  const uint64_t idx = in->n_results++, task = rh->task_id;
  const bool f64 = rh->dtype == TEMPO_DTYPE_F64;
  const bool cheat = fl->kind != TEMPO_FAULT_NONE && due(fl, idx);
  if (cheat && fl->kind == TEMPO_FAULT_NO_REPLY) {
    in->n_injected++;
    *send_reply = false;
  } else if (cheat && fl->kind == TEMPO_FAULT_ERROR_REPLY) {
    in->n_injected++;
    in->last_task = task;
    return tempo_set_error(TEMPO_STATUS_WORKER, "worker: injected error reply");
  } else if (cheat && cheat_payload(in, rh, pay, count, f64)) {
    in->n_injected++;
  } else {
    remember_stale(in, pay, count * (f64 ? sizeof(double) : sizeof(float)));
  }
  in->last_task = task;
  return TEMPO_STATUS_OK;
}

/* The sum hook: from the bad_sum_from-th sum on, every sum is wrong: scaled by 1.05, which
 * the master's check always sees (one element +1 can hide under the rounding bound when
 * the blinded values are large). */
static void on_sum(void *ctx, void *sum, size_t count, bool f64) {
  injector *in = ctx;
  if (in->bad_sum_from < 0 || in->n_sums++ < (uint64_t)in->bad_sum_from || !count) return;
  for (size_t i = 0; i < count; i++) {
    if (f64) ((double *)sum)[i] *= 1.05;
    else ((float *)sum)[i] *= 1.05f;
  }
  in->n_injected++;
}

/* The relay hook: bad-relay flips one byte of what is passed on (a different one each time);
 * late-relay passes it on 3 s late, unchanged. */
static bool on_relay(void *ctx, uint8_t *bytes, size_t len) {
  injector *in = ctx;
  if (in->fault.kind == TEMPO_FAULT_LATE_RELAY && due(&in->fault, in->n_relays++)) {
    in->n_injected++;
    nanosleep(&(struct timespec){.tv_sec = 3}, NULL);
    return false;
  }
  if (in->fault.kind != TEMPO_FAULT_BAD_RELAY || !len || !due(&in->fault, in->n_relays++)) return false;
  bytes[(size_t)(in->n_relays * 2654435761u) % len] ^= 0x40;
  in->n_injected++;
  return true;
}

/* The flood hook: flood sends a 2 GiB frame nobody asked for before an ACK. */
static uint64_t on_flood(void *ctx, const tempo_msg_header *rh) {
  injector *in = ctx;
  if (in->fault.kind != TEMPO_FAULT_FLOOD || rh->op != TEMPO_OP_ACK || !due(&in->fault, in->n_acks++)) return 0;
  in->n_injected++;
  return TEMPO_MSG_MAX_PAYLOAD;
}

static void destroy(void *ctx) {
  injector *in = ctx;
  for (int i = 0; i < 4; i++) free(in->stale[i]);
  free(in);
}

/* w's injector; installed on first use when create (NULL: out of memory, or none). */
static injector *injector_of(const tempo_worker *w, tempo_worker *install) {
  const tempo_worker_hooks *h = tempo_worker_get_hooks(w);
  if (h && h->result == on_result) return h->ctx;
  if (!install) return NULL;
  injector *in = calloc(1, sizeof *in);
  if (!in) return NULL;
  in->bad_sum_from = -1;
  const tempo_worker_hooks hooks = {.ctx = in, .result = on_result, .sum = on_sum, .relay = on_relay,
                                    .flood = on_flood, .destroy = destroy};
  tempo_worker_set_hooks(install, &hooks);
  return in;
}

void tempo_worker_set_fault(tempo_worker *w, const tempo_worker_fault *f) {
  injector *in = injector_of(w, w);
  if (!in) return;
  in->fault = *f;
  if (in->fault.period == 0) in->fault.period = 1;
}

void tempo_worker_set_bad_sum(tempo_worker *w, long from) {
  injector *in = injector_of(w, w);
  if (in) in->bad_sum_from = from < 0 ? -1 : from;
}

uint64_t tempo_worker_faults_injected(const tempo_worker *w) {
  const injector *in = injector_of(w, NULL);
  return in ? in->n_injected : 0;
}
