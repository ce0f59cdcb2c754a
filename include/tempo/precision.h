/* precision.h - the compute precision a worker declares when it connects (issue 16.4).
 *
 * A worker's float32 products are computed with float32 operands and accumulation (FP32),
 * with operands rounded to TF32 (10-bit mantissa) or BF16 (7-bit) and float32 accumulation,
 * or in FP16 (10-bit operands, possibly 16-bit accumulation). The master's integrity check
 * (obf.h, tempo_verify_model) sizes its tolerance from the declaration, so a result that is
 * outside what the declared precision can produce is a cheat, and `--min-precision P`
 * refuses workers that declare less than P. The values are ordered from the most precise
 * (0) to the least; they travel in the hello's precision field (protocol.h). */
#ifndef TEMPO_PRECISION_H
#define TEMPO_PRECISION_H

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  TEMPO_PRECISION_FP32 = 0,
  TEMPO_PRECISION_TF32 = 1,
  TEMPO_PRECISION_BF16 = 2,
  TEMPO_PRECISION_FP16 = 3,
  TEMPO_PRECISION_COUNT = 4,
} tempo_precision;

/* "fp32", "tf32", "bf16", "fp16"; "unknown" for anything else. */
const char *tempo_precision_name(int p);
/* Parses one of those names into *out; false (out untouched) for anything else. */
bool tempo_precision_parse(const char *s, tempo_precision *out);
/* The unit roundoffs the check's bound uses for a declared precision: u_acc of the
 * accumulation, u_in of the operands' rounding before the products (0 for FP32). */
void tempo_precision_units(tempo_precision p, double *u_acc, double *u_in);
/* How every worker accumulates a dW' (inner dimension: its rows), whatever its precision: the
 * rows in consecutive chunks of at most TEMPO_DW_CHUNK_ROWS, each chunk summed on its own (in any
 * order) and its result added to the running sum, then a chain member adds its predecessor's
 * partial once. The master's left check counts on it (obf.h, tempo_verify_left): a long
 * sequential sum rounds the many equal terms of uniform image regions alike (docs/obfuscation.md,
 * "Verification"), and its error outgrows the bound. */
#define TEMPO_DW_CHUNK_ROWS 64
/* True when precision p is at least as precise as `min` (p <= min in the order above). */
static inline bool tempo_precision_meets(int p, int min) { return p >= 0 && p <= min; }

#ifdef __cplusplus
}
#endif
#endif
