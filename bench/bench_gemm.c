/* bench_gemm.c - tempo_sgemm per backend on the GEMM shapes the reference models use (local
 * mode, batch 64: resnet20, resnet18 and vit-mini, forward and both backward products), in
 * GFLOP/s from process CPU time (robust to other load at 1 thread) and from wall time.
 * The shapes were logged from the matmul entry point; "x N" is how often a step runs it.
 *
 * usage: bench_gemm [--threads N] [--reps-gflop G]   (default 1 thread, ~1 GFLOP per timing) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tempo/common.h"
#include "tempo/gemm.h"

typedef struct {
  const char *model;
  int count;
  char ta, tb;
  int m, n, k;
  float beta;
} shape;

static const shape shapes[] = {
    {"resnet20", 6, 'N', 'T', 65536, 16, 144, 0}, {"resnet20", 6, 'N', 'N', 65536, 144, 16, 0},
    {"resnet20", 6, 'T', 'N', 16, 144, 65536, 1}, {"resnet20", 5, 'N', 'T', 16384, 32, 288, 0},
    {"resnet20", 5, 'N', 'N', 16384, 288, 32, 0}, {"resnet20", 5, 'T', 'N', 32, 288, 16384, 1},
    {"resnet20", 5, 'N', 'T', 4096, 64, 576, 0},  {"resnet20", 5, 'N', 'N', 4096, 576, 64, 0},
    {"resnet20", 5, 'T', 'N', 64, 576, 4096, 1},  {"resnet18", 4, 'N', 'T', 65536, 64, 576, 0},
    {"resnet18", 4, 'N', 'N', 65536, 576, 64, 0}, {"resnet18", 4, 'T', 'N', 64, 576, 65536, 1},
    {"resnet18", 3, 'N', 'T', 1024, 512, 4608, 0}, {"resnet18", 3, 'N', 'N', 1024, 4608, 512, 0},
    {"resnet18", 3, 'T', 'N', 512, 4608, 1024, 1}, {"vit-mini", 3072, 'N', 'T', 65, 65, 32, 0},
    {"vit-mini", 3072, 'N', 'N', 65, 32, 65, 0},  {"vit-mini", 6, 'N', 'T', 4160, 384, 128, 0},
    {"vit-mini", 6, 'N', 'N', 4160, 128, 384, 0}, {"vit-mini", 6, 'T', 'N', 384, 128, 4160, 1},
    {"vit-mini", 6, 'N', 'T', 4160, 128, 128, 0}, {"vit-mini", 6, 'T', 'N', 128, 128, 4160, 1},
};

static double cpu_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv) {
  int threads = 1;
  double per_timing = 1.0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--reps-gflop")) per_timing = atof(argv[i + 1]);
    else {
      fprintf(stderr, "usage: bench_gemm [--threads N] [--reps-gflop G]\n");
      return 2;
    }
  }
  if (threads < 1 || per_timing <= 0.0 || (argc - 1) % 2) {
    fprintf(stderr, "usage: bench_gemm [--threads N] [--reps-gflop G]\n");
    return 2;
  }
  size_t cap = 0;
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    const size_t a = (size_t)shapes[s].m * shapes[s].k, b = (size_t)shapes[s].k * shapes[s].n,
                 c = (size_t)shapes[s].m * shapes[s].n;
    cap = a > cap ? a : cap, cap = b > cap ? b : cap, cap = c > cap ? c : cap;
  }
  float *A = tempo_alloc_floats(cap), *B = tempo_alloc_floats(cap), *C = tempo_alloc_floats(cap);
  if (!A || !B || !C) return 1;
  for (size_t i = 0; i < cap; i++) A[i] = (float)(i % 7) * 0.1f, B[i] = (float)(i % 5) * 0.1f;
  tempo_gemm_set_threads(threads);
  const tempo_gemm_backend bes[] = {TEMPO_GEMM_OPENBLAS, TEMPO_GEMM_DNNL, TEMPO_GEMM_AUTO};
  printf("# tempo_sgemm per backend, %d thread(s): GFLOP/s by CPU time / by wall time (best of 3)\n\n", threads);
  printf("| model | x/step | op | m | n | k | openblas | dnnl | auto |\n|---|--:|---|--:|--:|--:|--:|--:|--:|\n");
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    const shape *h = &shapes[s];
    const bool ta = h->ta == 'T', tb = h->tb == 'T';
    const double flop = 2.0 * h->m * h->n * h->k;
    const int reps = (int)(per_timing * 1e9 / flop) + 1;
    printf("| %s | %d | %c%c | %d | %d | %d |", h->model, h->count, h->ta, h->tb, h->m, h->n, h->k);
    for (size_t b = 0; b < sizeof bes / sizeof bes[0]; b++) {
      if (!tempo_gemm_set_backend(bes[b])) {
        printf(" n/a |");
        continue;
      }
      tempo_gemm_set_threads(threads);
      double best_cpu = 1e30, best_wall = 1e30;
      for (int r = 0; r < 4; r++) { /* the first round warms up */
        const double c0 = cpu_now(), w0 = tempo_now();
        for (int i = 0; i < reps; i++)
          tempo_sgemm(ta, tb, h->m, h->n, h->k, 1.0f, A, ta ? h->m : h->k, B, tb ? h->k : h->n, h->beta, C, h->n);
        const double c = (cpu_now() - c0) / reps, w = (tempo_now() - w0) / reps;
        if (r > 0 && c < best_cpu) best_cpu = c;
        if (r > 0 && w < best_wall) best_wall = w;
      }
      printf(" %.0f / %.0f |", flop / best_cpu * 1e-9, flop / best_wall * 1e-9);
    }
    printf("\n");
    fflush(stdout);
  }
  tempo_gemm_set_backend(TEMPO_GEMM_AUTO);
  tempo_free_floats(A);
  tempo_free_floats(B);
  tempo_free_floats(C);
  return 0;
}
