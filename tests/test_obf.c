/* test_obf.c - obfuscation keys and the fused Enc/Dec passes (src/obf/keys.c, passes.c).
 * Shapes: X (m, n), W (n, p) or stored (p, n) with w_trans, Y and dY (m, p). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "obf/obf_internal.h"
#include "tempo/common.h"
#include "tempo/obf.h"
#include "tempo/rng.h"

static const uint8_t SECRET[32] = {7, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

static tempo_keygen *make_gen(const uint8_t *secret, const tempo_keyspace *ks) {
  tempo_keygen *g = NULL;
  assert_int_equal(tempo_keygen_create(secret, ks, &g), TEMPO_STATUS_OK);
  assert_non_null(g);
  return g;
}

static void make_key(tempo_keygen *g, tempo_obf_key *k, int m, int n, int p) {
  assert_int_equal(tempo_obf_key_alloc(k, m, n, p), TEMPO_STATUS_OK);
  assert_int_equal(tempo_keygen_fill(g, k), TEMPO_STATUS_OK);
}

static float *rand_matrix(tempo_rng *r, size_t n) {
  float *a = tempo_alloc_floats(n);
  assert_non_null(a);
  for (size_t i = 0; i < n; i++) a[i] = (float)tempo_rng_normal(r);
  return a;
}

static void check_dim(const tempo_obf_dim *d, const tempo_keyspace *ks) {
  bool *seen = calloc((size_t)d->size, 1);
  assert_non_null(seen);
  for (int i = 0; i < d->size; i++) {
    assert_true(d->perm[i] < (uint32_t)d->size);
    assert_false(seen[d->perm[i]]);
    seen[d->perm[i]] = true;
    assert_int_equal(d->inv[d->perm[i]], i);
    float c = d->coef[i];
    if (ks->kind == TEMPO_KEYSPACE_INT) {
      assert_true(c >= 1.0f && c <= (float)(1 << ks->bits));
      assert_true(c == floorf(c));
    } else {
      assert_true(c >= (float)(1.0 / ks->range) * 0.9999f && c <= (float)ks->range * 1.0001f);
    }
    assert_true(fabsf(c * d->rcoef[i] - 1.0f) < 2e-7f);
    assert_true(d->coef_p[i] == d->coef[d->perm[i]]);
    assert_true(d->rcoef_p[i] == d->rcoef[d->perm[i]]);
  }
  free(seen);
}

static void test_keys_valid(void **state) {
  (void)state;
  tempo_keyspace kss[3];
  tempo_keyspace_default(&kss[0]);
  kss[1] = (tempo_keyspace){.kind = TEMPO_KEYSPACE_INT, .bits = 16};
  kss[2] = (tempo_keyspace){.kind = TEMPO_KEYSPACE_LOGUNIFORM, .range = 1000.0};
  assert_int_equal(kss[0].kind, TEMPO_KEYSPACE_LOGUNIFORM);
  for (int s = 0; s < 3; s++) {
    tempo_keygen *g = make_gen(SECRET, &kss[s]);
    tempo_obf_key k;
    make_key(g, &k, 1000, 7, 1);
    assert_false(k.identity);
    check_dim(&k.dm, &kss[s]);
    check_dim(&k.dn, &kss[s]);
    check_dim(&k.dp, &kss[s]);
    int fixed = 0;
    for (int i = 0; i < 1000; i++) fixed += k.dm.perm[i] == (uint32_t)i;
    assert_true(fixed < 10); /* a uniform permutation of 1000 has ~1 fixed point */
    tempo_obf_key_free(&k);
    tempo_keygen_free(g);
  }
}

static void test_keys_fresh_and_deterministic(void **state) {
  (void)state;
  tempo_keygen *g1 = make_gen(SECRET, NULL), *g2 = make_gen(SECRET, NULL);
  uint8_t other[32] = {8};
  tempo_keygen *g3 = make_gen(other, NULL), *g4 = make_gen(NULL, NULL);
  tempo_obf_key a, b, c, d, e;
  make_key(g1, &a, 50, 40, 30);
  make_key(g2, &b, 50, 40, 30);
  make_key(g1, &c, 50, 40, 30); /* the next fill of g1 */
  make_key(g3, &d, 50, 40, 30);
  make_key(g4, &e, 50, 40, 30);
  size_t bytes = 50 * sizeof(uint32_t);
  assert_memory_equal(a.dm.perm, b.dm.perm, bytes);
  assert_memory_equal(a.dn.coef, b.dn.coef, 40 * sizeof(float));
  assert_memory_equal(a.dp.rcoef_p, b.dp.rcoef_p, 30 * sizeof(float));
  assert_memory_not_equal(a.dm.perm, c.dm.perm, bytes);
  assert_memory_not_equal(a.dm.coef, c.dm.coef, 50 * sizeof(float));
  assert_memory_not_equal(a.dm.perm, d.dm.perm, bytes);
  assert_memory_not_equal(a.dm.perm, e.dm.perm, bytes);
  uint8_t x[64], y[64];
  tempo_keygen_bytes(g1, x, sizeof x);
  tempo_keygen_bytes(g1, y, sizeof y);
  assert_memory_not_equal(x, y, sizeof x);
  tempo_obf_key *keys[] = {&a, &b, &c, &d, &e};
  for (int i = 0; i < 5; i++) tempo_obf_key_free(keys[i]);
  tempo_keygen_free(g1);
  tempo_keygen_free(g2);
  tempo_keygen_free(g3);
  tempo_keygen_free(g4);
}

/* All 6 permutations of 3 elements over 60000 draws: each within 5% of 10000 and a
 * chi-square (5 dof) below 20.5 (p = 0.001). Integer coefficients with 2 bits likewise. */
static void test_keys_uniform(void **state) {
  (void)state;
  tempo_keyspace ks = {.kind = TEMPO_KEYSPACE_INT, .bits = 2};
  tempo_keygen *g = make_gen(SECRET, &ks);
  tempo_obf_key k;
  assert_int_equal(tempo_obf_key_alloc(&k, 3, 1, 1), TEMPO_STATUS_OK);
  int perm_count[6] = {0}, coef_count[4] = {0};
  const int draws = 60000;
  for (int t = 0; t < draws; t++) {
    assert_int_equal(tempo_keygen_fill(g, &k), TEMPO_STATUS_OK);
    uint32_t *p = k.dm.perm;
    int idx = (int)p[0] * 2 + (p[1] > p[2] ? 1 : 0); /* first element and the order of the other two */
    perm_count[idx]++;
    coef_count[(int)k.dm.coef[0] - 1]++;
  }
  double chi = 0;
  for (int i = 0; i < 6; i++) {
    double e = draws / 6.0;
    assert_true(fabs(perm_count[i] - e) < 0.05 * e);
    chi += (perm_count[i] - e) * (perm_count[i] - e) / e;
  }
  assert_true(chi < 20.5);
  for (int i = 0; i < 4; i++) assert_true(fabs(coef_count[i] - draws / 4.0) < 0.05 * draws / 4.0);
  /* log-uniform: log(c) / log(R) uniform on [-1, 1] */
  tempo_keyspace lu;
  tempo_keyspace_default(&lu);
  tempo_keygen *g2 = make_gen(SECRET, &lu);
  tempo_obf_key k2;
  make_key(g2, &k2, 20000, 1, 1);
  int below = 0, quarter = 0;
  for (int i = 0; i < 20000; i++) {
    double t = log(k2.dm.coef[i]) / log(lu.range);
    below += t < 0;
    quarter += t < -0.5;
  }
  assert_true(abs(below - 10000) < 400);
  assert_true(abs(quarter - 5000) < 300);
  tempo_obf_key_free(&k);
  tempo_obf_key_free(&k2);
  tempo_keygen_free(g);
  tempo_keygen_free(g2);
}

static void test_keys_errors_and_wipe(void **state) {
  (void)state;
  tempo_keygen *g = NULL;
  tempo_keyspace bad = {.kind = TEMPO_KEYSPACE_INT, .bits = 17};
  assert_int_equal(tempo_keygen_create(SECRET, &bad, &g), TEMPO_STATUS_INVALID_ARGUMENT);
  assert_null(g);
  bad = (tempo_keyspace){.kind = TEMPO_KEYSPACE_LOGUNIFORM, .range = 1.0};
  assert_int_equal(tempo_keygen_create(SECRET, &bad, &g), TEMPO_STATUS_INVALID_ARGUMENT);
  bad = (tempo_keyspace){.kind = TEMPO_KEYSPACE_INT, .bits = 0};
  assert_int_equal(tempo_keygen_create(SECRET, &bad, &g), TEMPO_STATUS_INVALID_ARGUMENT);
  tempo_obf_key k;
  assert_int_equal(tempo_obf_key_alloc(&k, 0, 3, 3), TEMPO_STATUS_INVALID_ARGUMENT);
  assert_null(k.dm.perm);
  tempo_obf_key_free(&k); /* safe on the zeroed struct */
  assert_int_equal(tempo_obf_key_alloc(&k, 5, 6, 7), TEMPO_STATUS_OK);
  assert_true(k.identity);
  for (int i = 0; i < 6; i++) assert_true(k.dn.perm[i] == (uint32_t)i && k.dn.coef[i] == 1.0f);
  g = make_gen(SECRET, NULL);
  assert_int_equal(tempo_keygen_fill(g, &k), TEMPO_STATUS_OK);
  assert_false(k.identity);
  tempo_obf_key_wipe(&k);
  assert_true(k.identity);
  for (int i = 0; i < 7; i++) assert_true(k.dp.perm[i] == 0 && k.dp.coef[i] == 0.0f && k.dp.rcoef_p[i] == 0.0f);
  tempo_obf_key_free(&k);
  tempo_obf_key_free(&k);
  assert_null(k.dm.perm);
  tempo_keygen_free(g);
  tempo_keygen_free(NULL);
}

/* Each pass against the formulas of obf.h, evaluated in double from perm and coef. */
typedef enum { R_ENC_X, R_ENC_W, R_ENC_DY, R_DEC_Y, R_DEC_DX, R_DEC_DW } role;

static double ref_elem(const tempo_obf_key *k, role ro, bool wt, const float *in, int i, int j) {
  const tempo_obf_dim *dm = &k->dm, *dn = &k->dn, *dp = &k->dp;
  switch (ro) {
  case R_ENC_X: /* X'[i][j] = c_m[pi_m i] c_n[pi_n j] X[pi_m i][pi_n j] */
    return (double)dm->coef[dm->perm[i]] * dn->coef[dn->perm[j]] * in[(size_t)dm->perm[i] * k->n + dn->perm[j]];
  case R_ENC_W: /* W'[i][j] = c_p[pi_p j] / c_n[pi_n i] W[pi_n i][pi_p j]; stored transposed with wt */
    if (wt) { int t = i; i = j; j = t; }
    return (double)dp->coef[dp->perm[j]] / dn->coef[dn->perm[i]] *
           (wt ? in[(size_t)dp->perm[j] * k->n + dn->perm[i]] : in[(size_t)dn->perm[i] * k->p + dp->perm[j]]);
  case R_ENC_DY: /* dY*[i][j] = dY[pi_m i][pi_p j] / (c_m[pi_m i] c_p[pi_p j]) */
    return in[(size_t)dm->perm[i] * k->p + dp->perm[j]] / ((double)dm->coef[dm->perm[i]] * dp->coef[dp->perm[j]]);
  case R_DEC_Y: /* Y[a][b] = Y'[inv_m a][inv_p b] / (c_m[a] c_p[b]) */
    return in[(size_t)dm->inv[i] * k->p + dp->inv[j]] / ((double)dm->coef[i] * dp->coef[j]);
  case R_DEC_DX: /* dX[a][b] = c_m[a] c_n[b] dX'[inv_m a][inv_n b] */
    return (double)dm->coef[i] * dn->coef[j] * in[(size_t)dm->inv[i] * k->n + dn->inv[j]];
  case R_DEC_DW: /* dW[a][b] = c_p[b] / c_n[a] dW'[inv_n a][inv_p b]; stored transposed with wt */
    if (wt) { int t = i; i = j; j = t; }
    return (double)dp->coef[j] / dn->coef[i] *
           (wt ? in[(size_t)dp->inv[j] * k->n + dn->inv[i]] : in[(size_t)dn->inv[i] * k->p + dp->inv[j]]);
  }
  return 0;
}

static void run_role(const tempo_obf_key *k, role ro, bool wt, const float *in, float *out, bool acc) {
  switch (ro) {
  case R_ENC_X: tempo_obf_enc_x(k, in, out); break;
  case R_ENC_W: tempo_obf_enc_w(k, wt, in, out); break;
  case R_ENC_DY: tempo_obf_enc_dy(k, in, out); break;
  case R_DEC_Y: tempo_obf_dec_y(k, in, out); break;
  case R_DEC_DX: tempo_obf_dec_dx(k, in, out, acc); break;
  case R_DEC_DW: tempo_obf_dec_dw(k, wt, in, out, acc); break;
  }
}

static void role_shape(const tempo_obf_key *k, role ro, bool wt, int *rows, int *cols) {
  switch (ro) {
  case R_ENC_X:
  case R_DEC_DX: *rows = k->m, *cols = k->n; break;
  case R_ENC_DY:
  case R_DEC_Y: *rows = k->m, *cols = k->p; break;
  default: *rows = wt ? k->p : k->n, *cols = wt ? k->n : k->p; break;
  }
}

static void check_passes(int m, int n, int p) {
  tempo_keygen *g = make_gen(SECRET, NULL);
  tempo_obf_key k;
  make_key(g, &k, m, n, p);
  tempo_rng r;
  tempo_rng_seed(&r, 11, (uint64_t)(m * 1000 + n * 10 + p));
  size_t big = (size_t)(m > n ? m : n) * (size_t)(n > p ? n : p) * (size_t)(m > p ? m : p);
  float *in = rand_matrix(&r, big), *out = tempo_alloc_floats(big), *base = rand_matrix(&r, big);
  for (int ro = R_ENC_X; ro <= R_DEC_DW; ro++)
    for (int wt = 0; wt < 2; wt++)
      for (int acc = 0; acc < 2; acc++) {
        if (acc && ro != R_DEC_DX && ro != R_DEC_DW) continue;
        int rows, cols;
        role_shape(&k, (role)ro, wt, &rows, &cols);
        memcpy(out, base, (size_t)rows * cols * sizeof(float));
        run_role(&k, (role)ro, wt, in, out, acc);
        for (int i = 0; i < rows; i++)
          for (int j = 0; j < cols; j++) {
            double v = ref_elem(&k, (role)ro, wt, in, i, j), o = acc ? base[(size_t)i * cols + j] : 0.0;
            double got = out[(size_t)i * cols + j];
            /* two (Enc) or two plus the 1/c roundings (Dec) on v; the final add when accumulating */
            assert_true(fabs(got - (v + o)) <= 5e-7 * fabs(v) + 1.2e-7 * fabs(v + o) + 1e-30);
          }
      }
  tempo_free_floats(in);
  tempo_free_floats(out);
  tempo_free_floats(base);
  tempo_obf_key_free(&k);
  tempo_keygen_free(g);
}

static void test_passes_formulas(void **state) {
  (void)state;
  check_passes(1, 1, 1);
  check_passes(7, 13, 5);
  check_passes(33, 17, 65);
  check_passes(16, 24, 8);
}

/* Round trips: with p == n and the p key equal to the n key, Dec_Y inverts Enc_X and
 * Dec_dX inverts Enc_dY. */
static void check_roundtrip(int m, int n) {
  tempo_keygen *g = make_gen(SECRET, NULL);
  tempo_obf_key k;
  make_key(g, &k, m, n, n);
  size_t b = (size_t)n * 4;
  memcpy(k.dp.perm, k.dn.perm, b), memcpy(k.dp.inv, k.dn.inv, b), memcpy(k.dp.coef, k.dn.coef, b);
  memcpy(k.dp.rcoef, k.dn.rcoef, b), memcpy(k.dp.coef_p, k.dn.coef_p, b), memcpy(k.dp.rcoef_p, k.dn.rcoef_p, b);
  tempo_rng r;
  tempo_rng_seed(&r, 5, (uint64_t)m);
  size_t e = (size_t)m * n;
  float *x = rand_matrix(&r, e), *xp = tempo_alloc_floats(e), *back = tempo_alloc_floats(e);
  tempo_obf_enc_x(&k, x, xp);
  tempo_obf_dec_y(&k, xp, back);
  for (size_t i = 0; i < e; i++) assert_true(fabsf(back[i] - x[i]) <= 6e-7f * fabsf(x[i]));
  tempo_obf_enc_dy(&k, x, xp);
  tempo_obf_dec_dx(&k, xp, back, false);
  for (size_t i = 0; i < e; i++) assert_true(fabsf(back[i] - x[i]) <= 6e-7f * fabsf(x[i]));
  tempo_free_floats(x);
  tempo_free_floats(xp);
  tempo_free_floats(back);
  tempo_obf_key_free(&k);
  tempo_keygen_free(g);
}

static void test_passes_roundtrip(void **state) {
  (void)state;
  check_roundtrip(1, 1);
  check_roundtrip(7, 13);
  check_roundtrip(33, 65);
  check_roundtrip(4099, 576); /* 9.4 MB: the non-temporal store path */
}

/* Every kernel and thread count gives bit-identical results (same arithmetic per element). */
static void test_passes_kernels_threads(void **state) {
  (void)state;
  /* short rows (<= 128 columns: the AVX-512 permute kernel, each register count and tail) */
  static const int shapes[][2] = {{1101, 603}, {1027, 640}, {5, 3},   {4099, 576}, {65, 65},
                                  {129, 32},   {70, 128},   {33, 17}, {300, 100},  {9, 1}};
  tempo_keygen *g = make_gen(SECRET, NULL);
  for (int s = 0; s < (int)(sizeof shapes / sizeof shapes[0]); s++) {
    int R = shapes[s][0], C = shapes[s][1];
    tempo_obf_key k;
    make_key(g, &k, R, C, C);
    tempo_rng r;
    tempo_rng_seed(&r, 9, (uint64_t)s);
    size_t e = (size_t)R * C;
    float *in = rand_matrix(&r, e), *ref = tempo_alloc_floats(e), *out = tempo_alloc_floats(e);
    float *acc0 = rand_matrix(&r, e), *accref = tempo_alloc_floats(e);
    tempo_obf_set_kernel(TEMPO_OBF_KERNEL_NAIVE);
    tempo_obf_set_threads(1);
    tempo_obf_enc_x(&k, in, ref);
    memcpy(accref, acc0, e * sizeof(float));
    tempo_obf_dec_dx(&k, in, accref, true);
    for (int kern = 0; kern < TEMPO_OBF_KERNEL_COUNT; kern++)
      for (int t = 1; t <= 3; t++) {
        tempo_obf_set_kernel(kern);
        tempo_obf_set_threads(t);
        memset(out, 0, e * sizeof(float));
        tempo_obf_enc_x(&k, in, out);
        assert_memory_equal(out, ref, e * sizeof(float));
        memcpy(out, acc0, e * sizeof(float));
        tempo_obf_dec_dx(&k, in, out, true);
        assert_memory_equal(out, accref, e * sizeof(float));
      }
    tempo_obf_set_kernel(TEMPO_OBF_KERNEL_AUTO);
    tempo_obf_set_threads(1);
    tempo_free_floats(in), tempo_free_floats(ref), tempo_free_floats(out);
    tempo_free_floats(acc0), tempo_free_floats(accref);
    tempo_obf_key_free(&k);
  }
  tempo_keygen_free(g);
}

/* Dec of row blocks (a split product's replies, decoded on arrival): every kernel and thread
 * count, plain and accumulating, gives the whole pass's floats bit for bit, for the blocks of
 * 1, 2, 3 and 7 workers, each block read from its own buffer. */
static void test_passes_row_blocks(void **state) {
  (void)state;
  static const int shapes[][2] = {{1101, 603}, {4099, 576}, {129, 32}, {70, 128}, {33, 17}, {9, 1}, {300, 100}};
  tempo_keygen *g = make_gen(SECRET, NULL);
  for (int s = 0; s < (int)(sizeof shapes / sizeof shapes[0]); s++) {
    const int R = shapes[s][0], C = shapes[s][1];
    tempo_obf_key k;
    make_key(g, &k, R, C, C); /* dec_y: (m, p) = (R, C); dec_dx: (m, n) = (R, C) */
    tempo_rng r;
    tempo_rng_seed(&r, 11, (uint64_t)s);
    const size_t e = (size_t)R * C;
    float *in = rand_matrix(&r, e), *acc0 = rand_matrix(&r, e), *refy = tempo_alloc_floats(e);
    float *refx = tempo_alloc_floats(e), *out = tempo_alloc_floats(e), *blk = tempo_alloc_floats(e);
    tempo_obf_set_kernel(TEMPO_OBF_KERNEL_NAIVE);
    tempo_obf_dec_y(&k, in, refy);
    memcpy(refx, acc0, e * sizeof(float));
    tempo_obf_dec_dx(&k, in, refx, true);
    const int splits[] = {1, 2, 3, 7};
    for (int kern = 0; kern < TEMPO_OBF_KERNEL_COUNT; kern++)
      for (int t = 1; t <= 2; t++)
        for (int q = 0; q < 4; q++) {
          tempo_obf_set_kernel(kern);
          tempo_obf_set_threads(t);
          const int nb = splits[q] < R ? splits[q] : R;
          memset(out, 0, e * sizeof(float));
          for (int b = nb - 1; b >= 0; b--) { /* any arrival order */
            const int lo = (int)((int64_t)R * b / nb), hi = (int)((int64_t)R * (b + 1) / nb);
            memcpy(blk, in + (size_t)lo * C, (size_t)(hi - lo) * C * sizeof(float));
            tempo_obf_dec_y_rows(&k, blk, lo, hi, out);
          }
          assert_memory_equal(out, refy, e * sizeof(float));
          memcpy(out, acc0, e * sizeof(float));
          for (int b = 0; b < nb; b++) {
            const int lo = (int)((int64_t)R * b / nb), hi = (int)((int64_t)R * (b + 1) / nb);
            memcpy(blk, in + (size_t)lo * C, (size_t)(hi - lo) * C * sizeof(float));
            tempo_obf_dec_dx_rows(&k, blk, lo, hi, out, true);
          }
          assert_memory_equal(out, refx, e * sizeof(float));
        }
    tempo_obf_set_kernel(TEMPO_OBF_KERNEL_AUTO);
    tempo_obf_set_threads(1);
    tempo_free_floats(in), tempo_free_floats(acc0), tempo_free_floats(refy);
    tempo_free_floats(refx), tempo_free_floats(out), tempo_free_floats(blk);
    tempo_obf_key_free(&k);
  }
  tempo_keygen_free(g);
}

/* The Enc-X pass with check dots: X' bit-identical to tempo_obf_enc_x's with every kernel and
 * thread count (also identity keys), the value dots the double sums on the float X' itself
 * (within 2^-40 |X'| |w|: only the order of the double additions differs), and the bound dots
 * upper bounds of (X' o X') wb on the float X', at most (C + 4) 2^-22 high. */
static void test_enc_x_check_dots(void **state) {
  (void)state;
  static const int shapes[][2] = {{1101, 603}, {4099, 144}, {129, 32}, {70, 128}, {33, 17}, {9, 1}};
  tempo_keygen *g = make_gen(SECRET, NULL);
  for (int s = 0; s < (int)(sizeof shapes / sizeof shapes[0]); s++)
    for (int ident = 0; ident < 2; ident++) {
      const int R = shapes[s][0], C = shapes[s][1], ND = 2;
      tempo_obf_key k;
      assert_int_equal(tempo_obf_key_alloc(&k, R, C, 3), TEMPO_STATUS_OK);
      if (!ident) assert_int_equal(tempo_keygen_fill(g, &k), TEMPO_STATUS_OK);
      assert_true(k.identity == (bool)ident);
      tempo_rng r;
      tempo_rng_seed(&r, 13, (uint64_t)s);
      const size_t e = (size_t)R * C;
      float *in = rand_matrix(&r, e), *ref = tempo_alloc_floats(e), *out = tempo_alloc_floats(e);
      double *w = malloc(2 * ND * C * sizeof(double)), *y = malloc(2 * ND * R * sizeof(double));
      double *u = malloc(2 * ND * C * sizeof(double));
      assert_true(w && y && u);
      for (int i = 0; i < 2 * ND * C; i++) w[i] = (i % 2 ? 1 : -1) * (0.5 + 0.5 * tempo_rng_uniform(&r));
      for (int i = ND * C; i < 2 * ND * C; i++) w[i] = fabs(w[i]); /* wb >= 0 */
      const double *wq[2] = {w, w + C}, *wbq[2] = {w + 2 * C, w + 3 * C};
      double *yq[2] = {y, y + R}, *ybq[2] = {y + 2 * R, y + 3 * R};
      tempo_obf_enc_x(&k, in, ref);
      for (int kern = 0; kern < TEMPO_OBF_KERNEL_COUNT; kern++)
        for (int t = 1; t <= 3; t += 2) {
          tempo_obf_set_kernel(kern);
          tempo_obf_set_threads(t);
          memset(out, 0, e * sizeof(float));
          tempo_obf_enc_x_check(&k, in, out, ND, wq, wbq, yq, ybq, u);
          assert_memory_equal(out, ref, e * sizeof(float));
          for (int q = 0; q < ND; q++)
            for (int i = 0; i < R; i++) {
              double d = 0, da = 0, db = 0;
              for (int j = 0; j < C; j++) {
                const double x = ref[(size_t)i * C + j];
                d += x * wq[q][j], da += fabs(x) * fabs(wq[q][j]), db += x * x * wbq[q][j];
              }
              if (!(fabs(yq[q][i] - d) <= 0x1p-40 * da + 1e-300) ||
                  !(ybq[q][i] >= db * (1 - 0x1p-40) && ybq[q][i] <= db * (1 + (C + 4) * 0x1p-22) + 1e-300))
                fail_msg("shape %d ident %d kern %d threads %d dot %d row %d: %.17g vs %.17g (b %.17g vs %.17g)", s, ident,
                         kern, t, q, i, yq[q][i], d, ybq[q][i], db);
            }
        }
      tempo_obf_set_kernel(TEMPO_OBF_KERNEL_AUTO);
      tempo_obf_set_threads(1);
      free(w), free(y), free(u);
      tempo_free_floats(in), tempo_free_floats(ref), tempo_free_floats(out);
      tempo_obf_key_free(&k);
    }
  tempo_keygen_free(g);
}

static void test_identity_key(void **state) {
  (void)state;
  tempo_obf_key k;
  assert_int_equal(tempo_obf_key_alloc(&k, 9, 11, 13), TEMPO_STATUS_OK);
  tempo_rng r;
  tempo_rng_seed(&r, 3, 0);
  float *x = rand_matrix(&r, 13 * 13), *o = tempo_alloc_floats(13 * 13);
  for (int ro = R_ENC_X; ro <= R_DEC_DW; ro++)
    for (int wt = 0; wt < 2; wt++) {
      int rows, cols;
      role_shape(&k, (role)ro, wt, &rows, &cols);
      memset(o, 0, sizeof(float) * 13 * 13);
      run_role(&k, (role)ro, wt, x, o, false);
      assert_memory_equal(o, x, (size_t)rows * cols * sizeof(float));
    }
  for (int i = 0; i < 9 * 11; i++) o[i] = 1.0f;
  tempo_obf_dec_dx(&k, x, o, true);
  for (int i = 0; i < 9 * 11; i++) assert_true(o[i] == 1.0f + x[i]);
  tempo_obf_key_wipe(&k); /* a wiped key is the identity too */
  tempo_obf_enc_x(&k, x, o);
  assert_memory_equal(o, x, 9 * 11 * sizeof(float));
  tempo_free_floats(x), tempo_free_floats(o);
  tempo_obf_key_free(&k);
}

/* C (rows, cols) = op(A) op(B) in float by naive loops (the "worker"). */
static void matmul(int rows, int inner, int cols, const float *A, bool at, const float *B, bool bt, float *C) {
  for (int i = 0; i < rows; i++)
    for (int j = 0; j < cols; j++) {
      float s = 0;
      for (int l = 0; l < inner; l++)
        s += (at ? A[(size_t)l * rows + i] : A[(size_t)i * inner + l]) *
             (bt ? B[(size_t)j * inner + l] : B[(size_t)l * cols + j]);
      C[(size_t)i * cols + j] = s;
    }
}

/* |got - want| <= (inner + 10) u (|op(A)| |op(B)|) elementwise, want and the bound in double:
 * the worker's product error plus the roundings of the Enc and Dec scalings. */
static void assert_product(int rows, int inner, int cols, const float *A, bool at, const float *B, bool bt,
                           const float *got) {
  const double tol = (inner + 10) * 0x1p-24;
  for (int i = 0; i < rows; i++)
    for (int j = 0; j < cols; j++) {
      double s = 0, b = 0;
      for (int l = 0; l < inner; l++) {
        double a = at ? A[(size_t)l * rows + i] : A[(size_t)i * inner + l];
        double w = bt ? B[(size_t)j * inner + l] : B[(size_t)l * cols + j];
        s += a * w, b += fabs(a * w);
      }
      assert_true(fabs(got[(size_t)i * cols + j] - s) <= tol * b + 1e-30);
    }
}

/* THE PRODUCT PROPERTY, forward and both backward products, both layouts, accumulate. */
static void check_product(int m, int n, int p, const tempo_keyspace *ks) {
  tempo_keygen *g = make_gen(SECRET, ks);
  tempo_obf_key k;
  make_key(g, &k, m, n, p);
  tempo_rng r;
  tempo_rng_seed(&r, 77, (uint64_t)(m + n + p));
  float *X = rand_matrix(&r, (size_t)m * n), *W = rand_matrix(&r, (size_t)n * p), *dY = rand_matrix(&r, (size_t)m * p);
  float *Xp = tempo_alloc_floats((size_t)m * n), *Wp = tempo_alloc_floats((size_t)n * p);
  float *dYs = tempo_alloc_floats((size_t)m * p), *Yp = tempo_alloc_floats((size_t)m * p);
  float *Y = tempo_alloc_floats((size_t)m * p), *dXp = tempo_alloc_floats((size_t)m * n);
  float *dX = tempo_alloc_floats((size_t)m * n), *dWp = tempo_alloc_floats((size_t)n * p);
  float *dW = tempo_alloc_floats((size_t)n * p);
  for (int wt = 0; wt < 2; wt++) {
    tempo_obf_enc_x(&k, X, Xp);
    tempo_obf_enc_w(&k, wt, W, Wp);
    matmul(m, n, p, Xp, false, Wp, wt, Yp);
    tempo_obf_dec_y(&k, Yp, Y);
    assert_product(m, n, p, X, false, W, wt, Y);
    tempo_obf_enc_dy(&k, dY, dYs);
    matmul(m, p, n, dYs, false, Wp, !wt, dXp); /* dX' = dY* W'^T */
    tempo_obf_dec_dx(&k, dXp, dX, false);
    assert_product(m, p, n, dY, false, W, !wt, dX);
    if (!wt) {
      matmul(n, m, p, Xp, true, dYs, false, dWp); /* dW' = X'^T dY*  (n, p) */
      tempo_obf_dec_dw(&k, false, dWp, dW, false);
      assert_product(n, m, p, X, true, dY, false, dW);
    } else {
      matmul(p, m, n, dYs, true, Xp, false, dWp); /* stored (p, n): dY*^T X' */
      tempo_obf_dec_dw(&k, true, dWp, dW, false);
      assert_product(p, m, n, dY, true, X, false, dW);
    }
    /* accumulate: decrypting the same dW' again doubles dW, likewise dX */
    float *dW2 = tempo_alloc_floats((size_t)n * p), *dX2 = tempo_alloc_floats((size_t)m * n);
    memcpy(dW2, dW, (size_t)n * p * sizeof(float));
    memcpy(dX2, dX, (size_t)m * n * sizeof(float));
    tempo_obf_dec_dw(&k, wt, dWp, dW2, true);
    tempo_obf_dec_dx(&k, dXp, dX2, true);
    for (size_t i = 0; i < (size_t)n * p; i++) assert_true(fabsf(dW2[i] - 2 * dW[i]) <= 1e-6f * fabsf(dW[i]));
    for (size_t i = 0; i < (size_t)m * n; i++) assert_true(fabsf(dX2[i] - 2 * dX[i]) <= 1e-6f * fabsf(dX[i]));
    tempo_free_floats(dW2), tempo_free_floats(dX2);
  }
  float *bufs[] = {X, W, dY, Xp, Wp, dYs, Yp, Y, dXp, dX, dWp, dW};
  for (int i = 0; i < 12; i++) tempo_free_floats(bufs[i]);
  tempo_obf_key_free(&k);
  tempo_keygen_free(g);
}

static void test_product_property(void **state) {
  (void)state;
  tempo_keyspace def, i16 = {.kind = TEMPO_KEYSPACE_INT, .bits = 16};
  tempo_keyspace_default(&def);
  static const int shapes[][3] = {{1, 1, 1}, {7, 13, 5}, {33, 17, 65}, {64, 48, 40}, {3, 100, 2}};
  for (int s = 0; s < 5; s++) {
    check_product(shapes[s][0], shapes[s][1], shapes[s][2], &def);
    check_product(shapes[s][0], shapes[s][1], shapes[s][2], &i16);
  }
}

/* What a worker sees is not the plaintext: X' differs from X, and row 0 of X' is no row
 * of X, nor a row of X with its columns permuted (as a multiset of values). */
static int cmp_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

static void test_blinded_differs(void **state) {
  (void)state;
  const int m = 64, n = 32;
  tempo_keygen *g = make_gen(SECRET, NULL);
  tempo_obf_key k;
  make_key(g, &k, m, n, 8);
  tempo_rng r;
  tempo_rng_seed(&r, 1, 2);
  float *X = rand_matrix(&r, (size_t)m * n), *Xp = tempo_alloc_floats((size_t)m * n);
  tempo_obf_enc_x(&k, X, Xp);
  int equal = 0;
  for (int i = 0; i < m * n; i++) equal += X[i] == Xp[i];
  assert_true(equal < m * n / 100);
  float row0[32], rowi[32];
  memcpy(row0, Xp, sizeof row0);
  qsort(row0, (size_t)n, sizeof(float), cmp_float);
  for (int i = 0; i < m; i++) {
    assert_memory_not_equal(Xp, X + (size_t)i * n, n * sizeof(float));
    memcpy(rowi, X + (size_t)i * n, sizeof rowi);
    qsort(rowi, (size_t)n, sizeof(float), cmp_float);
    assert_memory_not_equal(row0, rowi, sizeof row0);
  }
  tempo_free_floats(X), tempo_free_floats(Xp);
  tempo_obf_key_free(&k);
  tempo_keygen_free(g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_keys_valid),
      cmocka_unit_test(test_keys_fresh_and_deterministic),
      cmocka_unit_test(test_keys_uniform),
      cmocka_unit_test(test_keys_errors_and_wipe),
      cmocka_unit_test(test_passes_formulas),
      cmocka_unit_test(test_passes_roundtrip),
      cmocka_unit_test(test_passes_kernels_threads),
      cmocka_unit_test(test_passes_row_blocks),
      cmocka_unit_test(test_enc_x_check_dots),
      cmocka_unit_test(test_identity_key),
      cmocka_unit_test(test_product_property),
      cmocka_unit_test(test_blinded_differs),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
