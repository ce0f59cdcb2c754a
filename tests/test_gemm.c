/* test_gemm.c - tempo_sgemm against a naive double-precision reference: every backend in the
 * build (and the automatic choice), all four transpose cases, alpha/beta, padded row strides,
 * odd shapes on both sides of the automatic threshold, split over 2 and 3 threads; the backend
 * switch; signals arriving during products (a signal handled inside oneDNN's JIT sgemm corrupted
 * the heap); tempo_sgemm16 (bfloat16 operands); and tempo_parallel_for (every task once, nested calls). */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tempo/bf16.h"
#include "tempo/gemm.h"
#include "tempo/parallel.h"
#include "tempo/rng.h"

/* Max |C - ref| / (max |ref| + 1) for one product with padded strides (pad 3). */
static double check_one(bool ta, bool tb, int m, int n, int k, float alpha, float beta, tempo_rng *rng) {
  const int pad = 3;
  const int ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
  const int lda = ac + pad, ldb = bc + pad, ldc = n + pad;
  float *A = malloc(sizeof(float) * (size_t)ar * lda), *B = malloc(sizeof(float) * (size_t)br * ldb);
  float *C = malloc(sizeof(float) * (size_t)m * ldc);
  double *R = malloc(sizeof(double) * (size_t)m * n);
  assert_non_null(A);
  assert_non_null(B);
  assert_non_null(C);
  assert_non_null(R);
  for (size_t i = 0; i < (size_t)ar * lda; i++) A[i] = (float)tempo_rng_normal(rng);
  for (size_t i = 0; i < (size_t)br * ldb; i++) B[i] = (float)tempo_rng_normal(rng);
  for (size_t i = 0; i < (size_t)m * ldc; i++) C[i] = (float)tempo_rng_normal(rng);
  for (int i = 0; i < m; i++)
    for (int j = 0; j < n; j++) {
      double s = 0.0;
      for (int t = 0; t < k; t++) {
        const double a = ta ? A[(size_t)t * lda + i] : A[(size_t)i * lda + t];
        const double b = tb ? B[(size_t)j * ldb + t] : B[(size_t)t * ldb + j];
        s += a * b;
      }
      R[(size_t)i * n + j] = alpha * s + beta * C[(size_t)i * ldc + j];
    }
  /* the padding columns of C must stay untouched */
  const float guard = C[n];
  tempo_sgemm(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
  assert_true(C[n] == guard);
  double err = 0.0, mx = 0.0;
  for (int i = 0; i < m; i++)
    for (int j = 0; j < n; j++) {
      err = fmax(err, fabs(C[(size_t)i * ldc + j] - R[(size_t)i * n + j]));
      mx = fmax(mx, fabs(R[(size_t)i * n + j]));
    }
  free(A);
  free(B);
  free(C);
  free(R);
  return err / (mx + 1.0);
}

static void check_backend(tempo_gemm_backend be) {
  assert_true(tempo_gemm_set_backend(be));
  assert_int_equal(tempo_gemm_get_backend(), be);
  tempo_rng rng;
  tempo_rng_seed(&rng, 11, (uint64_t)be);
  /* small (OpenBLAS under AUTO), k <= 16, and >= 2^20 multiply-adds with k > 16 (oneDNN under AUTO) */
  static const int shapes[][3] = {{1, 1, 1}, {7, 5, 3}, {65, 32, 65}, {33, 17, 16}, {129, 70, 131}, {200, 97, 64}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
    for (int t = 0; t < 4; t++) {
      const int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
      const double e1 = check_one(t & 1, t & 2, m, n, k, 1.0f, 0.0f, &rng);
      const double e2 = check_one(t & 1, t & 2, m, n, k, -0.5f, 1.0f, &rng);
      const double e3 = check_one(t & 1, t & 2, m, n, k, 2.0f, 0.25f, &rng);
      if (e1 > 1e-5 || e2 > 1e-5 || e3 > 1e-5)
        fail_msg("%s m=%d n=%d k=%d ta=%d tb=%d: errors %g %g %g", tempo_gemm_backend_name(be), m, n, k, t & 1,
                 (t & 2) != 0, e1, e2, e3);
    }
  assert_true(tempo_gemm_set_backend(TEMPO_GEMM_AUTO));
}

static void test_openblas(void **state) {
  (void)state;
  check_backend(TEMPO_GEMM_OPENBLAS);
}

static void test_auto(void **state) {
  (void)state;
  check_backend(TEMPO_GEMM_AUTO);
}

static void test_dnnl(void **state) {
  (void)state;
  if (!tempo_gemm_have_dnnl()) {
    assert_false(tempo_gemm_set_backend(TEMPO_GEMM_DNNL));
    assert_int_not_equal(tempo_gemm_get_backend(), TEMPO_GEMM_DNNL);
    skip();
  }
  check_backend(TEMPO_GEMM_DNNL);
}

/* tempo_sgemm16 against a double reference on the exact bfloat16 values: every transpose case
 * with padded strides, shapes from 1x1x1 to the convolutions' (the padding of C untouched), each
 * entry within float32 accumulation's bound (k + 2) 2^-24 sum |a b|. On a CPU with AVX512_BF16 in
 * a build with oneDNN every product must run (else the test would pass on the fallback alone);
 * TEMPO_GEMM=openblas refuses them all. */
static bool check16(bool ta, bool tb, int m, int n, int k, tempo_rng *rng) {
  const int pad = 5, ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
  const int lda = ac + pad, ldb = bc + pad, ldc = n + pad;
  uint16_t *A = malloc(2 * (size_t)ar * lda), *B = malloc(2 * (size_t)br * ldb);
  float *C = malloc(sizeof(float) * (size_t)m * ldc);
  assert_true(A && B && C);
  for (size_t i = 0; i < (size_t)ar * lda; i++) A[i] = tempo_bf16_from_f32((float)tempo_rng_normal(rng));
  for (size_t i = 0; i < (size_t)br * ldb; i++) B[i] = tempo_bf16_from_f32((float)tempo_rng_normal(rng));
  for (size_t i = 0; i < (size_t)m * ldc; i++) C[i] = -7.0f;
  const bool ran = tempo_sgemm16(ta, tb, m, n, k, A, lda, B, ldb, C, ldc);
  for (int i = 0; ran && i < m; i++) {
    for (int j = 0; j < n; j++) {
      double s = 0, sa = 0;
      for (int t = 0; t < k; t++) {
        const double a = tempo_bf16_to_f32(ta ? A[(size_t)t * lda + i] : A[(size_t)i * lda + t]);
        const double b = tempo_bf16_to_f32(tb ? B[(size_t)j * ldb + t] : B[(size_t)t * ldb + j]);
        s += a * b, sa += fabs(a * b);
      }
      const double e = fabs(C[(size_t)i * ldc + j] - s);
      if (e > (k + 2) * 0x1p-24 * sa + 1e-30)
        fail_msg("sgemm16 m=%d n=%d k=%d ta=%d tb=%d: C[%d][%d] off by %g (bound %g)", m, n, k, ta, tb, i, j, e,
                 (k + 2) * 0x1p-24 * sa);
    }
    for (int j = n; j < ldc; j++) assert_true(C[(size_t)i * ldc + j] == -7.0f);
  }
  free(A), free(B), free(C);
  return ran;
}

static void test_sgemm16(void **state) {
  (void)state;
  tempo_rng rng;
  tempo_rng_seed(&rng, 16, 16);
  __builtin_cpu_init();
  const bool native = tempo_gemm_have_dnnl() && __builtin_cpu_supports("avx512bf16");
  static const int shapes[][3] = {{1, 1, 1}, {7, 5, 3}, {64, 16, 144}, {144, 16, 64}, {129, 70, 131}, {300, 33, 9}};
  int ran = 0, all = 0;
  for (int rep = 0; rep < 2; rep++) /* the second time from the thread's cached primitives */
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
      for (int t = 0; t < 4; t++, all++) ran += check16(t & 1, t & 2, shapes[s][0], shapes[s][1], shapes[s][2], &rng);
  if (native) assert_int_equal(ran, all);
  assert_true(tempo_gemm_set_backend(TEMPO_GEMM_OPENBLAS));
  assert_false(check16(false, false, 64, 16, 144, &rng));
  assert_true(tempo_gemm_set_backend(TEMPO_GEMM_AUTO));
  if (!native) skip();
}

/* Signals sent at a high rate to a thread while it runs products (the shape of the mlp's first
 * layer at batch 8192, on every backend): oneDNN's JIT sgemm points rsp into its heap workspace,
 * so a handler run inside it wrote its signal frame into the heap and a later free() aborted
 * (the second-SIGINT test of test_resume.sh aborted in 3 runs of 4 that way). Every result must
 * equal the first (the same inputs give the same floats), and the signals must all be handled:
 * tempo_sgemm defers them to the end of a call, it does not lose them. */
static atomic_int sig_handled;
static atomic_bool sig_stop;
static void on_sig(int sig) {
  (void)sig;
  atomic_fetch_add(&sig_handled, 1);
}
static void *sig_sender(void *arg) {
  const pthread_t target = *(const pthread_t *)arg;
  int sent = 0;
  while (!atomic_load(&sig_stop)) {
    pthread_kill(target, SIGUSR1);
    sent++;
    nanosleep(&(struct timespec){.tv_nsec = 200000}, NULL);
  }
  return (void *)(intptr_t)sent;
}

static void test_signals_during_products(void **state) {
  (void)state;
  struct sigaction sa, old;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sig;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  assert_int_equal(sigaction(SIGUSR1, &sa, &old), 0);
  const int m = 2048, n = 256, k = 784;
  float *X = malloc(sizeof(float) * (size_t)m * k), *W = malloc(sizeof(float) * (size_t)n * k);
  float *Y0 = malloc(sizeof(float) * (size_t)m * n), *Y = malloc(sizeof(float) * (size_t)m * n);
  assert_true(X && W && Y0 && Y);
  tempo_rng rng;
  tempo_rng_seed(&rng, 5, 0);
  for (size_t i = 0; i < (size_t)m * k; i++) X[i] = (float)tempo_rng_normal(&rng);
  for (size_t i = 0; i < (size_t)n * k; i++) W[i] = (float)tempo_rng_normal(&rng);
  const tempo_gemm_backend bes[] = {TEMPO_GEMM_AUTO, TEMPO_GEMM_OPENBLAS, TEMPO_GEMM_DNNL};
  for (int b = 0; b < 3; b++) {
    if (!tempo_gemm_set_backend(bes[b])) continue; /* no oneDNN in this build */
    tempo_sgemm(false, true, m, n, k, 1.0f, X, k, W, k, 0.0f, Y0, n);
    atomic_store(&sig_handled, 0);
    atomic_store(&sig_stop, false);
    pthread_t self = pthread_self(), th;
    assert_int_equal(pthread_create(&th, NULL, sig_sender, &self), 0);
    for (int rep = 0; rep < 40; rep++) {
      /* small allocations freed between products: the heap check that caught the corruption */
      void *tmp[8];
      for (int i = 0; i < 8; i++) assert_non_null(tmp[i] = malloc(64 + 32 * (size_t)i));
      tempo_sgemm(false, true, m, n, k, 1.0f, X, k, W, k, 0.0f, Y, n);
      for (int i = 0; i < 8; i++) free(tmp[i]);
      assert_memory_equal(Y, Y0, sizeof(float) * (size_t)m * n);
    }
    atomic_store(&sig_stop, true);
    void *sent;
    assert_int_equal(pthread_join(th, &sent), 0);
    assert_true((intptr_t)sent > 0);
    /* every signal sent was handled (those that came during a call once it returned); several
     * sent while one is pending count once, so at least one and at most as many as were sent */
    assert_true(atomic_load(&sig_handled) >= 1 && atomic_load(&sig_handled) <= (intptr_t)sent);
  }
  tempo_gemm_set_backend(TEMPO_GEMM_AUTO);
  sigaction(SIGUSR1, &old, NULL);
  free(X), free(W), free(Y0), free(Y);
}

typedef struct {
  int hits[1000];
} pf_ctx;

static void pf_leaf(void *arg, int t) { ((pf_ctx *)arg)->hits[t]++; }

static void pf_task(void *arg, int t) {
  pf_ctx *c = arg;
  c->hits[t]++;
  /* a nested call runs serially on this thread and must still cover all its tasks */
  if (t == 0) {
    pf_ctx inner = {{0}};
    tempo_parallel_for(5, pf_leaf, &inner);
    for (int i = 0; i < 5; i++) assert_int_equal(inner.hits[i], 1);
  }
}

static void test_parallel_for(void **state) {
  (void)state;
  for (int th = 1; th <= 4; th++) {
    tempo_parallel_set_threads(th);
    assert_int_equal(tempo_parallel_threads(), th);
    for (int rep = 0; rep < 50; rep++) {
      static pf_ctx c;
      memset(&c, 0, sizeof c);
      const int n = 1 + rep * 19;
      tempo_parallel_for(n, pf_task, &c);
      for (int i = 0; i < n; i++) assert_int_equal(c.hits[i], 1);
      for (int i = n; i < 1000; i++) assert_int_equal(c.hits[i], 0);
    }
  }
  tempo_parallel_set_threads(1);
}

static void test_threads_and_names(void **state) {
  (void)state;
  assert_false(tempo_gemm_set_backend((tempo_gemm_backend)7));
  assert_string_equal(tempo_gemm_backend_name(TEMPO_GEMM_OPENBLAS), "openblas");
  assert_string_equal(tempo_gemm_backend_name(TEMPO_GEMM_DNNL), "dnnl");
  tempo_rng rng;
  tempo_rng_seed(&rng, 12, 0);
  /* the same results with the product split over 2 and 3 threads: rows (m >= n) and columns,
   * every transpose case, block edges not on a multiple of 16 */
  for (int th = 2; th <= 3; th++) {
    tempo_gemm_set_threads(th);
    for (int t = 0; t < 4; t++) {
      assert_true(check_one(t & 1, t & 2, 301, 150, 100, 1.0f, 0.0f, &rng) < 1e-5);
      assert_true(check_one(t & 1, t & 2, 90, 333, 120, -1.0f, 1.0f, &rng) < 1e-5);
    }
  }
  tempo_gemm_set_threads(1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_openblas),
      cmocka_unit_test(test_auto),
      cmocka_unit_test(test_dnnl),
      cmocka_unit_test(test_threads_and_names),
      cmocka_unit_test(test_signals_during_products),
      cmocka_unit_test(test_sgemm16),
      cmocka_unit_test(test_parallel_for),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
