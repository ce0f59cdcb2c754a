/* attack_internal.h - helpers shared by the suite's files (not installed). */
#ifndef TEMPO_ATTACK_INTERNAL_H
#define TEMPO_ATTACK_INTERNAL_H

#include "tempo/attack.h"
#include "tempo/data.h"
#include "tempo/model.h"
#include "tempo/optim.h"

#define ATTACK_BATCH 128

typedef struct {
  tempo_mm *mm;
  tempo_model *model;
} tempo_attack_model;

TEMPO_WUR tempo_status tempo_attack_model_create(const char *name, uint64_t seed, tempo_attack_model *out);
void tempo_attack_model_free(tempo_attack_model *a);
TEMPO_WUR tempo_status tempo_attack_accuracy(tempo_attack_model *a, const tempo_dataset *test, int samples,
                                             double *acc);
TEMPO_WUR tempo_status tempo_attack_finetune(tempo_attack_model *a, const tempo_dataset *small, int steps, float lr);
TEMPO_WUR tempo_status tempo_attack_recalibrate(tempo_attack_model *a, const tempo_dataset *small, int batches);
TEMPO_WUR tempo_status tempo_attack_subset(const tempo_dataset *d, int n, tempo_dataset *out);

int tempo_attack_cmp_float(const void *a, const void *b);
int tempo_attack_cmp_double(const void *a, const void *b);

/* The chaining and placement of whole-image recovery (image.c), for any number cl of values
 * per tap: u (m, 9, cl) the rows with column scales removed, taps in order and channels
 * aligned across taps; pad (m) each row's padded taps (bit t). Links rows by exact overlaps,
 * places the B largest pieces into img (B, H, W, cl), everything else `fill`. Each piece's
 * scale: level < 0, its minimum is `level` (a black level); level > 0, its most frequent
 * value is `level` (a background value). Counts go to s (added). */
TEMPO_WUR tempo_status tempo_attack_chain(const double *u, const uint16_t *pad, int m, int cl, int B, int H, int W,
                                          double level, float fill, float *img, tempo_image_stats *s);

#endif
