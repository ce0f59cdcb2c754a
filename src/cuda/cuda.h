/* cuda.h - the CUDA GEMM backend (src/cuda/backend.cu), C entry points.
 * Compiled only when nvcc exists; linked only into tempo-worker and the CUDA tests. */
#ifndef TEMPO_CUDA_H
#define TEMPO_CUDA_H

#include "tempo/worker.h"

#ifdef __cplusplus
extern "C" {
#endif

/* CUDA devices usable here; 0 when there is no driver or no GPU (never fails). */
int tempo_cuda_device_count(void);

/* A backend on device `device`: cuBLAS SGEMM with CUBLAS_DEFAULT_MATH (TF32 tensor cores
 * only with tf32 = true), operands named by a key kept in device memory until forget(key)
 * (so the backward pass re-uses X' and W' without uploading them again), one CUDA stream
 * with pinned staging buffers so uploads, GEMMs and downloads are queued asynchronously.
 * *out is heap-allocated; free it with tempo_cuda_backend_free. UNSUPPORTED without a GPU. */
TEMPO_WUR tempo_status tempo_cuda_backend_create(int device, bool tf32, tempo_backend **out);
void tempo_cuda_backend_free(tempo_backend *b);

#ifdef __cplusplus
}
#endif
#endif
