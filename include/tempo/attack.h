/* attack.h - the security evaluation's attacks on audit trails (docs/SECURITY.md).
 *
 * Analysis tooling of the program tempo-attack: it reads what workers saw (audit.h) and
 * tries to recover secrets from it. Never linked into the worker program, nor into the
 * master `tempo` that the enclave runs (tests/test_enclave_binary.sh checks it with nm).
 *
 * Building blocks (each tested on planted cases in tests/test_attack*.c):
 *   Sinkhorn balancing of |A|: canonicalises a matrix up to positive row/column scales.
 *     For A' = D1 P A Q D2 (the blinding of every operand), balance(A') = P balance(A) Q.
 *   Linear assignment (Hungarian, O(n^3)) on a cost matrix.
 *   Weight matching: recovers the row and column permutations of a blinded weight against
 *     a prior (sorted balanced row signatures, then aligned columns, alternated).
 *   Co-occurrence linking: recovers which columns of one product's input are which columns
 *     of the previous product's output from their sign patterns (invariant to row order).
 *   Patch recovery: recovers the column permutation of the first layer's blinded input
 *     against public data (correlation matching) and each patch up to its scale.
 *   Direction matching: weight matching by the cosine of centred balanced vectors.
 *   Whole images / feature maps: chains the rows of a blinded 3x3 im2col into the batch's
 *     images (first layer) or feature maps (later convs) from exact window overlaps.
 *
 * Conventions: matrices are row-major float; permutations are int arrays where
 * perm[i] = the index in the reference (prior/truth) of row i of the blinded matrix. */
#ifndef TEMPO_ATTACK_H
#define TEMPO_ATTACK_H

#include "tempo/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the trail: one step's forward products, reassembled ---- */
typedef struct {
  int batch, m, n, p;
  bool w_trans;
  float *x; /* X' (batch, m, n), or NULL when not inline in the trail */
  float *w; /* W' stored layout: (batch, p, n) with w_trans, else (batch, n, p); or NULL */
  float *y; /* Y' (batch, m, p), or NULL when the results are missing */
  float *dy; /* dY* (batch, m, p) of the step's backward (same key), or NULL */
  uint32_t x_rows, y_rows, dy_rows; /* rows (batch 1) or instances (batch > 1) received */
} tempo_trail_product;

typedef struct {
  int n, cap;
  tempo_trail_product *prods; /* forward products in the order they were sent */
} tempo_trail_step;

/* Reads <dir>/trail.tat and reassembles the forward products of training step `step`
 * (0-based; steps are separated by RELEASE messages). Only requests with KEEP (training
 * forwards) are taken. Errors: IO / CORRUPT from the reader, NOT_FOUND-like
 * INVALID_ARGUMENT when the step is not in the trail, NO_MEMORY. */
TEMPO_WUR tempo_status tempo_trail_load_step(const char *dir, int step, tempo_trail_step *out);
void tempo_trail_step_free(tempo_trail_step *s);

/* ---- building blocks ---- */
/* Row and column factors (r), (c) such that rf[i] |A[i][j]| cf[j] has row sums c and
 * column sums r (all-zero rows/columns get factor 1). Returns the final max relative
 * deviation of the row sums. */
double tempo_sinkhorn(const float *A, int r, int c, int iters, double *rf, double *cf);
/* B = rf A cf (signed), (r, c). */
void tempo_balance_apply(const float *A, int r, int c, const double *rf, const double *cf, float *B);
/* Both: B = A balanced by its Sinkhorn factors (rf, cf are scratch of r and c doubles).
 * Returns tempo_sinkhorn's deviation. */
double tempo_balance(const float *A, int r, int c, int iters, double *rf, double *cf, float *B);

/* Minimum-cost perfect assignment of an (n, n) cost matrix: assign[i] = column of row i.
 * Returns the total cost. NO_MEMORY on allocation failure (*total untouched). */
TEMPO_WUR tempo_status tempo_assign(const double *cost, int n, int *assign, double *total);

/* Weight matching. Wb (r, c) is a blinded weight, W0 (r, c) the attacker's prior in the
 * same layout. Recovers row_perm (r) and col_perm (c) (index in W0 of each row/column of
 * Wb) and, when rec != NULL, the recovered weight rec (r, c) in W0's order and scale:
 * rec[row_perm[i]][col_perm[j]] = balanced(Wb)[i][j] / (rf0[row_perm i] cf0[col_perm j]). */
TEMPO_WUR tempo_status tempo_attack_match_weight(const float *Wb, const float *W0, int r, int c, int rounds,
                                                 int *row_perm, int *col_perm, float *rec);

/* Co-occurrence linking. Yb (m1, p) is a product's blinded output, Xb (m2, n) the next
 * product's blinded input, whose columns are units of Y (several columns may be the same
 * unit, e.g. im2col offsets). Sets link[j] = the column of Yb that column j of Xb comes
 * from, using only sign patterns (> 0) and their co-occurrence counts. */
TEMPO_WUR tempo_status tempo_attack_link(const float *Yb, int m1, int p, const float *Xb, int m2, int n, int *link);

/* Patch recovery. Xb (m, n) is the first product's blinded input, Xpub (mp, n) the same
 * product on public data (plaintext). Recovers col_perm (n): the public column of each
 * column of Xb, by matching the correlation matrices of the balanced columns, and writes
 * rec (m, n): each row of Xb with its columns put back in order and public column
 * scales, scaled so that its minimum equals `floor_value` (the normalised value of a
 * black pixel, which almost every patch holds; 0 = leave the scale to the caller). */
TEMPO_WUR tempo_status tempo_attack_patches(const float *Xb, int m, const float *Xpub, int mp, int n,
                                            float floor_value, int *col_perm, float *rec);

/* Direction matching (ArrowMatch-style, USENIX Security 2025): like
 * tempo_attack_match_weight, but rows and columns of the balanced matrices are compared by
 * cosine similarity of their centred, unit-norm vectors (sorted for the first, order-free
 * pass; aligned through the other dimension's current permutation afterwards), which a
 * uniform drift of a row's or column's magnitude (fine-tuning) does not move. Same outputs. */
TEMPO_WUR tempo_status tempo_attack_match_cosine(const float *Wb, const float *W0, int r, int c, int rounds,
                                                 int *row_perm, int *col_perm, float *rec);

/* Whole-image recovery (src/attack/image.c) from the blinded im2col of a batch of
 * single-channel images (3x3 windows, stride 1, zero padding 1: rows (batch*h*w), 9 columns),
 * with a uniform background of normalised value `black` (< 0). Uses the padding zeros (tap
 * geometry), the background rows (column scales), the overlaps of neighbouring windows
 * (chains of rows with relative scales), the black level (absolute scale) and the border
 * rows (position); see the file's comment. */
typedef struct {
  int batch, h, w;
  float black;
} tempo_image_geom;

typedef struct {
  int background_rows; /* rows of the background direction */
  long links;          /* unique neighbour links found */
  long conflicts;      /* links contradicting a piece's positions */
  int pieces;          /* connected pieces (singletons included) */
  long placed_rows;    /* rows in the batch's largest pieces, placed into images */
  int anchored;        /* piece axes anchored by border rows (at most 2 per image) */
  int symmetry;        /* the square symmetry chosen against the public mean (0 = none) */
} tempo_image_stats;

/* img (batch, h, w): the recovered images in normalised units (unplaced pixels: black),
 * in no particular sample order. pub_mean (h, w), optional: the mean normalised image of
 * public data, to choose the orientation. Errors: INVALID_ARGUMENT (shape), MISMATCH (no
 * padding pattern or no background: the input is not such an im2col), NO_MEMORY. */
TEMPO_WUR tempo_status tempo_attack_images(const float *Xb, int m, int n, const tempo_image_geom *g,
                                           const float *pub_mean, float *img, tempo_image_stats *stats);

/* Feature-map recovery (src/attack/fmap.c) from the blinded input of a later 3x3 conv: the
 * tap-major im2col (rows (batch*h*w), n = 9 C columns) of a post-ReLU map with a uniform
 * background. maps (batch, h, w, L), room for (batch, h, w, n / 9): the recovered maps of the
 * L channels live on the background, each in units of its background value; col_of
 * (9 L): the blinded column of tap t of recovered channel a at [t * L + a]; *live_per_tap = L.
 * Same errors as tempo_attack_images. */
TEMPO_WUR tempo_status tempo_attack_fmaps(const float *Xb, int m, int n, int batch, int h, int w, float *maps,
                                          int *col_of, int *live_per_tap, tempo_image_stats *stats);

/* ---- the suite on a trail (src/attack/suite.c) ---- */
typedef struct {
  const char *audit_dir;  /* the trail under attack */
  const char *prior;      /* checkpoint the attacker knows, or NULL (then: a fresh init, another seed) */
  const char *truth_dir;  /* plain-mode trail of the same run (same seed), for scoring only */
  const char *public_dir; /* plain-mode trail on public data, for input recovery */
  const char *model;      /* architecture name (public) */
  const char *data_dir;   /* dataset folder for model theft (test split, 1% of train) */
  int step;               /* step of the trail to attack (default 0) */
  int batch;              /* the run's batch size (public; default 32): the image attacks' geometry */
  int finetune_steps;     /* theft: SGD steps on 1% of the train split (default 150) */
  int eval_samples;       /* theft: test samples evaluated (default 2000) */
  const char *json_out;   /* write the results as one JSON object here, or NULL */
  int roles, role;        /* shield mode: each product is `roles` products (one per role, in
                           * order); attack the view of role `role` (default 1, 0) */
} tempo_attack_config;

void tempo_attack_config_default(tempo_attack_config *cfg);
/* Runs every attack that the given inputs allow and prints the figures to stdout. */
TEMPO_WUR tempo_status tempo_attack_run(const tempo_attack_config *cfg);

#ifdef __cplusplus
}
#endif
#endif
