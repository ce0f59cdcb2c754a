/* rows.h - a matrix operand given row by row instead of materialised (issue 12, item 3).
 *
 * A lowered convolution's X (the im2col of its input, m x n with n = taps x channels) is
 * several times larger than the activation it is made from. A row source lets the passes
 * that read X (the master's Enc pass of a blinded product) gather each row from the
 * activation into a small scratch and blind it straight away, so the plaintext column
 * matrix is never written (src/nn/conv.c makes one; matmul.h tempo_mm_forward_rows takes
 * it; src/obf/passes.c and mix.c read it). */
#ifndef TEMPO_ROWS_H
#define TEMPO_ROWS_H

#include <stddef.h>
#include <stdint.h>

#include "tempo/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Rows wider than this are not given by a source (the passes keep L1-sized scratch of a few
 * rows on their stack); a caller with wider rows materialises X. */
#define TEMPO_ROWS_MAX_COLS 4096

typedef struct {
  /* Writes rows [lo, hi) of the matrix, `cols` floats each, back to back into dst. It may
   * be called from several threads at once for disjoint ranges and in any row order, so
   * it writes nothing but dst; it neither fails nor allocates. */
  void (*fill)(const void *ctx, int lo, int hi, float *dst);
  /* Optional (NULL: none): a hint that row `row` will be filled soon, so that a pass reading
   * rows in random order (a key with mixing blocks gathers output row i from input row
   * perm[i]) can have the source's cache lines fetched while it works on earlier rows. It
   * issues prefetch instructions only: it reads and writes nothing and never fails. */
  void (*prefetch)(const void *ctx, int row);
  const void *ctx; /* the owner's (a conv layer and its input); kept alive while the product runs */
  int rows, cols;  /* the matrix's shape (cols <= TEMPO_ROWS_MAX_COLS) */
  uint64_t bytes;  /* what reading every row once reads from memory (the source tensor once), for
                    * the master's byte accounting (tempo_mm_stats.master_bytes) */
} tempo_rows;

/* The other direction: a matrix result taken row by row instead of materialised. A lowered
 * convolution's dX (m x n, the gradient of its column matrix) is only ever scattered into the
 * activation gradient (col2im); a row sink lets the master's Dec pass of a blinded backward
 * add each verified row there straight away, so the column matrix is never written or read
 * again (src/nn/conv.c makes one; matmul.h tempo_mm_backward_rows takes it). */
typedef struct {
  /* Adds row `row` (cols floats) into the destination. Called from one thread at a time, each
   * row exactly once per product, in any order; it neither fails nor allocates. */
  void (*add)(const void *ctx, int row, const float *src);
  /* Optional (NULL: none): a hint that row `row` will be added soon (rows arrive in random
   * order), so the destination's lines can be fetched meanwhile; prefetches only. */
  void (*prefetch)(const void *ctx, int row);
  const void *ctx; /* the owner's (a conv layer and its gradient); kept alive while the product runs */
  int rows, cols;  /* the matrix's shape */
  uint64_t bytes;  /* what adding every row once writes to the destination (byte accounting: as the
                    * column matrix's write it replaces) */
} tempo_rows_sink;

/* Hints rows perm[i] for i in [lo, hi) and i < rows (r->prefetch; nothing without it). */
void tempo_rows_prefetch(const tempo_rows *r, const uint32_t *perm, int lo, int hi);

/* The first non-finite element of the matrix (row-major index; its value in *value), or -1
 * (every row filled once, in chunks on the stack). */
long tempo_rows_find_nonfinite(const tempo_rows *r, float *value);

#ifdef __cplusplus
}
#endif
#endif
