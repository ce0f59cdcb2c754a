/* test_wire16.c - the 16-bit wire (--wire bf16; protocol.h TEMPO_DTYPE_BF16, bf16.h,
 * src/obf/pass16.c, docs/obfuscation.md "The 16-bit wire").
 *
 * - bfloat16 rounding: nearest even, NaN stays NaN, infinities and the range of float32; the
 *   vector conversions give the scalar's bits;
 * - the 16-bit Enc passes write exactly the float passes' values rounded to bfloat16 (plain,
 *   mixed and identity keys; X' also from a row source), and the forward check's dots are the
 *   sums on the rounded values;
 * - the protocol: BF16 requests carry 2-byte operands, their RESULTs float32; the worker core
 *   computes the float32 product of the widened operands exactly as for a float32 request (the
 *   converting path, TEMPO_GEMM=openblas) or, with the CPU backend's bfloat16 GEMM (oneDNN), within
 *   float32 accumulation's bound of it, and refuses a cached operand of the other dtype;
 * - the engine: an honest bfloat16 wire gives no false alarm over thousands of products of every
 *   kind the engine checks (row splits, mixed, batched, accumulated dX, dW' chains), its products
 *   are within the bound of the operands' rounding, and a rogue worker's cheats of 1e-2 of a
 *   row's largest value (and whole tensors zeroed, halved, negated) are all caught;
 * - an audit trail of the 16-bit wire reads back (tempo-attack's loader). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "obf/obf_internal.h"
#include "offload/scheme.h"
#include "rogue_worker.h"
#include "tempo/attack.h"
#include "tempo/bf16.h"
#include "tempo/gemm.h"
#include "tempo/matmul.h"
#include "tempo/protocol.h"
#include "tempo/worker.h"
#include "test_util.h"

static uint32_t bits_of(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}
static float float_of(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

/* The reference rounding: the nearest of the two bfloat16 neighbours in double, ties to the
 * even one (finite, non-NaN x). */
static uint16_t ref_round(float x) {
  const uint32_t u = bits_of(x);
  const uint16_t lo = (uint16_t)(u >> 16), hi = (uint16_t)(lo + 1);
  const double a = tempo_bf16_to_f32(lo), d = x;
  if ((u & 0xffffu) == 0) return lo;
  /* above the largest finite bfloat16 the next neighbour is infinity, at 2^128 for rounding */
  const double b = (hi & 0x7f80u) == 0x7f80u ? ldexp(x < 0 ? -1.0 : 1.0, 128) : tempo_bf16_to_f32(hi);
  const double ea = fabs(d - a), eb = fabs(b - d);
  if (ea < eb) return lo;
  if (eb < ea) return hi;
  return (lo & 1) ? hi : lo;
}

static void test_rounding(void **state) {
  (void)state;
  assert_int_equal(tempo_bf16_from_f32(1.0f), 0x3f80);
  assert_int_equal(tempo_bf16_from_f32(float_of(0x3f808000u)), 0x3f80); /* tie: to even (down) */
  assert_int_equal(tempo_bf16_from_f32(float_of(0x3f818000u)), 0x3f82); /* tie: to even (up) */
  assert_int_equal(tempo_bf16_from_f32(float_of(0x3f808001u)), 0x3f81);
  assert_int_equal(tempo_bf16_from_f32(INFINITY), 0x7f80);
  assert_int_equal(tempo_bf16_from_f32(-INFINITY), 0xff80);
  assert_int_equal(tempo_bf16_from_f32(FLT_MAX), 0x7f80); /* within half an ulp of 2^128: rounds up */
  assert_int_equal(tempo_bf16_from_f32(-0.0f), 0x8000);
  assert_int_equal(tempo_bf16_from_f32(FLT_MIN), 0x0080); /* the normal range is float32's */
  const float nans[] = {NAN, float_of(0x7f800001u), float_of(0x7fffffffu), float_of(0xffffffffu)};
  for (size_t i = 0; i < sizeof nans / sizeof nans[0]; i++) assert_true(isnan(tempo_bf16_round(nans[i])));
  tempo_rng r;
  tempo_rng_seed(&r, 1, 16);
  enum { N = 1 << 16 };
  float *x = malloc(N * sizeof(float)), *back = malloc(N * sizeof(float));
  uint16_t *h = malloc(N * sizeof(uint16_t));
  assert_true(x && h && back);
  for (int i = 0; i < N; i++) {
    uint32_t u = (uint32_t)tempo_rng_below(&r, (uint64_t)1 << 32);
    if (i % 4 == 0) u = (u & 0x8000ffffu) | 0x3f800000u; /* many ties and near-ties around 1 */
    if (i % 97 == 0) u |= 0x7f800000u;                    /* infinities and NaNs */
    x[i] = float_of(u);
  }
  tempo_bf16_pack(x, h, N);
  tempo_bf16_unpack(h, back, N);
  for (int i = 0; i < N; i++) {
    assert_int_equal(h[i], tempo_bf16_from_f32(x[i])); /* the vector kernel gives the scalar's bits */
    assert_int_equal(bits_of(back[i]), (uint32_t)h[i] << 16);
    if (isnan(x[i])) {
      assert_true(isnan(back[i]));
    } else {
      assert_int_equal(h[i], ref_round(x[i]));
      if (isfinite(back[i]) && fabsf(x[i]) >= FLT_MIN) /* normal: relative error <= 2^-8 */
        assert_true(fabs((double)back[i] - x[i]) <= ldexp(fabs((double)x[i]), -8));
    }
  }
  free(x), free(h), free(back);
}

/* ---- the 16-bit Enc passes ---- */

static tempo_keygen *keygen(void) {
  uint8_t secret[32] = {16};
  tempo_keyspace ks;
  tempo_keyspace_default(&ks);
  tempo_keygen *g;
  assert_int_equal(tempo_keygen_create(secret, &ks, &g), TEMPO_STATUS_OK);
  return g;
}

/* A row source over a materialised matrix (rows.h), for the _rows passes. */
typedef struct {
  const float *x;
  int cols;
} mat_src;
static void mat_fill(const void *ctx, int lo, int hi, float *dst) {
  const mat_src *m = ctx;
  memcpy(dst, m->x + (size_t)lo * m->cols, (size_t)(hi - lo) * m->cols * sizeof(float));
}

/* Every 16-bit pass against bf16(the float pass), for an identity key, a plain one or one
 * with mixing blocks of size mix; the X' passes also from a row source. */
static void passes_match(int m, int n, int p, int mix, bool identity) {
  tempo_keygen *g = keygen();
  tempo_obf_key k;
  assert_int_equal(tempo_obf_key_alloc(&k, m, n, p), TEMPO_STATUS_OK);
  if (!identity) assert_int_equal(tempo_keygen_fill(g, &k), TEMPO_STATUS_OK);
  if (mix) assert_int_equal(tempo_keygen_fill_mix(g, &k, mix), TEMPO_STATUS_OK);
  const size_t xs = (size_t)m * n, ws = (size_t)n * p, ys = (size_t)m * p;
  float *X = malloc(xs * 4), *W = malloc(ws * 4), *dY = malloc(ys * 4), *f = malloc((xs + ws + ys) * 4);
  float *wpf = malloc(ws * 4), *work = malloc(tempo_obf_enc16_work(n, p) * 4);
  uint16_t *h = malloc((xs + ws + ys) * 2);
  double *w[2], *wb[2], *y[2], *yb[2];
  for (int q = 0; q < 2; q++) {
    w[q] = malloc(n * 8), wb[q] = malloc(n * 8), y[q] = malloc(m * 8), yb[q] = malloc(m * 8);
    assert_true(w[q] && wb[q] && y[q] && yb[q]);
  }
  assert_true(X && W && dY && f && wpf && work && h);
  tempo_rng r;
  tempo_rng_seed(&r, (uint64_t)(m + n + p), (uint64_t)mix);
  test_randn(X, xs, &r), test_randn(W, ws, &r), test_randn(dY, ys, &r);
  for (int q = 0; q < 2; q++)
    for (int j = 0; j < n; j++) w[q][j] = tempo_rng_normal(&r), wb[q][j] = tempo_rng_uniform(&r);
  for (int wt = 0; wt < 2; wt++) {
    tempo_obf_enc_w(&k, wt, W, f);
    tempo_obf_enc_w16(&k, wt, W, h, wpf);
    for (size_t i = 0; i < ws; i++) {
      assert_int_equal(h[i], tempo_bf16_from_f32(f[i]));
      assert_int_equal(bits_of(wpf[i]), (uint32_t)h[i] << 16);
    }
  }
  tempo_obf_enc_dy(&k, dY, f);
  tempo_obf_enc_dy16(&k, dY, h, work);
  for (size_t i = 0; i < ys; i++) assert_int_equal(h[i], tempo_bf16_from_f32(f[i]));
  tempo_obf_enc_x(&k, X, f);
  tempo_obf_enc_x16(&k, X, h, work);
  for (size_t i = 0; i < xs; i++) assert_int_equal(h[i], tempo_bf16_from_f32(f[i]));
  memset(h, 0, xs * 2);
  tempo_obf_enc_x16_check(&k, X, h, 2, (const double *const *)w, (const double *const *)wb, y, yb, work);
  for (size_t i = 0; i < xs; i++) assert_int_equal(h[i], tempo_bf16_from_f32(f[i]));
  for (int q = 0; q < 2; q++)
    for (int i = 0; i < m; i++) { /* the dots on the rounded values, in double */
      double t = 0, tb = 0, s = 0;
      for (int j = 0; j < n; j++) {
        const double x = tempo_bf16_to_f32(h[(size_t)i * n + j]);
        t += x * w[q][j], tb += x * x * wb[q][j], s += fabs(x * w[q][j]);
      }
      assert_true(fabs(y[q][i] - t) <= 1e-13 * s + 1e-300);
      /* the bound's sum of squares: an upper bound within (n + 4) 2^-22 (float sums, rounded up) */
      assert_true(yb[q][i] >= tb * (1 - 1e-15) && yb[q][i] <= tb * (1 + (n + 4) * 0x1p-22) + 1e-300);
    }
  /* from a row source: the same bits and dots */
  const mat_src ms = {X, n};
  const tempo_rows src = {.fill = mat_fill, .ctx = &ms, .rows = m, .cols = n, .bytes = xs * 4};
  uint16_t *h2 = malloc(xs * 2);
  double *y2 = malloc(m * 8), *yb2 = malloc(m * 8);
  assert_true(h2 && y2 && yb2);
  tempo_obf_enc_x16_rows(&k, &src, h2, work);
  assert_memory_equal(h2, h, xs * 2);
  memset(h2, 0, xs * 2);
  double *y2q[2] = {y2, y[1]}, *yb2q[2] = {yb2, yb[1]};
  tempo_obf_enc_x16_check_rows(&k, &src, h2, 2, (const double *const *)w, (const double *const *)wb, y2q, yb2q, work);
  assert_memory_equal(h2, h, xs * 2);
  assert_memory_equal(y2, y[0], m * 8);
  assert_memory_equal(yb2, yb[0], m * 8);
  free(h2), free(y2), free(yb2);
  for (int q = 0; q < 2; q++) free(w[q]), free(wb[q]), free(y[q]), free(yb[q]);
  free(X), free(W), free(dY), free(f), free(wpf), free(work), free(h);
  tempo_obf_key_free(&k);
  tempo_keygen_free(g);
}

static void test_passes_are_the_float_passes_rounded(void **state) {
  (void)state;
  static const int shapes[][3] = {{1, 1, 1}, {9, 7, 5}, {33, 17, 70}, {64, 144, 16}, {70, 129, 33}, {300, 40, 9}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    const int m = shapes[s][0], n = shapes[s][1], p = shapes[s][2];
    passes_match(m, n, p, 0, true);
    passes_match(m, n, p, 0, false);
    static const int mixes[] = {1, 2, 4, 8};
    for (size_t b = 0; b < 4; b++) passes_match(m, n, p, mixes[b], false);
  }
  tempo_obf_mix_force_scalar(true); /* the mixed pass's portable loops too */
  passes_match(70, 129, 33, 4, false);
  tempo_obf_mix_force_scalar(false);
}

/* ---- protocol and worker ---- */

static void test_protocol_sizes(void **state) {
  (void)state;
  assert_int_equal((int)tempo_msg_dtype_size(TEMPO_DTYPE_BF16), 2);
  assert_int_equal((int)tempo_msg_result_size(TEMPO_DTYPE_BF16), 4);
  assert_int_equal((int)tempo_msg_result_size(TEMPO_DTYPE_F64), 8);
  assert_int_equal((int)tempo_msg_dtype_size(4), 0);
  tempo_msg_header h;
  tempo_msg_header_init(&h, TEMPO_OP_FORWARD);
  h.dtype = TEMPO_DTYPE_BF16, h.task_id = 1, h.batch = 1, h.m = 10, h.n = 7, h.p = 3, h.lo = 2, h.hi = 6;
  h.flags = TEMPO_MSG_F_X_INLINE | TEMPO_MSG_F_W_INLINE;
  h.payload_len = 2 * (4 * 7 + 7 * 3);
  assert_int_equal(tempo_msg_header_check(&h), TEMPO_STATUS_OK);
  h.payload_len = 4 * (4 * 7 + 7 * 3); /* float32 operands under a BF16 header */
  assert_int_equal(tempo_msg_header_check(&h), TEMPO_STATUS_CORRUPT);
  h.payload_len = 2 * (4 * 7 + 7 * 3);
  assert_int_equal((int)tempo_msg_reply_bound(&h), TEMPO_MSG_HEADER_SIZE + TEMPO_MSG_MAX_TEXT); /* Y' is smaller */
  h.m = h.hi = 1000, h.lo = 0, h.payload_len = 2 * (1000 * 7 + 7 * 3);
  assert_int_equal((int)tempo_msg_reply_bound(&h), TEMPO_MSG_HEADER_SIZE + 4 * 1000 * 3); /* a float32 Y' */
  tempo_msg_header r = h;
  r.op = TEMPO_OP_RESULT, r.flags = TEMPO_MSG_F_WANT_DX | TEMPO_MSG_F_WANT_DW;
  r.payload_len = 4 * (1000 * 7 + 7 * 3);
  assert_int_equal(tempo_msg_header_check(&r), TEMPO_STATUS_OK);
  r.payload_len = 2 * (1000 * 7 + 7 * 3);
  assert_int_equal(tempo_msg_header_check(&r), TEMPO_STATUS_CORRUPT);
}

/* One request through the worker core; the reply header into *rh, its payload returned. */
static const uint8_t *ask(tempo_worker *w, tempo_msg_header *h, const void *const *seg, const size_t *len, int nseg,
                          tempo_msgbuf *req, tempo_msgbuf *rep, tempo_msg_header *rh) {
  assert_int_equal(tempo_msg_encode(req, h, nseg, seg, len), TEMPO_STATUS_OK);
  bool send;
  assert_int_equal(tempo_worker_handle_buf(w, req->data, req->len, rep, &send), TEMPO_STATUS_OK);
  const uint8_t *pay;
  assert_int_equal(tempo_msg_decode(rep->data, rep->len, rh, &pay), TEMPO_STATUS_OK);
  return pay;
}

/* got (cnt floats) against want: the same bits (exact), or each within float32 accumulation's
 * bound of the widened sgemm's, 2 (k + 2) 2^-24 sum |a b| (both sums are within half of it of the
 * exact one; mag: sum |a b| per entry). */
static void same_or_within(const uint8_t *got, const float *want, const float *mag, int cnt, int k, bool exact) {
  if (exact) {
    assert_memory_equal(got, want, (size_t)cnt * sizeof(float));
    return;
  }
  for (int i = 0; i < cnt; i++) {
    float g;
    memcpy(&g, got + (size_t)i * sizeof g, sizeof g);
    assert_true(fabs((double)g - want[i]) <= 2 * (k + 2) * 0x1p-24 * mag[i] + 1e-30);
  }
}

/* One forward and one backward of the worker on the bfloat16 wire. exact: the converting path
 * (TEMPO_GEMM=openblas: operands widened, then tempo_sgemm), bit for bit what a float32 request of
 * the widened operands gives; else the CPU backend's bfloat16 GEMM where it has one (oneDNN),
 * within the accumulation bound. */
static void worker_bf16_case(bool exact) {
  enum { M = 37, N = 29, P = 11 };
  tempo_rng r;
  tempo_rng_seed(&r, 3, 16);
  float X[M * N], W[P * N], dY[M * P], Y[M * P], dX[M * N], dW[P * N];
  uint16_t x16[M * N], w16[P * N], dy16[M * P];
  test_randn(X, M * N, &r), test_randn(W, P * N, &r), test_randn(dY, M * P, &r);
  tempo_bf16_pack(X, x16, M * N), tempo_bf16_pack(W, w16, P * N), tempo_bf16_pack(dY, dy16, M * P);
  tempo_bf16_unpack(x16, X, M * N), tempo_bf16_unpack(w16, W, P * N), tempo_bf16_unpack(dy16, dY, M * P);
  /* what a float32 request of the widened operands gives (W stored (p, n)) */
  tempo_sgemm(false, true, M, P, N, 1.0f, X, N, W, N, 0.0f, Y, P);
  tempo_sgemm(false, false, M, N, P, 1.0f, dY, P, W, N, 0.0f, dX, N);
  tempo_sgemm(true, false, P, N, M, 1.0f, dY, P, X, N, 0.0f, dW, N);
  float aY[M * P], adX[M * N], adW[P * N], aX[M * N], aW[P * N], adY[M * P]; /* sum |a b|: the same products of |.| */
  for (int i = 0; i < M * N; i++) aX[i] = fabsf(X[i]);
  for (int i = 0; i < P * N; i++) aW[i] = fabsf(W[i]);
  for (int i = 0; i < M * P; i++) adY[i] = fabsf(dY[i]);
  tempo_sgemm(false, true, M, P, N, 1.0f, aX, N, aW, N, 0.0f, aY, P);
  tempo_sgemm(false, false, M, N, P, 1.0f, adY, P, aW, N, 0.0f, adX, N);
  tempo_sgemm(true, false, P, N, M, 1.0f, adY, P, aX, N, 0.0f, adW, N);
  assert_true(tempo_gemm_set_backend(exact ? TEMPO_GEMM_OPENBLAS : TEMPO_GEMM_AUTO));
  tempo_worker *w;
  assert_int_equal(tempo_worker_create(NULL, &w), TEMPO_STATUS_OK);
  tempo_msgbuf req = {0}, rep = {0};
  tempo_msg_header h, rh;
  tempo_msg_header_init(&h, TEMPO_OP_FORWARD);
  h.dtype = TEMPO_DTYPE_BF16, h.task_id = 5, h.handle_x = 1, h.handle_w = 2, h.batch = 1, h.m = M, h.n = N, h.p = P;
  h.lo = 0, h.hi = M;
  h.flags = TEMPO_MSG_F_X_INLINE | TEMPO_MSG_F_W_INLINE | TEMPO_MSG_F_KEEP | TEMPO_MSG_F_W_TRANS;
  const void *seg[2] = {x16, w16};
  size_t len[2] = {sizeof x16, sizeof w16};
  const uint8_t *pay = ask(w, &h, seg, len, 2, &req, &rep, &rh);
  assert_int_equal(rh.op, TEMPO_OP_RESULT);
  assert_int_equal(rh.dtype, TEMPO_DTYPE_BF16);
  assert_int_equal((int)rh.payload_len, (int)sizeof Y);
  same_or_within(pay, Y, aY, M * P, N, exact);
  /* the backward reuses the cached bfloat16 X', W' */
  tempo_msg_header_init(&h, TEMPO_OP_BACKWARD);
  h.dtype = TEMPO_DTYPE_BF16, h.task_id = 6, h.handle_x = 1, h.handle_w = 2, h.batch = 1, h.m = M, h.n = N, h.p = P;
  h.lo = 0, h.hi = M, h.flags = TEMPO_MSG_F_WANT_DX | TEMPO_MSG_F_WANT_DW | TEMPO_MSG_F_W_TRANS;
  seg[0] = dy16, len[0] = sizeof dy16;
  pay = ask(w, &h, seg, len, 1, &req, &rep, &rh);
  assert_int_equal(rh.op, TEMPO_OP_RESULT);
  assert_int_equal((int)rh.payload_len, (int)(sizeof dX + sizeof dW));
  same_or_within(pay, dX, adX, M * N, P, exact);
  same_or_within(pay + sizeof dX, dW, adW, P * N, M, exact);
  /* a float32 request naming the bfloat16 operands: refused */
  h.dtype = TEMPO_DTYPE_F32, h.task_id = 7;
  seg[0] = dY, len[0] = sizeof dY;
  ask(w, &h, seg, len, 1, &req, &rep, &rh);
  assert_int_equal(rh.op, TEMPO_OP_ERROR);
  assert_int_equal(rh.code, -TEMPO_STATUS_MISMATCH);
  tempo_msgbuf_free(&req), tempo_msgbuf_free(&rep);
  tempo_worker_free(w);
  assert_true(tempo_gemm_set_backend(TEMPO_GEMM_AUTO));
}

static void test_worker_bf16(void **state) {
  (void)state;
  worker_bf16_case(true);
  worker_bf16_case(false);
}

/* ---- the engine ---- */

/* An engine of the 16-bit wire: tempo mode, 2 in-process workers (rc: rogues, dW' chains). */
static tempo_mm *make(rogue_transport_ctx *rc, double key_range, uint64_t seed) {
  tempo_mm_config cfg;
  tempo_mm_config_default(&cfg);
  cfg.mode = TEMPO_MODE_TEMPO;
  cfg.workers = 2;
  cfg.seed = seed;
  cfg.wire = TEMPO_WIRE_BF16;
  cfg.key_range = key_range;
  cfg.protect = TEMPO_PROTECT_SPATIAL;
  cfg.transport = rogue_transport;
  cfg.transport_ctx = rc;
  tempo_mm *mm;
  assert_int_equal(tempo_mm_create(&cfg, &mm), TEMPO_STATUS_OK);
  tempo_mm_set_training(mm, true);
  return mm;
}

typedef struct {
  tempo_mm_shape sh;
  unsigned kind, accum;
} prod;

/* The products of one step: row splits (plain and mixed, both layouts, one accumulating dX),
 * a batched product, each forward and backward. */
static const prod steps_prods[] = {
    {{1, 640, 147, 40, false}, 0, 0},
    {{1, 512, 144, 16, true}, TEMPO_SITE_SPATIAL, 0},
    {{1, 384, 72, 24, false}, 0, TEMPO_MM_ACCUM_DX},
    {{8, 33, 24, 32, false}, 0, 0},
};
#define N_PRODS (sizeof steps_prods / sizeof steps_prods[0])

/* Inputs of product q with rows of scales e^(+-3) (magnitudes a blinded product meets). */
static void fill(const tempo_mm_shape *sh, float *X, float *W, float *dY, tempo_rng *r) {
  const size_t B = (size_t)sh->batch, m = (size_t)sh->m, n = (size_t)sh->n, p = (size_t)sh->p;
  test_randn(X, B * m * n, r), test_randn(W, B * n * p, r), test_randn(dY, B * m * p, r);
  for (size_t i = 0; i < B * m; i++) {
    const float s = (float)exp(6.0 * tempo_rng_uniform(r) - 3.0);
    for (size_t j = 0; j < n; j++) X[i * n + j] *= s;
  }
}

/* |got - want| <= (2 2^-8 + (k + 10) 2^-24) (|A||B|)_ij: the product of bfloat16-rounded
 * operands, each element rounded relative to itself. mixed: a mixed product rounds blinded
 * combinations of b x b elements (rows and columns of the block, of any magnitudes), which Dec
 * unmixes with blocks of condition <= 4: each element's error is then relative to the largest
 * of (|A||B|) (whose block it shares), 2 b^2 2^-8 of it. */
static void near_product(int r, int k, int c, const float *A, bool at, const float *B, bool bt, const float *got,
                         bool mixed) {
  double *ab = malloc((size_t)r * c * sizeof(double)), *ex = malloc((size_t)r * c * sizeof(double)), big = 0;
  assert_true(ab && ex);
  for (int i = 0; i < r; i++)
    for (int j = 0; j < c; j++) {
      double s = 0, a = 0;
      for (int l = 0; l < k; l++) {
        const double x = at ? A[(size_t)l * r + i] : A[(size_t)i * k + l], y = bt ? B[(size_t)j * k + l] : B[(size_t)l * c + j];
        s += x * y, a += fabs(x * y);
      }
      ex[(size_t)i * c + j] = s, ab[(size_t)i * c + j] = a, big = a > big ? a : big;
    }
  const double b = TEMPO_SCHEME_MIX_BLOCK;
  for (size_t i = 0; i < (size_t)r * c; i++) {
    const double tol = (mixed ? 2 * b * b * 0x1p-8 * big : 2 * 0x1p-8 * ab[i]) + (k + 10) * 0x1p-24 * ab[i] * 1.001 + 1e-30;
    if (fabs(got[i] - ex[i]) > tol) fail_msg("product element %zu: %g, want %g within %g", i, got[i], ex[i], tol);
  }
  free(ab), free(ex);
}

/* `nsteps` steps of steps_prods; checks the products when `check`. Returns the engine's stats. */
static tempo_mm_stats run_steps(tempo_mm *mm, int nsteps, uint64_t seed, bool check, float *last) {
  tempo_rng r;
  tempo_rng_seed(&r, seed, 7);
  tempo_mm_site sites[N_PRODS];
  memset(sites, 0, sizeof sites);
  size_t at = 0;
  for (int t = 0; t < nsteps; t++) {
    for (size_t q = 0; q < N_PRODS; q++) {
      const tempo_mm_shape *sh = &steps_prods[q].sh;
      sites[q].kind = steps_prods[q].kind;
      const size_t B = (size_t)sh->batch, xs = B * sh->m * sh->n, ws = B * sh->n * sh->p, ys = B * sh->m * sh->p;
      float *X = malloc(xs * 4), *W = malloc(ws * 4), *dY = malloc(ys * 4), *Y = malloc(ys * 4);
      float *dX = calloc(xs, 4), *dW = malloc(ws * 4);
      assert_true(X && W && dY && Y && dX && dW);
      fill(sh, X, W, dY, &r);
      assert_int_equal(tempo_mm_forward(mm, &sites[q], sh, X, W, Y), TEMPO_STATUS_OK);
      assert_int_equal(tempo_mm_backward(mm, &sites[q], sh, X, W, dY, dX, dW, steps_prods[q].accum), TEMPO_STATUS_OK);
      if (check && t == 0)
        for (size_t i = 0; i < B; i++) {
          const int m = sh->m, n = sh->n, p = sh->p;
          const float *x = X + i * m * n, *w = W + i * n * p, *dy = dY + i * m * p;
          const bool f = steps_prods[q].kind != 0; /* mixed */
          near_product(m, n, p, x, false, w, sh->w_trans, Y + i * m * p, f);
          near_product(m, p, n, dy, false, w, !sh->w_trans, dX + i * m * n, f);
          if (sh->w_trans) near_product(p, m, n, dy, true, x, false, dW + i * n * p, f);
          else near_product(n, m, p, x, true, dy, false, dW + i * n * p, f);
        }
      if (last && t == nsteps - 1) { /* the last step's outputs, for comparisons */
        memcpy(last + at, Y, ys * 4), at += ys;
        memcpy(last + at, dX, xs * 4), at += xs;
        memcpy(last + at, dW, ws * 4), at += ws;
      }
      free(X), free(W), free(dY), free(Y), free(dX), free(dW);
    }
    tempo_mm_step_end(mm);
  }
  tempo_mm_stats s;
  tempo_mm_stats_run(mm, &s);
  return s;
}

static size_t outputs_floats(void) {
  size_t n = 0;
  for (size_t q = 0; q < N_PRODS; q++) {
    const tempo_mm_shape *sh = &steps_prods[q].sh;
    n += (size_t)sh->batch * ((size_t)sh->m * sh->n + (size_t)sh->m * sh->p + (size_t)sh->n * sh->p); /* Y, dX, dW */
  }
  return n;
}

static void test_honest_no_false_alarms(void **state) {
  (void)state;
  for (int reduce = 0; reduce < 2; reduce++) { /* dW' partials summed by the master, or by the workers' chains */
    rogue_transport_ctx rc = {.reduce = reduce};
    tempo_mm *mm = make(&rc, 0, 31 + (uint64_t)reduce);
    const int nsteps = 120;
    const tempo_mm_stats s = run_steps(mm, nsteps, 9 + (uint64_t)reduce, true, NULL);
    if (s.verify_failures || s.recomputed || s.evictions)
      fail_msg("honest bfloat16 wire: %llu failed checks, %llu recomputed", (unsigned long long)s.verify_failures,
               (unsigned long long)s.recomputed);
    assert_true(s.products >= 3000); /* 120 steps x (3 + 8) instances x (forward, dX, dW) */
    /* half the operand bytes of a float32 wire: the uploads are X', W' and dY* at 2 bytes */
    uint64_t up = 0;
    for (size_t q = 0; q < N_PRODS; q++) {
      const tempo_mm_shape *sh = &steps_prods[q].sh;
      up += 2 * (uint64_t)sh->batch * ((uint64_t)sh->m * sh->n + (uint64_t)sh->n * sh->p + (uint64_t)sh->m * sh->p);
    }
    assert_true(s.bytes_up >= up * nsteps && s.bytes_up < up * nsteps * 3 / 2);
    tempo_mm_free(mm);
  }
}

static void test_rogue_caught(void **state) {
  (void)state;
  const size_t nout = outputs_floats();
  float *honest = calloc(nout, 4), *got = calloc(nout, 4);
  assert_true(honest && got);
  rogue_transport_ctx hc = {.reduce = true};
  tempo_mm *mm = make(&hc, 1.0001, 41);
  const tempo_mm_stats hs = run_steps(mm, 6, 5, false, honest);
  assert_int_equal((int)hs.verify_failures, 0);
  tempo_mm_free(mm);
  int planted_all = 0;
  for (int c = 0; c < ROGUE_CLASSES; c++)
    for (int q = 0; q < 2; q++) {
      rogue_plan pl;
      /* 1e-2 of the row's largest |value|; the keys' scales within 0.02% (key_range 1.0001), so
       * that is the plaintext error too */
      rogue_plan_init(&pl, 1e-2, 2, 5, 2000u + 10u * (unsigned)c + (unsigned)q);
      for (int k = 0; k < ROGUE_KINDS; k++) pl.kinds[k] = q ? k != ROGUE_ELEMENT : k == ROGUE_ELEMENT;
      for (int i = 0; i < ROGUE_CLASSES; i++) pl.classes[i] = i == c;
      rogue_transport_ctx rc = {.plan = &pl, .first_rogue = 1, .reduce = true};
      mm = make(&rc, 1.0001, 41);
      const tempo_mm_stats s = run_steps(mm, 6, 5, false, got);
      const int planted = rogue_total(&pl);
      if (planted < 1 || (int)s.verify_failures != planted || s.evictions)
        fail_msg("%s cheats (%s): %d planted, %llu caught", rogue_class_name[c], q ? "whole tensors" : "elements", planted,
                 (unsigned long long)s.verify_failures);
      assert_memory_equal(got, honest, nout * 4); /* every caught block recomputed by the honest worker */
      planted_all += planted;
      tempo_mm_free(mm);
      pthread_mutex_destroy(&pl.lock);
    }
  assert_true(planted_all >= 12);
  free(honest), free(got);
}

/* A plain-mode trail of the 16-bit wire reads back as the rounded operands and float32 results. */
static void test_trail(void **state) {
  (void)state;
  enum { M = 200, N = 20, P = 12 };
  char dir[] = "/tmp/tempo_test_wire16_XXXXXX";
  assert_non_null(mkdtemp(dir));
  tempo_mm_config cfg;
  tempo_mm_config_default(&cfg);
  cfg.mode = TEMPO_MODE_PLAIN;
  cfg.workers = 2;
  cfg.wire = TEMPO_WIRE_BF16;
  cfg.audit_dir = dir;
  tempo_mm *mm = NULL;
  assert_int_equal(tempo_mm_create(&cfg, &mm), TEMPO_STATUS_OK);
  tempo_mm_set_training(mm, true);
  static float X[M * N], W[P * N], Y[M * P], dY[M * P], dX[M * N], dW[P * N];
  static uint16_t h[M * N];
  tempo_rng r;
  tempo_rng_seed(&r, 8, 16);
  test_randn(X, M * N, &r), test_randn(W, P * N, &r), test_randn(dY, M * P, &r);
  tempo_mm_site site = {0};
  const tempo_mm_shape s = {.batch = 1, .m = M, .n = N, .p = P, .w_trans = true};
  assert_int_equal(tempo_mm_forward(mm, &site, &s, X, W, Y), TEMPO_STATUS_OK);
  assert_int_equal(tempo_mm_backward(mm, &site, &s, X, W, dY, dX, dW, 0), TEMPO_STATUS_OK);
  tempo_mm_step_end(mm);
  tempo_mm_free(mm);
  tempo_trail_step t;
  assert_int_equal(tempo_trail_load_step(dir, 0, &t), TEMPO_STATUS_OK);
  assert_int_equal(t.n, 1);
  const struct {
    const float *got, *plain;
    size_t n;
  } ops[] = {{t.prods[0].x, X, M * N}, {t.prods[0].w, W, P * N}, {t.prods[0].dy, dY, M * P}};
  for (size_t i = 0; i < 3; i++) { /* identity keys: the operands as sent are the plaintext, rounded */
    assert_non_null(ops[i].got);
    float *want = malloc(ops[i].n * sizeof(float));
    assert_non_null(want);
    tempo_bf16_pack(ops[i].plain, h, ops[i].n);
    tempo_bf16_unpack(h, want, ops[i].n);
    assert_memory_equal(ops[i].got, want, ops[i].n * sizeof(float));
    free(want);
  }
  assert_memory_equal(t.prods[0].y, Y, sizeof Y); /* float32 results: plain Dec is a copy */
  tempo_trail_step_free(&t);
  char path[256];
  snprintf(path, sizeof path, "rm -rf %s", dir);
  assert_int_equal(system(path), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rounding),
      cmocka_unit_test(test_passes_are_the_float_passes_rounded),
      cmocka_unit_test(test_protocol_sizes),
      cmocka_unit_test(test_worker_bf16),
      cmocka_unit_test(test_honest_no_false_alarms),
      cmocka_unit_test(test_rogue_caught),
      cmocka_unit_test(test_trail),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
