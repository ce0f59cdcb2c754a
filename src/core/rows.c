/* rows.c - helpers for matrices given by rows (rows.h). */
#include "tempo/rows.h"

#include "tempo/common.h"

void tempo_rows_prefetch(const tempo_rows *r, const uint32_t *perm, int lo, int hi) {
  if (!r->prefetch) return;
  for (int i = lo; i < hi && i < r->rows; i++) r->prefetch(r->ctx, (int)perm[i]);
}

long tempo_rows_find_nonfinite(const tempo_rows *r, float *value) {
  float buf[TEMPO_ROWS_MAX_COLS];
  const int per = r->cols > 0 && r->cols <= TEMPO_ROWS_MAX_COLS ? TEMPO_ROWS_MAX_COLS / r->cols : 0;
  for (int lo = 0; per > 0 && lo < r->rows; lo += per) {
    const int hi = r->rows - lo < per ? r->rows : lo + per;
    r->fill(r->ctx, lo, hi, buf);
    const long at = tempo_floats_find_nonfinite(buf, (size_t)(hi - lo) * (size_t)r->cols);
    if (at >= 0) {
      *value = buf[at];
      return (long)lo * r->cols + at;
    }
  }
  return -1;
}
