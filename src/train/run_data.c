/* run_data.c - loading a run's dataset and checking the model against it (see run_data.h). */
#include "train/run_data.h"

tempo_status tempo_run_load_data(tempo_dataset_kind kind, const char *data_dir, const tempo_npy_config *npy,
                                 const tempo_owner_key *key, const char *resume, tempo_dataset *train,
                                 tempo_dataset *test) {
  if (kind != TEMPO_DATASET_NPY) {
    tempo_status st = tempo_dataset_load_sealed(kind, data_dir, true, key, train);
    return st ? st : tempo_dataset_load_sealed(kind, data_dir, false, key, test);
  }
  if (resume && !npy->train_x)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "%s was trained on npy data: pass its files again (--train-x, "
                           "--train-y and --test-x, --test-y as before) to resume", resume);
  return tempo_npy_load(npy, key, train, test);
}

tempo_status tempo_run_load_eval_data(const char *path, tempo_dataset_kind kind, int classes, const char *data_dir,
                                      const tempo_npy_config *npy, const tempo_owner_key *key, tempo_dataset *test) {
  if (kind != TEMPO_DATASET_NPY) return tempo_dataset_load_sealed(kind, data_dir, false, key, test);
  if (!npy || !npy->test_x)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "%s was trained on npy data: pass the test split (--test-x, "
                           "--test-y) and the training split (--train-x, --train-y: its statistics normalise the "
                           "inputs) or the run's --mean and --std", path);
  tempo_npy_config nc = *npy;
  if (nc.num_classes == 0) nc.num_classes = classes;
  if (nc.num_classes != classes)
    return tempo_set_error(TEMPO_STATUS_MISMATCH, "%s predicts %d classes, not --classes %d", path, classes,
                           nc.num_classes);
  return tempo_npy_load(&nc, key, NULL, test);
}

tempo_status tempo_run_check_model(const tempo_model *m, const tempo_dataset *d) {
  const tempo_model_config *k = &m->cfg;
  const char *data = tempo_dataset_kind_name(d->kind);
  if (k->in_c != d->c || k->in_h != d->h || k->in_w != d->w)
    return tempo_set_error(TEMPO_STATUS_MISMATCH, "model '%s' takes %dx%dx%d inputs (channels x height x width) but "
                           "the %s images are %dx%dx%d: change the network's input or the data", k->name, k->in_c,
                           k->in_h, k->in_w, data, d->c, d->h, d->w);
  if (k->num_classes != d->num_classes)
    return tempo_set_error(TEMPO_STATUS_MISMATCH, "model '%s' predicts %d classes but the %s data has %d (labels "
                           "0..%d)%s", k->name, k->num_classes, data, d->num_classes, d->num_classes - 1,
                           d->kind == TEMPO_DATASET_NPY && k->num_classes > d->num_classes
                               ? ": pass --classes N when some classes are absent from the training labels" : "");
  return TEMPO_STATUS_OK;
}
