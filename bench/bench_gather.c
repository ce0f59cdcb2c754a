/* bench_gather.c - the forward X' pass of a lowered convolution from rows (rows.h: the Enc
 * pass gathers each im2col row from the activation, tempo_obf_enc_x_check_rows) against the
 * materialised path it replaced (tempo_im2col into the column matrix, then
 * tempo_obf_enc_x_check on it), on resnet20's 3x3 layer shapes at batch 64, with a tempo key
 * and a key with mixing blocks (b = 4), 2 check dots as a training forward forms them.
 *
 * The two are timed alternately in one loop (--reps rounds after a warm-up, 1 thread) and
 * the min and median of each are printed as a markdown table, with rows / materialised of
 * the mins (the better estimate on a shared machine). Usage: bench_gather [--reps N] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "tempo/cnn.h"
#include "tempo/common.h"
#include "tempo/obf.h"

#define REPS_MAX 101

typedef struct {
  int cin, hw, stride;
} layer_shape;

/* One shape: the median and min of the materialised path (t[0]) and of the rows (t[1]). */
static int run_shape(tempo_keygen *g, const layer_shape *ls, int batch, int reps) {
  tempo_params p;
  tempo_params_init(&p);
  tempo_conv2d l;
  int rc = 1;
  float *x = NULL, *cols = NULL, *xp = NULL;
  double *w = NULL, *y = NULL, *u = NULL;
  tempo_obf_key k = {0};
  if (tempo_conv2d_declare(&l, &p, "c", ls->cin, ls->cin * ls->stride, 3, ls->stride, 1, false, ls->hw, ls->hw,
                           TEMPO_LAYOUT_NHWC) ||
      tempo_params_finalize(&p))
    goto out;
  const int m = batch * l.out_h * l.out_w, n = ls->cin * 9;
  const size_t xn = (size_t)batch * ls->hw * ls->hw * ls->cin, mn = (size_t)m * n;
  x = tempo_alloc_floats(xn), cols = tempo_alloc_floats(mn), xp = tempo_alloc_floats(mn);
  w = calloc(4 * (size_t)n, sizeof *w), y = calloc(4 * (size_t)m, sizeof *y), u = calloc(4 * (size_t)n, sizeof *u);
  if (!x || !cols || !xp || !w || !y || !u || tempo_obf_key_alloc(&k, m, n, ls->cin * ls->stride)) goto out;
  for (size_t i = 0; i < xn; i++) x[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
  for (size_t i = 0; i < 4 * (size_t)n; i++) w[i] = 0.5;
  memset(cols, 0, mn * sizeof *cols), memset(xp, 0, mn * sizeof *xp); /* pre-touched */
  const double *wq[2] = {w, w + 2 * n}, *wbq[2] = {w + n, w + 3 * n};
  double *yq[2] = {y, y + 2 * m}, *ybq[2] = {y + m, y + 3 * m};
  tempo_conv2d_src src;
  const tempo_rows xr = tempo_conv2d_rows(&l, x, batch, &src);
  for (int mix = 0; mix < 2; mix++) {
    if (tempo_keygen_fill(g, &k) || (mix && tempo_keygen_fill_mix(g, &k, 4))) goto out;
    double t[2][REPS_MAX], mn_ms[2], md_ms[2];
    for (int r = -1; r < reps; r++) { /* r = -1: the warm-up */
      const double t0 = tempo_now();
      tempo_im2col(&l, x, batch, cols);
      tempo_obf_enc_x_check(&k, cols, xp, 2, wq, wbq, yq, ybq, u);
      const double t1 = tempo_now();
      tempo_obf_enc_x_check_rows(&k, &xr, xp, 2, wq, wbq, yq, ybq, u);
      const double t2 = tempo_now();
      if (r >= 0) t[0][r] = (t1 - t0) * 1e3, t[1][r] = (t2 - t1) * 1e3;
    }
    for (int v = 0; v < 2; v++) {
      md_ms[v] = bench_median(t[v], reps);
      mn_ms[v] = t[v][0]; /* bench_median sorted them */
    }
    printf("| %dx%d, %d ch, stride %d | %d x %d | %s | %.2f | %.2f | %.2f | %.2f | %.2f |\n", ls->hw, ls->hw, ls->cin,
           ls->stride, m, n, mix ? "mixed" : "tempo", mn_ms[0], md_ms[0], mn_ms[1], md_ms[1], mn_ms[1] / mn_ms[0]);
  }
  rc = 0;
out:
  if (rc) fprintf(stderr, "bench_gather: %s\n", tempo_errmsg());
  tempo_obf_key_free(&k);
  free(w), free(y), free(u);
  tempo_free_floats(x), tempo_free_floats(cols), tempo_free_floats(xp);
  tempo_params_free(&p);
  return rc;
}

int main(int argc, char **argv) {
  int reps = 15;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
      reps = atoi(argv[++i]);
    } else {
      fprintf(stderr, "usage: bench_gather [--reps N]   (N in 1..%d)\n", REPS_MAX);
      return 2;
    }
  }
  if (reps < 1 || reps > REPS_MAX) {
    fprintf(stderr, "bench_gather: --reps must be 1..%d\n", REPS_MAX);
    return 2;
  }
  uint8_t secret[32] = {1};
  tempo_keyspace ks;
  tempo_keyspace_default(&ks);
  tempo_keygen *g;
  if (tempo_keygen_create(secret, &ks, &g)) {
    fprintf(stderr, "bench_gather: %s\n", tempo_errmsg());
    return 1;
  }
  const layer_shape shapes[] = {{16, 32, 1}, {16, 32, 2}, {32, 16, 1}, {64, 8, 1}};
  printf("X' of resnet20's 3x3 layers (batch 64, 2 check dots, 1 thread, %d rounds): im2col + the pass on the columns "
         "(materialised) against the pass gathering rows from the activation (rows), timed alternately.\n\n"
         "| layer | m x n | key | materialised ms min | median | rows ms min | median | rows / materialised (min) |\n"
         "|---|---|---|--:|--:|--:|--:|--:|\n", reps);
  int rc = 0;
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0] && !rc; i++) rc = run_shape(g, &shapes[i], 64, reps);
  tempo_keygen_free(g);
  return rc;
}
