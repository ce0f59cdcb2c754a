/* registry.c - model names -> network files (the built-ins, compiled in from the nets folder), the
 * shared create/free, and the reference C builders kept for the equivalence test. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tempo/model.h"
#include "tempo/netfile.h"
#include "models/graph.h"

/* The built-in models, in `tempo models` order: each is nets/<name>.net. */
static const char *const public_names[] = {"mlp", "resnet20", "resnet18", "resnet50", "vit-mini", "vit-tiny", NULL};

typedef struct {
  const char *name;
  tempo_status (*init)(tempo_model *m);
} model_entry;

/* The reference builders. Each family constructor reads m->cfg.name to pick its variant. The
 * test-only variants (small shapes for the golden fixtures) exist only here. */
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

const char *const *tempo_model_names(void) { return public_names; }

static tempo_status unknown(const char *name) {
  char list[256] = "";
  for (const char *const *n = tempo_model_names(); *n; n++) {
    strncat(list, *n, sizeof list - strlen(list) - 1);
    if (n[1]) strncat(list, ", ", sizeof list - strlen(list) - 1);
  }
  return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT,
                         "unknown model '%s' (choose one of: %s; a network of your own: --net FILE)", name, list);
}

/* An empty model for cfg: the constructor fills ops, impl and the registry. */
static tempo_status model_new(const tempo_model_config *cfg, tempo_mm *mm, uint64_t seed, tempo_model **out) {
  *out = NULL;
  if (cfg->in_c < 1 || cfg->in_h < 1 || cfg->in_w < 1 || cfg->num_classes < 2 || cfg->max_batch < 1)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "bad model configuration for '%s'", cfg->name);
  tempo_model *m = calloc(1, sizeof *m);
  if (!m) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "out of memory creating model");
  m->cfg = *cfg;
  m->mm = mm;
  m->training = true;
  tempo_rng_seed(&m->rng, seed, 0x6d6f64656cULL);
  tempo_params_init(&m->params);
  *out = m;
  return TEMPO_STATUS_OK;
}

static tempo_status model_done(tempo_model *m, tempo_status st, tempo_model **out) {
  if (st) {
    tempo_model_free(m);
    *out = NULL;
    return st;
  }
  *out = m;
  return TEMPO_STATUS_OK;
}

tempo_status tempo_model_create_net(const tempo_net *net, const tempo_model_config *cfg, tempo_mm *mm, uint64_t seed,
                                    tempo_model **out) {
  tempo_model_config c = *cfg;
  snprintf(c.name, sizeof c.name, "%s", net->name);
  tempo_model *m;
  tempo_status st = model_new(&c, mm, seed, &m);
  if (st) return st;
  return model_done(m, tempo_graph_init(m, net), out);
}

tempo_status tempo_model_create_reference(const tempo_model_config *cfg, tempo_mm *mm, uint64_t seed,
                                          tempo_model **out) {
  *out = NULL;
  const model_entry *e = NULL;
  for (size_t i = 0; i < sizeof entries / sizeof entries[0]; i++)
    if (strcmp(entries[i].name, cfg->name) == 0) e = &entries[i];
  if (!e) return unknown(cfg->name);
  tempo_model *m;
  tempo_status st = model_new(cfg, mm, seed, &m);
  if (st) return st;
  return model_done(m, e->init(m), out);
}

tempo_status tempo_model_create(const tempo_model_config *cfg, tempo_mm *mm, uint64_t seed, tempo_model **out) {
  *out = NULL;
  const char *text = tempo_net_builtin_text(cfg->name);
  if (!text) {
    for (size_t i = 0; i < sizeof entries / sizeof entries[0]; i++)
      if (strcmp(entries[i].name, cfg->name) == 0) return tempo_model_create_reference(cfg, mm, seed, out);
    return unknown(cfg->name);
  }
  char file[64];
  snprintf(file, sizeof file, "nets/%s.net", cfg->name);
  tempo_net *net = NULL;
  tempo_status st = tempo_net_parse(text, strlen(text), file, &net);
  if (!st) st = tempo_model_create_net(net, cfg, mm, seed, out);
  tempo_net_free(net);
  return st;
}

void tempo_model_free(tempo_model *m) {
  if (!m) return;
  if (m->ops && m->ops->destroy) m->ops->destroy(m);
  tempo_params_free(&m->params);
  free(m);
}
