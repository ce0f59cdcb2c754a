/* mpi.h - the MPI transport: master side (rank 0, inside `tempo`) and worker side
 * (ranks 1..N, `tempo-worker`). Internal; compiled only when mpicc exists and linked
 * only into the two programs, so the library and its tests stay MPI-free. MPI launches
 * and connects the ranks; the data travels over TCP streams between them (net.h).
 * docs/distributed.md describes the launch, the envelope (tempo/envelope.h), the relay
 * of W' among workers and what happens when a worker dies. */
#ifndef TEMPO_MPI_H
#define TEMPO_MPI_H

#include "tempo/status.h"
#include "tempo/worker.h"

/* True when the process was started by Open MPI's mpirun (OMPI_COMM_WORLD_SIZE is set). */
bool tempo_mpi_launched(void);

/* Master: MPI_Init, checks it is rank 0 of >= 2 ranks, and connects the ranks; an engine
 * configured with tempo_mm_config.transport = tempo_mpi_transport then reaches ranks 1..N
 * (N = world size - 1) instead of in-process threads. *n_workers = N. TEMPO_WORKER_TIMEOUT (seconds) in the environment
 * sets the engine's reply timeout. Connects a TCP stream to every worker (collective: the
 * workers do the same in tempo_mpi_worker_main); one engine per process uses them, and its
 * transport's free sends SHUTDOWN and closes them. */
TEMPO_WUR tempo_status tempo_mpi_master_init(int *argc, char ***argv, int *n_workers);
/* The MPI transport (a tempo_mm_transport_fn; ctx unused, every worker rank is used
 * whatever `requested` says). INVALID_ARGUMENT before tempo_mpi_master_init or when an
 * engine already uses the streams. */
struct tempo_transport;
TEMPO_WUR tempo_status tempo_mpi_transport(void *ctx, int requested, struct tempo_transport **out);
/* Master: MPI_Finalize unless a worker was lost or evicted (then it returns without it,
 * since Open MPI 4.1 may wait forever for a dead peer; mpirun ends the job). */
void tempo_mpi_master_finalize(void);

/* Worker: MPI_Init, serve requests from rank 0 with w until SHUTDOWN, MPI_Finalize.
 * relay_timeout_s bounds the wait for a relayed operand or partial sum. The dW' reduction
 * is the worker core's (tempo_worker_handle_chain); this side only frames the bytes. */
TEMPO_WUR tempo_status tempo_mpi_worker_main(int *argc, char ***argv, tempo_worker *w, double relay_timeout_s);

#endif
