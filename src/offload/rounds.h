/* rounds.h - how the offload engine reaches its workers (internal).
 *
 * The engine (engine.c) decides what a round sends; this module owns how: the transport,
 * key generator and audit writer; worker liveness, failure counts and eviction; request
 * building with the audit hook and byte counts; the receive loop with per-task deadlines,
 * reply matching and late-reply filtering; step-end RELEASE/ACK; the statistics; the site
 * table, site keys and buffer growth. The engine embeds one tempo_rounds and drives
 * rounds through the callbacks of tempo_round. */
#ifndef TEMPO_OFFLOAD_ROUNDS_H
#define TEMPO_OFFLOAD_ROUNDS_H

#include "offload/transport.h"
#include "tempo/audit.h"
#include "tempo/mm_types.h"
#include "tempo/obf.h"

#define TEMPO_ROUNDS_MAX_FAILURES 3          /* a worker failing this often is evicted */
#define TEMPO_ROUNDS_ABANDONED 8    /* timed-out task ids remembered per worker */

/* Why a worker failed a task (the eviction message names it). COMPLAINED: its ERROR reply
 * says the operand relayed to it was bad (counts nothing against it: the task is recomputed
 * and the relayer is charged RELAY at the round's end, unless the relayer complained too,
 * having passed on nothing because its own relay was bad). SUM: it passed on a wrong dW'
 * sum in a reduction chain (tempo_rounds_sum_partials). */
enum {
  TEMPO_WHY_VERIFY,
  TEMPO_WHY_TIMEOUT,
  TEMPO_WHY_ERROR,
  TEMPO_WHY_MALFORMED,
  TEMPO_WHY_OTHER_TASK,
  TEMPO_WHY_LOST,
  TEMPO_WHY_COMPLAINED,
  TEMPO_WHY_RELAY,
  TEMPO_WHY_SUM
};

typedef struct {
  const char *name;         /* "engine" or "shield": prefix of error messages */
  const char *evict_prefix; /* put between "tempo: " and "evicting worker" */
  tempo_transport *tr;
  tempo_keygen *kg;
  tempo_keygen *vg; /* the engine's verification randomness: apart from kg, so keys never depend on how many checks ran */
  tempo_audit_writer *audit;
  int nw, n_live, rr;     /* workers, live ones, round-robin start */
  bool *live, *holds;     /* (nw); holds: keeps operands until the step's RELEASE */
  int *fails;             /* (nw) */
  uint64_t *abandoned;    /* (nw, TEMPO_ROUNDS_ABANDONED) ring of timed-out task ids */
  int *ab_next;           /* (nw) */
  double *wcomp;          /* (nw) worker compute seconds of the current round */
  double timeout;         /* seconds a worker may take for one reply */
  bool no_relay;          /* set by the first timeout: a silent worker must not hold up others' W' */
  uint64_t next_task, next_handle;
  tempo_mm_stats st;      /* since the last take_stats */
} tempo_rounds;

/* One request of a round: a block of one share of a product. */
typedef struct {
  int unit;
  uint64_t task_id;
  int worker;
  double sent_at;
  bool pending;
  int relayer, relayer_task; /* as sent: the worker relaying its shared operand, and that worker's
                              * task (index in the round); relayer -1: none (set by the engine) */
  bool complained;           /* its worker reported a bad relay from `blamed` */
  int blamed;
  bool reported;             /* a reply was taken: chain_digest is what it said it received */
  uint8_t chain_digest[TEMPO_MSG_CHAIN_DIGEST];
} tempo_round_task;

/* A round in flight. The engine embeds it first in its own round context and sets the
 * callbacks; tempo_rounds_collect calls them for each reply or timeout. */
typedef struct tempo_round tempo_round;
struct tempo_round {
  tempo_round_task *tasks; /* (ntasks) */
  int ntasks;
  double consume_time; /* verify/decrypt time spent inside the round (consume adds it) */
  /* worker w failed on t (NULL: no pending task of w matched) for reason why: count it
   * (tempo_rounds_worker_failed) and recompute what must be */
  TEMPO_WUR tempo_status (*on_failure)(tempo_round *rd, tempo_round_task *t, int w, int why);
  /* the reply header h (a RESULT or other op for task t) has the expected op, shape and flags */
  bool (*fits)(tempo_round *rd, const tempo_round_task *t, const tempo_msg_header *h);
  /* verifies and uses the payload; false when verification fails */
  bool (*consume)(tempo_round *rd, tempo_round_task *t, const tempo_msg_header *h, const uint8_t *pay);
  /* t's result was consumed (optional) */
  void (*done)(tempo_round *rd, tempo_round_task *t);
  /* the message consume is given (set by tempo_rounds_collect): consume may keep it past the
   * round by copying *msg and clearing msg->token, and later gives the copy back with the
   * transport's done() itself (transport.h) */
  tempo_in_msg *msg;
};

/* What the engine keeps per site for every scheme: the shape and one key per instance. */
typedef struct {
  bool used, fwd_valid; /* fwd_valid: a training forward of this step awaits its backward */
  tempo_mm_shape shape;
  int nkeys;
  tempo_obf_key *keys; /* (batch) */
} tempo_site_keys;

/* Starts libsodium, the transport (cfg->transport, else in-process threads), the
 * per-worker arrays, the key generator (seeded from cfg->seed and key_context, 17 bytes,
 * when cfg->seed != 0), the verification stream and the audit writer. On error call
 * tempo_rounds_free. */
/* Refuses (evicts at the start, with a message) every worker whose declared precision
 * (transport.h) is unknown or less precise than min_precision; returns how many. */
int tempo_rounds_refuse_weaker(tempo_rounds *r, int min_precision);
/* A worker's declared precision (0 = FP32 when the transport declares none). */
int tempo_rounds_precision(const tempo_rounds *r, int w);

TEMPO_WUR tempo_status tempo_rounds_init(tempo_rounds *r, const tempo_mm_config *cfg, const char *name,
                                         const char *key_context);
void tempo_rounds_free(tempo_rounds *r); /* stops the transport first; zeroes nothing else */

/* The key stream's and the verification stream's state (matmul.h tempo_mm_streams_save):
 * u8 version 1, u8 count 2, u16 0, then each tempo_keygen_state_save record.
 * TEMPO_ROUNDS_STREAMS_BYTES bytes; restore refuses anything else (TEMPO_STATUS_CORRUPT,
 * nothing changed). */
#define TEMPO_ROUNDS_STREAMS_BYTES (4 + 2 * TEMPO_KEYGEN_STATE_BYTES)
TEMPO_WUR tempo_status tempo_rounds_streams_save(const tempo_rounds *r, uint8_t *out, size_t cap, size_t *len);
TEMPO_WUR tempo_status tempo_rounds_streams_restore(tempo_rounds *r, const uint8_t *in, size_t len);

void tempo_rounds_take_stats(tempo_rounds *r, tempo_mm_stats *run, tempo_mm_stats *step);
void tempo_rounds_set_timeout(tempo_rounds *r, double seconds);
const char *tempo_rounds_why(int why);

/* Counts a failure of worker w and evicts it at TEMPO_ROUNDS_MAX_FAILURES. */
void tempo_rounds_worker_failed(tempo_rounds *r, int w, int why);
/* Whether worker w has a pending task in rd (NULL: none). */
bool tempo_rounds_busy(const tempo_round *rd, int w);

/* Sets h->payload_len, checks and writes the header into *m with the segments by
 * reference (count[i] elements of h's dtype), audits and counts it (bytes_up, and
 * naive_bytes_up when naive). */
TEMPO_WUR tempo_status tempo_rounds_prepare(tempo_rounds *r, int w, tempo_msg_header *h, int nseg,
                                            const void *const *seg, const size_t *count, bool naive,
                                            tempo_out_msg *m);
/* tempo_rounds_prepare, then the transport's send. */
TEMPO_WUR tempo_status tempo_rounds_send(tempo_rounds *r, int w, tempo_msg_header *h, int nseg,
                                         const void *const *seg, const size_t *count, bool naive);

/* Collects the replies of rd's sent tasks: deadlines (a timed-out task is remembered as
 * abandoned and failed), decoding, matching, fits and consume; late replies to abandoned
 * tasks and ACKs are dropped. Adds the waiting time since t_start to st.t_transfer. */
TEMPO_WUR tempo_status tempo_rounds_collect(tempo_rounds *r, tempo_round *rd, double t_start);

/* Adds the nb partial dW' sums of a row split (ws elements of dtype each, back to back from
 * dw) in block order into the first, as the workers' chain adds them (bit for bit). chain
 * (NULL: no blame) is the chain's tasks in member order, given when its sum failed the check
 * although no member failed, and the partials (each checked) came from the same workers;
 * sum_digest is that sum's digest. The first member b >= 1 whose reported digest differs
 * from the prefix sum of blocks 0..b-1 names member b-1 (unless b got nothing: a late or
 * broken chain names nobody); else the last member if its sum differs from the whole; else
 * nobody (a false alarm). The named worker is charged SUM;
 * returns its member index, or -1. */
int tempo_rounds_sum_partials(tempo_rounds *r, void *dw, int nb, size_t ws, uint16_t dtype,
                               const tempo_round_task *chain, const uint8_t *sum_digest);

/* Sends RELEASE (all handles) to every live worker that holds operands and waits for the
 * ACKs; a worker silent past the timeout gets a timeout failure. */
TEMPO_WUR tempo_status tempo_rounds_release(tempo_rounds *r, bool count_naive);

/* Site `slot` (>= 1) of a table of elem-byte sites, grown zeroed as needed. */
TEMPO_WUR tempo_status tempo_rounds_site(const tempo_rounds *r, void *sitesp, int *n_sites, size_t elem, int slot,
                                         void **out);
bool tempo_rounds_same_shape(const tempo_mm_shape *a, const tempo_mm_shape *b);
/* Keys for shape sh (reallocated only when the shape changes) and the element counts of
 * X (batch, m, n), W (batch, n, p) and Y (batch, m, p), overflow-checked. */
TEMPO_WUR tempo_status tempo_site_keys_prepare(const tempo_rounds *r, tempo_site_keys *k, const tempo_mm_shape *sh,
                                               size_t *x, size_t *w, size_t *y);
/* The checks a backward makes against its forward. */
TEMPO_WUR tempo_status tempo_site_keys_backward_check(const tempo_site_keys *k, const tempo_mm_shape *sh);
void tempo_site_keys_wipe(tempo_site_keys *k);
void tempo_site_keys_free(tempo_site_keys *k);

#endif
