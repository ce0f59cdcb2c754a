/* train.h - the training loop and evaluation of the trusted master.
 *
 * tempo_train_run builds the engine (every product goes through it, in the configured
 * mode), the model and the data, trains, evaluates on the test split after each epoch and
 * at the end of a run stopped by max_steps (unless no_eval), and writes into cfg.out_dir:
 *   metrics.jsonl   a first {"type":"config", ...} object with the run's whole configuration
 *                   (model, data, every hyper-parameter, engine options, the seeds as given,
 *                   versions; never key material), one JSON object per logged step ({"step",
 *                   "epoch","loss","acc","lr","images_per_s", engine counters...}), per
 *                   evaluation ({"epoch","step","test_loss","test_acc"}) and a final
 *                   {"summary": ...} object. Every object ends with "time" (UTC, ISO 8601 with
 *                   milliseconds) and "elapsed" (seconds since the run started);
 *   checkpoint.ckpt the latest checkpoint (atomic), enough to --resume the exact trajectory
 *                   in every mode (it holds the engine's key and verification streams, a
 *                   secret: seal it with an owner key): written after each epoch's
 *                   evaluation, every checkpoint_every steps, every checkpoint_minutes of
 *                   training, when *stop becomes nonzero, and at the end;
 *   model.ckpt      the final model (for `tempo eval`).
 * Progress goes to stdout: on a terminal a progress bar refreshed at least once a second
 * (during evaluation too); otherwise one line every log_every steps and, in between, one
 * every progress_every seconds (default 10; evaluation too); nothing with quiet.
 * Non-finite values stop the run with a message naming the culprit: weights loaded from
 * init_from or resume (TEMPO_STATUS_CORRUPT, naming the tensor), an input batch, the loss
 * ("loss is not finite at step N"), the gradients or the weights after an update
 * (TEMPO_STATUS_NUMERIC).
 *
 * With an owner key (cfg.key, seal.h) every input is read sealed (the dataset files as
 * <file>.sealed, --resume and --init-from files must be sealed) and every output is written
 * sealed instead: checkpoint.ckpt.sealed, model.ckpt.sealed and metrics.jsonl.sealed (the
 * metrics are kept in memory and resealed at each checkpoint and at the end). Progress on
 * stdout still shows the aggregate loss and accuracy; pass quiet to hide them. */
#ifndef TEMPO_TRAIN_H
#define TEMPO_TRAIN_H

#include <signal.h>

#include "tempo/data.h"
#include "tempo/matmul.h"
#include "tempo/optim.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tempo_owner_key tempo_owner_key;

typedef struct {
  char model[32];            /* "" = "mlp", or the checkpoint's model when resuming */
  const char *net_file;      /* a network file (netfile.h, --net) instead of a built-in model, or NULL;
                                the model is named by its [net] name. Resuming and evaluating a
                                checkpoint of such a model need the same file again */
  tempo_dataset_kind dataset;/* default Fashion-MNIST */
  const char *data_dir;      /* NULL = the dataset's default folder */
  tempo_npy_config npy;      /* dataset TEMPO_DATASET_NPY: the files, layout, classes, normalisation
                                (data.h); without a test split the run does not evaluate */
  int epochs;                /* 0 = 1, or the checkpoint's value when resuming */
  long max_steps;            /* stop after this many optimizer steps in total (0 = no limit) */
  int batch_size;            /* default 64 */
  uint64_t seed;             /* default 1 */
  tempo_optim_config optim;
  bool augment;              /* random crop + flip (CIFAR-10 only by default) */
  float dropout;
  const char *out_dir;       /* default "runs/<model>", or the checkpoint's folder when resuming */
  const char *resume;        /* checkpoint to resume from, or NULL: the run continues in its folder
                                (metrics.jsonl cut back to the checkpoint's step: each step once);
                                epochs and max_steps still count from the run's start */
  const char *init_from;     /* safetensors weights to start from, or NULL */
  int log_every;             /* default 50 */
  long checkpoint_every;     /* also checkpoint every N steps (0 = only per epoch and at the end) */
  double checkpoint_minutes; /* also checkpoint after this many minutes of training (default 10; 0 = off) */
  const volatile sig_atomic_t *stop; /* NULL, or set nonzero (a signal handler): the run finishes its
                                step, writes checkpoint.ckpt and returns OK with stopped set */
  int progress;              /* 1 = progress bar, 0 = lines, -1 = decide by isatty(stdout) */
  double progress_every;     /* seconds between progress updates (0 = 1 for the bar, 10 for lines) */
  bool no_eval;              /* never evaluate on the test split (test_acc stays < 0) */
  bool quiet;                /* only errors and the final result */
  bool privacy_report;       /* print the privacy metric of each product of the first step */
  tempo_mm_config engine;
  const tempo_owner_key *key; /* NULL = plain files; else sealed inputs and outputs (not owned) */
} tempo_train_config;

typedef struct {
  long steps;
  double final_loss;         /* mean loss of the last logged window */
  double test_acc, test_loss;/* at the end of the run (test_acc < 0 when not evaluated) */
  double seconds;
  tempo_mm_stats stats;      /* engine totals */
  bool stopped;              /* ended early by *cfg.stop (checkpoint written, no model.ckpt) */
  bool nothing_to_do;        /* resumed at the end of its run: nothing was trained or written */
  char checkpoint[4096];     /* the last checkpoint.ckpt written ("" if none) */
} tempo_train_result;

void tempo_train_config_default(tempo_train_config *cfg);
TEMPO_WUR tempo_status tempo_train_run(const tempo_train_config *cfg, tempo_train_result *res);

/* Evaluates a checkpoint on the test split of its dataset through an engine of the given
 * configuration. data_dir NULL = default folder. A checkpoint trained on npy data needs its
 * files: tempo_eval_run with cfg.npy (test split, and the training split or mean/std). */
TEMPO_WUR tempo_status tempo_eval_checkpoint(const char *path, const char *data_dir, const tempo_mm_config *engine,
                                             int batch_size, double *acc, double *loss);
/* As tempo_eval_checkpoint; with key != NULL the checkpoint and the test files are read sealed. No
 * progress output. */
TEMPO_WUR tempo_status tempo_eval_checkpoint_sealed(const char *path, const char *data_dir, const tempo_owner_key *key,
                                                    const tempo_mm_config *engine, int batch_size, double *acc,
                                                    double *loss);

/* Evaluates the checkpoint at path as tempo_eval_checkpoint_sealed with cfg's data_dir, npy,
 * net_file (a checkpoint of a network-file model needs it), key, engine and batch_size, showing
 * progress on stdout as cfg's progress, progress_every and
 * quiet say (see tempo_train_run). */
TEMPO_WUR tempo_status tempo_eval_run(const tempo_train_config *cfg, const char *path, double *acc, double *loss);

#ifdef __cplusplus
}
#endif
#endif
