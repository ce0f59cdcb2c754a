/* safetensors.h - reader and writer of the safetensors format (the format PyTorch users
 * exchange weights in), used for golden fixtures, `tempo-owner export` and `--init-from`.
 *
 * Layout: u64 little-endian header length N, N bytes of JSON
 *   {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ..., "__metadata__": {..}}
 * then the data bytes; offsets are relative to the data start. The reader validates
 * everything (header length cap, JSON syntax, known dtypes, shape products against byte
 * ranges with overflow checks, ranges inside the data and non-overlapping) before use;
 * malformed input gives TEMPO_STATUS_CORRUPT with a message naming the file. A Tempo checkpoint,
 * a sealed file, a zip archive or a pickle (the torch.save formats) is recognised by its first
 * bytes and refused with TEMPO_STATUS_INVALID_ARGUMENT and what to use instead. */
#ifndef TEMPO_SAFETENSORS_H
#define TEMPO_SAFETENSORS_H

#include "tempo/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { TEMPO_ST_F32 = 0, TEMPO_ST_F64, TEMPO_ST_I32, TEMPO_ST_I64, TEMPO_ST_U8, TEMPO_ST_F16,
               TEMPO_ST_BF16 } tempo_st_dtype;

#define TEMPO_ST_MAX_DIMS 8
#define TEMPO_ST_NAME_MAX 128

typedef struct {
  char name[TEMPO_ST_NAME_MAX];
  tempo_st_dtype dtype;
  int ndim;
  int64_t shape[TEMPO_ST_MAX_DIMS];
  const void *data; /* inside the file's buffer (may be unaligned: read with tempo_st_read_f32) */
  size_t nbytes;
} tempo_st_tensor;

typedef struct tempo_st_file tempo_st_file;

/* Reads and validates a whole file. */
TEMPO_WUR tempo_status tempo_st_open(const char *path, tempo_st_file **out);
/* Parses a buffer (copied); `what` names the source in error messages. */
TEMPO_WUR tempo_status tempo_st_parse(const uint8_t *buf, size_t len, const char *what, tempo_st_file **out);
void tempo_st_close(tempo_st_file *f);
int tempo_st_count(const tempo_st_file *f);
const tempo_st_tensor *tempo_st_at(const tempo_st_file *f, int i);
/* The tensor with this name, or NULL. */
const tempo_st_tensor *tempo_st_get(const tempo_st_file *f, const char *name);
/* Copies an F32 tensor (or converts an F64, F16 or BF16 one) of exactly `count` elements into out;
 * TEMPO_STATUS_MISMATCH when dtype or element count differ. */
TEMPO_WUR tempo_status tempo_st_read_f32(const tempo_st_tensor *t, float *out, size_t count);
/* Number of elements (product of the shape). */
size_t tempo_st_numel(const tempo_st_tensor *t);

/* Serialises tensors (data pointers in each entry) into a newly malloc'ed buffer. */
TEMPO_WUR tempo_status tempo_st_serialize(const tempo_st_tensor *t, int n, uint8_t **out, size_t *out_len);
/* Writes tensors to path atomically (temp file, fsync, rename). */
TEMPO_WUR tempo_status tempo_st_write(const char *path, const tempo_st_tensor *t, int n);

#ifdef __cplusplus
}
#endif
#endif
