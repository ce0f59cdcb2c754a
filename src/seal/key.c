/* key.c - the owner key: generation, key files, provisioning, and hardening of the master
 * process (see seal.h). Keys live in sodium_malloc'ed pages (guard pages, mlock'ed, read-only
 * between uses); a fixed table of live keys lets a signal handler or an atexit hook wipe them. */
#include "seal_internal.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tempo/fileio.h"

#define KEY_MAGIC "TMPOKEY1"
#define KEY_VERSION 1
#define LIVE_MAX 64

static _Atomic(tempo_owner_key *) live_keys[LIVE_MAX];
static tempo_key_provider_fn provider_fn;
static void *provider_ctx;

tempo_status tempo_seal_sodium_init(void) {
  if (sodium_init() < 0) return tempo_set_error(TEMPO_STATUS_INTERNAL, "libsodium failed to initialise");
  return TEMPO_STATUS_OK;
}

static void live_add(tempo_owner_key *k) {
  for (int i = 0; i < LIVE_MAX; i++) {
    tempo_owner_key *expect = NULL;
    if (atomic_compare_exchange_strong(&live_keys[i], &expect, k)) return;
  }
  /* Table full: the key is still wiped by tempo_owner_key_free, only not by the exit hooks. */
}

static void live_remove(tempo_owner_key *k) {
  for (int i = 0; i < LIVE_MAX; i++) {
    tempo_owner_key *expect = k;
    if (atomic_compare_exchange_strong(&live_keys[i], &expect, NULL)) return;
  }
}

void tempo_owner_key_wipe_all(void) {
  for (int i = 0; i < LIVE_MAX; i++) {
    tempo_owner_key *k = atomic_exchange(&live_keys[i], NULL);
    if (!k) continue;
    sodium_mprotect_readwrite(k);
    sodium_memzero(k, sizeof *k);
    sodium_mprotect_noaccess(k); /* any later use crashes instead of using a zero key */
  }
}

/* Derives the id: BLAKE2b-128 keyed with the key over a fixed context string. */
static void derive_id(const uint8_t key[TEMPO_OWNER_KEY_BYTES], uint8_t id[TEMPO_OWNER_KEY_ID_BYTES]) {
  static const char ctx[] = "tempo owner key id v1";
  crypto_generichash(id, TEMPO_OWNER_KEY_ID_BYTES, (const uint8_t *)ctx, sizeof ctx - 1, key, TEMPO_OWNER_KEY_BYTES);
}

/* A zeroed key in locked memory, writable; the caller fills it and calls key_seal(). */
static tempo_status key_alloc(tempo_owner_key **out) {
  *out = NULL;
  tempo_status st = tempo_seal_sodium_init();
  if (st) return st;
  tempo_owner_key *k = sodium_malloc(sizeof *k);
  if (!k) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "cannot allocate locked memory for the owner key");
  sodium_memzero(k, sizeof *k);
  *out = k;
  return TEMPO_STATUS_OK;
}

static void key_finish(tempo_owner_key *k) {
  derive_id(k->key, k->id);
  sodium_mprotect_readonly(k);
  live_add(k);
}

void tempo_owner_key_free(tempo_owner_key *k) {
  if (!k) return;
  live_remove(k);
  sodium_free(k); /* makes the pages writable, zeroes them and unlocks them */
}

tempo_status tempo_owner_key_generate(tempo_owner_key **out) {
  tempo_status st = key_alloc(out);
  if (st) return st;
  randombytes_buf((*out)->key, TEMPO_OWNER_KEY_BYTES);
  key_finish(*out);
  return TEMPO_STATUS_OK;
}

tempo_status tempo_owner_key_from_bytes(const uint8_t bytes[TEMPO_OWNER_KEY_BYTES], tempo_owner_key **out) {
  tempo_status st = key_alloc(out);
  if (st) return st;
  memcpy((*out)->key, bytes, TEMPO_OWNER_KEY_BYTES);
  key_finish(*out);
  return TEMPO_STATUS_OK;
}

void tempo_owner_key_id_hex(const tempo_owner_key *k, char out[2 * TEMPO_OWNER_KEY_ID_BYTES + 1]) {
  sodium_bin2hex(out, 2 * TEMPO_OWNER_KEY_ID_BYTES + 1, k->id, TEMPO_OWNER_KEY_ID_BYTES);
}

/* The 64-byte key file image, built in locked memory. */
typedef struct {
  uint8_t b[TEMPO_OWNER_KEY_FILE_BYTES];
} key_image;

tempo_status tempo_owner_key_save(const tempo_owner_key *k, const char *path, bool overwrite) {
  struct stat sb;
  if (!overwrite && lstat(path, &sb) == 0)
    return tempo_set_error(TEMPO_STATUS_IO, "%s already exists: refusing to overwrite a key (use --force)", path);
  key_image *img = sodium_malloc(sizeof *img);
  if (!img) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "cannot allocate locked memory for %s", path);
  memcpy(img->b, KEY_MAGIC, 8);
  tempo_le_put32(img->b + 8, KEY_VERSION);
  tempo_le_put32(img->b + 12, 0);
  memcpy(img->b + 16, k->id, TEMPO_OWNER_KEY_ID_BYTES);
  memcpy(img->b + 32, k->key, TEMPO_OWNER_KEY_BYTES);
  const void *parts[1] = {img->b};
  size_t lens[1] = {sizeof img->b};
  tempo_status st = tempo_write_file_atomic(path, parts, lens, 1); /* creates the file 0600 */
  sodium_free(img);
  return st;
}

/* Parses a key file image (wiped by the caller). */
static tempo_status key_parse(const uint8_t *b, size_t len, const char *what, tempo_owner_key **out) {
  *out = NULL;
  if (len != TEMPO_OWNER_KEY_FILE_BYTES || memcmp(b, KEY_MAGIC, 8) != 0)
    return tempo_set_error(TEMPO_STATUS_CORRUPT, "%s is not a Tempo owner key (%zu bytes; a key file has %d and "
                           "starts with %s): create one with 'tempo-owner keygen'", what, len,
                           TEMPO_OWNER_KEY_FILE_BYTES, KEY_MAGIC);
  uint32_t version = tempo_le_get32(b + 8);
  if (version != KEY_VERSION || tempo_le_get32(b + 12) != 0)
    return tempo_set_error(TEMPO_STATUS_CORRUPT, "%s has key format version %u; this build reads version %d", what,
                           version, KEY_VERSION);
  tempo_status st = key_alloc(out);
  if (st) return st;
  memcpy((*out)->key, b + 32, TEMPO_OWNER_KEY_BYTES);
  key_finish(*out);
  if (sodium_memcmp((*out)->id, b + 16, TEMPO_OWNER_KEY_ID_BYTES) != 0) {
    tempo_owner_key_free(*out);
    *out = NULL;
    return tempo_set_error(TEMPO_STATUS_CORRUPT, "%s is damaged: its key does not match its key id", what);
  }
  return TEMPO_STATUS_OK;
}

tempo_status tempo_owner_key_read_fd(int fd, const char *what, tempo_owner_key **out) {
  *out = NULL;
  key_image *img = sodium_malloc(sizeof *img + 1);
  if (!img) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "cannot allocate locked memory for %s", what);
  uint8_t *b = img->b;
  size_t got = 0, cap = sizeof img->b + 1; /* one extra byte detects an oversized file */
  tempo_status st = TEMPO_STATUS_OK;
  while (got < cap) {
    ssize_t r = read(fd, b + got, cap - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      st = tempo_set_error(TEMPO_STATUS_IO, "cannot read the owner key from %s: %s", what, strerror(errno));
      break;
    }
    if (r == 0) break;
    got += (size_t)r;
  }
  if (!st) st = key_parse(b, got, what, out);
  sodium_free(img);
  return st;
}

tempo_status tempo_owner_key_load(const char *path, tempo_owner_key **out) {
  *out = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return tempo_set_error(TEMPO_STATUS_IO, "cannot open the key file %s: %s%s", path, strerror(errno),
                           errno == ENOENT ? " (create one with 'tempo-owner keygen')" : "");
  struct stat sb;
  tempo_status st = TEMPO_STATUS_OK;
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode))
    st = tempo_set_error(TEMPO_STATUS_IO, "the key file %s is not a regular file", path);
  else if (sb.st_mode & 077)
    st = tempo_set_error(TEMPO_STATUS_IO, "the key file %s is accessible by other users (mode %03o): chmod 600 %s",
                         path, (unsigned)(sb.st_mode & 0777), path);
  else
    st = tempo_owner_key_read_fd(fd, path, out);
  close(fd);
  return st;
}

void tempo_owner_key_set_provider(tempo_key_provider_fn fn, void *ctx) {
  provider_fn = fn;
  provider_ctx = ctx;
}

/* Gramine's RA-TLS secret provisioning (libsecret_prov_attest.so, preloaded with
 * SECRET_PROVISION_CONSTRUCTOR=1) has fetched the secret before main; it is the key file's
 * 64-byte image. Looked up at run time so the build does not depend on Gramine. */
static tempo_status provision_gramine(tempo_owner_key **out) {
  typedef int (*get_fn)(uint8_t **, size_t *);
  typedef void (*destroy_fn)(void);
  get_fn get = (get_fn)(uintptr_t)dlsym(RTLD_DEFAULT, "secret_provision_get");
  destroy_fn destroy = (destroy_fn)(uintptr_t)dlsym(RTLD_DEFAULT, "secret_provision_destroy");
  if (!get)
    return tempo_set_error(TEMPO_STATUS_UNSUPPORTED, "--key-file gramine-secret: libsecret_prov_attest.so is not "
                           "loaded (run inside Gramine with the manifest of deploy/gramine; docs/sgx.md)");
  uint8_t *secret = NULL;
  size_t len = 0;
  int rc = get(&secret, &len);
  tempo_status st;
  if (rc != 0 || !secret)
    st = tempo_set_error(TEMPO_STATUS_IO, "Gramine secret provisioning delivered no key (error %d): check "
                         "SECRET_PROVISION_SERVERS and the verifier's log", rc);
  else
    st = key_parse(secret, len, "the provisioned secret", out);
  if (destroy) destroy(); /* zeroes and frees the library's copy */
  return st;
}

tempo_status tempo_owner_key_provision(const char *spec, tempo_owner_key **out) {
  *out = NULL;
  if (!spec || !*spec) return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "empty --key-file");
  if (provider_fn) {
    tempo_status st = provider_fn(provider_ctx, spec, out);
    if (st != TEMPO_STATUS_UNSUPPORTED) return st;
    *out = NULL;
  }
  if (strncmp(spec, "fd:", 3) == 0) {
    char *end;
    errno = 0;
    long fd = strtol(spec + 3, &end, 10);
    if (errno || *end || end == spec + 3 || fd < 0 || fd > 1 << 20)
      return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "--key-file %s: fd: needs a descriptor number", spec);
    tempo_status st = tempo_owner_key_read_fd((int)fd, spec, out);
    close((int)fd);
    return st;
  }
  if (strcmp(spec, "gramine-secret") == 0) return provision_gramine(out);
  if (strncmp(spec, "file:", 5) == 0) spec += 5;
  return tempo_owner_key_load(spec, out);
}

static void wipe_and_die(int sig) {
  tempo_owner_key_wipe_all();
  signal(sig, SIG_DFL);
  raise(sig);
}

tempo_status tempo_harden_process(void) {
  tempo_status st = tempo_seal_sodium_init();
  if (st) return st;
  struct rlimit rl = {0, 0};
  if (setrlimit(RLIMIT_CORE, &rl) != 0)
    return tempo_set_error(TEMPO_STATUS_IO, "cannot disable core dumps: %s", strerror(errno));
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
    return tempo_set_error(TEMPO_STATUS_IO, "cannot make the process non-dumpable: %s", strerror(errno));
  static atomic_bool installed;
  if (atomic_exchange(&installed, true)) return TEMPO_STATUS_OK;
  if (atexit(tempo_owner_key_wipe_all) != 0)
    return tempo_set_error(TEMPO_STATUS_INTERNAL, "cannot register the key wipe at exit");
  const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = wipe_and_die;
    sigemptyset(&sa.sa_mask);
    struct sigaction old;
    if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler == SIG_IGN) continue; /* keep nohup's choice */
    if (sigaction(sigs[i], &sa, NULL) != 0)
      return tempo_set_error(TEMPO_STATUS_IO, "cannot install the key-wiping signal handler: %s", strerror(errno));
  }
  return TEMPO_STATUS_OK;
}
