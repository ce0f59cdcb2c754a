/* test_shield.c - shield mode (shield.h): products equal float64 reference products
 * within the stated tolerance (normalised error <= 2e-3 at the default alpha = 32) on odd
 * shapes, forward, dX, dW, w_trans both ways, batch > 1, accumulate flags; the master
 * refuses fewer than 4 workers with INVALID_ARGUMENT; every role of a product goes to a
 * distinct worker; the role signs recombine the product exactly (in double, on
 * integers); mask expansion is deterministic per seed and standard normal; the view
 * test: what each worker receives does not reveal signs or zero patterns (tempo mode
 * does, as a control), and two different secrets give payload distributions that do
 * not separate. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "offload/shield_engine.h"
#include "tempo/audit.h"
#include "tempo/common.h"
#include "tempo/matmul.h"
#include "tempo/protocol.h"
#include "tempo/rng.h"
#include "tempo/shield.h"

#define TOL 2e-3

static tempo_mm *make(tempo_mode mode, int workers, const char *audit) {
  tempo_mm_config cfg;
  tempo_mm_config_default(&cfg);
  cfg.mode = mode;
  cfg.workers = workers;
  cfg.seed = 99;
  cfg.audit_dir = audit;
  tempo_mm *mm;
  assert_int_equal(tempo_mm_create(&cfg, &mm), TEMPO_STATUS_OK);
  tempo_mm_set_training(mm, true);
  return mm;
}

static void randn(float *a, size_t n, tempo_rng *r) {
  for (size_t i = 0; i < n; i++) a[i] = (float)tempo_rng_normal(r);
}

/* max |a - b| / max |b| */
static double nerr(const float *a, const double *b, size_t n) {
  double d = 0, s = 0;
  for (size_t i = 0; i < n; i++) {
    d = fmax(d, fabs(a[i] - b[i]));
    s = fmax(s, fabs(b[i]));
  }
  return d / (s > 0 ? s : 1);
}

/* C (r, c) = op(A) op(B) in double; A (r, k) or stored (k, r) with at; B (k, c) or (c, k) with bt */
static void ref(int r, int k, int c, const float *A, bool at, const float *B, bool bt, double *C, const float *acc0) {
  for (int i = 0; i < r; i++)
    for (int j = 0; j < c; j++) {
      double s = acc0 ? acc0[i * c + j] : 0;
      for (int l = 0; l < k; l++) s += (double)(at ? A[l * r + i] : A[i * k + l]) * (bt ? B[j * k + l] : B[l * c + j]);
      C[i * c + j] = s;
    }
}

static void check_shape(tempo_mm *mm, int batch, int m, int n, int p, bool wt, unsigned flags, tempo_rng *rng) {
  tempo_mm_shape sh = {batch, m, n, p, wt};
  const size_t xs = (size_t)m * n, ws = (size_t)n * p, ys = (size_t)m * p;
  float *X = malloc(batch * xs * 4), *W = malloc(batch * ws * 4), *Y = malloc(batch * ys * 4),
        *dY = malloc(batch * ys * 4), *dX = malloc(batch * xs * 4), *dW = malloc(batch * ws * 4),
        *dX0 = malloc(batch * xs * 4), *dW0 = malloc(batch * ws * 4);
  double *R = malloc(batch * (xs + ws + ys) * 8);
  randn(X, batch * xs, rng);
  randn(W, batch * ws, rng);
  randn(dY, batch * ys, rng);
  randn(dX0, batch * xs, rng);
  randn(dW0, batch * ws, rng);
  memcpy(dX, dX0, batch * xs * 4);
  memcpy(dW, dW0, batch * ws * 4);
  tempo_mm_site site = {0};
  assert_int_equal(tempo_mm_forward(mm, &site, &sh, X, W, Y), TEMPO_STATUS_OK);
  assert_int_equal(tempo_mm_backward(mm, &site, &sh, X, W, dY, dX, dW, flags), TEMPO_STATUS_OK);
  for (int b = 0; b < batch; b++) {
    ref(m, n, p, X + b * xs, false, W + b * ws, wt, R, NULL);
    double e = nerr(Y + b * ys, R, ys);
    if (e > TOL) fail_msg("forward %dx%dx%d wt=%d b=%d: err %g", m, n, p, wt, b, e);
    ref(m, p, n, dY + b * ys, false, W + b * ws, !wt, R, (flags & TEMPO_MM_ACCUM_DX) ? dX0 + b * xs : NULL);
    e = nerr(dX + b * xs, R, xs);
    if (e > TOL) fail_msg("dX %dx%dx%d wt=%d b=%d: err %g", m, n, p, wt, b, e);
    const float *acc = (flags & TEMPO_MM_ACCUM_DW) ? dW0 + b * ws : NULL;
    if (wt) ref(p, m, n, dY + b * ys, true, X + b * xs, false, R, acc);
    else ref(n, m, p, X + b * xs, true, dY + b * ys, false, R, acc);
    e = nerr(dW + b * ws, R, ws);
    if (e > TOL) fail_msg("dW %dx%dx%d wt=%d b=%d: err %g", m, n, p, wt, b, e);
  }
  tempo_mm_step_end(mm);
  free(X), free(W), free(Y), free(dY), free(dX), free(dW), free(dX0), free(dW0), free(R);
}

static void test_products(void **state) {
  (void)state;
  tempo_rng rng;
  tempo_rng_seed(&rng, 5, 0);
  tempo_mm *mm = make(TEMPO_MODE_SHIELD, 5, NULL);
  static const int shapes[][4] = {{1, 1, 1, 1}, {1, 7, 3, 5}, {1, 33, 17, 9}, {1, 64, 100, 31}, {3, 13, 8, 11}, {5, 9, 16, 9}};
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
    for (int wt = 0; wt < 2; wt++)
      for (unsigned fl = 0; fl < 4; fl += 3)
        check_shape(mm, shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3], wt, fl, &rng);
  tempo_mm_stats st;
  tempo_mm_stats_run(mm, &st);
  assert_int_equal(st.verify_failures, 0);
  assert_int_equal(st.recomputed, 0);
  assert_true(st.products > 0 && st.bytes_up > 0 && st.bytes_down > 0);
  tempo_mm_free(mm);
}

static void test_eval_backward_refused(void **state) {
  (void)state;
  tempo_mm *mm = make(TEMPO_MODE_SHIELD, 4, NULL);
  tempo_mm_set_training(mm, false);
  float X[6] = {1, 2, 3, 4, 5, 6}, W[6] = {1, 0, 0, 1, 1, 1}, Y[4], dY[4] = {1, 1, 1, 1}, dX[6];
  tempo_mm_shape sh = {1, 2, 3, 2, false};
  tempo_mm_site site = {0};
  assert_int_equal(tempo_mm_forward(mm, &site, &sh, X, W, Y), TEMPO_STATUS_OK);
  assert_true(fabsf(Y[0] - 4) < 1e-2f && fabsf(Y[1] - 5) < 1e-2f && fabsf(Y[2] - 10) < 1e-2f && fabsf(Y[3] - 11) < 1e-2f);
  assert_int_equal(tempo_mm_backward(mm, &site, &sh, X, W, dY, dX, NULL, 0), TEMPO_STATUS_INVALID_ARGUMENT);
  tempo_mm_free(mm);
}

static void test_too_few_workers(void **state) {
  (void)state;
  for (int w = 1; w < TEMPO_SHIELD_MIN_WORKERS; w++) {
    tempo_mm_config cfg;
    tempo_mm_config_default(&cfg);
    cfg.mode = TEMPO_MODE_SHIELD;
    cfg.workers = w;
    tempo_mm *mm = (tempo_mm *)&cfg;
    assert_int_equal(tempo_mm_create(&cfg, &mm), TEMPO_STATUS_INVALID_ARGUMENT);
    assert_null(mm);
    assert_non_null(strstr(tempo_errmsg(), "at least 4 workers"));
  }
}

static void test_roles(void **state) {
  (void)state;
  /* signs recombine (X''-R)(W''-S) etc. exactly: check on scalars */
  const double x = 3, w = -5, dy = 7, r = 11, s = 13, t = -17;
  double y = 0, dx = 0, dw = 0;
  for (int k = 0; k < TEMPO_SHIELD_ROLES; k++) {
    double xo = tempo_shield_role_masked_x(k) ? x + r : r, wo = tempo_shield_role_masked_w(k) ? w + s : s;
    double dyo = tempo_shield_role_masked_dy(k) ? dy + t : t;
    y += tempo_shield_sign_y(k) * xo * wo;
    dx += tempo_shield_sign_dx(k) * dyo * wo;
    dw += tempo_shield_sign_dw(k) * xo * dyo;
    /* no role holds a masked value together with its own mask */
  }
  assert_true(y == x * w && dx == dy * w && dw == x * dy);
  /* roles hold exactly one of {X'', R}, {W'', S}, {dY**, T}: masked values and masks never meet */
  int a = 0, d = 0;
  for (int k = 0; k < TEMPO_SHIELD_ROLES; k++) {
    a += tempo_shield_role_masked_dy(k);
    d += tempo_shield_role_masked_x(k) + tempo_shield_role_masked_w(k);
  }
  assert_int_equal(a, 2);
  assert_int_equal(d, 4);
  bool live[6] = {true, false, true, true, true, true};
  int roles[4];
  assert_true(tempo_shield_assign(6, live, 5, roles));
  assert_int_equal(roles[0], 5), assert_int_equal(roles[1], 0), assert_int_equal(roles[2], 2), assert_int_equal(roles[3], 3);
  live[2] = live[3] = false;
  assert_false(tempo_shield_assign(6, live, 0, roles));
}

static void test_expand(void **state) {
  (void)state;
  enum { N = 100001 };
  float *a = malloc(N * 4), *b = malloc(N * 4);
  uint8_t seed[32] = {1, 2, 3};
  tempo_shield_expand(seed, 2.0f, a, N);
  tempo_shield_expand(seed, 2.0f, b, N);
  assert_memory_equal(a, b, N * 4);
  double s1 = 0, s2 = 0, s4 = 0;
  for (int i = 0; i < N; i++) s1 += a[i], s2 += (double)a[i] * a[i], s4 += pow(a[i], 4);
  double mean = s1 / N, var = s2 / N;
  assert_true(fabs(mean) < 0.03 && fabs(var - 4.0) < 0.08);
  assert_true(fabs(s4 / N / (var * var) - 2.7) < 0.08); /* Irwin-Hall n = 4: kurtosis 3 - 6/20 */
  for (int i = 0; i < N; i++) assert_true(fabsf(a[i]) <= 2.0f * 1.7320508f * 2.0f * 1.0001f);
  seed[0] = 2;
  tempo_shield_expand(seed, 2.0f, b, N);
  double c = 0;
  for (int i = 0; i < N; i++) c += (double)a[i] * b[i];
  assert_true(fabs(c / N / 4.0) < 0.02);
  free(a), free(b);
}

/* Runs one training forward + backward of X (positive, half zeros) in `mode` with an
 * audit trail, then measures over all UP payload floats: fraction > 0 and fraction == 0. */
static void view_of(tempo_mode mode, int workers, float xval_sign, double *pos, double *zero, double *mean_over_rms) {
  char dir[] = "/tmp/tempo_shield_viewXXXXXX";
  assert_non_null(mkdtemp(dir));
  tempo_mm *mm = make(mode, workers, dir);
  enum { M = 64, N = 48, P = 40 };
  static float X[M * N], W[N * P], Y[M * P], dY[M * P], dX[M * N], dW[N * P];
  tempo_rng r;
  tempo_rng_seed(&r, 7, 0);
  for (int i = 0; i < M * N; i++) X[i] = (i % 2) ? 0.0f : xval_sign * (0.5f + (float)tempo_rng_uniform(&r));
  for (int i = 0; i < N * P; i++) W[i] = (i % 2) ? 0.0f : xval_sign * (0.5f + (float)tempo_rng_uniform(&r));
  for (int i = 0; i < M * P; i++) dY[i] = xval_sign * (0.5f + (float)tempo_rng_uniform(&r));
  tempo_mm_shape sh = {1, M, N, P, false};
  tempo_mm_site site = {0};
  assert_int_equal(tempo_mm_forward(mm, &site, &sh, X, W, Y), TEMPO_STATUS_OK);
  assert_int_equal(tempo_mm_backward(mm, &site, &sh, X, W, dY, dX, dW, 0), TEMPO_STATUS_OK);
  tempo_mm_step_end(mm);
  tempo_mm_free(mm);
  char path[256];
  snprintf(path, sizeof path, "%s/%s", dir, TEMPO_AUDIT_FILE);
  tempo_audit_reader *rd;
  assert_int_equal(tempo_audit_open(path, &rd), TEMPO_STATUS_OK);
  size_t npos = 0, nzero = 0, total = 0;
  double s1 = 0, s2 = 0;
  for (;;) {
    tempo_audit_record rec;
    bool end;
    assert_int_equal(tempo_audit_next(rd, &rec, &end), TEMPO_STATUS_OK);
    if (end) break;
    if (rec.direction != TEMPO_AUDIT_UP) continue;
    const float *f = (const float *)rec.payload;
    size_t nf = rec.header.payload_len / 4;
    for (size_t i = 0; i < nf; i++) {
      float v;
      memcpy(&v, f + i, 4);
      npos += v > 0, nzero += v == 0, s1 += v, s2 += (double)v * v;
    }
    total += nf;
  }
  tempo_audit_close(rd);
  unlink(path);
  rmdir(dir);
  assert_true(total > 0);
  *pos = (double)npos / total;
  *zero = (double)nzero / total;
  *mean_over_rms = s1 / total / sqrt(s2 / total);
}

static void test_view(void **state) {
  (void)state;
  double pos, zero, mr, pos2, zero2, mr2;
  view_of(TEMPO_MODE_TEMPO, 2, 1.0f, &pos, &zero, &mr); /* control: tempo keeps signs and zeros */
  assert_true(pos > 0.6 && zero > 0.3);
  view_of(TEMPO_MODE_SHIELD, 4, 1.0f, &pos, &zero, &mr);
  view_of(TEMPO_MODE_SHIELD, 4, -1.0f, &pos2, &zero2, &mr2);
  /* signal per element ~ 1/alpha = 1/32: sign agreement ~ 50% + 0.4/32 at most on the
   * masked halves, diluted by the pure masks */
  if (fabs(pos - 0.5) > 0.02 || fabs(pos2 - 0.5) > 0.02 || zero != 0 || zero2 != 0)
    fail_msg("shield view: positive %g / %g, zero %g / %g", pos, pos2, zero, zero2);
  /* two secrets of opposite sign: the payload mean (in units of its rms) does not separate beyond 1/alpha */
  if (fabs(mr - mr2) > 2.0 / TEMPO_SHIELD_DEFAULT_ALPHA) fail_msg("shield view: mean/rms %g vs %g", mr, mr2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_roles),           cmocka_unit_test(test_expand),
      cmocka_unit_test(test_too_few_workers), cmocka_unit_test(test_eval_backward_refused),
      cmocka_unit_test(test_products),        cmocka_unit_test(test_view),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
