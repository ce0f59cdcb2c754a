/* test_mix.c - mixing blocks (obf.h tempo_keygen_fill_mix, src/obf/mix.c). For keys with
 * block sizes 1, 2, 4 and 8 on shapes whose sizes are and are not multiples of the block:
 * the blocks' four forms are inverse and transpose of each other (to float rounding); the
 * three worker products computed on mixed operands decode to the plaintext products within
 * a float bound (both W layouts, whole and row-range Dec, accumulation); the dots formed in
 * the passes equal the dots of the floats written / read; a mixed X' has no zero where X has
 * its zero pattern (padding) and keeps no sign pattern; wiping drops the mixing; a pass split
 * over 2 and 3 threads writes the floats and dots of one thread, and draws the same blocks. The b = 4 AVX-512 and AVX2
 * tiles (where the CPU has them) and the portable loops. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "obf/obf_internal.h"
#include "tempo/common.h"
#include "tempo/gemm.h"
#include "tempo/obf.h"
#include "tempo/parallel.h"
#include "tempo/rng.h"
#include "tempo/rows.h"

static tempo_keygen *keygen(void) {
  uint8_t secret[32] = {7};
  tempo_keyspace ks;
  tempo_keyspace_default(&ks);
  tempo_keygen *g;
  assert_int_equal(tempo_keygen_create(secret, &ks, &g), TEMPO_STATUS_OK);
  return g;
}

/* A key of (m, n, p) filled from g, with mixing blocks of b. */
static void mixed_key(tempo_keygen *g, tempo_obf_key *k, int m, int n, int p, int b) {
  assert_int_equal(tempo_obf_key_alloc(k, m, n, p), TEMPO_STATUS_OK);
  assert_int_equal(tempo_keygen_fill(g, k), TEMPO_STATUS_OK);
  assert_int_equal(tempo_keygen_fill_mix(g, k, b), TEMPO_STATUS_OK);
}

static void randn(float *a, size_t n, tempo_rng *r) {
  for (size_t i = 0; i < n; i++) a[i] = (float)tempo_rng_normal(r);
}

/* C (r, c) = op(A) op(B) in double, and |op(A)| |op(B)| into Cb. */
static void ref(int r, int k, int c, const float *A, bool at, const float *B, bool bt, double *C, double *Cb) {
  for (int i = 0; i < r; i++)
    for (int j = 0; j < c; j++) {
      double s = 0, sb = 0;
      for (int t = 0; t < k; t++) {
        const double a = at ? A[(size_t)t * r + i] : A[(size_t)i * k + t];
        const double b = bt ? B[(size_t)j * k + t] : B[(size_t)t * c + j];
        s += a * b, sb += fabs(a * b);
      }
      C[(size_t)i * c + j] = s, Cb[(size_t)i * c + j] = sb;
    }
}

/* max over elements of |got - want| / (bound), bound = |A||B| elementwise (plus a floor). */
static double rel_err(const float *got, const double *want, const double *wb, size_t n) {
  double e = 0;
  for (size_t i = 0; i < n; i++) {
    const double d = fabs(got[i] - want[i]) / (wb[i] + 1e-30);
    if (d > e) e = d;
  }
  return e;
}

static void check_forms(const tempo_obf_key *k, int size, int dim) {
  const int b = k->mix;
  for (int J = 0; J * b < size; J++) {
    const int t = size - J * b < b ? size - J * b : b;
    const float *M = k->mixd[dim][TEMPO_OBF_MIX_M] + (size_t)J * b * b;
    const float *I = k->mixd[dim][TEMPO_OBF_MIX_INV] + (size_t)J * b * b;
    const float *T = k->mixd[dim][TEMPO_OBF_MIX_T] + (size_t)J * b * b;
    const float *IT = k->mixd[dim][TEMPO_OBF_MIX_INVT] + (size_t)J * b * b;
    for (int r = 0; r < t; r++)
      for (int c = 0; c < t; c++) {
        double s = 0;
        for (int q = 0; q < t; q++) s += (double)M[r * b + q] * I[q * b + c];
        assert_true(fabs(s - (r == c)) < 1e-5);
        assert_true(T[r * b + c] == M[c * b + r] && IT[r * b + c] == I[c * b + r]);
      }
  }
}

static void product_case(tempo_keygen *g, int m, int n, int p, int b, bool wt) {
  tempo_rng r;
  tempo_rng_seed(&r, (uint64_t)(m * 1000 + n * 10 + p + b), 1);
  tempo_obf_key k;
  mixed_key(g, &k, m, n, p, b);
  check_forms(&k, m, 0), check_forms(&k, n, 1), check_forms(&k, p, 2);
  const size_t xs = (size_t)m * n, ws = (size_t)n * p, ys = (size_t)m * p;
  float *X = malloc(xs * 4), *W = malloc(ws * 4), *dY = malloc(ys * 4), *Xp = malloc(xs * 4), *Wp = malloc(ws * 4),
        *dYs = malloc(ys * 4), *Yp = malloc(ys * 4), *Y = malloc(ys * 4), *dXp = malloc(xs * 4),
        *dX = malloc(xs * 4), *dWp = malloc(ws * 4), *dW = malloc(ws * 4);
  double *R = malloc((xs + ws + ys) * 8), *Rb = malloc((xs + ws + ys) * 8);
  randn(X, xs, &r), randn(W, ws, &r), randn(dY, ys, &r);
  for (int i = 0; i < m; i += 3) X[(size_t)i * n] = 0; /* a zero pattern the mixing must not keep */
  /* X' with its check dots against the floats written */
  double w0[64], wb0[64], y[64 * 64], yb[64 * 64];
  for (int j = 0; j < n; j++) w0[j] = tempo_rng_normal(&r), wb0[j] = fabs(w0[j]);
  const double *wq[1] = {w0}, *wbq[1] = {wb0};
  double *yq[1] = {y}, *ybq[1] = {yb};
  double u[2 * 64];
  tempo_obf_enc_x_check(&k, X, Xp, 1, wq, wbq, yq, ybq, u);
  int zeros = 0, neg = 0;
  for (int i = 0; i < m; i++) {
    double s = 0, sa = 0, sb = 0; /* the dot, its magnitude, the bound's sum of squares */
    for (int j = 0; j < n; j++) {
      const double x = Xp[(size_t)i * n + j];
      s += x * w0[j], sa += fabs(x * w0[j]), sb += x * x * wb0[j];
    }
    assert_true(fabs(s - y[i]) <= 1e-12 * sa + 1e-300 && fabs(sb - yb[i]) <= 1e-12 * sb + 1e-300);
  }
  for (size_t i = 0; i < xs; i++) zeros += Xp[i] == 0, neg += Xp[i] < 0;
  if (b > 1 && m % b == 0 && n % b == 0) assert_int_equal(zeros, 0); /* a tail block smaller than b mixes less */
  tempo_obf_enc_w(&k, wt, W, Wp);
  tempo_obf_enc_dy(&k, dY, dYs);
  /* the worker's products, in float */
  tempo_sgemm(false, wt, m, p, n, 1.0f, Xp, n, Wp, wt ? n : p, 0.0f, Yp, p);
  tempo_sgemm(false, !wt, m, n, p, 1.0f, dYs, p, Wp, wt ? n : p, 0.0f, dXp, n);
  if (wt)
    tempo_sgemm(true, false, p, n, m, 1.0f, dYs, p, Xp, n, 0.0f, dWp, n);
  else
    tempo_sgemm(true, false, n, p, m, 1.0f, Xp, n, dYs, p, 0.0f, dWp, p);
  /* bound: blinding, product and unblinding lose a few u per term (measured: up to 2.2 (k + 10) u
   * over these cases, k the inner dimension); 8 (k + 10) u leaves room without hiding a wrong form */
#define TOL(k) (8.0 * ((k) + 10) * 0x1p-24)
  tempo_obf_dec_y(&k, Yp, Y);
  ref(m, n, p, X, false, W, wt, R, Rb);
  double e = rel_err(Y, R, Rb, ys);
  if (!(e < TOL(n))) fail_msg("Y (%d,%d,%d) b=%d wt=%d: error %g of |X||W|", m, n, p, b, wt, e);
  /* row ranges of whole blocks decode the same floats */
  float *Y2 = malloc(ys * 4);
  const int mid = (m / 2) / b * b;
  tempo_obf_dec_y_rows(&k, Yp, 0, mid, Y2);
  tempo_obf_dec_y_rows(&k, Yp + (size_t)mid * p, mid, m, Y2);
  assert_memory_equal(Y, Y2, ys * 4);
  free(Y2);
  tempo_obf_dec_dx(&k, dXp, dX, false);
  ref(m, p, n, dY, false, W, !wt, R, Rb);
  e = rel_err(dX, R, Rb, xs);
  if (!(e < TOL(p))) fail_msg("dX (%d,%d,%d) b=%d wt=%d: error %g", m, n, p, b, wt, e);
  /* accumulate: dX += dX */
  float *dX1 = malloc(xs * 4);
  memcpy(dX1, dX, xs * 4);
  tempo_obf_dec_dx_rows(&k, dXp, 0, m, dX, true);
  for (size_t i = 0; i < xs; i++) assert_true(dX[i] == dX1[i] + dX1[i]);
  /* the dX' dots on the reply's rows */
  float vabs[64];
  double v[64], y1[64 * 64], y1b[64 * 64];
  for (int j = 0; j < n; j++) v[j] = tempo_rng_normal(&r), vabs[j] = (float)(v[j] * v[j]); /* the bound's weights */
  const double *vq[1] = {v};
  const float *vaq[1] = {vabs};
  double *y1q[1] = {y1}, *y1bq[1] = {y1b};
  tempo_obf_dec_dx_rows_dots(&k, dXp, 0, m, dX, 1, vq, vaq, y1q, y1bq);
  assert_memory_equal(dX, dX1, xs * 4);
  for (int i = 0; i < m; i++) {
    double s = 0, sa = 0, sb = 0;
    for (int j = 0; j < n; j++) {
      const double x = dXp[(size_t)i * n + j];
      s += x * v[j], sa += fabs(x * v[j]), sb += x * x * vabs[j];
    }
    assert_true(fabs(s - y1[i]) <= 1e-12 * sa + 1e-300 && fabs(sb - y1b[i]) <= 1e-6 * sb + 1e-300);
  }
  free(dX1);
  tempo_obf_dec_dw(&k, wt, dWp, dW, false);
  if (wt)
    ref(p, m, n, dY, true, X, false, R, Rb);
  else
    ref(n, m, p, X, true, dY, false, R, Rb);
  e = rel_err(dW, R, Rb, ws);
  if (!(e < TOL(m))) fail_msg("dW (%d,%d,%d) b=%d wt=%d: error %g", m, n, p, b, wt, e);
  tempo_obf_key_wipe(&k);
  assert_int_equal(k.mix, 0);
  assert_true(k.identity);
  tempo_obf_key_free(&k);
  free(X), free(W), free(dY), free(Xp), free(Wp), free(dYs), free(Yp), free(Y), free(dXp), free(dX), free(dWp),
      free(dW), free(R), free(Rb);
  (void)neg;
}

static void test_products(void **state) {
  (void)state;
  tempo_keygen *g = keygen();
  static const int shapes[][3] = {{16, 8, 4}, {33, 17, 9}, {64, 27, 16}, {7, 5, 3}, {1, 1, 1}, {40, 64, 12}, {64, 36, 16}};
  static const int bs[] = {1, 2, 4, 8};
  /* b = 4's AVX-512 tiles, its AVX2 tiles (where the CPU has them), then the loops */
  for (int isa = tempo_obf_mix_isa(); isa >= TEMPO_OBF_MIX_ISA_SCALAR; isa--) {
    tempo_obf_mix_set_isa(isa);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
      for (size_t i = 0; i < 4; i++)
        for (int wt = 0; wt < 2; wt++) product_case(g, shapes[s][0], shapes[s][1], shapes[s][2], bs[i], wt);
  }
  tempo_obf_mix_set_isa(TEMPO_OBF_MIX_ISA_AUTO);
  tempo_keygen_free(g);
}

/* A mixed X' of nonnegative data (images after a ReLU) has about half its entries negative;
 * the unmixed X' none. */
static void test_signs(void **state) {
  (void)state;
  tempo_keygen *g = keygen();
  enum { M = 64, N = 36, P = 8 };
  static float X[M * N], Xp[M * N];
  tempo_rng r;
  tempo_rng_seed(&r, 3, 0);
  for (int i = 0; i < M * N; i++) X[i] = (float)fabs(tempo_rng_normal(&r));
  tempo_obf_key k;
  assert_int_equal(tempo_obf_key_alloc(&k, M, N, P), TEMPO_STATUS_OK);
  assert_int_equal(tempo_keygen_fill(g, &k), TEMPO_STATUS_OK);
  tempo_obf_enc_x(&k, X, Xp);
  int neg = 0;
  for (int i = 0; i < M * N; i++) neg += Xp[i] < 0;
  assert_int_equal(neg, 0);
  assert_int_equal(tempo_keygen_fill_mix(g, &k, 4), TEMPO_STATUS_OK);
  tempo_obf_enc_x(&k, X, Xp);
  neg = 0;
  for (int i = 0; i < M * N; i++) neg += Xp[i] < 0;
  if (neg < M * N / 4) fail_msg("only %d of %d mixed entries negative", neg, M * N);
  /* refill without mixing drops it; bad block sizes are refused */
  assert_int_equal(tempo_keygen_fill(g, &k), TEMPO_STATUS_OK);
  assert_int_equal(k.mix, 0);
  assert_int_equal(tempo_keygen_fill_mix(g, &k, 3), TEMPO_STATUS_INVALID_ARGUMENT);
  assert_int_equal(tempo_keygen_fill_mix(g, &k, 16), TEMPO_STATUS_INVALID_ARGUMENT);
  tempo_obf_key_free(&k);
  tempo_keygen_free(g);
}

/* max |a - b| over max |b|. */
static double max_rel(const float *a, const float *b, size_t n) {
  double d = 0, s = 0;
  for (size_t i = 0; i < n; i++) {
    if (fabs((double)a[i] - b[i]) > d) d = fabs((double)a[i] - b[i]);
    if (fabs((double)b[i]) > s) s = fabs((double)b[i]);
  }
  return d / (s + 1e-30);
}

/* Outputs of at least TEMPO_OBF_NT_BYTES: the tiles stream them (non-temporal stores; the
 * X' pass mixes into scratch for its dots first). Every kernel's X', dX and Y against the
 * portable loops' (same products, other rounding), the dots against the floats written and
 * read, the dots pass against the plain one bit for bit. */
static void test_large(void **state) {
  (void)state;
  tempo_keygen *g = keygen();
  enum { M = 16384, N = 128, P = 16 }; /* X' and dX 8 MiB */
  const size_t xs = (size_t)M * N, ys = (size_t)M * P;
  /* 64-byte aligned (tempo_alloc_floats), as the engine's buffers: the streamed stores need it */
  float *X = tempo_alloc_floats(xs), *dXp = tempo_alloc_floats(xs), *Yp = tempo_alloc_floats(ys),
        *ref_x = tempo_alloc_floats(xs), *ref_dx = tempo_alloc_floats(xs), *ref_y = tempo_alloc_floats(ys),
        *out = tempo_alloc_floats(xs), *out2 = tempo_alloc_floats(xs);
  double *y = malloc(4 * (size_t)M * 8), w[2 * N], wb[2 * N], v[N], u[4 * N];
  float vsq[N];
  tempo_rng r;
  tempo_rng_seed(&r, 11, 0);
  randn(X, xs, &r), randn(dXp, xs, &r), randn(Yp, ys, &r);
  for (int j = 0; j < 2 * N; j++) w[j] = tempo_rng_normal(&r), wb[j] = fabs(w[j]);
  for (int j = 0; j < N; j++) v[j] = tempo_rng_normal(&r), vsq[j] = (float)(v[j] * v[j]);
  const double *wq[2] = {w, w + N}, *wbq[2] = {wb, wb + N}, *vq[1] = {v};
  const float *vsqq[1] = {vsq};
  double *yq[2] = {y, y + M}, *ybq[2] = {y + 2 * M, y + 3 * M};
  tempo_obf_key k;
  mixed_key(g, &k, M, N, P, 4);
  for (int isa = TEMPO_OBF_MIX_ISA_SCALAR; isa <= tempo_obf_mix_isa(); isa++) {
    tempo_obf_mix_set_isa(isa);
    tempo_obf_enc_x_check(&k, X, out, 2, wq, wbq, yq, ybq, u);
    for (int i = 0; i < M; i++)
      for (int q = 0; q < 2; q++) {
        double s = 0, sa = 0, sb = 0;
        for (int j = 0; j < N; j++) {
          const double x = out[(size_t)i * N + j];
          s += x * w[q * N + j], sa += fabs(x * w[q * N + j]), sb += x * x * wb[q * N + j];
        }
        if (!(fabs(s - yq[q][i]) <= 1e-12 * sa && fabs(sb - ybq[q][i]) <= 1e-12 * sb))
          fail_msg("isa %d: X' dot %d of row %d: %g, the row's %g", isa, q, i, yq[q][i], s);
      }
    if (isa == TEMPO_OBF_MIX_ISA_SCALAR) memcpy(ref_x, out, xs * 4);
    double e = max_rel(out, ref_x, xs);
    if (!(e < 1e-5)) fail_msg("isa %d: X' off the loops' by %g", isa, e);
    tempo_obf_dec_dx_rows_dots(&k, dXp, 0, M, out, 1, vq, vsqq, yq, ybq);
    for (int i = 0; i < M; i++) {
      double s = 0, sa = 0;
      for (int j = 0; j < N; j++) s += (double)dXp[(size_t)i * N + j] * v[j], sa += fabs(dXp[(size_t)i * N + j] * v[j]);
      if (!(fabs(s - yq[0][i]) <= 1e-12 * sa)) fail_msg("isa %d: dX' dot of row %d", isa, i);
    }
    tempo_obf_dec_dx(&k, dXp, out2, false);
    assert_memory_equal(out, out2, xs * 4);
    if (isa == TEMPO_OBF_MIX_ISA_SCALAR) memcpy(ref_dx, out, xs * 4);
    e = max_rel(out, ref_dx, xs);
    if (!(e < 1e-5)) fail_msg("isa %d: dX off the loops' by %g", isa, e);
    tempo_obf_dec_y(&k, Yp, out);
    if (isa == TEMPO_OBF_MIX_ISA_SCALAR) memcpy(ref_y, out, ys * 4);
    e = max_rel(out, ref_y, ys);
    if (!(e < 1e-5)) fail_msg("isa %d: Y off the loops' by %g", isa, e);
  }
  tempo_obf_mix_set_isa(TEMPO_OBF_MIX_ISA_AUTO);
  tempo_obf_key_free(&k);
  tempo_keygen_free(g);
  float *f[] = {X, dXp, Yp, ref_x, ref_dx, ref_y, out, out2};
  for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) tempo_free_floats(f[i]);
  free(y);
}

/* A pass over the master's threads (mix.c: whole blocks per part, a Dec part's input rows and
 * dots moved with it) gives the floats and dots of the one-thread pass, bit for bit: Enc X'
 * with 2 check dots from a matrix and from a row source, Dec dX rows [lo, hi) with a dot (lo
 * and hi inside the matrix, so the parts' offsets matter), Dec dX accumulated, Dec Y; every
 * kernel set. 16384 x 128: up to 8 parts of 256k elements. */
static void fill_rows_of(const void *ctx, int lo, int hi, float *dst) {
  memcpy(dst, (const float *)ctx + (size_t)lo * 128, (size_t)(hi - lo) * 128 * sizeof(float));
}

static void test_threads(void **state) {
  (void)state;
  tempo_keygen *g = keygen();
  enum { M = 16384, N = 128, P = 16, LO = 400, HI = M - 148, OUTS = 6 };
  const size_t xs = (size_t)M * N, ys = (size_t)M * P;
  float *X = tempo_alloc_floats(xs), *dXp = tempo_alloc_floats(xs), *Yp = tempo_alloc_floats(ys);
  float *out[OUTS], *ref_out[OUTS];
  double *dots = malloc(4 * (size_t)M * sizeof(double)), *ref_dots = malloc(2 * 4 * (size_t)M * sizeof(double));
  assert_true(X && dXp && Yp && dots && ref_dots);
  for (int o = 0; o < OUTS; o++) {
    out[o] = tempo_alloc_floats(xs), ref_out[o] = tempo_alloc_floats(xs);
    assert_true(out[o] && ref_out[o]);
  }
  tempo_rng r;
  tempo_rng_seed(&r, 23, 0);
  randn(X, xs, &r), randn(dXp, xs, &r), randn(Yp, ys, &r);
  double w[2 * N], wb[2 * N], v[N], u[4 * N];
  float vsq[N];
  for (int j = 0; j < 2 * N; j++) w[j] = tempo_rng_normal(&r), wb[j] = fabs(w[j]);
  for (int j = 0; j < N; j++) v[j] = tempo_rng_normal(&r), vsq[j] = (float)(v[j] * v[j]);
  const double *wq[2] = {w, w + N}, *wbq[2] = {wb, wb + N}, *vq[1] = {v};
  const float *vsqq[1] = {vsq};
  double *yq[2] = {dots, dots + M}, *ybq[2] = {dots + 2 * M, dots + 3 * M};
  const tempo_rows src = {.fill = fill_rows_of, .ctx = X, .rows = M, .cols = N, .bytes = xs * sizeof(float)};
  tempo_obf_key k;
  mixed_key(g, &k, M, N, P, 4);
  for (int isa = TEMPO_OBF_MIX_ISA_SCALAR; isa <= tempo_obf_mix_isa(); isa++) {
    tempo_obf_mix_set_isa(isa);
    for (int t = 1; t <= 3; t++) {
      tempo_obf_set_threads(t);
      for (int o = 0; o < OUTS; o++) memset(out[o], 0, xs * sizeof(float));
      memset(dots, 0, 4 * (size_t)M * sizeof(double));
      tempo_obf_enc_x_check(&k, X, out[0], 2, wq, wbq, yq, ybq, u);
      if (t == 1) memcpy(ref_dots, dots, 4 * (size_t)M * sizeof(double));
      else if (memcmp(ref_dots, dots, 4 * (size_t)M * sizeof(double))) fail_msg("isa %d, %d threads: X' dots", isa, t);
      tempo_obf_enc_x_check_rows(&k, &src, out[1], 2, wq, wbq, yq, ybq, u);
      if (memcmp(ref_dots, dots, 4 * (size_t)M * sizeof(double))) fail_msg("isa %d, %d threads: X' (rows) dots", isa, t);
      memset(dots, 0, 4 * (size_t)M * sizeof(double));
      tempo_obf_dec_dx_rows_dots(&k, dXp + (size_t)LO * N, LO, HI, out[2], 1, vq, vsqq, yq, ybq);
      if (t == 1) memcpy(ref_dots + 4 * M, dots, 4 * (size_t)M * sizeof(double));
      else if (memcmp(ref_dots + 4 * M, dots, 4 * (size_t)M * sizeof(double)))
        fail_msg("isa %d, %d threads: dX' dots", isa, t);
      memcpy(out[3], X, xs * sizeof(float));
      tempo_obf_dec_dx(&k, dXp, out[3], true);
      tempo_obf_dec_dx(&k, dXp, out[4], false);
      tempo_obf_dec_y(&k, Yp, out[5]);
      for (int o = 0; o < OUTS; o++) {
        if (t == 1) memcpy(ref_out[o], out[o], xs * sizeof(float));
        else if (memcmp(ref_out[o], out[o], xs * sizeof(float))) fail_msg("isa %d, %d threads: output %d", isa, t, o);
      }
      assert_memory_equal(out[0], out[1], xs * sizeof(float)); /* X' from the matrix or its rows */
    }
  }
  tempo_obf_set_threads(1);
  tempo_obf_mix_set_isa(TEMPO_OBF_MIX_ISA_AUTO);
  tempo_obf_key_free(&k);
  tempo_keygen_free(g);
  for (int o = 0; o < OUTS; o++) tempo_free_floats(out[o]), tempo_free_floats(ref_out[o]);
  tempo_free_floats(X), tempo_free_floats(dXp), tempo_free_floats(Yp);
  free(dots), free(ref_dots);
}

/* The mixing blocks are drawn in chunks on the master's threads (keys.c): 1, 2 and 3 threads
 * give the same blocks, bit for bit, and leave the generator at the same point (its next
 * bytes equal); b = 4 and 8, a dimension of many chunks and two of one. */
static void test_fill_threads(void **state) {
  (void)state;
  enum { M = 4096 * 8 + 12, N = 72, P = 10 };
  const int sizes[3] = {M, N, P};
  float *ref[3][4] = {{NULL}};
  for (int b = 4; b <= 8; b *= 2)
    for (int t = 1; t <= 3; t++) {
      tempo_parallel_set_threads(t);
      tempo_keygen *g = keygen();
      tempo_obf_key k;
      mixed_key(g, &k, M, N, P, b);
      uint8_t next[16];
      static uint8_t ref_next[16];
      tempo_keygen_bytes(g, next, sizeof next);
      for (int d = 0; d < 3; d++) {
        const size_t floats = (size_t)((sizes[d] + b - 1) / b) * b * b;
        for (int v = 0; v < 4; v++) {
          if (t == 1) {
            free(ref[d][v]);
            ref[d][v] = malloc(floats * sizeof(float));
            assert_non_null(ref[d][v]);
            memcpy(ref[d][v], k.mixd[d][v], floats * sizeof(float));
          } else { /* the t x t written part of each block (a last smaller block: t < b) */
            for (int J = 0; J * b < sizes[d]; J++) {
              const int tt = sizes[d] - J * b < b ? sizes[d] - J * b : b;
              for (int r = 0; r < tt; r++)
                if (memcmp(ref[d][v] + (size_t)J * b * b + (size_t)r * b, k.mixd[d][v] + (size_t)J * b * b + (size_t)r * b,
                           (size_t)tt * sizeof(float)))
                  fail_msg("b %d, %d threads: dimension %d form %d block %d differs from one thread's", b, t, d, v, J);
            }
          }
        }
      }
      /* chunks have streams of their own: block 0 and the first block of each later chunk differ */
      for (int J = 256; J * b < M; J += 256)
        assert_memory_not_equal(k.mixd[0][0], k.mixd[0][0] + (size_t)J * b * b, (size_t)b * b * sizeof(float));
      if (t == 1) memcpy(ref_next, next, sizeof next);
      else assert_memory_equal(ref_next, next, sizeof next);
      tempo_obf_key_free(&k);
      tempo_keygen_free(g);
    }
  for (int d = 0; d < 3; d++)
    for (int v = 0; v < 4; v++) free(ref[d][v]);
  tempo_parallel_set_threads(1);
}

/* det of the n x n a (row-major, n <= 8; a is overwritten), by elimination with pivoting. */
static double det(double *a, int n) {
  double d = 1;
  for (int c = 0; c < n; c++) {
    int piv = c;
    for (int r = c + 1; r < n; r++)
      if (fabs(a[r * n + c]) > fabs(a[piv * n + c])) piv = r;
    if (piv != c) {
      for (int j = 0; j < n; j++) {
        const double t = a[c * n + j];
        a[c * n + j] = a[piv * n + j], a[piv * n + j] = t;
      }
      d = -d;
    }
    d *= a[c * n + c];
    for (int r = c + 1; r < n; r++) {
      const double f = a[r * n + c] / a[c * n + c];
      for (int j = c; j < n; j++) a[r * n + j] -= f * a[c * n + j];
    }
  }
  return d;
}

/* The rotations Q of the blocks (B = Q diag(s), so B o B^-T = Q o Q) are Haar-distributed on
 * O(b): the moments E q^2 = 1/b, E q^4 = 3/(b(b+2)), E q_ij^2 q_kl^2 = (b+1)/((b-1)b(b+2)) and
 * E q_ij q_kl q_il q_kj = -1/((b-1)b(b+2)) (i != k, j != l), E q_ij q_kl = 0 for two entries,
 * and det Q = -1 half of the time. b = 4 (quaternions) and b = 8 (Gram-Schmidt) over many
 * blocks; a rotation from one quaternion only (same 4th moments), or without the reflection,
 * fails them. */
/* Wiping a mixed key zeroes every float its blocks and its passes' scratch wrote (the wipe
 * covers only that part of a buffer sized for TEMPO_OBF_MIX_MAX): all four passes of every
 * kernel, b = 4 then b = 2 without a fill between, then a wipe; the whole buffer reads zero. */
static void test_wipe_extent(void **state) {
  (void)state;
  tempo_keygen *g = keygen();
  enum { M = 64, N = 40, P = 24 };
  tempo_obf_key k;
  mixed_key(g, &k, M, N, P, 4); /* allocates the buffer */
  memset(k.mixbuf, 0, k.mix_floats * sizeof(float));                 /* a known start */
  float *X = tempo_alloc_floats(M * N), *W = tempo_alloc_floats(N * P), *Y = tempo_alloc_floats(M * P);
  float *o = tempo_alloc_floats(M * N);
  tempo_rng r;
  tempo_rng_seed(&r, 5, 0);
  randn(X, M * N, &r), randn(W, N * P, &r), randn(Y, M * P, &r);
  for (int isa = TEMPO_OBF_MIX_ISA_SCALAR; isa <= tempo_obf_mix_isa(); isa++)
    for (int b = 4; b >= 2; b /= 2) {
      assert_int_equal(tempo_keygen_fill(g, &k), TEMPO_STATUS_OK);
      assert_int_equal(tempo_keygen_fill_mix(g, &k, b), TEMPO_STATUS_OK);
      if (b == 2) assert_int_equal(tempo_keygen_fill_mix(g, &k, 4), TEMPO_STATUS_OK); /* again, no fill */
      tempo_obf_mix_set_isa(isa);
      tempo_obf_enc_x(&k, X, o), tempo_obf_enc_w(&k, false, W, o), tempo_obf_enc_dy(&k, Y, o);
      tempo_obf_dec_dx(&k, X, o, false), tempo_obf_dec_y(&k, Y, o);
      tempo_obf_key_wipe(&k);
      size_t nonzero = 0;
      for (size_t i = 0; i < k.mix_floats; i++) nonzero += k.mixbuf[i] != 0;
      if (nonzero) fail_msg("isa %d b %d: %zu floats of the mixing buffer survive the wipe", isa, b, nonzero);
    }
  tempo_obf_mix_set_isa(TEMPO_OBF_MIX_ISA_AUTO);
  tempo_free_floats(X), tempo_free_floats(W), tempo_free_floats(Y), tempo_free_floats(o);
  tempo_obf_key_free(&k);
  tempo_keygen_free(g);
}

static void test_haar(void **state) {
  (void)state;
  tempo_keygen *g = keygen();
  static const int bs[] = {4, 8};
  for (size_t bi = 0; bi < 2; bi++) {
    const int b = bs[bi], nblk = 40000 / b, M = nblk * b;
    tempo_obf_key k;
    mixed_key(g, &k, M, 8, 8, b);
    double m2 = 0, m4 = 0, p22 = 0, c4 = 0, neg = 0, np = 0, nc = 0, q[64];
    static double cross[64 * 64];
    memset(cross, 0, sizeof cross);
    for (int J = 0; J < nblk; J++) {
      const float *B = k.mixd[0][TEMPO_OBF_MIX_M] + (size_t)J * b * b, *IT = k.mixd[0][TEMPO_OBF_MIX_INVT] + (size_t)J * b * b;
      for (int i = 0; i < b * b; i++) q[i] = copysign(sqrt((double)B[i] * IT[i]), B[i]);
      for (int i = 0; i < b * b; i++) m2 += q[i] * q[i], m4 += q[i] * q[i] * q[i] * q[i];
      for (int i = 0; i < b * b; i++)
        for (int j = 0; j < b * b; j++) cross[i * b * b + j] += q[i] * q[j];
      for (int i = 0; i < b; i++)
        for (int kk = i + 1; kk < b; kk++)
          for (int j = 0; j < b; j++)
            for (int l = 0; l < b; l++) {
              if (j == l) continue;
              p22 += q[i * b + j] * q[i * b + j] * q[kk * b + l] * q[kk * b + l], np++;
              if (j < l) c4 += q[i * b + j] * q[kk * b + l] * q[i * b + l] * q[kk * b + j], nc++;
            }
      neg += det(q, b) < 0;
    }
    m2 /= (double)nblk * b * b, m4 /= (double)nblk * b * b, p22 /= np, c4 /= nc, neg /= nblk;
    const double n = b, e4 = 3 / (n * (n + 2)), e22 = (n + 1) / ((n - 1) * n * (n + 2)), ec = -1 / ((n - 1) * n * (n + 2));
    for (int i = 0; i < b * b * b * b; i++) cross[i] /= nblk;
    double worst = 0; /* E q_ij q_kl = 0 for (i, j) != (k, l): a rotation from one quaternion has 1/4 */
    for (int i = 0; i < b * b; i++)
      for (int j = 0; j < b * b; j++)
        if (i != j && fabs(cross[i * b * b + j]) > worst) worst = fabs(cross[i * b * b + j]);
    if (!(fabs(m2 - 1 / n) < 1e-3 && fabs(m4 - e4) < 0.04 * e4 && fabs(p22 - e22) < 0.04 * e22 &&
          fabs(c4 - ec) < 0.25 * -ec && fabs(neg - 0.5) < 0.03 && worst < 0.02))
      fail_msg("b=%d: E q^2 %g (%g), E q^4 %g (%g), E q^2 q^2 %g (%g), E qqqq %g (%g), P(det<0) %g, max E q q %g", b,
               m2, 1 / n, m4, e4, p22, e22, c4, ec, neg, worst);
    tempo_obf_key_free(&k);
  }
  tempo_keygen_free(g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_products),
      cmocka_unit_test(test_signs),
      cmocka_unit_test(test_large),
      cmocka_unit_test(test_threads),
      cmocka_unit_test(test_fill_threads),
      cmocka_unit_test(test_wipe_extent),
      cmocka_unit_test(test_haar),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
