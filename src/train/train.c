/* train.c - the training loop of the trusted master (see train.h). */
#include "tempo/train.h"

#include <errno.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tempo/checkpoint.h"
#include "tempo/common.h"
#include "tempo/fileio.h"
#include "tempo/layers.h"
#include "tempo/model.h"
#include "tempo/netfile.h"
#include "tempo/obf.h"
#include "tempo/privacy.h"
#include "tempo/safetensors.h"
#include "tempo/seal.h"
#include "tempo/weights.h"
#include "train/run_data.h"
#include "train/run_files.h"

void tempo_train_config_default(tempo_train_config *c) {
  memset(c, 0, sizeof *c);
  c->model[0] = '\0'; /* "" = mlp, or the checkpoint's model when resuming */
  c->dataset = TEMPO_DATASET_FASHION_MNIST;
  c->epochs = 0; /* 0 = 1, or the checkpoint's when resuming */
  c->batch_size = 64;
  c->seed = 1;
  tempo_optim_config_default(&c->optim, TEMPO_OPTIM_SGD);
  c->log_every = 50;
  c->checkpoint_minutes = 10.0;
  c->progress = -1;
  tempo_mm_config_default(&c->engine);
}

/* Everything one run holds; released by run_free in reverse order. */
#define TEMPO_MAX_REPORT_PRODUCTS 512

typedef struct {
  tempo_mm *mm;
  tempo_model *model;
  tempo_dataset train, test;
  tempo_batcher batcher;
  tempo_optim opt;
  float *x, *logits, *dlogits; /* (B, c, h, w), (B, C), (B, C) */
  int *y;                      /* (B) */
  FILE *metrics;
  char *mbuf;   /* sealed runs: the metrics file's text, written through metrics (open_memstream) */
  size_t mlen;
  char path[4096];
  char ckpt_path[4096]; /* the last checkpoint.ckpt written */
  double t_ckpt;        /* tempo_now() when it was written (or training started) */
  long ckpt_step;       /* its step (-1: none yet) */
  tempo_mm_shape shapes[TEMPO_MAX_REPORT_PRODUCTS]; /* --privacy-report: one step's forward products */
  int nshapes;
} run_state;

static void run_free(run_state *r) {
  if (r->metrics) fclose(r->metrics);
  if (r->mbuf) sodium_memzero(r->mbuf, r->mlen);
  free(r->mbuf);
  tempo_free_floats(r->x);
  tempo_free_floats(r->logits);
  tempo_free_floats(r->dlogits);
  free(r->y);
  tempo_optim_free(&r->opt);
  tempo_batcher_free(&r->batcher);
  tempo_dataset_free(&r->test);
  tempo_dataset_free(&r->train);
  tempo_model_free(r->model);
  tempo_mm_free(r->mm);
}

/* The privacy metric (privacy.h) of every forward product of one training step: the
 * key-space entropy per instance and in total. A search-space size, not a security
 * claim (docs/SECURITY.md has what the attacks recover). */
static void print_privacy_report(const tempo_train_config *c, const tempo_mm_shape *sh, int n) {
  tempo_keyspace ks;
  tempo_keyspace_default(&ks);
  double total = 0.0;
  printf("privacy report (%s mode): key-space entropy H = log2 m! + log2 n! + log2 p! + (m+n+p) h(K), "
         "h(K) = %.2f bits\n", tempo_mode_name(c->engine.mode), tempo_privacy_coef_bits(&ks));
  printf("%4s %8s %6s %6s %6s %14s %14s\n", "#", "batch", "m", "n", "p", "H/instance", "H total");
  for (int i = 0; i < n && i < TEMPO_MAX_REPORT_PRODUCTS; i++) {
    const double h = tempo_privacy_bits(sh[i].m, sh[i].n, sh[i].p, &ks);
    total += h * sh[i].batch;
    printf("%4d %8d %6d %6d %6d %14.4g %14.4g\n", i, sh[i].batch, sh[i].m, sh[i].n, sh[i].p, h, h * sh[i].batch);
  }
  if (n > TEMPO_MAX_REPORT_PRODUCTS) printf("(%d more products not shown)\n", n - TEMPO_MAX_REPORT_PRODUCTS);
  printf("total over the step's forward products: %.4g bits (backward products reuse these keys)\n", total);
  if (c->engine.mode == TEMPO_MODE_LOCAL || c->engine.mode == TEMPO_MODE_PLAIN)
    printf("note: in %s mode nothing is blinded; H applies to tempo and shield modes\n",
           tempo_mode_name(c->engine.mode));
}

/* Progress on stdout: a bar redrawn in place (a terminal) or plain lines, at most every
 * `every` seconds; none when quiet. */
typedef struct {
  bool bar, quiet;
  double every, last; /* seconds between updates; tempo_now() of the last one */
  bool drawn;         /* the bar is on the current line */
} progress;

static void progress_init(progress *pg, const tempo_train_config *c) {
  memset(pg, 0, sizeof *pg);
  pg->quiet = c->quiet;
  pg->bar = c->progress == 1 || (c->progress < 0 && isatty(STDOUT_FILENO));
  pg->every = c->progress_every > 0 ? c->progress_every : pg->bar ? 1.0 : 10.0;
  pg->last = tempo_now();
}

/* Ends the bar's line, if one is drawn. */
static void progress_break(progress *pg) {
  if (pg->drawn && !pg->quiet) printf("\n");
  pg->drawn = false;
}

/* True when an update is due (and notes it as done). */
static bool progress_due(progress *pg) {
  const double now = tempo_now();
  if (pg->quiet || now - pg->last < pg->every) return false;
  pg->last = now;
  return true;
}

static void fmt_duration(char *buf, size_t n, double s);

static tempo_status evaluate(tempo_model *m, tempo_mm *mm, const tempo_dataset *d, int batch, float *x, int *y,
                             float *logits, progress *pg, double *acc, double *loss) {
  tempo_batcher b;
  tempo_status st = tempo_batcher_init(&b, d, batch, 0, false, NULL);
  if (st) return st;
  const bool was_training = m->training;
  m->training = false;
  tempo_mm_set_training(mm, false);
  double sum = 0.0;
  long correct = 0, seen = 0;
  int n;
  const double t0 = tempo_now();
  const size_t in_size = (size_t)d->c * d->h * d->w;
  while ((n = tempo_batcher_next(&b, x, y)) > 0) {
    if (tempo_floats_find_nonfinite(x, (size_t)n * in_size) >= 0) {
      st = tempo_set_error(TEMPO_STATUS_NUMERIC, "an input batch of the test split (image %ld on) holds a non-finite "
                           "value: the dataset (%s) is damaged", seen, tempo_dataset_kind_name(d->kind));
      break;
    }
    if ((st = m->ops->forward(m, x, n, logits))) break;
    int ok;
    sum += tempo_softmax_xent(logits, y, n, m->cfg.num_classes, NULL, &ok) * n;
    correct += ok;
    seen += n;
    if (pg && seen < d->n && progress_due(pg)) {
      char etas[32];
      const double el = tempo_now() - t0;
      fmt_duration(etas, sizeof etas, el / (double)seen * (double)(d->n - seen));
      if (pg->bar) {
        const int width = 24, fill = (int)((double)seen / d->n * width);
        printf("\r[eval] %6ld/%d [%.*s%*s] acc %5.1f%% %7.0f img/s ETA %s ", seen, d->n, fill,
               "========================", width - fill, "", 100.0 * correct / seen, seen / fmax(el, 1e-9), etas);
        pg->drawn = true;
      } else {
        printf("eval %ld/%d images acc %.4f images/s %.0f eta %s\n", seen, d->n, (double)correct / seen,
               seen / fmax(el, 1e-9), etas);
      }
      fflush(stdout);
    }
  }
  if (pg) progress_break(pg);
  tempo_batcher_free(&b);
  m->training = was_training;
  tempo_mm_set_training(mm, was_training);
  if (st) return st;
  *acc = seen ? (double)correct / seen : 0.0;
  *loss = seen ? sum / seen : 0.0;
  return TEMPO_STATUS_OK;
}

static void json_stats(FILE *f, const tempo_mm_stats *s) {
  fprintf(f,
          ",\"products\":%llu,\"encryptions\":%llu,\"decryptions\":%llu,\"naive_encryptions\":%llu,"
          "\"bytes_up\":%llu,\"bytes_down\":%llu,\"naive_bytes_up\":%llu,\"verify_failures\":%llu,"
          "\"recomputed\":%llu,\"evictions\":%llu,\"worker_errors\":%llu,\"timeouts\":%llu,"
          "\"t_blind\":%.6f,\"t_transfer\":%.6f,\"t_compute\":%.6f,"
          "\"t_verify\":%.6f,\"t_unblind\":%.6f,\"t_local\":%.6f,\"t_wait\":%.6f,\"flops\":%llu,"
          "\"master_bytes\":%llu",
          (unsigned long long)s->products, (unsigned long long)s->encryptions, (unsigned long long)s->decryptions,
          (unsigned long long)s->naive_encryptions, (unsigned long long)s->bytes_up,
          (unsigned long long)s->bytes_down, (unsigned long long)s->naive_bytes_up,
          (unsigned long long)s->verify_failures, (unsigned long long)s->recomputed,
          (unsigned long long)s->evictions, (unsigned long long)s->worker_errors,
          (unsigned long long)s->timeouts, s->t_blind, s->t_transfer, s->t_compute, s->t_verify, s->t_unblind,
          s->t_local, s->t_wait, (unsigned long long)s->flops, (unsigned long long)s->master_bytes);
}


/* ,"time":"<UTC ISO 8601 with ms>","elapsed":<seconds since t0> - the end of every metrics record. */
static void json_time(FILE *f, double t0) {
  struct timespec ts;
  struct tm tm;
  char buf[32] = "1970-01-01T00:00:00";
  clock_gettime(CLOCK_REALTIME, &ts);
  if (gmtime_r(&ts.tv_sec, &tm)) strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  fprintf(f, ",\"time\":\"%s.%03ldZ\",\"elapsed\":%.3f", buf, ts.tv_nsec / 1000000, tempo_now() - t0);
}

/* A JSON string (or null for NULL), escaped. */
static void json_str(FILE *f, const char *key, const char *s) {
  fprintf(f, ",\"%s\":", key);
  if (!s) {
    fputs("null", f);
    return;
  }
  fputc('"', f);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
    else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
    else fputc(*p, f);
  }
  fputc('"', f);
}

/* The model of a run or a checkpoint: the network file net_file when given (its input shape
 * and classes, where it declares them, must be the data's), else the built-in cfg->name. */
static tempo_status create_model(const tempo_model_config *cfg, const char *net_file, tempo_mm *mm, uint64_t seed,
                                 tempo_model **out) {
  *out = NULL;
  if (!net_file) return tempo_model_create(cfg, mm, seed, out);
  tempo_net *net = NULL;
  tempo_status st = tempo_net_parse_file(net_file, &net);
  if (st) return st;
  if (strcmp(net->name, cfg->name) != 0)
    st = tempo_set_error(TEMPO_STATUS_MISMATCH, "%s describes network '%s', not '%s' (the checkpoint's)", net_file,
                         net->name, cfg->name);
  else if (net->classes && net->classes != cfg->num_classes)
    st = tempo_set_error(TEMPO_STATUS_MISMATCH, "%s has %d classes but the data has %d", net_file, net->classes,
                         cfg->num_classes);
  else if (net->in_c && (net->in_c != cfg->in_c || net->in_h != cfg->in_h || net->in_w != cfg->in_w))
    st = tempo_set_error(TEMPO_STATUS_MISMATCH, "%s takes %dx%dx%d inputs but the data is %dx%dx%d", net_file,
                         net->in_c, net->in_h, net->in_w, cfg->in_c, cfg->in_h, cfg->in_w);
  if (!st) st = tempo_model_create_net(net, cfg, mm, seed, out);
  tempo_net_free(net);
  return st;
}

/* The first metrics record: the run's whole configuration, as given and as resolved (seeds
 * as given: the key stream's state is never written). */
static void write_config(FILE *f, const tempo_train_config *c, const tempo_model *m, const tempo_dataset *train,
                         const tempo_dataset *test, long planned, int per_epoch, long start_step, double t0) {
  const tempo_optim_config *o = &c->optim;
  const tempo_mm_config *e = &c->engine;
  fputs("{\"type\":\"config\"", f);
  json_time(f, t0);
  json_str(f, "tempo_version", TEMPO_VERSION);
  fprintf(f, ",\"checkpoint_version\":%d", TEMPO_CKPT_VERSION);
  json_str(f, "model", c->model);
  fprintf(f, ",\"parameters\":%zu,\"state_values\":%zu", m->params.count, m->params.state_count);
  json_str(f, "dataset", tempo_dataset_kind_name(c->dataset));
  if (c->dataset == TEMPO_DATASET_NPY) {
    json_str(f, "data_dir", NULL);
    json_str(f, "train_x", c->npy.train_x);
    json_str(f, "train_y", c->npy.train_y);
    json_str(f, "test_x", c->npy.test_x);
    json_str(f, "test_y", c->npy.test_y);
    json_str(f, "layout", train->nhwc ? "nhwc" : "nchw");
    json_str(f, "pixels", train->pixel_type == TEMPO_PIXELS_F32 ? "float32" : "uint8");
    /* the normalisation, exactly (%.9g round-trips a float): what a PyTorch twin must apply */
    for (int k = 0; k < 2; k++) {
      fprintf(f, ",\"%s\":[", k ? "std" : "mean");
      for (int ch = 0; ch < train->c; ch++) fprintf(f, "%s%.9g", ch ? "," : "", k ? train->std[ch] : train->mean[ch]);
      fputc(']', f);
    }
  } else {
    json_str(f, "data_dir", c->data_dir ? c->data_dir : tempo_dataset_default_dir(c->dataset));
  }
  fprintf(f, ",\"input\":[%d,%d,%d],\"classes\":%d,\"train_images\":%d,\"test_images\":%d", train->c, train->h,
          train->w, train->num_classes, train->n, test->n);
  fprintf(f, ",\"epochs\":%d,\"max_steps\":%ld,\"planned_steps\":%ld,\"steps_per_epoch\":%d,\"start_step\":%ld",
          c->epochs, c->max_steps, planned, per_epoch, start_step);
  fprintf(f, ",\"batch_size\":%d,\"seed\":%llu", c->batch_size, (unsigned long long)c->seed);
  json_str(f, "optimizer", tempo_optim_kind_name(o->kind));
  fprintf(f, ",\"lr\":%.9g,\"momentum\":%.9g,\"weight_decay\":%.9g,\"beta1\":%.9g,\"beta2\":%.9g,\"eps\":%.9g",
          o->lr, o->momentum, o->weight_decay, o->beta1, o->beta2, o->eps);
  json_str(f, "schedule", tempo_sched_kind_name(o->schedule));
  fprintf(f, ",\"warmup\":%ld,\"schedule_steps\":%ld,\"augment\":%s,\"dropout\":%.9g", o->warmup_steps,
          o->total_steps, c->augment ? "true" : "false", c->dropout);
  json_str(f, "out", c->out_dir);
  json_str(f, "resume", c->resume);
  json_str(f, "init_from", c->init_from);
  fprintf(f, ",\"log_every\":%d,\"checkpoint_every\":%ld,\"eval\":%s,\"sealed\":%s", c->log_every,
          c->checkpoint_every, c->no_eval ? "false" : "true", c->key ? "true" : "false");
  json_str(f, "mode", tempo_mode_name(e->mode));
  fprintf(f, ",\"workers\":%d", e->mode == TEMPO_MODE_LOCAL ? 0 : e->workers);
  json_str(f, "transport", e->transport ? "mpi" : "in-process");
  json_str(f, "protect", tempo_protect_name(tempo_mm_config_protect(e)));
  json_str(f, "wire", tempo_wire_name(e->wire));
  fprintf(f, ",\"verify_rounds\":%d,\"threads\":%d", e->verify_rounds, e->threads);
  if (e->seed) fprintf(f, ",\"key_seed\":%llu", (unsigned long long)e->seed);
  else fputs(",\"key_seed\":null", f);
  json_str(f, "shield_dtype", e->shield_f32 ? "f32" : "f64");
  fprintf(f, ",\"shield_alpha\":%.9g", e->shield_alpha);
  json_str(f, "audit", e->audit_dir);
  fputs("}\n", f);
}

static void fmt_duration(char *buf, size_t n, double s) {
  if (!(s >= 0) || s > 359999) s = 0;
  long t = (long)(s + 0.5);
  snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
}

static void fill_meta(tempo_ckpt_meta *meta, const tempo_train_config *c, const tempo_model *m, long step, int epoch,
                      int batch_in_epoch) {
  memset(meta, 0, sizeof *meta);
  snprintf(meta->model, sizeof meta->model, "%s", m->cfg.name);
  meta->in_c = m->cfg.in_c;
  meta->in_h = m->cfg.in_h;
  meta->in_w = m->cfg.in_w;
  meta->num_classes = m->cfg.num_classes;
  snprintf(meta->dataset, sizeof meta->dataset, "%s", tempo_dataset_kind_name(c->dataset));
  meta->seed = c->seed;
  meta->step = step;
  meta->epoch = epoch;
  meta->batch_in_epoch = batch_in_epoch;
  meta->batch_size = c->batch_size;
  meta->epochs = c->epochs;
  meta->max_steps = c->max_steps;
  meta->optim = c->optim;
  memcpy(meta->rng, m->rng.s, sizeof meta->rng);
  meta->dropout = c->dropout;
  meta->augment = c->augment;
}

/* Sealed runs: reseals the whole metrics text into metrics.jsonl.sealed (atomically). */
static tempo_status save_sealed_metrics(run_state *r, const tempo_train_config *c) {
  if (!c->key || !r->metrics) return TEMPO_STATUS_OK;
  if (fflush(r->metrics) != 0) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "out of memory for the metrics");
  snprintf(r->path, sizeof r->path, "%s/metrics.jsonl" TEMPO_SEAL_SUFFIX, c->out_dir);
  return tempo_seal_write(r->path, c->key, TEMPO_SEAL_LABEL_METRICS, r->mbuf, r->mlen, 0);
}

_Static_assert(TEMPO_MM_STREAMS_MAX <= TEMPO_CKPT_STREAMS_MAX, "a checkpoint holds the engine's stream state");

/* Writes out_dir/name. checkpoint.ckpt, the resumable one, also holds the engine's random
 * streams (a secret: the meta copy is wiped); model.ckpt, what leaves the master, never. */
static tempo_status save_ckpt(run_state *r, const tempo_train_config *c, const char *name, long step, int epoch,
                              int batch_in_epoch) {
  tempo_ckpt_meta meta;
  fill_meta(&meta, c, r->model, step, epoch, batch_in_epoch);
  const bool resumable = strcmp(name, "checkpoint.ckpt") == 0;
  size_t n = 0;
  tempo_status st = resumable ? tempo_mm_streams_save(r->mm, meta.streams, sizeof meta.streams, &n) : TEMPO_STATUS_OK;
  meta.streams_len = (uint32_t)n;
  snprintf(r->path, sizeof r->path, "%s/%s%s", c->out_dir, name, c->key ? TEMPO_SEAL_SUFFIX : "");
  if (!st) st = tempo_ckpt_save_sealed(r->path, c->key, &meta, &r->model->params, &r->opt);
  sodium_memzero(&meta, sizeof meta);
  if (st) return st;
  if (resumable) {
    snprintf(r->ckpt_path, sizeof r->ckpt_path, "%s", r->path);
    r->t_ckpt = tempo_now();
    r->ckpt_step = step;
  }
  return save_sealed_metrics(r, c);
}

/* Opens the metrics stream: the file itself, or (sealed) a memory stream that starts with the
 * earlier run's decrypted metrics when resuming into the same folder. Resuming cuts the
 * earlier metrics back to the checkpoint's step (the steps after it are trained again). */
static tempo_status open_metrics(run_state *r, const tempo_train_config *c, long resume_step) {
  if (!c->key) {
    snprintf(r->path, sizeof r->path, "%s/metrics.jsonl", c->out_dir);
    tempo_status st = c->resume ? tempo_run_metrics_truncate(r->path, resume_step) : TEMPO_STATUS_OK;
    if (st) return st;
    if (!(r->metrics = fopen(r->path, c->resume ? "a" : "w")))
      return tempo_set_error(TEMPO_STATUS_IO, "cannot write %s: %s", r->path, strerror(errno));
    return TEMPO_STATUS_OK;
  }
  if (!(r->metrics = open_memstream(&r->mbuf, &r->mlen)))
    return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "out of memory for the metrics");
  snprintf(r->path, sizeof r->path, "%s/metrics.jsonl" TEMPO_SEAL_SUFFIX, c->out_dir);
  if (!c->resume || access(r->path, F_OK) != 0) return TEMPO_STATUS_OK;
  uint8_t *old;
  size_t len;
  tempo_status st = tempo_unseal_read(r->path, c->key, TEMPO_SEAL_LABEL_METRICS, (size_t)1 << 30, &old, &len, NULL);
  if (st) return st;
  const size_t keep = tempo_run_metrics_keep((char *)old, len, resume_step);
  if (keep && fwrite(old, 1, keep, r->metrics) != keep)
    st = tempo_set_error(TEMPO_STATUS_NO_MEMORY, "out of memory for the metrics");
  sodium_memzero(old, len);
  free(old);
  return st;
}

/* --init-from: a safetensors file, sealed (label "weights") when the run has a key. */
static tempo_status load_init(tempo_params *p, const char *path, const tempo_owner_key *key) {
  tempo_st_file *f;
  tempo_status st;
  if (key) {
    uint8_t *buf;
    size_t len;
    if ((st = tempo_unseal_read(path, key, TEMPO_SEAL_LABEL_WEIGHTS, (size_t)16 << 30, &buf, &len, NULL))) return st;
    st = tempo_st_parse(buf, len, path, &f);
    sodium_memzero(buf, len);
    free(buf);
  } else {
    st = tempo_st_open(path, &f);
  }
  if (st) return st;
  st = tempo_params_load_st(p, f, true, NULL);
  tempo_st_close(f);
  return st;
}

static bool stop_requested(const tempo_train_config *c) { return c->stop && *c->stop; }

tempo_status tempo_train_run(const tempo_train_config *cfg_in, tempo_train_result *res) {
  tempo_train_config c = *cfg_in;
  const double t_run = tempo_now();
  run_state r;
  memset(&r, 0, sizeof r);
  memset(res, 0, sizeof *res);
  res->test_acc = -1.0;
  if (c.batch_size < 1 || c.batch_size > 65536 || c.epochs < 0 || c.max_steps < 0 || c.log_every < 1)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "batch size must be 1..65536, epochs >= 1, log-every >= 1");

  /* Resuming takes the model, data, seed, batch size and optimizer from the checkpoint. */
  tempo_ckpt_meta meta;
  memset(&meta, 0, sizeof meta);
  tempo_status st;
  if (c.net_file) { /* checked now, built from the file again once the data is loaded */
    if (c.model[0]) return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "pass --model or --net, not both");
    tempo_net *net = NULL;
    if ((st = tempo_net_parse_file(c.net_file, &net))) return st;
    snprintf(c.model, sizeof c.model, "%s", net->name);
    /* .npy labels: the file's class count, unless --classes says it (labels must be below it) */
    if (net->classes && c.dataset == TEMPO_DATASET_NPY && c.npy.num_classes == 0) c.npy.num_classes = net->classes;
    tempo_net_free(net);
  }
  if (c.resume) {
    st = tempo_ckpt_load_sealed(c.resume, c.key, &meta, NULL, NULL);
    sodium_memzero(meta.streams, sizeof meta.streams); /* read again below, with the parameters */
    if (st) return st;
    if (c.model[0] && strcmp(c.model, meta.model) != 0)
      return tempo_set_error(TEMPO_STATUS_MISMATCH,
                             "%s is a checkpoint of model '%s', not '%s': drop --model or pick the right checkpoint",
                             c.resume, meta.model, c.model);
    snprintf(c.model, sizeof c.model, "%s", meta.model);
    if (!tempo_dataset_kind_parse(meta.dataset, &c.dataset))
      return tempo_set_error(TEMPO_STATUS_CORRUPT, "%s names an unknown dataset '%s'", c.resume, meta.dataset);
    c.seed = meta.seed;
    c.batch_size = meta.batch_size;
    c.optim = meta.optim;
    if (!meta.v1) c.augment = meta.augment, c.dropout = meta.dropout;
    if (cfg_in->max_steps == 0) c.max_steps = meta.max_steps;
    if (cfg_in->epochs == 0) c.epochs = meta.epochs;
  }
  if (c.epochs == 0) c.epochs = 1;
  if (!c.model[0]) snprintf(c.model, sizeof c.model, "mlp");
  if (c.resume && (meta.epoch >= c.epochs || (c.max_steps > 0 && meta.step >= c.max_steps))) {
    const bool by_steps = c.max_steps > 0 && meta.step >= c.max_steps;
    printf("tempo: nothing to do: %s is at step %lld (%d of %d epochs done), where its run ends (%s %ld); to "
           "train further pass %s N with N > %lld (a total: it counts from the run's start, not from the "
           "checkpoint)\n", c.resume, (long long)meta.step, meta.epoch, c.epochs, by_steps ? "--max-steps" : "--epochs",
           by_steps ? c.max_steps : (long)c.epochs, by_steps ? "--max-steps" : "--epochs",
           by_steps ? (long long)meta.step : (long long)c.epochs);
    res->nothing_to_do = true;
    res->steps = meta.step;
    return TEMPO_STATUS_OK;
  }

  char default_out[4096];
  if (!c.out_dir) { /* a resumed run continues in its checkpoint's folder */
    if (!c.resume) snprintf(default_out, sizeof default_out, "runs/%s", c.model);
    else if (!tempo_run_dir_of(c.resume, default_out, sizeof default_out))
      return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "%s: the path is too long", c.resume);
    c.out_dir = default_out;
  }
  if ((st = tempo_mkdir_p(c.out_dir))) return st;
  const int stale = tempo_run_clean_stale_tmp(c.out_dir);
  if (stale > 0 && !c.quiet)
    printf("tempo: removed %d temporary file(s) left in %s by a killed run\n", stale, c.out_dir);
  if ((st = tempo_run_load_data(c.dataset, c.data_dir, &c.npy, c.key, c.resume, &r.train, &r.test))) goto out;
  if (c.dataset == TEMPO_DATASET_NPY && !c.npy.test_x && !c.no_eval) {
    c.no_eval = true;
    if (!c.quiet) printf("tempo: no test split (--test-x, --test-y): the run will not evaluate\n");
  }
  if ((st = tempo_mm_create(&c.engine, &r.mm))) goto out;
  tempo_model_config mc = {.in_c = r.train.c, .in_h = r.train.h, .in_w = r.train.w,
                           .num_classes = r.train.num_classes, .max_batch = c.batch_size, .dropout = c.dropout};
  snprintf(mc.name, sizeof mc.name, "%s", c.model);
  if ((st = create_model(&mc, c.net_file, r.mm, c.seed, &r.model)) ||
      (st = tempo_run_check_model(r.model, &r.train)))
    goto out;
  tempo_model *m = r.model;

  tempo_augment aug = {.crop = true, .pad = 4, .flip = true};
  if ((st = tempo_batcher_init(&r.batcher, &r.train, c.batch_size, c.seed, true, c.augment ? &aug : NULL))) goto out;
  const int per_epoch = tempo_batcher_batches_per_epoch(&r.batcher);
  const long planned = c.max_steps > 0 && c.max_steps < (long)per_epoch * c.epochs ? c.max_steps
                                                                                   : (long)per_epoch * c.epochs;
  /* The schedule spans the planned epochs; --max-steps only stops early, so a run cut
   * short and resumed follows the same learning rates as an uninterrupted one. */
  if (c.optim.schedule == TEMPO_SCHED_COSINE && c.optim.total_steps == 0)
    c.optim.total_steps = (long)per_epoch * c.epochs;
  if ((st = tempo_optim_init(&r.opt, &c.optim, &m->params))) goto out;

  long step = 0;
  tempo_rng rng_before = m->rng;
  int epoch = 0, batch_in_epoch = 0;
  if (c.resume) {
    if ((st = tempo_ckpt_load_sealed(c.resume, c.key, &meta, &m->params, &r.opt))) goto out;
    memcpy(m->rng.s, meta.rng, sizeof meta.rng);
    step = meta.step;
    epoch = meta.epoch;
    batch_in_epoch = meta.batch_in_epoch;
    /* the key and verification streams go on where they stood: the exact trajectory */
    st = tempo_mm_streams_restore(r.mm, meta.streams, meta.streams_len);
    const bool had_streams = meta.streams_len > 0;
    sodium_memzero(meta.streams, sizeof meta.streams);
    if (st) {
      char why[512];
      snprintf(why, sizeof why, "%s", tempo_errmsg());
      tempo_set_error(st, "%s: %s", c.resume, why);
      goto out;
    }
    if (!c.quiet)
      printf("tempo: resuming from step %ld (epoch %d, %d of %d batches done) of %s%s\n", step, epoch + 1,
             batch_in_epoch, per_epoch, c.resume,
             !had_streams && c.engine.mode != TEMPO_MODE_LOCAL
                 ? " (it holds no key-stream state: fresh keys, so the losses may differ in the last digits)"
                 : "");
  } else if (c.init_from) {
    if ((st = load_init(&m->params, c.init_from, c.key))) {
      if (strstr(tempo_errmsg(), c.init_from) == NULL) { /* name the file when the message does not */
        char why[768];
        snprintf(why, sizeof why, "%s", tempo_errmsg());
        tempo_set_error(st, "%s: %s", c.init_from, why);
      }
      goto out;
    }
  }

  size_t in_size = (size_t)r.train.c * r.train.h * r.train.w;
  r.x = tempo_alloc_floats((size_t)c.batch_size * in_size);
  r.logits = tempo_alloc_floats((size_t)c.batch_size * mc.num_classes);
  r.dlogits = tempo_alloc_floats((size_t)c.batch_size * mc.num_classes);
  r.y = calloc((size_t)c.batch_size, sizeof(int));
  if (!r.x || !r.logits || !r.dlogits || !r.y) {
    st = tempo_set_error(TEMPO_STATUS_NO_MEMORY, "out of memory for batch buffers");
    goto out;
  }
  if ((st = open_metrics(&r, &c, step))) goto out;
  write_config(r.metrics, &c, m, &r.train, &r.test, planned, per_epoch, step, t_run);
  fflush(r.metrics);
  progress pg;
  progress_init(&pg, &c);
  const bool bar = pg.bar;
  if (!c.quiet)
    printf("tempo: training %s (%zu parameters) on %s: %d train / %d test images, batch %d, %d epoch(s), "
           "%ld steps, %s lr %g (%s), mode %s (protect %s, wire %s), %d worker(s), verify rounds %d, out %s\n",
           c.model, m->params.count, tempo_dataset_kind_name(c.dataset), r.train.n, r.test.n, c.batch_size,
           c.epochs, planned, tempo_optim_kind_name(c.optim.kind), c.optim.lr, tempo_sched_kind_name(c.optim.schedule),
           tempo_mode_name(c.engine.mode), tempo_protect_name(tempo_mm_config_protect(&c.engine)),
           tempo_wire_name(c.engine.wire), c.engine.mode == TEMPO_MODE_LOCAL ? 0 : c.engine.workers, c.engine.verify_rounds, c.out_dir);
  if (!c.quiet && c.key) {
    char id[2 * TEMPO_OWNER_KEY_ID_BYTES + 1];
    tempo_owner_key_id_hex(c.key, id);
    printf("tempo: sealed inputs and outputs (owner key %s)\n", id);
  }

  const double t_start = tempo_now();
  r.t_ckpt = t_start;
  r.ckpt_step = -1;
  double win_loss = 0.0, win_t0 = tempo_now();
  long win_correct = 0, win_seen = 0, win_steps = 0, steps_this_run = 0;
  tempo_mm_stats win_stats;
  memset(&win_stats, 0, sizeof win_stats);
  tempo_mm_stats_step(r.mm, &win_stats); /* reset */
  memset(&win_stats, 0, sizeof win_stats);
  m->training = true;
  tempo_mm_set_training(r.mm, true);

  while (epoch < c.epochs && (c.max_steps == 0 || step < c.max_steps)) {
    tempo_batcher_seek(&r.batcher, epoch, batch_in_epoch);
    int n;
    while ((c.max_steps == 0 || step < c.max_steps) && !stop_requested(&c) &&
           (n = tempo_batcher_next(&r.batcher, r.x, r.y)) > 0) {
      if (tempo_floats_find_nonfinite(r.x, (size_t)n * in_size) >= 0) {
        st = tempo_set_error(TEMPO_STATUS_NUMERIC, "the input batch of step %ld holds a non-finite value: the dataset "
                             "(%s) is damaged", step + 1, tempo_dataset_kind_name(c.dataset));
        goto out;
      }
      const float lr = tempo_optim_lr(&r.opt);
      tempo_params_zero_grad(&m->params);
      rng_before = m->rng; /* a step lost with its workers is checkpointed as not taken */
      const bool report = c.privacy_report && steps_this_run == 0;
      if (report) tempo_mm_record_shapes(r.mm, r.shapes, TEMPO_MAX_REPORT_PRODUCTS, &r.nshapes);
      if ((st = m->ops->forward(m, r.x, n, r.logits))) goto step_failed;
      if (report) {
        tempo_mm_record_shapes(r.mm, NULL, 0, NULL);
        print_privacy_report(&c, r.shapes, r.nshapes);
      }
      int ok;
      const double loss = tempo_softmax_xent(r.logits, r.y, n, mc.num_classes, r.dlogits, &ok);
      if (!isfinite(loss)) {
        progress_break(&pg);
        st = tempo_set_error(TEMPO_STATUS_NUMERIC, "loss is not finite at step %ld: %g (the model diverged: lower --lr "
                             "or check the data and the initial weights)", step + 1, loss);
        goto out;
      }
      if ((st = m->ops->backward(m, r.dlogits, n))) goto step_failed;
      if ((st = tempo_optim_step(&r.opt, &m->params))) {
        progress_break(&pg);
        goto out;
      }
      tempo_mm_step_end(r.mm);
      step++;
      steps_this_run++;
      batch_in_epoch++;
      tempo_mm_stats ss;
      tempo_mm_stats_step(r.mm, &ss);
      tempo_mm_stats_add(&win_stats, &ss);
      win_loss += loss;
      win_correct += ok;
      win_seen += n;
      win_steps++;
      const bool last = batch_in_epoch == per_epoch || step == c.max_steps;
      const bool log_now = step % c.log_every == 0 || last;
      if (log_now || progress_due(&pg)) {
        const double now = tempo_now(), ips = win_seen / fmax(now - win_t0, 1e-9);
        const double eta = (double)(planned - step) / fmax((double)steps_this_run, 1.0) * (now - t_start);
        if (log_now) {
          size_t bad_at;
          const int bad_t = tempo_params_find_nonfinite(&m->params, &bad_at);
          if (bad_t >= 0) {
            progress_break(&pg);
            st = tempo_set_error(TEMPO_STATUS_NUMERIC, "the weights are not finite after step %ld: tensor '%s' element "
                                 "%zu (the model diverged: lower --lr)", step, m->params.info[bad_t].name, bad_at);
            goto out;
          }
          fprintf(r.metrics, "{\"step\":%ld,\"epoch\":%d,\"loss\":%.6f,\"acc\":%.4f,\"lr\":%.6g,\"images_per_s\":%.1f",
                  step, epoch + 1, win_loss / win_steps, (double)win_correct / win_seen, lr, ips);
          json_stats(r.metrics, &win_stats);
          json_time(r.metrics, t_run);
          fputs("}\n", r.metrics);
          fflush(r.metrics);
          res->final_loss = win_loss / win_steps;
          pg.last = now;
        }
        if (!c.quiet) {
          char etas[32];
          fmt_duration(etas, sizeof etas, eta);
          if (bar) {
            const int width = 24, fill = (int)((double)batch_in_epoch / per_epoch * width);
            printf("\r[epoch %d/%d] %5d/%d [%.*s%*s] loss %.4f acc %5.1f%% %7.0f img/s ETA %s ", epoch + 1,
                   c.epochs, batch_in_epoch, per_epoch, fill, "========================", width - fill, "",
                   win_loss / win_steps, 100.0 * win_correct / win_seen, ips, etas);
            pg.drawn = true;
          } else {
            printf("step %ld epoch %d batch %d/%d loss %.4f acc %.4f lr %.4g images/s %.0f eta %s\n", step,
                   epoch + 1, batch_in_epoch, per_epoch, win_loss / win_steps, (double)win_correct / win_seen, lr,
                   ips, etas);
          }
          fflush(stdout);
        }
        if (log_now) {
          win_loss = 0.0;
          win_correct = win_seen = win_steps = 0;
          memset(&win_stats, 0, sizeof win_stats);
          win_t0 = tempo_now();
        }
      }
      if (c.checkpoint_every > 0 && step % c.checkpoint_every == 0 && !last) {
        int e = epoch, b = batch_in_epoch;
        if (b == per_epoch) e++, b = 0;
        if ((st = save_ckpt(&r, &c, "checkpoint.ckpt", step, e, b))) goto out;
      }
      if (c.checkpoint_minutes > 0 && !last && r.ckpt_step != step &&
          tempo_now() - r.t_ckpt >= 60.0 * c.checkpoint_minutes &&
          (st = save_ckpt(&r, &c, "checkpoint.ckpt", step, epoch, batch_in_epoch)))
        goto out;
    }
    if (stop_requested(&c) && batch_in_epoch < per_epoch && (c.max_steps == 0 || step < c.max_steps)) goto stopped;
    if (batch_in_epoch < per_epoch) break; /* stopped by max_steps inside the epoch */
    epoch++;
    batch_in_epoch = 0;
    progress_break(&pg);
    if (!c.no_eval) {
      double acc, tl;
      if ((st = evaluate(m, r.mm, &r.test, c.batch_size, r.x, r.y, r.logits, &pg, &acc, &tl))) goto out;
      res->test_acc = acc;
      res->test_loss = tl;
      fprintf(r.metrics, "{\"epoch\":%d,\"step\":%ld,\"test_loss\":%.6f,\"test_acc\":%.6f", epoch, step, tl, acc);
      json_time(r.metrics, t_run);
      fputs("}\n", r.metrics);
      fflush(r.metrics);
      if (!c.quiet) printf("epoch %d: test loss %.4f, test accuracy %.2f%%\n", epoch, tl, 100.0 * acc);
    }
    /* after the evaluation: its products drew keys, and a resumed run must find the
     * streams where the next step of an uninterrupted one does */
    if ((st = save_ckpt(&r, &c, "checkpoint.ckpt", step, epoch, 0))) goto out;
    win_t0 = tempo_now();
  }
  progress_break(&pg);
  /* an epoch end at this very step has just written it (after its evaluation) */
  if (r.ckpt_step != step && (st = save_ckpt(&r, &c, "checkpoint.ckpt", step, epoch, batch_in_epoch))) goto out;
  if ((st = save_ckpt(&r, &c, "model.ckpt", step, epoch, batch_in_epoch))) goto out;
  if (!c.no_eval && res->test_acc < 0 && step > 0) { /* stopped by max_steps inside an epoch: evaluate as an epoch end does */
    double acc, tl;
    if ((st = evaluate(m, r.mm, &r.test, c.batch_size, r.x, r.y, r.logits, &pg, &acc, &tl))) goto out;
    res->test_acc = acc;
    res->test_loss = tl;
    fprintf(r.metrics, "{\"epoch\":%d,\"step\":%ld,\"test_loss\":%.6f,\"test_acc\":%.6f", epoch + 1, step, tl, acc);
    json_time(r.metrics, t_run);
    fputs("}\n", r.metrics);
    fflush(r.metrics);
    if (!c.quiet) printf("step %ld: test loss %.4f, test accuracy %.2f%%\n", step, tl, 100.0 * acc);
  }
  res->steps = step;
  res->seconds = tempo_now() - t_start;
  tempo_mm_stats_run(r.mm, &res->stats);
  fprintf(r.metrics, "{\"summary\":{\"steps\":%ld,\"seconds\":%.3f,\"test_acc\":%.6f,\"test_loss\":%.6f,\"mode\":\"%s\"",
          step, res->seconds, res->test_acc, res->test_acc < 0 ? -1.0 : res->test_loss, tempo_mode_name(c.engine.mode));
  json_stats(r.metrics, &res->stats);
  fputc('}', r.metrics);
  json_time(r.metrics, t_run);
  fputs("}\n", r.metrics);
  st = save_sealed_metrics(&r, &c);
  goto out;
stopped: /* *c.stop: a checkpoint where the run stands; no model.ckpt, evaluation or summary */
  if (bar && !c.quiet) printf("\n");
  if (r.ckpt_step != step && (st = save_ckpt(&r, &c, "checkpoint.ckpt", step, epoch, batch_in_epoch))) goto out;
  res->stopped = true;
  res->steps = step;
  res->seconds = tempo_now() - t_start;
  tempo_mm_stats_run(r.mm, &res->stats);
  goto out;
step_failed:
  if (st == TEMPO_STATUS_WORKER) { /* no worker left: keep the run resumable, then fail */
    char why[256];
    snprintf(why, sizeof why, "%s", tempo_errmsg());
    m->rng = rng_before;
    if (save_ckpt(&r, &c, "checkpoint.ckpt", step, epoch, batch_in_epoch) == TEMPO_STATUS_OK)
      st = tempo_set_error(TEMPO_STATUS_WORKER,
                           "%s; wrote %s/checkpoint.ckpt at step %ld: start workers again and resume with "
                           "'tempo train --resume %s/checkpoint.ckpt' (same engine options)",
                           why, c.out_dir, step, c.out_dir);
  }
out:
  sodium_memzero(&meta, sizeof meta);
  snprintf(res->checkpoint, sizeof res->checkpoint, "%s", r.ckpt_path);
  if (st && c.key && r.metrics) { /* keep what was logged, sealed, for the owner's diagnosis */
    tempo_status keep = st;
    if (save_sealed_metrics(&r, &c)) {
    }
    st = keep;
  }
  run_free(&r);
  return st;
}

tempo_status tempo_eval_checkpoint(const char *path, const char *data_dir, const tempo_mm_config *engine,
                                   int batch_size, double *acc, double *loss) {
  return tempo_eval_checkpoint_sealed(path, data_dir, NULL, engine, batch_size, acc, loss);
}

static tempo_status eval_checkpoint(const char *path, const char *data_dir, const tempo_npy_config *npy,
                                    const char *net_file,
                                    const tempo_owner_key *key, const tempo_mm_config *engine, int batch_size,
                                    progress *pg, double *acc, double *loss);

tempo_status tempo_eval_checkpoint_sealed(const char *path, const char *data_dir, const tempo_owner_key *key,
                                          const tempo_mm_config *engine, int batch_size, double *acc, double *loss) {
  return eval_checkpoint(path, data_dir, NULL, NULL, key, engine, batch_size, NULL, acc, loss);
}

tempo_status tempo_eval_run(const tempo_train_config *c, const char *path, double *acc, double *loss) {
  progress pg;
  progress_init(&pg, c);
  return eval_checkpoint(path, c->data_dir, &c->npy, c->net_file, c->key, &c->engine, c->batch_size, &pg, acc,
                         loss);
}

static tempo_status eval_checkpoint(const char *path, const char *data_dir, const tempo_npy_config *npy,
                                    const char *net_file,
                                    const tempo_owner_key *key, const tempo_mm_config *engine, int batch_size,
                                    progress *pg, double *acc, double *loss) {
  tempo_ckpt_meta meta;
  tempo_status st = tempo_ckpt_load_sealed(path, key, &meta, NULL, NULL);
  sodium_memzero(meta.streams, sizeof meta.streams); /* a checkpoint.ckpt's stream record: not needed here */
  if (st) return st;
  tempo_dataset_kind kind;
  if (!tempo_dataset_kind_parse(meta.dataset, &kind))
    return tempo_set_error(TEMPO_STATUS_CORRUPT, "%s names an unknown dataset '%s'", path, meta.dataset);
  run_state r;
  memset(&r, 0, sizeof r);
  if ((st = tempo_run_load_eval_data(path, kind, meta.num_classes, data_dir, npy, key, &r.test))) goto out;
  if (r.test.c != meta.in_c || r.test.h != meta.in_h || r.test.w != meta.in_w) {
    st = tempo_set_error(TEMPO_STATUS_MISMATCH, "%s was trained on %dx%dx%d inputs; the data is %dx%dx%d", path,
                         meta.in_c, meta.in_h, meta.in_w, r.test.c, r.test.h, r.test.w);
    goto out;
  }
  if ((st = tempo_mm_create(engine, &r.mm))) goto out;
  tempo_model_config mc = {.in_c = meta.in_c, .in_h = meta.in_h, .in_w = meta.in_w,
                           .num_classes = meta.num_classes, .max_batch = batch_size};
  snprintf(mc.name, sizeof mc.name, "%s", meta.model);
  if ((st = create_model(&mc, net_file, r.mm, 0, &r.model))) goto out;
  if ((st = tempo_ckpt_load_sealed(path, key, &meta, &r.model->params, NULL))) goto out;
  r.x = tempo_alloc_floats((size_t)batch_size * meta.in_c * meta.in_h * meta.in_w);
  r.logits = tempo_alloc_floats((size_t)batch_size * meta.num_classes);
  r.y = calloc((size_t)batch_size, sizeof(int));
  if (!r.x || !r.logits || !r.y) {
    st = tempo_set_error(TEMPO_STATUS_NO_MEMORY, "out of memory for batch buffers");
    goto out;
  }
  st = evaluate(r.model, r.mm, &r.test, batch_size, r.x, r.y, r.logits, pg, acc, loss);
out:
  sodium_memzero(&meta, sizeof meta);
  run_free(&r);
  return st;
}
