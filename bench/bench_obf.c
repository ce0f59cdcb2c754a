/* bench_obf.c - speed of the fused Enc/Dec passes against memcpy of the same bytes.
 *
 * For each matrix shape (R, C) it times memcpy and every pass on an (R, C) matrix (median,
 * min and max of --reps repetitions after one warm-up, buffers pre-touched), with 1 and 2
 * threads, and prints a markdown table: GB/s counts bytes read + written; "vs memcpy" is
 * the pass's speed as a fraction of memcpy's (1.0 = as fast).
 *
 * Usage: bench_obf [--reps N] [--quick] [--variants] [--shape RxC]
 *   --quick     small shapes only (a smoke run)
 *   --variants  also compare the kernels (naive, scatter scalar/AVX2, NT stores) on enc_x
 *   --shape     one shape instead of the default list */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "obf/obf_internal.h"
#include "tempo/common.h"
#include "tempo/obf.h"

typedef struct {
  int rows, cols;
} shape;

enum { P_MEMCPY, P_ENC_X, P_ENC_W, P_ENC_WT, P_ENC_DY, P_DEC_Y, P_DEC_DX, P_DEC_DX_ACC, P_DEC_DW, P_DEC_DWT, P_COUNT };
static const char *pass_name[P_COUNT] = {"memcpy", "enc_x",  "enc_w",         "enc_w (w_trans)",
                                         "enc_dy", "dec_y",  "dec_dx",        "dec_dx (accumulate)",
                                         "dec_dw", "dec_dw (w_trans)"};

typedef struct {
  tempo_obf_key k1; /* (R, C, C): enc_x, enc_dy, dec_y, dec_dx on (R, C) */
  tempo_obf_key k2; /* (1, R, C): enc_w, dec_dw on (n, p) = (R, C) */
  tempo_obf_key k3; /* (1, C, R): w_trans layout (p, n) = (R, C) */
  const float *in;
  float *out;
  size_t elems;
} ctx;

static void run_once(ctx *c, int which) {
  switch (which) {
  case P_MEMCPY: memcpy(c->out, c->in, c->elems * sizeof(float)); break;
  case P_ENC_X: tempo_obf_enc_x(&c->k1, c->in, c->out); break;
  case P_ENC_W: tempo_obf_enc_w(&c->k2, false, c->in, c->out); break;
  case P_ENC_WT: tempo_obf_enc_w(&c->k3, true, c->in, c->out); break;
  case P_ENC_DY: tempo_obf_enc_dy(&c->k1, c->in, c->out); break;
  case P_DEC_Y: tempo_obf_dec_y(&c->k1, c->in, c->out); break;
  case P_DEC_DX: tempo_obf_dec_dx(&c->k1, c->in, c->out, false); break;
  case P_DEC_DX_ACC: tempo_obf_dec_dx(&c->k1, c->in, c->out, true); break;
  case P_DEC_DW: tempo_obf_dec_dw(&c->k2, false, c->in, c->out, false); break;
  case P_DEC_DWT: tempo_obf_dec_dw(&c->k3, true, c->in, c->out, false); break;
  }
}

typedef struct {
  double med, min, max;
} timing;

static timing time_pass(ctx *c, int which, int reps) {
  double t[256];
  if (reps > 256) reps = 256;
  run_once(c, which); /* warm-up */
  for (int r = 0; r < reps; r++) {
    double t0 = tempo_now();
    run_once(c, which);
    t[r] = tempo_now() - t0;
  }
  const double med = bench_median(t, reps);
  return (timing){med, t[0], t[reps - 1]};
}

static void die(const char *what) {
  fprintf(stderr, "bench_obf: %s: %s\n", what, tempo_errmsg());
  exit(1);
}

int main(int argc, char **argv) {
  int reps = 9;
  bool quick = false, variants = false;
  shape one = {0, 0};
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--reps") && i + 1 < argc)
      reps = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--quick"))
      quick = true;
    else if (!strcmp(argv[i], "--variants"))
      variants = true;
    else if (!strcmp(argv[i], "--shape") && i + 1 < argc && sscanf(argv[i + 1], "%dx%d", &one.rows, &one.cols) == 2 &&
             one.rows > 0 && one.cols > 0)
      i++;
    else {
      fprintf(stderr, "usage: bench_obf [--reps N] [--quick] [--variants] [--shape RxC]\n");
      return 2;
    }
  }
  if (reps < 1) reps = 1;
  static const shape full[] = {{512, 512}, {2048, 2048}, {4096, 1024}, {50176, 576}, {50176, 64}};
  static const shape small[] = {{64, 64}, {512, 512}};
  const shape *shapes = quick ? small : full;
  int nshapes = quick ? 2 : (int)(sizeof full / sizeof full[0]);
  if (one.rows > 0) {
    shapes = &one;
    nshapes = 1;
  }

  size_t maxe = 0;
  for (int s = 0; s < nshapes; s++)
    if ((size_t)shapes[s].rows * (size_t)shapes[s].cols > maxe) maxe = (size_t)shapes[s].rows * (size_t)shapes[s].cols;
  float *in = tempo_alloc_floats(maxe), *out = tempo_alloc_floats(maxe); /* zero-filled: pre-touched */
  if (!in || !out) {
    fprintf(stderr, "bench_obf: out of memory\n");
    return 1;
  }
  for (size_t i = 0; i < maxe; i++) in[i] = (float)(i % 1000) * 0.001f - 0.5f;
  uint8_t secret[32] = {1, 2, 3};
  tempo_keygen *g;
  if (tempo_keygen_create(secret, NULL, &g) != TEMPO_STATUS_OK) die("keygen");

  printf("| pass | shape | threads | ms median | ms min | ms max | GB/s | vs memcpy |\n");
  printf("|---|---|---|---|---|---|---|---|\n");
  for (int s = 0; s < nshapes; s++) {
    int R = shapes[s].rows, C = shapes[s].cols;
    ctx c = {.in = in, .out = out, .elems = (size_t)R * (size_t)C};
    if (tempo_obf_key_alloc(&c.k1, R, C, C) || tempo_obf_key_alloc(&c.k2, 1, R, C) ||
        tempo_obf_key_alloc(&c.k3, 1, C, R))
      die("key alloc");
    if (tempo_keygen_fill(g, &c.k1) || tempo_keygen_fill(g, &c.k2) || tempo_keygen_fill(g, &c.k3)) die("keygen fill");
    double bytes = 2.0 * (double)c.elems * sizeof(float);
    for (int threads = 1; threads <= 2; threads++) {
      tempo_obf_set_threads(threads);
      double base = 0;
      for (int w = 0; w < P_COUNT; w++) {
        timing t = time_pass(&c, w, reps);
        if (w == P_MEMCPY) base = t.med;
        printf("| %s | %dx%d | %d | %.3f | %.3f | %.3f | %.1f | %.2f |\n", pass_name[w], R, C, threads, t.med * 1e3,
               t.min * 1e3, t.max * 1e3, bytes / t.med * 1e-9, base / t.med);
      }
    }
    if (variants) {
      static const char *kname[] = {"auto", "naive", "scatter scalar", "scatter avx2", "scatter avx2 NT", "permute avx512"};
      tempo_obf_set_threads(1);
      for (int kern = 1; kern < TEMPO_OBF_KERNEL_COUNT; kern++) {
        tempo_obf_set_kernel(kern);
        timing t = time_pass(&c, P_ENC_X, reps);
        printf("| enc_x [%s] | %dx%d | 1 | %.3f | %.3f | %.3f | %.1f | |\n", kname[kern], R, C, t.med * 1e3,
               t.min * 1e3, t.max * 1e3, bytes / t.med * 1e-9);
      }
      tempo_obf_set_kernel(TEMPO_OBF_KERNEL_AUTO);
    }
    tempo_obf_key_free(&c.k1);
    tempo_obf_key_free(&c.k2);
    tempo_obf_key_free(&c.k3);
  }
  tempo_keygen_free(g);
  tempo_free_floats(in);
  tempo_free_floats(out);
  return 0;
}
