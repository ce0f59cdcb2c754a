/* mm_types.h - the value types of the matrix-product entry point (matmul.h): modes,
 * shapes, sites, the engine configuration and its statistics. Apart from matmul.h so the
 * offload engine and its schemes can use them without depending on the entry point. */
#ifndef TEMPO_MM_TYPES_H
#define TEMPO_MM_TYPES_H

#include "tempo/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  TEMPO_MODE_LOCAL = 0,
  TEMPO_MODE_PLAIN = 1,
  TEMPO_MODE_TEMPO = 2,
  TEMPO_MODE_SHIELD = 3,
} tempo_mode;


typedef struct {
  int batch;    /* independent instances, >= 1 */
  int m, n, p;  /* X (m, n), W (n, p), Y (m, p) */
  bool w_trans; /* W stored as (p, n) */
} tempo_mm_shape;

/* What a product exposes, declared by the layer or model at its site (tempo_mm_site.kind)
 * so the protection policy (tempo_protect) can choose how the product runs. A site may
 * have several; 0 = an ordinary product. */
enum {
  TEMPO_SITE_RAW_INPUT = 1u << 0, /* X is (a lowering of) the model's raw input: the first product */
  TEMPO_SITE_HEAD = 1u << 1,      /* Y is the logits: its backward's dY is the loss gradient (labels) */
  TEMPO_SITE_SPATIAL = 1u << 2,   /* X is an im2col with overlapping windows (kernel > stride): rows chain */
};

typedef struct {
  int slot;      /* assigned by the engine on first use; 0 = unassigned */
  unsigned kind; /* TEMPO_SITE_* flags, set by the layer before its first product (0 = ordinary) */
} tempo_mm_site;

/* The element type of the blinded operands X', W', dY* that plain and tempo mode send
 * (docs/protocol.md): float32, or bfloat16 (the master's Enc passes round as they write;
 * the workers accumulate in float32 and return float32 results; docs/obfuscation.md). */
typedef enum {
  TEMPO_WIRE_F32 = 0,  /* the default */
  TEMPO_WIRE_BF16 = 1,
} tempo_wire;

/* Which products the workers may see only under stronger protection than the mode's keys
 * (docs/obfuscation.md, "Protection policy"). A protected product is blinded with mixing
 * blocks (tempo mode: block-diagonal random matrices after the permutation, destroying
 * signs, zero patterns and window overlaps) or computed by the master (products touching
 * raw inputs or labels, which are small). */
typedef enum {
  TEMPO_PROTECT_DEFAULT = 0, /* the mode's default: TEMPO_PROTECT_GUARDED in tempo mode, none otherwise */
  TEMPO_PROTECT_NONE = 1,    /* every product as the mode blinds it */
  TEMPO_PROTECT_ENDS = 2,    /* raw-input and head products (forward and backward) on the master */
  TEMPO_PROTECT_SPATIAL = 3, /* ends, and every product whose X is an overlapping im2col mixed */
  TEMPO_PROTECT_ALL = 4,     /* ends, and every other product mixed */
} tempo_protect;
#define TEMPO_PROTECT_GUARDED TEMPO_PROTECT_SPATIAL /* tempo mode's default (the measured choice) */

/* How an engine reaches its workers: makes a transport (src/offload/transport.h) for
 * requested_workers workers; ctx is tempo_mm_config.transport_ctx. NULL in the config =
 * in-process worker threads. The MPI master supplies tempo_mpi_transport (src/mpi/mpi.h). */
struct tempo_transport;
typedef tempo_status (*tempo_mm_transport_fn)(void *ctx, int requested_workers, struct tempo_transport **out);

typedef struct {
  tempo_mode mode;       /* default TEMPO_MODE_TEMPO */
  int workers;           /* in-process worker threads (default 2; shield needs >= 4) */
  int verify_rounds;     /* Freivalds vectors per result (default 1) */
  int threads;           /* the master's threads: BLAS in local mode, Enc/Dec passes in plain/tempo (default 1) */
  const char *audit_dir; /* record every message here when not NULL */
  uint64_t seed;         /* seeds the per-run key stream; 0 = fresh randomness */
  bool shield_f32;       /* shield mode: float32 shares instead of the float64 default */
  double shield_alpha;   /* shield mode: mask scale; 0 = the dtype's default (shield.h) */
  int min_precision;     /* the least precise compute a worker may declare (tempo_precision, precision.h):
                          * workers that declare less are refused at the start; 0 = FP32 only */
  double key_range;      /* > 1: the log-uniform key space's range instead of the default (obf.h; tests and
                          * measurements that size a cheat in plaintext terms); 0 = the default */
  tempo_mm_transport_fn transport; /* NULL = in-process worker threads */
  void *transport_ctx;
  tempo_protect protect; /* the protection policy (TEMPO_PROTECT_DEFAULT: the mode's default) */
  int wire;              /* tempo_wire: the element type of plain and tempo mode's operands on the wire
                          * (shield keeps its own dtypes) */
} tempo_mm_config;

/* Counters per run (and per step: see tempo_mm_stats_step). Times in seconds. */
typedef struct {
  uint64_t products;            /* products computed (forward and backward, each instance once) */
  uint64_t encryptions;         /* operand encryptions done by the master */
  uint64_t decryptions;         /* result decryptions done by the master */
  uint64_t naive_encryptions;   /* what blinding every backward product from scratch would need */
  uint64_t bytes_up, bytes_down;           /* message bytes master->workers, workers->master */
  uint64_t naive_bytes_up;                 /* upload bytes without the key-shift reuse */
  uint64_t verify_failures;     /* results rejected by the integrity check */
  uint64_t recomputed;          /* products recomputed on another worker */
  uint64_t evictions;           /* workers evicted */
  uint64_t worker_errors;       /* error replies, malformed replies, replies naming another task */
  uint64_t timeouts;            /* requests a worker did not answer in time */
  uint64_t flops;               /* 2 m n p per product instance (every mode) */
  uint64_t master_bytes;        /* bytes the master's blinding, checks and decoding read and write */
  /* t_blind: Enc passes; t_unblind: Dec passes (and gathering, combining); t_verify: integrity
   * checks; t_compute: the workers' compute time as they report it (summed over workers);
   * t_transfer: time the master waited for replies minus the busiest worker's compute;
   * t_wait: time the master was blocked waiting for replies (its busy time is the rest);
   * t_local: local mode. */
  double t_blind, t_transfer, t_compute, t_verify, t_unblind, t_local, t_wait;
} tempo_mm_stats;

enum {
  TEMPO_MM_ACCUM_DX = 1u << 0, /* dX += ... instead of dX = ... */
  TEMPO_MM_ACCUM_DW = 1u << 1, /* dW += ... instead of dW = ... */
};

const char *tempo_mode_name(tempo_mode m);
/* Parses "local", "plain", "tempo", "shield"; false if unknown. */
bool tempo_mode_parse(const char *s, tempo_mode *out);

const char *tempo_protect_name(tempo_protect p); /* "default", "none", "ends", "spatial", "all" */
/* Parses "none", "ends", "spatial", "all"; false if unknown. */
bool tempo_protect_parse(const char *s, tempo_protect *out);

const char *tempo_wire_name(int w); /* "fp32", "bf16"; "?" otherwise */
/* Parses "fp32" or "bf16"; false if unknown. */
bool tempo_wire_parse(const char *s, tempo_wire *out);

/* a += b, every field: the one place statistics are summed (engine, training loop, benches). */
void tempo_mm_stats_add(tempo_mm_stats *a, const tempo_mm_stats *b);

#ifdef __cplusplus
}
#endif
#endif
