/* test_alloc_fail.c - allocation-failure injection, SQLite style, through the master's offload
 * path. tests/alloc_hook.c (linked with -Wl,--wrap: this test program only) counts the
 * allocations of the master thread; each scenario runs once to count them (C), then again for
 * N = 1, 2, ... with the N-th allocation failing, until a run sees no injected failure. Every
 * run must
 *   - end with a clean error (a status and a non-empty message), or succeed with the results of
 *     the run without failures (a failure absorbed by a fall-back must not change them);
 *   - leak nothing: every block allocated during the run (master and worker threads) is freed
 *     once the run has freed what it made (on a leak the run is repeated with backtraces, and
 *     the allocation's callers are printed: addr2line -e build/tests/test_alloc_fail OFFSET);
 *   - not crash or abort (a handler names the scenario and N before the signal ends the test);
 *   - leave nothing behind for the next run, which starts from scratch in the same process.
 * Scenarios: the engine alone in tempo mode (2 in-process workers: a row-split product with its
 * relay of W', a batched product, a w_trans product, both backward products, two steps; then
 * 3 workers with the dW' reduction chain), the engine in shield mode (4 workers), one training step of the mlp and of
 * vit-test through a tempo-mode engine (model, optimizer, loss, step end), and tempo_train_run
 * (tempo mode, 2 steps, evaluation, checkpoint and model files) on a small dataset written here,
 * and tempo_eval_checkpoint of the model file it wrote.
 * N is sampled every 1 up to ALLOC_FAIL_DENSE (every call site of a short run is hit) and with a
 * stride beyond; TEMPO_ALLOC_FAIL_ALL=1 takes every N. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc_hook.h"
#include "tempo/common.h"
#include "tempo/layers.h"
#include "tempo/matmul.h"
#include "tempo/model.h"
#include "tempo/optim.h"
#include "tempo/rng.h"
#include "tempo/train.h"
#include "test_util.h"

TEST_TMPDIR_GROUP("allocfail")

#define ALLOC_FAIL_DENSE 3000 /* every N up to here, then a stride giving ~300 more runs */
#define FP_MAX 64             /* fingerprint values per run */

/* ---- crash reporting: which scenario and N were running when a signal came ---- */

static const char *cur_name = "";
static long cur_n;
static int every_thread; /* the scenario's failures hit the in-process workers' allocations too */
static uint64_t worker_timeouts; /* every_thread: the replies the engine waited out (tempo_mm_stats) */
static double engine_timeout; /* > 0: the engine's reply timeout (s) */

static void on_crash(int sig) {
  char site[160], msg[400];
  alloc_hook_describe(alloc_hook_injected_site(), site, sizeof site);
  const int len = snprintf(msg, sizeof msg,
                           "\nalloc-fail: signal %d in scenario '%s' with allocation %ld failing (%s, failed at %s)\n",
                           sig, cur_name, cur_n, alloc_hook_injected() ? "injected" : "not yet injected", site);
  if (len > 0) (void)!write(STDERR_FILENO, msg, (size_t)len);
  signal(sig, SIG_DFL);
  raise(sig);
}

static void catch_crashes(void) {
  const int sigs[] = {SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL};
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) signal(sigs[i], on_crash);
}

/* ---- scenarios: each makes everything it uses and frees it all, returns its status and a
 * fingerprint of its results (fp[0..*nfp)) ---- */

typedef tempo_status (*scenario_fn)(double *fp, int *nfp);

/* Folds a[0..n) into two fingerprint values (sum and sum of squares, in double). */
static void fold(double *fp, int *nfp, const float *a, size_t n) {
  double s = 0, q = 0;
  for (size_t i = 0; i < n; i++) s += a[i], q += (double)a[i] * a[i];
  if (*nfp + 2 <= FP_MAX) fp[(*nfp)++] = s, fp[(*nfp)++] = q;
}

#define ENGINE_SHAPES 3
static const tempo_mm_shape engine_shapes[ENGINE_SHAPES] = {
    {1, 64, 32, 16, false}, /* a row split: 65536 flops, 2 workers (relay of W', dW' chain) */
    {3, 7, 13, 5, false},   /* batched instances */
    {1, 48, 24, 20, true},  /* stored (p, n) weights */
};
/* Operands made once, outside the counted runs (the test's own buffers). */
static float *eX[ENGINE_SHAPES], *eW[ENGINE_SHAPES], *edY[ENGINE_SHAPES];
static float *eY[ENGINE_SHAPES], *edX[ENGINE_SHAPES], *edW[ENGINE_SHAPES];

static size_t sz_x(const tempo_mm_shape *s) { return (size_t)s->batch * s->m * s->n; }
static size_t sz_w(const tempo_mm_shape *s) { return (size_t)s->batch * s->n * s->p; }
static size_t sz_y(const tempo_mm_shape *s) { return (size_t)s->batch * s->m * s->p; }

static void engine_operands(void) {
  tempo_rng r;
  tempo_rng_seed(&r, 77, 0);
  for (int i = 0; i < ENGINE_SHAPES; i++) {
    const tempo_mm_shape *s = &engine_shapes[i];
    eX[i] = malloc(sz_x(s) * 4), eW[i] = malloc(sz_w(s) * 4), edY[i] = malloc(sz_y(s) * 4);
    eY[i] = malloc(sz_y(s) * 4), edX[i] = malloc(sz_x(s) * 4), edW[i] = malloc(sz_w(s) * 4);
    assert_true(eX[i] && eW[i] && edY[i] && eY[i] && edX[i] && edW[i]);
    test_randn(eX[i], sz_x(s), &r), test_randn(eW[i], sz_w(s), &r), test_randn(edY[i], sz_y(s), &r);
  }
}

static tempo_status engine_run(tempo_mode mode, int workers, int steps, double *fp, int *nfp) {
  tempo_mm_config cfg;
  tempo_mm_config_default(&cfg);
  cfg.mode = mode;
  cfg.workers = workers;
  cfg.seed = 4242;
  tempo_mm *mm = NULL;
  tempo_status st = tempo_mm_create(&cfg, &mm);
  if (st) return st;
  if (engine_timeout > 0) tempo_mm_set_timeout(mm, engine_timeout);
  tempo_mm_set_training(mm, true);
  tempo_mm_site sites[ENGINE_SHAPES] = {{0}};
  for (int step = 0; step < steps && !st; step++) {
    for (int i = 0; i < ENGINE_SHAPES && !st; i++) {
      const tempo_mm_shape *s = &engine_shapes[i];
      st = tempo_mm_forward(mm, &sites[i], s, eX[i], eW[i], eY[i]);
      if (!st) st = tempo_mm_backward(mm, &sites[i], s, eX[i], eW[i], edY[i], edX[i], edW[i], 0);
      if (!st && step == steps - 1)
        fold(fp, nfp, eY[i], sz_y(s)), fold(fp, nfp, edX[i], sz_x(s)), fold(fp, nfp, edW[i], sz_w(s));
    }
    if (!st) tempo_mm_step_end(mm);
  }
  if (every_thread) {
    tempo_mm_stats rs;
    tempo_mm_stats_run(mm, &rs);
    worker_timeouts += rs.timeouts;
  }
  tempo_mm_free(mm);
  return st;
}

static tempo_status scen_tempo(double *fp, int *nfp) { return engine_run(TEMPO_MODE_TEMPO, 2, 2, fp, nfp); }
/* the same with the in-process dW' reduction chain (TEMPO_INPROC_REDUCE=1, set outside the runs) */
static tempo_status scen_chain(double *fp, int *nfp) { return engine_run(TEMPO_MODE_TEMPO, 3, 2, fp, nfp); }
static tempo_status scen_shield(double *fp, int *nfp) { return engine_run(TEMPO_MODE_SHIELD, 4, 1, fp, nfp); }

/* One training step (zero grads, forward, loss, backward, SGD, step end) of a model on a
 * fixed batch, through a tempo-mode engine with 2 workers; then a forward in eval mode. */
#define STEP_BATCH 8
static float step_x[STEP_BATCH * 64];
static int step_y[STEP_BATCH];

static tempo_status model_step(const char *name, double *fp, int *nfp) {
  tempo_mm_config mc;
  tempo_mm_config_default(&mc);
  mc.seed = 99;
  tempo_mm *mm = NULL;
  tempo_model *m = NULL;
  tempo_optim opt;
  memset(&opt, 0, sizeof opt);
  float *logits = NULL, *dlogits = NULL;
  tempo_status st = tempo_mm_create(&mc, &mm);
  if (st) return st;
  tempo_mm_set_training(mm, true);
  tempo_model_config cfg = {.in_c = 1, .in_h = 8, .in_w = 8, .num_classes = 10, .max_batch = STEP_BATCH};
  snprintf(cfg.name, sizeof cfg.name, "%s", name);
  if ((st = tempo_model_create(&cfg, mm, 5, &m))) goto out;
  tempo_optim_config oc;
  tempo_optim_config_default(&oc, TEMPO_OPTIM_SGD);
  oc.schedule = TEMPO_SCHED_CONSTANT;
  if ((st = tempo_optim_init(&opt, &oc, &m->params))) goto out;
  logits = tempo_alloc_floats(STEP_BATCH * 10);
  dlogits = tempo_alloc_floats(STEP_BATCH * 10);
  if (!logits || !dlogits) {
    st = tempo_set_error(TEMPO_STATUS_NO_MEMORY, "test: out of memory for the logits");
    goto out;
  }
  m->training = true;
  tempo_params_zero_grad(&m->params);
  if ((st = m->ops->forward(m, step_x, STEP_BATCH, logits))) goto out;
  const double loss = tempo_softmax_xent(logits, step_y, STEP_BATCH, 10, dlogits, NULL);
  if ((st = m->ops->backward(m, dlogits, STEP_BATCH))) goto out;
  if ((st = tempo_optim_step(&opt, &m->params))) goto out;
  tempo_mm_step_end(mm);
  m->training = false;
  tempo_mm_set_training(mm, false);
  if ((st = m->ops->forward(m, step_x, STEP_BATCH, logits))) goto out;
  fp[(*nfp)++] = loss;
  fold(fp, nfp, logits, STEP_BATCH * 10);
  fold(fp, nfp, m->params.data, m->params.count);
out:
  tempo_free_floats(logits);
  tempo_free_floats(dlogits);
  tempo_optim_free(&opt);
  tempo_model_free(m);
  tempo_mm_free(mm);
  return st;
}

static tempo_status scen_mlp(double *fp, int *nfp) { return model_step("mlp", fp, nfp); }
static tempo_status scen_vit(double *fp, int *nfp) { return model_step("vit-test", fp, nfp); }

/* tempo_train_run: mlp, tempo mode, 2 workers, 2 steps of 16, the test-set evaluation, the
 * checkpoint and model files, on a 48-image Fashion-MNIST-shaped dataset (uncompressed IDX). */
static char data_dir[128], out_dir[128];

static void put_be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

static void write_idx(const char *split, uint32_t n) {
  char path[256];
  uint8_t hdr[16];
  snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte", data_dir, split);
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  put_be32(hdr, 0x803), put_be32(hdr + 4, n), put_be32(hdr + 8, 28), put_be32(hdr + 12, 28);
  assert_int_equal(fwrite(hdr, 1, 16, f), 16);
  for (uint32_t i = 0; i < n * 784; i++) fputc((int)((i * 37 + i / 784 * 11) & 255), f);
  assert_int_equal(fclose(f), 0);
  snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte", data_dir, split);
  assert_non_null(f = fopen(path, "wb"));
  put_be32(hdr, 0x801), put_be32(hdr + 4, n);
  assert_int_equal(fwrite(hdr, 1, 8, f), 8);
  for (uint32_t i = 0; i < n; i++) fputc((int)((i * 7) % 10), f);
  assert_int_equal(fclose(f), 0);
}

static tempo_status scen_train(double *fp, int *nfp) {
  tempo_train_config c;
  test_train_cfg(&c, out_dir, 2, 3);
  c.engine.mode = TEMPO_MODE_TEMPO;
  c.engine.workers = 2;
  c.engine.seed = 11;
  c.batch_size = 16;
  c.data_dir = data_dir;
  c.no_eval = false;
  c.checkpoint_minutes = 0;
  tempo_train_result res;
  const tempo_status st = tempo_train_run(&c, &res);
  if (!st) fp[(*nfp)++] = res.final_loss, fp[(*nfp)++] = res.test_acc, fp[(*nfp)++] = res.test_loss;
  return st;
}

/* tempo_eval_checkpoint of the model file a train-run wrote, through a tempo-mode engine. */
static char model_path[160];

static tempo_status scen_eval(double *fp, int *nfp) {
  tempo_mm_config mc;
  tempo_mm_config_default(&mc);
  mc.seed = 12;
  double acc = 0, loss = 0;
  const tempo_status st = tempo_eval_checkpoint(model_path, data_dir, &mc, 16, &acc, &loss);
  if (!st) fp[(*nfp)++] = acc, fp[(*nfp)++] = loss;
  return st;
}

static void clean_out_dir(void) {
  char cmd[192];
  snprintf(cmd, sizeof cmd, "rm -rf %s", out_dir);
  assert_int_equal(system(cmd), 0);
}

/* ---- the driver ---- */

/* "function file:line" of a code address in this program (addr2line), else alloc_hook_describe's. */
static void symbolize(const void *site, char *buf, size_t len) {
  alloc_hook_describe(site ? (const char *)site - 1 : NULL, buf, len); /* -1: the call, not the return */
  const char *plus = strstr(buf, "test_alloc_fail+0x");
  if (!plus) return;
  char cmd[256], fn[128] = "", line[160] = "";
  snprintf(cmd, sizeof cmd, "addr2line -f -s -e /proc/%d/exe %.*s 2>/dev/null", (int)getpid(),
           (int)strcspn(plus + 16, " "), plus + 16);
  FILE *p = popen(cmd, "r");
  if (!p) return;
  if (fgets(fn, sizeof fn, p) && fgets(line, sizeof line, p) && line[0] != '?') {
    fn[strcspn(fn, "\n")] = line[strcspn(line, "\n")] = '\0';
    snprintf(buf, len, "%s %s", fn, line);
  }
  pclose(p);
}

typedef struct {
  long runs, errors, absorbed; /* runs with a failure injected; of them, clean errors; successes */
  long statuses[16];           /* clean errors per -status */
  void *sites[1024];           /* the distinct call sites that failed */
  int nsites;
} tally;

/* One run with allocation n failing (0: none). Returns whether a failure was injected. */
static int run_once(const char *name, scenario_fn fn, long n, const double *ref, int nref, tally *t) {
  double fp[FP_MAX];
  int nfp = 0;
  cur_name = name, cur_n = n;
  if (fn == scen_train) clean_out_dir();
  tempo_clear_error();
  alloc_hook_arm_threads(n, every_thread);
  const tempo_status st = fn(fp, &nfp);
  alloc_hook_disarm();
  const int injected = alloc_hook_injected();
  char site[160];
  alloc_hook_describe(alloc_hook_injected_site(), site, sizeof site);
  if (n > 0 && !injected && st) fail_msg("%s: run %ld failed with no failure injected: %s", name, n, tempo_errmsg());
  if (st) {
    if (!tempo_errmsg()[0]) fail_msg("%s: allocation %ld (%s) failed: status %d with no message", name, n, site, st);
    t->errors++;
    if (-st >= 0 && -st < 16) t->statuses[-st]++;
  } else if (ref) {
    /* a run that succeeded (an absorbed failure, or none) has the reference results */
    if (nfp != nref) fail_msg("%s: allocation %ld (%s) absorbed, but %d results instead of %d", name, n, site, nfp, nref);
    for (int i = 0; i < nfp; i++)
      if (fabs(fp[i] - ref[i]) > 1e-6 * fmax(1.0, fabs(ref[i])))
        fail_msg("%s: allocation %ld (%s) absorbed, but result %d is %.9g instead of %.9g", name, n, site, i, fp[i],
                 ref[i]);
    if (injected) t->absorbed++;
  }
  if (injected) {
    t->runs++;
    int k = 0;
    while (k < t->nsites && t->sites[k] != alloc_hook_injected_site()) k++;
    if (k == t->nsites && k < 1024) t->sites[t->nsites++] = alloc_hook_injected_site();
  }
  void *sites[ALLOC_HOOK_SITES];
  size_t size = 0;
  const long leaked = alloc_hook_live(sites, &size);
  if (leaked) {
    /* repeat the run with backtraces to name the leaked block's callers */
    alloc_hook_forget();
    alloc_hook_backtraces(1);
    if (fn == scen_train) clean_out_dir();
    alloc_hook_arm_threads(n, every_thread);
    nfp = 0;
    (void)fn(fp, &nfp);
    alloc_hook_disarm();
    alloc_hook_backtraces(0);
    alloc_hook_live(sites, &size);
    char where[ALLOC_HOOK_SITES][160];
    for (int k = 0; k < ALLOC_HOOK_SITES; k++) symbolize(sites[k], where[k], sizeof where[k]);
    symbolize(alloc_hook_injected_site(), site, sizeof site);
    fail_msg("%s: allocation %ld failing (%s, status %d: %s) leaks %ld blocks; one of %zu bytes allocated from\n"
             "  %s\n  %s\n  %s\n  %s\n  %s\n  %s",
             name, n, site, st, tempo_errmsg(), leaked, size, where[0], where[1], where[2], where[3], where[4],
             where[5]);
  }
  return injected;
}

/* all_threads: fail the allocations of every thread; timeout: the engine's reply timeout (0 = default). */
static void drive(const char *name, scenario_fn fn, int all_threads, double timeout) {
  every_thread = all_threads; /* set for each test: a failed one longjmps out of drive */
  engine_timeout = timeout;
  catch_crashes();
  double ref[FP_MAX];
  int nref = 0;
  /* warm-up (process-wide lazy state: thread pools, BLAS), then the counting run */
  if (fn == scen_train) clean_out_dir();
  tempo_status st = fn(ref, &nref);
  if (st) fail_msg("%s: the run without failures failed: %s", name, tempo_errmsg());
  nref = 0;
  alloc_hook_forget();
  alloc_hook_arm_threads(0, every_thread);
  if (fn == scen_train) clean_out_dir();
  st = fn(ref, &nref);
  alloc_hook_disarm();
  const long total = alloc_hook_count();
  if (st) fail_msg("%s: the counting run failed: %s", name, tempo_errmsg());
  void *sites[ALLOC_HOOK_SITES];
  if (alloc_hook_live(sites, NULL)) fail_msg("%s: the run without failures leaks", name);
  assert_true(total > 0);

  const int all = getenv("TEMPO_ALLOC_FAIL_ALL") && atoi(getenv("TEMPO_ALLOC_FAIL_ALL"));
  const long stride = all || total <= ALLOC_FAIL_DENSE ? 1 : (total - ALLOC_FAIL_DENSE) / 300 + 1;
  tally t = {0};
  const double t0 = tempo_now();
  long n = 1;
  for (;; n += n < ALLOC_FAIL_DENSE ? 1 : stride)
    if (!run_once(name, fn, n, ref, nref, &t) && n > total) break;
  print_message("%s: %ld %s allocations per run; %ld runs with one failing (N = 1..%ld, stride %ld past %d) "
                "at %d distinct call sites, %ld clean errors (out of memory %ld, worker %ld, I/O %ld, other %ld), %ld absorbed with the "
                "reference results, no leak, no crash; %.1f s\n",
                name, total, every_thread ? "master and worker" : "master", t.runs, n, stride, ALLOC_FAIL_DENSE, t.nsites, t.errors, t.statuses[2], t.statuses[7],
                t.statuses[3], t.errors - t.statuses[2] - t.statuses[7] - t.statuses[3], t.absorbed,
                tempo_now() - t0);
  /* the N up to the count failed; the count varies a little with the timing of the replies
   * (the chain's, and every thread's), so a run may end before the counting run's N */
  const long dense = total < ALLOC_FAIL_DENSE ? total : ALLOC_FAIL_DENSE;
  assert_true(t.runs >= dense * 9 / 10);
  every_thread = 0;
  engine_timeout = 0;
  assert_true(t.errors > 0);
}

static void test_engine_tempo(void **state) {
  (void)state;
  drive("engine-tempo", scen_tempo, 0, 0);
}

static void test_engine_chain(void **state) {
  (void)state;
  assert_int_equal(setenv("TEMPO_INPROC_REDUCE", "1", 1), 0);
  drive("engine-tempo-chain", scen_chain, 0, 0);
  assert_int_equal(unsetenv("TEMPO_INPROC_REDUCE"), 0);
}

/* The worker threads' allocations fail too: a worker that cannot allocate answers an error,
 * or, when not even that can be encoded (or no reply node can be had), an empty reply
 * (transport_inproc.c), which the master fails at once as malformed: no run waits for a reply
 * until the engine's timeout (30 s here, so a slow machine does not time out either), and the
 * block is recomputed on the other worker; or the product fails cleanly. */
static void test_engine_workers(void **state) {
  (void)state;
  worker_timeouts = 0;
  drive("engine-tempo-all-threads", scen_tempo, 1, 30.0);
  if (worker_timeouts) fail_msg("engine-tempo-all-threads: the engine waited out %llu replies",
                                (unsigned long long)worker_timeouts);
  /* and along the dW' reduction chain, whose members wait for their predecessor's partial */
  assert_int_equal(setenv("TEMPO_INPROC_REDUCE", "1", 1), 0);
  drive("engine-tempo-chain-all-threads", scen_chain, 1, 30.0);
  assert_int_equal(unsetenv("TEMPO_INPROC_REDUCE"), 0);
  if (worker_timeouts) fail_msg("engine-tempo-chain-all-threads: the engine waited out %llu replies",
                                (unsigned long long)worker_timeouts);
}

static void test_engine_shield(void **state) {
  (void)state;
  drive("engine-shield", scen_shield, 0, 0);
}

static void test_step_mlp(void **state) {
  (void)state;
  drive("step-mlp", scen_mlp, 0, 0);
}

static void test_step_vit(void **state) {
  (void)state;
  drive("step-vit-test", scen_vit, 0, 0);
}

static void test_train_run(void **state) {
  (void)state;
  snprintf(data_dir, sizeof data_dir, "%s/data", tmpdir);
  snprintf(out_dir, sizeof out_dir, "%s/run", tmpdir);
  assert_int_equal(mkdir(data_dir, 0700), 0);
  write_idx("train", 48);
  write_idx("t10k", 32);
  drive("train-run", scen_train, 0, 0);
  char cmd[400];
  snprintf(model_path, sizeof model_path, "%s/model.ckpt", tmpdir);
  snprintf(cmd, sizeof cmd, "cp %s/model.ckpt %s", out_dir, model_path);
  assert_int_equal(system(cmd), 0);
  drive("eval-checkpoint", scen_eval, 0, 0);
}

int main(void) {
  engine_operands();
  tempo_rng r;
  tempo_rng_seed(&r, 3, 0);
  test_randn(step_x, sizeof step_x / sizeof step_x[0], &r);
  for (int i = 0; i < STEP_BATCH; i++) step_y[i] = i % 10;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_engine_tempo), cmocka_unit_test(test_engine_chain),
      cmocka_unit_test(test_engine_workers), cmocka_unit_test(test_engine_shield), cmocka_unit_test(test_step_mlp),
      cmocka_unit_test(test_step_vit),     cmocka_unit_test(test_train_run),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
