/* gradcheck.h - finite-difference gradient checking shared by the layer tests.
 *
 * The layers compute in float32 (their products go through the matmul entry point), so
 * the check evaluates the scalar loss L = sum_i out_i * r_i (r a fixed random projection)
 * accumulated in double, perturbs one float input at a time by +-eps, and compares the
 * central difference with the analytic gradient by a mixed absolute/relative error:
 *   |num - ana| <= atol + rtol * max(|num|, |ana|)
 * Header-only; include in one test file. */
#ifndef TEMPO_TESTS_GRADCHECK_H
#define TEMPO_TESTS_GRADCHECK_H

#include <math.h>
#include <stdio.h>

/* Evaluates the layer's forward and returns L (double). */
typedef double (*gradcheck_loss_fn)(void *ctx);

/* Checks ana[i] against the central difference of loss over x[i] for every i (or a
 * stride through x when n is large). Returns the number of mismatches (0 = pass) and
 * prints the first few. */
static inline int gradcheck(const char *what, gradcheck_loss_fn loss, void *ctx, float *x, const float *ana,
                            size_t n, double eps, double atol, double rtol) {
  int bad = 0;
  size_t step = n > 400 ? n / 400 : 1;
  for (size_t i = 0; i < n; i += step) {
    const float keep = x[i];
    x[i] = (float)(keep + eps);
    const double lp = loss(ctx);
    x[i] = (float)(keep - eps);
    const double lm = loss(ctx);
    x[i] = keep;
    const double num = (lp - lm) / (2.0 * eps), a = ana[i];
    if (!(fabs(num - a) <= atol + rtol * fmax(fabs(num), fabs(a)))) {
      if (bad < 5) fprintf(stderr, "gradcheck %s[%zu]: numeric %.6g analytic %.6g\n", what, i, num, a);
      bad++;
    }
  }
  return bad;
}

/* L = sum out[i] * r[i], in double. */
static inline double gradcheck_project(const float *out, const float *r, size_t n) {
  double s = 0.0;
  for (size_t i = 0; i < n; i++) s += (double)out[i] * r[i];
  return s;
}

#endif
