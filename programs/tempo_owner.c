/* tempo_owner.c - the model owner's commands: `tempo keygen`, `tempo seal`, `tempo unseal`,
 * `tempo export` (docs/confidential-io.md). They run on the owner's machine, never in the
 * cloud. Each parses its own options; exit status 0 ok, 1 runtime error, 2 usage error. */
#include <errno.h>
#include <getopt.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tempo/checkpoint.h"
#include "tempo/data.h"
#include "tempo/fileio.h"
#include "tempo/model.h"
#include "tempo/seal.h"
#include "tempo/weights.h"

int tempo_cmd_keygen(int argc, char **argv);
int tempo_cmd_seal(int argc, char **argv);
int tempo_cmd_unseal(int argc, char **argv);
int tempo_cmd_export(int argc, char **argv);

#define EXIT_USAGE 2
#define NAME_CAP 4096

static int usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int usage(const char *cmd, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "tempo %s: ", cmd);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\nTry 'tempo %s --help'.\n", cmd);
  return EXIT_USAGE;
}

static int fail(const char *cmd, tempo_status st) {
  fprintf(stderr, "tempo %s: %s\n", cmd, tempo_errmsg());
  return st == TEMPO_STATUS_INVALID_ARGUMENT ? EXIT_USAGE : 1;
}

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* out = dir/base(in) + suffix (dir NULL: beside in), after removing strip from the end. */
static bool derive_name(char *out, const char *in, const char *dir, const char *strip, const char *suffix) {
  const char *base = dir ? strrchr(in, '/') : NULL;
  base = base ? base + 1 : in;
  size_t n = strlen(base);
  if (strip && ends_with(base, strip)) n -= strlen(strip);
  int w = dir ? snprintf(out, NAME_CAP, "%s/%.*s%s", dir, (int)n, base, suffix)
              : snprintf(out, NAME_CAP, "%.*s%s", (int)n, base, suffix);
  return n > 0 && w > 0 && w < NAME_CAP;
}

int tempo_cmd_keygen(int argc, char **argv) {
  static const struct option opts[] = {{"force", no_argument, 0, 'f'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
  bool force = false;
  optind = 1;
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    if (c == 'f') {
      force = true;
    } else if (c == 'h') {
      printf("usage: tempo keygen [--force] KEYFILE\n"
             "Writes a new random owner key (mode 0600) and prints its id. Keep the file secret and backed up:\n"
             "without it, sealed results cannot be opened. --force replaces an existing file.\n");
      return 0;
    } else {
      return usage("keygen", "unknown option '%s'", argv[optind - 1]);
    }
  }
  if (optind + 1 != argc) return usage("keygen", "needs exactly one key file name: tempo keygen owner.key");
  tempo_owner_key *k;
  tempo_status st = tempo_owner_key_generate(&k);
  if (!st) st = tempo_owner_key_save(k, argv[optind], force);
  if (st) {
    tempo_owner_key_free(k);
    return fail("keygen", st);
  }
  char id[2 * TEMPO_OWNER_KEY_ID_BYTES + 1];
  tempo_owner_key_id_hex(k, id);
  tempo_owner_key_free(k);
  printf("wrote owner key %s (id %s); keep it secret and backed up\n", argv[optind], id);
  return 0;
}

/* Shared by seal and unseal. */
typedef struct {
  const char *key_file, *label, *out, *out_dir;
  long chunk;
  bool any_label;
} seal_opts;

static int parse_seal_opts(const char *cmd, int argc, char **argv, seal_opts *o, const char *help) {
  static const struct option opts[] = {
      {"key-file", required_argument, 0, 'k'}, {"label", required_argument, 0, 'l'},
      {"out", required_argument, 0, 'o'},      {"out-dir", required_argument, 0, 'd'},
      {"chunk-size", required_argument, 0, 'c'}, {"any-label", no_argument, 0, 'a'},
      {"help", no_argument, 0, 'h'},           {0, 0, 0, 0}};
  memset(o, 0, sizeof *o);
  optind = 1;
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, ":ho:", opts, NULL)) != -1) {
    switch (c) {
    case 'k': o->key_file = optarg; break;
    case 'l': o->label = optarg; break;
    case 'o': o->out = optarg; break;
    case 'd': o->out_dir = optarg; break;
    case 'a': o->any_label = true; break;
    case 'c': {
      char *end;
      errno = 0;
      o->chunk = strtol(optarg, &end, 10);
      if (errno || *end || o->chunk < (long)TEMPO_SEAL_CHUNK_MIN || o->chunk > (long)TEMPO_SEAL_CHUNK_MAX)
        return usage(cmd, "--chunk-size needs a number of bytes from %u to %u", TEMPO_SEAL_CHUNK_MIN,
                     TEMPO_SEAL_CHUNK_MAX);
      break;
    }
    case 'h': printf("%s", help); return -1;
    case ':': return usage(cmd, "option '%s' needs a value", argv[optind - 1]);
    default: return usage(cmd, "unknown option '%s'", argv[optind - 1]);
    }
  }
  if (!o->key_file) return usage(cmd, "needs --key-file (create one with 'tempo keygen owner.key')");
  if (optind >= argc) return usage(cmd, "needs at least one file");
  if (o->out && (o->out_dir || optind + 1 < argc)) return usage(cmd, "--out takes one input file and no --out-dir");
  return 0;
}

static int seal_or_unseal(int argc, char **argv, bool seal) {
  const char *cmd = seal ? "seal" : "unseal";
  static const char seal_help[] =
      "usage: tempo seal --key-file KEY [--label L] [--out FILE | --out-dir DIR] [--chunk-size N] FILE...\n"
      "Encrypts and authenticates each FILE into FILE.sealed (or into DIR) for upload. The label binds a file\n"
      "to its role; by default it comes from the name: *.safetensors -> weights, *.ckpt -> checkpoint,\n"
      "*.jsonl -> metrics, else data/<name without .gz> (train-images-idx3-ubyte.gz -> data/train-images-idx3-ubyte).\n";
  static const char unseal_help[] =
      "usage: tempo unseal --key-file KEY [--label L | --any-label] [--out FILE | --out-dir DIR] FILE.sealed...\n"
      "Checks and decrypts each sealed file into its name without .sealed (or into DIR). The file must carry the\n"
      "label its output name implies (model.ckpt -> checkpoint, metrics.jsonl -> metrics), or --label's.\n";
  seal_opts o;
  int rc = parse_seal_opts(cmd, argc, argv, &o, seal ? seal_help : unseal_help);
  if (rc) return rc < 0 ? 0 : rc;
  tempo_owner_key *k;
  tempo_status st = tempo_owner_key_provision(o.key_file, &k);
  if (st) return fail(cmd, st);
  if (o.out_dir && (st = tempo_mkdir_p(o.out_dir))) {
    tempo_owner_key_free(k);
    return fail(cmd, st);
  }
  rc = 0;
  static char out[NAME_CAP];
  for (int i = optind; i < argc && !rc; i++) {
    const char *in = argv[i];
    if (o.out)
      snprintf(out, sizeof out, "%s", o.out);
    else if (!seal && !ends_with(in, TEMPO_SEAL_SUFFIX))
      rc = usage(cmd, "'%s' does not end with %s: name the output with --out", in, TEMPO_SEAL_SUFFIX);
    else if (!derive_name(out, in, o.out_dir, seal ? NULL : TEMPO_SEAL_SUFFIX, seal ? TEMPO_SEAL_SUFFIX : ""))
      rc = usage(cmd, "cannot derive an output name from '%s'", in);
    if (rc) break;
    char label[TEMPO_SEAL_LABEL_MAX + 1], got[TEMPO_SEAL_LABEL_MAX + 1];
    const char *want = o.label;
    if (!want && (seal || !o.any_label)) {
      if ((st = tempo_seal_default_label(seal ? in : out, label, sizeof label))) {
        rc = fail(cmd, st);
        break;
      }
      want = label;
    }
    if (seal)
      st = tempo_seal_file(in, out, k, want, (uint32_t)o.chunk);
    else
      st = tempo_unseal_file(in, out, k, o.any_label ? NULL : want, got);
    if (st) {
      rc = fail(cmd, st);
      break;
    }
    printf("%s %s -> %s (label %s)\n", seal ? "sealed" : "unsealed", in, out, seal ? want : got);
  }
  tempo_owner_key_free(k);
  return rc;
}

int tempo_cmd_seal(int argc, char **argv) { return seal_or_unseal(argc, argv, true); }
int tempo_cmd_unseal(int argc, char **argv) { return seal_or_unseal(argc, argv, false); }

/* Reads a whole input: unsealed with k when it is sealed (label), else as is. */
static tempo_status read_input(const char *path, const tempo_owner_key *k, const char *label, uint8_t **buf,
                               size_t *len) {
  if (tempo_is_sealed_file(path)) {
    if (!k) return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "%s is sealed: pass --key-file", path);
    return tempo_unseal_read(path, k, label, (size_t)16 << 30, buf, len, NULL);
  }
  return tempo_read_file(path, (size_t)16 << 30, buf, len);
}

int tempo_cmd_export(int argc, char **argv) {
  static const struct option opts[] = {
      {"format", required_argument, 0, 'f'}, {"key-file", required_argument, 0, 'k'},
      {"out", required_argument, 0, 'o'},    {"model", required_argument, 0, 'm'},
      {"data", required_argument, 0, 'd'},   {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
  const char *format = NULL, *key_file = NULL, *outp = NULL, *model = "mlp";
  tempo_dataset_kind data = TEMPO_DATASET_FASHION_MNIST;
  optind = 1;
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, ":ho:", opts, NULL)) != -1) {
    switch (c) {
    case 'f': format = optarg; break;
    case 'k': key_file = optarg; break;
    case 'o': outp = optarg; break;
    case 'm': model = optarg; break;
    case 'd':
      if (!tempo_dataset_kind_parse(optarg, &data))
        return usage("export", "unknown dataset '%s' (use fashion-mnist or cifar10)", optarg);
      break;
    case 'h':
      printf("usage: tempo export --format safetensors [--key-file KEY] [--out FILE] MODEL.ckpt[.sealed]\n"
             "       tempo export --format ckpt [--model NAME] [--data NAME] [--key-file KEY] [--out FILE] "
             "W.safetensors\n"
             "safetensors: writes a checkpoint's weights under the PyTorch twin's state_dict names (F32), for\n"
             "torch.load-free loading with the safetensors format. ckpt: the reverse, a Tempo checkpoint (for\n"
             "`tempo eval`) from PyTorch-named weights of MODEL (default mlp) for DATA's input shape (default\n"
             "fashion-mnist); with --key-file it is written sealed. Sealed inputs need --key-file.\n");
      return 0;
    case ':': return usage("export", "option '%s' needs a value", argv[optind - 1]);
    default: return usage("export", "unknown option '%s'", argv[optind - 1]);
    }
  }
  if (!format) return usage("export", "needs --format safetensors (or ckpt)");
  const bool to_st = strcmp(format, "safetensors") == 0;
  if (!to_st && strcmp(format, "ckpt") != 0) return usage("export", "unknown format '%s' (safetensors or ckpt)", format);
  if (optind + 1 != argc) return usage("export", "needs exactly one input file");
  const char *in = argv[optind];
  static char out[NAME_CAP];
  if (outp) {
    snprintf(out, sizeof out, "%s", outp);
  } else {
    char tmp[NAME_CAP];
    snprintf(tmp, sizeof tmp, "%s", in);
    if (ends_with(tmp, TEMPO_SEAL_SUFFIX)) tmp[strlen(tmp) - strlen(TEMPO_SEAL_SUFFIX)] = '\0';
    if (!derive_name(out, tmp, NULL, to_st ? ".ckpt" : ".safetensors", to_st ? ".safetensors" : ".ckpt") ||
        strcmp(out, tmp) == 0)
      return usage("export", "cannot derive an output name from '%s': pass --out", in);
  }

  tempo_owner_key *k = NULL;
  tempo_mm *mm = NULL;
  tempo_model *m = NULL;
  uint8_t *buf = NULL;
  size_t len = 0;
  tempo_st_file *stf = NULL;
  tempo_status st = TEMPO_STATUS_OK;
  tempo_ckpt_meta meta;
  memset(&meta, 0, sizeof meta);
  if (key_file && (st = tempo_owner_key_provision(key_file, &k))) goto out;
  if (k && !to_st && !outp && strlen(out) + strlen(TEMPO_SEAL_SUFFIX) < sizeof out) strcat(out, TEMPO_SEAL_SUFFIX);
  if ((st = read_input(in, k, to_st ? TEMPO_SEAL_LABEL_CHECKPOINT : TEMPO_SEAL_LABEL_WEIGHTS, &buf, &len))) goto out;
  tempo_model_config mc = {.num_classes = 10, .max_batch = 1};
  if (to_st) {
    if ((st = tempo_ckpt_parse(buf, len, in, &meta, NULL, NULL))) goto out;
    snprintf(mc.name, sizeof mc.name, "%s", meta.model);
    mc.in_c = meta.in_c, mc.in_h = meta.in_h, mc.in_w = meta.in_w, mc.num_classes = meta.num_classes;
  } else {
    if ((st = tempo_st_parse(buf, len, in, &stf))) goto out;
    snprintf(mc.name, sizeof mc.name, "%s", model);
    const bool cifar = data == TEMPO_DATASET_CIFAR10;
    mc.in_c = cifar ? 3 : 1, mc.in_h = mc.in_w = cifar ? 32 : 28;
  }
  tempo_mm_config ec;
  tempo_mm_config_default(&ec);
  ec.mode = TEMPO_MODE_LOCAL;
  ec.threads = 1;
  if ((st = tempo_mm_create(&ec, &mm)) || (st = tempo_model_create(&mc, mm, 1, &m))) goto out;
  if (to_st) {
    if ((st = tempo_ckpt_parse(buf, len, in, &meta, &m->params, NULL)) ||
        (st = tempo_params_save_st(&m->params, out)))
      goto out;
  } else {
    if ((st = tempo_params_load_st(&m->params, stf, true, NULL))) goto out;
    snprintf(meta.model, sizeof meta.model, "%s", mc.name);
    snprintf(meta.dataset, sizeof meta.dataset, "%s", tempo_dataset_kind_name(data));
    meta.in_c = mc.in_c, meta.in_h = mc.in_h, meta.in_w = mc.in_w, meta.num_classes = mc.num_classes;
    meta.batch_size = 64, meta.epochs = 1, meta.seed = 1;
    tempo_optim_config_default(&meta.optim, TEMPO_OPTIM_SGD);
    if ((st = tempo_ckpt_save_sealed(out, k, &meta, &m->params, NULL))) goto out;
  }
  printf("exported %s (%s, %zu parameters) -> %s\n", in, mc.name, m->params.count, out);
out:
  tempo_st_close(stf);
  if (buf) sodium_memzero(buf, len);
  free(buf);
  tempo_model_free(m);
  tempo_mm_free(mm);
  tempo_owner_key_free(k);
  return st ? fail("export", st) : 0;
}
