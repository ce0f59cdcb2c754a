/* report.c - tempo_privacy_report (privacy.h): the metric of every forward product of a
 * trail's step. Apart from privacy.c because it reads trails with the attack suite's
 * reader: the master uses the metric (train --privacy-report) but must not link the
 * trail reader (tests/test_enclave_binary.sh); tempo-attack links both. */
#include "tempo/privacy.h"

#include "tempo/attack.h"

tempo_status tempo_privacy_report(const char *dir, int step, const tempo_keyspace *ks, FILE *out) {
  tempo_trail_step s;
  tempo_status st = tempo_trail_load_step(dir, step, &s);
  if (st) return st;
  double hc = tempo_privacy_coef_bits(ks), total = 0;
  fprintf(out, "coefficient entropy h(K) = %.2f bits\n", hc);
  fprintf(out, "%4s %6s %7s %6s %6s %16s %16s %8s\n", "prod", "batch", "m", "n", "p", "H/instance(bits)",
          "H/product(bits)", "perm %");
  for (int i = 0; i < s.n; i++) {
    const tempo_trail_product *p = &s.prods[i];
    double h = tempo_privacy_bits(p->m, p->n, p->p, ks);
    double perm = h - ((double)p->m + p->n + p->p) * hc;
    total += h * p->batch;
    fprintf(out, "%4d %6d %7d %6d %6d %16.4g %16.4g %7.1f%%\n", i, p->batch, p->m, p->n, p->p, h, h * p->batch,
            100.0 * perm / h);
  }
  fprintf(out, "total over %d products of step %d: %.4g bits\n", s.n, step, total);
  tempo_trail_step_free(&s);
  return TEMPO_STATUS_OK;
}
