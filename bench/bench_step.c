/* bench_step.c - time one training step (forward, cross-entropy, backward, SGD momentum 0.9)
 * of reference models on random data, in any engine mode, and print one JSON line per
 * configuration (collected into docs/BENCHMARKS.md by scripts/run-bench.sh).
 *
 * usage: bench_step [--models a,b] [--modes local,plain,tempo] [--threads 1,2] [--workers N]
 *                   [--steps N] [--warmup N] [--budget-s S] [--batch N] [--protect none,ends,...]
 *                   [--wire fp32,bf16]
 * --protect: the protection policies to run offloaded modes under (default: the mode's own);
 * --wire: the element types of plain and tempo mode's operands (default fp32); local mode runs
 * once whatever the lists.
 * Batch sizes follow the PyTorch twin (64; resnet50 32). Medians with min and max. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"

static int split(char *s, char **out, int cap) {
  int n = 0;
  for (char *t = strtok(s, ","); t && n < cap; t = strtok(NULL, ",")) out[n++] = t;
  return n;
}

int main(int argc, char **argv) {
  char models_s[256] = "mlp,resnet20,vit-mini", modes_s[64] = "local", threads_s[32] = "1", protect_s[64] = "default",
       wire_s[32] = "fp32";
  int workers = 2, steps = 10, warmup = 2, batch_override = 0;
  double budget = 60.0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) goto usage;
    if (!strcmp(a, "--models")) snprintf(models_s, sizeof models_s, "%s", v);
    else if (!strcmp(a, "--modes")) snprintf(modes_s, sizeof modes_s, "%s", v);
    else if (!strcmp(a, "--threads")) snprintf(threads_s, sizeof threads_s, "%s", v);
    else if (!strcmp(a, "--workers")) workers = atoi(v);
    else if (!strcmp(a, "--steps")) steps = atoi(v);
    else if (!strcmp(a, "--warmup")) warmup = atoi(v);
    else if (!strcmp(a, "--budget-s")) budget = atof(v);
    else if (!strcmp(a, "--batch")) batch_override = atoi(v);
    else if (!strcmp(a, "--protect")) snprintf(protect_s, sizeof protect_s, "%s", v);
    else if (!strcmp(a, "--wire")) snprintf(wire_s, sizeof wire_s, "%s", v);
    else goto usage;
    i++;
  }
  if (steps < 1 || warmup < 0 || workers < 1) goto usage;
  printf("{\"memcpy_gbps\":%.2f}\n", bench_memcpy_gbps()); /* the yardstick of the ceiling table */
  char *models[16], *modes[8], *threads[8], *protects[8], *wires[4];
  int nm = split(models_s, models, 16), nmo = split(modes_s, modes, 8), nt = split(threads_s, threads, 8);
  int np = split(protect_s, protects, 8), nw = split(wire_s, wires, 4);
  for (int ti = 0; ti < nt; ti++)
    for (int mi = 0; mi < nm; mi++)
      for (int oi = 0; oi < nmo; oi++)
      for (int pi = 0; pi < np; pi++)
      for (int wi = 0; wi < nw; wi++) {
        tempo_mm_config ec;
        tempo_mm_config_default(&ec);
        if (!tempo_mode_parse(modes[oi], &ec.mode)) goto usage;
        if (strcmp(protects[pi], "default") && !tempo_protect_parse(protects[pi], &ec.protect)) goto usage;
        tempo_wire wire;
        if (!tempo_wire_parse(wires[wi], &wire)) goto usage;
        if (ec.mode == TEMPO_MODE_LOCAL && (pi > 0 || wi > 0)) continue; /* nothing to protect or send */
        ec.wire = (int)wire;
        const char *prot = tempo_protect_name(tempo_mm_config_protect(&ec));
        ec.threads = atoi(threads[ti]);
        ec.workers = workers;
        const char *name = models[mi];
        const int batch = batch_override ? batch_override : bench_default_batch(name);
        bench_rig rig;
        if (bench_rig_open(&rig, name, &ec, batch)) {
          printf("{\"model\":\"%s\",\"mode\":\"%s\",\"threads\":%d,\"error\":\"%s\"}\n", name, modes[oi], ec.threads,
                 tempo_errmsg());
          continue;
        }
        double *t = calloc((size_t)steps, sizeof(double));
        if (!t) {
          bench_rig_close(&rig);
          return 1;
        }
        double *busy = calloc((size_t)steps, sizeof(double));
        if (!busy) {
          free(t);
          bench_rig_close(&rig);
          return 1;
        }
        int done = 0;
        double spent = 0.0, loss = 0.0;
        tempo_mm_stats st, one;
        memset(&st, 0, sizeof st);
        for (int s = 0; s < warmup + steps; s++) {
          tempo_mm_stats_step(rig.mm, &one); /* each step's own window */
          double t0 = tempo_now();
          if (bench_rig_step(&rig, &loss)) break;
          double dt = tempo_now() - t0;
          spent += dt;
          tempo_mm_stats_step(rig.mm, &one);
          if (s >= warmup) {
            tempo_mm_stats_add(&st, &one);
            busy[done] = dt - one.t_wait; /* the master's busy time: all but waiting for replies */
            t[done++] = dt;
          }
          if (spent > budget && done >= 3) break;
        }
        if (done == 0) {
          printf("{\"model\":\"%s\",\"mode\":\"%s\",\"threads\":%d,\"error\":\"%s\"}\n", name, modes[oi], ec.threads,
                 tempo_errmsg());
        } else {
          const int n = done;
          const double med = bench_median(t, n);
          const double per = 1.0 / n;
          printf("{\"model\":\"%s\",\"mode\":\"%s\",\"protect\":\"%s\",\"wire\":\"%s\",\"threads\":%d,\"workers\":%d,\"batch\":%d,"
                 "\"params\":%zu,"
                 "\"steps\":%d,\"ms_median\":%.2f,\"ms_min\":%.2f,\"ms_max\":%.2f,\"loss\":%.4f,"
                 "\"bytes_up_per_step\":%.0f,\"bytes_down_per_step\":%.0f,\"enc_per_step\":%.1f,"
                 "\"naive_enc_per_step\":%.1f,\"t_blind_ms\":%.2f,\"t_verify_ms\":%.2f,\"t_unblind_ms\":%.2f,"
                 "\"t_compute_ms\":%.2f,\"t_wait_ms\":%.2f,\"t_master_busy_ms\":%.2f,"
                 "\"master_bytes_per_step\":%.0f,\"flops_per_step\":%.0f}\n",
                 name, modes[oi], prot, tempo_wire_name(ec.wire), ec.threads, ec.mode == TEMPO_MODE_LOCAL ? 0 : workers, batch,
                 rig.m->params.count, n,
                 med * 1e3, t[0] * 1e3, t[n - 1] * 1e3, loss, st.bytes_up * per, st.bytes_down * per,
                 st.encryptions * per, st.naive_encryptions * per, st.t_blind * per * 1e3, st.t_verify * per * 1e3,
                 st.t_unblind * per * 1e3, st.t_compute * per * 1e3, st.t_wait * per * 1e3,
                 bench_median(busy, n) * 1e3, st.master_bytes * per, st.flops * per);
        }
        fflush(stdout);
        free(busy);
        free(t);
        bench_rig_close(&rig);
      }
  return 0;
usage:
  fprintf(stderr, "usage: bench_step [--models a,b] [--modes local,plain,tempo] [--threads 1,2] [--workers N] "
                  "[--steps N] [--warmup N] [--budget-s S] [--batch N] [--protect none,ends,spatial,all] [--wire fp32,bf16]\n");
  return 2;
}
