// backend.cu - the CUDA GEMM backend (cuda.h): cuBLAS SGEMM on device-resident operands.
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

namespace {

struct dev_buf {
  float *d = nullptr;
  size_t cap = 0;  // floats
};

struct ctx {
  int device = 0;
  cublasHandle_t blas = nullptr;
  cudaStream_t stream[2] = {nullptr, nullptr};
  std::unordered_map<uint64_t, dev_buf> keyed;
  dev_buf scratch[4];      // X, W, dY, out
  float *pinned[2] = {nullptr, nullptr};  // staging per stream
  size_t pinned_cap[2] = {0, 0};
};

tempo_status cuda_err(cudaError_t e, const char *what) {
  return tempo_set_error(TEMPO_STATUS_WORKER, "cuda: %s: %s", what, cudaGetErrorString(e));
}
tempo_status blas_err(cublasStatus_t s, const char *what) {
  return tempo_set_error(TEMPO_STATUS_WORKER, "cublas: %s failed (status %d)", what, (int)s);
}

tempo_status grow(dev_buf *b, size_t count) {
  if (b->cap >= count && b->d) return TEMPO_STATUS_OK;
  if (b->d) cudaFree(b->d);
  b->d = nullptr, b->cap = 0;
  cudaError_t e = cudaMalloc(&b->d, (count ? count : 1) * sizeof(float));
  if (e != cudaSuccess) return cuda_err(e, "cudaMalloc");
  b->cap = count;
  return TEMPO_STATUS_OK;
}

tempo_status grow_pinned(ctx *c, int k, size_t count) {
  if (c->pinned_cap[k] >= count && c->pinned[k]) return TEMPO_STATUS_OK;
  if (c->pinned[k]) cudaFreeHost(c->pinned[k]);
  c->pinned[k] = nullptr, c->pinned_cap[k] = 0;
  cudaError_t e = cudaMallocHost(&c->pinned[k], (count ? count : 1) * sizeof(float));
  if (e != cudaSuccess) return cuda_err(e, "cudaMallocHost");
  c->pinned_cap[k] = count;
  return TEMPO_STATUS_OK;
}

// Uploads host[count] into dst via the pinned staging of stream k (synchronous staging copy,
// asynchronous device copy; the stream is synchronised before the staging is reused).
tempo_status upload(ctx *c, int k, float *dst, const float *host, size_t count) {
  tempo_status st = grow_pinned(c, k, count);
  if (st) return st;
  cudaError_t e = cudaStreamSynchronize(c->stream[k]);
  if (e != cudaSuccess) return cuda_err(e, "sync");
  std::memcpy(c->pinned[k], host, count * sizeof(float));
  e = cudaMemcpyAsync(dst, c->pinned[k], count * sizeof(float), cudaMemcpyHostToDevice, c->stream[k]);
  return e == cudaSuccess ? TEMPO_STATUS_OK : cuda_err(e, "upload");
}

// The device copy of an operand: keyed (uploaded once, kept) or scratch slot `slot`.
tempo_status operand(ctx *c, uint64_t key, const float *host, size_t count, int slot, const float **out) {
  tempo_status st;
  if (key) {
    auto it = c->keyed.find(key);
    if (it != c->keyed.end() && it->second.cap == count) {
      *out = it->second.d;
      return TEMPO_STATUS_OK;
    }
    dev_buf b;
    if (it != c->keyed.end()) b = it->second;
    if ((st = grow(&b, count))) return st;
    c->keyed[key] = b;
    if ((st = upload(c, 0, b.d, host, count))) return st;
    cudaError_t e = cudaStreamSynchronize(c->stream[0]);  // keyed data is read by both streams
    if (e != cudaSuccess) return cuda_err(e, "sync");
    *out = b.d;
    return TEMPO_STATUS_OK;
  }
  if ((st = grow(&c->scratch[slot], count))) return st;
  *out = c->scratch[slot].d;
  return TEMPO_STATUS_OK;
}

// Downloads dev[count] to host through stream k's staging.
tempo_status download(ctx *c, int k, float *host, const float *dev, size_t count) {
  tempo_status st = grow_pinned(c, k, count);
  if (st) return st;
  cudaError_t e = cudaMemcpyAsync(c->pinned[k], dev, count * sizeof(float), cudaMemcpyDeviceToHost, c->stream[k]);
  if (e == cudaSuccess) e = cudaStreamSynchronize(c->stream[k]);
  if (e != cudaSuccess) return cuda_err(e, "download");
  std::memcpy(host, c->pinned[k], count * sizeof(float));
  return TEMPO_STATUS_OK;
}

tempo_status begin(ctx *c) {
  cudaError_t e = cudaSetDevice(c->device);
  return e == cudaSuccess ? TEMPO_STATUS_OK : cuda_err(e, "cudaSetDevice");
}

// Row-major products written as column-major cuBLAS calls (see docs/distributed.md).
tempo_status cu_forward(void *vc, const tempo_gemm_desc *d, const float *X, uint64_t xkey, const float *W,
                        uint64_t wkey, float *Y) {
  ctx *c = static_cast<ctx *>(vc);
  tempo_status st;
  if ((st = begin(c))) return st;
  const int rows = d->rows, n = d->n, p = d->p;
  const size_t xs = (size_t)rows * n, ws = (size_t)n * p, ys = (size_t)rows * p, cnt = (size_t)d->cnt;
  const float *dX, *dW;
  if ((st = operand(c, xkey, X, cnt * xs, 0, &dX)) || (st = operand(c, wkey, W, cnt * ws, 1, &dW))) return st;
  if ((st = grow(&c->scratch[3], cnt * ys))) return st;
  float *dY = c->scratch[3].d;
  const float one = 1.0f, zero = 0.0f;
  for (size_t b = 0; b < cnt; b++) {
    const int k = (int)(b & 1);
    if (!xkey && (st = upload(c, k, const_cast<float *>(dX) + b * xs, X + b * xs, xs))) return st;
    if (!wkey && (st = upload(c, k, const_cast<float *>(dW) + b * ws, W + b * ws, ws))) return st;
    cublasSetStream(c->blas, c->stream[k]);
    // Y^T (p, rows) = W^T X^T
    cublasStatus_t s = cublasSgemm(c->blas, d->w_trans ? CUBLAS_OP_T : CUBLAS_OP_N, CUBLAS_OP_N, p, rows, n, &one,
                                   dW + b * ws, d->w_trans ? n : p, dX + b * xs, n, &zero, dY + b * ys, p);
    if (s != CUBLAS_STATUS_SUCCESS) return blas_err(s, "forward sgemm");
    if ((st = download(c, k, Y + b * ys, dY + b * ys, ys))) return st;
  }
  return TEMPO_STATUS_OK;
}

tempo_status cu_backward(void *vc, const tempo_gemm_desc *d, const float *X, uint64_t xkey, const float *W,
                         uint64_t wkey, const float *dYh, float *dXh, float *dWh) {
  ctx *c = static_cast<ctx *>(vc);
  tempo_status st;
  if ((st = begin(c))) return st;
  const int rows = d->rows, n = d->n, p = d->p;
  const size_t xs = (size_t)rows * n, ws = (size_t)n * p, ys = (size_t)rows * p, cnt = (size_t)d->cnt;
  const float *dX = nullptr, *dW = nullptr;
  if (dWh && (st = operand(c, xkey, X, cnt * xs, 0, &dX))) return st;
  if (dXh && (st = operand(c, wkey, W, cnt * ws, 1, &dW))) return st;
  if ((st = grow(&c->scratch[2], cnt * ys))) return st;
  if ((st = grow(&c->scratch[3], cnt * ((dXh ? xs : 0) + (dWh ? ws : 0))))) return st;
  float *gy = c->scratch[2].d, *gx = c->scratch[3].d, *gw = c->scratch[3].d + (dXh ? cnt * xs : 0);
  const float one = 1.0f, zero = 0.0f;
  for (size_t b = 0; b < cnt; b++) {
    const int k = (int)(b & 1);
    if ((st = upload(c, k, gy + b * ys, dYh + b * ys, ys))) return st;
    if (!xkey && dWh && (st = upload(c, k, const_cast<float *>(dX) + b * xs, X + b * xs, xs))) return st;
    if (!wkey && dXh && (st = upload(c, k, const_cast<float *>(dW) + b * ws, W + b * ws, ws))) return st;
    cublasSetStream(c->blas, c->stream[k]);
    cublasStatus_t s = CUBLAS_STATUS_SUCCESS;
    if (dXh)  // dX^T (n, rows) = W dY^T
      s = cublasSgemm(c->blas, d->w_trans ? CUBLAS_OP_N : CUBLAS_OP_T, CUBLAS_OP_N, n, rows, p, &one, dW + b * ws,
                      d->w_trans ? n : p, gy + b * ys, p, &zero, gx + b * xs, n);
    if (s == CUBLAS_STATUS_SUCCESS && dWh) {
      if (d->w_trans)  // dW (p, n) row-major: col-major (n, p) = X^T dY
        s = cublasSgemm(c->blas, CUBLAS_OP_N, CUBLAS_OP_T, n, p, rows, &one, dX + b * xs, n, gy + b * ys, p, &zero,
                        gw + b * ws, n);
      else  // dW (n, p) row-major: col-major (p, n) = dY^T X
        s = cublasSgemm(c->blas, CUBLAS_OP_N, CUBLAS_OP_T, p, n, rows, &one, gy + b * ys, p, dX + b * xs, n, &zero,
                        gw + b * ws, p);
    }
    if (s != CUBLAS_STATUS_SUCCESS) return blas_err(s, "backward sgemm");
    if (dXh && (st = download(c, k, dXh + b * xs, gx + b * xs, xs))) return st;
    if (dWh && (st = download(c, k, dWh + b * ws, gw + b * ws, ws))) return st;
  }
  return TEMPO_STATUS_OK;
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
  if (!st) {
    s = cublasSetMathMode(c->blas, tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH);
    if (s != CUBLAS_STATUS_SUCCESS) st = blas_err(s, "cublasSetMathMode");
  }
  if (st) {
    cu_destroy(c);
    std::free(b);
    return st;
  }
  b->name = tf32 ? "cuda-tf32" : "cuda";
  b->ctx = c;
  b->forward = cu_forward;
  b->backward = cu_backward;
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
