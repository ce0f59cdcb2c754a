/* test_util.h - helpers shared by the test programs (header-only; include after cmocka.h):
 * a per-program temporary folder, and reading the per-step losses of a run's metrics. */
#ifndef TEMPO_TESTS_UTIL_H
#define TEMPO_TESTS_UTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tempo/layers.h"
#include "tempo/model.h"
#include "tempo/optim.h"

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
