/* bridge_mpi.c - the bridge's engine over MPI workers (bridge.h, tempo_bridge_create_mpi).
 * Built into build/libtempo_mpi.so only (libtempo's objects, the master side of the MPI
 * transport and this file), never into libtempo.so, so the library stays MPI-free. The
 * caller (a Python master) is rank 0 of an mpirun job whose other ranks are tempo-worker. */
#include <stdbool.h>

#include "bridge/bridge_internal.h"
#include "mpi/mpi.h"

static bool g_started; /* MPI_Init runs once per process */

tempo_status tempo_bridge_create_mpi(const char *mode, int verify_rounds, int threads, uint64_t seed,
                                     const char *protect, int *n_workers, tempo_bridge **out) {
  if (!out || !n_workers) return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "bridge: NULL argument");
  *out = NULL, *n_workers = 0;
  if (!tempo_mpi_launched())
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT,
                           "bridge: MPI workers need mpirun: mpirun -np 1 /usr/bin/python3 SCRIPT : "
                           "-np N build/tempo-worker --backend cpu");
  if (g_started)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "bridge: one MPI engine per process (MPI starts once)");
  g_started = true;
  int n = 0;
  tempo_status st = tempo_mpi_master_init(NULL, NULL, &n);
  if (!st) st = tempo_bridge_create_with(mode, n, verify_rounds, threads, seed, protect, tempo_mpi_transport, out);
  if (!st) *n_workers = n;
  return st;
}

void tempo_bridge_mpi_finalize(void) { tempo_mpi_master_finalize(); }
