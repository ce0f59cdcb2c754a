/* shield.h - the hardened offload mode (--mode shield, docs/shield.md): MM-obfuscation
 * plus fresh additive masks whose correction terms other workers compute.
 *
 * One product instance Y' = X' W' (X' (m, n), W' (n, p), blinded as in tempo mode) is
 * masked with fresh Gaussian masks R (like X') and S (like W'):
 *   X'' = X' + R,  W'' = W' + S
 * and split over FOUR distinct workers (roles), each holding one X-operand and one
 * W-operand:
 *   role A: X'' W''    role B: X'' S    role C: R W''    role D: R S
 *   Y' = A - B - C + D                                   (combined on the master)
 * The backward masks dY* with a fresh T: dY** = dY* + T. Each role runs the ordinary
 * backward product on the pair it keeps from the forward, with dY** (roles A, D) or T
 * (roles B, C), so no worker ever holds a masked value together with its mask:
 *   dX' = A.dx + B.dx - C.dx - D.dx      dW' = A.dw - B.dw + C.dw - D.dw
 * Trust assumption: no two of the four workers of a product collude (any two together
 * can unmask something: e.g. A + B give W' = W'' - S). The master therefore refuses
 * shield mode with fewer than TEMPO_SHIELD_MIN_WORKERS workers, never gives two roles of
 * one product to the same worker (a failed role is recomputed only on a worker holding
 * no role of that product in this step), and stops with TEMPO_STATUS_WORKER when no such
 * worker is left.
 *
 * Shares are float64 by default (X'' = X' + R etc. in double on the master, TEMPO_DTYPE_F64
 * products on the workers, Freivalds in double, combine in double, round to float32 at the
 * end); float32 shares remain available (tempo_mm_config.shield_f32, --shield-dtype f32, tempo_shield_set_float64).
 * Masks (near-Gaussian) have standard deviation sigma = alpha * rms(operand) per instance:
 * larger alpha hides more (per-element signal ~ 1/alpha, an aggregate over N elements
 * ~ sqrt(N)/alpha) and costs precision (relative error ~ u alpha^2, u = 2^-53 or 2^-24);
 * docs/shield.md measures both and justifies TEMPO_SHIELD_DEFAULT_ALPHA (float64) and
 * TEMPO_SHIELD_DEFAULT_ALPHA_F32. */
#ifndef TEMPO_SHIELD_H
#define TEMPO_SHIELD_H

#include "tempo/mm_types.h"
#include "tempo/obf.h"
#include "tempo/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TEMPO_SHIELD_ROLES 4
#define TEMPO_SHIELD_MIN_WORKERS 4
#define TEMPO_SHIELD_DEFAULT_ALPHA 16384.0   /* float64 shares */
#define TEMPO_SHIELD_DEFAULT_ALPHA_F32 32.0  /* float32 shares */
#define TEMPO_SHIELD_SEED_BYTES 32

enum { TEMPO_SHIELD_ROLE_A = 0, TEMPO_SHIELD_ROLE_B, TEMPO_SHIELD_ROLE_C, TEMPO_SHIELD_ROLE_D };

/* Role r's operands: masked (X'', W'') or mask (R, S); and the sign of its share in the
 * forward, dX and dW combination (+1 or -1). */
bool tempo_shield_role_masked_x(int role); /* X'' (true) or R */
bool tempo_shield_role_masked_w(int role); /* W'' (true) or S */
bool tempo_shield_role_masked_dy(int role); /* dY** (true) or T */
int tempo_shield_sign_y(int role);
int tempo_shield_sign_dx(int role);
int tempo_shield_sign_dw(int role);

/* Expands a mask: out[i] i < n, mean 0, standard deviation sigma, from a 32-byte seed
 * (AES-256-CTR key stream, or ChaCha20 on CPUs without AES instructions; each value is a centred sum of four 32-bit uniforms, a near-
 * Gaussian with support +-2 sqrt(3) sigma; mask.c says why that hides as well). A pure
 * function of (seed, sigma, n): a worker given the seed can expand the same mask (it
 * then learns that mask, which is independent of every secret). */
void tempo_shield_expand(const uint8_t seed[TEMPO_SHIELD_SEED_BYTES], float sigma, float *out, size_t n);

/* The float64 mask: the same distribution with a fifth 32-bit uniform below the sum's
 * last bit, so r is continuous down to double rounding (f64.c says why). */
void tempo_shield_expand64(const uint8_t seed[TEMPO_SHIELD_SEED_BYTES], double sigma, double *out, size_t n);

/* sqrt(mean(x^2)) accumulated in double; 0 for n == 0. */
double tempo_shield_rms(const float *x, size_t n);
/* The mask scale for an operand of rms `rms`: alpha * rms, at least 1e-30. */
float tempo_shield_sigma(double alpha, double rms);
/* out = a + b (n floats). */
void tempo_shield_add(const float *a, const float *b, float *out, size_t n);
/* acc += sign * share (n values; acc in double). */
void tempo_shield_accumulate(double *acc, const float *share, int sign, size_t n);
/* out = (float)acc. */
void tempo_shield_narrow(const double *acc, float *out, size_t n);

/* ---- float64 shares (f64.c) ---- */
double tempo_shield_rms64(const double *x, size_t n);
/* acc += sign * share (n doubles). */
void tempo_shield_accumulate64(double *acc, const double *share, int sign, size_t n);
/* tempo_obf_enc_x / _w / _dy (obf.h) on double operands, rounded once (to double). */
void tempo_shield_enc_x64(const tempo_obf_key *k, const double *X, double *Xp);
void tempo_shield_enc_w64(const tempo_obf_key *k, bool w_trans, const double *W, double *Wp);
void tempo_shield_enc_dy64(const tempo_obf_key *k, const double *dY, double *dYs);
/* ---- the master's one-pass blinding (blind.c) ---- */
enum { TEMPO_SHIELD_OPERAND_X = 0, TEMPO_SHIELD_OPERAND_W = 1, TEMPO_SHIELD_OPERAND_DY = 2 };
/* Enc of one operand as a gather: out[i][j] = rs[i] cs[j] in[ri[i]][ci[j]], (rows, cols);
 * NULL arrays for an identity key. Pointers are k's. k must have no mixing blocks. */
typedef struct {
  int rows, cols;
  const uint32_t *ri;
  const float *rs;
  const uint32_t *ci;
  const float *cs;
} tempo_shield_gather;
tempo_shield_gather tempo_shield_gather_of(const tempo_obf_key *k, int operand, bool w_trans);
/* Masks and blinds one plaintext operand instance A (TEMPO_SHIELD_OPERAND_*, laid out as
 * tempo_obf_enc_x / _w / _dy take it) in one pass: mask = Enc(R0), masked = Enc(A + R0) with
 * R0 the mask of scale sigma from seed, its values drawn in the output's order from the
 * stream tempo_shield_expand64 (expand) reads, so mask[i][j] = rs_i cs_j expand64(seed)[i cols + j].
 * blind.c says why this has the distribution of masking before Enc. k has no mixing blocks.
 * rd (NULL: none; src/shield/fused.h) names check dots to form per row of both shares. */
struct tempo_shield_rowdots_s;
void tempo_shield_blind64(const tempo_obf_key *k, int operand, bool w_trans, const uint8_t seed[TEMPO_SHIELD_SEED_BYTES],
                          double sigma, const float *A, double *masked, double *mask,
                          const struct tempo_shield_rowdots_s *rd);
void tempo_shield_blind32(const tempo_obf_key *k, int operand, bool w_trans, const uint8_t seed[TEMPO_SHIELD_SEED_BYTES],
                          float sigma, const float *A, float *masked, float *mask);
/* Freivalds' check of a float64 product C (r, c) = op(A) (r, k) op(B) (k, c), layouts as in
 * tempo_verify_product, v_j = +-U[0.5, 1). The bound covers any float64 evaluation order of
 * the worker's product AND the check's own double rounding (both are float64 now):
 *   |C v - op(A)(op(B) v)|_i <= TEMPO_VERIFY_SAFETY (2 (k + c) + 8) 2^-53 (|op(A)| (|op(B)| |v|))_i + tiny.
 * Non-finite values in C fail. work: 2 (r + k + c) doubles. Returns OK, VERIFY_FAILED or
 * INVALID_ARGUMENT. */
TEMPO_WUR tempo_status tempo_shield_verify64(int r, int k, int c, const double *A, bool a_trans, const double *B,
                                             bool b_trans, const double *C, int rounds, uint64_t rng_seed,
                                             double *work);

/* Picks TEMPO_SHIELD_ROLES distinct live workers starting the scan at `start` (round
 * robin load balance). roles[r] = worker. False when fewer than 4 live workers. */
bool tempo_shield_assign(int n_workers, const bool *live, int start, int roles[TEMPO_SHIELD_ROLES]);

/* tempo_shield_set_alpha and tempo_shield_set_float64 (per engine) are in matmul.h. */

/* ---- the precision / leakage study (docs/shield.md) ----
 * One random product of shape (m, n, p): X = ReLU(N(0,1)) activations (half zeros),
 * W = N(0, 1/n), blinded with a fresh tempo key, shielded with masks of scale alpha, the
 * four shares computed locally in float32 (as the workers do) or float64, combined and
 * compared with the plaintext product; and the leakage of X'' (what roles A, B see)
 * about X'. */
typedef struct {
  int m, n, p;
  double alpha;
  bool f64;       /* float64 shares: the engine's float64 arithmetic (double masks, Enc, dgemm) */
  uint64_t seed;
} tempo_shield_study_cfg;

typedef struct {
  double rel_err;     /* ||Y_shield - Y|| / ||Y|| (Frobenius), Y the float64 plaintext product */
  double max_err;     /* max |Y_shield - Y| / max |Y| */
  double corr;        /* |Pearson correlation| of X'' with X' over all elements (X'' in the chosen dtype) */
  double sign_agree;  /* fraction of nonzero X' entries with sign(X'') == sign(X') */
  double zero_auc;    /* AUC of |X''| separating X' == 0 from X' != 0 (0.5 = chance) */
  double dist_adv;    /* two-secret distinguisher advantage: |P(correct) - 1/2| * 2 */
  double tempo_rel_err; /* the same product in tempo mode (no masks), for reference */
} tempo_shield_study_result;

TEMPO_WUR tempo_status tempo_shield_study(const tempo_shield_study_cfg *cfg, tempo_shield_study_result *out);

#ifdef __cplusplus
}
#endif
#endif
