/* worker.h - the worker core: what an untrusted worker does with one request.
 *
 * A tempo_worker decodes a request (protocol.h), keeps blinded operands by handle in an
 * operand cache (so the backward pass reuses X' and W' without re-sending them),
 * computes with its backend (CPU: tempo_sgemm / cblas_dgemm in the calling thread; float32,
 * float64 or bfloat16 operands, as the request's dtype says; bfloat16 ones are accumulated
 * in float32 and give float32 results) and encodes the
 * reply. It never sees keys: this module links only the protocol and BLAS, and the
 * separate worker program links it alone. Every request is validated; a bad request
 * (malformed header, unknown handle, shape mismatch, full cache) yields an ERROR reply,
 * never a crash.
 *
 * A BACKWARD request may be a member of a dW' reduction chain (tempo/envelope.h): the
 * worker adds its predecessor's partial dW' sum to its own and passes the sum on
 * (tempo_worker_handle_chain); the transport only moves the bytes.
 *
 * The core has no fault injection: test-only cheating (tempo/worker_fault.h) sits on its
 * hooks, which the shipped worker program never sets. */
#ifndef TEMPO_WORKER_H
#define TEMPO_WORKER_H

#include "tempo/protocol.h"

#ifdef __cplusplus
extern "C" {
#endif

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
  /* The tempo_precision (precision.h) its float32 products really are computed in: 0 = FP32
   * (the CPU backend); the CUDA backend's is its cuBLAS math mode. The worker declares it to
   * the master when it connects, and the master's check holds its results to it. */
  int precision;
  /* The same products on bfloat16 operands (TEMPO_DTYPE_BF16 requests, bf16.h) with float32
   * accumulation and float32 results (the CUDA backend: cublasGemmEx, CUDA_R_16BF inputs,
   * CUBLAS_COMPUTE_32F; the CPU backend: oneDNN's bf16 matmul, tempo_sgemm16); keys name the
   * bfloat16 operands. NULL, or TEMPO_STATUS_UNSUPPORTED from them (with no error set and the
   * outputs to be written again): the worker core widens the operands to float32 in reused
   * buffers (exact) and calls forward / backward. */
  TEMPO_WUR tempo_status (*forward_bf16)(void *ctx, const tempo_gemm_desc *d, const uint16_t *X, uint64_t xkey,
                                         const uint16_t *W, uint64_t wkey, float *Y);
  TEMPO_WUR tempo_status (*backward_bf16)(void *ctx, const tempo_gemm_desc *d, const uint16_t *X, uint64_t xkey,
                                          const uint16_t *W, uint64_t wkey, const uint16_t *dY, float *dX, float *dW);
} tempo_backend;

/* The CPU backend (tempo_sgemm, and cblas_dgemm for float64, in the calling thread; ctx
 * NULL, keys ignored). */
const tempo_backend *tempo_backend_cpu(void);

/* Calls into the core after it computed a result, for test-only fault injection
 * (src/worker/fault.c); NULL members are skipped. Called in the handling thread. */
typedef struct {
  void *ctx;
  /* A FORWARD/BACKWARD result was computed: rh is its header (written to the reply after
   * the call), pay its payload of `count` elements of the result dtype (float32 for a BF16
   * request, tempo_msg_result_size). May change both, clear
   * *send_reply (no reply), or return a failure status (an ERROR reply instead). */
  TEMPO_WUR tempo_status (*result)(void *ctx, tempo_msg_header *rh, void *pay, size_t count, bool *send_reply);
  /* This worker formed the dW' sum of a reduction chain (count elements, float64 when f64
   * else float32, about to be passed on or returned): may change it. */
  void (*sum)(void *ctx, void *sum, size_t count, bool f64);
  /* The transport is about to pass on `len` bytes relayed through this worker (W' of a row
   * split, envelope.h) from its own copy: may change them (true when it did). */
  bool (*relay)(void *ctx, uint8_t *bytes, size_t len);
  /* The reply rh is about to go out: the length of an extra frame the transport sends
   * first, unasked (0: none). */
  uint64_t (*flood)(void *ctx, const tempo_msg_header *rh);
  void (*destroy)(void *ctx); /* at tempo_worker_free or when the hooks are replaced */
} tempo_worker_hooks;

typedef struct {
  uint32_t max_handles;     /* operand cache entries (default 65536) */
  uint64_t max_cache_bytes; /* bytes of owned (copied) operands (default 8 GiB) */
  const tempo_backend *backend; /* NULL = CPU; borrowed: must outlive the worker */
  const tempo_worker_hooks *hooks; /* NULL (production): none; copied, the worker owns ctx
                                    * from tempo_worker_create on (even when it fails) */
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

/* A BACKWARD request's part in a dW' reduction chain (tempo/envelope.h). */
typedef struct {
  bool first; /* no predecessor: nothing to add */
  bool last;  /* no successor: the reply carries the sum as its dW' */
  /* Not first: called once, after this worker computed its own dW' (so the members compute
   * at the same time and only the additions wait on each other); points *data at the
   * predecessor's partial sum, *len bytes of it (untrusted; NULL or 0: none came). want is
   * the byte count a valid partial has, or 0 when this request has no dW' of its own (it
   * failed): the caller should still take, and drop, what the predecessor sends. The bytes
   * must stay valid until tempo_worker_handle_chain returns. */
  void (*take_prev)(void *ctx, size_t want, const uint8_t **data, size_t *len);
  void *ctx;
  /* Not last, out: pass->data[0, pass->len) is the sum to pass on (plain tensor bytes of the
   * request's dtype, no header; grown with realloc, so the caller may take the buffer over);
   * len 0 = an empty partial: the chain is broken (the master's check of the final sum
   * catches it). */
  tempo_msgbuf *pass;
} tempo_worker_chain;

/* Handles a BACKWARD request (batch 1, WANT_DW, float32 or float64; anything else gets an
 * ERROR reply) that is member c of a reduction chain: computes dX'/dW' as tempo_worker_handle
 * does, then sum = prev + own elementwise (the master's order: ((b0 + b1) + b2) ..., so
 * the result is bit for bit what the master would sum). A partial of the wrong length or
 * none counts as broken: nothing is added and an empty partial is passed on. The reply of
 * a member that is not last carries dX' only (an ACK when no dX' was asked); the last
 * one's carries the sum as dW' (its own dW' when the chain broke). Errors as for
 * tempo_worker_handle; on a failure status *pass is empty too. */
TEMPO_WUR tempo_status tempo_worker_handle_chain(tempo_worker *w, const tempo_msg_view *req, tempo_worker_chain *c,
                                                 tempo_msgbuf *reply, bool *send_reply);

/* The compute precision the worker declares (its backend's, tempo_precision). */
int tempo_worker_precision(const tempo_worker *w);

/* Operands currently cached. */
size_t tempo_worker_handle_count(const tempo_worker *w);

/* The hooks in use (NULL: none), and replacing them (the old ctx is destroyed; NULL: none).
 * Only while the worker handles no request. */
const tempo_worker_hooks *tempo_worker_get_hooks(const tempo_worker *w);
void tempo_worker_set_hooks(tempo_worker *w, const tempo_worker_hooks *h);

#ifdef __cplusplus
}
#endif
#endif
