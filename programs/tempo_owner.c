/* tempo_owner.c - the model owner's program tempo-owner: `tempo-owner keygen`, `seal`, `unseal`,
 * `export` (docs/confidential-io.md). It runs on the owner's machine, never in the cloud, and
 * is not linked into the master (`tempo`, the enclave's binary). Each command parses its own
 * options; exit status 0 ok, 1 runtime error, 2 usage error. */
#include <getopt.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_common.h"
#include "tempo/checkpoint.h"
#include "tempo/data.h"
#include "tempo/fileio.h"
#include "tempo/model.h"
#include "tempo/netfile.h"
#include "tempo/seal.h"
#include "tempo/weights.h"

#define NAME_CAP 4096
/* the commands' names in messages */
#define KEYGEN "tempo-owner keygen"
#define SEAL "tempo-owner seal"
#define UNSEAL "tempo-owner unseal"
#define EXPORT "tempo-owner export"

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

static int tempo_cmd_keygen(int argc, char **argv) {
  static const struct option opts[] = {{"force", no_argument, 0, 'f'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
  bool force = false;
  optind = 1;
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    if (c == 'f') {
      force = true;
    } else if (c == 'h') {
      printf("usage: tempo-owner keygen [--force] KEYFILE\n"
             "Writes a new random owner key (mode 0600) and prints its id. Keep the file secret and backed up:\n"
             "without it, sealed results cannot be opened. --force replaces an existing file.\n");
      return 0;
    } else {
      return tempo_cli_usage(KEYGEN, "unknown option '%s'", argv[optind - 1]);
    }
  }
  if (optind + 1 != argc)
    return tempo_cli_usage(KEYGEN, "needs exactly one key file name: tempo-owner keygen owner.key");
  tempo_owner_key *k;
  tempo_status st = tempo_owner_key_generate(&k);
  if (!st) st = tempo_owner_key_save(k, argv[optind], force);
  if (st) {
    tempo_owner_key_free(k);
    return tempo_cli_fail(KEYGEN, st);
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
    case 'c':
      if (!tempo_cli_parse_long(optarg, TEMPO_SEAL_CHUNK_MIN, TEMPO_SEAL_CHUNK_MAX, &o->chunk))
        return tempo_cli_usage(cmd, "--chunk-size needs a number of bytes from %u to %u", TEMPO_SEAL_CHUNK_MIN,
                               TEMPO_SEAL_CHUNK_MAX);
      break;
    case 'h': printf("%s", help); return -1;
    case ':': return tempo_cli_usage(cmd, "option '%s' needs a value", argv[optind - 1]);
    default: return tempo_cli_usage(cmd, "unknown option '%s'", argv[optind - 1]);
    }
  }
  if (!o->key_file) return tempo_cli_usage(cmd, "needs --key-file (create one with 'tempo-owner keygen owner.key')");
  if (optind >= argc) return tempo_cli_usage(cmd, "needs at least one file");
  if (o->out && (o->out_dir || optind + 1 < argc))
    return tempo_cli_usage(cmd, "--out takes one input file and no --out-dir");
  return 0;
}

static int seal_or_unseal(int argc, char **argv, bool seal) {
  const char *cmd = seal ? SEAL : UNSEAL;
  static const char seal_help[] =
      "usage: tempo-owner seal --key-file KEY [--label L] [--out FILE | --out-dir DIR] [--chunk-size N] FILE...\n"
      "Encrypts and authenticates each FILE into FILE.sealed (or into DIR) for upload. The label binds a file\n"
      "to its role; by default it comes from the name: *.safetensors -> weights, *.ckpt -> checkpoint,\n"
      "*.jsonl -> metrics, else data/<name without .gz> (train-images-idx3-ubyte.gz -> data/train-images-idx3-ubyte).\n";
  static const char unseal_help[] =
      "usage: tempo-owner unseal --key-file KEY [--label L | --any-label] [--out FILE | --out-dir DIR] FILE.sealed...\n"
      "Checks and decrypts each sealed file into its name without .sealed (or into DIR). The file must carry the\n"
      "label its output name implies (model.ckpt -> checkpoint, metrics.jsonl -> metrics), or --label's.\n";
  seal_opts o;
  int rc = parse_seal_opts(cmd, argc, argv, &o, seal ? seal_help : unseal_help);
  if (rc) return rc < 0 ? 0 : rc;
  tempo_owner_key *k;
  tempo_status st = tempo_owner_key_provision(o.key_file, &k);
  if (st) return tempo_cli_fail(cmd, st);
  if (o.out_dir && (st = tempo_mkdir_p(o.out_dir))) {
    tempo_owner_key_free(k);
    return tempo_cli_fail(cmd, st);
  }
  rc = 0;
  static char out[NAME_CAP];
  for (int i = optind; i < argc && !rc; i++) {
    const char *in = argv[i];
    if (o.out)
      snprintf(out, sizeof out, "%s", o.out);
    else if (!seal && !ends_with(in, TEMPO_SEAL_SUFFIX))
      rc = tempo_cli_usage(cmd, "'%s' does not end with %s: name the output with --out", in, TEMPO_SEAL_SUFFIX);
    else if (!derive_name(out, in, o.out_dir, seal ? NULL : TEMPO_SEAL_SUFFIX, seal ? TEMPO_SEAL_SUFFIX : ""))
      rc = tempo_cli_usage(cmd, "cannot derive an output name from '%s'", in);
    if (rc) break;
    char label[TEMPO_SEAL_LABEL_MAX + 1], got[TEMPO_SEAL_LABEL_MAX + 1];
    const char *want = o.label;
    if (!want && (seal || !o.any_label)) {
      if ((st = tempo_seal_default_label(seal ? in : out, label, sizeof label))) {
        rc = tempo_cli_fail(cmd, st);
        break;
      }
      want = label;
    }
    if (seal)
      st = tempo_seal_file(in, out, k, want, (uint32_t)o.chunk);
    else
      st = tempo_unseal_file(in, out, k, o.any_label ? NULL : want, got);
    if (st) {
      rc = tempo_cli_fail(cmd, st);
      break;
    }
    printf("%s %s -> %s (label %s)\n", seal ? "sealed" : "unsealed", in, out, seal ? want : got);
  }
  tempo_owner_key_free(k);
  return rc;
}

static int tempo_cmd_seal(int argc, char **argv) { return seal_or_unseal(argc, argv, true); }
static int tempo_cmd_unseal(int argc, char **argv) { return seal_or_unseal(argc, argv, false); }

/* Reads a whole input: unsealed with k when it is sealed (label), else as is. */
static tempo_status read_input(const char *path, const tempo_owner_key *k, const char *label, uint8_t **buf,
                               size_t *len) {
  if (tempo_is_sealed_file(path)) {
    if (!k) return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "%s is sealed: pass --key-file", path);
    return tempo_unseal_read(path, k, label, (size_t)16 << 30, buf, len, NULL);
  }
  return tempo_read_file(path, (size_t)16 << 30, buf, len);
}

static int tempo_cmd_export(int argc, char **argv) {
  static const struct option opts[] = {
      {"format", required_argument, 0, 'f'}, {"key-file", required_argument, 0, 'k'},
      {"out", required_argument, 0, 'o'},    {"model", required_argument, 0, 'm'},
      {"data", required_argument, 0, 'd'},   {"net", required_argument, 0, 'n'},
      {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
  const char *format = NULL, *key_file = NULL, *outp = NULL, *model = "mlp", *net_file = NULL;
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
    case 'n': net_file = optarg; break;
    case 'd':
      if (!tempo_dataset_kind_parse(optarg, &data) || data == TEMPO_DATASET_NPY)
        return tempo_cli_usage(EXPORT, "unknown dataset '%s' (use fashion-mnist or cifar10: an npy dataset has no "
                               "fixed input shape)", optarg);
      break;
    case 'h':
      printf("usage: tempo-owner export --format safetensors [--net FILE] [--key-file KEY] [--out FILE] "
             "MODEL.ckpt[.sealed]\n"
             "       tempo-owner export --format ckpt [--model NAME | --net FILE] [--data NAME] [--key-file KEY] "
             "[--out FILE] W.safetensors\n"
             "--net FILE: the model is the network file's (docs/network-format.md), as it was for training.\n"
             "safetensors: writes a checkpoint's weights under the PyTorch twin's state_dict names (F32), for\n"
             "torch.load-free loading with the safetensors format. ckpt: the reverse, a Tempo checkpoint (for\n"
             "`tempo eval`) from PyTorch-named weights of MODEL (default mlp) for DATA's input shape (default\n"
             "fashion-mnist); with --key-file it is written sealed. Sealed inputs need --key-file.\n");
      return 0;
    case ':': return tempo_cli_usage(EXPORT, "option '%s' needs a value", argv[optind - 1]);
    default: return tempo_cli_usage(EXPORT, "unknown option '%s'", argv[optind - 1]);
    }
  }
  if (!format) return tempo_cli_usage(EXPORT, "needs --format safetensors (or ckpt)");
  const bool to_st = strcmp(format, "safetensors") == 0;
  if (!to_st && strcmp(format, "ckpt") != 0)
    return tempo_cli_usage(EXPORT, "unknown format '%s' (safetensors or ckpt)", format);
  if (optind + 1 != argc) return tempo_cli_usage(EXPORT, "needs exactly one input file");
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
      return tempo_cli_usage(EXPORT, "cannot derive an output name from '%s': pass --out", in);
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
  tempo_net *net = NULL;
  if (net_file && (st = tempo_net_parse_file(net_file, &net))) goto out;
  if (net && to_st && strcmp(net->name, mc.name) != 0) {
    st = tempo_set_error(TEMPO_STATUS_MISMATCH, "%s describes network '%s' but %s holds model '%s'", net_file,
                         net->name, in, mc.name);
  } else if (net) {
    snprintf(mc.name, sizeof mc.name, "%s", net->name);
    if (!to_st && net->in_c) mc.in_c = net->in_c, mc.in_h = net->in_h, mc.in_w = net->in_w;
    if (!to_st && net->classes) mc.num_classes = net->classes;
  }
  if (!st) st = tempo_mm_create(&ec, &mm);
  if (!st) st = net ? tempo_model_create_net(net, &mc, mm, 1, &m) : tempo_model_create(&mc, mm, 1, &m);
  tempo_net_free(net);
  if (st) goto out;
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
  return st ? tempo_cli_fail(EXPORT, st) : 0;
}

static void print_help(void) {
  printf("usage: tempo-owner <command> [options]\n"
         "\n"
         "The model owner's tools, run on the owner's machine (docs/confidential-io.md): create the key,\n"
         "seal the inputs before upload, open the sealed results the master wrote, convert weights.\n"
         "The master (tempo train, tempo eval) reads and writes the sealed files with the same key.\n"
         "\n"
         "commands (tempo-owner <command> --help for their options):\n"
         "  keygen KEYFILE                        write a new random owner key (mode 0600)\n"
         "  seal --key-file KEY FILE...           encrypt and authenticate files for upload\n"
         "  unseal --key-file KEY FILE.sealed...  check and decrypt sealed results\n"
         "  export --format safetensors|ckpt FILE convert between Tempo checkpoints and safetensors\n"
         "\n"
         "  -h, --help            this help\n"
         "  -V, --version         version\n");
}

int main(int argc, char **argv) {
  static const tempo_cli_command cmds[] = {
      {"keygen", tempo_cmd_keygen, NULL}, {"seal", tempo_cmd_seal, NULL},     {"unseal", tempo_cmd_unseal, NULL},
      {"export", tempo_cmd_export, NULL}, {"train", NULL, "tempo"},           {"eval", NULL, "tempo"},
      {"attack", NULL, "tempo-attack"},   {"privacy", NULL, "tempo-attack"},  {NULL, NULL, NULL},
  };
  static const tempo_cli_program p = {"tempo-owner", "libsodium", print_help, cmds};
  return tempo_cli_main(&p, argc, argv);
}
