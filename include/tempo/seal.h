/* seal.h - confidential inputs and outputs: the model owner's key, sealed files, key
 * provisioning and hardening of the master process (docs/confidential-io.md).
 *
 * The owner keeps a 32-byte key. `tempo-owner seal` encrypts dataset files and initial weights
 * with it before upload; the master, given the key, reads those sealed files directly and
 * writes every output (checkpoints, the final model, metrics) sealed; `tempo-owner unseal`
 * decrypts results on the owner's side.
 *
 * Sealed file layout (little-endian, fixed width; version 1):
 *   off 0   "TMPOSEAL"                 magic
 *       8   u32 version (1)
 *      12   u32 chunk size C            plaintext bytes per chunk, 1 KiB .. 16 MiB
 *      16   u64 plaintext length L
 *      24   u8[16] key id               BLAKE2b-128 of the key (identifies, does not reveal it)
 *      40   u16 label length n (1..255), u16 reserved (0)
 *      44   n bytes label               the logical name/kind, e.g. "data/train-labels-idx1-ubyte"
 *   44+n    24-byte secretstream header (libsodium crypto_secretstream_xchacha20poly1305)
 *   then max(1, ceil(L / C)) chunks: each the ciphertext of C plaintext bytes (the last one
 *   L - (k-1)C, possibly 0) plus a 17-byte tag. Every chunk is authenticated with the bytes
 *   0 .. 44+n (magic to label) as associated data, so the header, the label and the chunk
 *   order are all authenticated; only the last chunk carries TAG_FINAL, so truncation at a
 *   chunk boundary is detected. The file size is fully determined by C, L and n, so a short
 *   or extended file is refused before any decryption.
 *
 * Labels bind a sealed file to its role: the reader states the label it expects, so a sealed
 * t10k-labels file renamed to train-labels, or a sealed checkpoint renamed to a dataset file,
 * is refused (TEMPO_STATUS_MISMATCH) even though it authenticates. Labels do not give
 * freshness: an older sealed file of the same role (an earlier checkpoint) still verifies.
 *
 * Errors: every refusal names the file. TEMPO_STATUS_CORRUPT for bad magic/version/sizes,
 * truncation, extension, any failed authentication (a flipped byte anywhere, chunks
 * reordered) and a wrong key (which cannot be told apart from a tampered key id);
 * TEMPO_STATUS_MISMATCH for an authentic file with another label; TEMPO_STATUS_IO for
 * missing/unreadable files. Keys live in sodium_malloc'ed memory (guard pages, mlock'ed,
 * read-only between uses) and are wiped when freed; plaintext and stream state buffers
 * made here are wiped with sodium_memzero on every path. */
#ifndef TEMPO_SEAL_H
#define TEMPO_SEAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tempo/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TEMPO_SEAL_MAGIC "TMPOSEAL"
#define TEMPO_SEAL_VERSION 1
#define TEMPO_SEAL_CHUNK_DEFAULT (64u * 1024u)
#define TEMPO_SEAL_CHUNK_MIN 1024u
#define TEMPO_SEAL_CHUNK_MAX (16u * 1024u * 1024u)
#define TEMPO_SEAL_LABEL_MAX 255
#define TEMPO_OWNER_KEY_BYTES 32
#define TEMPO_OWNER_KEY_ID_BYTES 16
/* Key file: "TMPOKEY1", u32 version (1), u32 reserved, 16-byte key id, 32-byte key = 64 bytes. */
#define TEMPO_OWNER_KEY_FILE_BYTES 64

/* Labels the master uses for what it reads and writes. */
#define TEMPO_SEAL_LABEL_WEIGHTS "weights"       /* safetensors for --init-from */
#define TEMPO_SEAL_LABEL_CHECKPOINT "checkpoint" /* checkpoint.ckpt and model.ckpt */
#define TEMPO_SEAL_LABEL_METRICS "metrics"       /* metrics.jsonl */
#define TEMPO_SEAL_SUFFIX ".sealed"

/* The owner key (opaque; lives in locked memory). Also forward-declared in data.h/train.h. */
typedef struct tempo_owner_key tempo_owner_key;

/* A fresh random key. Free with tempo_owner_key_free. */
TEMPO_WUR tempo_status tempo_owner_key_generate(tempo_owner_key **out);
/* A key from 32 raw bytes (for provisioning code that received them; the caller wipes its copy). */
TEMPO_WUR tempo_status tempo_owner_key_from_bytes(const uint8_t bytes[TEMPO_OWNER_KEY_BYTES], tempo_owner_key **out);
/* Writes the key file atomically with mode 0600. Refuses to replace an existing file unless
 * overwrite (TEMPO_STATUS_IO, message says --force). */
TEMPO_WUR tempo_status tempo_owner_key_save(const tempo_owner_key *k, const char *path, bool overwrite);
/* Reads a key file. Refuses files readable or writable by group/others (TEMPO_STATUS_IO:
 * "chmod 600"), and files of the wrong size, magic, version or key id (TEMPO_STATUS_CORRUPT). */
TEMPO_WUR tempo_status tempo_owner_key_load(const char *path, tempo_owner_key **out);
/* Reads a key file's 64 bytes from an open descriptor (a pipe from a provisioning agent);
 * `what` names the source in messages. Does not close fd. */
TEMPO_WUR tempo_status tempo_owner_key_read_fd(int fd, const char *what, tempo_owner_key **out);
/* The master's one way of getting the key. spec is
 *   "fd:N"              the key file's bytes on descriptor N (read, then closed),
 *   "gramine-secret"    the secret delivered by Gramine's RA-TLS secret provisioning
 *                       (libsecret_prov_attest.so, docs/sgx.md): the 64-byte key file image;
 *                       TEMPO_STATUS_UNSUPPORTED where that library is not loaded,
 *   "file:PATH" or PATH a key file (development).
 * A process-wide hook set with tempo_owner_key_set_provider() is asked first, for any spec. */
TEMPO_WUR tempo_status tempo_owner_key_provision(const char *spec, tempo_owner_key **out);
/* Installs (or with fn NULL removes) a provisioning hook: fn fills *out from spec and returns
 * OK, or returns TEMPO_STATUS_UNSUPPORTED to let tempo_owner_key_provision go on as usual. */
typedef tempo_status (*tempo_key_provider_fn)(void *ctx, const char *spec, tempo_owner_key **out);
void tempo_owner_key_set_provider(tempo_key_provider_fn fn, void *ctx);
/* The key id as 32 lowercase hex characters + NUL. */
void tempo_owner_key_id_hex(const tempo_owner_key *k, char out[2 * TEMPO_OWNER_KEY_ID_BYTES + 1]);
/* Wipes and frees (sodium_free). NULL is fine. */
void tempo_owner_key_free(tempo_owner_key *k);

/* The label `tempo-owner seal` gives a file by default, from its name (directory and a trailing
 * ".sealed" dropped): *.safetensors -> "weights", *.ckpt -> "checkpoint", *.jsonl ->
 * "metrics", anything else -> "data/" + the base name without ".gz". */
TEMPO_WUR tempo_status tempo_seal_default_label(const char *path, char *out, size_t cap);

/* Seals len bytes of data into path (atomic: temp file, fsync, rename; mode 0600), streaming
 * chunk by chunk with one chunk buffer. chunk_size 0 = TEMPO_SEAL_CHUNK_DEFAULT. */
TEMPO_WUR tempo_status tempo_seal_write(const char *path, const tempo_owner_key *k, const char *label,
                                        const void *data, size_t len, uint32_t chunk_size);
/* Seals the file in_path into out_path, streaming (constant memory; atomic). */
TEMPO_WUR tempo_status tempo_seal_file(const char *in_path, const char *out_path, const tempo_owner_key *k,
                                       const char *label, uint32_t chunk_size);
/* Reads and authenticates a sealed file into a malloc'ed buffer (*out, *len; the caller wipes
 * and frees). label: the expected label (NULL = any; label_out, when not NULL, receives the
 * stored one, cap TEMPO_SEAL_LABEL_MAX + 1). Plaintexts longer than max_len are refused as
 * corrupt before allocation. On failure nothing is returned and all partial plaintext is wiped. */
TEMPO_WUR tempo_status tempo_unseal_read(const char *path, const tempo_owner_key *k, const char *label,
                                         size_t max_len, uint8_t **out, size_t *len, char *label_out);
/* Decrypts in_path into out_path, streaming; out_path appears (atomically, mode 0600) only
 * when the whole file authenticated. label as in tempo_unseal_read. */
TEMPO_WUR tempo_status tempo_unseal_file(const char *in_path, const char *out_path, const tempo_owner_key *k,
                                         const char *label, char *label_out);
/* True when the file starts with the sealed-file magic (false also when it cannot be read). */
bool tempo_is_sealed_file(const char *path);

/* Hardens the master process: no core dumps (RLIMIT_CORE 0), not dumpable/ptrace-attachable
 * by other processes of the user (PR_SET_DUMPABLE 0), and on SIGINT/SIGTERM/SIGHUP/SIGQUIT and
 * at exit every live owner key is wiped before the process ends. Call once, first thing in
 * main. TEMPO_STATUS_IO when the kernel refuses a setting. */
TEMPO_WUR tempo_status tempo_harden_process(void);
/* Wipes every live owner key now (async-signal-safe; keys are unusable afterwards). */
void tempo_owner_key_wipe_all(void);

#ifdef __cplusplus
}
#endif
#endif
