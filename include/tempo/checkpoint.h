/* checkpoint.h - training checkpoints: everything needed to evaluate a model or to resume
 * its exact trajectory (parameters, batch-norm state, optimizer state, the loop position
 * and the random-generator state).
 *
 * File layout (all little-endian, fixed width; docs/checkpoint-format.md):
 *   "TMPOCKPT" magic, u32 version, u32 header bytes, the header fields, the optimizer's
 *   step, (version 2) the engine's random-stream record, then the f32 arrays (params,
 *   state, optimizer state), then a 32-byte BLAKE2b checksum of all that precedes it.
 *   Files are written atomically (temp file + rename). Readers validate magic, version,
 *   sizes against the model and the checksum before using anything. Version 1 files
 *   (no dropout, augmentation or stream record) are still read.
 *
 * The stream record (tempo_mm_streams_save) reproduces every key of the run: a checkpoint
 * holding one is as secret as the keys. It is written only into the master's
 * checkpoint.ckpt (sealed when the run has an owner key), never into model.ckpt, and
 * every buffer and meta struct that held it is wiped. */
#ifndef TEMPO_CHECKPOINT_H
#define TEMPO_CHECKPOINT_H

#include "tempo/optim.h"
#include "tempo/params.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TEMPO_CKPT_VERSION 2
#define TEMPO_CKPT_STREAMS_MAX 256 /* bytes of the stream record (>= TEMPO_MM_STREAMS_MAX) */

typedef struct {
  char model[32];    /* model name */
  int32_t in_c, in_h, in_w, num_classes;
  char dataset[32];  /* dataset name the model was trained on */
  uint64_t seed;
  int64_t step;            /* optimizer steps done */
  int32_t epoch;           /* position of the next batch: epoch ... */
  int32_t batch_in_epoch;  /* ... and batch index within it */
  int32_t batch_size;
  int32_t epochs;          /* the run's planned epochs */
  int64_t max_steps;       /* the run's step limit (0 = none) */
  tempo_optim_config optim;
  uint64_t rng[4];         /* the model's generator (dropout) */
  uint64_t param_count, state_count, optim_count;
  float dropout;           /* version 2: the model's dropout probability (0 in version 1 files) */
  bool augment;            /* version 2: random crop + flip of the training batches */
  bool v1;                 /* parse: the file is version 1 (dropout, augment, streams unknown) */
  uint32_t streams_len;    /* version 2: bytes in streams; 0 = none (local mode, model.ckpt) */
  uint8_t streams[TEMPO_CKPT_STREAMS_MAX]; /* the engine's random streams: a secret (wipe the struct) */
} tempo_ckpt_meta;

/* Serialises into a malloc'ed buffer (caller frees). opt may be NULL (no optimizer state). */
TEMPO_WUR tempo_status tempo_ckpt_serialize(const tempo_ckpt_meta *meta, const tempo_params *p,
                                            const tempo_optim *opt, uint8_t **out, size_t *len);
/* Validates buf and fills meta. Then, when p != NULL, copies parameters and state into p
 * (whose counts must match: TEMPO_STATUS_MISMATCH otherwise) and, when opt != NULL,
 * the optimizer state and step into opt (initialised for p with meta.optim). */
TEMPO_WUR tempo_status tempo_ckpt_parse(const uint8_t *buf, size_t len, const char *what, tempo_ckpt_meta *meta,
                                        tempo_params *p, tempo_optim *opt);
TEMPO_WUR tempo_status tempo_ckpt_save(const char *path, const tempo_ckpt_meta *meta, const tempo_params *p,
                                       const tempo_optim *opt);
TEMPO_WUR tempo_status tempo_ckpt_load(const char *path, tempo_ckpt_meta *meta, tempo_params *p, tempo_optim *opt);

/* Sealed checkpoints (seal.h, label TEMPO_SEAL_LABEL_CHECKPOINT): the serialised checkpoint
 * encrypted and authenticated with the owner key, written atomically; the plaintext buffer
 * is wiped. With key NULL these are tempo_ckpt_save/tempo_ckpt_load. Loading with a key
 * refuses a plain checkpoint (TEMPO_STATUS_CORRUPT: the host could have substituted it);
 * tempo_ckpt_load on a sealed file says that a key is needed (TEMPO_STATUS_INVALID_ARGUMENT). */
typedef struct tempo_owner_key tempo_owner_key;
TEMPO_WUR tempo_status tempo_ckpt_save_sealed(const char *path, const tempo_owner_key *key, const tempo_ckpt_meta *meta,
                                              const tempo_params *p, const tempo_optim *opt);
TEMPO_WUR tempo_status tempo_ckpt_load_sealed(const char *path, const tempo_owner_key *key, tempo_ckpt_meta *meta,
                                              tempo_params *p, tempo_optim *opt);

#ifdef __cplusplus
}
#endif
#endif
