/* run_data.h - the data of a training or evaluation run (internal to train.c): loading the
 * configured dataset (built-in or npy) and checking that the model fits it. */
#ifndef TEMPO_TRAIN_RUN_DATA_H
#define TEMPO_TRAIN_RUN_DATA_H

#include "tempo/data.h"
#include "tempo/model.h"

/* Both splits of a run's dataset (key: sealed): a built-in one from data_dir, or npy's files
 * (an npy run without a test split gets a zeroed test split). resume names the checkpoint of
 * a resumed run, or is NULL. */
TEMPO_WUR tempo_status tempo_run_load_data(tempo_dataset_kind kind, const char *data_dir, const tempo_npy_config *npy,
                                           const tempo_owner_key *key, const char *resume, tempo_dataset *train,
                                           tempo_dataset *test);

/* The test split for evaluating a checkpoint (`path` in messages) of `classes` classes trained
 * on `kind`: a built-in dataset from data_dir, or the npy files of npy (which may be NULL). */
TEMPO_WUR tempo_status tempo_run_load_eval_data(const char *path, tempo_dataset_kind kind, int classes,
                                                const char *data_dir, const tempo_npy_config *npy,
                                                const tempo_owner_key *key, tempo_dataset *test);

/* TEMPO_STATUS_MISMATCH, saying which and what to do, unless the model takes d's image shape
 * and predicts d's class count (a network that declares its own may not). */
TEMPO_WUR tempo_status tempo_run_check_model(const tempo_model *m, const tempo_dataset *d);

#endif
