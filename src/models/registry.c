/* registry.c - model names -> family constructors, and the shared create/free. */
#include <stdlib.h>
#include <string.h>

#include "tempo/model.h"

typedef struct {
  const char *name;
  tempo_status (*init)(tempo_model *m);
} model_entry;

/* Each family constructor reads m->cfg.name to pick its variant. Test-only variants
 * (small shapes for golden fixtures) are registered here too. */
static const model_entry entries[] = {
    {"mlp", tempo_mlp_init},
    {"vit-mini", tempo_vit_init},
    {"vit-tiny", tempo_vit_init},
    {"vit-test", tempo_vit_init}, /* test-only: golden fixture */
    {"resnet20", tempo_resnet_init},
    {"resnet18", tempo_resnet_init},
    {"resnet50", tempo_resnet_init},
    {"resnet-test", tempo_resnet_init},       /* test-only: golden fixture */
    {"resnet-test-bneck", tempo_resnet_init}, /* test-only: golden fixture */
};

#define N_ENTRIES (sizeof entries / sizeof entries[0])
static const char *names[N_ENTRIES + 1];

const char *const *tempo_model_names(void) {
  for (size_t i = 0; i < N_ENTRIES; i++) names[i] = entries[i].name;
  names[N_ENTRIES] = NULL;
  return names;
}

tempo_status tempo_model_create(const tempo_model_config *cfg, tempo_mm *mm, uint64_t seed, tempo_model **out) {
  *out = NULL;
  const model_entry *e = NULL;
  for (size_t i = 0; i < sizeof entries / sizeof entries[0]; i++)
    if (strcmp(entries[i].name, cfg->name) == 0) e = &entries[i];
  if (!e) {
    char list[256] = "";
    for (const char *const *n = tempo_model_names(); *n; n++) {
      strncat(list, *n, sizeof list - strlen(list) - 1);
      if (n[1]) strncat(list, ", ", sizeof list - strlen(list) - 1);
    }
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "unknown model '%s' (choose one of: %s)", cfg->name,
                           list);
  }
  if (cfg->in_c < 1 || cfg->in_h < 1 || cfg->in_w < 1 || cfg->num_classes < 2 || cfg->max_batch < 1)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "bad model configuration for '%s'", cfg->name);
  tempo_model *m = calloc(1, sizeof *m);
  if (!m) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "out of memory creating model");
  m->cfg = *cfg;
  m->mm = mm;
  m->training = true;
  tempo_rng_seed(&m->rng, seed, 0x6d6f64656cULL);
  tempo_params_init(&m->params);
  tempo_status st = e->init(m);
  if (st) {
    tempo_model_free(m);
    return st;
  }
  *out = m;
  return TEMPO_STATUS_OK;
}

void tempo_model_free(tempo_model *m) {
  if (!m) return;
  if (m->ops && m->ops->destroy) m->ops->destroy(m);
  tempo_params_free(&m->params);
  free(m);
}
