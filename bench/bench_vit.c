/* bench_vit.c - milliseconds per training step of the ViT models in local mode (the
 * pure-TEE baseline), to compare with the PyTorch twin (/work/shared/peer-baselines.md).
 *
 * A step is what peer_bench.py times: zero grads, forward, softmax cross-entropy,
 * backward, SGD (momentum 0.9) update. Random N(0, 1) inputs of 3x32x32, batch 64.
 * Per (model, threads): one correctness check (loss finite and near ln 10 on the first
 * step), --warmup steps, then --steps timed steps; prints a markdown table with the
 * median, min and max, and the share of the median spent in matrix products (the
 * engine's t_local) versus everything else (layer norm, GELU, softmax, rearrangements),
 * and the minor page faults per timed step (0 when every buffer is reused).
 *
 * --layers times the element-wise passes alone at vit-mini's shapes for the batch (softmax
 * over (B*H*N, N), GELU over (B*N, M), layer norm over (B*N, D)): ms per call, median of 20.
 *
 * Usage: bench_vit [--models vit-mini,vit-tiny] [--threads 1,2] [--steps N] [--warmup N]
 *                  [--batch B] [--quick] [--layers]   (--quick: vit-mini, 3 steps, batch 16) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "bench_util.h"
#include "tempo/vit.h"

static void die(const char *what) {
  fprintf(stderr, "bench_vit: %s: %s\n", what, tempo_errmsg());
  exit(1);
}

typedef struct {
  double med, min, max, mm_share, faults;
} result;

static long minor_faults(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_minflt;
}

static result bench_one(const char *name, int threads, int batch, int warmup, int steps) {
  tempo_mm_config mc;
  tempo_mm_config_default(&mc);
  mc.mode = TEMPO_MODE_LOCAL;
  mc.threads = threads;
  bench_rig rig;
  if (bench_rig_open(&rig, name, &mc, batch)) die(name);
  double *t = malloc((size_t)steps * sizeof *t), *tm = malloc((size_t)steps * sizeof *tm);
  if (!t || !tm) die("out of memory");
  long f0 = 0;
  for (int s = -warmup; s < steps; s++) {
    if (s == 0) f0 = minor_faults();
    tempo_mm_stats st;
    tempo_mm_stats_step(rig.mm, &st);
    const double t0 = tempo_now();
    double loss = 0;
    if (bench_rig_step(&rig, &loss)) die("training step");
    const double dt = tempo_now() - t0;
    tempo_mm_stats_step(rig.mm, &st);
    if (s == -warmup && !(isfinite(loss) && fabs(loss - log(10.0)) < 1.5)) {
      fprintf(stderr, "bench_vit: %s: first loss %g is not near ln 10\n", name, loss);
      exit(1);
    }
    if (s >= 0) t[s] = dt, tm[s] = st.t_local;
  }
  const double faults = (double)(minor_faults() - f0) / steps;
  double share = 0;
  for (int s = 0; s < steps; s++) share += tm[s] / t[s];
  const double med = bench_median(t, steps);
  result r = {med * 1e3, t[0] * 1e3, t[steps - 1] * 1e3, share / steps, faults};
  free(t);
  free(tm);
  bench_rig_close(&rig);
  return r;
}

typedef struct {
  float *a, *b, *c, *mean, *rstd;
  tempo_layernorm ln;
  tempo_params p;
  size_t rows_sm, n_gelu;
  int n_sm, rows_ln;
} layer_ctx;

static double time_pass(layer_ctx *c, int which) {
  double t[20];
  for (int r = -2; r < 20; r++) {
    const double t0 = tempo_now();
    switch (which) {
    case 0: tempo_softmax_rows_forward(c->a, c->b, c->rows_sm, c->n_sm, 0.125f); break;
    case 1: tempo_softmax_rows_backward(c->b, c->a, c->c, c->rows_sm, c->n_sm, 0.125f); break;
    case 2: tempo_gelu_forward(c->a, c->b, c->n_gelu); break;
    case 3: tempo_gelu_backward(c->a, c->b, c->c, c->n_gelu); break;
    case 4: tempo_layernorm_forward(&c->ln, &c->p, c->a, c->rows_ln, c->b, c->mean, c->rstd); break;
    default: tempo_layernorm_backward(&c->ln, &c->p, c->a, c->mean, c->rstd, c->b, c->rows_ln, c->c, true); break;
    }
    if (r >= 0) t[r] = tempo_now() - t0;
  }
  return bench_median(t, 20) * 1e3;
}

/* The element-wise passes at vit-mini's shapes (D 128, H 4, N 65, M 256). */
static void bench_layers(int batch) {
  layer_ctx c = {.rows_sm = (size_t)batch * 4 * 65, .n_sm = 65, .n_gelu = (size_t)batch * 65 * 256,
                 .rows_ln = batch * 65};
  const size_t n = c.n_gelu > c.rows_sm * 65 ? c.n_gelu : c.rows_sm * 65;
  c.a = tempo_alloc_floats(n), c.b = tempo_alloc_floats(n), c.c = tempo_alloc_floats(n);
  c.mean = tempo_alloc_floats((size_t)c.rows_ln), c.rstd = tempo_alloc_floats((size_t)c.rows_ln);
  tempo_params_init(&c.p);
  if (!c.a || !c.b || !c.c || !c.mean || !c.rstd || tempo_layernorm_declare(&c.ln, &c.p, "ln", 128) ||
      tempo_params_finalize(&c.p))
    die("layer buffers");
  tempo_layernorm_init(&c.ln, &c.p);
  tempo_rng rng;
  tempo_rng_seed(&rng, 5, 0);
  for (size_t i = 0; i < n; i++) c.a[i] = (float)tempo_rng_normal(&rng), c.b[i] = (float)tempo_rng_normal(&rng);
  static const char *names[6] = {"softmax forward", "softmax backward", "GELU forward", "GELU backward",
                                 "layer norm forward", "layer norm backward"};
  const double elems[6] = {(double)c.rows_sm * 65, (double)c.rows_sm * 65, (double)c.n_gelu, (double)c.n_gelu,
                           (double)c.rows_ln * 128, (double)c.rows_ln * 128};
  printf("| pass (vit-mini shapes, batch %d) | values | ms/call | ns/value |\n|---|--:|--:|--:|\n", batch);
  for (int w = 0; w < 6; w++) {
    const double ms = time_pass(&c, w);
    printf("| %s | %.0f | %.3f | %.2f |\n", names[w], elems[w], ms, ms * 1e6 / elems[w]);
  }
  printf("\n");
  tempo_params_free(&c.p);
  tempo_free_floats(c.a), tempo_free_floats(c.b), tempo_free_floats(c.c);
  tempo_free_floats(c.mean), tempo_free_floats(c.rstd);
}

int main(int argc, char **argv) {
  char models[256] = "vit-mini,vit-tiny", threads[64] = "1,2";
  int steps = 10, warmup = 2, batch = 64;
  bool layers = false;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--models") && i + 1 < argc)
      snprintf(models, sizeof models, "%s", argv[++i]);
    else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
      snprintf(threads, sizeof threads, "%s", argv[++i]);
    else if (!strcmp(argv[i], "--steps") && i + 1 < argc)
      steps = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--warmup") && i + 1 < argc)
      warmup = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
      batch = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--layers"))
      layers = true;
    else if (!strcmp(argv[i], "--quick")) {
      snprintf(models, sizeof models, "vit-mini");
      steps = 3, warmup = 1, batch = 16;
    } else {
      fprintf(stderr, "usage: bench_vit [--models a,b] [--threads 1,2] [--steps N] [--warmup N] [--batch B] "
                      "[--quick] [--layers]\n");
      return 2;
    }
  }
  if (steps < 1 || warmup < 1 || batch < 1) {
    fprintf(stderr, "bench_vit: --steps, --warmup and --batch must be >= 1\n");
    return 2;
  }
  if (layers) bench_layers(batch);
  printf("| model | batch | threads | ms/step median | min | max | matmul share | page faults/step |\n");
  printf("|---|--:|--:|--:|--:|--:|--:|--:|\n");
  for (char *ms = models, *mtok; (mtok = strtok_r(ms, ",", &ms));) {
    char tl[64];
    snprintf(tl, sizeof tl, "%s", threads);
    for (char *ts = tl, *ttok; (ttok = strtok_r(ts, ",", &ts));) {
      const int th = atoi(ttok);
      if (th < 1) {
        fprintf(stderr, "bench_vit: bad thread count '%s'\n", ttok);
        return 2;
      }
      result r = bench_one(mtok, th, batch, warmup, steps);
      printf("| %s | %d | %d | %.1f | %.1f | %.1f | %.0f%% | %.0f |\n", mtok, batch, th, r.med, r.min, r.max,
             100 * r.mm_share, r.faults);
      fflush(stdout);
    }
  }
  return 0;
}
