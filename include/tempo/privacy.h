/* privacy.h - the privacy metric of ../shared/spec/obfuscation.md ("Privacy metric").
 *
 * Per product instance: the key-space entropy
 *   H = log2(m!) + log2(n!) + log2(p!) + (m + n + p) * h(K)
 * where h(K) is the entropy of one coefficient: `bits` for the integer key space, and
 * for the log-uniform real key space the entropy of the float32 value the generator
 * produces (the distribution discretised to the float32 grid, computed numerically).
 * This is the search space of a brute-force key guess, NOT a security claim: the
 * attacks of attack.h show what leaks regardless (docs/SECURITY.md). */
#ifndef TEMPO_PRIVACY_H
#define TEMPO_PRIVACY_H

#include <stdio.h>

#include "tempo/obf.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Entropy in bits of one coefficient drawn from ks. */
double tempo_privacy_coef_bits(const tempo_keyspace *ks);
/* log2(n!) */
double tempo_privacy_log2_factorial(int n);
/* H of one product instance of shape (m, n, p). */
double tempo_privacy_bits(int m, int n, int p, const tempo_keyspace *ks);

/* Prints one line per forward product of training step `step` of the trail in dir
 * (index, shape, H per instance, H of all instances, and the share of H that is
 * permutations), then the totals. ks NULL = the default key space. It reads the trail with
 * attack.h's reader, so it lives in its own file (src/privacy/report.c): the master links
 * the metric above (train --privacy-report), not this. */
TEMPO_WUR tempo_status tempo_privacy_report(const char *dir, int step, const tempo_keyspace *ks, FILE *out);

#ifdef __cplusplus
}
#endif
#endif
