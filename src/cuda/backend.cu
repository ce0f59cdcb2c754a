// backend.cu - the CUDA GEMM backend (cuda.h): cuBLAS SGEMM (float32 requests), DGEMM
// (float64 requests: shield mode's shares) or GemmEx with bfloat16 inputs, float32 compute and
// float32 results (BF16 requests: the 16-bit wire, protocol.h) on device-resident operands.
// Keyed operands (the worker's operand cache) stay in device memory until forget(key), so
// a backward request re-uses X' and W' uploaded by its forward. Un-keyed operands and
// results use grow-only device scratch. Host data is staged through pinned buffers; the
// `cnt` instances of a request alternate between two streams, so one instance's copies
// overlap the other's GEMM.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdlib>
#include <cstring>
#include <new>
#include <unordered_map>

#include "cuda/cuda.h"
#include "tempo/precision.h"

namespace {

struct dev_buf {
  void *d = nullptr;
  size_t cap = 0;  // bytes
};

struct ctx {
  int device = 0;
  cublasHandle_t blas = nullptr;
  cudaStream_t stream[2] = {nullptr, nullptr};
  std::unordered_map<uint64_t, dev_buf> keyed;
  dev_buf scratch[4];      // X, W, dY, out
  void *pinned[2] = {nullptr, nullptr};  // staging per stream
  size_t pinned_cap[2] = {0, 0};          // bytes
};

tempo_status cuda_err(cudaError_t e, const char *what) {
  return tempo_set_error(TEMPO_STATUS_WORKER, "cuda: %s: %s", what, cudaGetErrorString(e));
}
tempo_status blas_err(cublasStatus_t s, const char *what) {
  return tempo_set_error(TEMPO_STATUS_WORKER, "cublas: %s failed (status %d)", what, (int)s);
}

tempo_status grow_bytes(dev_buf *b, size_t bytes) {
  if (b->cap >= bytes && b->d) return TEMPO_STATUS_OK;
  if (b->d) cudaFree(b->d);
  b->d = nullptr, b->cap = 0;
  cudaError_t e = cudaMalloc(&b->d, bytes ? bytes : 1);
  if (e != cudaSuccess) return cuda_err(e, "cudaMalloc");
  b->cap = bytes;
  return TEMPO_STATUS_OK;
}

template <typename T> tempo_status grow(dev_buf *b, size_t count) { return grow_bytes(b, count * sizeof(T)); }

tempo_status grow_pinned(ctx *c, int k, size_t bytes) {
  if (c->pinned_cap[k] >= bytes && c->pinned[k]) return TEMPO_STATUS_OK;
  if (c->pinned[k]) cudaFreeHost(c->pinned[k]);
  c->pinned[k] = nullptr, c->pinned_cap[k] = 0;
  cudaError_t e = cudaMallocHost(&c->pinned[k], bytes ? bytes : 1);
  if (e != cudaSuccess) return cuda_err(e, "cudaMallocHost");
  c->pinned_cap[k] = bytes;
  return TEMPO_STATUS_OK;
}

// Uploads host[count] into dst via the pinned staging of stream k (synchronous staging copy,
// asynchronous device copy; the stream is synchronised before the staging is reused).
template <typename T> tempo_status upload(ctx *c, int k, T *dst, const T *host, size_t count) {
  tempo_status st = grow_pinned(c, k, count * sizeof(T));
  if (st) return st;
  cudaError_t e = cudaStreamSynchronize(c->stream[k]);
  if (e != cudaSuccess) return cuda_err(e, "sync");
  std::memcpy(c->pinned[k], host, count * sizeof(T));
  e = cudaMemcpyAsync(dst, c->pinned[k], count * sizeof(T), cudaMemcpyHostToDevice, c->stream[k]);
  return e == cudaSuccess ? TEMPO_STATUS_OK : cuda_err(e, "upload");
}

// The device copy of an operand: keyed (uploaded once, kept) or scratch slot `slot`.
template <typename T>
tempo_status operand(ctx *c, uint64_t key, const T *host, size_t count, int slot, const T **out) {
  tempo_status st;
  if (key) {
    auto it = c->keyed.find(key);
    if (it != c->keyed.end() && it->second.cap == count * sizeof(T)) {
      *out = static_cast<const T *>(it->second.d);
      return TEMPO_STATUS_OK;
    }
    dev_buf b;
    if (it != c->keyed.end()) b = it->second;
    // a re-used key gets exactly count elements (cap decides the reuse test above)
    if (b.d && b.cap != count * sizeof(T)) {
      cudaFree(b.d);
      b = dev_buf();
    }
    if ((st = grow<T>(&b, count))) return st;
    c->keyed[key] = b;
    if ((st = upload<T>(c, 0, static_cast<T *>(b.d), host, count))) return st;
    cudaError_t e = cudaStreamSynchronize(c->stream[0]);  // keyed data is read by both streams
    if (e != cudaSuccess) return cuda_err(e, "sync");
    *out = static_cast<const T *>(b.d);
    return TEMPO_STATUS_OK;
  }
  if ((st = grow<T>(&c->scratch[slot], count))) return st;
  *out = static_cast<const T *>(c->scratch[slot].d);
  return TEMPO_STATUS_OK;
}

// Downloads dev[count] to host through stream k's staging.
template <typename T> tempo_status download(ctx *c, int k, T *host, const T *dev, size_t count) {
  tempo_status st = grow_pinned(c, k, count * sizeof(T));
  if (st) return st;
  cudaError_t e = cudaMemcpyAsync(c->pinned[k], dev, count * sizeof(T), cudaMemcpyDeviceToHost, c->stream[k]);
  if (e == cudaSuccess) e = cudaStreamSynchronize(c->stream[k]);
  if (e != cudaSuccess) return cuda_err(e, "download");
  std::memcpy(host, c->pinned[k], count * sizeof(T));
  return TEMPO_STATUS_OK;
}

// cuBLAS GEMM of either precision (column-major, as cuBLAS takes it).
// acc: C += A B (beta 1) instead of C = A B.
cublasStatus_t gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const float *A,
                    int lda, const float *B, int ldb, float *C, int ldc, bool acc = false) {
  const float one = 1.0f, beta = acc ? 1.0f : 0.0f;
  return cublasSgemm(h, ta, tb, m, n, k, &one, A, lda, B, ldb, &beta, C, ldc);
}
cublasStatus_t gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const double *A,
                    int lda, const double *B, int ldb, double *C, int ldc, bool acc = false) {
  const double one = 1.0, beta = acc ? 1.0 : 0.0;
  return cublasDgemm(h, ta, tb, m, n, k, &one, A, lda, B, ldb, &beta, C, ldc);
}
// bfloat16 operands (the bits of bf16.h), float32 accumulation and result
cublasStatus_t gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                    const uint16_t *A, int lda, const uint16_t *B, int ldb, float *C, int ldc, bool acc = false) {
  const float one = 1.0f, beta = acc ? 1.0f : 0.0f;
  return cublasGemmEx(h, ta, tb, m, n, k, &one, A, CUDA_R_16BF, lda, B, CUDA_R_16BF, ldb, &beta, C, CUDA_R_32F, ldc,
                      CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}

tempo_status begin(ctx *c) {
  cudaError_t e = cudaSetDevice(c->device);
  return e == cudaSuccess ? TEMPO_STATUS_OK : cuda_err(e, "cudaSetDevice");
}

// Row-major products written as column-major cuBLAS calls (see docs/distributed.md); T the
// operands' element type, R the results'.
template <typename T, typename R = T>
tempo_status fwd(void *vc, const tempo_gemm_desc *d, const T *X, uint64_t xkey, const T *W, uint64_t wkey, R *Y) {
  ctx *c = static_cast<ctx *>(vc);
  tempo_status st;
  if ((st = begin(c))) return st;
  const int rows = d->rows, n = d->n, p = d->p;
  const size_t xs = (size_t)rows * n, ws = (size_t)n * p, ys = (size_t)rows * p, cnt = (size_t)d->cnt;
  const T *dX, *dW;
  if ((st = operand<T>(c, xkey, X, cnt * xs, 0, &dX)) || (st = operand<T>(c, wkey, W, cnt * ws, 1, &dW))) return st;
  if ((st = grow<R>(&c->scratch[3], cnt * ys))) return st;
  R *dY = static_cast<R *>(c->scratch[3].d);
  for (size_t b = 0; b < cnt; b++) {
    const int k = (int)(b & 1);
    if (!xkey && (st = upload<T>(c, k, const_cast<T *>(dX) + b * xs, X + b * xs, xs))) return st;
    if (!wkey && (st = upload<T>(c, k, const_cast<T *>(dW) + b * ws, W + b * ws, ws))) return st;
    cublasSetStream(c->blas, c->stream[k]);
    // Y^T (p, rows) = W^T X^T
    cublasStatus_t s = gemm(c->blas, d->w_trans ? CUBLAS_OP_T : CUBLAS_OP_N, CUBLAS_OP_N, p, rows, n, dW + b * ws,
                            d->w_trans ? n : p, dX + b * xs, n, dY + b * ys, p);
    if (s != CUBLAS_STATUS_SUCCESS) return blas_err(s, "forward gemm");
    if ((st = download<R>(c, k, Y + b * ys, dY + b * ys, ys))) return st;
  }
  return TEMPO_STATUS_OK;
}

template <typename T, typename R = T>
tempo_status bwd(void *vc, const tempo_gemm_desc *d, const T *X, uint64_t xkey, const T *W, uint64_t wkey,
                 const T *dYh, R *dXh, R *dWh) {
  ctx *c = static_cast<ctx *>(vc);
  tempo_status st;
  if ((st = begin(c))) return st;
  const int rows = d->rows, n = d->n, p = d->p;
  const size_t xs = (size_t)rows * n, ws = (size_t)n * p, ys = (size_t)rows * p, cnt = (size_t)d->cnt;
  const T *dX = nullptr, *dW = nullptr;
  if (dWh && (st = operand<T>(c, xkey, X, cnt * xs, 0, &dX))) return st;
  if (dXh && (st = operand<T>(c, wkey, W, cnt * ws, 1, &dW))) return st;
  if ((st = grow<T>(&c->scratch[2], cnt * ys))) return st;
  if ((st = grow<R>(&c->scratch[3], cnt * ((dXh ? xs : 0) + (dWh ? ws : 0))))) return st;
  T *gy = static_cast<T *>(c->scratch[2].d);
  R *gx = static_cast<R *>(c->scratch[3].d);
  R *gw = gx + (dXh ? cnt * xs : 0);
  for (size_t b = 0; b < cnt; b++) {
    const int k = (int)(b & 1);
    if ((st = upload<T>(c, k, gy + b * ys, dYh + b * ys, ys))) return st;
    if (!xkey && dWh && (st = upload<T>(c, k, const_cast<T *>(dX) + b * xs, X + b * xs, xs))) return st;
    if (!wkey && dXh && (st = upload<T>(c, k, const_cast<T *>(dW) + b * ws, W + b * ws, ws))) return st;
    cublasSetStream(c->blas, c->stream[k]);
    cublasStatus_t s = CUBLAS_STATUS_SUCCESS;
    if (dXh)  // dX^T (n, rows) = W dY^T
      s = gemm(c->blas, d->w_trans ? CUBLAS_OP_N : CUBLAS_OP_T, CUBLAS_OP_N, n, rows, p, dW + b * ws,
               d->w_trans ? n : p, gy + b * ys, p, gx + b * xs, n);
    // dW' in chunks of TEMPO_DW_CHUNK_ROWS rows added to the running sum (precision.h: the
    // master's bound counts on it); a chunk's K is too short for cuBLAS to split it further
    for (int lo = 0; s == CUBLAS_STATUS_SUCCESS && dWh && lo < rows; lo += TEMPO_DW_CHUNK_ROWS) {
      const int len = rows - lo < TEMPO_DW_CHUNK_ROWS ? rows - lo : TEMPO_DW_CHUNK_ROWS;
      const T *xc = dX + b * xs + (size_t)lo * n, *gc = gy + b * ys + (size_t)lo * p;
      if (d->w_trans)  // dW (p, n) row-major: col-major (n, p) = X^T dY
        s = gemm(c->blas, CUBLAS_OP_N, CUBLAS_OP_T, n, p, len, xc, n, gc, p, gw + b * ws, n, lo > 0);
      else  // dW (n, p) row-major: col-major (p, n) = dY^T X
        s = gemm(c->blas, CUBLAS_OP_N, CUBLAS_OP_T, p, n, len, gc, p, xc, n, gw + b * ws, p, lo > 0);
    }
    if (s != CUBLAS_STATUS_SUCCESS) return blas_err(s, "backward gemm");
    if (dXh && (st = download<R>(c, k, dXh + b * xs, gx + b * xs, xs))) return st;
    if (dWh && (st = download<R>(c, k, dWh + b * ws, gw + b * ws, ws))) return st;
  }
  return TEMPO_STATUS_OK;
}

tempo_status cu_forward(void *vc, const tempo_gemm_desc *d, const float *X, uint64_t xkey, const float *W,
                        uint64_t wkey, float *Y) {
  return fwd<float>(vc, d, X, xkey, W, wkey, Y);
}
tempo_status cu_backward(void *vc, const tempo_gemm_desc *d, const float *X, uint64_t xkey, const float *W,
                         uint64_t wkey, const float *dY, float *dX, float *dW) {
  return bwd<float>(vc, d, X, xkey, W, wkey, dY, dX, dW);
}
tempo_status cu_forward64(void *vc, const tempo_gemm_desc *d, const double *X, uint64_t xkey, const double *W,
                          uint64_t wkey, double *Y) {
  return fwd<double>(vc, d, X, xkey, W, wkey, Y);
}
tempo_status cu_backward64(void *vc, const tempo_gemm_desc *d, const double *X, uint64_t xkey, const double *W,
                           uint64_t wkey, const double *dY, double *dX, double *dW) {
  return bwd<double>(vc, d, X, xkey, W, wkey, dY, dX, dW);
}

tempo_status cu_forward_bf16(void *vc, const tempo_gemm_desc *d, const uint16_t *X, uint64_t xkey, const uint16_t *W,
                             uint64_t wkey, float *Y) {
  return fwd<uint16_t, float>(vc, d, X, xkey, W, wkey, Y);
}
tempo_status cu_backward_bf16(void *vc, const tempo_gemm_desc *d, const uint16_t *X, uint64_t xkey, const uint16_t *W,
                              uint64_t wkey, const uint16_t *dY, float *dX, float *dW) {
  return bwd<uint16_t, float>(vc, d, X, xkey, W, wkey, dY, dX, dW);
}

void cu_forget(void *vc, uint64_t key) {
  ctx *c = static_cast<ctx *>(vc);
  if (cudaSetDevice(c->device) != cudaSuccess) return;
  cudaStreamSynchronize(c->stream[0]);
  cudaStreamSynchronize(c->stream[1]);
  if (key == 0) {
    for (auto &kv : c->keyed) cudaFree(kv.second.d);
    c->keyed.clear();
    return;
  }
  auto it = c->keyed.find(key);
  if (it == c->keyed.end()) return;
  cudaFree(it->second.d);
  c->keyed.erase(it);
}

void cu_destroy(void *vc) {
  ctx *c = static_cast<ctx *>(vc);
  if (!c) return;
  cu_forget(c, 0);
  for (auto &b : c->scratch)
    if (b.d) cudaFree(b.d);
  for (int k = 0; k < 2; k++) {
    if (c->pinned[k]) cudaFreeHost(c->pinned[k]);
    if (c->stream[k]) cudaStreamDestroy(c->stream[k]);
  }
  if (c->blas) cublasDestroy(c->blas);
  delete c;
}

}  // namespace

extern "C" int tempo_cuda_device_count(void) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

extern "C" tempo_status tempo_cuda_backend_create(int device, bool tf32, tempo_backend **out) {
  *out = nullptr;
  const int ndev = tempo_cuda_device_count();
  if (ndev <= 0) return tempo_set_error(TEMPO_STATUS_UNSUPPORTED, "cuda: no GPU (cudaGetDeviceCount found none)");
  if (device < 0 || device >= ndev)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "cuda: device %d of %d", device, ndev);
  ctx *c = new (std::nothrow) ctx;
  tempo_backend *b = static_cast<tempo_backend *>(std::calloc(1, sizeof *b));
  if (!c || !b) {
    delete c;
    std::free(b);
    return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "cuda: out of memory");
  }
  c->device = device;
  tempo_status st = TEMPO_STATUS_OK;
  cudaError_t e = cudaSetDevice(device);
  if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&c->stream[0], cudaStreamNonBlocking);
  if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&c->stream[1], cudaStreamNonBlocking);
  if (e != cudaSuccess) st = cuda_err(e, "stream");
  cublasStatus_t s = st ? CUBLAS_STATUS_SUCCESS : cublasCreate(&c->blas);
  if (!st && s != CUBLAS_STATUS_SUCCESS) st = blas_err(s, "cublasCreate");
  cublasMath_t mode = CUBLAS_DEFAULT_MATH;
  if (!st) {
    s = cublasSetMathMode(c->blas, tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH);
    if (s != CUBLAS_STATUS_SUCCESS) st = blas_err(s, "cublasSetMathMode");
  }
  /* declare what the handle really does (precision.h): TF32 tensor ops round the operands
   * to 10-bit mantissas; the default math mode keeps float32 SGEMM */
  if (!st && (s = cublasGetMathMode(c->blas, &mode)) != CUBLAS_STATUS_SUCCESS) st = blas_err(s, "cublasGetMathMode");
  if (st) {
    cu_destroy(c);
    std::free(b);
    return st;
  }
  b->name = tf32 ? "cuda-tf32" : "cuda";
  b->precision = (static_cast<unsigned>(mode) & CUBLAS_TF32_TENSOR_OP_MATH) ? TEMPO_PRECISION_TF32 : TEMPO_PRECISION_FP32;
  b->ctx = c;
  b->forward = cu_forward;
  b->backward = cu_backward;
  b->forward64 = cu_forward64;
  b->backward64 = cu_backward64;
  b->forward_bf16 = cu_forward_bf16;
  b->backward_bf16 = cu_backward_bf16;
  b->forget = cu_forget;
  b->destroy = cu_destroy;
  *out = b;
  return TEMPO_STATUS_OK;
}

extern "C" void tempo_cuda_backend_free(tempo_backend *b) {
  if (!b) return;
  if (b->destroy) b->destroy(b->ctx);
  std::free(b);
}
