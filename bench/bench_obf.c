/* bench_obf.c - speed of the fused Enc/Dec passes against memcpy of the same bytes.
 *
 * For each matrix shape (R, C) it times memcpy and every pass on an (R, C) matrix (median,
 * min and max of --reps repetitions after one warm-up, buffers pre-touched), with 1 and 2
 * threads, and prints a markdown table: GB/s counts bytes read + written; "vs memcpy" is
 * the pass's speed as a fraction of memcpy's (1.0 = as fast).
 *
 * Usage: bench_obf [--reps N] [--quick] [--variants] [--shape RxC] [--mix [MxNxP[,MxNxP...]]] [--mix-isa I]
 *   --quick     small shapes only (a smoke run)
 *   --variants  also compare the kernels (naive, scatter scalar/AVX2, NT stores) on enc_x
 *   --shape     one shape instead of the default list
 *   --mix       instead: one training product's master work (keygen, every Enc/Dec pass as the
 *               tempo scheme calls it, with the check dots of one verification round) on a key
 *               without and with mixing blocks (b = 4), single-threaded, per (m, n, p); the
 *               default list is resnet20's conv shapes at batch 64, and the last lines sum
 *               them over resnet20's 18 mixed convolutions (one training step; the
 *               accumulating dX decryption is not in it). Times are
 *               the thread's CPU time (median), so a loaded machine's descheduling does
 *               not count (its cache and memory contention still does)
 *   --mix-isa   the best mixing kernels to use: 1 the portable loops, 2 AVX2, 3 AVX-512
 *               (default: the best this CPU has)
 *   --threads N with --mix: the passes on N threads (the master's --threads); times are then
 *               wall-clock medians (the CPU time of one thread would not count the others) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/* ---- --mix: a training product's passes, unmixed against mixed ---- */

enum { M_FILL, M_FILL_MIX, M_ENC_W, M_ENC_X, M_ENC_X_CHECK, M_DEC_Y, M_ENC_DY, M_DEC_DX_DOTS, M_DEC_DX_ACC, M_DEC_DW, M_COUNT };
static const char *mix_name[M_COUNT] = {"keygen_fill", "keygen_fill_mix", "enc_w",     "enc_x (no check dots)", "enc_x_check (2 dots)",
                                        "dec_y",       "enc_dy",          "dec_dx_rows_dots (1 dot)",
                                        "dec_dx (accumulate)", "dec_dw"};

typedef struct {
  tempo_keygen *g;
  tempo_obf_key k;
  int m, n, p;
  const float *X, *W, *dY; /* (m, n), (n, p), (m, p) */
  float *xo, *wo, *yo;     /* outputs of the same sizes */
  const double *w[2], *wb[2], *v[1];
  const float *vsq[1];
  double *y[2], *yb[2], *y1[1], *y1b[1], *u;
} mix_ctx;

static void mix_once(mix_ctx *c, int which, bool mixed) {
  tempo_obf_key *k = &c->k;
  switch (which) {
  case M_FILL:
    if (tempo_keygen_fill(c->g, k)) die("keygen fill");
    break;
  case M_FILL_MIX:
    if (mixed && tempo_keygen_fill_mix(c->g, k, 4)) die("keygen fill_mix");
    break;
  case M_ENC_W: tempo_obf_enc_w(k, false, c->W, c->wo); break;
  case M_ENC_X: tempo_obf_enc_x(k, c->X, c->xo); break;
  case M_ENC_X_CHECK: tempo_obf_enc_x_check(k, c->X, c->xo, 2, c->w, c->wb, c->y, c->yb, c->u); break;
  case M_DEC_Y: tempo_obf_dec_y_rows(k, c->dY, 0, c->m, c->yo); break;
  case M_ENC_DY: tempo_obf_enc_dy(k, c->dY, c->yo); break;
  case M_DEC_DX_DOTS: tempo_obf_dec_dx_rows_dots(k, c->X, 0, c->m, c->xo, 1, c->v, c->vsq, c->y1, c->y1b); break;
  case M_DEC_DX_ACC: tempo_obf_dec_dx_rows(k, c->X, 0, c->m, c->xo, true); break;
  case M_DEC_DW: tempo_obf_dec_dw(k, false, c->W, c->wo, false); break;
  }
}

static int mix_threads = 1;

static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(mix_threads > 1 ? CLOCK_MONOTONIC : CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Median CPU time of reps runs of pass `which` (after one warm-up); the key is filled (and mixed) first. */
static double mix_time(mix_ctx *c, int which, bool mixed, int reps) {
  double t[256];
  if (reps > 256) reps = 256;
  mix_once(c, M_FILL, mixed), mix_once(c, M_FILL_MIX, mixed);
  mix_once(c, which, mixed);
  for (int r = 0; r < reps; r++) {
    if (which == M_FILL_MIX) mix_once(c, M_FILL, mixed); /* fill_mix follows a fill */
    const double t0 = cpu_now();
    mix_once(c, which, mixed);
    t[r] = cpu_now() - t0;
  }
  return bench_median(t, reps);
}

static int mix_main(const char *list, int reps) {
  int shapes[16][3], ns = 0;
  double per_step[16]; /* how often each shape occurs in the step summed on the last line (0: no sum) */
  const bool resnet20 = !strcmp(list, "resnet20");
  if (resnet20) list = "65536x144x16,16384x144x32,16384x288x32,4096x288x64,4096x576x64";
  static const double resnet20_count[5] = {6, 1, 5, 1, 5};
  for (const char *q = list; ns < 16 && *q;) {
    int used = 0;
    if (sscanf(q, "%dx%dx%d%n", &shapes[ns][0], &shapes[ns][1], &shapes[ns][2], &used) != 3 || shapes[ns][0] < 1 ||
        shapes[ns][1] < 1 || shapes[ns][2] < 1) {
      fprintf(stderr, "bench_obf: --mix wants MxNxP[,MxNxP...]\n");
      return 2;
    }
    per_step[ns] = resnet20 ? resnet20_count[ns] : 0;
    ns++, q += used;
    if (*q == ',') q++;
  }
  uint8_t secret[32] = {1, 2, 3};
  tempo_keygen *g;
  if (tempo_keygen_create(secret, NULL, &g) != TEMPO_STATUS_OK) die("keygen");
  tempo_obf_set_threads(mix_threads);
  static const char *isa_name[] = {"auto", "portable loops", "AVX2", "AVX-512"};
  printf("mixing kernels: %s (best on this CPU: %s); %d thread(s), %s\n\n", isa_name[tempo_obf_mix_isa_used()],
         isa_name[tempo_obf_mix_isa()], mix_threads, mix_threads > 1 ? "wall-clock medians" : "CPU-time medians");
  printf("| pass | m x n x p | unmixed ms | mixed ms | mixed / unmixed |\n|---|---|---|---|---|\n");
  double step[2][M_COUNT] = {{0}};
  for (int s = 0; s < ns; s++) {
    const int m = shapes[s][0], n = shapes[s][1], p = shapes[s][2];
    const size_t xs = (size_t)m * n, ws = (size_t)n * p, ys = (size_t)m * p;
    float *X = tempo_alloc_floats(xs), *W = tempo_alloc_floats(ws), *dY = tempo_alloc_floats(ys);
    float *xo = tempo_alloc_floats(xs), *wo = tempo_alloc_floats(ws), *yo = tempo_alloc_floats(ys);
    float *vsq = tempo_alloc_floats((size_t)n);
    double *d = (double *)tempo_alloc_floats(2 * (9 * (size_t)n + 6 * (size_t)m));
    if (!X || !W || !dY || !xo || !wo || !yo || !vsq || !d) die("out of memory");
    for (size_t i = 0; i < xs; i++) X[i] = (float)(i % 1000) * 0.001f - 0.5f;
    for (size_t i = 0; i < ws; i++) W[i] = (float)(i % 777) * 0.001f - 0.3f;
    for (size_t i = 0; i < ys; i++) dY[i] = (float)(i % 555) * 0.001f - 0.2f;
    mix_ctx c = {.g = g, .m = m, .n = n, .p = p, .X = X, .W = W, .dY = dY, .xo = xo, .wo = wo, .yo = yo};
    double *w = d, *wb = w + 2 * (size_t)n, *v = wb + 2 * (size_t)n, *y = v + (size_t)n, *yb = y + 2 * (size_t)m;
    double *y1 = yb + 2 * (size_t)m;
    c.u = y1 + 2 * (size_t)m; /* 4 n doubles: enc_x_check's scratch (2 n per dot) */
    for (int j = 0; j < n; j++) {
      w[j] = (j % 7) - 3.0, w[n + j] = (j % 5) - 2.0, wb[j] = fabs(w[j]), wb[n + j] = fabs(w[n + j]);
      v[j] = (j % 3) - 1.0, vsq[j] = (float)(v[j] * v[j]);
    }
    c.w[0] = w, c.w[1] = w + n, c.wb[0] = wb, c.wb[1] = wb + n, c.y[0] = y, c.y[1] = y + m, c.yb[0] = yb;
    c.yb[1] = yb + m, c.v[0] = v, c.vsq[0] = vsq, c.y1[0] = y1, c.y1b[0] = y1 + m;
    if (tempo_obf_key_alloc(&c.k, m, n, p)) die("key alloc");
    double sum[2] = {0, 0};
    for (int which = 0; which < M_COUNT; which++) {
      const double t0 = mix_time(&c, which, false, reps), t1 = mix_time(&c, which, true, reps);
      if (which != M_ENC_X) sum[0] += t0, sum[1] += t1; /* enc_x: enc_x_check without its dots, for comparison */
      if (which != M_DEC_DX_ACC) /* not in resnet20's step: its convolutions' dX is not accumulated */
        step[0][which] += per_step[s] * t0, step[1][which] += per_step[s] * t1;
      printf("| %s | %dx%dx%d | %.3f | %.3f | %.2f |\n", mix_name[which], m, n, p, t0 * 1e3, t1 * 1e3,
             t0 > 0 ? t1 / t0 : 0.0);
    }
    printf("| all | %dx%dx%d | %.3f | %.3f | %.2f |\n", m, n, p, sum[0] * 1e3, sum[1] * 1e3, sum[1] / sum[0]);
    tempo_obf_key_free(&c.k);
    tempo_free_floats(X), tempo_free_floats(W), tempo_free_floats(dY), tempo_free_floats(xo);
    tempo_free_floats(wo), tempo_free_floats(yo), tempo_free_floats(vsq), tempo_free_floats((float *)d);
  }
  if (resnet20) {
    double all[2] = {0, 0};
    for (int w = 0; w < M_COUNT; w++) {
      if (w == M_DEC_DX_ACC) continue;
      if (w != M_ENC_X) all[0] += step[0][w], all[1] += step[1][w];
      printf("| %s | resnet20 step (18 convs) | %.3f | %.3f | %.2f |\n", mix_name[w], step[0][w] * 1e3,
             step[1][w] * 1e3, step[0][w] > 0 ? step[1][w] / step[0][w] : 0.0);
    }
    printf("| all | resnet20 step (18 convs) | %.3f | %.3f | %.2f |\n", all[0] * 1e3, all[1] * 1e3, all[1] / all[0]);
  }
  tempo_keygen_free(g);
  return 0;
}

int main(int argc, char **argv) {
  int reps = 9;
  bool quick = false, variants = false;
  shape one = {0, 0};
  const char *mix = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--mix-isa") && i + 1 < argc)
      tempo_obf_mix_set_isa(atoi(argv[++i]));
    else if (!strcmp(argv[i], "--mix"))
      mix = i + 1 < argc && argv[i + 1][0] != '-' ? argv[++i] : "resnet20";
    else if (!strcmp(argv[i], "--threads") && i + 1 < argc && atoi(argv[i + 1]) >= 1)
      mix_threads = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
      reps = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--quick"))
      quick = true;
    else if (!strcmp(argv[i], "--variants"))
      variants = true;
    else if (!strcmp(argv[i], "--shape") && i + 1 < argc && sscanf(argv[i + 1], "%dx%d", &one.rows, &one.cols) == 2 &&
             one.rows > 0 && one.cols > 0)
      i++;
    else {
      fprintf(stderr, "usage: bench_obf [--reps N] [--quick] [--variants] [--shape RxC] [--mix [MxNxP[,...]]] "
                      "[--mix-isa 1|2|3] [--threads N]\n");
      return 2;
    }
  }
  if (reps < 1) reps = 1;
  if (mix) return mix_main(mix, reps);
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
