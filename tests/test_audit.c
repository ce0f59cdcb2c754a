/* test_audit.c - the audit trail. A short run writes a trail; reading it back gives
 * exactly the messages' headers (the same count as the byte counters imply, every
 * request answered, sequence numbers in order). Leakage test, stated: for a tempo-mode
 * product, no payload tensor row (length n) in the trail equals X row 0 element-wise, and
 * none has |Pearson r| > 0.3 with it; likewise for W column 0 against every length-n
 * column of every W'-sized tensor. In plain mode the same test finds both (so it can
 * fail). A corrupted trail is rejected by the reader. */
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

#include "tempo/audit.h"
#include "tempo/matmul.h"
#include "tempo/rng.h"

enum { M = 64, N = 400, P = 16 }; /* n large: a random row has |r| > 0.3 with odds ~1e-9 */

static double corr(const float *a, const float *b, int n, int stride_b) {
  double ma = 0, mb = 0;
  for (int i = 0; i < n; i++) ma += a[i], mb += b[(size_t)i * stride_b];
  ma /= n, mb /= n;
  double sab = 0, saa = 0, sbb = 0;
  for (int i = 0; i < n; i++) {
    double x = a[i] - ma, y = b[(size_t)i * stride_b] - mb;
    sab += x * y, saa += x * x, sbb += y * y;
  }
  return saa > 0 && sbb > 0 ? sab / sqrt(saa * sbb) : 0;
}

static bool equal(const float *a, const float *b, int n, int stride_b) {
  for (int i = 0; i < n; i++)
    if (a[i] != b[(size_t)i * stride_b]) return false;
  return true;
}

/* Runs one training forward+backward in `mode` with an audit trail in dir, reads the
 * trail back and reports whether X row 0 / W column 0 appear (equal or |r| > 0.3). */
static void run(tempo_mode mode, const char *dir, bool *found_x, bool *found_w) {
  tempo_mm_config cfg;
  tempo_mm_config_default(&cfg);
  cfg.mode = mode;
  cfg.audit_dir = dir;
  cfg.seed = 99;
  tempo_mm *mm;
  assert_int_equal(tempo_mm_create(&cfg, &mm), TEMPO_STATUS_OK);
  tempo_mm_set_training(mm, true);
  static float X[M * N], W[N * P], Y[M * P], dY[M * P], dX[M * N], dW[N * P];
  tempo_rng r;
  tempo_rng_seed(&r, 42, 0);
  /* activations-like X: nonnegative with a trend, so permutation alone would not hide it */
  for (int i = 0; i < M * N; i++) X[i] = (float)(fabs(tempo_rng_normal(&r)) + 0.05 * (i % N));
  for (int i = 0; i < N * P; i++) W[i] = (float)tempo_rng_normal(&r);
  for (int i = 0; i < M * P; i++) dY[i] = (float)tempo_rng_normal(&r);
  tempo_mm_shape sh = {1, M, N, P, false};
  tempo_mm_site site = {0};
  assert_int_equal(tempo_mm_forward(mm, &site, &sh, X, W, Y), TEMPO_STATUS_OK);
  assert_int_equal(tempo_mm_backward(mm, &site, &sh, X, W, dY, dX, dW, 0), TEMPO_STATUS_OK);
  tempo_mm_step_end(mm);
  tempo_mm_stats st;
  tempo_mm_stats_run(mm, &st);
  tempo_mm_free(mm); /* closes the trail */

  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, TEMPO_AUDIT_FILE);
  tempo_audit_reader *rd;
  assert_int_equal(tempo_audit_open(path, &rd), TEMPO_STATUS_OK);
  uint64_t up = 0, down = 0, n_up = 0, n_down = 0, seq = 0;
  int ops[8] = {0};
  *found_x = *found_w = false;
  float Wc0[N];
  for (int i = 0; i < N; i++) Wc0[i] = W[i * P];
  for (;;) {
    tempo_audit_record rec;
    bool end;
    assert_int_equal(tempo_audit_next(rd, &rec, &end), TEMPO_STATUS_OK);
    if (end) break;
    assert_int_equal(rec.seq, seq++);
    assert_true(rec.worker >= 0 && rec.worker < 2);
    uint64_t bytes = TEMPO_MSG_HEADER_SIZE + rec.header.payload_len;
    if (rec.direction == TEMPO_AUDIT_UP)
      up += bytes, n_up++;
    else
      down += bytes, n_down++;
    ops[rec.header.op]++;
    const float *f = (const float *)rec.payload;
    size_t nf = rec.header.payload_len / 4;
    /* every length-N row of every tensor against X row 0 */
    for (size_t o = 0; o + N <= nf; o += N)
      if (equal(f + o, X, N, 1) || fabs(corr(X, f + o, N, 1)) > 0.3) *found_x = true;
    /* every column of an (N, P) block against W column 0 */
    for (size_t o = 0; o + (size_t)N * P <= nf; o += (size_t)N * P)
      for (int c = 0; c < P; c++)
        if (equal(Wc0, f + o + c, N, P) || fabs(corr(Wc0, f + o + c, N, P)) > 0.3) *found_w = true;
  }
  tempo_audit_close(rd);
  /* exactly the messages the engine counted: 2 FORWARD, 2 BACKWARD, 2 RELEASE up;
   * 4 RESULT and 2 ACK down */
  assert_int_equal(up, st.bytes_up);
  assert_int_equal(down, st.bytes_down);
  assert_int_equal(n_up, 6);
  assert_int_equal(n_down, 6);
  assert_int_equal(ops[TEMPO_OP_FORWARD], 2);
  assert_int_equal(ops[TEMPO_OP_BACKWARD], 2);
  assert_int_equal(ops[TEMPO_OP_RELEASE], 2);
  assert_int_equal(ops[TEMPO_OP_RESULT], 4);
  assert_int_equal(ops[TEMPO_OP_ACK], 2);
}

static void test_trail_and_leakage(void **state) {
  (void)state;
  char dir[] = "/tmp/tempo-audit-XXXXXX";
  assert_non_null(mkdtemp(dir));
  bool fx, fw;
  run(TEMPO_MODE_PLAIN, dir, &fx, &fw);
  assert_true(fx); /* plain mode: the worker sees X and W as they are */
  assert_true(fw);
  run(TEMPO_MODE_TEMPO, dir, &fx, &fw);
  assert_false(fx);
  assert_false(fw);

  /* a corrupted record is rejected, not trusted */
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, TEMPO_AUDIT_FILE);
  FILE *f = fopen(path, "r+b");
  assert_non_null(f);
  /* first record's message header starts at 32 + 24; set its m to 0 */
  fseek(f, TEMPO_AUDIT_FILE_HEADER_SIZE + TEMPO_AUDIT_RECORD_HEADER_SIZE + 36, SEEK_SET);
  uint8_t zero[4] = {0};
  fwrite(zero, 4, 1, f);
  fclose(f);
  tempo_audit_reader *rd;
  assert_int_equal(tempo_audit_open(path, &rd), TEMPO_STATUS_OK);
  tempo_audit_record rec;
  bool end;
  assert_int_equal(tempo_audit_next(rd, &rec, &end), TEMPO_STATUS_CORRUPT);
  tempo_audit_close(rd);
  /* a truncated trail */
  assert_int_equal(truncate(path, TEMPO_AUDIT_FILE_HEADER_SIZE + 10), 0);
  assert_int_equal(tempo_audit_open(path, &rd), TEMPO_STATUS_OK);
  assert_int_equal(tempo_audit_next(rd, &rec, &end), TEMPO_STATUS_CORRUPT);
  tempo_audit_close(rd);
  /* not a trail */
  assert_int_equal(truncate(path, 8), 0);
  assert_int_equal(tempo_audit_open(path, &rd), TEMPO_STATUS_CORRUPT);
  unlink(path);
  rmdir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_trail_and_leakage)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
