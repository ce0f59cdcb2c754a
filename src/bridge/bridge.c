/* bridge.c - the flat entry point for foreign callers (bridge.h): argument checks, a site
 * table indexed by small ints, and the statistics as JSON. Every product goes through
 * tempo_mm_forward / tempo_mm_backward (matmul.h); nothing here blinds or checks. */
#include "tempo/bridge.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/bridge_internal.h"
#include "offload/transport.h"
#include "tempo/common.h"
#include "tempo/matmul.h"
#include "tempo/worker_fault.h"

struct tempo_bridge {
  tempo_mm *mm;
  int workers;
  bool inproc; /* in-process worker threads (the test hooks need them) */
  tempo_mm_site *sites; /* (cap_sites), index = the caller's site */
  size_t cap_sites;
};

int tempo_bridge_abi(void) { return TEMPO_BRIDGE_ABI; }

const char *tempo_bridge_errmsg(void) { return tempo_errmsg(); }

tempo_status tempo_bridge_create_with(const char *mode, int workers, int verify_rounds, int threads, uint64_t seed,
                                      const char *protect, tempo_mm_transport_fn transport, tempo_bridge **out) {
  if (!out) return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "bridge: out is NULL");
  *out = NULL;
  tempo_mm_config cfg;
  tempo_mm_config_default(&cfg);
  if (!mode || !tempo_mode_parse(mode, &cfg.mode))
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT,
                           "bridge: unknown mode '%s' (local, plain, tempo or shield)", mode ? mode : "(null)");
  if (protect && strcmp(protect, "default") != 0 && !tempo_protect_parse(protect, &cfg.protect))
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT,
                           "bridge: unknown protection policy '%s' (default, none, ends, spatial or all)", protect);
  cfg.workers = workers, cfg.verify_rounds = verify_rounds, cfg.threads = threads, cfg.seed = seed;
  cfg.transport = transport;
  tempo_bridge *b = calloc(1, sizeof *b);
  if (!b) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "bridge: out of memory");
  tempo_status st = tempo_mm_create(&cfg, &b->mm);
  if (st) {
    free(b);
    return st;
  }
  tempo_mm_set_training(b->mm, true);
  b->workers = workers;
  b->inproc = transport == NULL;
  *out = b;
  return TEMPO_STATUS_OK;
}

tempo_status tempo_bridge_create(const char *mode, int workers, int verify_rounds, int threads, uint64_t seed,
                                 const char *protect, tempo_bridge **out) {
  return tempo_bridge_create_with(mode, workers, verify_rounds, threads, seed, protect, NULL, out);
}

void tempo_bridge_free(tempo_bridge *b) {
  if (!b) return;
  tempo_mm_free(b->mm);
  free(b->sites);
  free(b);
}

/* The site of index i, growing the table (zeroed entries: unassigned sites) on first use. */
static tempo_status site_at(tempo_bridge *b, int i, bool grow, tempo_mm_site **out) {
  if (i < 0 || i >= TEMPO_BRIDGE_MAX_SITES)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "bridge: site %d out of range 0..%d", i,
                           TEMPO_BRIDGE_MAX_SITES - 1);
  if ((size_t)i >= b->cap_sites) {
    if (!grow)
      return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "bridge: backward on site %d before its forward", i);
    size_t cap = b->cap_sites ? b->cap_sites : 64;
    while (cap <= (size_t)i) cap *= 2;
    tempo_mm_site *s = realloc(b->sites, cap * sizeof *s);
    if (!s) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "bridge: out of memory for %zu sites", cap);
    memset(s + b->cap_sites, 0, (cap - b->cap_sites) * sizeof *s);
    b->sites = s, b->cap_sites = cap;
  }
  *out = &b->sites[i];
  return TEMPO_STATUS_OK;
}

/* Shape checks shared by forward and backward: positive sizes whose element counts fit. */
static tempo_status make_shape(int batch, int m, int n, int p, tempo_mm_shape *sh) {
  size_t a, c, d;
  if (batch < 1 || m < 1 || n < 1 || p < 1 || !tempo_mul3_size((size_t)batch, (size_t)m, (size_t)n, &a) ||
      !tempo_mul3_size((size_t)batch, (size_t)n, (size_t)p, &c) ||
      !tempo_mul3_size((size_t)batch, (size_t)m, (size_t)p, &d))
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "bridge: bad shape batch=%d m=%d n=%d p=%d", batch, m, n, p);
  *sh = (tempo_mm_shape){.batch = batch, .m = m, .n = n, .p = p, .w_trans = true};
  return TEMPO_STATUS_OK;
}

tempo_status tempo_bridge_forward(tempo_bridge *b, int site, unsigned kind, int batch, int m, int n, int p,
                                  int training, const float *X, const float *W, float *Y) {
  tempo_mm_shape sh;
  tempo_mm_site *s;
  tempo_status st;
  if (!b || !X || !W || !Y) return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "bridge: forward: NULL argument");
  if (kind & ~(unsigned)(TEMPO_SITE_RAW_INPUT | TEMPO_SITE_HEAD | TEMPO_SITE_SPATIAL))
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "bridge: unknown site kind bits 0x%x", kind);
  if ((st = make_shape(batch, m, n, p, &sh)) || (st = site_at(b, site, true, &s))) return st;
  s->kind = kind; /* its backward products follow the same route */
  tempo_mm_set_training(b->mm, training != 0);
  st = tempo_mm_forward(b->mm, s, &sh, X, W, Y);
  tempo_mm_set_training(b->mm, true);
  return st;
}

tempo_status tempo_bridge_backward(tempo_bridge *b, int site, int batch, int m, int n, int p, const float *X,
                                   const float *W, const float *dY, float *dX, float *dW) {
  tempo_mm_shape sh;
  tempo_mm_site *s;
  tempo_status st;
  if (!b || !X || !W || !dY) return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "bridge: backward: NULL argument");
  if ((st = make_shape(batch, m, n, p, &sh)) || (st = site_at(b, site, false, &s))) return st;
  return tempo_mm_backward(b->mm, s, &sh, X, W, dY, dX, dW, 0);
}

void tempo_bridge_step_end(tempo_bridge *b) {
  if (b) tempo_mm_step_end(b->mm);
}

unsigned tempo_bridge_site_kind(const char *name) {
  static const struct {
    const char *name;
    unsigned flag;
  } kinds[] = {{"raw_input", TEMPO_SITE_RAW_INPUT}, {"head", TEMPO_SITE_HEAD}, {"spatial", TEMPO_SITE_SPATIAL}};
  for (size_t i = 0; name && i < sizeof kinds / sizeof kinds[0]; i++)
    if (strcmp(name, kinds[i].name) == 0) return kinds[i].flag;
  return 0;
}

int tempo_bridge_live_workers(const tempo_bridge *b) { return b ? tempo_mm_live_workers(b->mm) : 0; }

tempo_status tempo_bridge_stats_json(tempo_bridge *b, int step, char *buf, size_t cap, size_t *len) {
  if (!b || !len || (!buf && cap))
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "bridge: stats: NULL argument");
  tempo_mm_stats s;
  if (step) tempo_mm_stats_step(b->mm, &s);
  else tempo_mm_stats_run(b->mm, &s);
  typedef unsigned long long ull;
  const int n = snprintf(
      buf, cap,
      "{\"mode\":\"%s\",\"protect\":\"%s\",\"live_workers\":%d,\"products\":%llu,\"encryptions\":%llu,"
      "\"decryptions\":%llu,\"naive_encryptions\":%llu,\"bytes_up\":%llu,\"bytes_down\":%llu,\"naive_bytes_up\":%llu,"
      "\"verify_failures\":%llu,\"recomputed\":%llu,\"evictions\":%llu,\"worker_errors\":%llu,"
      "\"timeouts\":%llu,\"flops\":%llu,\"master_bytes\":%llu,\"t_blind\":%.9g,\"t_transfer\":%.9g,"
      "\"t_compute\":%.9g,\"t_verify\":%.9g,\"t_unblind\":%.9g,\"t_local\":%.9g,\"t_wait\":%.9g}",
      tempo_mode_name(tempo_mm_mode(b->mm)), tempo_protect_name(tempo_mm_protect(b->mm)), tempo_mm_live_workers(b->mm),
      (ull)s.products, (ull)s.encryptions, (ull)s.decryptions, (ull)s.naive_encryptions, (ull)s.bytes_up,
      (ull)s.bytes_down, (ull)s.naive_bytes_up, (ull)s.verify_failures, (ull)s.recomputed, (ull)s.evictions,
      (ull)s.worker_errors, (ull)s.timeouts, (ull)s.flops, (ull)s.master_bytes, s.t_blind, s.t_transfer, s.t_compute,
      s.t_verify, s.t_unblind, s.t_local, s.t_wait);
  if (n < 0) return tempo_set_error(TEMPO_STATUS_INTERNAL, "bridge: stats: formatting failed");
  *len = (size_t)n;
  if ((size_t)n >= cap)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "bridge: stats: buffer of %zu bytes, %d needed", cap, n + 1);
  return TEMPO_STATUS_OK;
}

/* The in-process transport of b's engine, with worker in range; NULL (error set) otherwise. */
static tempo_transport *test_transport(tempo_bridge *b, int worker) {
  tempo_transport *t = b && b->inproc ? tempo_mm_test_transport(b->mm) : NULL;
  if (!t || worker < 0 || worker >= b->workers) {
    tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "bridge: fault injection needs an offloading engine with "
                                                   "in-process workers and a worker in 0..workers-1");
    return NULL;
  }
  return t;
}

tempo_status tempo_bridge_test_set_fault(tempo_bridge *b, int worker, int kind, int start, int period) {
  tempo_transport *t = test_transport(b, worker);
  if (!t) return TEMPO_STATUS_INVALID_ARGUMENT;
  if (kind < TEMPO_FAULT_NONE || kind >= TEMPO_FAULT_COUNT_ || start < 0 || period < 1)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "bridge: bad fault kind %d, start %d or period %d", kind,
                           start, period);
  const tempo_worker_fault f = {.kind = (tempo_fault_kind)kind, .start = (uint32_t)start, .period = (uint32_t)period};
  tempo_transport_inproc_set_fault(t, worker, &f);
  return TEMPO_STATUS_OK;
}

uint64_t tempo_bridge_test_faults(tempo_bridge *b, int worker) {
  tempo_transport *t = test_transport(b, worker);
  return t ? tempo_transport_inproc_faults(t, worker) : 0;
}
