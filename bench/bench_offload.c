/* bench_offload.c - median ms per forward + backward (dX and dW) of GEMM shapes typical
 * of the reference models, in local, plain and tempo modes (2 in-process workers, one
 * BLAS thread each; local mode: 1 BLAS thread), and the ratio tempo/plain (target
 * <= 1.15). Each shape is first checked against local mode (normalised error <= 1e-4),
 * warmed up, then timed as the median (min, max) of reps with a monotonic clock.
 * Usage: bench_offload [reps] (default 15). Prints a markdown table. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tempo/common.h"
#include "tempo/matmul.h"
#include "tempo/rng.h"

typedef struct {
  const char *name;
  tempo_mm_shape s;
} bshape;

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

typedef struct {
  float *X, *W, *Y, *dY, *dX, *dW;
} bufs;

static int step(tempo_mm *mm, tempo_mm_site *site, const tempo_mm_shape *s, bufs *b) {
  if (tempo_mm_forward(mm, site, s, b->X, b->W, b->Y)) return 1;
  if (tempo_mm_backward(mm, site, s, b->X, b->W, b->dY, b->dX, b->dW, 0)) return 1;
  tempo_mm_step_end(mm);
  return 0;
}

static double nerr(const float *a, const float *b, size_t n) {
  double d = 0, s = 0;
  for (size_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - b[i])), s = fmax(s, fabs((double)b[i]));
  return d / (s > 0 ? s : 1);
}

int main(int argc, char **argv) {
  int reps = argc > 1 ? atoi(argv[1]) : 15;
  if (reps < 1) {
    fprintf(stderr, "usage: bench_offload [reps >= 1]\n");
    return 2;
  }
  const bshape shapes[] = {
      {"4096x144x16", {1, 4096, 144, 16, true}},   {"1024x576x64", {1, 1024, 576, 64, true}},
      {"64x784x256", {1, 64, 784, 256, true}},     {"4160x128x384", {1, 4160, 128, 384, true}},
      {"256 x 65x32x65", {256, 65, 32, 65, false}},
  };
  const tempo_mode modes[] = {TEMPO_MODE_LOCAL, TEMPO_MODE_PLAIN, TEMPO_MODE_TEMPO};
  printf("| shape (batch x m x n x p) | local ms | plain ms | tempo ms | tempo/plain | tempo: blind+unblind / verify / worker compute ms |\n");
  printf("|---|---|---|---|---|---|\n");
  for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
    const tempo_mm_shape *s = &shapes[si].s;
    size_t xs = (size_t)s->batch * s->m * s->n, ws = (size_t)s->batch * s->n * s->p,
           ys = (size_t)s->batch * s->m * s->p;
    bufs b[3];
    tempo_rng r;
    tempo_rng_seed(&r, 1, si);
    for (int k = 0; k < 3; k++) {
      b[k].X = tempo_alloc_floats(xs), b[k].W = tempo_alloc_floats(ws), b[k].Y = tempo_alloc_floats(ys);
      b[k].dY = tempo_alloc_floats(ys), b[k].dX = tempo_alloc_floats(xs), b[k].dW = tempo_alloc_floats(ws);
      if (!b[k].X || !b[k].W || !b[k].Y || !b[k].dY || !b[k].dX || !b[k].dW) {
        fprintf(stderr, "bench_offload: out of memory\n");
        return 1;
      }
    }
    for (size_t i = 0; i < xs; i++) b[0].X[i] = (float)tempo_rng_normal(&r);
    for (size_t i = 0; i < ws; i++) b[0].W[i] = (float)(0.1 * tempo_rng_normal(&r));
    for (size_t i = 0; i < ys; i++) b[0].dY[i] = (float)tempo_rng_normal(&r);
    for (int k = 1; k < 3; k++) {
      memcpy(b[k].X, b[0].X, xs * 4), memcpy(b[k].W, b[0].W, ws * 4), memcpy(b[k].dY, b[0].dY, ys * 4);
    }
    double med[3], lo[3], hi[3];
    tempo_mm_stats tst = {0};
    for (int mi = 0; mi < 3; mi++) {
      tempo_mm_config cfg;
      tempo_mm_config_default(&cfg);
      cfg.mode = modes[mi];
      cfg.workers = 2;
      cfg.threads = 1;
      tempo_mm *mm;
      if (tempo_mm_create(&cfg, &mm)) {
        fprintf(stderr, "bench_offload: %s\n", tempo_errmsg());
        return 1;
      }
      tempo_mm_set_training(mm, true);
      tempo_mm_site site = {0};
      if (step(mm, &site, s, &b[mi])) {
        fprintf(stderr, "bench_offload: %s\n", tempo_errmsg());
        return 1;
      }
      if (mi > 0) { /* correctness first */
        double e = fmax(nerr(b[mi].Y, b[0].Y, ys), fmax(nerr(b[mi].dX, b[0].dX, xs), nerr(b[mi].dW, b[0].dW, ws)));
        if (e > 1e-4) {
          fprintf(stderr, "bench_offload: %s %s differs from local (error %.2e)\n", shapes[si].name,
                  tempo_mode_name(modes[mi]), e);
          return 1;
        }
      }
      for (int w = 0; w < 2; w++)
        if (step(mm, &site, s, &b[mi])) return 1;
      tempo_mm_stats junk;
      tempo_mm_stats_step(mm, &junk);
      double *t = malloc((size_t)reps * sizeof *t);
      for (int i = 0; i < reps; i++) {
        double t0 = tempo_now();
        if (step(mm, &site, s, &b[mi])) return 1;
        t[i] = (tempo_now() - t0) * 1e3;
      }
      if (mi == 2) tempo_mm_stats_step(mm, &tst);
      qsort(t, (size_t)reps, sizeof *t, cmp);
      med[mi] = t[reps / 2], lo[mi] = t[0], hi[mi] = t[reps - 1];
      free(t);
      tempo_mm_free(mm);
    }
    printf("| %s | %.2f (%.2f-%.2f) | %.2f (%.2f-%.2f) | %.2f (%.2f-%.2f) | %.3f | %.2f / %.2f / %.2f |\n",
           shapes[si].name, med[0], lo[0], hi[0], med[1], lo[1], hi[1], med[2], lo[2], hi[2], med[2] / med[1],
           1e3 * (tst.t_blind + tst.t_unblind) / reps, 1e3 * tst.t_verify / reps, 1e3 * tst.t_compute / reps);
    fflush(stdout);
    for (int k = 0; k < 3; k++) {
      tempo_free_floats(b[k].X), tempo_free_floats(b[k].W), tempo_free_floats(b[k].Y);
      tempo_free_floats(b[k].dY), tempo_free_floats(b[k].dX), tempo_free_floats(b[k].dW);
    }
  }
  return 0;
}
