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

#endif
