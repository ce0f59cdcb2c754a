/* test_util.h - helpers shared by the test programs (header-only; include after cmocka.h):
 * a per-program temporary folder, and reading the per-step losses of a run's metrics. */
#ifndef TEMPO_TESTS_UTIL_H
#define TEMPO_TESTS_UTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tempo/layers.h"
#include "tempo/matmul.h"
#include "tempo/model.h"
#include "tempo/optim.h"
#include "tempo/rng.h"
#include "tempo/train.h"

/* Fills a[0..n) with standard normal draws. */
static inline void test_randn(float *a, size_t n, tempo_rng *r) {
  for (size_t i = 0; i < n; i++) a[i] = (float)tempo_rng_normal(r);
}

/* A matmul context in training mode (asserts it is created); audit_dir may be NULL. */
static inline tempo_mm *test_make_mm(tempo_mode mode, int workers, uint64_t seed, const char *audit_dir) {
  tempo_mm_config cfg;
  tempo_mm_config_default(&cfg);
  cfg.mode = mode;
  cfg.workers = workers;
  cfg.seed = seed;
  cfg.audit_dir = audit_dir;
  tempo_mm *mm;
  assert_int_equal(tempo_mm_create(&cfg, &mm), TEMPO_STATUS_OK);
  tempo_mm_set_training(mm, true);
  return mm;
}

/* A short, quiet local-mode run: 1 thread, batch 32, every step logged, no progress bar, no
 * test evaluation at the end (no_eval: set it false to get one). */
static inline void test_train_cfg(tempo_train_config *c, const char *out, long max_steps, uint64_t seed) {
  tempo_train_config_default(c);
  c->engine.mode = TEMPO_MODE_LOCAL;
  c->engine.threads = 1;
  c->out_dir = out;
  c->max_steps = max_steps;
  c->log_every = 1;
  c->batch_size = 32;
  c->quiet = true;
  c->progress = 0;
  c->no_eval = true;
  c->seed = seed;
}

/* The program's temporary folder, made by test_tmpdir_setup and removed by test_tmpdir_teardown
 * (use them as cmocka group setup/teardown through the wrappers below). */
static char tmpdir[64];

static inline int test_tmpdir_make(const char *prefix) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/tempo-test-%s-XXXXXX", prefix);
  return mkdtemp(tmpdir) ? 0 : -1;
}

static inline int test_tmpdir_remove(void) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
  return system(cmd) == 0 ? 0 : -1;
}

/* Defines group_setup/group_teardown that make and remove tmpdir with this prefix. */
#define TEST_TMPDIR_GROUP(prefix)                                                                                  \
  static int group_setup(void **state) {                                                                          \
    (void)state;                                                                                                  \
    return test_tmpdir_make(prefix);                                                                              \
  }                                                                                                               \
  static int group_teardown(void **state) {                                                                       \
    (void)state;                                                                                                  \
    return test_tmpdir_remove();                                                                                  \
  }

/* Losses of the step lines of metrics.jsonl text: losses[step - 1] for steps 1..cap.
 * Returns the number of step lines read. text is modified (tokenised). */
static inline int test_parse_losses(char *text, double *losses, int cap) {
  int n = 0;
  for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
    long step;
    double loss;
    if (sscanf(line, "{\"step\":%ld,\"epoch\":%*d,\"loss\":%lf", &step, &loss) == 2 && step >= 1 && step <= cap) {
      losses[step - 1] = loss;
      n++;
    }
  }
  return n;
}

/* The same from DIR/metrics.jsonl; -1 when the file cannot be read. */
static inline int test_read_losses(const char *dir, double *losses, int cap) {
  char path[256];
  snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  rewind(f);
  char *text = malloc((size_t)len + 1);
  size_t got = text ? fread(text, 1, (size_t)len, f) : 0;
  fclose(f);
  if (!text) return -1;
  text[got] = '\0';
  int n = test_parse_losses(text, losses, cap);
  free(text);
  return n;
}

/* Fails unless max_i |got_i - want_i| <= rel * max_i |want_i| + 1e-6 (golden comparisons:
 * float32 against PyTorch with other summation orders). */
static inline void assert_close(const char *what, const float *got, const float *want, size_t n, double rel) {
  double mx = 0, err = 0;
  for (size_t i = 0; i < n; i++) {
    mx = fmax(mx, fabs(want[i]));
    err = fmax(err, fabs((double)got[i] - want[i]));
  }
  if (!(err <= rel * mx + 1e-6)) fail_msg("%s: max error %g vs max |value| %g", what, err, mx);
}

/* The golden fixtures' optimizer run: 5 steps of PyTorch's SGD (lr 0.1, momentum 0.9, no weight
 * decay, constant rate) on one batch from the model's current weights; fails unless every step's
 * loss is within tol * want + 1e-6 of PyTorch's. logits and dlogits hold (batch, classes). */
static inline void golden_sgd_steps(const char *what, tempo_model *m, const float *x, const int *labels, int batch,
                                    int classes, const float *losses_want, double tol, float *logits,
                                    float *dlogits) {
  tempo_optim_config oc;
  tempo_optim_config_default(&oc, TEMPO_OPTIM_SGD);
  oc.lr = 0.1f;
  oc.momentum = 0.9f;
  oc.weight_decay = 0.0f;
  oc.schedule = TEMPO_SCHED_CONSTANT;
  tempo_optim opt;
  assert_int_equal(tempo_optim_init(&opt, &oc, &m->params), TEMPO_STATUS_OK);
  for (int s = 0; s < 5; s++) {
    tempo_params_zero_grad(&m->params);
    assert_int_equal(m->ops->forward(m, x, batch, logits), TEMPO_STATUS_OK);
    const double loss = tempo_softmax_xent(logits, labels, batch, classes, dlogits, NULL);
    if (!(fabs(loss - losses_want[s]) <= tol * losses_want[s] + 1e-6))
      fail_msg("%s SGD step %d: loss %.7f, PyTorch %.7f", what, s, loss, losses_want[s]);
    assert_int_equal(m->ops->backward(m, dlogits, batch), TEMPO_STATUS_OK);
    assert_int_equal(tempo_optim_step(&opt, &m->params), TEMPO_STATUS_OK);
    tempo_mm_step_end(m->mm);
  }
  tempo_optim_free(&opt);
}

#endif
