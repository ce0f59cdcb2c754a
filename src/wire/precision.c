/* precision.c - names and unit roundoffs of the declared compute precisions (precision.h). */
#include <string.h>

#include "tempo/precision.h"

static const char *const names[TEMPO_PRECISION_COUNT] = {"fp32", "tf32", "bf16", "fp16"};

const char *tempo_precision_name(int p) { return p >= 0 && p < TEMPO_PRECISION_COUNT ? names[p] : "unknown"; }

bool tempo_precision_parse(const char *s, tempo_precision *out) {
  for (int p = 0; s && p < TEMPO_PRECISION_COUNT; p++)
    if (!strcmp(s, names[p])) {
      *out = (tempo_precision)p;
      return true;
    }
  return false;
}

/* Round to nearest has |error| <= 2^-t for t significant bits. TF32 is given 2^-10, twice its
 * round-to-nearest unit, because some conversions truncate; FP16 may also accumulate in 16 bits. */
void tempo_precision_units(tempo_precision p, double *u_acc, double *u_in) {
  switch (p) {
  case TEMPO_PRECISION_TF32: *u_acc = 0x1p-24, *u_in = 0x1p-10; break;
  case TEMPO_PRECISION_BF16: *u_acc = 0x1p-24, *u_in = 0x1p-8; break;
  case TEMPO_PRECISION_FP16: *u_acc = 0x1p-11, *u_in = 0x1p-11; break;
  default: *u_acc = 0x1p-24, *u_in = 0; break;
  }
}
