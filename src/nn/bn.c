/* bn.c - 2-D batch norm over NHWC rows (see cnn.h). Reductions run in float over chunks
 * of rows (vectorised across channels) and are added into double accumulators, so a
 * million-row batch keeps full float precision. R rows, C channels.
 * Threads: the rows are cut into BN_PARTS fixed blocks (whole chunks); each block reduces into
 * its own double partials and the partials are added in block order, so the sums do not depend
 * on the thread count. Large passes run the blocks over the tempo_parallel pool. */
/* The build is -O2, whose "very cheap" vectoriser skips any loop that needs a remainder or
 * an alias check, i.e. every channel loop here; let it weigh the cost instead. */
#pragma GCC optimize("vect-cost-model=dynamic")

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tempo/cnn.h"
#include "tempo/common.h"
#include "tempo/parallel.h"

#define BN_CHUNK 64      /* rows summed in float before the double accumulator */
#define BN_PARTS 16      /* fixed reduction blocks (per-block partials, combined in order) */
#define BN_SPLIT_MIN 65536 /* floats in a pass before it is run over the pool */

tempo_status tempo_bn2d_declare(tempo_bn2d *bn, tempo_params *p, const char *prefix, int c) {
  char name[TEMPO_PARAM_NAME_MAX];
  memset(bn, 0, sizeof *bn);
  if (c < 1) return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "batchnorm %s: %d channels", prefix, c);
  bn->c = c;
  bn->momentum = 0.1f;
  bn->eps = 1e-5f;
  static const char *const suffix[4] = {"weight", "bias", "running_mean", "running_var"};
  int *idx[4] = {&bn->w_idx, &bn->b_idx, &bn->mean_idx, &bn->var_idx};
  for (int i = 0; i < 4; i++) {
    snprintf(name, sizeof name, "%s.%s", prefix, suffix[i]);
    tempo_status st = tempo_params_add(p, name, 1, (int[]){c}, i < 2 ? TEMPO_PARAM_NO_DECAY : TEMPO_PARAM_STATE,
                                       idx[i]);
    if (st) return st;
  }
  /* past the documented (5, C) / (2, C): per-block float scratch and double partials */
  bn->save = tempo_alloc_floats((size_t)(5 + 2 * BN_PARTS) * c);
  bn->acc = calloc((size_t)2 * (1 + BN_PARTS) * c, sizeof *bn->acc);
  if (!bn->save || !bn->acc) {
    tempo_bn2d_free(bn);
    return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "out of memory for batchnorm %s", prefix);
  }
  return TEMPO_STATUS_OK;
}

void tempo_bn2d_init(const tempo_bn2d *bn, tempo_params *p) {
  float *w = tempo_params_ptr(p, bn->w_idx), *b = tempo_params_ptr(p, bn->b_idx);
  float *rm = tempo_params_ptr(p, bn->mean_idx), *rv = tempo_params_ptr(p, bn->var_idx);
  for (int i = 0; i < bn->c; i++) w[i] = 1.0f, b[i] = 0.0f, rm[i] = 0.0f, rv[i] = 1.0f;
}

void tempo_bn2d_free(tempo_bn2d *bn) {
  tempo_free_floats(bn->save);
  free(bn->acc);
  bn->save = NULL;
  bn->acc = NULL;
}

/* The row loops below are compiled for AVX2 too (the build has no -march): 8 channels per
 * operation instead of SSE's 4, the same arithmetic per element (no FMA contraction: "avx2"
 * alone does not enable it), so the same floats bit for bit. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define BN_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define BN_CLONES
#endif

/* acc0[c] += sum_r (a[r,c] - shift[c]), acc1[c] += sum_r (a[r,c] - shift[c])^2 (b == NULL),
 * or acc0 += sum b, acc1 += sum b * (a - shift) when b != NULL (the backward's sums). */
BN_CLONES static void reduce2(const float *a, const float *b, const float *mask, const float *shift, int rows, int c, float *t0,
                    float *t1, double *acc0, double *acc1) {
  for (int r0 = 0; r0 < rows; r0 += BN_CHUNK) {
    const int r1 = r0 + BN_CHUNK < rows ? r0 + BN_CHUNK : rows;
    memset(t0, 0, (size_t)c * sizeof *t0);
    memset(t1, 0, (size_t)c * sizeof *t1);
    for (int r = r0; r < r1; r++) {
      const float *ar = a + (size_t)r * c;
      if (b && mask) { /* b masked by mask > 0 (the forward's relu output) */
        const float *br = b + (size_t)r * c, *mr = mask + (size_t)r * c;
        for (int i = 0; i < c; i++) {
          const float bv = br[i]; /* loaded unconditionally: a select, not a branch */
          const float v = mr[i] > 0.0f ? bv : 0.0f;
          t0[i] += v;
          t1[i] += v * (ar[i] - shift[i]);
        }
      } else if (b) {
        const float *br = b + (size_t)r * c;
        for (int i = 0; i < c; i++) {
          t0[i] += br[i];
          t1[i] += br[i] * (ar[i] - shift[i]);
        }
      } else {
        for (int i = 0; i < c; i++) {
          const float d = ar[i] - shift[i];
          t0[i] += d;
          t1[i] += d * d;
        }
      }
    }
    for (int i = 0; i < c; i++) acc0[i] += t0[i], acc1[i] += t1[i];
  }
}

typedef struct {
  const tempo_bn2d *bn;
  const float *x, *d, *shift, *relu_y, *res;
  const float *k0, *k1, *k2; /* per-channel coefficients of the element-wise pass */
  float *dx, *y;
  bool relu;
  int rows, per;             /* rows per block (a multiple of BN_CHUNK for the reductions) */
} bn_job;

/* Block t of the reduction: (backward) the relu mask of its rows, then its partial sums. */
static void reduce_task(void *arg, int t) {
  const bn_job *j = arg;
  const int c = j->bn->c, r0 = t * j->per, r1 = r0 + j->per < j->rows ? r0 + j->per : j->rows;
  double *p0 = j->bn->acc + (size_t)2 * c * (1 + t), *p1 = p0 + c;
  float *t0 = j->bn->save + (size_t)(5 + 2 * t) * c, *t1 = t0 + c;
  memset(p0, 0, (size_t)2 * c * sizeof *p0);
  if (r0 >= r1) return;
  const size_t off = (size_t)r0 * c;
  reduce2(j->x + off, j->d ? j->d + off : NULL, j->relu_y ? j->relu_y + off : NULL, j->shift, r1 - r0, c, t0, t1,
          p0, p1);
}

static bool big(int rows, int c) { return (size_t)rows * c >= BN_SPLIT_MIN && tempo_parallel_threads() > 1; }

/* acc[0..2C) = the sums of reduce2 over all rows, block partials added in block order. */
static void reduce_all(bn_job *j) {
  const int c = j->bn->c, chunks = (j->rows + BN_CHUNK - 1) / BN_CHUNK;
  j->per = (chunks + BN_PARTS - 1) / BN_PARTS * BN_CHUNK;
  if (big(j->rows, c)) {
    tempo_parallel_for(BN_PARTS, reduce_task, j);
  } else {
    for (int t = 0; t < BN_PARTS; t++) reduce_task(j, t);
  }
  double *s0 = j->bn->acc, *s1 = s0 + c;
  memset(s0, 0, (size_t)2 * c * sizeof *s0);
  for (int t = 0; t < BN_PARTS; t++) {
    const double *p0 = j->bn->acc + (size_t)2 * c * (1 + t), *p1 = p0 + c;
    for (int i = 0; i < c; i++) s0[i] += p0[i], s1[i] += p1[i];
  }
}

/* Forward rows [r0, r1): y = x*scale + shift (+ res) (relu). k0 = scale, k1 = shift. */
BN_CLONES static void forward_rows(const bn_job *j, int r0, int r1) {
  const int c = j->bn->c;
  const float *scale = j->k0, *shift = j->k1, *res = j->res;
  for (int r = r0; r < r1; r++) {
    const float *xr = j->x + (size_t)r * c;
    float *yr = j->y + (size_t)r * c;
    if (res) {
      const float *rr = res + (size_t)r * c;
      if (j->relu)
        for (int i = 0; i < c; i++) {
          const float v = xr[i] * scale[i] + shift[i] + rr[i];
          yr[i] = v > 0.0f ? v : 0.0f;
        }
      else
        for (int i = 0; i < c; i++) yr[i] = xr[i] * scale[i] + shift[i] + rr[i];
    } else if (j->relu) {
      for (int i = 0; i < c; i++) {
        const float v = xr[i] * scale[i] + shift[i];
        yr[i] = v > 0.0f ? v : 0.0f;
      }
    } else {
      for (int i = 0; i < c; i++) yr[i] = xr[i] * scale[i] + shift[i];
    }
  }
}

/* Backward rows [r0, r1): dx = ka*dy' + kb*x + kc (k0, k1, k2), dy' = dy masked by relu_y > 0
 * when relu_y is set; d is dy (may equal dx). */
BN_CLONES static void backward_rows(const bn_job *j, int r0, int r1) {
  const int c = j->bn->c;
  const float *ka = j->k0, *kb = j->k1, *kc = j->k2;
  for (int r = r0; r < r1; r++) {
    const float *xr = j->x + (size_t)r * c, *dr = j->d + (size_t)r * c;
    float *o = j->dx + (size_t)r * c;
    if (j->relu_y) {
      const float *mr = j->relu_y + (size_t)r * c;
#pragma GCC ivdep
      for (int i = 0; i < c; i++) {
        const float v = dr[i]; /* loaded unconditionally: a select, not a branch */
        o[i] = ka[i] * (mr[i] > 0.0f ? v : 0.0f) + kb[i] * xr[i] + kc[i];
      }
    } else {
#pragma GCC ivdep
      for (int i = 0; i < c; i++) o[i] = ka[i] * dr[i] + kb[i] * xr[i] + kc[i];
    }
  }
}

static void apply_task(void *arg, int t) {
  const bn_job *j = arg;
  const int r0 = t * j->per, r1 = r0 + j->per < j->rows ? r0 + j->per : j->rows;
  if (r0 >= r1) return;
  if (j->y)
    forward_rows(j, r0, r1);
  else
    backward_rows(j, r0, r1);
}

/* The element-wise pass over all rows, in blocks over the pool when large. */
static void apply_all(bn_job *j) {
  if (!big(j->rows, j->bn->c)) {
    j->per = j->rows;
    apply_task(j, 0);
    return;
  }
  const int tasks = BN_PARTS;
  j->per = (j->rows + tasks - 1) / tasks;
  tempo_parallel_for(tasks, apply_task, j);
}

void tempo_bn2d_forward(tempo_bn2d *bn, tempo_params *p, bool training, const float *x, int rows,
                        const float *res, bool relu, float *y) {
  const int c = bn->c;
  float *mean = bn->save, *istd = bn->save + c, *scale = bn->save + 2 * c, *shift = bn->save + 3 * c;
  float *rm = tempo_params_ptr(p, bn->mean_idx), *rv = tempo_params_ptr(p, bn->var_idx);
  const float *g = tempo_params_ptr(p, bn->w_idx), *beta = tempo_params_ptr(p, bn->b_idx);
  bn->batch_stats = training;
  if (training) {
    /* Shifted sums around the first row keep E[d^2] - E[d]^2 well conditioned. */
    const double *s0 = bn->acc, *s1 = bn->acc + c;
    memcpy(mean, x, (size_t)c * sizeof *mean);
    reduce_all(&(bn_job){.bn = bn, .x = x, .shift = mean, .rows = rows});
    const double n = rows, unb = rows > 1 ? n / (n - 1.0) : 1.0, mom = bn->momentum;
    for (int i = 0; i < c; i++) {
      const double dm = s0[i] / n, var = fmax(s1[i] / n - dm * dm, 0.0), mu = mean[i] + dm;
      mean[i] = (float)mu;
      istd[i] = (float)(1.0 / sqrt(var + bn->eps));
      rm[i] = (float)((1.0 - mom) * rm[i] + mom * mu);
      rv[i] = (float)((1.0 - mom) * rv[i] + mom * var * unb);
    }
  } else {
    for (int i = 0; i < c; i++) {
      mean[i] = rm[i];
      istd[i] = (float)(1.0 / sqrt((double)rv[i] + bn->eps));
    }
  }
  for (int i = 0; i < c; i++) {
    scale[i] = g[i] * istd[i];
    shift[i] = beta[i] - mean[i] * scale[i];
  }
  apply_all(&(bn_job){.bn = bn, .x = x, .res = res, .relu = relu, .k0 = scale, .k1 = shift, .y = y, .rows = rows});
}

void tempo_bn2d_backward(tempo_bn2d *bn, tempo_params *p, const float *x, int rows, const float *relu_y,
                         const float *dy, float *dx) {
  const int c = bn->c;
  const float *mean = bn->save, *istd = bn->save + c;
  float *ka = bn->save + 2 * c, *kb = bn->save + 3 * c; /* scratch: dx = ka*dy' + kb*x + kc */
  const float *g = tempo_params_ptr(p, bn->w_idx);
  float *dg = tempo_params_grad(p, bn->w_idx), *dbeta = tempo_params_grad(p, bn->b_idx);
  const double *s0 = bn->acc, *s1 = bn->acc + c;
  /* dy' = dy masked by relu_y > 0 (when set) is formed on the fly in both passes, never stored;
   * s0 = sum dy', s1 = sum dy' (x - mean). */
  reduce_all(&(bn_job){.bn = bn, .x = x, .d = dy, .relu_y = relu_y, .shift = mean, .rows = rows});
  const double n = rows;
  float *kc = bn->save + 4 * c;
  for (int i = 0; i < c; i++) {
    const double sdx = s1[i] * istd[i]; /* sum dy' * xhat = dgamma */
    dg[i] += (float)sdx;
    dbeta[i] += (float)s0[i];
    if (bn->batch_stats) {
      const double k = (double)g[i] * istd[i], m1 = s0[i] / n, m2 = sdx / n;
      ka[i] = (float)k;
      kb[i] = (float)(-k * istd[i] * m2);
      kc[i] = (float)(k * (mean[i] * istd[i] * m2 - m1));
    } else {
      ka[i] = g[i] * istd[i];
      kb[i] = 0.0f;
      kc[i] = 0.0f;
    }
  }
  apply_all(&(bn_job){.bn = bn, .x = x, .d = dy, .relu_y = relu_y, .dx = dx, .k0 = ka, .k1 = kb, .k2 = kc,
                      .rows = rows});
}
