/* bench_scaling.c - training-step time and master upload per step for one model over the
 * workers at hand: in-process threads (--workers N), or, under mpirun, the tempo-worker
 * ranks (scripts/bench-scaling.sh runs 1, 2, 4 CPU workers; scripts/gpu-check.sh one GPU
 * worker). One JSON line: ms per step (median), the bytes the master put on the wire per
 * step (wire_up, after the W' relay), the engine's logical upload (every message as
 * addressed), and the minimum: each blinded operand once plus one header per message.
 *
 * It also gives the master's busy time per step (median of each step's time less its wait for
 * replies, as bench_step) and the engine's blind/verify/unblind times, so scripts/gpu-check.sh
 * can put the offload ceiling of one GPU worker beside the CPU's local step.
 *
 * usage: bench_scaling [--model NAME] [--mode local|plain|tempo] [--workers N] [--steps N]
 *                      [--warmup N] [--batch N] [--wire fp32|bf16] [--threads N] */
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
  const char *wire = "fp32";
  int workers = 2, steps = 10, warmup = 2, batch = 0, mpi_workers = 0, threads = 1;
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
    else if (!strcmp(a, "--wire")) wire = v;
    else if (!strcmp(a, "--threads")) threads = atoi(v);
    else {
      fprintf(stderr, "usage: bench_scaling [--model M] [--mode MODE] [--workers N] [--steps N] [--warmup N] [--batch N] "
                      "[--wire fp32|bf16] [--threads N]\n");
      return 2;
    }
  }
  if (steps < 1 || steps > 1000 || warmup < 0 || workers < 1 || threads < 1 || threads > 256) return 2;
  tempo_mm_config ec;
  tempo_mm_config_default(&ec);
  tempo_wire w;
  if (!tempo_mode_parse(mode, &ec.mode) || !tempo_wire_parse(wire, &w)) return 2;
  ec.wire = (int)w;
  ec.workers = mpi_workers ? mpi_workers : workers;
  if (mpi_workers) ec.transport = tempo_mpi_transport;
  ec.threads = threads;
  if (!batch) batch = bench_default_batch(name);
  bench_rig rig;
  double *t = calloc(2 * (size_t)steps, sizeof(double)), *busy = t + steps;
  if (!t || bench_rig_open(&rig, name, &ec, batch)) {
    fprintf(stderr, "bench_scaling: %s\n", t ? tempo_errmsg() : "out of memory");
    free(t);
    return 1;
  }
  tempo_transport *tr = tempo_mm_test_transport(rig.mm);
  uint64_t wire0 = 0, min0 = 0;
  tempo_mm_stats st, one;
  memset(&st, 0, sizeof st);
  double loss = 0;
  int rc = 0;
  for (int s = 0; s < warmup + steps; s++) {
    if (s == warmup && tr) wire0 = tr->wire_up, min0 = tr->min_up;
    tempo_mm_stats_step(rig.mm, &one); /* each step's own window */
    double t0 = tempo_now();
    if (bench_rig_step(&rig, &loss)) {
      fprintf(stderr, "bench_scaling: %s\n", tempo_errmsg());
      rc = 1;
      break;
    }
    const double dt = tempo_now() - t0;
    tempo_mm_stats_step(rig.mm, &one);
    if (s >= warmup) {
      tempo_mm_stats_add(&st, &one);
      t[s - warmup] = dt;
      busy[s - warmup] = dt - one.t_wait; /* the master's busy time: all but waiting for replies */
    }
  }
  if (!rc) {
    const double med = bench_median(t, steps);
    const double per = 1.0 / steps;
    const double med_busy = bench_median(busy, steps);
    printf("{\"model\":\"%s\",\"mode\":\"%s\",\"wire\":\"%s\",\"threads\":%d,\"transport\":\"%s\",\"workers\":%d,"
           "\"batch\":%d,\"steps\":%d,"
           "\"ms_median\":%.2f,\"ms_min\":%.2f,\"loss\":%.4f,\"wire_bytes_up_per_step\":%.0f,"
           "\"logical_bytes_up_per_step\":%.0f,\"min_bytes_up_per_step\":%.0f,\"bytes_down_per_step\":%.0f,"
           "\"t_blind_ms\":%.2f,\"t_verify_ms\":%.2f,\"t_unblind_ms\":%.2f,\"t_wait_ms\":%.2f,"
           "\"t_master_busy_ms\":%.2f,\"master_bytes_per_step\":%.0f,\"flops_per_step\":%.0f}\n",
           name, mode, tempo_wire_name(ec.wire), ec.threads, mpi_workers ? "mpi" : "inproc",
           ec.mode == TEMPO_MODE_LOCAL ? 0 : ec.workers, batch, steps, med * 1e3, t[0] * 1e3, loss,
           tr ? (double)(tr->wire_up - wire0) * per : 0.0, (double)st.bytes_up * per,
           tr ? (double)(tr->min_up - min0) * per : 0.0, (double)st.bytes_down * per, st.t_blind * per * 1e3,
           st.t_verify * per * 1e3, st.t_unblind * per * 1e3, st.t_wait * per * 1e3, med_busy * 1e3,
           st.master_bytes * per, st.flops * per);
  }
  free(t);
  bench_rig_close(&rig);
#if TEMPO_HAVE_MPI
  tempo_mpi_master_finalize();
#endif
  return rc;
}
