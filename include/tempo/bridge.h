/* bridge.h - a flat C entry point for foreign callers (the PyTorch bridge, python/tempo_torch,
 * loads it with ctypes from libtempo.so). Plain ints, doubles, strings and float pointers only:
 * no struct of Tempo's crosses it, so a caller never guesses a struct layout.
 *
 * One tempo_bridge owns one engine (matmul.h) and its product sites. A site is a small index
 * (0, 1, 2, ...) that the caller chooses: a forward product on site s and its backward
 * products on the same site belong together, exactly as tempo_mm_site does. The bridge grows
 * its site table on first use of an index (at most TEMPO_BRIDGE_MAX_SITES).
 *
 * Shapes are matmul.h's: `batch` instances Y = X . W^T with X (m, n), W stored (p, n) (the
 * PyTorch layout of nn.Linear and of a lowered nn.Conv2d), Y (m, p), row-major float32,
 * instances back to back. In a training forward the engine keeps the site's keys and the
 * workers keep its blinded operands until tempo_bridge_step_end: the caller keeps X and W
 * unchanged until then and must not run a second forward on the same site before it.
 *
 * Errors: every function that can fail returns a tempo_status; tempo_bridge_errmsg() is the
 * calling thread's message. Every pointer argument is checked for NULL and every size for
 * range (INVALID_ARGUMENT), since a foreign caller cannot be trusted to get them right.
 * Secrets (keys, the key stream) stay in the engine and never cross this interface. */
#ifndef TEMPO_BRIDGE_H
#define TEMPO_BRIDGE_H

#include "tempo/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped when a signature below changes; the caller checks it before anything else. */
#define TEMPO_BRIDGE_ABI 1
#define TEMPO_BRIDGE_MAX_SITES 65536

typedef struct tempo_bridge tempo_bridge;

int tempo_bridge_abi(void);

/* An engine in mode "local", "plain", "tempo" or "shield" with `workers` in-process worker
 * threads, `verify_rounds` Freivalds vectors per result (0 turns checks off), `threads` master
 * threads, key seed `seed` (0 = fresh randomness) and protection policy `protect` ("none",
 * "ends", "spatial", "all", or NULL / "default" for the mode's default: mm_types.h
 * tempo_protect). Same ranges as tempo_mm_create. */
TEMPO_WUR tempo_status tempo_bridge_create(const char *mode, int workers, int verify_rounds, int threads,
                                           uint64_t seed, const char *protect, tempo_bridge **out);
void tempo_bridge_free(tempo_bridge *b); /* NULL does nothing */

/* ONLY IN build/libtempo_mpi.so (libtempo with the MPI transport's master side; built when
 * mpicc exists), not in libtempo.so: an engine whose workers are the other ranks of the
 * mpirun job this process is rank 0 of (`mpirun -np 1 PROGRAM : -np N tempo-worker --backend
 * cpu`); *n_workers = N. MPI starts once per process: a second call is INVALID_ARGUMENT, as is
 * a process not started by mpirun. After tempo_bridge_free of that engine (its transport shuts
 * the workers down), tempo_bridge_mpi_finalize ends MPI. Fault injection is not available. */
TEMPO_WUR tempo_status tempo_bridge_create_mpi(const char *mode, int verify_rounds, int threads, uint64_t seed,
                                               const char *protect, int *n_workers, tempo_bridge **out);
void tempo_bridge_mpi_finalize(void);

/* Y = X . W^T per instance (see above). training != 0 keeps the site's state for
 * tempo_bridge_backward until step end; 0 is an inference product that keeps nothing.
 * kind: what the product exposes (TEMPO_SITE_* flags of mm_types.h: raw input, head,
 * overlapping im2col), from which the protection policy routes it and its backward products
 * (to the workers, or computed by the master); INVALID_ARGUMENT for unknown bits. */
TEMPO_WUR tempo_status tempo_bridge_forward(tempo_bridge *b, int site, unsigned kind, int batch, int m, int n, int p,
                                            int training, const float *X, const float *W, float *Y);
/* The backward products of the site's last training forward, for dY (batch, m, p):
 * dX = dY . W (batch, m, n) when dX != NULL, dW = dY^T . X (batch, p, n) when dW != NULL.
 * X and W are the forward's operands. INVALID_ARGUMENT when the site had no training forward
 * in this step (never run, or already ended by tempo_bridge_step_end) or the shape differs. */
TEMPO_WUR tempo_status tempo_bridge_backward(tempo_bridge *b, int site, int batch, int m, int n, int p,
                                             const float *X, const float *W, const float *dY, float *dX, float *dW);
/* Ends a training step: wipes the step's keys, releases the workers' operands. Every site's
 * backward is refused from here until its next training forward. */
void tempo_bridge_step_end(tempo_bridge *b);

/* The statistics (mm_types.h tempo_mm_stats) as one JSON object of plain numbers, every
 * field by its C name plus "mode", "protect" (the policy in force) and "live_workers": the
 * run's totals (step == 0) or the totals since the last call with step != 0 (then reset).
 * Writes at most cap bytes including the terminating NUL; *len is the length it needs
 * (without the NUL), so a caller whose buffer was too small (INVALID_ARGUMENT) knows what to
 * pass. */
TEMPO_WUR tempo_status tempo_bridge_stats_json(tempo_bridge *b, int step, char *buf, size_t cap, size_t *len);

/* The TEMPO_SITE_* flag named "raw_input", "head" or "spatial" (0 for any other name), so a
 * caller need not copy the flags' values. */
unsigned tempo_bridge_site_kind(const char *name);

/* Workers not evicted (0 in local mode). */
int tempo_bridge_live_workers(const tempo_bridge *b);
/* The calling thread's last error message (never NULL). */
const char *tempo_bridge_errmsg(void);

/* TESTS ONLY (worker_fault.h): in-process worker `worker` cheats with fault kind `kind`
 * (tempo_fault_kind) on its result requests start, start + period, ... INVALID_ARGUMENT in
 * local mode or for a worker or kind out of range. */
TEMPO_WUR tempo_status tempo_bridge_test_set_fault(tempo_bridge *b, int worker, int kind, int start, int period);
/* TESTS ONLY: how many results worker `worker` has falsified (0 in local mode). */
uint64_t tempo_bridge_test_faults(tempo_bridge *b, int worker);

#ifdef __cplusplus
}
#endif
#endif
