/* test_seal.c - sealed files and owner keys: round trips on odd sizes (0, 1, chunk-1, chunk,
 * chunk+1, several chunks; buffer and streaming paths), every flipped byte refused as corrupt
 * with the file named, truncation at every chunk boundary and extension refused, reordered
 * chunks refused, wrong key refused, swapped labels refused, key files (0600, no overwrite,
 * permissions, damage), provisioning (fd, hook, Gramine absent), sealed checkpoints, and
 * process hardening (no core dumps, not dumpable, keys wiped on a fatal signal). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tempo/checkpoint.h"
#include "tempo/fileio.h"
#include "tempo/model.h"
#include "tempo/seal.h"

static char tmpdir[64];

static void path_in(char *buf, size_t cap, const char *name) { snprintf(buf, cap, "%s/%s", tmpdir, name); }

static uint8_t *read_all(const char *path, size_t *len) {
  uint8_t *b;
  assert_int_equal(tempo_read_file(path, (size_t)1 << 30, &b, len), TEMPO_STATUS_OK);
  return b;
}

static void write_all_bytes(const char *path, const uint8_t *b, size_t len) {
  const void *parts[1] = {b};
  assert_int_equal(tempo_write_file_atomic(path, parts, &len, 1), TEMPO_STATUS_OK);
}

static void flip_byte(const char *path, size_t off) {
  int fd = open(path, O_RDWR);
  assert_true(fd >= 0);
  uint8_t b;
  assert_int_equal(pread(fd, &b, 1, (off_t)off), 1);
  b ^= 0x01;
  assert_int_equal(pwrite(fd, &b, 1, (off_t)off), 1);
  close(fd);
}

static size_t expected_size(size_t len, size_t chunk, const char *label) {
  size_t nchunks = len == 0 ? 1 : (len + chunk - 1) / chunk;
  return 44 + strlen(label) + 24 + len + nchunks * 17;
}

static void test_round_trip_sizes(void **state) {
  (void)state;
  tempo_owner_key *k;
  assert_int_equal(tempo_owner_key_generate(&k), TEMPO_STATUS_OK);
  const size_t chunks[2] = {TEMPO_SEAL_CHUNK_MIN, TEMPO_SEAL_CHUNK_DEFAULT};
  char sealed[128], plain[128], back[128], label[TEMPO_SEAL_LABEL_MAX + 1];
  path_in(sealed, sizeof sealed, "x.sealed");
  path_in(plain, sizeof plain, "x.bin");
  path_in(back, sizeof back, "x.back");
  for (int ci = 0; ci < 2; ci++) {
    const size_t C = chunks[ci];
    const size_t sizes[] = {0, 1, C - 1, C, C + 1, 3 * C + 5, 4 * C};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
      const size_t n = sizes[si];
      uint8_t *data = malloc(n + 1);
      randombytes_buf(data, n);
      /* buffer path */
      assert_int_equal(tempo_seal_write(sealed, k, "data/odd", data, n, (uint32_t)C), TEMPO_STATUS_OK);
      struct stat sb;
      assert_int_equal(stat(sealed, &sb), 0);
      assert_int_equal((size_t)sb.st_size, expected_size(n, C, "data/odd"));
      assert_int_equal(sb.st_mode & 0777, 0600);
      uint8_t *out;
      size_t len;
      assert_int_equal(tempo_unseal_read(sealed, k, "data/odd", n + 10, &out, &len, label), TEMPO_STATUS_OK);
      assert_int_equal(len, n);
      if (n) assert_memory_equal(out, data, n);
      assert_string_equal(label, "data/odd");
      free(out);
      /* a limit below the content size is refused before allocating */
      if (n > 0) assert_int_equal(tempo_unseal_read(sealed, k, NULL, n - 1, &out, &len, NULL), TEMPO_STATUS_CORRUPT);
      /* streaming file path, both directions */
      write_all_bytes(plain, data, n);
      assert_int_equal(tempo_seal_file(plain, sealed, k, "data/odd", (uint32_t)C), TEMPO_STATUS_OK);
      assert_int_equal(tempo_unseal_file(sealed, back, k, "data/odd", NULL), TEMPO_STATUS_OK);
      uint8_t *b2 = read_all(back, &len);
      assert_int_equal(len, n);
      if (n) assert_memory_equal(b2, data, n);
      free(b2);
      free(data);
    }
  }
  /* two seals of the same data differ (fresh stream header) */
  uint8_t d[100] = {1};
  char s2[128];
  path_in(s2, sizeof s2, "y.sealed");
  assert_int_equal(tempo_seal_write(sealed, k, "l", d, sizeof d, 0), TEMPO_STATUS_OK);
  assert_int_equal(tempo_seal_write(s2, k, "l", d, sizeof d, 0), TEMPO_STATUS_OK);
  size_t l1, l2;
  uint8_t *a = read_all(sealed, &l1), *b = read_all(s2, &l2);
  assert_int_equal(l1, l2);
  assert_true(memcmp(a, b, l1) != 0);
  free(a);
  free(b);
  /* bad arguments */
  assert_int_equal(tempo_seal_write(sealed, k, "", d, 1, 0), TEMPO_STATUS_INVALID_ARGUMENT);
  assert_int_equal(tempo_seal_write(sealed, k, "l", d, 1, 100), TEMPO_STATUS_INVALID_ARGUMENT);
  assert_int_equal(tempo_seal_write(sealed, NULL, "l", d, 1, 0), TEMPO_STATUS_INVALID_ARGUMENT);
  tempo_owner_key_free(k);
}

/* Unsealing must fail with `want`, name the file, and leave no output. */
static void expect_refused(const char *sealed, const tempo_owner_key *k, const char *label, tempo_status want) {
  uint8_t *out = (uint8_t *)1;
  size_t len = 7;
  tempo_status st = tempo_unseal_read(sealed, k, label, (size_t)1 << 30, &out, &len, NULL);
  if (st != want) fail_msg("%s: status %d (%s), expected %d", sealed, st, tempo_errmsg(), want);
  assert_null(out);
  assert_int_equal(len, 0);
  assert_non_null(strstr(tempo_errmsg(), sealed));
}

static void test_tampering_refused(void **state) {
  (void)state;
  tempo_owner_key *k;
  assert_int_equal(tempo_owner_key_generate(&k), TEMPO_STATUS_OK);
  char sealed[128], back[128];
  path_in(sealed, sizeof sealed, "t.sealed");
  path_in(back, sizeof back, "t.back");
  /* small file, 3 chunks: every single byte */
  uint8_t data[2500];
  randombytes_buf(data, sizeof data);
  assert_int_equal(tempo_seal_write(sealed, k, "data/train-labels-idx1-ubyte", data, sizeof data, 1024),
                   TEMPO_STATUS_OK);
  size_t flen;
  free(read_all(sealed, &flen));
  for (size_t i = 0; i < flen; i++) {
    flip_byte(sealed, i);
    expect_refused(sealed, k, "data/train-labels-idx1-ubyte", TEMPO_STATUS_CORRUPT);
    flip_byte(sealed, i);
  }
  /* the streaming unsealer refuses too and leaves no output file */
  flip_byte(sealed, flen - 1);
  assert_int_equal(tempo_unseal_file(sealed, back, k, NULL, NULL), TEMPO_STATUS_CORRUPT);
  assert_int_not_equal(access(back, F_OK), 0);
  flip_byte(sealed, flen - 1);
  assert_int_equal(tempo_unseal_file(sealed, back, k, NULL, NULL), TEMPO_STATUS_OK);

  /* truncation: at and around every chunk boundary, inside the header, and extension */
  uint8_t *img = read_all(sealed, &flen);
  const size_t hdr = 44 + strlen("data/train-labels-idx1-ubyte") + 24;
  for (size_t c = 0; c <= 3; c++) {
    size_t at = hdr + c * (1024 + 17);
    for (size_t d = 0; d < 3; d++) {
      size_t cut = at + d - 1;
      if (cut >= flen) continue;
      write_all_bytes(sealed, img, cut);
      expect_refused(sealed, k, NULL, TEMPO_STATUS_CORRUPT);
    }
  }
  for (size_t cut = 0; cut < hdr; cut += 7) {
    write_all_bytes(sealed, img, cut);
    expect_refused(sealed, k, NULL, TEMPO_STATUS_CORRUPT);
  }
  uint8_t *longer = malloc(flen + 1);
  memcpy(longer, img, flen);
  longer[flen] = 0;
  write_all_bytes(sealed, longer, flen + 1);
  expect_refused(sealed, k, NULL, TEMPO_STATUS_CORRUPT);
  assert_non_null(strstr(tempo_errmsg(), "truncated or extended"));
  /* chunks 1 and 2 swapped (same sizes): authentication fails */
  memcpy(longer, img, flen);
  memcpy(longer + hdr, img + hdr + 1041, 1041);
  memcpy(longer + hdr + 1041, img + hdr, 1041);
  write_all_bytes(sealed, longer, flen);
  expect_refused(sealed, k, NULL, TEMPO_STATUS_CORRUPT);
  assert_non_null(strstr(tempo_errmsg(), "fails authentication"));
  free(longer);

  /* wrong key */
  write_all_bytes(sealed, img, flen);
  tempo_owner_key *other;
  assert_int_equal(tempo_owner_key_generate(&other), TEMPO_STATUS_OK);
  expect_refused(sealed, other, NULL, TEMPO_STATUS_CORRUPT);
  assert_non_null(strstr(tempo_errmsg(), "wrong --key-file"));
  tempo_owner_key_free(other);
  free(img);

  /* an authentic file of another role (swapped names) */
  expect_refused(sealed, k, "data/t10k-labels-idx1-ubyte", TEMPO_STATUS_MISMATCH);
  assert_non_null(strstr(tempo_errmsg(), "swapped"));
  assert_non_null(strstr(tempo_errmsg(), "data/train-labels-idx1-ubyte"));

  /* large file with the default chunk size: a stride of flips through it */
  size_t big = 5 * TEMPO_SEAL_CHUNK_DEFAULT + 123;
  uint8_t *bd = malloc(big);
  randombytes_buf(bd, big);
  assert_int_equal(tempo_seal_write(sealed, k, "weights", bd, big, 0), TEMPO_STATUS_OK);
  free(read_all(sealed, &flen));
  for (size_t i = 0; i < flen; i += 4099) {
    flip_byte(sealed, i);
    expect_refused(sealed, k, "weights", TEMPO_STATUS_CORRUPT);
    flip_byte(sealed, i);
  }
  flip_byte(sealed, flen - 1);
  expect_refused(sealed, k, "weights", TEMPO_STATUS_CORRUPT);
  free(bd);
  /* plain files and missing files */
  char plain[128];
  path_in(plain, sizeof plain, "plain.bin");
  write_all_bytes(plain, data, 200);
  expect_refused(plain, k, NULL, TEMPO_STATUS_CORRUPT);
  assert_false(tempo_is_sealed_file(plain));
  path_in(plain, sizeof plain, "none.sealed");
  expect_refused(plain, k, NULL, TEMPO_STATUS_IO);
  tempo_owner_key_free(k);
}

static tempo_status test_provider(void *ctx, const char *spec, tempo_owner_key **out) {
  if (strcmp(spec, "test:key") != 0) return TEMPO_STATUS_UNSUPPORTED;
  return tempo_owner_key_from_bytes(ctx, out);
}

static void test_key_files_and_provisioning(void **state) {
  (void)state;
  tempo_owner_key *k, *k2;
  char kp[128], sealed[128], id1[33], id2[33];
  path_in(kp, sizeof kp, "owner.key");
  path_in(sealed, sizeof sealed, "k.sealed");
  assert_int_equal(tempo_owner_key_generate(&k), TEMPO_STATUS_OK);
  assert_int_equal(tempo_owner_key_save(k, kp, false), TEMPO_STATUS_OK);
  struct stat sb;
  assert_int_equal(stat(kp, &sb), 0);
  assert_int_equal(sb.st_mode & 0777, 0600);
  assert_int_equal(sb.st_size, TEMPO_OWNER_KEY_FILE_BYTES);
  /* no silent overwrite */
  assert_int_equal(tempo_owner_key_save(k, kp, false), TEMPO_STATUS_IO);
  assert_non_null(strstr(tempo_errmsg(), "--force"));
  /* load gives the same key: same id, and it opens what k sealed */
  assert_int_equal(tempo_owner_key_load(kp, &k2), TEMPO_STATUS_OK);
  tempo_owner_key_id_hex(k, id1);
  tempo_owner_key_id_hex(k2, id2);
  assert_string_equal(id1, id2);
  assert_int_equal(strlen(id1), 32);
  uint8_t msg[64] = "the owner's data", *out;
  size_t len;
  assert_int_equal(tempo_seal_write(sealed, k, "data/m", msg, sizeof msg, 0), TEMPO_STATUS_OK);
  assert_int_equal(tempo_unseal_read(sealed, k2, "data/m", 100, &out, &len, NULL), TEMPO_STATUS_OK);
  assert_memory_equal(out, msg, sizeof msg);
  free(out);
  tempo_owner_key_free(k2);
  /* through the provisioning interface: a path, file:PATH, fd:N */
  assert_int_equal(tempo_owner_key_provision(kp, &k2), TEMPO_STATUS_OK);
  tempo_owner_key_free(k2);
  char spec[160];
  snprintf(spec, sizeof spec, "file:%s", kp);
  assert_int_equal(tempo_owner_key_provision(spec, &k2), TEMPO_STATUS_OK);
  tempo_owner_key_free(k2);
  size_t klen;
  uint8_t *kimg = read_all(kp, &klen);
  int pfd[2];
  assert_int_equal(pipe(pfd), 0);
  assert_int_equal(write(pfd[1], kimg, klen), (ssize_t)klen);
  close(pfd[1]);
  snprintf(spec, sizeof spec, "fd:%d", pfd[0]);
  assert_int_equal(tempo_owner_key_provision(spec, &k2), TEMPO_STATUS_OK);
  tempo_owner_key_id_hex(k2, id2);
  assert_string_equal(id1, id2);
  tempo_owner_key_free(k2);
  assert_int_equal(fcntl(pfd[0], F_GETFD), -1); /* closed after reading */
  assert_int_equal(tempo_owner_key_provision("fd:x", &k2), TEMPO_STATUS_INVALID_ARGUMENT);
  /* a hook gets asked first */
  uint8_t raw[32];
  memcpy(raw, kimg + 32, 32);
  tempo_owner_key_set_provider(test_provider, raw);
  assert_int_equal(tempo_owner_key_provision("test:key", &k2), TEMPO_STATUS_OK);
  tempo_owner_key_id_hex(k2, id2);
  assert_string_equal(id1, id2);
  tempo_owner_key_free(k2);
  assert_int_equal(tempo_owner_key_provision(kp, &k2), TEMPO_STATUS_OK); /* hook passes other specs on */
  tempo_owner_key_free(k2);
  tempo_owner_key_set_provider(NULL, NULL);
  sodium_memzero(raw, sizeof raw);
  /* Gramine's secret provisioning is not loaded in this process */
  assert_int_equal(tempo_owner_key_provision("gramine-secret", &k2), TEMPO_STATUS_UNSUPPORTED);
  assert_null(k2);
  /* damaged key files: every byte flipped is refused */
  for (size_t i = 0; i < klen; i++) {
    flip_byte(kp, i);
    assert_int_equal(tempo_owner_key_load(kp, &k2), TEMPO_STATUS_CORRUPT);
    assert_null(k2);
    flip_byte(kp, i);
  }
  write_all_bytes(kp, kimg, klen - 1);
  assert_int_equal(tempo_owner_key_load(kp, &k2), TEMPO_STATUS_CORRUPT);
  /* readable by others: refused */
  write_all_bytes(kp, kimg, klen);
  assert_int_equal(chmod(kp, 0644), 0);
  assert_int_equal(tempo_owner_key_load(kp, &k2), TEMPO_STATUS_IO);
  assert_non_null(strstr(tempo_errmsg(), "chmod 600"));
  sodium_memzero(kimg, klen);
  free(kimg);
  char missing[128];
  path_in(missing, sizeof missing, "none.key");
  assert_int_equal(tempo_owner_key_load(missing, &k2), TEMPO_STATUS_IO);
  assert_non_null(strstr(tempo_errmsg(), "tempo-owner keygen"));
  tempo_owner_key_free(k);
}

static void test_default_labels(void **state) {
  (void)state;
  char l[TEMPO_SEAL_LABEL_MAX + 1];
  const char *cases[][2] = {
      {"/data/fm/train-images-idx3-ubyte.gz", "data/train-images-idx3-ubyte"},
      {"t10k-labels-idx1-ubyte", "data/t10k-labels-idx1-ubyte"},
      {"x/t10k-labels-idx1-ubyte.gz.sealed", "data/t10k-labels-idx1-ubyte"},
      {"data_batch_3.bin", "data/data_batch_3.bin"},
      {"pretrained.safetensors", "weights"},
      {"runs/mlp/model.ckpt.sealed", "checkpoint"},
      {"metrics.jsonl.sealed", "metrics"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    assert_int_equal(tempo_seal_default_label(cases[i][0], l, sizeof l), TEMPO_STATUS_OK);
    assert_string_equal(l, cases[i][1]);
  }
  assert_int_equal(tempo_seal_default_label("dir/", l, sizeof l), TEMPO_STATUS_INVALID_ARGUMENT);
}

static void test_sealed_checkpoint(void **state) {
  (void)state;
  tempo_mm_config mc;
  tempo_mm_config_default(&mc);
  mc.mode = TEMPO_MODE_LOCAL;
  tempo_mm *mm;
  assert_int_equal(tempo_mm_create(&mc, &mm), TEMPO_STATUS_OK);
  tempo_model_config cfg = {.name = "mlp", .in_c = 1, .in_h = 4, .in_w = 4, .num_classes = 10, .max_batch = 2};
  tempo_model *m, *m2;
  assert_int_equal(tempo_model_create(&cfg, mm, 3, &m), TEMPO_STATUS_OK);
  assert_int_equal(tempo_model_create(&cfg, mm, 4, &m2), TEMPO_STATUS_OK);
  tempo_ckpt_meta meta = {.model = "mlp", .in_c = 1, .in_h = 4, .in_w = 4, .num_classes = 10,
                          .dataset = "fashion-mnist", .seed = 3, .step = 17, .batch_size = 2, .epochs = 1};
  tempo_owner_key *k, *other;
  assert_int_equal(tempo_owner_key_generate(&k), TEMPO_STATUS_OK);
  assert_int_equal(tempo_owner_key_generate(&other), TEMPO_STATUS_OK);
  char ck[128], plain[128];
  path_in(ck, sizeof ck, "model.ckpt.sealed");
  path_in(plain, sizeof plain, "model.ckpt");
  assert_int_equal(tempo_ckpt_save_sealed(ck, k, &meta, &m->params, NULL), TEMPO_STATUS_OK);
  assert_true(tempo_is_sealed_file(ck));
  /* the parameters do not appear in the clear */
  size_t flen;
  uint8_t *img = read_all(ck, &flen);
  assert_null(memmem(img, flen, m->params.data, 64));
  assert_null(memmem(img, flen, "TMPOCKPT", 8));
  free(img);
  tempo_ckpt_meta got;
  assert_int_equal(tempo_ckpt_load_sealed(ck, k, &got, &m2->params, NULL), TEMPO_STATUS_OK);
  assert_memory_equal(m2->params.data, m->params.data, m->params.count * sizeof(float));
  assert_int_equal(got.step, 17);
  /* refusals: wrong key, plain loader on a sealed file, sealed loader on a plain file, flips */
  assert_int_equal(tempo_ckpt_load_sealed(ck, other, &got, NULL, NULL), TEMPO_STATUS_CORRUPT);
  assert_int_equal(tempo_ckpt_load(ck, &got, NULL, NULL), TEMPO_STATUS_INVALID_ARGUMENT);
  assert_non_null(strstr(tempo_errmsg(), "--key-file"));
  assert_int_equal(tempo_ckpt_save(plain, &meta, &m->params, NULL), TEMPO_STATUS_OK);
  assert_int_equal(tempo_ckpt_load_sealed(plain, k, &got, NULL, NULL), TEMPO_STATUS_CORRUPT);
  for (size_t i = 0; i < flen; i += (i < 200 ? 1 : 331)) {
    flip_byte(ck, i);
    assert_int_equal(tempo_ckpt_load_sealed(ck, k, &got, &m2->params, NULL), TEMPO_STATUS_CORRUPT);
    assert_non_null(strstr(tempo_errmsg(), ck));
    flip_byte(ck, i);
  }
  /* a sealed non-checkpoint renamed to a checkpoint is refused by its label */
  assert_int_equal(tempo_seal_write(ck, k, "weights", "x", 1, 0), TEMPO_STATUS_OK);
  assert_int_equal(tempo_ckpt_load_sealed(ck, k, &got, NULL, NULL), TEMPO_STATUS_MISMATCH);
  tempo_owner_key_free(k);
  tempo_owner_key_free(other);
  tempo_model_free(m);
  tempo_model_free(m2);
  tempo_mm_free(mm);
}

static void test_hardening(void **state) {
  (void)state;
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) { /* child: harden, hold a key, die by SIGTERM through the wiping handler */
    if (tempo_harden_process() != TEMPO_STATUS_OK) _exit(10);
    struct rlimit rl;
    if (getrlimit(RLIMIT_CORE, &rl) != 0 || rl.rlim_cur != 0 || rl.rlim_max != 0) _exit(11);
    if (prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0) _exit(12);
    tempo_owner_key *k;
    if (tempo_owner_key_generate(&k) != TEMPO_STATUS_OK) _exit(13);
    raise(SIGTERM);
    _exit(14); /* not reached: the handler wipes the key and re-raises */
  }
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  if (WIFEXITED(status)) fail_msg("hardening check %d failed in the child", WEXITSTATUS(status));
  assert_true(WIFSIGNALED(status));
  assert_int_equal(WTERMSIG(status), SIGTERM);
  /* wiping all keys leaves them freeable */
  tempo_owner_key *k;
  assert_int_equal(tempo_owner_key_generate(&k), TEMPO_STATUS_OK);
  tempo_owner_key_wipe_all();
  tempo_owner_key_free(k);
}

static int setup(void **state) {
  (void)state;
  snprintf(tmpdir, sizeof tmpdir, "/tmp/tempo-test-seal-XXXXXX");
  return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
  return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_trip_sizes),         cmocka_unit_test(test_tampering_refused),
      cmocka_unit_test(test_key_files_and_provisioning), cmocka_unit_test(test_default_labels),
      cmocka_unit_test(test_sealed_checkpoint),        cmocka_unit_test(test_hardening),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
