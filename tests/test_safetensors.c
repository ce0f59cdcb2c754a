/* test_safetensors.c - safetensors round trip, a file written by the Python helper, and
 * rejection of every kind of malformed input with TEMPO_STATUS_CORRUPT. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tempo/safetensors.h"

static void test_round_trip(void **state) {
  (void)state;
  float a[6] = {1, 2, 3, 4, 5, -6};
  int32_t b[2] = {7, -8};
  tempo_st_tensor t[2] = {{.name = "layer.weight", .dtype = TEMPO_ST_F32, .ndim = 2, .shape = {2, 3}, .data = a,
                           .nbytes = sizeof a},
                          {.name = "idx", .dtype = TEMPO_ST_I32, .ndim = 1, .shape = {2}, .data = b, .nbytes = sizeof b}};
  const char *path = "build/tests/st_round_trip.safetensors";
  assert_int_equal(tempo_st_write(path, t, 2), TEMPO_STATUS_OK);
  tempo_st_file *f;
  assert_int_equal(tempo_st_open(path, &f), TEMPO_STATUS_OK);
  assert_int_equal(tempo_st_count(f), 2);
  const tempo_st_tensor *w = tempo_st_get(f, "layer.weight");
  assert_non_null(w);
  assert_int_equal(w->ndim, 2);
  assert_int_equal(w->shape[1], 3);
  float out[6];
  assert_int_equal(tempo_st_read_f32(w, out, 6), TEMPO_STATUS_OK);
  assert_memory_equal(out, a, sizeof a);
  assert_int_equal(tempo_st_read_f32(w, out, 5), TEMPO_STATUS_MISMATCH);
  assert_int_equal(tempo_st_read_f32(tempo_st_get(f, "idx"), out, 2), TEMPO_STATUS_MISMATCH);
  assert_null(tempo_st_get(f, "nope"));
  tempo_st_close(f);
}

static void test_python_written(void **state) {
  (void)state;
  tempo_st_file *f;
  assert_int_equal(tempo_st_open("tests/fixtures/py_written.safetensors", &f), TEMPO_STATUS_OK);
  float a[6], c[1];
  assert_int_equal(tempo_st_read_f32(tempo_st_get(f, "a"), a, 6), TEMPO_STATUS_OK);
  for (int i = 0; i < 6; i++) assert_float_equal(a[i], (float)i, 0);
  assert_int_equal(tempo_st_read_f32(tempo_st_get(f, "b.c"), c, 1), TEMPO_STATUS_OK); /* F64 converts */
  assert_float_equal(c[0], -1.5f, 0);
  assert_int_equal(tempo_st_get(f, "idx")->dtype, TEMPO_ST_I32);
  tempo_st_close(f);
}

/* Builds a file from a header string and n data bytes. */
static size_t make(uint8_t *buf, const char *header, size_t data_len) {
  size_t hl = strlen(header);
  for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)hl >> (8 * i));
  memcpy(buf + 8, header, hl);
  memset(buf + 8 + hl, 0, data_len);
  return 8 + hl + data_len;
}

static void expect_corrupt(const char *header, size_t data_len) {
  uint8_t buf[1024];
  size_t len = make(buf, header, data_len);
  tempo_st_file *f = NULL;
  tempo_status st = tempo_st_parse(buf, len, "case", &f);
  if (st != TEMPO_STATUS_CORRUPT) fail_msg("accepted or wrong status %d for header %s", st, header);
  assert_null(f);
  assert_non_null(strstr(tempo_errmsg(), "case"));
}

static void test_malformed(void **state) {
  (void)state;
  uint8_t good[256];
  size_t len = make(good, "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8);
  tempo_st_file *f;
  assert_int_equal(tempo_st_parse(good, len, "good", &f), TEMPO_STATUS_OK);
  tempo_st_close(f);
  /* every truncation of a good file is rejected */
  for (size_t cut = 0; cut < len; cut++) {
    f = NULL;
    assert_int_equal(tempo_st_parse(good, cut, "cut", &f), TEMPO_STATUS_CORRUPT);
    assert_null(f);
  }
  expect_corrupt("{\"x\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8);  /* shape vs bytes */
  expect_corrupt("{\"x\":{\"dtype\":\"Q8\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8);   /* dtype */
  expect_corrupt("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8);  /* reversed */
  expect_corrupt("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 12); /* trailing data */
  expect_corrupt("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12); /* gap */
  expect_corrupt("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                 "\"y\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12);  /* overlap */
  expect_corrupt("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                 "\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16); /* duplicate */
  expect_corrupt("{\"x\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,8]}}", 8);
  expect_corrupt("{\"x\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8);
  expect_corrupt("{\"x\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8);
  expect_corrupt("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"extra\":1}}", 8);
  expect_corrupt("{\"x\" {\"dtype\":\"F32\"}}", 8);
  expect_corrupt("[1,2]", 0);
  expect_corrupt("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}} junk", 8);
  /* header length larger than the file */
  uint8_t buf[16] = {0xff, 0xff, 0, 0, 0, 0, 0, 0, '{', '}'};
  f = NULL;
  assert_int_equal(tempo_st_parse(buf, 10, "len", &f), TEMPO_STATUS_CORRUPT);
  assert_int_equal(tempo_st_open("build/tests/does-not-exist.safetensors", &f), TEMPO_STATUS_IO);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_python_written),
      cmocka_unit_test(test_malformed),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
