/* bridge_internal.h - what the MPI half of the bridge (src/mpi/bridge_mpi.c, in
 * build/libtempo_mpi.so) needs from bridge.c: creation with a transport. */
#ifndef TEMPO_BRIDGE_INTERNAL_H
#define TEMPO_BRIDGE_INTERNAL_H

#include "tempo/bridge.h"
#include "tempo/mm_types.h"

/* tempo_bridge_create with the engine's transport (NULL: in-process worker threads). */
TEMPO_WUR tempo_status tempo_bridge_create_with(const char *mode, int workers, int verify_rounds, int threads,
                                                uint64_t seed, const char *protect, tempo_mm_transport_fn transport,
                                                tempo_bridge **out);

#endif
