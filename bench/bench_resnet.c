/* bench_resnet.c - ms per training step (forward + loss + backward; the optimizer step and
 * zeroing of gradients are included as in tools/peer_bench.py's SGD step) of the ResNets in
 * local mode (the pure-TEE baseline) at 1 and 2 BLAS threads, on random 3x32x32 data.
 * Checks first that a step gives a finite loss; warms up 2 steps, then times N steps and
 * prints a markdown table (median / min / max) to compare with peer-baselines.md.
 *
 *   build/bench/bench_resnet [--models resnet20,resnet18,resnet50] [--threads 1,2] [--steps N]
 * Batch: 64 (resnet50: 32), as the twin. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"

static int bench_one(const char *name, int threads, int steps) {
  const int batch = bench_default_batch(name);
  tempo_mm_config mc;
  tempo_mm_config_default(&mc);
  mc.mode = TEMPO_MODE_LOCAL;
  mc.threads = threads;
  double *t = calloc((size_t)steps, sizeof *t);
  bench_rig rig;
  if (!t || bench_rig_open(&rig, name, &mc, batch)) {
    fprintf(stderr, "bench_resnet: %s: %s\n", name, t ? tempo_errmsg() : "out of memory");
    free(t);
    return 1;
  }
  int rc = 1;
  for (int s = -2; s < steps; s++) {
    const double t0 = tempo_now();
    double loss = 0;
    if (bench_rig_step(&rig, &loss)) {
      fprintf(stderr, "bench_resnet: %s: %s\n", name, tempo_errmsg());
      goto out;
    }
    if (!(loss == loss && loss < 1e3)) {
      fprintf(stderr, "bench_resnet: %s: loss %g is not finite\n", name, loss);
      goto out;
    }
    if (s >= 0) t[s] = (tempo_now() - t0) * 1e3;
  }
  const double med = bench_median(t, steps);
  printf("| %s | %d | %d | %.1f | %.1f | %.1f | %.1f |\n", name, batch, threads, med, t[0], t[steps - 1],
         batch * 1e3 / med);
  fflush(stdout);
  rc = 0;
out:
  bench_rig_close(&rig);
  free(t);
  return rc;
}

int main(int argc, char **argv) {
  const char *models = "resnet20,resnet18,resnet50", *threads = "1,2";
  int steps = 5;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--models") == 0 && i + 1 < argc) models = argv[++i];
    else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) threads = argv[++i];
    else if (strcmp(argv[i], "--steps") == 0 && i + 1 < argc) steps = atoi(argv[++i]);
    else {
      fprintf(stderr, "usage: %s [--models a,b] [--threads 1,2] [--steps N]\n", argv[0]);
      return 2;
    }
  }
  if (steps < 1 || steps > 1000) {
    fprintf(stderr, "bench_resnet: --steps must be 1..1000\n");
    return 2;
  }
  printf("| model | batch | threads | ms/step median | min | max | images/s |\n|---|--:|--:|--:|--:|--:|--:|\n");
  int rc = 0;
  char tl[64];
  snprintf(tl, sizeof tl, "%s", threads);
  for (char *tsave = NULL, *ts = strtok_r(tl, ",", &tsave); ts; ts = strtok_r(NULL, ",", &tsave)) {
    char ml[256];
    snprintf(ml, sizeof ml, "%s", models);
    for (char *msave = NULL, *mname = strtok_r(ml, ",", &msave); mname; mname = strtok_r(NULL, ",", &msave))
      rc |= bench_one(mname, atoi(ts), steps);
  }
  return rc;
}
