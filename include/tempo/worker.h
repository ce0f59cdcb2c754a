/* worker.h - the worker core: what an untrusted worker does with one request.
 *
 * A tempo_worker decodes a request (protocol.h), keeps blinded operands by handle in an
 * operand cache (so the backward pass reuses X' and W' without re-sending them),
 * computes with its backend (CPU: tempo_sgemm / cblas_dgemm in the calling thread; float32
 * or float64 operands, as the request's dtype says) and encodes the
 * reply. It never sees keys: this module links only the protocol and BLAS, and the
 * separate worker program links it alone. Every request is validated; a bad request
 * (malformed header, unknown handle, shape mismatch, full cache) yields an ERROR reply,
 * never a crash.
 *
 * Fault injection (tests only): a worker can be told to cheat on its result requests
 * (FORWARD/BACKWARD), numbered 0, 1, ... on that worker: it cheats on request i when
 * i >= start and (i - start) % period == 0. */
#ifndef TEMPO_WORKER_H
#define TEMPO_WORKER_H

#include "tempo/protocol.h"

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
  TEMPO_FAULT_COUNT_,
} tempo_fault_kind;

typedef struct {
  tempo_fault_kind kind;
  uint32_t start;  /* first result request to cheat on */
  uint32_t period; /* cheat every `period` requests from there (>= 1) */
} tempo_worker_fault;

const char *tempo_fault_name(tempo_fault_kind k);

/* One split's GEMM dimensions: `cnt` instances of X (rows, n), W (n, p) or stored (p, n)
 * with w_trans, Y/dY (rows, p); all tensors of an instance back to back. */
typedef struct {
  int cnt, rows, n, p;
  bool w_trans;
} tempo_gemm_desc;

/* A GEMM backend (CPU: cblas_sgemm; CUDA: src/cuda, cuBLAS). xkey/wkey != 0 say the
 * operand is in the worker's operand cache under that key until forget(key): a backend
 * may keep its own copy (device memory) and reuse it in later calls with the same key
 * instead of the host pointer's bytes. Every call fills its outputs completely (Y; dX
 * and/or dW, NULL = not wanted) or returns a failure status (with tempo_set_error). */
typedef struct {
  const char *name;
  void *ctx;
  TEMPO_WUR tempo_status (*forward)(void *ctx, const tempo_gemm_desc *d, const float *X, uint64_t xkey,
                                    const float *W, uint64_t wkey, float *Y);
  TEMPO_WUR tempo_status (*backward)(void *ctx, const tempo_gemm_desc *d, const float *X, uint64_t xkey,
                                     const float *W, uint64_t wkey, const float *dY, float *dX, float *dW);
  void (*forget)(void *ctx, uint64_t key); /* key 0: every key */
  void (*destroy)(void *ctx);              /* frees ctx (not the struct) */
  /* The same products on float64 operands (TEMPO_DTYPE_F64 requests: shield mode's shares,
   * docs/shield.md), with identical semantics; NULL = the backend has no float64 GEMM (the
   * worker then answers such requests with an UNSUPPORTED error). Keys name float64
   * operands here (a handle holds one operand of one dtype). */
  TEMPO_WUR tempo_status (*forward64)(void *ctx, const tempo_gemm_desc *d, const double *X, uint64_t xkey,
                                      const double *W, uint64_t wkey, double *Y);
  TEMPO_WUR tempo_status (*backward64)(void *ctx, const tempo_gemm_desc *d, const double *X, uint64_t xkey,
                                       const double *W, uint64_t wkey, const double *dY, double *dX, double *dW);
} tempo_backend;

/* The CPU backend (tempo_sgemm, and cblas_dgemm for float64, in the calling thread; ctx
 * NULL, keys ignored). */
const tempo_backend *tempo_backend_cpu(void);

typedef struct {
  uint32_t max_handles;     /* operand cache entries (default 65536) */
  uint64_t max_cache_bytes; /* bytes of owned (copied) operands (default 8 GiB) */
  const tempo_backend *backend; /* NULL = CPU; borrowed: must outlive the worker */
} tempo_worker_config;

void tempo_worker_config_default(tempo_worker_config *cfg);

typedef struct tempo_worker tempo_worker;

TEMPO_WUR tempo_status tempo_worker_create(const tempo_worker_config *cfg, tempo_worker **out);
void tempo_worker_free(tempo_worker *w); /* NULL is fine */

/* A received request: the 80 header bytes and the payload as `nseg` segments that
 * together are the payload bytes in order (a network receive gives one segment).
 * stable: the segments stay valid and unchanged until the handles stored from them are
 * released (the in-process transport guarantees it), so the cache may keep pointers
 * instead of copies. */
typedef struct {
  const uint8_t *header;
  int nseg;
  const uint8_t *seg[4];
  size_t seg_len[4];
  bool stable;
} tempo_msg_view;

/* Handles one request and encodes the reply into *reply (reused across calls; owned by
 * the caller). *send_reply is false when no reply must be sent (injected stall).
 * Returns OK whenever a reply (possibly an ERROR reply) was produced; a failure status
 * only when not even an ERROR reply could be encoded (out of memory). */
TEMPO_WUR tempo_status tempo_worker_handle(tempo_worker *w, const tempo_msg_view *req, tempo_msgbuf *reply,
                                           bool *send_reply);

/* The same for a contiguous received message (header + payload); not stable. */
TEMPO_WUR tempo_status tempo_worker_handle_buf(tempo_worker *w, const uint8_t *msg, size_t len,
                                               tempo_msgbuf *reply, bool *send_reply);

/* Operands currently cached. */
size_t tempo_worker_handle_count(const tempo_worker *w);

/* Test-only: cheat as described above (kind NONE turns it off). */
void tempo_worker_set_fault(tempo_worker *w, const tempo_worker_fault *f);
/* How many replies were actually falsified so far. */
uint64_t tempo_worker_faults_injected(const tempo_worker *w);

#ifdef __cplusplus
}
#endif
#endif
