/* tempo.c - the master's command-line program: `tempo train`, `tempo eval`, `tempo plot`, `tempo models`.
 * This is the binary the enclave runs (deploy/gramine): the owner's tools are tempo-owner
 * (tempo_owner.c), the attacks tempo-attack (tempo_attack.c), and neither is linked here. `tempo plot`
 * draws a run's metrics as SVG (plot.h).
 * Argument parsing and exit() live only in programs/. Exit status: 0 ok, 1 runtime error, 2 usage. */
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cli_common.h"
#include "tempo/model.h"
#include "tempo/plot.h"
#include "tempo/precision.h"
#include "tempo/seal.h"
#include "tempo/train.h"

#if TEMPO_HAVE_MPI
#include "mpi/mpi.h"
#endif

#if TEMPO_HAVE_MPI
static int mpi_workers; /* > 0: started by mpirun with this many tempo-worker ranks */
#endif

static const char *prog = "tempo";
static const char *key_spec; /* --key-file: sealed inputs and outputs */

/* --version: the built-in features */
#if TEMPO_HAVE_MPI
#define FEATURE_MPI ", MPI"
#else
#define FEATURE_MPI ""
#endif
#if TEMPO_HAVE_CUDA
#define FEATURE_CUDA ", CUDA toolkit"
#else
#define FEATURE_CUDA ""
#endif
#define FEATURES "OpenBLAS, libsodium" FEATURE_MPI FEATURE_CUDA

#define NPY_OPTIONS \
  "  --train-x X.npy --train-y Y.npy   --data npy: training images (uint8 or float32; (n,c,h,w),\n" \
  "                        (n,h,w,c), (n,h,w) or (n,d)) and integer labels (n,) (docs/bring-your-own.md)\n" \
  "  --test-x X.npy --test-y Y.npy     --data npy: the test split (without it the run does not evaluate)\n" \
  "  --layout nchw|nhwc    --data npy: the order of 4-D images' dimensions (required for 4-D images)\n" \
  "  --classes N           --data npy: class count (default: the largest training label + 1)\n" \
  "  --mean M[,M...] --std S[,S...]  --data npy: normalisation, 1 value or 1 per channel (default: the\n" \
  "                        training split's per-channel mean and std, of p/255 for uint8 images)\n"

#define TRAIN_OPTIONS \
  "train options:\n" \
  "  --model NAME          mlp, resnet20, resnet18, resnet50, vit-mini, vit-tiny (`tempo models`)\n" \
  "  --net FILE            a network file instead (docs/network-format.md; the built-ins are\n" \
  "                        share/tempo/nets/*.net); resume, eval and export need it again\n" \
  "  --data NAME           fashion-mnist (default), cifar10 or npy (your own arrays, below)\n" \
  "  --data-dir DIR        dataset folder (default /usr/share/datasets/fashion-mnist,\n" \
  "                        ./data/cifar-10-batches-bin for cifar10)\n" \
  NPY_OPTIONS \
  "  --epochs N            epochs to train (default 1)\n" \
  "  --max-steps N         stop after N optimizer steps in total (default: no limit); the run then\n" \
  "                        evaluates on the test split as an epoch end does\n" \
  "  --batch-size N        samples per step (default 64)\n" \
  "  --lr X                peak learning rate (default 0.05 for sgd, 0.001 for adamw)\n" \
  "  --optimizer NAME      sgd (momentum 0.9, default) or adamw\n" \
  "  --momentum X          SGD momentum (default 0.9)\n" \
  "  --weight-decay X      default 5e-4 (sgd) / 0.05 (adamw); not applied to biases and norms\n" \
  "  --schedule NAME       cosine (default: decays to 0 at the last step) or constant\n" \
  "  --warmup N            cosine schedule: linear warm-up steps (default 0)\n" \
  "  --augment             random crop (pad 4) and horizontal flip\n" \
  "  --dropout X           ViT dropout probability (default 0)\n" \
  "  --seed N              seed of initialisation, shuffling, augmentation (default 1)\n" \
  "  --out DIR             output folder: metrics.jsonl, checkpoint.ckpt, model.ckpt (default runs/MODEL)\n" \
  "  --resume CKPT         continue the exact trajectory of a checkpoint, in its folder unless --out;\n" \
  "                        --epochs and --max-steps still count from the run's start\n" \
  "  --init-from FILE      start from safetensors weights (PyTorch state_dict names; F32, F64, F16, BF16)\n" \
  "  --key-file SPEC       owner key (PATH, fd:N or gramine-secret): read sealed inputs, write sealed\n" \
  "                        outputs (train and eval; docs/confidential-io.md)\n" \
  "  --checkpoint-every N  also write checkpoint.ckpt every N steps\n" \
  "  --checkpoint-minutes M  also every M minutes of training (default 10; 0 = off). Ctrl-C or\n" \
  "                        SIGTERM: finish the step, write checkpoint.ckpt, exit 130 or 143\n" \
  "  --log-every N         write a metrics record (and, off a terminal, a line) every N steps (default 50)\n" \
  "  --no-eval             do not evaluate on the test split (not at epoch ends, not at the end)\n" \
  "  --privacy-report      print the key-space entropy of every product of the first step\n"

#define OUTPUT_OPTIONS \
  "output options (train and eval):\n" \
  "  --progress / --no-progress   force the progress bar on or off (default: on a terminal)\n" \
  "  --progress-every S    seconds between progress updates (default 1 for the bar, 10 for lines)\n" \
  "  --quiet               print only errors and the result\n"

#define ENGINE_OPTIONS \
  "engine options (train and eval):\n" \
  "  --mode MODE           local | plain | tempo (default) | shield\n" \
  "                        local: the master computes every product (pure-TEE baseline);\n" \
  "                        plain: workers compute unblinded products (insecure upper bound);\n" \
  "                        tempo: workers compute MM-obfuscated products, verified and decrypted\n" \
  "                        shield: tempo plus fresh additive masks over 4 roles (>= 4 workers)\n" \
  "  --protect P           protection policy for the products that leak the most (default: spatial in\n" \
  "                        tempo mode, none otherwise; docs/obfuscation.md \"Protection policy\"):\n" \
  "                        none: every product blinded by the mode's keys only (whole images and\n" \
  "                        labels can be read back from such a trail);\n" \
  "                        ends: the master computes the products that touch the raw inputs (first\n" \
  "                        layer) and the labels (the head, forward and backward);\n" \
  "                        spatial: ends, and every convolution with overlapping windows (kernel >\n" \
  "                        stride) is blinded with mixing blocks; all: ends, and every other product\n" \
  "                        mixed\n" \
  "  --wire T              plain and tempo mode's operands on the wire: bf16 (default) or fp32\n" \
  "                        (bf16: rounded by the master as it blinds; workers accumulate in fp32\n" \
  "                        and return fp32 results, checked at the fp32 bound; half the upload;\n" \
  "                        docs/accuracy.md compares the two)\n" \
  "  --workers N           in-process worker threads (default 2; shield needs >= 4)\n" \
  "  --shield-dtype T      shield mode's shares: f64 (default) or f32\n" \
  "  --shield-alpha A      shield mode's mask scale (default 16384 for f64, 32 for f32)\n" \
  "  --verify-rounds T     Freivalds check vectors per result (default 1; 0 disables checks)\n" \
  "  --min-precision P     the least precise compute a worker may declare: fp32 (default), tf32,\n" \
  "                        bf16 or fp16; weaker workers are refused, each worker's results are\n" \
  "                        checked against the precision it declared\n" \
  "  --threads N           the master's threads: its BLAS in local mode, its Enc/Dec passes\n" \
  "                        and element-wise layers in the other modes (default: CPU count)\n" \
  "  --audit DIR           record every message to and from the workers in DIR\n" \
  "  --key-seed N          seed of the key stream (default: fresh OS randomness per run)\n"

#define EVAL_OPTIONS \
  "eval options: --data-dir DIR, --batch-size N (default 256), --key-file SPEC, the output and the\n" \
  "engine options. The model and the dataset come from the checkpoint; an npy checkpoint needs\n" \
  "--test-x, --test-y and --train-x, --train-y (or --mean, --std), and --layout as in training;\n" \
  "a checkpoint of a network-file model needs --net FILE.\n"

static void print_help(void) {
  printf("usage: tempo <command> [options]\n"
         "\n"
         "Confidential neural-network training: the master holds model, data and keys; every matrix\n"
         "product goes to workers blinded by MM-obfuscation, is verified and decrypted by the master.\n"
         "\n"
         "commands:\n"
         "  train      train a model (defaults: mlp on Fashion-MNIST, 1 epoch, tempo mode, 2 workers)\n"
         "  eval CKPT  evaluate a checkpoint on the test split of its dataset\n"
         "  plot RUN   draw RUN/metrics.jsonl (loss, accuracy, throughput) as RUN/metrics.svg (-o FILE)\n"
         "  models     list the model names\n"
         "`tempo COMMAND --help` shows one command's options.\n"
         "\n"
         "The model owner's tools (keygen, seal, unseal, export) are the program tempo-owner, the attacks\n"
         "on an audit trail (attack, privacy) the program tempo-attack: neither is in the enclave's binary.\n"
         "\n" TRAIN_OPTIONS "\n" OUTPUT_OPTIONS "\n" ENGINE_OPTIONS "\n" EVAL_OPTIONS "\n"
         "  -h, --help            this help\n"
         "  -V, --version         version and built-in features\n");
}

static void print_train_help(void) {
  printf("usage: tempo train [options]\n"
         "\n"
         "Trains a model (defaults: mlp on Fashion-MNIST, 1 epoch, tempo mode, 2 workers) and writes\n"
         "metrics.jsonl, checkpoint.ckpt and model.ckpt into --out. Under mpirun the workers are the\n"
         "tempo-worker ranks (docs/distributed.md).\n"
         "\n" TRAIN_OPTIONS "\n" OUTPUT_OPTIONS "\n" ENGINE_OPTIONS "\n"
         "  -h, --help            this help\n");
}

static void print_eval_help(void) {
  printf("usage: tempo eval CHECKPOINT [options]\n"
         "\n"
         "Evaluates a checkpoint (model.ckpt or checkpoint.ckpt) on the test split of the dataset it was\n"
         "trained on, through the engine of the given mode; prints the test accuracy and loss.\n"
         "\n"
         "  --data-dir DIR        dataset folder (default: the dataset's default folder)\n"
         "  --test-x, --test-y, --train-x, --train-y, --layout, --classes, --mean, --std\n"
         "                        a checkpoint trained on npy data: its files as in training (the training\n"
         "                        split only for its statistics; or the run's --mean and --std)\n"
         "  --batch-size N        samples per batch (default 256)\n"
         "  --key-file SPEC       owner key: the checkpoint and the test files are sealed\n"
         "\n" OUTPUT_OPTIONS "\n" ENGINE_OPTIONS "\n"
         "  -h, --help            this help\n");
}

static void print_plot_help(void) {
  printf("usage: tempo plot RUN_DIR [-o FILE.svg]\n"
         "\n"
         "Draws RUN_DIR/metrics.jsonl as an SVG picture: training and test loss, training and test\n"
         "accuracy, and throughput (images/s) against the step. Writes RUN_DIR/metrics.svg, or FILE.svg\n"
         "with -o. A sealed run (metrics.jsonl.sealed) must be unsealed first with tempo-owner unseal.\n"
         "\n"
         "  -o, --output FILE     the SVG file to write (default RUN_DIR/metrics.svg)\n"
         "  -h, --help            this help\n");
}

static void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void usage_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = tempo_cli_vusage(prog, fmt, ap);
  va_end(ap);
  exit(rc);
}

static long parse_long(const char *flag, const char *s, long lo, long hi) {
  long v;
  if (!tempo_cli_parse_long(s, lo, hi, &v))
    usage_error("%s needs a whole number from %ld to %ld, got '%s'", flag, lo, hi, s);
  return v;
}

static float parse_float(const char *flag, const char *s, double lo, double hi) {
  double v;
  if (!tempo_cli_parse_double(s, lo, hi, &v))
    usage_error("%s needs a number from %g to %g, got '%s'", flag, lo, hi, s);
  return (float)v;
}

enum {
  OPT_MODEL = 256, OPT_DATA, OPT_DATA_DIR, OPT_EPOCHS, OPT_MAX_STEPS, OPT_BATCH, OPT_LR, OPT_OPTIMIZER, OPT_MOMENTUM,
  OPT_WD, OPT_SCHEDULE, OPT_WARMUP, OPT_AUGMENT, OPT_DROPOUT, OPT_SEED, OPT_OUT, OPT_RESUME, OPT_INIT_FROM,
  OPT_CKPT_EVERY, OPT_CKPT_MINUTES, OPT_LOG_EVERY, OPT_PROGRESS, OPT_NO_PROGRESS, OPT_QUIET, OPT_PRIVACY_REPORT, OPT_MODE, OPT_WORKERS, OPT_VERIFY, OPT_MIN_PRECISION,
  OPT_THREADS, OPT_AUDIT, OPT_KEY_SEED, OPT_KEY_FILE, OPT_SHIELD_DTYPE, OPT_SHIELD_ALPHA, OPT_PROTECT, OPT_NO_EVAL,
  OPT_PROGRESS_EVERY, OPT_TRAIN_X, OPT_TRAIN_Y, OPT_TEST_X, OPT_TEST_Y, OPT_LAYOUT, OPT_CLASSES, OPT_MEAN, OPT_STD,
  OPT_NET, OPT_WIRE,
};

static const struct option long_opts[] = {
    {"model", required_argument, 0, OPT_MODEL},         {"data", required_argument, 0, OPT_DATA},
    {"net", required_argument, 0, OPT_NET},
    {"data-dir", required_argument, 0, OPT_DATA_DIR},   {"epochs", required_argument, 0, OPT_EPOCHS},
    {"max-steps", required_argument, 0, OPT_MAX_STEPS}, {"batch-size", required_argument, 0, OPT_BATCH},
    {"lr", required_argument, 0, OPT_LR},               {"optimizer", required_argument, 0, OPT_OPTIMIZER},
    {"momentum", required_argument, 0, OPT_MOMENTUM},   {"weight-decay", required_argument, 0, OPT_WD},
    {"schedule", required_argument, 0, OPT_SCHEDULE},   {"warmup", required_argument, 0, OPT_WARMUP},
    {"augment", no_argument, 0, OPT_AUGMENT},           {"dropout", required_argument, 0, OPT_DROPOUT},
    {"seed", required_argument, 0, OPT_SEED},           {"out", required_argument, 0, OPT_OUT},
    {"resume", required_argument, 0, OPT_RESUME},       {"init-from", required_argument, 0, OPT_INIT_FROM},
    {"checkpoint-every", required_argument, 0, OPT_CKPT_EVERY},
    {"checkpoint-minutes", required_argument, 0, OPT_CKPT_MINUTES},
    {"log-every", required_argument, 0, OPT_LOG_EVERY}, {"progress", no_argument, 0, OPT_PROGRESS},
    {"no-progress", no_argument, 0, OPT_NO_PROGRESS},   {"quiet", no_argument, 0, OPT_QUIET},
    {"privacy-report", no_argument, 0, OPT_PRIVACY_REPORT},
    {"mode", required_argument, 0, OPT_MODE},           {"workers", required_argument, 0, OPT_WORKERS},
    {"verify-rounds", required_argument, 0, OPT_VERIFY}, {"threads", required_argument, 0, OPT_THREADS},
    {"min-precision", required_argument, 0, OPT_MIN_PRECISION},
    {"audit", required_argument, 0, OPT_AUDIT},         {"key-seed", required_argument, 0, OPT_KEY_SEED},
    {"key-file", required_argument, 0, OPT_KEY_FILE},
    {"shield-dtype", required_argument, 0, OPT_SHIELD_DTYPE}, {"shield-alpha", required_argument, 0, OPT_SHIELD_ALPHA},
    {"protect", required_argument, 0, OPT_PROTECT},     {"wire", required_argument, 0, OPT_WIRE},
    {"no-eval", no_argument, 0, OPT_NO_EVAL},           {"progress-every", required_argument, 0, OPT_PROGRESS_EVERY},
    {"train-x", required_argument, 0, OPT_TRAIN_X},     {"train-y", required_argument, 0, OPT_TRAIN_Y},
    {"test-x", required_argument, 0, OPT_TEST_X},       {"test-y", required_argument, 0, OPT_TEST_Y},
    {"layout", required_argument, 0, OPT_LAYOUT},       {"classes", required_argument, 0, OPT_CLASSES},
    {"mean", required_argument, 0, OPT_MEAN},           {"std", required_argument, 0, OPT_STD},
    {"help", no_argument, 0, 'h'},                      {"version", no_argument, 0, 'V'},
    {0, 0, 0, 0},
};

/* The wire a mode gets without --wire: bf16 where the mode has a 16-bit wire (plain and tempo;
 * docs/accuracy.md: resnet20 after 3 epochs 92.43% against 92.21% on fp32, half the upload), fp32
 * elsewhere (local sends nothing; shield has --shield-dtype). */
static int default_wire(int mode) {
  return mode == TEMPO_MODE_PLAIN || mode == TEMPO_MODE_TEMPO ? TEMPO_WIRE_BF16 : TEMPO_WIRE_F32;
}

/* Parses train/eval options into cfg; returns the index of the first non-option argument. */
static int parse_options(int argc, char **argv, tempo_train_config *cfg, bool is_train) {
  bool lr_set = false, wd_set = false, wire_given = false;
  int nmean = 0, nstd = 0;
  const char *npy_flag = NULL; /* the first npy-only option given */
  float stds[TEMPO_DATASET_MAX_CHANNELS];
  long threads = sysconf(_SC_NPROCESSORS_ONLN);
  cfg->engine.threads = threads > 0 && threads <= 256 ? (int)threads : 1;
  optind = 1;
  opterr = 0;
  int c, li = -1;
  while ((c = getopt_long(argc, argv, ":hV", long_opts, &li)) != -1) {
    if (!is_train && c != OPT_DATA_DIR && c != OPT_BATCH && c != OPT_MODE && c != OPT_WORKERS && c != OPT_VERIFY && c != OPT_MIN_PRECISION &&
        c != OPT_THREADS && c != OPT_AUDIT && c != OPT_KEY_SEED && c != OPT_KEY_FILE && c != OPT_SHIELD_DTYPE &&
        c != OPT_SHIELD_ALPHA && c != OPT_PROTECT && c != OPT_WIRE && c != OPT_PROGRESS && c != OPT_NO_PROGRESS && c != OPT_QUIET &&
        c != OPT_PROGRESS_EVERY && c != OPT_TRAIN_X && c != OPT_TRAIN_Y && c != OPT_TEST_X && c != OPT_TEST_Y &&
        c != OPT_LAYOUT && c != OPT_CLASSES && c != OPT_MEAN && c != OPT_STD && c != OPT_NET && c != 'h' && c != 'V' &&
        c != '?' && c != ':')
      usage_error("'--%s' is a train option, not an eval option (eval takes the model and the dataset from the "
                  "checkpoint; `tempo eval --help`)", li >= 0 ? long_opts[li].name : "?");
    if (c >= OPT_TRAIN_X && c <= OPT_STD && !npy_flag) npy_flag = long_opts[li].name;
    li = -1;
    switch (c) {
    case OPT_TRAIN_X: cfg->npy.train_x = optarg; break;
    case OPT_TRAIN_Y: cfg->npy.train_y = optarg; break;
    case OPT_TEST_X: cfg->npy.test_x = optarg; break;
    case OPT_TEST_Y: cfg->npy.test_y = optarg; break;
    case OPT_LAYOUT:
      if (!tempo_npy_layout_parse(optarg, &cfg->npy.layout)) usage_error("--layout is nchw or nhwc, not '%s'", optarg);
      break;
    case OPT_CLASSES: cfg->npy.num_classes = (int)parse_long("--classes", optarg, 2, TEMPO_DATASET_MAX_CLASSES); break;
    case OPT_MEAN:
      if (!(nmean = tempo_npy_parse_floats(optarg, false, cfg->npy.mean)))
        usage_error("--mean needs 1 number or 1 per channel, comma-separated (e.g. 0.5,0.5,0.5), got '%s'", optarg);
      break;
    case OPT_STD:
      if (!(nstd = tempo_npy_parse_floats(optarg, true, stds)))
        usage_error("--std needs 1 positive number or 1 per channel, comma-separated (e.g. 0.25,0.25,0.25), got '%s'",
                    optarg);
      break;
    case OPT_MODEL: snprintf(cfg->model, sizeof cfg->model, "%s", optarg); break;
    case OPT_NET: cfg->net_file = optarg; break;
    case OPT_DATA:
      if (!tempo_dataset_kind_parse(optarg, &cfg->dataset))
        usage_error("unknown dataset '%s' (use fashion-mnist or cifar10)", optarg);
      break;
    case OPT_DATA_DIR: cfg->data_dir = optarg; break;
    case OPT_EPOCHS: cfg->epochs = (int)parse_long("--epochs", optarg, 1, 100000); break;
    case OPT_MAX_STEPS: cfg->max_steps = parse_long("--max-steps", optarg, 1, 1L << 40); break;
    case OPT_BATCH: cfg->batch_size = (int)parse_long("--batch-size", optarg, 1, 65536); break;
    case OPT_LR: cfg->optim.lr = parse_float("--lr", optarg, 1e-9, 100), lr_set = true; break;
    case OPT_OPTIMIZER: {
      tempo_optim_kind k;
      if (!tempo_optim_kind_parse(optarg, &k)) usage_error("unknown optimizer '%s' (use sgd or adamw)", optarg);
      tempo_optim_config keep = cfg->optim;
      tempo_optim_config_default(&cfg->optim, k);
      cfg->optim.schedule = keep.schedule;
      cfg->optim.warmup_steps = keep.warmup_steps;
      if (lr_set) cfg->optim.lr = keep.lr;
      if (wd_set) cfg->optim.weight_decay = keep.weight_decay;
      break;
    }
    case OPT_MOMENTUM: cfg->optim.momentum = parse_float("--momentum", optarg, 0, 0.999999); break;
    case OPT_WD: cfg->optim.weight_decay = parse_float("--weight-decay", optarg, 0, 10), wd_set = true; break;
    case OPT_SCHEDULE:
      if (!tempo_sched_kind_parse(optarg, &cfg->optim.schedule))
        usage_error("unknown schedule '%s' (use constant or cosine)", optarg);
      break;
    case OPT_WARMUP: cfg->optim.warmup_steps = parse_long("--warmup", optarg, 0, 1L << 40); break;
    case OPT_AUGMENT: cfg->augment = true; break;
    case OPT_DROPOUT: cfg->dropout = parse_float("--dropout", optarg, 0, 0.99); break;
    case OPT_SEED: cfg->seed = (uint64_t)parse_long("--seed", optarg, 0, 1L << 62); break;
    case OPT_OUT: cfg->out_dir = optarg; break;
    case OPT_RESUME: cfg->resume = optarg; break;
    case OPT_INIT_FROM: cfg->init_from = optarg; break;
    case OPT_CKPT_EVERY: cfg->checkpoint_every = parse_long("--checkpoint-every", optarg, 1, 1L << 40); break;
    case OPT_CKPT_MINUTES: cfg->checkpoint_minutes = parse_float("--checkpoint-minutes", optarg, 0, 1e6); break;
    case OPT_LOG_EVERY: cfg->log_every = (int)parse_long("--log-every", optarg, 1, 1 << 30); break;
    case OPT_PROGRESS: cfg->progress = 1; break;
    case OPT_NO_PROGRESS: cfg->progress = 0; break;
    case OPT_QUIET: cfg->quiet = true; break;
    case OPT_NO_EVAL: cfg->no_eval = true; break;
    case OPT_PROGRESS_EVERY: cfg->progress_every = parse_float("--progress-every", optarg, 1e-3, 86400); break;
    case OPT_PRIVACY_REPORT: cfg->privacy_report = true; break;
    case OPT_MODE:
      if (!tempo_mode_parse(optarg, &cfg->engine.mode))
        usage_error("unknown mode '%s' (use local, plain, tempo or shield)", optarg);
      break;
    case OPT_WORKERS: cfg->engine.workers = (int)parse_long("--workers", optarg, 1, 256); break;
    case OPT_VERIFY: cfg->engine.verify_rounds = (int)parse_long("--verify-rounds", optarg, 0, 64); break;
    case OPT_THREADS: cfg->engine.threads = (int)parse_long("--threads", optarg, 1, 256); break;
    case OPT_MIN_PRECISION: {
      tempo_precision p;
      if (!tempo_precision_parse(optarg, &p)) usage_error("--min-precision: '%s' is not fp32, tf32, bf16 or fp16", optarg);
      cfg->engine.min_precision = (int)p;
      break;
    }
    case OPT_AUDIT: cfg->engine.audit_dir = optarg; break;
    case OPT_SHIELD_DTYPE:
      if (strcmp(optarg, "f32") && strcmp(optarg, "f64")) usage_error("--shield-dtype is f32 or f64, not '%s'", optarg);
      cfg->engine.shield_f32 = !strcmp(optarg, "f32");
      break;
    case OPT_SHIELD_ALPHA: cfg->engine.shield_alpha = parse_float("--shield-alpha", optarg, 1e-3, 1e12); break;
    case OPT_PROTECT:
      if (!tempo_protect_parse(optarg, &cfg->engine.protect))
        usage_error("unknown protection policy '%s' (use none, ends, spatial or all)", optarg);
      break;
    case OPT_WIRE: {
      tempo_wire w;
      if (!tempo_wire_parse(optarg, &w)) usage_error("--wire is fp32 or bf16, not '%s'", optarg);
      cfg->engine.wire = (int)w;
      wire_given = true;
      break;
    }
    case OPT_KEY_FILE: key_spec = optarg; break;
    case OPT_KEY_SEED: cfg->engine.seed = (uint64_t)parse_long("--key-seed", optarg, 1, 1L << 62); break;
    case 'h': is_train ? print_train_help() : print_eval_help(); exit(0);
    case 'V': tempo_cli_print_version(prog, FEATURES); exit(0);
    case ':': usage_error("option '%s' needs a value", argv[optind - 1]); break;
    default: usage_error("unknown option '%s'", argv[optind - 1]);
    }
  }
  if (!wire_given) cfg->engine.wire = default_wire(cfg->engine.mode);
  if (nmean != nstd)
    usage_error("--mean and --std go together, with as many values each (got %d and %d)", nmean, nstd);
  memcpy(cfg->npy.std, stds, sizeof(float) * (size_t)nstd);
  cfg->npy.norm_count = nmean;
  if (is_train && npy_flag && cfg->dataset != TEMPO_DATASET_NPY && !cfg->resume)
    usage_error("--%s is an option of --data npy (your own .npy arrays): add --data npy", npy_flag);
  if (is_train && cfg->dataset == TEMPO_DATASET_NPY && !cfg->resume && (!cfg->npy.train_x || !cfg->npy.train_y))
    usage_error("%s", "--data npy needs the training split: --train-x X.npy --train-y Y.npy");
  if ((cfg->npy.test_x == NULL) != (cfg->npy.test_y == NULL))
    usage_error("%s", "--test-x and --test-y go together");
  if (cfg->engine.wire != TEMPO_WIRE_F32 && cfg->engine.mode != TEMPO_MODE_PLAIN && cfg->engine.mode != TEMPO_MODE_TEMPO)
    usage_error("--wire %s is for plain and tempo mode (%s mode %s)", tempo_wire_name(cfg->engine.wire),
                tempo_mode_name(cfg->engine.mode),
                cfg->engine.mode == TEMPO_MODE_SHIELD ? "has its own dtypes: --shield-dtype" : "sends nothing");
#if TEMPO_HAVE_MPI
  if (mpi_workers > 0) cfg->engine.workers = mpi_workers, cfg->engine.transport = tempo_mpi_transport;
#endif
  return optind;
}

/* SIGINT and SIGTERM during training: the first asks the run to stop after its step, with a
 * checkpoint (tempo_train_config.stop); a second one ends the process at once. */
static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig) {
  static const char again[] = "\ntempo: interrupted again: exiting at once, without a checkpoint\n";
  static const char first[] = "\ntempo: interrupted: finishing the step and writing a checkpoint "
                              "(interrupt again to abort at once)\n";
  if (stop_signal) {
    if (write(STDERR_FILENO, again, sizeof again - 1) < 0) {
    }
    /* the exit_group system call itself, not _exit(): sanitizers intercept _exit() and run their
     * exit-time work from inside this handler, which turned the status into 1 in some make check runs */
#ifdef SYS_exit_group
    syscall(SYS_exit_group, 128 + sig);
#endif
    _exit(128 + sig);
  }
  stop_signal = sig;
  if (write(STDERR_FILENO, first, sizeof first - 1) < 0) {
  }
}

static void catch_stop_signals(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
}

static int cmd_train(int argc, char **argv) {
  tempo_train_config cfg;
  tempo_train_config_default(&cfg);
  int first = parse_options(argc, argv, &cfg, true);
  if (first < argc) usage_error("unexpected argument '%s'", argv[first]);
  tempo_train_result res;
  tempo_owner_key *key = NULL;
  tempo_status st = key_spec ? tempo_owner_key_provision(key_spec, &key) : TEMPO_STATUS_OK;
  cfg.key = key;
  cfg.stop = &stop_signal;
  catch_stop_signals();
  if (!st) st = tempo_train_run(&cfg, &res);
  tempo_owner_key_free(key);
  if (st) return tempo_cli_fail(prog, st);
  if (res.nothing_to_do) return 0; /* the run said why */
  if (res.stopped) { /* the resume command names the engine options that are not the defaults */
    char opts[160] = "";
    const int w = cfg.engine.workers;
    if (cfg.engine.mode != TEMPO_MODE_TEMPO)
      snprintf(opts, sizeof opts, " --mode %s", tempo_mode_name(cfg.engine.mode));
    if (!cfg.engine.transport && cfg.engine.mode != TEMPO_MODE_LOCAL && w != 2)
      snprintf(opts + strlen(opts), sizeof opts - strlen(opts), " --workers %d", w);
    if (cfg.engine.protect != TEMPO_PROTECT_DEFAULT)
      snprintf(opts + strlen(opts), sizeof opts - strlen(opts), " --protect %s", tempo_protect_name(cfg.engine.protect));
    if (cfg.engine.wire != default_wire(cfg.engine.mode))
      snprintf(opts + strlen(opts), sizeof opts - strlen(opts), " --wire %s", tempo_wire_name(cfg.engine.wire));
    fprintf(stderr,
            "tempo: interrupted at step %ld; checkpoint written to %s; resume with: tempo train --resume %s%s%s%s\n",
            res.steps, res.checkpoint, res.checkpoint, opts, key_spec ? " --key-file " : "", key_spec ? key_spec : "");
    return 128 + stop_signal;
  }
  const tempo_mm_stats *s = &res.stats;
  printf("done: %ld steps in %.1f s", res.steps, res.seconds);
  if (res.test_acc >= 0) printf(", test accuracy %.2f%% (loss %.4f)", 100.0 * res.test_acc, res.test_loss);
  printf("\n");
  if (cfg.engine.mode != TEMPO_MODE_LOCAL) {
    printf("engine: %llu products, %llu encryptions (naive scheme: %llu; key-shift saved %llu = %.0f%%), "
           "%llu decryptions\n",
           (unsigned long long)s->products, (unsigned long long)s->encryptions,
           (unsigned long long)s->naive_encryptions, (unsigned long long)(s->naive_encryptions - s->encryptions),
           s->naive_encryptions ? 100.0 * (double)(s->naive_encryptions - s->encryptions) / s->naive_encryptions : 0.0,
           (unsigned long long)s->decryptions);
    printf("engine: uploaded %.1f MB (naive %.1f MB), downloaded %.1f MB; verify failures %llu, recomputed %llu, "
           "evicted %llu\n",
           s->bytes_up / 1e6, s->naive_bytes_up / 1e6, s->bytes_down / 1e6, (unsigned long long)s->verify_failures,
           (unsigned long long)s->recomputed, (unsigned long long)s->evictions);
    printf("engine time: blind %.2f s, transfer %.2f s, worker compute %.2f s, verify %.2f s, unblind %.2f s\n",
           s->t_blind, s->t_transfer, s->t_compute, s->t_verify, s->t_unblind);
  } else {
    printf("engine: %llu products computed locally in %.2f s\n", (unsigned long long)s->products, s->t_local);
  }
  return 0;
}

static int cmd_eval(int argc, char **argv) {
  tempo_train_config cfg;
  tempo_train_config_default(&cfg);
  cfg.batch_size = 256;
  int first = parse_options(argc, argv, &cfg, false);
  if (first >= argc) usage_error("%s", "eval needs a checkpoint: tempo eval runs/mlp/model.ckpt");
  if (first + 1 < argc) usage_error("unexpected argument '%s'", argv[first + 1]);
  double acc, loss;
  tempo_owner_key *key = NULL;
  tempo_status st = key_spec ? tempo_owner_key_provision(key_spec, &key) : TEMPO_STATUS_OK;
  cfg.key = key;
  if (!st) st = tempo_eval_run(&cfg, argv[first], &acc, &loss);
  tempo_owner_key_free(key);
  if (st) return tempo_cli_fail(prog, st);
  printf("test accuracy %.2f%% (loss %.4f), mode %s\n", 100.0 * acc, loss, tempo_mode_name(cfg.engine.mode));
  return 0;
}

/* train and eval: under mpirun the workers are the tempo-worker ranks (docs/distributed.md). */
static int run_engine_command(int argc, char **argv, int (*cmd)(int, char **)) {
#if TEMPO_HAVE_MPI
  if (tempo_mpi_launched() && tempo_mpi_master_init(&argc, &argv, &mpi_workers)) {
    fprintf(stderr, "%s: %s\n", prog, tempo_errmsg());
    return 1;
  }
#endif
  int rc = cmd(argc, argv);
#if TEMPO_HAVE_MPI
  tempo_mpi_master_finalize();
#endif
  return rc;
}

static int cmd_train_main(int argc, char **argv) { return run_engine_command(argc, argv, cmd_train); }
static int cmd_eval_main(int argc, char **argv) { return run_engine_command(argc, argv, cmd_eval); }

static int cmd_plot(int argc, char **argv) {
  static const struct option opts[] = {{"output", required_argument, 0, 'o'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
  const char *out = NULL;
  optind = 1;
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, ":ho:", opts, NULL)) != -1) {
    switch (c) {
    case 'o': out = optarg; break;
    case 'h': print_plot_help(); exit(0);
    case ':': usage_error("option '%s' needs a value", argv[optind - 1]); break;
    default: usage_error("unknown option '%s'", argv[optind - 1]);
    }
  }
  if (optind >= argc) usage_error("%s", "plot needs a run folder: tempo plot runs/mlp [-o curves.svg]");
  if (optind + 1 < argc) usage_error("unexpected argument '%s'", argv[optind + 1]);
  const char *dir = argv[optind];
  char in[4096], svg[4096];
  if ((size_t)snprintf(in, sizeof in, "%s/metrics.jsonl", dir) >= sizeof in) usage_error("%s", "run folder path too long");
  if (!out) {
    if ((size_t)snprintf(svg, sizeof svg, "%s/metrics.svg", dir) >= sizeof svg) usage_error("%s", "run folder path too long");
    out = svg;
  }
  if (access(in, F_OK) != 0) {
    char sealed[4200];
    snprintf(sealed, sizeof sealed, "%s.sealed", in);
    if (access(sealed, F_OK) == 0) {
      fprintf(stderr, "%s: %s is sealed: unseal it first (tempo-owner unseal --key-file KEY --out-dir DIR %s), then "
              "tempo plot DIR\n", prog, sealed, sealed);
      return 1;
    }
  }
  long steps = 0;
  tempo_status st = tempo_plot_metrics(in, out, dir, &steps);
  if (st) return tempo_cli_fail(prog, st);
  printf("wrote %s (%ld logged steps)\n", out, steps);
  return 0;
}

static int cmd_models(int argc, char **argv) {
  for (const char *const *n = tempo_model_names(); *n; n++) printf("%s\n", *n);
  return 0;
}

int main(int argc, char **argv) {
  static const tempo_cli_command cmds[] = {
      {"train", cmd_train_main, NULL},     {"eval", cmd_eval_main, NULL},       {"models", cmd_models, NULL},
      {"plot", cmd_plot, NULL},
      {"keygen", NULL, "tempo-owner"},     {"seal", NULL, "tempo-owner"},       {"unseal", NULL, "tempo-owner"},
      {"export", NULL, "tempo-owner"},     {"attack", NULL, "tempo-attack"},    {"privacy", NULL, "tempo-attack"},
      {NULL, NULL, NULL},
  };
  static const tempo_cli_program p = {"tempo", FEATURES, print_help, cmds};
  return tempo_cli_main(&p, argc, argv);
}
