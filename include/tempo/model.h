/* model.h - the model interface and registry.
 *
 * A model owns its parameter registry (params.h: data, grad, state in one buffer each),
 * its activation buffers (allocated once for cfg.max_batch samples and reused every
 * step), and a pointer to the matmul engine it sends every product through (not owned).
 * Input x is (batch, c, h, w) normalised float32; logits are (batch, num_classes).
 *
 * Step protocol (training): zero grads, forward (training = true), loss, backward
 * (accumulates into params.grad), optimizer step, tempo_mm_step_end(). The model keeps
 * what backward needs from the last forward, so a backward must follow its forward
 * before the next forward. */
#ifndef TEMPO_MODEL_H
#define TEMPO_MODEL_H

#include "tempo/matmul.h"
#include "tempo/params.h"
#include "tempo/rng.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  char name[32];       /* "mlp", "resnet20", "resnet18", "resnet50", "vit-mini", "vit-tiny" */
  int in_c, in_h, in_w; /* 1x28x28 or 3x32x32 */
  int num_classes;     /* 10 */
  int max_batch;       /* activations are allocated for this many samples */
  float dropout;       /* ViT dropout probability (0 = off) */
} tempo_model_config;

typedef struct tempo_model tempo_model;

typedef struct {
  /* logits (batch, num_classes) for x (batch, c, h, w); batch <= max_batch. */
  TEMPO_WUR tempo_status (*forward)(tempo_model *m, const float *x, int batch, float *logits);
  /* Accumulates parameter gradients for dlogits (batch, num_classes) of the last forward. */
  TEMPO_WUR tempo_status (*backward)(tempo_model *m, const float *dlogits, int batch);
  /* Frees impl (the registry is freed by tempo_model_free). */
  void (*destroy)(tempo_model *m);
} tempo_model_ops;

struct tempo_model {
  const tempo_model_ops *ops;
  tempo_model_config cfg;
  tempo_params params;
  tempo_mm *mm;   /* the matmul entry point; not owned */
  bool training;  /* batch norm statistics, dropout */
  tempo_rng rng;  /* initialisation, then dropout */
  void *impl;
};

/* Creates a model by cfg->name, initialised from seed. The built-in models are built from
 * their network files (nets/<name>.net, compiled in: tempo_net_builtin_text). Unknown name or
 * input shape the model cannot take -> TEMPO_STATUS_INVALID_ARGUMENT (unknown names get a
 * message listing valid names) or TEMPO_STATUS_MISMATCH (shapes, with the layer's
 * FILE:LINE:COLUMN). The test-only names (resnet-test, resnet-test-bneck, vit-test: small
 * golden fixtures) are accepted but not listed. */
TEMPO_WUR tempo_status tempo_model_create(const tempo_model_config *cfg, tempo_mm *mm, uint64_t seed,
                                          tempo_model **out);
/* Creates a model from a parsed network file (netfile.h) for cfg's input shape, classes,
 * max_batch and dropout (cfg->name is ignored: the model is named net->name). A file that
 * declares its input or classes must match cfg's (TEMPO_STATUS_MISMATCH). net is not kept. */
typedef struct tempo_net tempo_net;
TEMPO_WUR tempo_status tempo_model_create_net(const tempo_net *net, const tempo_model_config *cfg, tempo_mm *mm,
                                              uint64_t seed, tempo_model **out);
/* The reference C builders (mlp.c, resnet.c, vit.c) by name, the test-only names included:
 * kept only so that tests/test_netfile.c can show that the shipped files give the same
 * parameters and losses bit for bit. */
TEMPO_WUR tempo_status tempo_model_create_reference(const tempo_model_config *cfg, tempo_mm *mm, uint64_t seed,
                                                    tempo_model **out);
void tempo_model_free(tempo_model *m);
/* The built-in model names (the files under nets/), NULL-terminated. */
const char *const *tempo_model_names(void);

/* Family constructors, called by tempo_model_create with m->cfg, m->mm and m->rng set and
 * m->params initialised: they set ops and impl, declare and finalise params, initialise them. */
TEMPO_WUR tempo_status tempo_mlp_init(tempo_model *m);
/* resnet20, resnet18, resnet50 and the test-only resnet-test, resnet-test-bneck (resnet.c). */
TEMPO_WUR tempo_status tempo_resnet_init(tempo_model *m);
/* vit-mini, vit-tiny, vit-test (src/models/vit.c). */
TEMPO_WUR tempo_status tempo_vit_init(tempo_model *m);

#ifdef __cplusplus
}
#endif
#endif
