/* keys.c - obfuscation keys: allocation in locked memory, wiping, and the libsodium-based
 * key generator (ChaCha20 keystream under a 32-byte master secret, read through a buffer).
 *
 * A key's arrays live in one 64-byte aligned block, locked with sodium_mlock where the
 * system allows (failure is tolerated: RLIMIT_MEMLOCK is small without privilege), and
 * zeroed with sodium_memzero / sodium_munlock. */
#include "tempo/obf.h"
#include "tempo/parallel.h"

#include <math.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "core/bytes.h"
#include "tempo/common.h"

/* ---- libsodium initialisation (once, thread-safe) ---- */

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;
static int sodium_rc = -1;
static void sodium_init_once(void) { sodium_rc = sodium_init(); }

static tempo_status obf_sodium_init(void) {
  pthread_once(&sodium_once, sodium_init_once);
  if (sodium_rc < 0) return tempo_set_error(TEMPO_STATUS_INTERNAL, "libsodium failed to initialise");
  return TEMPO_STATUS_OK;
}

/* ---- key space ---- */

void tempo_keyspace_default(tempo_keyspace *ks) {
  ks->kind = TEMPO_KEYSPACE_LOGUNIFORM;
  ks->bits = 16;
  ks->range = 16.0;
}

static tempo_status keyspace_check(const tempo_keyspace *ks) {
  switch (ks->kind) {
  case TEMPO_KEYSPACE_INT:
    if (ks->bits < 1 || ks->bits > 16)
      return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "integer key space needs 1..16 bits, got %d", ks->bits);
    return TEMPO_STATUS_OK;
  case TEMPO_KEYSPACE_LOGUNIFORM:
    if (!(ks->range > 1.0 && ks->range <= 65536.0))
      return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "log-uniform key space needs 1 < range <= 65536, got %g",
                             ks->range);
    return TEMPO_STATUS_OK;
  }
  return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "unknown key space kind %d", (int)ks->kind);
}

/* ---- keys ---- */

#define KEY_ALIGN 64

static size_t round_up(size_t x) { return (x + KEY_ALIGN - 1) & ~(size_t)(KEY_ALIGN - 1); }

/* Bytes of one dimension's six arrays, each rounded up to KEY_ALIGN. */
static size_t dim_bytes(int size) { return 6 * round_up((size_t)size * 4); }

static size_t key_bytes(const tempo_obf_key *k) { return dim_bytes(k->m) + dim_bytes(k->n) + dim_bytes(k->p); }

static void dim_identity(tempo_obf_dim *d) {
  for (int i = 0; i < d->size; i++) {
    d->perm[i] = d->inv[i] = (uint32_t)i;
    d->coef[i] = d->rcoef[i] = d->coef_p[i] = d->rcoef_p[i] = 1.0f;
  }
}

static uint8_t *dim_carve(tempo_obf_dim *d, int size, uint8_t *p) {
  size_t a = round_up((size_t)size * 4);
  d->size = size;
  d->perm = (uint32_t *)(void *)p;
  d->inv = (uint32_t *)(void *)(p + a);
  d->coef = (float *)(void *)(p + 2 * a);
  d->rcoef = (float *)(void *)(p + 3 * a);
  d->coef_p = (float *)(void *)(p + 4 * a);
  d->rcoef_p = (float *)(void *)(p + 5 * a);
  return p + 6 * a;
}

tempo_status tempo_obf_key_alloc(tempo_obf_key *k, int m, int n, int p) {
  memset(k, 0, sizeof *k);
  if (m < 1 || n < 1 || p < 1)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "obfuscation key shape (%d, %d, %d) must be positive", m, n,
                           p);
  tempo_status st = obf_sodium_init();
  if (st != TEMPO_STATUS_OK) return st;
  k->m = m;
  k->n = n;
  k->p = p;
  size_t bytes = key_bytes(k); /* <= 3 * 6 * 2^33: no overflow on 64-bit size_t */
  uint8_t *base = aligned_alloc(KEY_ALIGN, bytes);
  if (!base) {
    memset(k, 0, sizeof *k);
    return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "out of memory allocating a (%d, %d, %d) key", m, n, p);
  }
  (void)sodium_mlock(base, bytes); /* best effort: may fail without privilege */
  uint8_t *q = dim_carve(&k->dm, m, base);
  q = dim_carve(&k->dn, n, q);
  dim_carve(&k->dp, p, q);
  dim_identity(&k->dm);
  dim_identity(&k->dn);
  dim_identity(&k->dp);
  k->identity = true;
  return TEMPO_STATUS_OK;
}

/* Drops the mixing blocks from use (the buffer stays, wiped, for the next fill_mix). Only
 * the part the blocks and the passes' scratch can have written since the last wipe: a b = 4
 * key uses about a third of a buffer sized for TEMPO_OBF_MIX_MAX, and wiping all of it at
 * every step's end was 2% of a resnet20 tempo step's master time. */
static void mix_clear(tempo_obf_key *k) {
  if (k->mixbuf && k->mix) sodium_memzero(k->mixbuf, k->mix_used * sizeof(float));
  k->mix = 0;
  k->mix_used = 0;
}

void tempo_obf_key_wipe(tempo_obf_key *k) {
  if (!k || !k->dm.perm || k->identity) return; /* no secret: a fill clears the flag */
  sodium_memzero(k->dm.perm, key_bytes(k));
  mix_clear(k);
  k->identity = true;
}

void tempo_obf_key_free(tempo_obf_key *k) {
  if (!k) return;
  if (k->dm.perm) {
    sodium_munlock(k->dm.perm, key_bytes(k)); /* zeroes, then unlocks */
    free(k->dm.perm);
  }
  if (k->mixbuf) {
    sodium_munlock(k->mixbuf, k->mix_floats * sizeof(float));
    free(k->mixbuf);
  }
  memset(k, 0, sizeof *k);
}

/* ---- key generator ---- */

#define KEYGEN_BUF 4096

struct tempo_keygen {
  uint8_t key[crypto_stream_chacha20_KEYBYTES];
  uint64_t nonce; /* one fresh nonce per buffer refill */
  size_t pos;     /* next unread byte of buf */
  tempo_keyspace ks;
  uint8_t buf[KEYGEN_BUF];
};

static void keygen_refill(tempo_keygen *g) {
  uint8_t nonce[crypto_stream_chacha20_NONCEBYTES];
  uint64_t c = g->nonce++;
  _Static_assert(sizeof nonce == 8, "chacha20 nonce is 64 bits");
  tempo_le_put64(nonce, c);
  crypto_stream_chacha20(g->buf, KEYGEN_BUF, nonce, g->key);
  g->pos = 0;
}

void tempo_keygen_bytes(tempo_keygen *g, void *buf, size_t len) {
  uint8_t *out = buf;
  while (len > 0) {
    if (g->pos == KEYGEN_BUF) keygen_refill(g);
    size_t take = KEYGEN_BUF - g->pos;
    if (take > len) take = len;
    memcpy(out, g->buf + g->pos, take);
    g->pos += take;
    out += take;
    len -= take;
  }
}

static uint32_t keygen_u32(tempo_keygen *g) {
  uint32_t x;
  if (KEYGEN_BUF - g->pos < 4) keygen_refill(g); /* KEYGEN_BUF is a multiple of 4 */
  memcpy(&x, g->buf + g->pos, 4);
  g->pos += 4;
  return x;
}

static uint64_t keygen_u64(tempo_keygen *g) {
  uint64_t lo = keygen_u32(g);
  return lo | ((uint64_t)keygen_u32(g) << 32);
}

/* Uniform in [0, bound), bound >= 1, without bias (Lemire's multiply-and-reject). */
static uint32_t keygen_below(tempo_keygen *g, uint32_t bound) {
  uint64_t mprod = (uint64_t)keygen_u32(g) * bound;
  uint32_t l = (uint32_t)mprod;
  if (l < bound) {
    uint32_t t = (uint32_t)(-bound) % bound;
    while (l < t) {
      mprod = (uint64_t)keygen_u32(g) * bound;
      l = (uint32_t)mprod;
    }
  }
  return (uint32_t)(mprod >> 32);
}

tempo_status tempo_keygen_create(const uint8_t *master_secret, const tempo_keyspace *ks, tempo_keygen **out) {
  *out = NULL;
  tempo_keyspace def;
  if (!ks) {
    tempo_keyspace_default(&def);
    ks = &def;
  }
  tempo_status st = keyspace_check(ks);
  if (st != TEMPO_STATUS_OK) return st;
  st = obf_sodium_init();
  if (st != TEMPO_STATUS_OK) return st;
  size_t bytes = round_up(sizeof(tempo_keygen));
  tempo_keygen *g = aligned_alloc(KEY_ALIGN, bytes);
  if (!g) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "out of memory allocating the key generator");
  (void)sodium_mlock(g, bytes);
  memset(g, 0, bytes);
  if (master_secret)
    memcpy(g->key, master_secret, sizeof g->key);
  else
    randombytes_buf(g->key, sizeof g->key);
  g->ks = *ks;
  g->nonce = 0;
  g->pos = KEYGEN_BUF; /* refill on first use */
  *out = g;
  return TEMPO_STATUS_OK;
}

/* State record: key (32), u64 nonce (the next refill's), u32 pos, u32 reserved (0). With
 * pos < KEYGEN_BUF the buffer is the refill of nonce - 1 and is regenerated on restore. */
void tempo_keygen_state_save(const tempo_keygen *g, uint8_t out[TEMPO_KEYGEN_STATE_BYTES]) {
  _Static_assert(TEMPO_KEYGEN_STATE_BYTES == crypto_stream_chacha20_KEYBYTES + 16, "state record layout");
  memcpy(out, g->key, sizeof g->key);
  tempo_le_put64(out + 32, g->nonce);
  tempo_le_put32(out + 40, (uint32_t)g->pos);
  tempo_le_put32(out + 44, 0);
}

bool tempo_keygen_state_valid(const uint8_t in[TEMPO_KEYGEN_STATE_BYTES]) {
  const uint64_t nonce = tempo_le_get64(in + 32);
  const uint32_t pos = tempo_le_get32(in + 40);
  return tempo_le_get32(in + 44) == 0 && pos <= KEYGEN_BUF && (pos == KEYGEN_BUF || nonce >= 1) &&
         nonce < UINT64_MAX;
}

tempo_status tempo_keygen_state_restore(tempo_keygen *g, const uint8_t in[TEMPO_KEYGEN_STATE_BYTES]) {
  if (!tempo_keygen_state_valid(in))
    return tempo_set_error(TEMPO_STATUS_CORRUPT, "malformed key-generator state (position out of range)");
  memcpy(g->key, in, sizeof g->key);
  const uint32_t pos = tempo_le_get32(in + 40);
  g->nonce = tempo_le_get64(in + 32);
  if (pos < KEYGEN_BUF) { /* regenerate the buffer being read: the refill of nonce - 1 */
    g->nonce--;
    keygen_refill(g);
  }
  g->pos = pos;
  return TEMPO_STATUS_OK;
}

void tempo_keygen_free(tempo_keygen *g) {
  if (!g) return;
  sodium_munlock(g, round_up(sizeof(tempo_keygen)));
  free(g);
}

static void fill_dim(tempo_keygen *g, tempo_obf_dim *d) {
  uint32_t n = (uint32_t)d->size;
  for (uint32_t i = 0; i < n; i++) d->perm[i] = i;
  for (uint32_t i = n; i > 1; i--) { /* Fisher-Yates */
    uint32_t j = keygen_below(g, i);
    uint32_t t = d->perm[i - 1];
    d->perm[i - 1] = d->perm[j];
    d->perm[j] = t;
  }
  for (uint32_t i = 0; i < n; i++) d->inv[d->perm[i]] = i;
  if (g->ks.kind == TEMPO_KEYSPACE_INT) {
    uint32_t mask = (1u << g->ks.bits) - 1u; /* a power-of-two range: masking is unbiased */
    for (uint32_t i = 0; i < n; i++) {
      uint32_t c = (keygen_u32(g) & mask) + 1u;
      d->coef[i] = (float)c;
      d->rcoef[i] = (float)(1.0 / (double)c);
    }
  } else {
    double lr = log(g->ks.range);
    for (uint32_t i = 0; i < n; i++) {
      double u = (double)(keygen_u64(g) >> 11) * 0x1.0p-53; /* [0, 1) */
      float c = (float)exp((2.0 * u - 1.0) * lr);
      d->coef[i] = c;
      d->rcoef[i] = (float)(1.0 / (double)c);
    }
  }
  for (uint32_t i = 0; i < n; i++) {
    d->coef_p[i] = d->coef[d->perm[i]];
    d->rcoef_p[i] = d->rcoef[d->perm[i]];
  }
}

tempo_status tempo_keygen_fill(tempo_keygen *g, tempo_obf_key *k) {
  if (!g || !k || !k->dm.perm)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "tempo_keygen_fill needs a generator and an allocated key");
  fill_dim(g, &k->dm);
  fill_dim(g, &k->dn);
  fill_dim(g, &k->dp);
  mix_clear(k);
  k->identity = false;
  return TEMPO_STATUS_OK;
}

/* ---- mixing blocks ---- */

static size_t mix_blocks_floats(int size, int b) { return (size_t)((size + b - 1) / b) * (size_t)b * (size_t)b; }

/* Uniform in [-1, 1) on a 2^-52 grid. */
static double keygen_sym(tempo_keygen *g) { return (double)(keygen_u64(g) >> 11) * 0x1.0p-52 - 1.0; }

/* Two independent standard normals: Marsaglia's polar method (exact like Box-Muller, without
 * its cosine: one log, one sqrt and on average 2.5 keystream words per pair). */
static void keygen_normal2(tempo_keygen *g, double *z0, double *z1) {
  double x, y, s;
  do {
    x = keygen_sym(g), y = keygen_sym(g);
    s = x * x + y * y;
  } while (s >= 1.0 || s == 0.0);
  const double f = sqrt(-2.0 * log(s) / s);
  *z0 = x * f, *z1 = y * f;
}

/* A point uniform on the unit sphere S^3 of R^4 (Marsaglia 1972: (x1, x2), (x3, x4) uniform in
 * the unit disk, then (x1, x2, x3 f, x4 f) with f = sqrt((1 - s1) / s2)). */
static void keygen_s3(tempo_keygen *g, double p[4]) {
  double x1, x2, x3, x4, s1, s2;
  do {
    x1 = keygen_sym(g), x2 = keygen_sym(g);
    s1 = x1 * x1 + x2 * x2;
  } while (s1 >= 1.0);
  do {
    x3 = keygen_sym(g), x4 = keygen_sym(g);
    s2 = x3 * x3 + x4 * x4;
  } while (s2 >= 1.0 || s2 == 0.0);
  const double f = sqrt((1.0 - s1) / s2);
  p[0] = x1, p[1] = x2, p[2] = x3 * f, p[3] = x4 * f;
}

/* q (t x t, row-major): a Haar-distributed (uniformly random) orthogonal matrix: Gram-Schmidt
 * (twice, in double) of Gaussian rows. */
static void haar_gram_schmidt(tempo_keygen *g, int t, double *q) {
  double spare;
  for (int r = 0; r < t; r++) {
    double *qr = q + (size_t)r * t, nn;
    do {
      for (int c = 0; c < t; c += 2) keygen_normal2(g, &qr[c], c + 1 < t ? &qr[c + 1] : &spare);
      for (int pass = 0; pass < 2; pass++)
        for (int u = 0; u < r; u++) {
          const double *qu = q + (size_t)u * t;
          double d = 0;
          for (int c = 0; c < t; c++) d += qr[c] * qu[c];
          for (int c = 0; c < t; c++) qr[c] -= d * qu[c];
        }
      nn = 0;
      for (int c = 0; c < t; c++) nn += qr[c] * qr[c];
    } while (nn < 1e-6); /* a (practically impossible) dependent draw: draw the row again */
    const double inv = 1.0 / sqrt(nn);
    for (int c = 0; c < t; c++) qr[c] *= inv;
  }
  sodium_memzero(&spare, sizeof spare);
}

/* q (4 x 4): the same distribution as haar_gram_schmidt(g, 4, q), 4x faster (the engine's b = 4:
 * Gram-Schmidt's 16 Gaussians were most of a mixed product's key generation). x -> a x b for
 * unit quaternions a, b independent and uniform on S^3 is a Haar-distributed rotation (the map
 * S^3 x S^3 -> SO(4) is a surjective homomorphism of compact groups, so it carries the product
 * of the uniform measures to Haar measure), and negating its first row with probability 1/2
 * gives Haar measure on O(4), which is what Gram-Schmidt of Gaussian rows gives. */
static void haar_quaternions(tempo_keygen *g, double *q) {
  double a[4], b[4];
  keygen_s3(g, a);
  keygen_s3(g, b);
  /* left multiplication by a and right multiplication by b as 4x4 matrices on (1, i, j, k) */
  double La[16] = {a[0], -a[1], -a[2], -a[3], a[1], a[0], -a[3], a[2],
                         a[2], a[3],  a[0], -a[1], a[3], -a[2], a[1], a[0]};
  double Rb[16] = {b[0], -b[1], -b[2], -b[3], b[1], b[0], b[3], -b[2],
                         b[2], -b[3], b[0], b[1],  b[3], b[2], -b[1], b[0]};
  const double flip = keygen_u32(g) & 1 ? -1.0 : 1.0;
  for (int r = 0; r < 4; r++)
    for (int c = 0; c < 4; c++) {
      double v = 0;
      for (int k = 0; k < 4; k++) v += La[r * 4 + k] * Rb[k * 4 + c];
      q[r * 4 + c] = r == 0 ? flip * v : v;
    }
  sodium_memzero(a, sizeof a), sodium_memzero(b, sizeof b);
  sodium_memzero(La, sizeof La), sodium_memzero(Rb, sizeof Rb);
}

/* The four forms of one t x t block (row stride b) of B = Q diag(s): B, B^-1 = diag(1/s) Q^T,
 * B^T = diag(s) Q^T, B^-T = Q diag(1/s), with Q Haar-distributed orthogonal and s log-uniform
 * in [1/2, 2). */
static void mix_block(tempo_keygen *g, int t, int b, float *const out[4]) {
  double q[TEMPO_OBF_MIX_MAX * TEMPO_OBF_MIX_MAX], s[TEMPO_OBF_MIX_MAX], is[TEMPO_OBF_MIX_MAX];
  if (t == 4)
    haar_quaternions(g, q);
  else
    haar_gram_schmidt(g, t, q);
  for (int r = 0; r < t; r++) {
    s[r] = exp2(2.0 * ((double)(keygen_u64(g) >> 11) * 0x1.0p-53) - 1.0);
    is[r] = 1.0 / s[r];
  }
  for (int r = 0; r < t; r++)
    for (int c = 0; c < t; c++) {
      const double qrc = q[r * t + c], qcr = q[c * t + r];
      out[TEMPO_OBF_MIX_M][r * b + c] = (float)(qrc * s[c]);
      out[TEMPO_OBF_MIX_INV][r * b + c] = (float)(qcr * is[r]);
      out[TEMPO_OBF_MIX_T][r * b + c] = (float)(qcr * s[r]);
      out[TEMPO_OBF_MIX_INVT][r * b + c] = (float)(qrc * is[c]);
    }
  sodium_memzero(q, (size_t)t * t * sizeof q[0]);
  sodium_memzero(s, sizeof s);
  sodium_memzero(is, sizeof is);
}

/* The blocks are drawn MIX_CHUNK at a time, each chunk from its own ChaCha20 stream: key a
 * sub-key drawn from g for this fill, nonces from dimension << 62 | chunk << 32 on (a chunk
 * refills its 4 KiB buffer at most ~100 times). So the chunks can be drawn on the master's threads
 * (tempo_parallel_for), and the blocks are the same whatever the thread count. */
enum { MIX_CHUNK = 256 };

typedef struct {
  tempo_obf_key *k;
  int b, tasks, sizes[3], chunks[3];
  uint8_t subkey[crypto_stream_chacha20_KEYBYTES];
} mix_fill_job;

static void mix_fill_chunk(void *arg, int task) {
  const mix_fill_job *j = arg;
  int d = 0, c = task;
  while (c >= j->chunks[d]) c -= j->chunks[d++];
  tempo_keygen cg; /* this chunk's stream: only key, nonce, pos and buf are used */
  memcpy(cg.key, j->subkey, sizeof cg.key);
  cg.nonce = (uint64_t)d << 62 | (uint64_t)c << 32; /* c < 2^23: m < 2^31 */
  cg.pos = KEYGEN_BUF;
  const int b = j->b, blocks = (j->sizes[d] + b - 1) / b, end = (c + 1) * MIX_CHUNK < blocks ? (c + 1) * MIX_CHUNK : blocks;
  for (int J = c * MIX_CHUNK; J < end; J++) {
    const int t = j->sizes[d] - J * b < b ? j->sizes[d] - J * b : b;
    float *out[4];
    for (int v = 0; v < 4; v++) out[v] = (float *)j->k->mixd[d][v] + (size_t)J * b * b;
    mix_block(&cg, t, b, out);
  }
  sodium_memzero(&cg, sizeof cg);
}

tempo_status tempo_keygen_fill_mix(tempo_keygen *g, tempo_obf_key *k, int b) {
  if (!g || !k || !k->dm.perm || k->identity || b < 1 || b > TEMPO_OBF_MIX_MAX || (b & (b - 1)))
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT,
                           "tempo_keygen_fill_mix needs a generator, a filled key and a block size 1, 2, 4 or %d",
                           TEMPO_OBF_MIX_MAX);
  const int sizes[3] = {k->m, k->n, k->p};
  const int big = k->m > k->n ? (k->m > k->p ? k->m : k->p) : (k->n > k->p ? k->n : k->p);
  size_t need = 3 * (size_t)TEMPO_OBF_MIX_MAX * (size_t)big; /* scratch */
  for (int d = 0; d < 3; d++) need += 4 * mix_blocks_floats(sizes[d], TEMPO_OBF_MIX_MAX);
  if (!k->mixbuf || k->mix_floats < need) {
    if (k->mixbuf) {
      sodium_munlock(k->mixbuf, k->mix_floats * sizeof(float));
      free(k->mixbuf);
      k->mixbuf = NULL;
    }
    k->mix_floats = 0;
    k->mix = 0;
    k->mix_used = 0;
    float *buf = aligned_alloc(KEY_ALIGN, round_up(need * sizeof(float)));
    if (!buf) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "out of memory allocating mixing blocks");
    (void)sodium_mlock(buf, need * sizeof(float)); /* best effort, as the key */
    k->mixbuf = buf, k->mix_floats = need;
  }
  float *cur = k->mixbuf;
  mix_fill_job j = {.k = k, .b = b, .tasks = 0};
  for (int d = 0; d < 3; d++) {
    const size_t per = mix_blocks_floats(sizes[d], b);
    for (int v = 0; v < 4; v++) k->mixd[d][v] = cur, cur += per;
    j.sizes[d] = sizes[d];
    j.chunks[d] = ((sizes[d] + b - 1) / b + MIX_CHUNK - 1) / MIX_CHUNK;
    j.tasks += j.chunks[d];
  }
  tempo_keygen_bytes(g, j.subkey, sizeof j.subkey);
  tempo_parallel_for(j.tasks, mix_fill_chunk, &j);
  sodium_memzero(j.subkey, sizeof j.subkey);
  k->mix_tmp = cur;
  /* the passes' scratch: 3 b cols floats (mix.c), or 12 cols + 64 for b = 4 (mix512.c) */
  const size_t scratch = 3 * (size_t)b * (size_t)big + 64, left = k->mix_floats - (size_t)(cur - k->mixbuf);
  const size_t used = (size_t)(cur - k->mixbuf) + (scratch < left ? scratch : left);
  if (used > k->mix_used) k->mix_used = used; /* a second fill_mix without a fill: both extents */
  k->mix = b;
  return TEMPO_STATUS_OK;
}
