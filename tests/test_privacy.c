/* test_privacy.c - the key-space entropy metric: log2 n! against exact values, the
 * integer key space's bits, the log-uniform key space's float32 entropy against the
 * log2 of the number of float32 values in [1/R, R] (an upper bound it must come close
 * to), and H of a product as the documented sum. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>

#include "tempo/privacy.h"

static void test_factorial(void **state) {
  (void)state;
  assert_float_equal(tempo_privacy_log2_factorial(0), 0.0, 1e-12);
  assert_float_equal(tempo_privacy_log2_factorial(1), 0.0, 1e-12);
  assert_float_equal(tempo_privacy_log2_factorial(4), log2(24.0), 1e-9);
  assert_float_equal(tempo_privacy_log2_factorial(10), log2(3628800.0), 1e-9);
  /* Stirling for a large n */
  double n = 25088;
  assert_float_equal(tempo_privacy_log2_factorial(25088), (n * log(n) - n + 0.5 * log(2 * M_PI * n)) / log(2.0), 1e-3);
}

static void test_coef_bits(void **state) {
  (void)state;
  tempo_keyspace ks = {.kind = TEMPO_KEYSPACE_INT, .bits = 12};
  assert_float_equal(tempo_privacy_coef_bits(&ks), 12.0, 1e-12);
  ks = (tempo_keyspace){.kind = TEMPO_KEYSPACE_LOGUNIFORM, .range = 16.0};
  double h = tempo_privacy_coef_bits(&ks);
  double upper = log2(8.0 * 8388608.0); /* 8 binades of 2^23 floats */
  assert_true(h <= upper + 1e-6);
  assert_true(h > upper - 0.2);
  ks.range = 2.0; /* 2 binades */
  assert_true(fabs(tempo_privacy_coef_bits(&ks) - 24.0) < 0.2);
}

static void test_bits(void **state) {
  (void)state;
  tempo_keyspace ks = {.kind = TEMPO_KEYSPACE_INT, .bits = 8};
  double want = log2(2.0) + log2(6.0) + log2(24.0) + 9 * 8;
  assert_float_equal(tempo_privacy_bits(2, 3, 4, &ks), want, 1e-9);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_factorial), cmocka_unit_test(test_coef_bits),
                                     cmocka_unit_test(test_bits)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
