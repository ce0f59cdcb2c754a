/* gemm16.c - tempo_sgemm16 (gemm.h): C = op(A) op(B) with bfloat16 A and B, float32 C and
 * float32 accumulation, on oneDNN's matmul primitive. Where the CPU has AVX512_BF16, oneDNN
 * runs its brgemm kernels on vdpbf16ps: bf16 products are exact in float32 and summed in float32
 * (denormal inputs read as zero, denormal sums flushed: within the checks' underflow term,
 * verify.c), so a worker's results are those of the converting path (widen, then tempo_sgemm)
 * up to the order of the float32 sums. Measured here (2-core AMD EPYC, 1 thread):
 * 50176x144x16 3.4 ms against 10.8 for widening and sgemm; 3136x576x64 1.0 against 3.5.
 *
 * Each thread keeps its own primitives, one per shape and layout (a small cache, freed when the
 * thread exits): creating one costs about 1 ms, running one a few microseconds on top of its
 * arithmetic. oneDNN's JIT kernels only ("brg:avx512_core_bf16" for rows without padding,
 * "gemm:jit" for padded strides): a primitive whose implementation is its reference code (CPUs
 * without AVX-512) is refused, and the caller widens instead. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/sigblock.h"
#include "tempo/gemm.h"

#ifndef TEMPO_HAVE_DNNL
#define TEMPO_HAVE_DNNL 0
#endif

#if TEMPO_HAVE_DNNL
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>

enum { G16_SLOTS = 48 }; /* shapes per thread (resnet50's convolutions need about 40 per worker) */

typedef struct {
  bool ok; /* a JIT primitive (else refused, remembered); m == 0: a free slot */
  bool ta, tb;
  int m, n, k, lda, ldb, ldc;
  dnnl_primitive_t prim;
  dnnl_memory_t a, b, c;
} g16_slot;

typedef struct {
  dnnl_engine_t engine;
  dnnl_stream_t stream;
  g16_slot slot[G16_SLOTS];
  int next; /* the slot the next new shape replaces when all are used */
} g16_cache;

static pthread_key_t g16_key;
static pthread_once_t g16_once = PTHREAD_ONCE_INIT;
static bool g16_key_ok;

/* Releases a slot's oneDNN objects (its shape stays). */
static void slot_release(g16_slot *s) {
  if (s->prim) dnnl_primitive_destroy(s->prim);
  if (s->a) dnnl_memory_destroy(s->a);
  if (s->b) dnnl_memory_destroy(s->b);
  if (s->c) dnnl_memory_destroy(s->c);
  s->prim = NULL, s->a = s->b = s->c = NULL, s->ok = false;
}

static void cache_free(void *p) {
  g16_cache *c = p;
  if (!c) return;
  for (int i = 0; i < G16_SLOTS; i++) slot_release(&c->slot[i]);
  if (c->stream) dnnl_stream_destroy(c->stream);
  if (c->engine) dnnl_engine_destroy(c->engine);
  free(c);
}

static void make_key(void) { g16_key_ok = pthread_key_create(&g16_key, cache_free) == 0; }

/* This thread's cache, created at its first call; NULL when oneDNN has no CPU engine. */
static g16_cache *thread_cache(void) {
  pthread_once(&g16_once, make_key);
  if (!g16_key_ok) return NULL;
  g16_cache *c = pthread_getspecific(g16_key);
  if (c) return c;
  if (!(c = calloc(1, sizeof *c))) return NULL;
  if (dnnl_engine_create(&c->engine, dnnl_cpu, 0) != dnnl_success ||
      dnnl_stream_create(&c->stream, c->engine, dnnl_stream_default_flags) != dnnl_success ||
      pthread_setspecific(g16_key, c)) {
    cache_free(c);
    return NULL;
  }
  return c;
}

/* A (rows, cols) matrix of type t, row-major with row stride ld, or its transpose stored so. */
static bool desc(dnnl_memory_desc_t *md, int rows, int cols, int ld, bool trans, dnnl_data_type_t t) {
  dnnl_dims_t dims = {rows, cols}, strides = {trans ? 1 : ld, trans ? ld : 1};
  return dnnl_memory_desc_init_by_strides(md, 2, dims, t, strides) == dnnl_success;
}

/* Fills slot s for the shape (a primitive and its three memory objects without data), and says
 * whether it is a JIT one. */
static bool slot_build(g16_cache *c, g16_slot *s) {
  dnnl_memory_desc_t ad, bd, cd;
  dnnl_matmul_desc_t mmd;
  dnnl_primitive_desc_t pd = NULL;
  if (!desc(&ad, s->m, s->k, s->lda, s->ta, dnnl_bf16) || !desc(&bd, s->k, s->n, s->ldb, s->tb, dnnl_bf16) ||
      !desc(&cd, s->m, s->n, s->ldc, false, dnnl_f32) || dnnl_matmul_desc_init(&mmd, &ad, &bd, NULL, &cd) != dnnl_success ||
      dnnl_primitive_desc_create(&pd, &mmd, NULL, c->engine, NULL) != dnnl_success)
    return false;
  const char *impl = NULL;
  bool ok = dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success && impl &&
            strncmp(impl, "ref", 3) != 0;
  ok = ok && dnnl_primitive_create(&s->prim, pd) == dnnl_success &&
       dnnl_memory_create(&s->a, &ad, c->engine, DNNL_MEMORY_NONE) == dnnl_success &&
       dnnl_memory_create(&s->b, &bd, c->engine, DNNL_MEMORY_NONE) == dnnl_success &&
       dnnl_memory_create(&s->c, &cd, c->engine, DNNL_MEMORY_NONE) == dnnl_success;
  dnnl_primitive_desc_destroy(pd);
  return ok;
}

static g16_slot *lookup(g16_cache *c, bool ta, bool tb, int m, int n, int k, int lda, int ldb, int ldc) {
  for (int i = 0; i < G16_SLOTS; i++) {
    g16_slot *s = &c->slot[i];
    if (s->m == m && s->ta == ta && s->tb == tb && s->n == n && s->k == k && s->lda == lda &&
        s->ldb == ldb && s->ldc == ldc)
      return s;
  }
  g16_slot *s = &c->slot[c->next];
  c->next = (c->next + 1) % G16_SLOTS;
  slot_release(s);
  *s = (g16_slot){.ta = ta, .tb = tb, .m = m, .n = n, .k = k, .lda = lda, .ldb = ldb, .ldc = ldc};
  s->ok = slot_build(c, s);
  if (!s->ok) slot_release(s); /* remembered as refused */
  return s;
}

bool tempo_sgemm16(bool trans_a, bool trans_b, int m, int n, int k, const uint16_t *A, int lda, const uint16_t *B,
                   int ldb, float *C, int ldc) {
  if (tempo_gemm_get_backend() == TEMPO_GEMM_OPENBLAS) return false; /* TEMPO_GEMM=openblas: no oneDNN */
  g16_cache *c = thread_cache();
  if (!c) return false;
  g16_slot *s = lookup(c, trans_a, trans_b, m, n, k, lda, ldb, ldc);
  if (!s->ok) return false;
  if (dnnl_memory_set_data_handle(s->a, (void *)A) != dnnl_success ||
      dnnl_memory_set_data_handle(s->b, (void *)B) != dnnl_success ||
      dnnl_memory_set_data_handle(s->c, C) != dnnl_success)
    return false;
  const dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, s->a}, {DNNL_ARG_WEIGHTS, s->b}, {DNNL_ARG_DST, s->c}};
  omp_set_num_threads(1); /* this thread's ICV: no OpenMP team (gemm.c) */
  sigset_t old; /* JIT kernels: no signal inside (sigblock.h) */
  tempo_async_signals_block(&old);
  bool ok = dnnl_primitive_execute(s->prim, c->stream, 3, args) == dnnl_success;
  ok = ok && dnnl_stream_wait(c->stream) == dnnl_success;
  tempo_async_signals_restore(&old);
  return ok;
}
#else
bool tempo_sgemm16(bool trans_a, bool trans_b, int m, int n, int k, const uint16_t *A, int lda, const uint16_t *B,
                   int ldb, float *C, int ldc) {
  (void)trans_a, (void)trans_b, (void)m, (void)n, (void)k, (void)A, (void)lda, (void)B, (void)ldb, (void)C, (void)ldc;
  return false;
}
#endif
