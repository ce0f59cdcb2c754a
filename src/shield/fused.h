/* fused.h - shield's float64 checks formed inside the blinding passes (internal; fused.c,
 * blind.c, scheme_shield.c, docs/shield.md "Checks inside the passes").
 *
 * For a batch-1 product the master draws the check vectors before blinding: per round q a
 * right vector v_q (p) for the Y' shares and, in a training forward, a left vector u_q (n)
 * for the dW' shares. Once W'' and S are written it forms W_s v_q and |W_s| |v_q| (n each,
 * small); the X pass then forms, per row i of X'' and of R, the dots with them and with u_q
 * (tempo_shield_rowdots). A share's Y' rows are then checked from Y' alone
 * (|Y'_i v - X_s,i (W_s v)|, the bound of tempo_shield_verify64), and its dW' from dW' and
 * dY_s alone (u^T dW' against (X_s u)^T dY_s, the same bound for the left product), so no
 * check re-reads an X share (9x a 3x3 convolution's Y' in bytes, read four times per
 * product before). dX' is checked as before (it reads dX', dY_s and W_s, never X). */
#ifndef TEMPO_SHIELD_FUSED_H
#define TEMPO_SHIELD_FUSED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tempo/common.h"
#include "tempo/obf.h"
#include "tempo/rng.h"
#include "dots.h"

#define TEMPO_SHIELD_FUSED_ROUNDS 2 /* check rounds the fused checks handle (more: unfused) */
#define TEMPO_SHIELD_ROWDOTS (3 * TEMPO_SHIELD_FUSED_ROUNDS)

/* Dots formed per row of both shares of the X pass: for k < count,
 *   ys[t][k][i] = row_t,i . vec[k],  yb[t][k][i] = |row_t,i| . vabs[k]
 * for t = 0 (the masked share X'') and 1 (the mask R). */
typedef struct tempo_shield_rowdots_s {
  int count;
  const double *vec[TEMPO_SHIELD_ROWDOTS], *vabs[TEMPO_SHIELD_ROWDOTS];
  double *ys[2][TEMPO_SHIELD_ROWDOTS], *yb[2][TEMPO_SHIELD_ROWDOTS];
} tempo_shield_rowdots;

/* The per-site state of the fused checks (m, n, p of the last batch-1 forward). */
typedef struct {
  int rounds, m, n, p;
  bool forward_ready, dw_ready; /* the last encode formed the Y' (and dW') sums */
  double *v, *vabs, *u, *uabs;  /* rounds x p, rounds x n */
  double vmax[TEMPO_SHIELD_FUSED_ROUNDS], umax[TEMPO_SHIELD_FUSED_ROUNDS];
  double *wv, *wvb;             /* [q][w share 0 = W'', 1 = S] x n */
  double *y2, *yb;              /* [q][x share][w share] x m: X_s (W_s v), |X_s| (|W_s| |v|) */
  double *xu, *xub;             /* [q][x share] x m: X_s u, |X_s| |u| */
  /* the backward's dX' check (tempo_shield_fused_begin_dx): right vectors x (n per round),
   * W_s^T x (p per round and W share), and per row of dY** and T their dots with it */
  bool dx_ready;
  double *xv, *xvabs;           /* rounds x n */
  double xvmax[TEMPO_SHIELD_FUSED_ROUNDS];
  double *wtv, *wtvb;           /* [q][w share] x p: W_s^T x, |W_s^T| |x| */
  double *dy2, *dyb;            /* [q][dy share][w share] x m: dY_s (W_s^T x), |dY_s| (|W_s^T| |x|) */
  double *mem;
  size_t cap;                   /* bytes of mem */
} tempo_shield_fused;

/* Room for shape (m, n, p) and `rounds` (<= TEMPO_SHIELD_FUSED_ROUNDS); NO_MEMORY. */
TEMPO_WUR tempo_status tempo_shield_fused_prepare(tempo_shield_fused *f, int rounds, int m, int n, int p);
void tempo_shield_fused_free(tempo_shield_fused *f);
/* Draws the vectors (from rng_seed, the verification stream's), forms W_s v from the two
 * W shares (n x p, or p x n when w_trans) and fills rd for the X pass (left vectors only
 * when training). */
void tempo_shield_fused_begin(tempo_shield_fused *f, uint64_t rng_seed, const double *wm, const double *s,
                              bool w_trans, bool training, tempo_shield_rowdots *rd);
/* Checks rows [lo, hi) of share (x_masked, w_masked)'s Y' (y: (hi - lo) x p). */
bool tempo_shield_fused_check_y(const tempo_shield_fused *f, bool x_masked, bool w_masked, int lo, int hi,
                                const double *y);
/* Checks a dW' (n x p, or p x n when w_trans) made of rows [lo, hi) of X share x_masked and
 * of dys (the share's dY rows [lo, hi), (hi - lo) x p), summed over `parts` partials. */
bool tempo_shield_fused_check_dw(const tempo_shield_fused *f, bool x_masked, bool w_trans, int lo, int hi,
                                 const double *dys, const double *dw, int parts);
/* A batch-1 backward's dX' check, formed in the dY pass and finished inside the combine: draws
 * the vectors x (from rng_seed), forms W_s^T x from the two W shares kept from the forward
 * (n x p, or p x n when w_trans) and fills rd for the dY pass (tempo_shield_blind64 of dY). */
void tempo_shield_fused_begin_dx(tempo_shield_fused *f, uint64_t rng_seed, const double *wm, const double *s,
                                 bool w_trans, tempo_shield_rowdots *rd);
/* out (m x n floats) = the four dX' shares (share[role], m x n each) added with their signs in
 * role order and rounded once (as the combine without checks), and in the same pass each
 * share's dX' x checked against dY_s (W_s^T x) with tempo_shield_verify64's bound. Returns -1
 * when all hold, else the first role whose row failed (out is then partial; the error is set). */
int tempo_shield_fused_combine_dx(const tempo_shield_fused *f, const double *const *share, float *out);
/* v_j = +-U[0.5, 1) and vabs_j = |v_j| (n) from rng, the check vectors of tempo_shield_verify64
 * and of the fused checks (f64.c); returns max |v_j|. */
double tempo_shield_check_vector(tempo_rng *rng, double *v, double *vabs, int n);
/* y = op(M) x, yb = |op(M)| xb, op(M) (rows, cols): M stored (rows, cols) or, with trans,
 * (cols, rows) (f64.c). */
void tempo_shield_matvec64(int rows, int cols, const double *M, bool trans, const double *x, const double *xb,
                           double *y, double *yb);

#endif
