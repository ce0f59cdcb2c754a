/* bench_scaling.c - training-step time and master upload per step for one model over the
 * workers at hand: in-process threads (--workers N), or, under mpirun, the tempo-worker
 * ranks (scripts/bench-scaling.sh runs 1, 2, 4 CPU workers; scripts/gpu-check.sh one GPU
 * worker). One JSON line: ms per step (median), the bytes the master put on the wire per
 * step (wire_up, after the W' relay), the engine's logical upload (every message as
 * addressed), and the minimum: each blinded operand once plus one header per message.
 *
 * usage: bench_scaling [--model NAME] [--mode local|plain|tempo] [--workers N] [--steps N]
 *                      [--warmup N] [--batch N] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "offload/transport.h"
#if TEMPO_HAVE_MPI
#include "mpi/mpi.h"
#endif

int main(int argc, char **argv) {
  const char *name = "mlp", *mode = "tempo";
  int workers = 2, steps = 10, warmup = 2, batch = 0, mpi_workers = 0;
#if TEMPO_HAVE_MPI
  if (tempo_mpi_launched() && tempo_mpi_master_init(&argc, &argv, &mpi_workers)) {
    fprintf(stderr, "bench_scaling: %s\n", tempo_errmsg());
    return 1;
  }
#endif
  for (int i = 1; i + 1 < argc; i += 2) {
    const char *a = argv[i], *v = argv[i + 1];
    if (!strcmp(a, "--model")) name = v;
    else if (!strcmp(a, "--mode")) mode = v;
    else if (!strcmp(a, "--workers")) workers = atoi(v);
    else if (!strcmp(a, "--steps")) steps = atoi(v);
    else if (!strcmp(a, "--warmup")) warmup = atoi(v);
    else if (!strcmp(a, "--batch")) batch = atoi(v);
    else {
      fprintf(stderr, "usage: bench_scaling [--model M] [--mode MODE] [--workers N] [--steps N] [--warmup N] [--batch N]\n");
      return 2;
    }
  }
  if (steps < 1 || steps > 1000 || warmup < 0 || workers < 1) return 2;
  tempo_mm_config ec;
  tempo_mm_config_default(&ec);
  if (!tempo_mode_parse(mode, &ec.mode)) return 2;
  ec.workers = mpi_workers ? mpi_workers : workers;
  if (mpi_workers) ec.transport = tempo_mpi_transport;
  ec.threads = 1;
  if (!batch) batch = bench_default_batch(name);
  bench_rig rig;
  double *t = calloc((size_t)steps, sizeof(double));
  if (!t || bench_rig_open(&rig, name, &ec, batch)) {
    fprintf(stderr, "bench_scaling: %s\n", t ? tempo_errmsg() : "out of memory");
    free(t);
    return 1;
  }
  tempo_transport *tr = tempo_mm_test_transport(rig.mm);
  uint64_t wire0 = 0, min0 = 0;
  tempo_mm_stats st;
  double loss = 0;
  int rc = 0;
  for (int s = 0; s < warmup + steps; s++) {
    if (s == warmup) {
      tempo_mm_stats_step(rig.mm, &st);
      if (tr) wire0 = tr->wire_up, min0 = tr->min_up;
    }
    double t0 = tempo_now();
    if (bench_rig_step(&rig, &loss)) {
      fprintf(stderr, "bench_scaling: %s\n", tempo_errmsg());
      rc = 1;
      break;
    }
    if (s >= warmup) t[s - warmup] = tempo_now() - t0;
  }
  if (!rc) {
    tempo_mm_stats_step(rig.mm, &st);
    const double med = bench_median(t, steps);
    const double per = 1.0 / steps;
    printf("{\"model\":\"%s\",\"mode\":\"%s\",\"transport\":\"%s\",\"workers\":%d,\"batch\":%d,\"steps\":%d,"
           "\"ms_median\":%.2f,\"ms_min\":%.2f,\"loss\":%.4f,\"wire_bytes_up_per_step\":%.0f,"
           "\"logical_bytes_up_per_step\":%.0f,\"min_bytes_up_per_step\":%.0f,\"bytes_down_per_step\":%.0f}\n",
           name, mode, mpi_workers ? "mpi" : "inproc", ec.mode == TEMPO_MODE_LOCAL ? 0 : ec.workers, batch, steps,
           med * 1e3, t[0] * 1e3, loss, tr ? (double)(tr->wire_up - wire0) * per : 0.0,
           (double)st.bytes_up * per, tr ? (double)(tr->min_up - min0) * per : 0.0, (double)st.bytes_down * per);
  }
  free(t);
  bench_rig_close(&rig);
#if TEMPO_HAVE_MPI
  tempo_mpi_master_finalize();
#endif
  return rc;
}
