/* test_protect.c - the protection policy (--protect; mm_types.h tempo_protect, engine.h
 * tempo_protect_route). The route table for every policy and site kind. One training step of
 * mlp, resnet-test and vit-test in tempo mode under every policy, with an audit trail: the
 * trail holds exactly the products the policy lets the workers see (every FORWARD and
 * BACKWARD request's shape is one of them, and the forward products appear in the order
 * the model runs them, none missing), so a raw-input or head product is never in a guarded
 * trail and always in a `none` one; the X' the workers got of a spatial product is mixed
 * under spatial and all (a third or more of its entries negative, where the ReLU'd input
 * and positive scalings give none under none and ends); and the logits and every parameter gradient equal local
 * mode's within float tolerance whatever the policy. The mode's default resolves to
 * TEMPO_PROTECT_GUARDED in tempo mode and to none elsewhere. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "offload/engine.h"
#include "tempo/audit.h"
#include "tempo/layers.h"
#include "tempo/matmul.h"
#include "tempo/model.h"
#include "tempo/rng.h"

#define MAXP 256 /* forward products per step */

static void test_route_table(void **state) {
  (void)state;
  const unsigned raw = TEMPO_SITE_RAW_INPUT, head = TEMPO_SITE_HEAD, sp = TEMPO_SITE_SPATIAL;
  for (int mix = 0; mix < 2; mix++) {
    const tempo_route mixed = mix ? TEMPO_ROUTE_MIXED : TEMPO_ROUTE_MASTER;
    for (unsigned k = 0; k < 8; k++) assert_int_equal(tempo_protect_route(TEMPO_PROTECT_NONE, k, mix), TEMPO_ROUTE_WORKERS);
    assert_int_equal(tempo_protect_route(TEMPO_PROTECT_ENDS, 0, mix), TEMPO_ROUTE_WORKERS);
    assert_int_equal(tempo_protect_route(TEMPO_PROTECT_ENDS, sp, mix), TEMPO_ROUTE_WORKERS);
    assert_int_equal(tempo_protect_route(TEMPO_PROTECT_ENDS, raw, mix), TEMPO_ROUTE_MASTER);
    assert_int_equal(tempo_protect_route(TEMPO_PROTECT_ENDS, head, mix), TEMPO_ROUTE_MASTER);
    assert_int_equal(tempo_protect_route(TEMPO_PROTECT_ENDS, raw | sp, mix), TEMPO_ROUTE_MASTER);
    assert_int_equal(tempo_protect_route(TEMPO_PROTECT_SPATIAL, 0, mix), TEMPO_ROUTE_WORKERS);
    assert_int_equal(tempo_protect_route(TEMPO_PROTECT_SPATIAL, sp, mix), mixed);
    assert_int_equal(tempo_protect_route(TEMPO_PROTECT_SPATIAL, raw | sp, mix), TEMPO_ROUTE_MASTER);
    assert_int_equal(tempo_protect_route(TEMPO_PROTECT_SPATIAL, head, mix), TEMPO_ROUTE_MASTER);
    assert_int_equal(tempo_protect_route(TEMPO_PROTECT_ALL, 0, mix), mixed);
    assert_int_equal(tempo_protect_route(TEMPO_PROTECT_ALL, sp, mix), mixed);
    assert_int_equal(tempo_protect_route(TEMPO_PROTECT_ALL, head, mix), TEMPO_ROUTE_MASTER);
  }
  tempo_protect p;
  assert_true(tempo_protect_parse("spatial", &p) && p == TEMPO_PROTECT_SPATIAL);
  assert_true(tempo_protect_parse("none", &p) && p == TEMPO_PROTECT_NONE);
  assert_false(tempo_protect_parse("default", &p));
  assert_false(tempo_protect_parse("ALL", &p));
  tempo_mm_config c;
  tempo_mm_config_default(&c);
  assert_int_equal(tempo_mm_config_protect(&c), TEMPO_PROTECT_GUARDED);
  c.mode = TEMPO_MODE_PLAIN;
  assert_int_equal(tempo_mm_config_protect(&c), TEMPO_PROTECT_NONE);
  c.mode = TEMPO_MODE_LOCAL, c.protect = TEMPO_PROTECT_ALL;
  assert_int_equal(tempo_mm_config_protect(&c), TEMPO_PROTECT_NONE);
  c.mode = TEMPO_MODE_TEMPO, c.protect = (tempo_protect)9;
  tempo_mm *mm;
  assert_int_equal(tempo_mm_create(&c, &mm), TEMPO_STATUS_INVALID_ARGUMENT);
}

typedef struct {
  const char *model;
  int c, hw;
} net;

typedef struct {
  float *logits, *grad;
  size_t ngrad;
  tempo_mm_shape shapes[MAXP];
  int nshapes;
} step_out;

/* One training step (forward, cross-entropy, backward) of n in `mode` under policy p. */
static void step(const net *n, tempo_mode mode, tempo_protect p, const char *audit, step_out *o) {
  enum { B = 4, C = 10 };
  tempo_mm_config mc;
  tempo_mm_config_default(&mc);
  mc.mode = mode;
  mc.protect = p;
  mc.seed = 5;
  mc.audit_dir = audit;
  tempo_mm *mm;
  assert_int_equal(tempo_mm_create(&mc, &mm), TEMPO_STATUS_OK);
  tempo_model_config cfg = {.in_c = n->c, .in_h = n->hw, .in_w = n->hw, .num_classes = C, .max_batch = B};
  snprintf(cfg.name, sizeof cfg.name, "%s", n->model);
  tempo_model *m;
  assert_int_equal(tempo_model_create(&cfg, mm, 3, &m), TEMPO_STATUS_OK);
  m->training = true;
  tempo_mm_set_training(mm, true);
  const size_t nx = (size_t)B * n->c * n->hw * n->hw;
  float *x = malloc(nx * sizeof *x), dl[B * C];
  tempo_rng r;
  tempo_rng_seed(&r, 11, 0);
  for (size_t i = 0; i < nx; i++) x[i] = (float)tempo_rng_normal(&r);
  const int labels[B] = {3, 1, 3, 7};
  o->logits = malloc(sizeof(float) * B * C);
  tempo_mm_record_shapes(mm, o->shapes, MAXP, &o->nshapes);
  assert_int_equal(m->ops->forward(m, x, B, o->logits), TEMPO_STATUS_OK);
  tempo_mm_record_shapes(mm, NULL, 0, NULL);
  assert_true(o->nshapes <= MAXP);
  tempo_softmax_xent(o->logits, labels, B, C, dl, NULL);
  tempo_params_zero_grad(&m->params);
  assert_int_equal(m->ops->backward(m, dl, B), TEMPO_STATUS_OK);
  tempo_mm_step_end(mm);
  o->ngrad = m->params.count;
  o->grad = malloc(o->ngrad * sizeof *o->grad);
  memcpy(o->grad, m->params.grad, o->ngrad * sizeof *o->grad);
  free(x);
  tempo_model_free(m);
  tempo_mm_free(mm); /* closes the trail */
}

static bool same_shape(const tempo_mm_shape *a, const tempo_msg_header *h) {
  return h->batch == (uint32_t)a->batch && h->m == (uint32_t)a->m && h->n == (uint32_t)a->n && h->p == (uint32_t)a->p;
}

static void close_to(const float *a, const float *b, size_t n, double tol, const char *what) {
  double err = 0, ref = 0;
  for (size_t i = 0; i < n; i++) {
    const double d = fabs((double)a[i] - b[i]);
    if (d > err) err = d;
    if (fabs(b[i]) > ref) ref = fabs(b[i]);
  }
  if (!(err <= tol * ref)) fail_msg("%s: max difference %g against max %g", what, err, ref);
}

static bool spatial_shape(const tempo_mm_shape *s);

/* Checks the trail in dir: every request's shape is one of want[0..nw), and the forward
 * products (requests with lo == 0) are want[] in order. Returns the share of negative
 * entries in the X' of the spatial products' forward requests (their inputs here are ReLU
 * outputs, >= 0: positive scalings keep them so, mixing does not), but the stem's. */
static double check_trail(const char *dir, const tempo_mm_shape *want, int nw, const tempo_mm_shape *stem,
                          const char *what) {
  size_t neg = 0, tot = 0;
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, TEMPO_AUDIT_FILE);
  tempo_audit_reader *rd;
  assert_int_equal(tempo_audit_open(path, &rd), TEMPO_STATUS_OK);
  int fwd = 0;
  for (;;) {
    tempo_audit_record rec;
    bool end;
    assert_int_equal(tempo_audit_next(rd, &rec, &end), TEMPO_STATUS_OK);
    if (end) break;
    const tempo_msg_header *h = &rec.header;
    if (rec.direction != TEMPO_AUDIT_UP || (h->op != TEMPO_OP_FORWARD && h->op != TEMPO_OP_BACKWARD)) continue;
    bool known = false;
    for (int i = 0; i < nw && !known; i++) known = same_shape(&want[i], h);
    if (!known)
      fail_msg("%s: a request of shape %u x (%u, %u, %u) the policy keeps from the workers", what, h->batch, h->m,
               h->n, h->p);
    if (h->op == TEMPO_OP_FORWARD && h->lo == 0) {
      if (fwd >= nw || !same_shape(&want[fwd], h)) fail_msg("%s: forward product %d out of order", what, fwd);
      fwd++;
    }
    const tempo_mm_shape sh = {.batch = (int)h->batch, .m = (int)h->m, .n = (int)h->n, .p = (int)h->p};
    if (h->op == TEMPO_OP_FORWARD && spatial_shape(&sh) && !same_shape(stem, h) && (h->flags & TEMPO_MSG_F_X_INLINE)) {
      const size_t x = (size_t)(h->hi - h->lo) * h->n;
      for (size_t i = 0; i < x; i++) {
        float v;
        memcpy(&v, rec.payload + 4 * i, 4);
        neg += v < 0, tot++;
      }
    }
  }
  tempo_audit_close(rd);
  if (fwd != nw) fail_msg("%s: %d forward products in the trail, %d expected", what, fwd, nw);
  return tot ? (double)neg / (double)tot : -1;
}

/* A 3x3 convolution's product (the lowered input has 9 taps of the layer's channels): the
 * spatial class of these nets (their 1x1 and linear products have n not a multiple of 9). */
static bool spatial_shape(const tempo_mm_shape *s) { return s->batch == 1 && s->n % 9 == 0; }

static void test_policies_trail_and_values(void **state) {
  (void)state;
  static const net nets[] = {{"mlp", 1, 28}, {"resnet-test", 3, 9}, {"vit-test", 3, 16}};
  char dir[] = "/tmp/test_protect.XXXXXX";
  assert_non_null(mkdtemp(dir));
  for (size_t ni = 0; ni < sizeof nets / sizeof nets[0]; ni++) {
    const net *n = &nets[ni];
    step_out ref;
    step(n, TEMPO_MODE_LOCAL, TEMPO_PROTECT_DEFAULT, NULL, &ref);
    assert_true(ref.nshapes >= 3);
    for (int p = TEMPO_PROTECT_NONE; p <= TEMPO_PROTECT_ALL; p++) {
      char what[96];
      snprintf(what, sizeof what, "%s --protect %s", n->model, tempo_protect_name((tempo_protect)p));
      step_out o;
      step(n, TEMPO_MODE_TEMPO, (tempo_protect)p, dir, &o);
      assert_int_equal(o.nshapes, ref.nshapes);
      close_to(o.logits, ref.logits, 40, 2e-5, what);
      close_to(o.grad, ref.grad, ref.ngrad, 2e-4, what);
      /* what the workers may see: the first product reads the raw input, the last is the head */
      tempo_mm_shape want[MAXP];
      int nw = 0;
      for (int i = 0; i < o.nshapes; i++) {
        const bool end = i == 0 || i == o.nshapes - 1;
        if (p == TEMPO_PROTECT_NONE || !end) want[nw++] = o.shapes[i]; /* the rest: mixed, or as before */
      }
      const double neg = check_trail(dir, want, nw, &o.shapes[0], what); /* the stem reads raw data */
      /* resnet-test: every 3x3 conv but the stem reads a ReLU output */
      if (!strcmp(n->model, "resnet-test")) {
        const bool mixed = p >= TEMPO_PROTECT_SPATIAL;
        if (mixed ? !(neg > 0.3) : neg != 0) fail_msg("%s: %.3f of the spatial X' entries negative", what, neg);
      }
      free(o.logits), free(o.grad);
    }
    free(ref.logits), free(ref.grad);
  }
  char path[600];
  snprintf(path, sizeof path, "%s/%s", dir, TEMPO_AUDIT_FILE);
  unlink(path);
  rmdir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_route_table),
      cmocka_unit_test(test_policies_trail_and_values),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
