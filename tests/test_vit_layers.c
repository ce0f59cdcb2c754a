/* test_vit_layers.c - the transformer layers on tiny shapes: finite-difference gradient
 * checks (layer norm, GELU, softmax, attention with 2 heads and N = 5, patch embedding
 * with cls and position embedding, a whole vit-test model with dropout), forward values
 * against naive double-precision references, softmax rows summing to 1, and dropout
 * masks that are deterministic and consistent between forward and backward. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"
#include "tempo/common.h"
#include "tempo/model.h"
#include "tempo/vit.h"

static tempo_mm *local_mm(void) {
  tempo_mm_config cfg;
  tempo_mm_config_default(&cfg);
  cfg.mode = TEMPO_MODE_LOCAL;
  tempo_mm *mm;
  assert_int_equal(tempo_mm_create(&cfg, &mm), TEMPO_STATUS_OK);
  return mm;
}

static void fill_normal(tempo_rng *rng, float *x, size_t n, double s) {
  for (size_t i = 0; i < n; i++) x[i] = (float)(s * tempo_rng_normal(rng));
}

/* ---------------------------------------------------------------- layer norm */
#define LN_R 3
#define LN_D 7
typedef struct {
  tempo_params p;
  tempo_layernorm l;
  float x[LN_R * LN_D], y[LN_R * LN_D], r[LN_R * LN_D], mean[LN_R], rstd[LN_R];
} ln_ctx;

static double ln_loss(void *vc) {
  ln_ctx *c = vc;
  tempo_layernorm_forward(&c->l, &c->p, c->x, LN_R, c->y, c->mean, c->rstd);
  return gradcheck_project(c->y, c->r, LN_R * LN_D);
}

static void test_layernorm(void **state) {
  (void)state;
  static ln_ctx c;
  tempo_rng rng;
  tempo_rng_seed(&rng, 11, 0);
  tempo_params_init(&c.p);
  assert_int_equal(tempo_layernorm_declare(&c.l, &c.p, "ln", LN_D), TEMPO_STATUS_OK);
  assert_int_equal(tempo_params_finalize(&c.p), TEMPO_STATUS_OK);
  tempo_layernorm_init(&c.l, &c.p);
  assert_float_equal(tempo_params_ptr(&c.p, c.l.w_idx)[3], 1.0f, 0);
  assert_float_equal(tempo_params_ptr(&c.p, c.l.b_idx)[3], 0.0f, 0);
  fill_normal(&rng, tempo_params_ptr(&c.p, c.l.w_idx), LN_D, 1.0);
  fill_normal(&rng, tempo_params_ptr(&c.p, c.l.b_idx), LN_D, 1.0);
  fill_normal(&rng, c.x, LN_R * LN_D, 2.0);
  for (int i = 0; i < LN_R * LN_D; i++) c.x[i] += 3.0f; /* a non-zero mean */
  fill_normal(&rng, c.r, LN_R * LN_D, 1.0);
  ln_loss(&c);
  /* forward against a double reference */
  const float *w = tempo_params_ptr(&c.p, c.l.w_idx), *b = tempo_params_ptr(&c.p, c.l.b_idx);
  for (int r = 0; r < LN_R; r++) {
    double mu = 0, var = 0;
    for (int i = 0; i < LN_D; i++) mu += c.x[r * LN_D + i];
    mu /= LN_D;
    for (int i = 0; i < LN_D; i++) var += (c.x[r * LN_D + i] - mu) * (c.x[r * LN_D + i] - mu);
    var /= LN_D;
    for (int i = 0; i < LN_D; i++) {
      const double want = (c.x[r * LN_D + i] - mu) / sqrt(var + 1e-5) * w[i] + b[i];
      assert_float_equal(c.y[r * LN_D + i], want, 1e-5 * (1 + fabs(want)));
    }
  }
  float dx[LN_R * LN_D];
  tempo_params_zero_grad(&c.p);
  tempo_layernorm_backward(&c.l, &c.p, c.x, c.mean, c.rstd, c.r, LN_R, dx, false);
  assert_int_equal(gradcheck("ln.x", ln_loss, &c, c.x, dx, LN_R * LN_D, 1e-2, 2e-3, 1e-2), 0);
  assert_int_equal(gradcheck("ln.w", ln_loss, &c, tempo_params_ptr(&c.p, c.l.w_idx),
                             tempo_params_grad(&c.p, c.l.w_idx), LN_D, 1e-2, 2e-3, 1e-2), 0);
  assert_int_equal(gradcheck("ln.b", ln_loss, &c, tempo_params_ptr(&c.p, c.l.b_idx),
                             tempo_params_grad(&c.p, c.l.b_idx), LN_D, 1e-2, 2e-3, 1e-2), 0);
  /* accumulate mode adds to dx; parameter gradients accumulate across calls */
  float acc[LN_R * LN_D], dw1 = tempo_params_grad(&c.p, c.l.w_idx)[2];
  for (int i = 0; i < LN_R * LN_D; i++) acc[i] = 0.5f;
  tempo_layernorm_backward(&c.l, &c.p, c.x, c.mean, c.rstd, c.r, LN_R, acc, true);
  for (int i = 0; i < LN_R * LN_D; i++) assert_float_equal(acc[i], dx[i] + 0.5f, 1e-6);
  assert_float_equal(tempo_params_grad(&c.p, c.l.w_idx)[2], 2 * dw1, 1e-5 * (1 + fabs(dw1)));
  tempo_params_free(&c.p);
}

/* ---------------------------------------------------------------- GELU */
#define GE_N 41
typedef struct {
  float x[GE_N], y[GE_N], r[GE_N];
} gelu_ctx;

static double gelu_loss(void *vc) {
  gelu_ctx *c = vc;
  tempo_gelu_forward(c->x, c->y, GE_N);
  return gradcheck_project(c->y, c->r, GE_N);
}

static void test_gelu(void **state) {
  (void)state;
  gelu_ctx c;
  tempo_rng rng;
  tempo_rng_seed(&rng, 12, 0);
  for (int i = 0; i < GE_N; i++) c.x[i] = -6.0f + 12.0f * i / (GE_N - 1) + 0.01f; /* avoid exact 0 */
  fill_normal(&rng, c.r, GE_N, 1.0);
  gelu_loss(&c);
  for (int i = 0; i < GE_N; i++) {
    const double v = c.x[i], want = 0.5 * v * (1.0 + erf(v / sqrt(2.0)));
    assert_float_equal(c.y[i], want, 2e-6 * (1 + fabs(want)));
  }
  float known[3] = {1.0f, -1.0f, 0.0f}, out[3];
  tempo_gelu_forward(known, out, 3);
  assert_float_equal(out[0], 0.8413447460685429, 1e-6);
  assert_float_equal(out[1], -0.15865525393145707, 1e-6);
  assert_float_equal(out[2], 0.0, 0);
  float dx[GE_N];
  tempo_gelu_backward(c.x, c.r, dx, GE_N);
  assert_int_equal(gradcheck("gelu", gelu_loss, &c, c.x, dx, GE_N, 1e-2, 1e-3, 1e-2), 0);
  /* in place (dx == dy) gives the same */
  float dy[GE_N];
  memcpy(dy, c.r, sizeof dy);
  tempo_gelu_backward(c.x, dy, dy, GE_N);
  assert_memory_equal(dy, dx, sizeof dx);
}

/* ---------------------------------------------------------------- softmax */
#define SM_R 4
#define SM_N 6
typedef struct {
  float x[SM_R * SM_N], y[SM_R * SM_N], r[SM_R * SM_N];
  float scale;
} sm_ctx;

static double sm_loss(void *vc) {
  sm_ctx *c = vc;
  tempo_softmax_rows_forward(c->x, c->y, SM_R, SM_N, c->scale);
  return gradcheck_project(c->y, c->r, SM_R * SM_N);
}

static void test_softmax(void **state) {
  (void)state;
  sm_ctx c = {.scale = 0.7f};
  tempo_rng rng;
  tempo_rng_seed(&rng, 13, 0);
  fill_normal(&rng, c.x, SM_R * SM_N, 2.0);
  fill_normal(&rng, c.r, SM_R * SM_N, 1.0);
  sm_loss(&c);
  for (int r = 0; r < SM_R; r++) {
    double sum = 0, z = 0;
    for (int i = 0; i < SM_N; i++) z += exp(c.scale * (double)c.x[r * SM_N + i]);
    for (int i = 0; i < SM_N; i++) {
      sum += c.y[r * SM_N + i];
      assert_float_equal(c.y[r * SM_N + i], exp(c.scale * (double)c.x[r * SM_N + i]) / z, 1e-6);
    }
    assert_float_equal(sum, 1.0, 1e-6);
  }
  float dx[SM_R * SM_N];
  tempo_softmax_rows_backward(c.y, c.r, dx, SM_R, SM_N, c.scale);
  assert_int_equal(gradcheck("softmax", sm_loss, &c, c.x, dx, SM_R * SM_N, 1e-2, 1e-3, 1e-2), 0);
  /* huge logits stay finite, in place */
  float big[4] = {1e30f, -1e30f, 3e4f, 1e30f};
  tempo_softmax_rows_forward(big, big, 1, 4, 1.0f);
  assert_float_equal(big[0], 0.5, 1e-7);
  assert_float_equal(big[1], 0.0, 0);
  assert_float_equal(big[2], 0.0, 0);
  assert_float_equal(big[3], 0.5, 1e-7);
}

/* ---------------------------------------------------------------- attention */
#define AT_B 2
#define AT_N 5
#define AT_D 6
#define AT_H 2
#define AT_U (AT_B * AT_N * AT_D)
typedef struct {
  tempo_mm *mm;
  tempo_params p;
  tempo_mhsa a;
  float x[AT_U], y[AT_U], r[AT_U];
  float *scratch;
} at_ctx;

static double at_loss(void *vc) {
  at_ctx *c = vc;
  assert_int_equal(tempo_mhsa_forward(&c->a, c->mm, &c->p, c->x, AT_B, c->y, c->scratch), TEMPO_STATUS_OK);
  return gradcheck_project(c->y, c->r, AT_U);
}

/* The twin's attention in double, straight from the definition. */
static void attention_reference(const at_ctx *c, double *out) {
  const int e = AT_D / AT_H;
  const float *wq = tempo_params_ptr(&c->p, c->a.qkv.w_idx), *bq = tempo_params_ptr(&c->p, c->a.qkv.b_idx);
  const float *wp = tempo_params_ptr(&c->p, c->a.proj.w_idx), *bp = tempo_params_ptr(&c->p, c->a.proj.b_idx);
  for (int b = 0; b < AT_B; b++) {
    double qkv[AT_N][3 * AT_D], ctx[AT_N][AT_D];
    for (int t = 0; t < AT_N; t++)
      for (int o = 0; o < 3 * AT_D; o++) {
        double s = bq[o];
        for (int i = 0; i < AT_D; i++) s += (double)wq[o * AT_D + i] * c->x[(b * AT_N + t) * AT_D + i];
        qkv[t][o] = s;
      }
    for (int h = 0; h < AT_H; h++)
      for (int t = 0; t < AT_N; t++) {
        double s[AT_N], mx = -1e300, z = 0;
        for (int u = 0; u < AT_N; u++) {
          s[u] = 0;
          for (int k = 0; k < e; k++) s[u] += qkv[t][h * e + k] * qkv[u][AT_D + h * e + k];
          s[u] /= sqrt((double)e);
          mx = fmax(mx, s[u]);
        }
        for (int u = 0; u < AT_N; u++) z += (s[u] = exp(s[u] - mx));
        for (int k = 0; k < e; k++) {
          double acc = 0;
          for (int u = 0; u < AT_N; u++) acc += s[u] / z * qkv[u][2 * AT_D + h * e + k];
          ctx[t][h * e + k] = acc;
        }
      }
    for (int t = 0; t < AT_N; t++)
      for (int o = 0; o < AT_D; o++) {
        double s = bp[o];
        for (int i = 0; i < AT_D; i++) s += (double)wp[o * AT_D + i] * ctx[t][i];
        out[(b * AT_N + t) * AT_D + o] = s;
      }
  }
}

static void test_attention(void **state) {
  (void)state;
  static at_ctx c;
  c.mm = local_mm();
  tempo_rng rng;
  tempo_rng_seed(&rng, 14, 0);
  tempo_params_init(&c.p);
  assert_int_equal(tempo_mhsa_declare(&c.a, &c.p, "attn", AT_D, AT_H, AT_N), TEMPO_STATUS_OK);
  assert_int_equal(tempo_params_finalize(&c.p), TEMPO_STATUS_OK);
  assert_int_equal(tempo_params_find(&c.p, "attn.qkv.weight"), c.a.qkv.w_idx);
  assert_int_equal(tempo_params_find(&c.p, "attn.proj.bias"), c.a.proj.b_idx);
  assert_int_equal(tempo_mhsa_alloc(&c.a, AT_B), TEMPO_STATUS_OK);
  tempo_mhsa_init(&c.a, &c.p, &rng);
  /* larger qkv weights so the softmax is far from uniform */
  float *wq = tempo_params_ptr(&c.p, c.a.qkv.w_idx);
  for (int i = 0; i < 3 * AT_D * AT_D; i++) wq[i] *= 3.0f;
  c.scratch = tempo_alloc_floats(tempo_mhsa_scratch_floats(&c.a, AT_B));
  assert_non_null(c.scratch);
  fill_normal(&rng, c.x, AT_U, 1.0);
  fill_normal(&rng, c.r, AT_U, 1.0);
  at_loss(&c);
  double ref[AT_U];
  attention_reference(&c, ref);
  for (int i = 0; i < AT_U; i++) assert_float_equal(c.y[i], ref[i], 1e-5 * (1 + fabs(ref[i])));
  /* attention rows are probability distributions */
  for (int r = 0; r < AT_B * AT_H * AT_N; r++) {
    double s = 0;
    for (int u = 0; u < AT_N; u++) s += c.a.att[r * AT_N + u];
    assert_float_equal(s, 1.0, 1e-6);
  }
  float dx[AT_U];
  tempo_params_zero_grad(&c.p);
  assert_int_equal(tempo_mhsa_backward(&c.a, c.mm, &c.p, c.x, AT_B, c.r, dx, c.scratch), TEMPO_STATUS_OK);
  const double eps = 1e-2, atol = 2e-3, rtol = 2e-2;
  assert_int_equal(gradcheck("attn.x", at_loss, &c, c.x, dx, AT_U, eps, atol, rtol), 0);
  const int idx[4] = {c.a.qkv.w_idx, c.a.qkv.b_idx, c.a.proj.w_idx, c.a.proj.b_idx};
  for (int k = 0; k < 4; k++)
    assert_int_equal(gradcheck(c.p.info[idx[k]].name, at_loss, &c, tempo_params_ptr(&c.p, idx[k]),
                               tempo_params_grad(&c.p, idx[k]), c.p.info[idx[k]].count, eps, atol, rtol),
                     0);
  assert_int_equal(tempo_mhsa_forward(&c.a, c.mm, &c.p, c.x, AT_B + 1, c.y, c.scratch),
                   TEMPO_STATUS_INVALID_ARGUMENT);
  tempo_free_floats(c.scratch);
  tempo_mhsa_free(&c.a);
  tempo_params_free(&c.p);
  tempo_mm_free(c.mm);
}

/* ---------------------------------------------------------------- patch embedding */
#define PE_B 2
#define PE_C 2
#define PE_H 4
#define PE_W 6
#define PE_G 2
#define PE_D 3
#define PE_P ((PE_H / PE_G) * (PE_W / PE_G))
#define PE_N (PE_P + 1)
typedef struct {
  tempo_mm *mm;
  tempo_params p;
  tempo_patch_embed e;
  float x[PE_B * PE_C * PE_H * PE_W], out[PE_B * PE_N * PE_D], r[PE_B * PE_N * PE_D];
  float patches[PE_B * PE_P * PE_C * PE_G * PE_G], tmp[PE_B * PE_P * PE_D];
} pe_ctx;

static double pe_loss(void *vc) {
  pe_ctx *c = vc;
  assert_int_equal(tempo_patch_embed_forward(&c->e, c->mm, &c->p, c->x, PE_B, c->patches, c->tmp, c->out),
                   TEMPO_STATUS_OK);
  return gradcheck_project(c->out, c->r, PE_B * PE_N * PE_D);
}

static void test_patch_embed(void **state) {
  (void)state;
  static pe_ctx c;
  c.mm = local_mm();
  tempo_rng rng;
  tempo_rng_seed(&rng, 15, 0);
  tempo_params_init(&c.p);
  assert_int_equal(tempo_patch_embed_declare(&c.e, &c.p, PE_C, PE_H, PE_W, PE_G, PE_D), TEMPO_STATUS_OK);
  assert_int_equal(c.e.tokens, PE_N);
  assert_int_equal(tempo_params_finalize(&c.p), TEMPO_STATUS_OK);
  tempo_patch_embed_init(&c.e, &c.p, &rng);
  float *cls = tempo_params_ptr(&c.p, c.e.cls_idx), *pos = tempo_params_ptr(&c.p, c.e.pos_idx);
  for (int i = 0; i < PE_D; i++) assert_float_equal(cls[i], 0.0f, 0);
  for (int i = 0; i < PE_N * PE_D; i++) assert_true(fabsf(pos[i]) <= 0.04f);
  fill_normal(&rng, cls, PE_D, 1.0);
  fill_normal(&rng, c.x, sizeof c.x / sizeof c.x[0], 1.0);
  fill_normal(&rng, c.r, sizeof c.r / sizeof c.r[0], 1.0);
  pe_loss(&c);
  /* forward against the convolution definition */
  const float *w = tempo_params_ptr(&c.p, c.e.w_idx), *bias = tempo_params_ptr(&c.p, c.e.b_idx);
  for (int b = 0; b < PE_B; b++)
    for (int t = 0; t < PE_N; t++)
      for (int o = 0; o < PE_D; o++) {
        double want = pos[t * PE_D + o];
        if (t == 0) {
          want += cls[o];
        } else {
          const int gy = (t - 1) / (PE_W / PE_G), gx = (t - 1) % (PE_W / PE_G);
          want += bias[o];
          for (int ch = 0; ch < PE_C; ch++)
            for (int ki = 0; ki < PE_G; ki++)
              for (int kj = 0; kj < PE_G; kj++)
                want += (double)w[((o * PE_C + ch) * PE_G + ki) * PE_G + kj] *
                        c.x[((b * PE_C + ch) * PE_H + gy * PE_G + ki) * PE_W + gx * PE_G + kj];
        }
        assert_float_equal(c.out[(b * PE_N + t) * PE_D + o], want, 1e-5 * (1 + fabs(want)));
      }
  tempo_params_zero_grad(&c.p);
  assert_int_equal(tempo_patch_embed_backward(&c.e, c.mm, &c.p, c.patches, PE_B, c.r, c.tmp), TEMPO_STATUS_OK);
  const int idx[4] = {c.e.w_idx, c.e.b_idx, c.e.cls_idx, c.e.pos_idx};
  for (int k = 0; k < 4; k++)
    assert_int_equal(gradcheck(c.p.info[idx[k]].name, pe_loss, &c, tempo_params_ptr(&c.p, idx[k]),
                               tempo_params_grad(&c.p, idx[k]), c.p.info[idx[k]].count, 1e-2, 1e-3, 1e-2),
                     0);
  tempo_patch_embed e2;
  tempo_params p2;
  tempo_params_init(&p2);
  assert_int_equal(tempo_patch_embed_declare(&e2, &p2, 3, 30, 32, 4, 8), TEMPO_STATUS_INVALID_ARGUMENT);
  tempo_params_free(&p2);
  tempo_params_free(&c.p);
  tempo_mm_free(c.mm);
}

/* ---------------------------------------------------------------- dropout */
static void test_dropout(void **state) {
  (void)state;
  enum { N = 20000 };
  static float x[N], y[N], y2[N], dy[N], dx[N];
  static uint8_t mask[N], mask2[N];
  const float p = 0.3f;
  tempo_rng rng, rng2;
  tempo_rng_seed(&rng, 16, 0);
  fill_normal(&rng, x, N, 1.0);
  for (int i = 0; i < N; i++) x[i] += x[i] == 0.0f ? 1.0f : 0.0f;
  fill_normal(&rng, dy, N, 1.0);
  tempo_rng_seed(&rng, 5, 1);
  rng2 = rng;
  tempo_dropout_forward(&rng, p, x, y, mask, N);
  tempo_dropout_forward(&rng2, p, x, y2, mask2, N);
  assert_memory_equal(mask, mask2, N); /* deterministic for a seed */
  assert_memory_equal(y, y2, sizeof y);
  int dropped = 0;
  for (int i = 0; i < N; i++) {
    dropped += !mask[i];
    assert_float_equal(y[i], mask[i] ? x[i] / (1 - p) : 0.0f, 1e-6 * (1 + fabsf(x[i])));
  }
  /* 6000 expected; the standard deviation is sqrt(N p (1-p)) ~ 65 */
  assert_in_range(dropped, 6000 - 400, 6000 + 400);
  tempo_dropout_forward(&rng, p, x, y2, mask2, N);
  assert_true(memcmp(mask, mask2, N) != 0); /* the next draw differs */
  tempo_dropout_backward(p, mask, dy, dx, N);
  for (int i = 0; i < N; i++) {
    assert_true((y[i] == 0.0f) == (dx[i] == 0.0f || dy[i] == 0.0f)); /* same units dropped */
    assert_float_equal(dx[i], mask[i] ? dy[i] / (1 - p) : 0.0f, 1e-6 * (1 + fabsf(dy[i])));
  }
  tempo_dropout_forward(&rng, 0.0f, x, y2, mask2, N);
  assert_memory_equal(x, y2, sizeof x);
}

/* ---------------------------------------------------------------- whole model with dropout */
#define MB 2
#define MIMG (3 * 8 * 8)
typedef struct {
  tempo_model *m;
  tempo_rng rng0; /* the model's rng before the forward: every evaluation draws the same masks */
  float x[MB * MIMG], logits[MB * 10];
  int labels[MB];
} model_ctx;

static double model_loss(void *vc) {
  model_ctx *c = vc;
  c->m->rng = c->rng0;
  assert_int_equal(c->m->ops->forward(c->m, c->x, MB, c->logits), TEMPO_STATUS_OK);
  return tempo_softmax_xent(c->logits, c->labels, MB, 10, NULL, NULL);
}

static void test_model_with_dropout(void **state) {
  (void)state;
  static model_ctx c = {.labels = {3, 7}};
  tempo_mm *mm = local_mm();
  tempo_model_config cfg = {.name = "vit-test", .in_c = 3, .in_h = 8, .in_w = 8, .num_classes = 10,
                            .max_batch = MB, .dropout = 0.25f};
  assert_int_equal(tempo_model_create(&cfg, mm, 9, &c.m), TEMPO_STATUS_OK);
  tempo_rng rng;
  tempo_rng_seed(&rng, 17, 0);
  fill_normal(&rng, c.x, MB * MIMG, 1.0);
  c.rng0 = c.m->rng;
  model_loss(&c);
  float dlogits[MB * 10], first[MB * 10];
  memcpy(first, c.logits, sizeof first);
  tempo_softmax_xent(c.logits, c.labels, MB, 10, dlogits, NULL);
  tempo_params_zero_grad(&c.m->params);
  assert_int_equal(c.m->ops->backward(c.m, dlogits, MB), TEMPO_STATUS_OK);
  /* copy the analytic gradient: gradcheck's forwards do not touch grad, but keep it simple */
  const size_t n = c.m->params.count;
  float *ana = malloc(n * sizeof *ana);
  assert_non_null(ana);
  memcpy(ana, c.m->params.grad, n * sizeof *ana);
  assert_int_equal(gradcheck("vit-test(dropout)", model_loss, &c, c.m->params.data, ana, n, 1e-2, 1e-3, 5e-2), 0);
  /* different masks give different logits; eval mode uses none and is deterministic */
  c.m->rng = c.rng0;
  tempo_rng_u64(&c.m->rng);
  assert_int_equal(c.m->ops->forward(c.m, c.x, MB, c.logits), TEMPO_STATUS_OK);
  assert_true(memcmp(first, c.logits, sizeof first) != 0);
  c.m->training = false;
  float e1[MB * 10], e2[MB * 10];
  assert_int_equal(c.m->ops->forward(c.m, c.x, MB, e1), TEMPO_STATUS_OK);
  assert_int_equal(c.m->ops->forward(c.m, c.x, MB, e2), TEMPO_STATUS_OK);
  assert_memory_equal(e1, e2, sizeof e1);
  free(ana);
  tempo_model_free(c.m);
  tempo_mm_free(mm);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_layernorm),  cmocka_unit_test(test_gelu),    cmocka_unit_test(test_softmax),
      cmocka_unit_test(test_attention),  cmocka_unit_test(test_patch_embed), cmocka_unit_test(test_dropout),
      cmocka_unit_test(test_model_with_dropout),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
