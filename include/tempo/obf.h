/* obf.h - MM-obfuscation (../shared/spec/obfuscation.md): keys, the fused Enc/Dec passes
 * and the integrity check. Only the master links this module; the worker never does.
 *
 * Notation: a product instance Y = X . W with X (m, n), W (n, p), Y (m, p), row-major.
 * For each dimension d in {m, n, p}: a permutation pi_d and positive coefficients c_d.
 *   X'  = P_m D_m X D_n P_n^T          X'[i][j]  = c_m[pi_m i] c_n[pi_n j] X[pi_m i][pi_n j]
 *   W'  = P_n D_n^-1 W D_p P_p^T       W'[i][j]  = c_p[pi_p j] / c_n[pi_n i] W[pi_n i][pi_p j]
 *   Y   = D_m^-1 P_m^T Y' P_p D_p^-1
 *   dY* = P_m D_m^-1 dY D_p^-1 P_p^T   (the backward key-shift: one upload serves dX and dW)
 *   dX  = D_m P_m^T dX' P_n D_n        where dX' = dY* W'^T
 *   dW  = D_n^-1 P_n^T dW' P_p D_p     where dW' = X'^T dY*
 * With w_trans, W, W', dW and dW' are all kept in the stored layout (p, n) (the transpose
 * of the above), so a worker computes with the same transposition flag as local BLAS.
 *
 * Keys (tempo_obf_key) are allocated once per product site, refilled with fresh
 * randomness for every product of every step by tempo_keygen_fill, and wiped by
 * tempo_obf_key_wipe at the end of the step. Key memory is locked (sodium_mlock) where
 * the system allows. Keys never leave the master. */
#ifndef TEMPO_OBF_H
#define TEMPO_OBF_H

#include "tempo/precision.h"
#include "tempo/rows.h"
#include "tempo/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The coefficient key space K. */
typedef enum {
  TEMPO_KEYSPACE_INT = 0,        /* integers 1..2^bits, uniform (the paper's choice) */
  TEMPO_KEYSPACE_LOGUNIFORM = 1, /* reals log-uniform in [1/range, range] */
} tempo_keyspace_kind;

typedef struct {
  tempo_keyspace_kind kind;
  int bits;     /* TEMPO_KEYSPACE_INT: 1..16 */
  double range; /* TEMPO_KEYSPACE_LOGUNIFORM: > 1 */
} tempo_keyspace;

/* The documented default key space (see docs/obfuscation.md for the reason). */
void tempo_keyspace_default(tempo_keyspace *ks);

/* The secret of one dimension of size `size`. All arrays (size) are owned by the key. */
typedef struct {
  int size;
  uint32_t *perm;   /* pi */
  uint32_t *inv;    /* pi^-1 */
  float *coef;      /* c */
  float *rcoef;     /* 1 / c */
  float *coef_p;    /* c[pi[i]]: the scale of output row/column i in Enc passes */
  float *rcoef_p;   /* 1 / c[pi[i]] */
} tempo_obf_dim;

/* Mixing blocks (docs/obfuscation.md, "Mixing blocks"): per dimension d of size `size`, a
 * block-diagonal matrix B_d of ceil(size / b) blocks of b x b (the last one smaller when b does
 * not divide size), each a random rotation times a positive diagonal, B = Q diag(s), acting on
 * the permuted indices. TEMPO_OBF_MIX_* name the four forms the passes need. */
enum { TEMPO_OBF_MIX_M = 0, TEMPO_OBF_MIX_INV = 1, TEMPO_OBF_MIX_T = 2, TEMPO_OBF_MIX_INVT = 3 };
#define TEMPO_OBF_MIX_MAX 8 /* largest block size; row splits of mixed products align to it */

typedef struct {
  int m, n, p;
  bool identity;    /* identity key (plain mode): Enc/Dec are plain copies */
  tempo_obf_dim dm, dn, dp;
  /* With mix > 0 (tempo_keygen_fill_mix), every pass also mixes, inside the scales (the D
   * in permuted index space): X' = D_m B_m (P X P^T) B_n D_n, W' = D_n^-1 B_n^-1 (P W P^T) B_p D_p,
   * dY* = D_m^-1 B_m^-T (P dY P^T) B_p^-T D_p^-1, so the worker's products are
   * D_m B_m Y^ B_p D_p, D_m^-1 B_m^-T dX^ B_n^-T D_n^-1 and D_n B_n^T dW^ B_p^-T D_p^-1 (Y^ = P Y P^T
   * etc.) and Dec undoes them: the key-shift holds. mix 0: no mixing. */
  int mix;          /* block size b (a power of two <= TEMPO_OBF_MIX_MAX), 0 = none */
  float *mixbuf;    /* owned (locked where allowed): the blocks, then the passes' scratch */
  size_t mix_floats;
  size_t mix_used;  /* floats at the start of mixbuf the blocks and passes may have written since its last wipe */
  const float *mixd[3][4]; /* [dm, dn, dp][TEMPO_OBF_MIX_*]: (ceil(size / b), b, b) row-major */
  float *mix_tmp;   /* scratch: 3 b max(m, n, p) floats */
} tempo_obf_key;

/* Allocates a key for shape (m, n, p), initialised to the identity. */
TEMPO_WUR tempo_status tempo_obf_key_alloc(tempo_obf_key *k, int m, int n, int p);
/* Overwrites every secret with zeros (the identity flag is set). An identity key holds no
 * secret (a fill clears the flag) and is left as it is, its arrays still the identity's. */
void tempo_obf_key_wipe(tempo_obf_key *k);
/* Wipes and frees; safe on a zeroed struct. */
void tempo_obf_key_free(tempo_obf_key *k);

/* A cryptographic key generator (libsodium ChaCha20 stream under a per-run master secret). */
typedef struct tempo_keygen tempo_keygen;

/* master_secret: 32 bytes, or NULL for fresh randomness from the OS (randombytes_buf). */
TEMPO_WUR tempo_status tempo_keygen_create(const uint8_t *master_secret, const tempo_keyspace *ks,
                                           tempo_keygen **out);
void tempo_keygen_free(tempo_keygen *g); /* wipes its state */
/* Fills k with fresh uniform permutations (Fisher-Yates, unbiased bounded draws) and
 * coefficients drawn from the key space. Clears k->identity. */
TEMPO_WUR tempo_status tempo_keygen_fill(tempo_keygen *g, tempo_obf_key *k);
/* After tempo_keygen_fill: adds fresh mixing blocks of size b (1, 2, 4 or TEMPO_OBF_MIX_MAX) to k
 * (rotations from Gaussian draws by Gram-Schmidt, scales log-uniform in [1/2, 2]: condition
 * number <= 4 per block), so every pass mixes (above). tempo_keygen_fill clears them again. */
TEMPO_WUR tempo_status tempo_keygen_fill_mix(tempo_keygen *g, tempo_obf_key *k, int b);
/* Uniform random bytes from the generator's stream (used to seed check vectors). */
void tempo_keygen_bytes(tempo_keygen *g, void *buf, size_t len);
/* The generator's position in its stream, for checkpoints (resume continues the very same
 * stream): the 32-byte stream key, the refill counter and the read position, as
 * TEMPO_KEYGEN_STATE_BYTES little-endian bytes. A secret as strong as every key the
 * generator ever made or will make: keep it only in the master's (sealable) checkpoint and
 * wipe it after use. _valid says whether a record is well formed; _restore (the key space
 * stays the generator's own) refuses a malformed one with TEMPO_STATUS_CORRUPT and then
 * leaves g unchanged. */
#define TEMPO_KEYGEN_STATE_BYTES 48
void tempo_keygen_state_save(const tempo_keygen *g, uint8_t out[TEMPO_KEYGEN_STATE_BYTES]);
bool tempo_keygen_state_valid(const uint8_t in[TEMPO_KEYGEN_STATE_BYTES]);
TEMPO_WUR tempo_status tempo_keygen_state_restore(tempo_keygen *g, const uint8_t in[TEMPO_KEYGEN_STATE_BYTES]);

/* The fused gather-and-scale passes, one instance each (a key with mixing blocks mixes in
 * the same pass: src/obf/mix.c; rows [lo, hi) of a mixed key's Dec pass must be whole mixing
 * blocks, lo a multiple of k->mix). Output buffers must not alias inputs. `accumulate` adds into the output instead of overwriting it. Each pass reads
 * its input once and writes its output once; large passes use up to `threads` threads
 * (tempo_obf_set_threads, default 1). */
void tempo_obf_enc_x(const tempo_obf_key *k, const float *X, float *Xp);
/* tempo_obf_enc_x (the same floats, the same kernels), and in the same pass the check dots
 * of every output row i for q < ndots (<= TEMPO_OBF_ENC_X_MAX_DOTS): y[q][i] ~ sum_j
 * Xp[i][j] w[q][j] and yb[q][i] ~ sum_j Xp[i][j]^2 wb[q][j] (wb >= 0), in double (w, wb: (n)
 * doubles; y, yb: (m)). They are formed on the plaintext row while the scatter has it in
 * cache, as c_m,i sum_c X[pi_m(i)][c] (c_n w)[c]: exact sums of the unrounded X' values, which
 * differ from the float X' by at most 2^-23 relative per element (the check's bound counts
 * that rounding, u_m in verify.c); yb is an upper bound of the sum on the float X' within
 * (C + 4) 2^-22 relative. u: scratch of 2 ndots n doubles. So Freivalds' A (B v) of a forward
 * product needs no read of X' (scheme_tempo.c). */
#define TEMPO_OBF_ENC_X_MAX_DOTS 4
void tempo_obf_enc_x_check(const tempo_obf_key *k, const float *X, float *Xp, int ndots, const double *const *w,
                           const double *const *wb, double *const *y, double *const *yb, double *u);
/* The same two passes with X given by a row source (rows.h; xs->rows == m, xs->cols == n <=
 * TEMPO_ROWS_MAX_COLS): each chunk of rows is gathered into an L1-sized scratch and blinded
 * from there, so X is never materialised; every float of X' and every dot is the one the
 * materialised pass gives (test_gather). */
void tempo_obf_enc_x_rows(const tempo_obf_key *k, const tempo_rows *xs, float *Xp);
void tempo_obf_enc_x_check_rows(const tempo_obf_key *k, const tempo_rows *xs, float *Xp, int ndots,
                                const double *const *w, const double *const *wb, double *const *y,
                                double *const *yb, double *u);
void tempo_obf_enc_w(const tempo_obf_key *k, bool w_trans, const float *W, float *Wp);
void tempo_obf_enc_dy(const tempo_obf_key *k, const float *dY, float *dYs);
/* The Enc passes of the 16-bit wire (src/obf/pass16.c): the float32 values of the passes
 * above rounded to bfloat16 (nearest even, bf16.h) as they are stored, in the same pass. The
 * check dots of _x16_check are those of tempo_obf_enc_x_check on the rounded values (the ones
 * the worker gets): y summed in double, yb an upper bound of its sum within (n + 4) 2^-22
 * relative (float sums rounded up). enc_w16 also leaves the rounded values as
 * floats in Wpf (the checks read W' from there; n p floats). work: tempo_obf_enc16_work(n, p)
 * floats. In the calling thread. */
size_t tempo_obf_enc16_work(int n, int p); /* floats, for keys of any m and these n, p */
void tempo_obf_enc_x16(const tempo_obf_key *k, const float *X, uint16_t *Xp, float *work);
void tempo_obf_enc_x16_check(const tempo_obf_key *k, const float *X, uint16_t *Xp, int ndots, const double *const *w,
                             const double *const *wb, double *const *y, double *const *yb, float *work);
/* The same X' passes with X given by a row source (rows.h; as tempo_obf_enc_x_rows). */
void tempo_obf_enc_x16_rows(const tempo_obf_key *k, const tempo_rows *xs, uint16_t *Xp, float *work);
void tempo_obf_enc_x16_check_rows(const tempo_obf_key *k, const tempo_rows *xs, uint16_t *Xp, int ndots,
                                  const double *const *w, const double *const *wb, double *const *y, double *const *yb,
                                  float *work);
void tempo_obf_enc_w16(const tempo_obf_key *k, bool w_trans, const float *W, uint16_t *Wp, float *Wpf);
void tempo_obf_enc_dy16(const tempo_obf_key *k, const float *dY, uint16_t *dYs, float *work);
void tempo_obf_dec_y(const tempo_obf_key *k, const float *Yp, float *Y);
void tempo_obf_dec_dx(const tempo_obf_key *k, const float *dXp, float *dX, bool accumulate);
void tempo_obf_dec_dw(const tempo_obf_key *k, bool w_trans, const float *dWp, float *dW, bool accumulate);
/* Dec of Y' / dX' rows [lo, hi) only (a row block of a split product, decoded on arrival):
 * Yp / dXp hold just those rows; the output rows they map to are written (or added to),
 * the others are untouched. The same floats as the whole pass, element for element. */
void tempo_obf_dec_y_rows(const tempo_obf_key *k, const float *Yp, int lo, int hi, float *Y);
void tempo_obf_dec_dx_rows(const tempo_obf_key *k, const float *dXp, int lo, int hi, float *dX, bool accumulate);
/* tempo_obf_dec_dx_rows (not accumulating), and in the same pass, for q < ndots, y1[q][r] =
 * sum_c dXp[r][c] v[q][c] and y1b[q][r] = sum_c dXp[r][c]^2 vsq[q][c] for each of the hi - lo
 * rows r it reads (both in double: the reply's own values, exactly as a check would sum them;
 * a reply cannot overflow them). So the dX' check reads dX' once, in its decryption. */
void tempo_obf_dec_dx_rows_dots(const tempo_obf_key *k, const float *dXp, int lo, int hi, float *dX, int ndots,
                                const double *const *v, const float *const *vsq, double *const *y1,
                                double *const *y1b);
/* The master's threads for the passes: the tempo_parallel pool's (parallel.h), which runs their
 * parts (and the master's element-wise layers); 1..64, clamped. */
void tempo_obf_set_threads(int threads);

/* Freivalds' check of a product C = op(A) . op(B), with C (r, c), op(A) (r, k), op(B) (k, c),
 * on the master, for `rounds` fresh random vectors drawn from rng_seed (v_j = +-U[0.5, 1)).
 * A is stored (r, k), or (k, r) with a_trans; B is stored (k, c), or (c, k) with b_trans;
 * C is stored (r, c). All sums are accumulated in double. The tolerance per row is a
 * probabilistic bound on the rounding error of the worker's product in its declared
 * precision (docs/obfuscation.md, "Verification", derives it):
 *   |C v - op(A)(op(B) v)|_i <= lam sqrt(ac c2_i + aq G_i) + tiny
 * with c2 = (C o C)(v o v), G = (op(A) o op(A)) ((op(B) o op(B))(v o v) + rho (op(B) v)^2),
 * ac, aq ~ u^2 k / 3 where the key permutes the inner index (u^2 k^2 / 2 otherwise), lam from
 * the false-alarm probability TEMPO_VERIFY_FALSE_ALARM per check, tiny = k c max|v| 2^-126
 * (underflow). Sums of squares: cancellation in the product cannot inflate the bound.
 * Larger errors are caught in 1 round. A non-finite value in C, or a bound that is not finite
 * (operands beyond float range), fails the check. `work` holds at least 3*(r + k + c) floats.
 * Returns TEMPO_STATUS_OK, TEMPO_STATUS_VERIFY_FAILED (with tempo_errmsg set), or
 * TEMPO_STATUS_INVALID_ARGUMENT. Thread-safe (no shared state). */
#define TEMPO_VERIFY_FALSE_ALARM 1e-10
/* The worst-case factor of shield's float64 check (src/shield/f64.c: 2 (2 (k + c) + 8) 2^-53). */
#define TEMPO_VERIFY_SAFETY 2.0

/* What the bound assumes of a product: the precision the worker declared (precision.h) and
 * whether its inner index was put in a fresh random order by a key (every blinded product;
 * identity keys and plain data: false, the order-free bound). NULL = {FP32, false}. */
typedef struct {
  tempo_precision precision;
  bool permuted;
} tempo_verify_model;

TEMPO_WUR tempo_status tempo_verify_product(int r, int k, int c, const float *A, bool a_trans, const float *B,
                                            bool b_trans, const float *C, int rounds, uint64_t rng_seed,
                                            float *work);

/* The same check with v_j scaled by col_weight[j] > 0 (c; NULL = all 1). On a blinded
 * result whose column j carries the key scale s_j, passing col_weight[j] = 1 / s_j makes
 * the check as sensitive to every column as on the plaintext product (otherwise columns
 * with small scales weigh less, by up to the key space's max/min coefficient ratio):
 *   Y'  (m, p): 1 / c_p[pi_p j] = dp.rcoef_p          dX' (m, n): c_n[pi_n j] = dn.coef_p
 *   dW' (n, p): c_p[pi_p j] = dp.coef_p                dW' stored (p, n): 1 / c_n[pi_n j] = dn.rcoef_p
 * Weights are given exactly for blinded products, so _weighted uses the model {FP32,
 * permuted = col_weight != NULL}; _model takes the model explicitly. */
TEMPO_WUR tempo_status tempo_verify_product_weighted(int r, int k, int c, const float *A, bool a_trans,
                                                     const float *B, bool b_trans, const float *C,
                                                     const float *col_weight, int rounds, uint64_t rng_seed,
                                                     float *work);
TEMPO_WUR tempo_status tempo_verify_product_model(int r, int k, int c, const float *A, bool a_trans, const float *B,
                                                  bool b_trans, const float *C, const float *col_weight,
                                                  const tempo_verify_model *md, int rounds, uint64_t rng_seed,
                                                  float *work);

/* The same check in pieces, for callers that form op(A) g inside a pass that already
 * streams A (scheme_tempo.c forms it while writing X'):
 *  - tempo_verify_vector: round `round`'s vector v (c) and v o v (rounded up) from rng_seed
 *    and the optional column weights, exactly as tempo_verify_product_weighted draws it;
 *    returns max |v|;
 *  - tempo_verify_matvec: out = op(M) x, outg = (op(M) o op(M)) xsq + rho out o out with
 *    rho = tempo_verify_rho(md, rows) (rows of op(M): the inner dimension of the product),
 *    double sums rounded to float (M stored (rows, cols), or (cols, rows) with trans);
 *  - tempo_verify_rows: rows [row0, row0 + rows) of C (rows, c) against y2 = A (B v) and
 *    G = (A o A) g of those rows, with the bound above (k: the inner dimension).
 * Messages name total_rows and the round. */
float tempo_verify_vector(uint64_t rng_seed, int round, int c, const float *col_weight, float *v, float *vsq);
double tempo_verify_rho(const tempo_verify_model *md, int k);
void tempo_verify_matvec(int rows, int cols, const float *M, bool trans, const float *x, const float *xsq,
                         const tempo_verify_model *md, float *out, float *outg);
TEMPO_WUR tempo_status tempo_verify_rows(int rows, int k, int c, const float *C, const float *v, const float *vsq,
                                         float vmax, const double *y2, const double *G, const tempo_verify_model *md,
                                         int row0, int total_rows, int round);
/* tempo_verify_rows the other way round: y1 = C v and c2 = (C o C)(v o v) were formed
 * elsewhere (in a pass over C, in double: the reply's own values); this forms y2 = A w and
 * G = (A o A) wg from rows [row0, row0 + rows) of A (rows, k) with w, wg from
 * tempo_verify_matvec, and applies the same bound. */
TEMPO_WUR tempo_status tempo_verify_rows_a(int rows, int k, int c, const float *A, const float *w, const float *wg,
                                           const double *y1, const double *c2, float vmax,
                                           const tempo_verify_model *md, int row0, int total_rows, int round);
/* Freivalds from the left, for a dW' C = A B (len, c) with A (len, k), B (k, c) (A = X'^T: k is
 * the rows the dW' sums over): g = r^T C against h = (r^T A) B, with g2 = (r o r)^T (C o C) and
 * G = ((r o r)^T (A o A) + rho (r^T A)^2) (B o B) (all c, in double; r of length len with
 * max |r| = rmax; rho = tempo_verify_left_rho): |g - h|_j <= lam sqrt(ac g2_j + aq G_j) + tiny
 * (the union over the c columns). The bound counts on the workers accumulating dW' as
 * precision.h asks (TEMPO_DW_CHUNK_ROWS), in `parts` chain partials (1: one worker's); past
 * 2 TEMPO_DW_CHUNK_ROWS rows of a permuted product it is that accumulation's (verify.c,
 * docs/obfuscation.md derive it), otherwise tempo_verify_product's. A non-finite g fails. */
double tempo_verify_left_rho(const tempo_verify_model *md, int k, int parts);
TEMPO_WUR tempo_status tempo_verify_left(int k, int parts, int len, int c, const double *g, const double *g2,
                                         const double *h, const double *G, float rmax, const tempo_verify_model *md,
                                         int round);

#ifdef __cplusplus
}
#endif
#endif
