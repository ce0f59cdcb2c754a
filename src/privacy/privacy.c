/* privacy.c - the key-space entropy metric (privacy.h). */
#include "tempo/privacy.h"

#include <math.h>

double tempo_privacy_log2_factorial(int n) { return n > 1 ? lgamma((double)n + 1.0) / log(2.0) : 0.0; }

double tempo_privacy_coef_bits(const tempo_keyspace *ks) {
  tempo_keyspace def;
  if (!ks) {
    tempo_keyspace_default(&def);
    ks = &def;
  }
  if (ks->kind == TEMPO_KEYSPACE_INT) return (double)ks->bits;
  /* log-uniform on [1/R, R]: density f(x) = 1 / (x ln R^2); a float32 value x in the
   * binade [2^e, 2^(e+1)) stands for an interval of width 2^(e-23), so its probability is
   * about f(x) 2^(e-23). H = -sum P log2 P, integrated per binade. */
  double R = ks->range, lo = 1.0 / R, L = 2.0 * log(R), h = 0;
  for (int e = (int)floor(log2(lo)) - 1; e <= (int)ceil(log2(R)); e++) {
    double a = fmax(ldexp(1.0, e), lo), b = fmin(ldexp(1.0, e + 1), R);
    if (b <= a) continue;
    double w = ldexp(1.0, e - 23);
    const int steps = 256;
    for (int s = 0; s < steps; s++) { /* midpoint rule over x */
      double x0 = a + (b - a) * s / steps, x1 = a + (b - a) * (s + 1) / steps, x = 0.5 * (x0 + x1);
      double prob_mass = (log(x1) - log(x0)) / L;   /* mass of this slice */
      double p_each = w / (x * L);                  /* probability of one float in it */
      h -= prob_mass * log2(p_each);
    }
  }
  return h;
}

double tempo_privacy_bits(int m, int n, int p, const tempo_keyspace *ks) {
  return tempo_privacy_log2_factorial(m) + tempo_privacy_log2_factorial(n) + tempo_privacy_log2_factorial(p) +
         ((double)m + n + p) * tempo_privacy_coef_bits(ks);
}
