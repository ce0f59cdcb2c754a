/* test_worker.c - the worker core by itself: STORE / FORWARD / BACKWARD / RELEASE by
 * handle against a naive reference, bad requests (unknown handle, wrong shape,
 * malformed bytes, segmented payloads) answered with ERROR replies, fault injection,
 * float64 requests (test_f64), and a dW' reduction chain run through three worker cores
 * (test_chain: the sum bit for bit the master's, broken partials, refused requests). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tempo/worker.h"
#include "tempo/worker_fault.h"

/* Y (m, p) = X (m, n) . W, W (n, p) or stored (p, n) with wt */
static void ref_mm(int m, int n, int p, const float *X, const float *W, bool wt, float *Y) {
  for (int i = 0; i < m; i++)
    for (int j = 0; j < p; j++) {
      double s = 0;
      for (int k = 0; k < n; k++) s += (double)X[i * n + k] * W[wt ? j * n + k : k * p + j];
      Y[i * p + j] = (float)s;
    }
}

static void fill(float *a, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i++) a[i] = (float)(((i * 2654435761u + seed * 97u) % 1000u) / 500.0 - 1.0);
}

static void assert_close(const float *a, const float *b, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (fabsf(a[i] - b[i]) > 1e-4f * (1.0f + fabsf(b[i]))) fail_msg("element %zu: %g vs %g", i, a[i], b[i]);
}

/* Sends a message (header + segments, contiguous) and decodes the reply. */
static void call(tempo_worker *w, tempo_msg_header *h, int nseg, const void *const *seg, const size_t *len,
                 tempo_msgbuf *req, tempo_msgbuf *rep, tempo_msg_header *rh, const float **out) {
  assert_int_equal(tempo_msg_encode(req, h, nseg, seg, len), TEMPO_STATUS_OK);
  bool send;
  assert_int_equal(tempo_worker_handle_buf(w, req->data, req->len, rep, &send), TEMPO_STATUS_OK);
  assert_true(send);
  const uint8_t *pay;
  assert_int_equal(tempo_msg_decode(rep->data, rep->len, rh, &pay), TEMPO_STATUS_OK);
  assert_int_equal(rh->task_id, h->task_id);
  *out = (const float *)pay;
}

static void test_store_forward_backward_release(void **state) {
  (void)state;
  enum { M = 7, N = 13, P = 5 };
  for (int wt = 0; wt < 2; wt++) {
    tempo_worker *w;
    assert_int_equal(tempo_worker_create(NULL, &w), TEMPO_STATUS_OK);
    float X[M * N], W[N * P], dY[M * P], ref[M * N], WT[P * N], XT[N * M];
    fill(X, M * N, 1), fill(W, N * P, 2), fill(dY, M * P, 3);
    tempo_msgbuf req = {0}, rep = {0};
    tempo_msg_header h, rh;
    const float *out;
    /* FORWARD rows [2, 6) with both operands inline and KEEP */
    tempo_msg_header_init(&h, TEMPO_OP_FORWARD);
    h.task_id = 1, h.handle_x = 10, h.handle_w = 11;
    h.batch = 1, h.m = M, h.n = N, h.p = P, h.lo = 2, h.hi = 6;
    h.flags = TEMPO_MSG_F_X_INLINE | TEMPO_MSG_F_W_INLINE | TEMPO_MSG_F_KEEP | (wt ? TEMPO_MSG_F_W_TRANS : 0);
    const void *seg[2] = {X + 2 * N, W};
    size_t len[2] = {4 * N * sizeof(float), sizeof W};
    call(w, &h, 2, seg, len, &req, &rep, &rh, &out);
    assert_int_equal(rh.op, TEMPO_OP_RESULT);
    assert_true(rh.compute_ns > 0);
    ref_mm(4, N, P, X + 2 * N, W, wt, ref);
    assert_close(out, ref, 4 * P);
    assert_int_equal(tempo_worker_handle_count(w), 2);
    /* BACKWARD by handle: dX' = dY W^T, dW' = X^T dY for rows [2, 6) */
    tempo_msg_header_init(&h, TEMPO_OP_BACKWARD);
    h.task_id = 2, h.handle_x = 10, h.handle_w = 11;
    h.batch = 1, h.m = M, h.n = N, h.p = P, h.lo = 2, h.hi = 6;
    h.flags = TEMPO_MSG_F_WANT_DX | TEMPO_MSG_F_WANT_DW | (wt ? TEMPO_MSG_F_W_TRANS : 0);
    const void *bseg[1] = {dY + 2 * P};
    size_t blen[1] = {4 * P * sizeof(float)};
    call(w, &h, 1, bseg, blen, &req, &rep, &rh, &out);
    assert_int_equal(rh.op, TEMPO_OP_RESULT);
    assert_int_equal(rh.flags, h.flags);
    /* reference dX (4, N) = dY_blk (4, P) . W^T : W^T as stored (P, N) */
    for (int i = 0; i < N; i++)
      for (int j = 0; j < P; j++) WT[j * N + i] = W[wt ? j * N + i : i * P + j];
    (void)WT;
    ref_mm(4, P, N, dY + 2 * P, W, !wt, ref);
    assert_close(out, ref, 4 * N);
    /* dW (N, P) = X_blk^T (N, 4) . dY_blk (4, P), or its transpose when stored */
    for (int i = 0; i < 4; i++)
      for (int k = 0; k < N; k++) XT[k * 4 + i] = X[(2 + i) * N + k];
    float dw[N * P];
    ref_mm(N, 4, P, XT, dY + 2 * P, false, dw);
    if (wt) {
      for (int i = 0; i < N; i++)
        for (int j = 0; j < P; j++) ref[j * N + i] = dw[i * P + j];
      assert_close(out + 4 * N, ref, N * P);
    } else {
      assert_close(out + 4 * N, dw, N * P);
    }
    /* unknown handle: an ERROR reply, no crash */
    h.task_id = 3, h.handle_x = 99;
    call(w, &h, 1, bseg, blen, &req, &rep, &rh, &out);
    assert_int_equal(rh.op, TEMPO_OP_ERROR);
    assert_int_equal(rh.code, -TEMPO_STATUS_MISMATCH);
    /* known handle, other split: refused */
    h.task_id = 4, h.handle_x = 10, h.lo = 1, h.hi = 5;
    call(w, &h, 1, bseg, blen, &req, &rep, &rh, &out);
    assert_int_equal(rh.op, TEMPO_OP_ERROR);
    /* RELEASE one handle, then the other via ALL */
    tempo_msg_header_init(&h, TEMPO_OP_RELEASE);
    h.task_id = 5, h.handle_x = 10;
    call(w, &h, 0, NULL, NULL, &req, &rep, &rh, &out);
    assert_int_equal(rh.op, TEMPO_OP_ACK);
    assert_int_equal(tempo_worker_handle_count(w), 1);
    h.task_id = 6, h.handle_x = 0, h.flags = TEMPO_MSG_F_RELEASE_ALL;
    call(w, &h, 0, NULL, NULL, &req, &rep, &rh, &out);
    assert_int_equal(tempo_worker_handle_count(w), 0);
    tempo_msgbuf_free(&req);
    tempo_msgbuf_free(&rep);
    tempo_worker_free(w);
  }
}

/* STORE, then FORWARD by handle over a batch split; a segmented (in-process style)
 * request whose tensor straddles segments is gathered correctly. */
static void test_store_batch_and_segments(void **state) {
  (void)state;
  enum { B = 3, M = 2, N = 3, P = 4 };
  tempo_worker *w;
  assert_int_equal(tempo_worker_create(NULL, &w), TEMPO_STATUS_OK);
  float X[B * M * N], W[B * N * P], ref[M * P];
  fill(X, B * M * N, 5), fill(W, B * N * P, 6);
  tempo_msgbuf req = {0}, rep = {0};
  tempo_msg_header h, rh;
  const float *out;
  tempo_msg_header_init(&h, TEMPO_OP_STORE);
  h.task_id = 1, h.handle_x = 1, h.handle_w = 2;
  h.batch = B, h.m = M, h.n = N, h.p = P, h.lo = 1, h.hi = 3;
  h.flags = TEMPO_MSG_F_X_INLINE | TEMPO_MSG_F_W_INLINE;
  const void *seg[2] = {X + M * N, W + N * P};
  size_t len[2] = {2 * M * N * sizeof(float), 2 * N * P * sizeof(float)};
  call(w, &h, 2, seg, len, &req, &rep, &rh, &out);
  assert_int_equal(rh.op, TEMPO_OP_ACK);
  tempo_msg_header_init(&h, TEMPO_OP_FORWARD);
  h.task_id = 2, h.handle_x = 1, h.handle_w = 2;
  h.batch = B, h.m = M, h.n = N, h.p = P, h.lo = 1, h.hi = 3;
  call(w, &h, 0, NULL, NULL, &req, &rep, &rh, &out);
  assert_int_equal(rh.op, TEMPO_OP_RESULT);
  for (int i = 0; i < 2; i++) {
    ref_mm(M, N, P, X + (1 + i) * M * N, W + (1 + i) * N * P, false, ref);
    assert_close(out + i * M * P, ref, M * P);
  }
  /* the same FORWARD inline, with the payload cut into 3 odd segments */
  h.task_id = 3, h.flags = TEMPO_MSG_F_X_INLINE | TEMPO_MSG_F_W_INLINE;
  size_t xb = 2 * M * N * sizeof(float), wb = 2 * N * P * sizeof(float);
  uint8_t *pay = malloc(xb + wb);
  memcpy(pay, X + M * N, xb);
  memcpy(pay + xb, W + N * P, wb);
  h.payload_len = xb + wb;
  uint8_t hdr[TEMPO_MSG_HEADER_SIZE];
  tempo_msg_header_write(&h, hdr);
  tempo_msg_view v = {.header = hdr, .nseg = 3, .stable = false};
  v.seg[0] = pay, v.seg_len[0] = 10;
  v.seg[1] = pay + 10, v.seg_len[1] = xb + 6 - 10;
  v.seg[2] = pay + xb + 6, v.seg_len[2] = wb - 6;
  bool send;
  assert_int_equal(tempo_worker_handle(w, &v, &rep, &send), TEMPO_STATUS_OK);
  const uint8_t *rp;
  assert_int_equal(tempo_msg_decode(rep.data, rep.len, &rh, &rp), TEMPO_STATUS_OK);
  assert_int_equal(rh.op, TEMPO_OP_RESULT);
  ref_mm(M, N, P, X + 2 * M * N, W + 2 * N * P, false, ref);
  assert_close((const float *)rp + M * P, ref, M * P);
  /* segments that do not add up to the payload length: an ERROR reply */
  v.seg_len[2] -= 4;
  assert_int_equal(tempo_worker_handle(w, &v, &rep, &send), TEMPO_STATUS_OK);
  assert_int_equal(tempo_msg_decode(rep.data, rep.len, &rh, &rp), TEMPO_STATUS_OK);
  assert_int_equal(rh.op, TEMPO_OP_ERROR);
  /* garbage bytes: an ERROR reply */
  memset(hdr, 0xab, sizeof hdr);
  assert_int_equal(tempo_worker_handle_buf(w, hdr, sizeof hdr, &rep, &send), TEMPO_STATUS_OK);
  assert_int_equal(tempo_msg_decode(rep.data, rep.len, &rh, &rp), TEMPO_STATUS_OK);
  assert_int_equal(rh.op, TEMPO_OP_ERROR);
  assert_int_equal(rh.code, -TEMPO_STATUS_CORRUPT);
  free(pay);
  tempo_msgbuf_free(&req);
  tempo_msgbuf_free(&rep);
  tempo_worker_free(w);
}

/* Each fault kind changes the reply as documented, from request `start` on. */
static void test_faults(void **state) {
  (void)state;
  enum { M = 4, N = 3, P = 2 };
  float X[M * N], W[N * P], ref[M * P];
  fill(X, M * N, 8), fill(W, N * P, 9);
  ref_mm(M, N, P, X, W, false, ref);
  for (int k = TEMPO_FAULT_WRONG_ELEMENT; k < TEMPO_FAULT_COUNT_; k++) {
    tempo_worker *w;
    assert_int_equal(tempo_worker_create(NULL, &w), TEMPO_STATUS_OK);
    tempo_worker_fault f = {.kind = (tempo_fault_kind)k, .start = 1, .period = 1};
    tempo_worker_set_fault(w, &f);
    tempo_msgbuf req = {0}, rep = {0};
    for (int it = 0; it < 3; it++) {
      tempo_msg_header h, rh;
      tempo_msg_header_init(&h, TEMPO_OP_FORWARD);
      h.task_id = 100 + (uint64_t)it;
      h.batch = 1, h.m = M, h.n = N, h.p = P, h.lo = 0, h.hi = M;
      h.flags = TEMPO_MSG_F_X_INLINE | TEMPO_MSG_F_W_INLINE;
      float Xs[M * N];
      for (int i = 0; i < M * N; i++) Xs[i] = X[i] * (float)(1 + it); /* a different product each time */
      const void *seg[2] = {Xs, W};
      size_t len[2] = {sizeof Xs, sizeof W};
      assert_int_equal(tempo_msg_encode(&req, &h, 2, seg, len), TEMPO_STATUS_OK);
      bool send;
      assert_int_equal(tempo_worker_handle_buf(w, req.data, req.len, &rep, &send), TEMPO_STATUS_OK);
      float r[M * P];
      for (int i = 0; i < M * P; i++) r[i] = ref[i] * (float)(1 + it);
      if (it == 0) { /* honest before start */
        const uint8_t *pay;
        assert_true(send);
        assert_int_equal(tempo_msg_decode(rep.data, rep.len, &rh, &pay), TEMPO_STATUS_OK);
        assert_close((const float *)pay, r, M * P);
        continue;
      }
      if (k == TEMPO_FAULT_NO_REPLY) {
        assert_false(send);
        continue;
      }
      const uint8_t *pay;
      assert_true(send);
      assert_int_equal(tempo_msg_decode(rep.data, rep.len, &rh, &pay), TEMPO_STATUS_OK);
      if (k == TEMPO_FAULT_ERROR_REPLY) {
        assert_int_equal(rh.op, TEMPO_OP_ERROR);
      } else if (k == TEMPO_FAULT_OTHER_TASK) {
        assert_int_not_equal(rh.task_id, h.task_id);
      } else {
        const float *y = (const float *)pay;
        int diff = 0;
        for (int i = 0; i < M * P; i++) diff += fabsf(y[i] - r[i]) > 1e-4f * (1 + fabsf(r[i]));
        if (diff == 0) fail_msg("fault %s left the result right", tempo_fault_name((tempo_fault_kind)k));
        if (k == TEMPO_FAULT_WRONG_ELEMENT) assert_int_equal(diff, 1);
        if (k == TEMPO_FAULT_STALE) assert_close(y, ref, M * P); /* the first task's result */
      }
    }
    assert_int_equal(tempo_worker_faults_injected(w), 2);
    tempo_msgbuf_free(&req);
    tempo_msgbuf_free(&rep);
    tempo_worker_free(w);
  }
}

/* Y (m, p) = X (m, n) . W in double; W (n, p) or stored (p, n) with wt */
static void ref_mm64(int m, int n, int p, const double *X, const double *W, bool wt, double *Y) {
  for (int i = 0; i < m; i++)
    for (int j = 0; j < p; j++) {
      double s = 0;
      for (int k = 0; k < n; k++) s += X[i * n + k] * W[wt ? j * n + k : k * p + j];
      Y[i * p + j] = s;
    }
}

static void assert_close64(const double *a, const double *b, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (fabs(a[i] - b[i]) > 1e-13 * (1.0 + fabs(b[i]))) fail_msg("f64 element %zu: %.17g vs %.17g", i, a[i], b[i]);
}

/* float64 requests (TEMPO_DTYPE_F64): FORWARD with KEEP, BACKWARD by handle (batch split,
 * both layouts), results to double precision (operands with 40 significant bits, which
 * float32 would round); a float32 request cannot use a float64 handle; the payload
 * gathered when a tensor straddles segments at an odd offset; a wrong-element fault is
 * applied to a float64 result. */
static void test_f64(void **state) {
  (void)state;
  enum { B = 3, M = 4, N = 9, P = 6 };
  double X[B * M * N], W[B * N * P], dY[B * M * P], ref[M * N], XT[N * M], dw[N * P], wref[N * P];
  for (int i = 0; i < B * M * N; i++) X[i] = sin(i + 1.0) * (1.0 + 0x1p-40 * i);
  for (int i = 0; i < B * N * P; i++) W[i] = cos(i + 2.0) * (1.0 + 0x1p-40 * i);
  for (int i = 0; i < B * M * P; i++) dY[i] = sin(3.0 * i + 0.5);
  for (int wt = 0; wt < 2; wt++) {
    tempo_worker *w;
    assert_int_equal(tempo_worker_create(NULL, &w), TEMPO_STATUS_OK);
    tempo_msgbuf req = {0}, rep = {0};
    tempo_msg_header h, rh;
    const float *outf;
    /* instances [1, 3) of 3 */
    tempo_msg_header_init(&h, TEMPO_OP_FORWARD);
    h.dtype = TEMPO_DTYPE_F64;
    h.task_id = 1, h.handle_x = 10, h.handle_w = 11;
    h.batch = B, h.m = M, h.n = N, h.p = P, h.lo = 1, h.hi = 3;
    h.flags = TEMPO_MSG_F_X_INLINE | TEMPO_MSG_F_W_INLINE | TEMPO_MSG_F_KEEP | (wt ? TEMPO_MSG_F_W_TRANS : 0);
    const void *seg[2] = {X + M * N, W + N * P};
    size_t len[2] = {2 * M * N * sizeof(double), 2 * N * P * sizeof(double)};
    call(w, &h, 2, seg, len, &req, &rep, &rh, &outf);
    assert_int_equal(rh.op, TEMPO_OP_RESULT);
    assert_int_equal(rh.dtype, TEMPO_DTYPE_F64);
    assert_int_equal(rh.payload_len, 2 * M * P * sizeof(double));
    const double *out = (const double *)outf;
    for (int b = 1; b < 3; b++) {
      ref_mm64(M, N, P, X + b * M * N, W + b * N * P, wt, ref);
      assert_close64(out + (b - 1) * M * P, ref, M * P);
    }
    /* BACKWARD by handle */
    tempo_msg_header_init(&h, TEMPO_OP_BACKWARD);
    h.dtype = TEMPO_DTYPE_F64;
    h.task_id = 2, h.handle_x = 10, h.handle_w = 11;
    h.batch = B, h.m = M, h.n = N, h.p = P, h.lo = 1, h.hi = 3;
    h.flags = TEMPO_MSG_F_WANT_DX | TEMPO_MSG_F_WANT_DW | (wt ? TEMPO_MSG_F_W_TRANS : 0);
    const void *bseg[1] = {dY + M * P};
    size_t blen[1] = {2 * M * P * sizeof(double)};
    call(w, &h, 1, bseg, blen, &req, &rep, &rh, &outf);
    assert_int_equal(rh.op, TEMPO_OP_RESULT);
    out = (const double *)outf;
    for (int b = 1; b < 3; b++) {
      ref_mm64(M, P, N, dY + b * M * P, W + b * N * P, !wt, ref);
      assert_close64(out + (b - 1) * M * N, ref, M * N);
      for (int i = 0; i < M; i++)
        for (int k = 0; k < N; k++) XT[k * M + i] = X[b * M * N + i * N + k];
      ref_mm64(N, M, P, XT, dY + b * M * P, false, dw);
      for (int i = 0; i < N; i++)
        for (int j = 0; j < P; j++) wref[wt ? j * N + i : i * P + j] = dw[i * P + j];
      assert_close64(out + 2 * M * N + (b - 1) * N * P, wref, N * P);
    }
    /* a float32 request naming the float64 handles: refused */
    h.dtype = TEMPO_DTYPE_F32, h.task_id = 3;
    float dyf[2 * M * P] = {0};
    const void *fseg[1] = {dyf};
    size_t flen[1] = {sizeof dyf};
    call(w, &h, 1, fseg, flen, &req, &rep, &rh, &outf);
    assert_int_equal(rh.op, TEMPO_OP_ERROR);
    assert_int_equal(rh.code, -TEMPO_STATUS_MISMATCH);
    /* segmented, not stable: W straddles two segments at a 4-byte (not 8-byte) boundary */
    tempo_msg_header_init(&h, TEMPO_OP_FORWARD);
    h.dtype = TEMPO_DTYPE_F64;
    h.task_id = 4;
    h.batch = 1, h.m = M, h.n = N, h.p = P, h.lo = 0, h.hi = M;
    h.flags = TEMPO_MSG_F_X_INLINE | TEMPO_MSG_F_W_INLINE | (wt ? TEMPO_MSG_F_W_TRANS : 0);
    uint8_t *body = malloc((M * N + N * P) * sizeof(double) + 8);
    memcpy(body, X, M * N * sizeof(double));
    memcpy(body + M * N * sizeof(double), W, N * P * sizeof(double));
    uint8_t hdr[TEMPO_MSG_HEADER_SIZE];
    assert_true(tempo_msg_payload_bytes(&h, &h.payload_len));
    tempo_msg_header_write(&h, hdr);
    const size_t cut = M * N * sizeof(double) + 12; /* inside W, not a multiple of 8 */
    tempo_msg_view v = {.header = hdr, .nseg = 2, .seg = {body, body + cut},
                        .seg_len = {cut, (size_t)h.payload_len - cut}, .stable = false};
    bool send;
    assert_int_equal(tempo_worker_handle(w, &v, &rep, &send), TEMPO_STATUS_OK);
    const uint8_t *pay;
    assert_int_equal(tempo_msg_decode(rep.data, rep.len, &rh, &pay), TEMPO_STATUS_OK);
    assert_int_equal(rh.op, TEMPO_OP_RESULT);
    ref_mm64(M, N, P, X, W, wt, ref);
    assert_close64((const double *)pay, ref, M * P);
    /* fault injection on float64 results: exactly one element is wrong */
    tempo_worker_fault f = {TEMPO_FAULT_WRONG_ELEMENT, 0, 1};
    tempo_worker_set_fault(w, &f);
    h.task_id = 5;
    assert_int_equal(tempo_worker_handle(w, &v, &rep, &send), TEMPO_STATUS_OK);
    assert_int_equal(tempo_msg_decode(rep.data, rep.len, &rh, &pay), TEMPO_STATUS_OK);
    int wrong = 0;
    for (int i = 0; i < M * P; i++) wrong += fabs(((const double *)pay)[i] - ref[i]) > 0.5;
    assert_int_equal(wrong, 1);
    assert_int_equal(tempo_worker_faults_injected(w), 1);
    free(body);
    tempo_msgbuf_free(&req);
    tempo_msgbuf_free(&rep);
    tempo_worker_free(w);
  }
}

/* The predecessor's partial that a chain test hands to tempo_worker_handle_chain. */
typedef struct {
  const uint8_t *data;
  size_t len;
  size_t want; /* what the core asked for */
  int calls;
} prev_box;

static void take_prev(void *ctx, size_t want, const uint8_t **data, size_t *len) {
  prev_box *b = ctx;
  b->want = want;
  b->calls++;
  *data = b->data;
  *len = b->len;
}

/* Three workers hold row blocks [0,3), [3,5), [5,8) of X' (KEEP forward), then a BACKWARD
 * chain in block order: the last reply's dW' is ((b0 + b1) + b2) of the plain replies' dW'
 * bit for bit, the others reply dX' only (an ACK without WANT_DX); a partial of the wrong
 * length or none breaks the chain (an empty one passed on, the last replies its own dW');
 * a request that cannot be reduced, or one that fails, is an ERROR reply, and the member
 * still takes what its predecessor sends (want 0). */
static void test_chain(void **state) {
  (void)state;
  enum { M = 8, N = 5, P = 3, K = 3 };
  const uint32_t lo[K] = {0, 3, 5}, hi[K] = {3, 5, 8};
  float X[M * N], W[N * P], dY[M * P];
  fill(X, M * N, 11), fill(W, N * P, 12), fill(dY, M * P, 13);
  for (int want_dx = 0; want_dx < 2; want_dx++) {
    tempo_worker *w[K];
    tempo_msgbuf req = {0}, rep = {0}, pass[K] = {{0}};
    tempo_msg_header h, rh;
    const float *out;
    float plain_dw[K][N * P], plain_dx[K][M * N];
    for (int k = 0; k < K; k++) {
      assert_int_equal(tempo_worker_create(NULL, &w[k]), TEMPO_STATUS_OK);
      tempo_msg_header_init(&h, TEMPO_OP_FORWARD);
      h.task_id = 1, h.handle_x = 10 + (uint64_t)k, h.handle_w = 20;
      h.batch = 1, h.m = M, h.n = N, h.p = P, h.lo = lo[k], h.hi = hi[k];
      h.flags = TEMPO_MSG_F_X_INLINE | TEMPO_MSG_F_W_INLINE | TEMPO_MSG_F_KEEP;
      const void *seg[2] = {X + lo[k] * N, W};
      size_t len[2] = {(hi[k] - lo[k]) * N * sizeof(float), sizeof W};
      call(w[k], &h, 2, seg, len, &req, &rep, &rh, &out);
      assert_int_equal(rh.op, TEMPO_OP_RESULT);
      /* the plain backward the master would sum */
      tempo_msg_header_init(&h, TEMPO_OP_BACKWARD);
      h.task_id = 2, h.handle_x = 10 + (uint64_t)k, h.handle_w = 20;
      h.batch = 1, h.m = M, h.n = N, h.p = P, h.lo = lo[k], h.hi = hi[k];
      h.flags = TEMPO_MSG_F_WANT_DX | TEMPO_MSG_F_WANT_DW;
      const void *bseg[1] = {dY + lo[k] * P};
      size_t blen[1] = {(hi[k] - lo[k]) * P * sizeof(float)};
      call(w[k], &h, 1, bseg, blen, &req, &rep, &rh, &out);
      memcpy(plain_dx[k], out, (hi[k] - lo[k]) * N * sizeof(float));
      memcpy(plain_dw[k], out + (hi[k] - lo[k]) * N, sizeof plain_dw[k]);
    }
    float sum[N * P];
    for (int i = 0; i < N * P; i++) sum[i] = (plain_dw[0][i] + plain_dw[1][i]) + plain_dw[2][i];
    for (int broken = 0; broken < 3; broken++) { /* 0: whole; 1: a short partial to member 1; 2: none */
      for (int k = 0; k < K; k++) {
        tempo_msg_header_init(&h, TEMPO_OP_BACKWARD);
        h.task_id = 3 + (uint64_t)k, h.handle_x = 10 + (uint64_t)k, h.handle_w = 20;
        h.batch = 1, h.m = M, h.n = N, h.p = P, h.lo = lo[k], h.hi = hi[k];
        h.flags = TEMPO_MSG_F_WANT_DW | (want_dx ? TEMPO_MSG_F_WANT_DX : 0);
        const size_t rows = hi[k] - lo[k];
        const void *bseg[1] = {dY + lo[k] * P};
        size_t blen[1] = {rows * P * sizeof(float)};
        assert_int_equal(tempo_msg_encode(&req, &h, 1, bseg, blen), TEMPO_STATUS_OK);
        tempo_msg_view v = {.header = req.data, .nseg = 1, .seg = {req.data + TEMPO_MSG_HEADER_SIZE},
                            .seg_len = {req.len - TEMPO_MSG_HEADER_SIZE}};
        prev_box box = {0};
        if (k > 0) box.data = pass[k - 1].data, box.len = pass[k - 1].len;
        if (k == 1 && broken == 1) box.len -= sizeof(float);
        if (k == 1 && broken == 2) box.data = NULL, box.len = 0;
        tempo_worker_chain ch = {.first = k == 0, .last = k == K - 1, .take_prev = take_prev, .ctx = &box,
                                 .pass = &pass[k]};
        bool send;
        assert_int_equal(tempo_worker_handle_chain(w[k], &v, &ch, &rep, &send), TEMPO_STATUS_OK);
        assert_true(send);
        assert_int_equal(box.calls, k > 0);
        if (k > 0) assert_int_equal(box.want, sizeof sum);
        const uint8_t *pay;
        assert_int_equal(tempo_msg_decode(rep.data, rep.len, &rh, &pay), TEMPO_STATUS_OK);
        assert_int_equal(rh.task_id, h.task_id);
        const bool whole = broken == 0 || k == 0;
        if (k < K - 1) { /* dX' only or an ACK; the sum so far went down the chain */
          if (want_dx) {
            assert_int_equal(rh.op, TEMPO_OP_RESULT);
            assert_int_equal(rh.flags, TEMPO_MSG_F_WANT_DX);
            assert_int_equal(rh.payload_len, rows * N * sizeof(float));
            assert_memory_equal(pay, plain_dx[k], rows * N * sizeof(float));
          } else {
            assert_int_equal(rh.op, TEMPO_OP_ACK);
          }
          assert_int_equal(pass[k].len, whole ? sizeof sum : 0);
        } else { /* the last: dX' and the sum (its own dW' when broken) */
          assert_int_equal(rh.op, TEMPO_OP_RESULT);
          assert_int_equal(rh.flags, h.flags);
          const float *dw = (const float *)pay + (want_dx ? rows * N : 0);
          if (want_dx) assert_memory_equal(pay, plain_dx[k], rows * N * sizeof(float));
          assert_memory_equal(dw, broken ? plain_dw[k] : sum, sizeof sum);
        }
      }
    }
    /* a request that cannot be reduced (FORWARD) and one that fails (unknown handle): ERROR
     * replies, an empty partial passed on, the predecessor's bytes still taken */
    for (int bad = 0; bad < 2; bad++) {
      tempo_msg_header_init(&h, bad ? TEMPO_OP_BACKWARD : TEMPO_OP_FORWARD);
      h.task_id = 9, h.handle_x = bad ? 99 : 11, h.handle_w = 20;
      h.batch = 1, h.m = M, h.n = N, h.p = P, h.lo = lo[1], h.hi = hi[1];
      h.flags = bad ? TEMPO_MSG_F_WANT_DW : 0;
      const void *bseg[1] = {dY + lo[1] * P};
      size_t blen[1] = {(hi[1] - lo[1]) * P * sizeof(float)};
      assert_int_equal(tempo_msg_encode(&req, &h, bad, bseg, blen), TEMPO_STATUS_OK);
      tempo_msg_view v = {.header = req.data, .nseg = 1, .seg = {req.data + TEMPO_MSG_HEADER_SIZE},
                          .seg_len = {req.len - TEMPO_MSG_HEADER_SIZE}};
      prev_box box = {.data = (const uint8_t *)sum, .len = sizeof sum};
      tempo_worker_chain ch = {.first = false, .last = false, .take_prev = take_prev, .ctx = &box, .pass = &pass[1]};
      bool send;
      assert_int_equal(tempo_worker_handle_chain(w[1], &v, &ch, &rep, &send), TEMPO_STATUS_OK);
      const uint8_t *pay;
      assert_int_equal(tempo_msg_decode(rep.data, rep.len, &rh, &pay), TEMPO_STATUS_OK);
      assert_int_equal(rh.op, TEMPO_OP_ERROR);
      assert_int_equal(rh.task_id, 9);
      assert_int_equal(rh.code, bad ? -TEMPO_STATUS_MISMATCH : -TEMPO_STATUS_INVALID_ARGUMENT);
      assert_int_equal(box.calls, 1);
      assert_int_equal(box.want, 0);
      assert_int_equal(pass[1].len, 0);
    }
    for (int k = 0; k < K; k++) {
      tempo_msgbuf_free(&pass[k]);
      tempo_worker_free(w[k]);
    }
    tempo_msgbuf_free(&req);
    tempo_msgbuf_free(&rep);
  }
}

/* A float64 chain of two (shield's shares): the last reply's dW' is own0 + own1 in double. */
static void test_chain_f64(void **state) {
  (void)state;
  enum { M = 6, N = 4, P = 3 };
  double X[M * N], dY[M * P], own[2][N * P];
  for (int i = 0; i < M * N; i++) X[i] = (double)((i * 7) % 11) / 3.0 - 1.0;
  for (int i = 0; i < M * P; i++) dY[i] = (double)((i * 5) % 13) / 7.0 - 0.9;
  tempo_worker *w;
  assert_int_equal(tempo_worker_create(NULL, &w), TEMPO_STATUS_OK);
  tempo_msgbuf req = {0}, rep = {0}, pass = {0};
  for (int pass_no = 0; pass_no < 2; pass_no++) /* 0: plain replies; 1: the chain */
    for (int k = 0; k < 2; k++) {
      tempo_msg_header h, rh;
      tempo_msg_header_init(&h, TEMPO_OP_BACKWARD);
      h.task_id = 1 + (uint64_t)k, h.dtype = TEMPO_DTYPE_F64;
      h.batch = 1, h.m = M, h.n = N, h.p = P, h.lo = k ? 2 : 0, h.hi = k ? M : 2;
      h.flags = TEMPO_MSG_F_WANT_DW | TEMPO_MSG_F_X_INLINE;
      const size_t rows = h.hi - h.lo;
      const void *seg[2] = {dY + h.lo * P, X + h.lo * N};
      size_t len[2] = {rows * P * sizeof(double), rows * N * sizeof(double)};
      assert_int_equal(tempo_msg_encode(&req, &h, 2, seg, len), TEMPO_STATUS_OK);
      tempo_msg_view v = {.header = req.data, .nseg = 1, .seg = {req.data + TEMPO_MSG_HEADER_SIZE},
                          .seg_len = {req.len - TEMPO_MSG_HEADER_SIZE}};
      bool send;
      const uint8_t *pay;
      if (pass_no == 0) {
        assert_int_equal(tempo_worker_handle(w, &v, &rep, &send), TEMPO_STATUS_OK);
        assert_int_equal(tempo_msg_decode(rep.data, rep.len, &rh, &pay), TEMPO_STATUS_OK);
        memcpy(own[k], pay, sizeof own[k]);
        continue;
      }
      prev_box box = {.data = pass.data, .len = pass.len};
      tempo_worker_chain ch = {.first = k == 0, .last = k == 1, .take_prev = take_prev, .ctx = &box, .pass = &pass};
      assert_int_equal(tempo_worker_handle_chain(w, &v, &ch, &rep, &send), TEMPO_STATUS_OK);
      assert_int_equal(tempo_msg_decode(rep.data, rep.len, &rh, &pay), TEMPO_STATUS_OK);
      if (k == 0) {
        assert_int_equal(rh.op, TEMPO_OP_ACK);
        assert_int_equal(pass.len, sizeof own[0]);
      } else {
        assert_int_equal(box.want, sizeof own[0]);
        double sum[N * P];
        for (int i = 0; i < N * P; i++) sum[i] = own[0][i] + own[1][i];
        assert_int_equal(rh.op, TEMPO_OP_RESULT);
        assert_int_equal(rh.dtype, TEMPO_DTYPE_F64);
        assert_memory_equal(pay, sum, sizeof sum);
      }
    }
  tempo_msgbuf_free(&pass);
  tempo_msgbuf_free(&req);
  tempo_msgbuf_free(&rep);
  tempo_worker_free(w);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_store_forward_backward_release),
      cmocka_unit_test(test_store_batch_and_segments),
      cmocka_unit_test(test_faults),
      cmocka_unit_test(test_f64),
      cmocka_unit_test(test_chain),
      cmocka_unit_test(test_chain_f64),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
