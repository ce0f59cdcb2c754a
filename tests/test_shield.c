/* test_shield.c - shield mode (shield.h): products equal float64 reference products
 * within the stated tolerance (normalised max error <= 1e-5 with the default float64
 * shares at alpha 16384; <= 2e-3 with float32 shares at alpha 32) on odd shapes, forward,
 * dX, dW, w_trans both ways, batch > 1, accumulate flags; the master refuses fewer than 4
 * workers with INVALID_ARGUMENT; the role signs recombine the product exactly (in double,
 * on integers); mask expansion (float32 and float64) is deterministic per seed, has the
 * stated moments, and the float64 mask has no coarse lattice; the double Enc passes
 * equal the float ones; the one-pass blinding draws the expansion's values in output
 * order and writes Enc(A + R0) and Enc(R0); the float64 Freivalds check passes honest products and catches a
 * changed element and a NaN; the view test: what each worker receives does not reveal
 * signs or zero patterns (tempo mode does, as a control), and the sign-of-sum
 * distinguisher on role A's X'' over fresh keys and masks is at chance with the default
 * (and wins with float32 shares at alpha 32, the control that shows the test can fail). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sodium.h>
#include <string.h>
#include <unistd.h>

#include "offload/transport.h"
#include "shield/aesctr.h"
#include "shield/fused.h"
#include "shield/mask_stream.h"
#include "tempo/audit.h"
#include "tempo/common.h"
#include "tempo/matmul.h"
#include "tempo/protocol.h"
#include "tempo/rng.h"
#include "tempo/shield.h"
#include "test_util.h"

#define TOL_F64 1e-5
#define TOL_F32 2e-3
static double TOL = TOL_F64;

static tempo_mm *make(tempo_mode mode, int workers, const char *audit) {
  return test_make_mm(mode, workers, 99, audit);
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
  test_randn(X, batch * xs, rng);
  test_randn(W, batch * ws, rng);
  test_randn(dY, batch * ys, rng);
  test_randn(dX0, batch * xs, rng);
  test_randn(dW0, batch * ws, rng);
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
  for (int f64 = 1; f64 >= 0; f64--) {
    tempo_rng rng;
    tempo_rng_seed(&rng, 5, 0);
    tempo_mm *mm = make(TEMPO_MODE_SHIELD, 5, NULL);
    if (!f64) assert_int_equal(tempo_shield_set_float64(mm, false), TEMPO_STATUS_OK);
    TOL = f64 ? TOL_F64 : TOL_F32;
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
  TOL = TOL_F64;
  assert_int_equal(tempo_shield_set_float64(NULL, true), TEMPO_STATUS_INVALID_ARGUMENT);
}

/* float64 mask: moments as the float32 one, deterministic, and continuous below the
 * 32-bit lattice of the four-uniform sum (the fractional part of r / spacing is uniform). */
static void test_expand64(void **state) {
  (void)state;
  enum { N = 100001 };
  double *a = malloc(N * 8), *b = malloc(N * 8);
  uint8_t seed[32] = {4, 5, 6};
  tempo_shield_expand64(seed, 3.0, a, N);
  tempo_shield_expand64(seed, 3.0, b, N);
  assert_memory_equal(a, b, N * 8);
  double s1 = 0, s2 = 0, s4 = 0;
  for (int i = 0; i < N; i++) s1 += a[i], s2 += a[i] * a[i], s4 += pow(a[i], 4);
  const double var = s2 / N;
  assert_true(fabs(s1 / N) < 0.04 && fabs(var - 9.0) < 0.2);
  assert_true(fabs(s4 / N / (var * var) - 2.7) < 0.08);
  const double spacing = 1.7320508075688772 * 3.0 * 0x1p-32;
  double f1 = 0;
  for (int i = 0; i < N; i++) {
    double q = a[i] / spacing;
    f1 += q - floor(q);
  }
  assert_true(fabs(f1 / N - 0.5) < 0.01); /* a lattice would give mean fractional part ~0 */
  /* drawn in odd pieces (the scalar path for values off a block boundary, the vector one for
   * whole blocks) the stream gives the same doubles as in one piece */
  tempo_shield_stream st;
  tempo_shield_stream_init(&st, seed, 3.0, true);
  for (size_t at = 0, piece = 1; at < N; at += piece, piece = piece * 3 % 1000 + 1)
    tempo_shield_draw64(&st, b + at, at + piece > N ? N - at : piece);
  tempo_shield_stream_wipe(&st);
  assert_memory_equal(a, b, N * 8);
  /* the layout: value v of a chunk is ((sum of u_k - 2^33) + u_4 2^-32) scale with u_k =
   * word 5 L (v / L) + L k + v % L, L = TEMPO_SHIELD_F64_LANES */
  tempo_shield_stream_init(&st, seed, 3.0, true);
  tempo_shield_stream_refill(&st);
  const int L = TEMPO_SHIELD_F64_LANES;
  for (int v = 0; v < st.have; v += v < 20 ? 1 : 97) {
    const uint32_t *u = st.buf + 5 * L * (v / L) + v % L;
    const double want = ((double)((int64_t)u[0] + u[L] + u[2 * L] + u[3 * L] - ((int64_t)1 << 33)) +
                         (double)u[4 * L] * 0x1p-32) * st.scale;
    if (want != a[v]) fail_msg("value %d: %.17g, the layout gives %.17g", v, a[v], want);
  }
  assert_int_equal(st.have, 816);
  tempo_shield_stream_wipe(&st);
  free(a), free(b);
}

/* The double Enc passes gather and scale exactly as the float ones. */
static void test_enc64(void **state) {
  (void)state;
  enum { M = 13, N = 9, P = 7 };
  tempo_keyspace ks;
  tempo_keyspace_default(&ks);
  uint8_t secret[32] = {9};
  tempo_keygen *kg;
  tempo_obf_key k = {0};
  assert_int_equal(tempo_keygen_create(secret, &ks, &kg), TEMPO_STATUS_OK);
  assert_int_equal(tempo_obf_key_alloc(&k, M, N, P), TEMPO_STATUS_OK);
  assert_int_equal(tempo_keygen_fill(kg, &k), TEMPO_STATUS_OK);
  float xf[M * N], of[M * N];
  double xd[M * N], od[M * N];
  tempo_rng r;
  tempo_rng_seed(&r, 1, 2);
  for (int i = 0; i < M * N; i++) xf[i] = (float)tempo_rng_normal(&r), xd[i] = xf[i];
  for (int which = 0; which < 4; which++) {
    size_t cnt = which == 0 ? M * N : which == 3 ? M * P : N * P;
    if (which == 0) tempo_obf_enc_x(&k, xf, of), tempo_shield_enc_x64(&k, xd, od);
    else if (which == 1) tempo_obf_enc_w(&k, false, xf, of), tempo_shield_enc_w64(&k, false, xd, od);
    else if (which == 2) tempo_obf_enc_w(&k, true, xf, of), tempo_shield_enc_w64(&k, true, xd, od);
    else tempo_obf_enc_dy(&k, xf, of), tempo_shield_enc_dy64(&k, xd, od);
    for (size_t i = 0; i < cnt; i++)
      if (fabs(od[i] - of[i]) > 1e-6 * fabs(od[i])) fail_msg("enc %d element %zu: %g vs %g", which, i, od[i], of[i]);
  }
  tempo_obf_key_free(&k);
  tempo_keygen_free(kg);
}

/* The mask stream's AES-256-CTR equals libsodium's AES-256-GCM ciphertext of zeros (its
 * counter blocks start at 2) for both implementations, whole 32-block groups and tails;
 * a ChaCha20 stream (forced) and the AES one are different streams with the same
 * moments. */
static void test_stream_cipher(void **state) {
  (void)state;
  if (tempo_aesctr_support() == TEMPO_AESCTR_NONE) {
    printf("no AES instructions: the mask stream is ChaCha20 only\n");
  } else {
    enum { BLOCKS = 32 * 3 + 13 };
    uint8_t key[32], nonce[12], zero[BLOCKS * 16] = {0}, ref[BLOCKS * 16 + 16], out[BLOCKS * 16];
    for (int i = 0; i < 32; i++) key[i] = (uint8_t)(7 * i + 1);
    for (int i = 0; i < 12; i++) nonce[i] = (uint8_t)(3 * i + 5);
    unsigned long long clen = 0;
    assert_int_equal(crypto_aead_aes256gcm_encrypt(ref, &clen, zero, sizeof zero, NULL, 0, NULL, nonce, key), 0);
    tempo_aesctr_key k;
    assert_true(tempo_aesctr_init(&k, key));
    for (int impl = TEMPO_AESCTR_AESNI; impl <= tempo_aesctr_support(); impl++)
      for (int n = 1; n <= BLOCKS; n += n < 40 ? 1 : 17) {
        memset(out, 0, sizeof out);
        tempo_aesctr_stream(&k, impl, nonce, 2, out, (size_t)n);
        if (memcmp(out, ref, (size_t)n * 16)) fail_msg("AES-CTR impl %d, %d blocks: differs from AES-256-GCM", impl, n);
      }
    tempo_aesctr_wipe(&k);
  }
  enum { N = 50001 };
  double *a = malloc(N * 8), *c = malloc(N * 8);
  uint8_t seed[32] = {1, 2, 3};
  tempo_shield_stream s;
  tempo_shield_stream_init_cipher(&s, seed, 2.0, true, TEMPO_AESCTR_NONE);
  tempo_shield_draw64(&s, c, N);
  tempo_shield_stream_wipe(&s);
  tempo_shield_expand64(seed, 2.0, a, N);
  int same = 0;
  for (int pass = 0; pass < 2; pass++) {
    const double *x = pass ? c : a;
    double s1 = 0, s2 = 0;
    for (int i = 0; i < N; i++) s1 += x[i], s2 += x[i] * x[i], same += pass && a[i] == c[i];
    assert_true(fabs(s1 / N) < 0.04 && fabs(s2 / N - 4.0) < 0.1);
  }
  if (tempo_aesctr_support() != TEMPO_AESCTR_NONE) assert_true(same < 4);
  free(a), free(c);
}

/* The one-pass blinding: for each operand layout the mask is exactly the key scales times
 * the float64 expansion read in output order, masked - mask is Enc(A) (double and float
 * Enc passes), and the float32 pass likewise within float rounding. */
static void test_blind(void **state) {
  (void)state;
  enum { M = 13, N = 300, P = 7 }; /* N > the pass's 256-value chunk */
  tempo_keyspace ks;
  tempo_keyspace_default(&ks);
  uint8_t secret[32] = {7}, seed[32] = {8, 9};
  tempo_keygen *kg;
  tempo_obf_key k = {0};
  assert_int_equal(tempo_keygen_create(secret, &ks, &kg), TEMPO_STATUS_OK);
  assert_int_equal(tempo_obf_key_alloc(&k, M, N, P), TEMPO_STATUS_OK);
  assert_int_equal(tempo_keygen_fill(kg, &k), TEMPO_STATUS_OK);
  enum { MAX = M * N };
  float *af = malloc(MAX * 4), *mf = malloc(MAX * 4), *rf = malloc(MAX * 4), *ef = malloc(MAX * 4),
        *gf = malloc(MAX * 4);
  double *ad = malloc(MAX * 8), *md = malloc(MAX * 8), *rd = malloc(MAX * 8), *ed = malloc(MAX * 8),
         *g = malloc(MAX * 8);
  tempo_rng r;
  tempo_rng_seed(&r, 5, 6);
  for (int i = 0; i < MAX; i++) af[i] = (float)tempo_rng_normal(&r), ad[i] = af[i];
  const double sigma = 2.5;
  tempo_shield_expand64(seed, sigma, g, MAX);
  tempo_shield_expand(seed, (float)sigma, gf, MAX);
  for (int which = 0; which < 4; which++) {
    const int op = which == 0 ? TEMPO_SHIELD_OPERAND_X : which == 3 ? TEMPO_SHIELD_OPERAND_DY : TEMPO_SHIELD_OPERAND_W;
    const bool wt = which == 2;
    const tempo_shield_gather ga = tempo_shield_gather_of(&k, op, wt);
    const int cnt = ga.rows * ga.cols;
    assert_int_equal(cnt, which == 0 ? M * N : which == 3 ? M * P : N * P);
    tempo_shield_blind64(&k, op, wt, seed, sigma, af, md, rd, NULL);
    tempo_shield_blind32(&k, op, wt, seed, (float)sigma, af, mf, rf);
    if (which == 0) tempo_shield_enc_x64(&k, ad, ed), tempo_obf_enc_x(&k, af, ef);
    else if (which == 3) tempo_shield_enc_dy64(&k, ad, ed), tempo_obf_enc_dy(&k, af, ef);
    else tempo_shield_enc_w64(&k, wt, ad, ed), tempo_obf_enc_w(&k, wt, af, ef);
    for (int i = 0; i < ga.rows; i++)
      for (int j = 0; j < ga.cols; j++) {
        const int e = i * ga.cols + j;
        const double rc = (double)ga.rs[i] * (double)ga.cs[j];
        if (rd[e] != rc * g[e]) fail_msg("blind64 %d (%d, %d): mask %.17g, expected %.17g", which, i, j, rd[e], rc * g[e]);
        if (fabs((md[e] - rd[e]) - ed[e]) > 1e-12 * fabs(rc) * 16 * sigma)
          fail_msg("blind64 %d (%d, %d): masked - mask %.17g vs Enc %.17g", which, i, j, md[e] - rd[e], ed[e]);
        if (fabs(rf[e] - rc * gf[e]) > 1e-6 * fabs(rc * gf[e]) + 1e-30)
          fail_msg("blind32 %d (%d, %d): mask %g, expected %g", which, i, j, rf[e], rc * gf[e]);
        if (fabs((mf[e] - rf[e]) - ef[e]) > 4e-6 * fabs(rc) * 16 * sigma)
          fail_msg("blind32 %d (%d, %d): masked - mask %g vs Enc %g", which, i, j, mf[e] - rf[e], ef[e]);
      }
  }
  /* a different seed gives a different mask */
  seed[0] ^= 1;
  tempo_shield_blind64(&k, TEMPO_SHIELD_OPERAND_X, false, seed, sigma, af, md, ed, NULL);
  int same = 0;
  tempo_shield_blind64(&k, TEMPO_SHIELD_OPERAND_X, false, seed, sigma, af, md, rd, NULL);
  assert_memory_equal(rd, ed, (size_t)M * N * 8);
  seed[0] ^= 1;
  tempo_shield_blind64(&k, TEMPO_SHIELD_OPERAND_X, false, seed, sigma, af, md, ed, NULL);
  for (int i = 0; i < M * N; i++) same += rd[i] == ed[i];
  assert_true(same < 4);
  free(af), free(mf), free(rf), free(ef), free(gf), free(ad), free(md), free(rd), free(ed), free(g);
  tempo_obf_key_free(&k);
  tempo_keygen_free(kg);
}

/* The checks formed in the X pass (fused.h): honest float64 shares of every role pass the
 * Y' and dW' checks (row blocks and whole sums, W stored both ways), and one element
 * changed by 1e-9 of the result's scale (undetectable in float32) or a NaN fails them. */
static void test_fused_checks(void **state) {
  (void)state;
  enum { M = 37, N = 300, P = 23 };
  tempo_keyspace ks;
  tempo_keyspace_default(&ks);
  uint8_t secret[32] = {3}, seed[32] = {4};
  tempo_keygen *kg;
  tempo_obf_key k = {0};
  assert_int_equal(tempo_keygen_create(secret, &ks, &kg), TEMPO_STATUS_OK);
  assert_int_equal(tempo_obf_key_alloc(&k, M, N, P), TEMPO_STATUS_OK);
  float *X = malloc(M * N * 4), *W = malloc(N * P * 4), *dY = malloc(M * P * 4);
  double *xs[2] = {malloc(M * N * 8), malloc(M * N * 8)}, *wsh[2] = {malloc(N * P * 8), malloc(N * P * 8)};
  double *dys[2] = {malloc(M * P * 8), malloc(M * P * 8)}, *Y = malloc(M * P * 8), *dW = malloc(N * P * 8);
  tempo_rng r;
  tempo_rng_seed(&r, 8, 8);
  for (int i = 0; i < M * N; i++) X[i] = (float)tempo_rng_normal(&r);
  for (int i = 0; i < N * P; i++) W[i] = (float)tempo_rng_normal(&r);
  for (int i = 0; i < M * P; i++) dY[i] = (float)tempo_rng_normal(&r);
  tempo_shield_fused f = {0};
  for (int wt = 0; wt < 2; wt++) {
    assert_int_equal(tempo_keygen_fill(kg, &k), TEMPO_STATUS_OK);
    assert_int_equal(tempo_shield_fused_prepare(&f, 2, M, N, P), TEMPO_STATUS_OK);
    seed[1] = (uint8_t)wt;
    tempo_shield_blind64(&k, TEMPO_SHIELD_OPERAND_W, wt, seed, 100.0, W, wsh[0], wsh[1], NULL);
    tempo_shield_rowdots rd;
    tempo_shield_fused_begin(&f, 77 + wt, wsh[0], wsh[1], wt, true, &rd);
    assert_int_equal(rd.count, 6);
    seed[2] = 1;
    tempo_shield_blind64(&k, TEMPO_SHIELD_OPERAND_X, false, seed, 100.0, X, xs[0], xs[1], &rd);
    seed[2] = 2;
    tempo_shield_blind64(&k, TEMPO_SHIELD_OPERAND_DY, false, seed, 100.0, dY, dys[0], dys[1], NULL);
    for (int role = 0; role < TEMPO_SHIELD_ROLES; role++) {
      const bool mx = tempo_shield_role_masked_x(role), mw = tempo_shield_role_masked_w(role);
      const double *A = xs[mx ? 0 : 1], *B = wsh[mw ? 0 : 1], *D = dys[tempo_shield_role_masked_dy(role) ? 0 : 1];
      double scale = 0, wscale = 0;
      for (int i = 0; i < M; i++)
        for (int j = 0; j < P; j++) {
          double sum = 0;
          for (int l = 0; l < N; l++) sum += A[i * N + l] * (wt ? B[j * N + l] : B[l * P + j]);
          Y[i * P + j] = sum, scale = fmax(scale, fabs(sum));
        }
      for (int l = 0; l < N; l++)
        for (int j = 0; j < P; j++) {
          double sum = 0;
          for (int i = 0; i < M; i++) sum += A[i * N + l] * D[i * P + j];
          dW[wt ? j * N + l : l * P + j] = sum, wscale = fmax(wscale, fabs(sum));
        }
      assert_true(tempo_shield_fused_check_y(&f, mx, mw, 0, M, Y));
      assert_true(tempo_shield_fused_check_y(&f, mx, mw, 5, 9, Y + 5 * P));
      assert_true(tempo_shield_fused_check_dw(&f, mx, wt, 0, M, D, dW, 1));
      Y[7 * P + 3] += 1e-9 * scale;
      assert_false(tempo_shield_fused_check_y(&f, mx, mw, 0, M, Y));
      assert_false(tempo_shield_fused_check_y(&f, mx, mw, 5, 9, Y + 5 * P));
      assert_true(tempo_shield_fused_check_y(&f, mx, mw, 8, 12, Y + 8 * P)); /* rows apart from the change */
      Y[7 * P + 3] = NAN;
      assert_false(tempo_shield_fused_check_y(&f, mx, mw, 0, M, Y));
      if (role != 0) assert_false(tempo_shield_fused_check_y(&f, !mx, mw, 0, 1, Y)); /* another share's sums */
      dW[5] += 1e-9 * wscale;
      assert_false(tempo_shield_fused_check_dw(&f, mx, wt, 0, M, D, dW, 1));
      dW[5] = NAN;
      assert_false(tempo_shield_fused_check_dw(&f, mx, wt, 0, M, D, dW, 1));
    }
    /* the backward's dX' check inside the combine: sums formed in the dY pass */
    tempo_shield_fused_begin_dx(&f, 91 + wt, wsh[0], wsh[1], wt, &rd);
    assert_int_equal(rd.count, 4);
    tempo_shield_blind64(&k, TEMPO_SHIELD_OPERAND_DY, false, seed, 100.0, dY, dys[0], dys[1], &rd);
    double *dx[TEMPO_SHIELD_ROLES], dscale = 0;
    for (int role = 0; role < TEMPO_SHIELD_ROLES; role++) {
      const double *B = wsh[tempo_shield_role_masked_w(role) ? 0 : 1], *D = dys[tempo_shield_role_masked_dy(role) ? 0 : 1];
      dx[role] = malloc(M * N * 8);
      for (int i = 0; i < M; i++)
        for (int l = 0; l < N; l++) {
          double sum = 0;
          for (int j = 0; j < P; j++) sum += D[i * P + j] * (wt ? B[j * N + l] : B[l * P + j]);
          dx[role][i * N + l] = sum, dscale = fmax(dscale, fabs(sum));
        }
    }
    float *out = malloc(M * N * 4);
    assert_int_equal(tempo_shield_fused_combine_dx(&f, (const double *const *)dx, out), -1);
    for (int i = 0; i < M * N; i++) { /* the sum of the combine without checks, bit for bit */
      const float want = (float)(((tempo_shield_sign_dx(0) * dx[0][i] + tempo_shield_sign_dx(1) * dx[1][i]) +
                                  tempo_shield_sign_dx(2) * dx[2][i]) +
                                 tempo_shield_sign_dx(3) * dx[3][i]);
      if (out[i] != want) fail_msg("dX element %d: %.9g, the combine gives %.9g", i, out[i], want);
    }
    for (int role = 0; role < TEMPO_SHIELD_ROLES; role++) {
      const double keep = dx[role][11 * N + 7];
      dx[role][11 * N + 7] += 1e-9 * dscale;
      assert_int_equal(tempo_shield_fused_combine_dx(&f, (const double *const *)dx, out), role);
      dx[role][11 * N + 7] = NAN;
      assert_int_equal(tempo_shield_fused_combine_dx(&f, (const double *const *)dx, out), role);
      dx[role][11 * N + 7] = keep;
    }
    for (int role = 0; role < TEMPO_SHIELD_ROLES; role++) free(dx[role]);
    free(out);
  }
  tempo_shield_fused_free(&f);
  free(X), free(W), free(dY), free(xs[0]), free(xs[1]), free(wsh[0]), free(wsh[1]), free(dys[0]), free(dys[1]);
  free(Y), free(dW);
  tempo_obf_key_free(&k);
  tempo_keygen_free(kg);
}

/* tempo_shield_verify64: honest float64 products of every layout pass (shares of size
 * alpha^2 with cancellation-free random data), one changed element (by 1e-9 relative
 * to the result's scale: undetectable in float32) and a NaN fail. */
static void test_verify64(void **state) {
  (void)state;
  enum { R = 37, K = 300, C = 23 };
  double *A = malloc(R * K * 8), *B = malloc(K * C * 8), *Cm = malloc(R * C * 8), *work = malloc(2 * (R + K + C) * 8);
  tempo_rng r;
  tempo_rng_seed(&r, 3, 3);
  for (int i = 0; i < R * K; i++) A[i] = 4096.0 * tempo_rng_normal(&r);
  for (int i = 0; i < K * C; i++) B[i] = 4096.0 * tempo_rng_normal(&r);
  for (int at = 0; at < 2; at++)
    for (int bt = 0; bt < 2; bt++) {
      double scale = 0;
      for (int i = 0; i < R; i++)
        for (int j = 0; j < C; j++) {
          double s = 0;
          for (int l = 0; l < K; l++) s += (at ? A[l * R + i] : A[i * K + l]) * (bt ? B[j * K + l] : B[l * C + j]);
          Cm[i * C + j] = s;
          scale = fmax(scale, fabs(s));
        }
      assert_int_equal(tempo_shield_verify64(R, K, C, A, at, B, bt, Cm, 2, 11, work), TEMPO_STATUS_OK);
      Cm[5 * C + 7] += 1e-9 * scale;
      assert_int_equal(tempo_shield_verify64(R, K, C, A, at, B, bt, Cm, 1, 12, work), TEMPO_STATUS_VERIFY_FAILED);
      Cm[5 * C + 7] = NAN;
      assert_int_equal(tempo_shield_verify64(R, K, C, A, at, B, bt, Cm, 1, 13, work), TEMPO_STATUS_VERIFY_FAILED);
    }
  assert_int_equal(tempo_shield_verify64(0, K, C, A, false, B, false, Cm, 1, 1, work), TEMPO_STATUS_INVALID_ARGUMENT);
  free(A), free(B), free(Cm), free(work);
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
    const size_t esz = tempo_msg_dtype_size(rec.header.dtype);
    size_t nf = rec.header.payload_len / esz;
    for (size_t i = 0; i < nf; i++) {
      double v;
      if (esz == 8) {
        memcpy(&v, rec.payload + 8 * i, 8);
      } else {
        float f;
        memcpy(&f, rec.payload + 4 * i, 4);
        v = f;
      }
      npos += v > 0, nzero += v == 0, s1 += v, s2 += v * v;
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

/* The sign-of-sum distinguisher on role A's view (worker 0 with exactly 4 workers): T
 * products of a secret X (64 x 256, ReLU-like: half zeros, mean/rms 0.68) or -X, the sign
 * chosen at random per product; fresh keys and masks per product (one engine); the guess
 * is the sign of the sum of the X'' that worker 0 receives, read back from the audit
 * trail. Returns the advantage |2 P(correct) - 1| (chance: 0 +- 1/sqrt(T)). The signal is
 * sqrt(N) mean / (alpha rms) ~ 11/alpha before the key's spread: ~0.7 SD at alpha 32. */
static double distinguisher(bool f64, double alpha, int trials) {
  char dir[] = "/tmp/tempo_shield_distXXXXXX";
  assert_non_null(mkdtemp(dir));
  tempo_mm *mm = make(TEMPO_MODE_SHIELD, 4, dir);
  assert_int_equal(tempo_shield_set_float64(mm, f64), TEMPO_STATUS_OK);
  assert_int_equal(tempo_shield_set_alpha(mm, alpha), TEMPO_STATUS_OK);
  tempo_mm_set_training(mm, false);
  enum { M = 64, N = 256, P = 2 };
  static float X[M * N], Xs[M * N], W[N * P], Y[M * P];
  bool neg[512];
  tempo_rng r;
  tempo_rng_seed(&r, 8, 0);
  for (int i = 0; i < M * N; i++) X[i] = (i % 2) ? 0.0f : 0.5f + (float)tempo_rng_uniform(&r);
  for (int i = 0; i < N * P; i++) W[i] = (float)tempo_rng_normal(&r);
  tempo_mm_shape sh = {1, M, N, P, false};
  assert_true(trials <= 512);
  for (int t = 0; t < trials; t++) {
    neg[t] = tempo_rng_below(&r, 2);
    for (int i = 0; i < M * N; i++) Xs[i] = neg[t] ? -X[i] : X[i];
    tempo_mm_site site = {0};
    assert_int_equal(tempo_mm_forward(mm, &site, &sh, Xs, W, Y), TEMPO_STATUS_OK);
  }
  tempo_mm_free(mm);
  char path[256];
  snprintf(path, sizeof path, "%s/%s", dir, TEMPO_AUDIT_FILE);
  tempo_audit_reader *rd;
  assert_int_equal(tempo_audit_open(path, &rd), TEMPO_STATUS_OK);
  int t = 0, correct = 0;
  for (;;) {
    tempo_audit_record rec;
    bool end;
    assert_int_equal(tempo_audit_next(rd, &rec, &end), TEMPO_STATUS_OK);
    if (end) break;
    if (rec.direction != TEMPO_AUDIT_UP || rec.worker != 0 || rec.header.op != TEMPO_OP_FORWARD) continue;
    assert_int_equal(rec.header.dtype, f64 ? TEMPO_DTYPE_F64 : TEMPO_DTYPE_F32);
    double sum = 0; /* X'' is the first payload tensor (M x N) */
    for (int i = 0; i < M * N; i++) {
      if (f64) {
        double v;
        memcpy(&v, rec.payload + 8 * (size_t)i, 8);
        sum += v;
      } else {
        float v;
        memcpy(&v, rec.payload + 4 * (size_t)i, 4);
        sum += v;
      }
    }
    assert_true(t < trials);
    correct += (sum < 0) == neg[t++];
  }
  tempo_audit_close(rd);
  unlink(path);
  rmdir(dir);
  assert_int_equal(t, trials);
  return fabs(2.0 * correct / trials - 1.0);
}

static void test_view(void **state) {
  (void)state;
  double pos, zero, mr, pos2, zero2, mr2;
  view_of(TEMPO_MODE_TEMPO, 2, 1.0f, &pos, &zero, &mr); /* control: tempo keeps signs and zeros */
  assert_true(pos > 0.6 && zero > 0.3);
  view_of(TEMPO_MODE_SHIELD, 4, 1.0f, &pos, &zero, &mr);
  view_of(TEMPO_MODE_SHIELD, 4, -1.0f, &pos2, &zero2, &mr2);
  /* signal per element ~ 1/alpha: sign agreement ~ 50% + 0.4/alpha at most on the masked
   * halves, diluted by the pure masks */
  if (fabs(pos - 0.5) > 0.02 || fabs(pos2 - 0.5) > 0.02 || zero != 0 || zero2 != 0)
    fail_msg("shield view: positive %g / %g, zero %g / %g", pos, pos2, zero, zero2);
  /* two secrets of opposite sign, same keys and masks: the payload mean (in units of its
   * rms) moves by at most 2/alpha */
  if (fabs(mr - mr2) > 2.0 / TEMPO_SHIELD_DEFAULT_ALPHA) fail_msg("shield view: mean/rms %g vs %g", mr, mr2);
  /* the distinguisher over fresh keys and masks: at chance (3.2 SD of 160 trials) with the
   * default; the float32 alpha 32 control must win, or this test could not fail */
  enum { T = 160 };
  const double adv = distinguisher(true, TEMPO_SHIELD_DEFAULT_ALPHA, T);
  const double adv32 = distinguisher(false, TEMPO_SHIELD_DEFAULT_ALPHA_F32, T);
  printf("sign-of-sum distinguisher on role A's X'' (%d trials): float64 alpha %g: %.3f; float32 alpha %g: %.3f\n", T,
         TEMPO_SHIELD_DEFAULT_ALPHA, adv, TEMPO_SHIELD_DEFAULT_ALPHA_F32, adv32);
  if (adv > 0.25) fail_msg("shield view: the distinguisher wins with the default (advantage %.3f)", adv);
  if (adv32 < 0.5) fail_msg("control: float32 alpha 32 should lose to the distinguisher (advantage %.3f)", adv32);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_roles),           cmocka_unit_test(test_expand),
      cmocka_unit_test(test_expand64),        cmocka_unit_test(test_enc64),
      cmocka_unit_test(test_stream_cipher),   cmocka_unit_test(test_blind),
      cmocka_unit_test(test_fused_checks),           cmocka_unit_test(test_verify64),
      cmocka_unit_test(test_too_few_workers), cmocka_unit_test(test_eval_backward_refused),
      cmocka_unit_test(test_products),        cmocka_unit_test(test_view),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
