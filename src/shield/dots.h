/* dots.h - the float64 kernels of shield's master passes and checks (internal; dots.c).
 * AVX2 with FMA where the CPU has them, portable C elsewhere; the checks' bounds
 * (tempo_shield_verify64) hold for any summation order, so the vector forms need none of
 * their own. */
#ifndef TEMPO_SHIELD_DOTS_H
#define TEMPO_SHIELD_DOTS_H

#include <stddef.h>

/* a . b (n) */
double tempo_shield_dot(const double *a, const double *b, int n);
/* *ys = row . x, *yb = |row| . xb (n) */
void tempo_shield_dot2(const double *row, int n, const double *x, const double *xb, double *ys, double *yb);
/* y += a m, yb += ab |m| (n) */
void tempo_shield_axpy2(int n, const double *m, double a, double ab, double *y, double *yb);
/* y += a x (n) */
void tempo_shield_axpy(int n, double a, const double *x, double *y);
/* out_j = (float)(((sg0 a_j + sg1 b_j) + sg2 c_j) + sg3 d_j), each step rounded as written (the
 * same floats in every form), and y1[q][r] = share_r . x_q (x: `rounds` <= 2 vectors of n, back
 * to back, the fused checks' TEMPO_SHIELD_FUSED_ROUNDS; none and x, y1 unused when rounds is 0) for
 * the four rows a, b, c, d (n each) */
void tempo_shield_combine4_dots(const double *a, const double *b, const double *c, const double *d, const double *sg,
                                int n, const double *x, int rounds, float *out, double (*y1)[4]);
/* the sum of x_i^2 over n floats, in double */
double tempo_shield_sumsq(const float *x, size_t n);

#endif
