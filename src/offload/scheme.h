/* scheme.h - what differs between the offloaded modes (internal).
 *
 * The engine (engine.h) owns everything a product's round needs that is the same in
 * every mode: sites, splitting into blocks over the live workers, placement, requests,
 * the receive loop, recompute and eviction, relay and dW' reduction, step end and the
 * statistics. A scheme owns the rest: the blinded operands of a product and how they are
 * made, the integrity check of a result, and how the verified results become the
 * plaintext outputs. Plain and tempo are one scheme (src/obf/scheme_tempo.c, identity
 * keys for plain), shield another (src/shield/scheme_shield.c).
 *
 * A product has `shares` results (1, or shield's 4 roles), each computed by workers that
 * hold no other share of the product in this step (the collusion rule). Share s's
 * operands are X_s (batch, m, n), W_s (batch, n, p) or (batch, p, n), dY_s (batch, m, p),
 * in the scheme's wire dtype; a block is rows [lo, hi) of them (batch 1) or instances
 * [lo, hi). Dimension letters as in matmul.h. */
#ifndef TEMPO_OFFLOAD_SCHEME_H
#define TEMPO_OFFLOAD_SCHEME_H

#include "tempo/mm_types.h"
#include "tempo/obf.h"
#include "tempo/protocol.h"

/* One product call, as the scheme sees it. */
typedef struct {
  bool backward;
  bool training;           /* a training forward: backward products will follow */
  const tempo_mm_shape *sh;
  tempo_obf_key *keys;     /* (batch) the site's keys; the forward's encode fills them */
  const float *X, *W, *dY; /* plaintext inputs: X, W (forward), dY (backward) */
  const tempo_rows *Xr;    /* a batch-1 forward's X given by rows instead (X NULL; only when x_rows) */
  float *Y, *dX, *dW;      /* outputs; in a backward NULL = not wanted */
  const tempo_rows_sink *dXs; /* a backward's dX taken by rows (check_take_dx adds them; dX unused) */
  unsigned accum;          /* TEMPO_MM_ACCUM_* */
  bool mixed;              /* the protection policy's MIXED route (engine.h): the scheme blinds with
                            * mixing blocks (only when the scheme's can_mix is set) */
} tempo_product;

/* Block size of the mixing blocks of MIXED products (obf.h tempo_keygen_fill_mix; a power of
 * two <= TEMPO_OBF_MIX_MAX, to which the engine aligns their row blocks). */
#define TEMPO_SCHEME_MIX_BLOCK 4

enum { TEMPO_OPERAND_X = 0, TEMPO_OPERAND_W = 1, TEMPO_OPERAND_DY = 2 };

typedef struct tempo_scheme tempo_scheme;

typedef struct {
  /* Per-site state (operand buffers), NULL-initialised by the engine; freed with site_free. */
  void (*site_free)(void *state);
  /* Room for the operands of a product of shape sh (grow only; backward: dY_s too). */
  TEMPO_WUR tempo_status (*prepare)(tempo_scheme *sc, void **state, const tempo_mm_shape *sh, bool backward);
  /* Keys (forward) and the blinded operands of instances [lo, hi) of every share. */
  TEMPO_WUR tempo_status (*encode)(tempo_scheme *sc, void *state, const tempo_product *pr, int lo, int hi);
  /* Base of share s's operand (TEMPO_OPERAND_*), in the wire dtype. */
  const void *(*operand)(const void *state, int share, int which);
  /* Freivalds' check of C (r, c) = op(A) (r, k) op(B) (k, c) in the wire dtype; cw weighs
   * the check by the result columns' inverse key scales (NULL: unweighted). */
  bool (*check)(tempo_scheme *sc, int r, int k, int c, const void *A, bool at, const void *B, bool bt,
                const void *C, const float *cw, uint64_t seed);
  /* Optional (NULL: the engine gathers every result and calls finish). The verified results
   * of whole instances [lo, hi) of a single-share product: Y' (forward), or dX' and/or dW'
   * (backward; NULL when not asked), decoded into pr's outputs straight from the reply. */
  void (*take_instances)(tempo_scheme *sc, const tempo_product *pr, int lo, int hi, const void *y_or_dx,
                         const void *dw);
  /* Optional (NULL: gathered). The verified rows [lo, hi) of a single-share row split's Y'
   * (forward) or dX' (backward), decoded into pr's outputs straight from the reply, while
   * other blocks are still being computed. dW' partials are gathered all the same. */
  void (*take_rows)(tempo_scheme *sc, const tempo_product *pr, int lo, int hi, const void *y_or_dx);
  /* After the round: res[s] is share s's whole Y' or dX' (NULL: taken by take_rows), dw[s]
   * its whole dW' (NULL when not asked), gathered by the engine or its reply; combines the
   * shares and decodes into pr's outputs. Not called when take_instances took everything.
   * Returns -1, or with dx_deferred set the share whose dX' failed the check inside the
   * combine: then nothing was decoded (the error is set) and the engine recomputes that
   * share and calls finish again. */
  int (*finish)(tempo_scheme *sc, const void *state, const tempo_product *pr, const void *const *res,
                const void *const *dw);
  /* Optional (used when fused_forward is set, batch-1 products only): checks rows [lo, hi)
   * of a forward's Y', the payload y, against what encode formed while blinding (X'(W'v)
   * inside the X' pass). False when it fails. */
  bool (*check_forward)(tempo_scheme *sc, const void *state, const tempo_product *pr, int lo, int hi, const void *y);
  /* Optional (likewise): checks a dW' computed from rows [lo, hi) of X' and dY* (a row
   * block's partial, or all rows for a sum), with the left vector whose X'r the training
   * forward formed in its X' pass: r^T dW' against (X'r)^T dY*, reading dY* only. */
  bool (*check_dw)(tempo_scheme *sc, const void *state, const tempo_product *pr, int lo, int hi, const void *dw);
  /* Optional (likewise, for a batch-1 backward whose dX is not accumulated): checks rows
   * [lo, hi) of dX' and decodes them in one pass (the check's dX'v formed in the decryption);
   * on a failure the rows written are garbage that the recomputed block overwrites. With
   * pr->dXs the rows are decoded a chunk at a time into scratch and added to the sink once
   * the chunk passed; the engine calls it for the blocks in row order (a block's recomputation
   * again before the next one), a failed block's chunks that passed stay added, and its
   * recomputation adds only the rows after them. */
  bool (*check_take_dx)(tempo_scheme *sc, const void *state, const tempo_product *pr, int lo, int hi,
                        const void *dx);
  void (*free)(tempo_scheme *sc);
} tempo_scheme_ops;

struct tempo_scheme {
  const tempo_scheme_ops *ops;
  const char *name;         /* error and eviction messages */
  int shares;               /* results per product */
  int min_workers;          /* workers a product needs (shares on distinct workers) */
  uint16_t dtype;           /* TEMPO_DTYPE_*: of every operand and result on the wire */
  int verify_rounds;        /* Freivalds vectors per check; 0 = no checks */
  tempo_keygen *kg;         /* the engine's key stream (keys, masks); borrowed, set by the engine */
  tempo_keygen *vg;         /* the engine's verification stream (check vectors); borrowed, likewise */
  bool fused_forward;       /* encode prepares the checks of batch-1 products (the large row-split ones:
                             * many small batched instances check faster after arrival): the engine then
                             * calls check_forward, check_dw and check_take_dx for them */
  uint64_t bytes;           /* bytes its passes read and wrote since the engine last took them */
  bool can_mix;             /* products of the MIXED route can be sent (tempo_product.mixed; shield: its
                             * masks already hide them); false: the master computes them */
  int precision;            /* tempo_precision the worker whose result is checked declared: the engine
                             * sets it before each check (the check's bound follows it, obf.h) */
  bool x_rows;              /* encode can read a batch-1 forward's X from a row source (tempo_product.Xr) */
  int dw_parts;             /* chain partials in the dW' check_dw checks (1: one worker's block): the
                             * engine sets it before each check_dw (tempo_verify_left's `parts`) */
  int share;                /* the share whose result check_forward / check_dw check: the engine sets
                             * it before each call (0 for single-share schemes) */
  bool dx_in_finish;        /* finish can check a batch-1 backward's dX' shares inside its combine */
  bool dx_deferred;         /* set by the engine before a backward's prepare (cleared by prepare when
                             * it cannot): encode forms that check's sums in the dY pass, the engine
                             * does not check dX' on arrival, finish does (above) */
};

/* Plain (identity keys: Enc/Dec are copies) or tempo (fresh keys per product) on float32. */
TEMPO_WUR tempo_status tempo_scheme_tempo_create(const tempo_mm_config *cfg, tempo_scheme **out);
/* Shield (shield.h, docs/shield.md): tempo keys plus fresh additive masks, four shares;
 * cfg->shield_f32 and cfg->shield_alpha choose dtype and mask scale. */
TEMPO_WUR tempo_status tempo_scheme_shield_create(const tempo_mm_config *cfg, tempo_scheme **out);
/* Shield only: new mask scale / dtype for the following products (false: not a shield scheme). */
bool tempo_scheme_shield_configure(tempo_scheme *sc, bool f32, double alpha);

#endif
