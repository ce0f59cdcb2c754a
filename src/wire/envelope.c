/* envelope.c - the MPI envelope codec (envelope.h). No MPI dependency: both the master's
 * library and the worker program link it, and the fuzz targets drive it directly. */
#include "tempo/envelope.h"

#include <sodium.h>
#include <string.h>

#include "core/bytes.h"


void tempo_env_init(tempo_envelope *e, tempo_env_kind kind) {
  memset(e, 0, sizeof *e);
  e->kind = (uint16_t)kind;
  e->relay_from = e->relay_to = -1;
  e->reduce_from = e->reduce_to = -1;
}

void tempo_env_write(const tempo_envelope *e, uint8_t out[TEMPO_ENV_SIZE]) {
  memset(out, 0, TEMPO_ENV_SIZE);
  tempo_le_put32(out, TEMPO_ENV_MAGIC);
  tempo_le_put16(out + 4, TEMPO_ENV_VERSION);
  tempo_le_put16(out + 6, e->kind);
  tempo_le_put64(out + 8, e->msg_len);
  tempo_le_put64(out + 16, e->relay_off);
  tempo_le_put64(out + 24, e->relay_len);
  tempo_le_put64(out + 32, e->fwd_off);
  tempo_le_put64(out + 40, e->fwd_len);
  tempo_le_put32(out + 48, (uint32_t)e->relay_from);
  tempo_le_put32(out + 52, (uint32_t)e->relay_to);
  memcpy(out + 56, e->auth, 32);
  tempo_le_put32(out + 88, e->reduce_from > 0 ? (uint32_t)e->reduce_from : 0);
  tempo_le_put32(out + 92, e->reduce_to > 0 ? (uint32_t)e->reduce_to : 0);
}

static bool range_ok(uint64_t off, uint64_t len, uint64_t total) {
  return off >= TEMPO_MSG_HEADER_SIZE && len > 0 && off <= total && len <= total - off;
}

static bool rank_ok(int32_t r, int self, int world) { return r >= 1 && r < world && r != self; }

tempo_status tempo_env_read(const uint8_t *buf, size_t len, int self, int world, tempo_envelope *e) {
  if (!buf || len < TEMPO_ENV_SIZE) return tempo_set_error(TEMPO_STATUS_CORRUPT, "envelope: %zu bytes, need 96", len);
  if (tempo_le_get32(buf) != TEMPO_ENV_MAGIC) return tempo_set_error(TEMPO_STATUS_CORRUPT, "envelope: bad magic");
  if (tempo_le_get16(buf + 4) != TEMPO_ENV_VERSION) return tempo_set_error(TEMPO_STATUS_CORRUPT, "envelope: bad version");
  tempo_envelope v;
  v.kind = tempo_le_get16(buf + 6);
  v.msg_len = tempo_le_get64(buf + 8);
  v.relay_off = tempo_le_get64(buf + 16);
  v.relay_len = tempo_le_get64(buf + 24);
  v.fwd_off = tempo_le_get64(buf + 32);
  v.fwd_len = tempo_le_get64(buf + 40);
  v.relay_from = (int32_t)tempo_le_get32(buf + 48);
  v.relay_to = (int32_t)tempo_le_get32(buf + 52);
  memcpy(v.auth, buf + 56, 32);
  const uint32_t rf = tempo_le_get32(buf + 88), rt = tempo_le_get32(buf + 92);
  if (rf > INT32_MAX || rt > INT32_MAX) return tempo_set_error(TEMPO_STATUS_CORRUPT, "envelope: bad reduction rank");
  v.reduce_from = rf ? (int32_t)rf : -1;
  v.reduce_to = rt ? (int32_t)rt : -1;
  if (v.kind == TEMPO_ENV_SHUTDOWN) {
    static const uint8_t zero[32];
    if (v.msg_len || v.relay_off || v.relay_len || v.fwd_off || v.fwd_len || v.relay_from != -1 ||
        v.relay_to != -1 || memcmp(v.auth, zero, 32) || v.reduce_from != -1 || v.reduce_to != -1)
      return tempo_set_error(TEMPO_STATUS_CORRUPT, "envelope: SHUTDOWN with fields set");
  } else if (v.kind == TEMPO_ENV_REQUEST) {
    if (v.msg_len < TEMPO_MSG_HEADER_SIZE || v.msg_len > TEMPO_ENV_MAX_MSG)
      return tempo_set_error(TEMPO_STATUS_CORRUPT, "envelope: message length %llu out of range",
                             (unsigned long long)v.msg_len);
    if (v.relay_from == -1) {
      if (v.relay_off || v.relay_len) return tempo_set_error(TEMPO_STATUS_CORRUPT, "envelope: relay range without source");
    } else if (!rank_ok(v.relay_from, self, world) || !range_ok(v.relay_off, v.relay_len, v.msg_len)) {
      return tempo_set_error(TEMPO_STATUS_CORRUPT, "envelope: bad relay source or range");
    }
    if (v.relay_to == -1) {
      if (v.fwd_off || v.fwd_len) return tempo_set_error(TEMPO_STATUS_CORRUPT, "envelope: forward range without target");
    } else if (!rank_ok(v.relay_to, self, world) || v.relay_to == v.relay_from ||
               !range_ok(v.fwd_off, v.fwd_len, v.msg_len)) {
      return tempo_set_error(TEMPO_STATUS_CORRUPT, "envelope: bad forward target or range");
    }
    if ((v.reduce_from != -1 && !rank_ok(v.reduce_from, self, world)) ||
        (v.reduce_to != -1 && !rank_ok(v.reduce_to, self, world)) ||
        (v.reduce_from != -1 && v.reduce_from == v.reduce_to))
      return tempo_set_error(TEMPO_STATUS_CORRUPT, "envelope: bad reduction neighbours");
  } else {
    return tempo_set_error(TEMPO_STATUS_CORRUPT, "envelope: unknown kind %u", v.kind);
  }
  *e = v;
  return TEMPO_STATUS_OK;
}

uint64_t tempo_env_inline_bytes(const tempo_envelope *e) { return e->msg_len - e->relay_len; }

void tempo_relay_digest(const uint8_t *bytes, size_t len, uint8_t digest[32]) {
  crypto_generichash(digest, 32, bytes, len, NULL, 0);
}

void tempo_relay_tag(const uint8_t key[TEMPO_RELAY_KEY_SIZE], const uint8_t digest[32], uint64_t task_id, uint64_t len,
                     uint8_t tag[TEMPO_RELAY_TAG_SIZE]) {
  uint8_t in[48];
  memcpy(in, digest, 32);
  tempo_le_put64(in + 32, task_id);
  tempo_le_put64(in + 40, len);
  crypto_generichash(tag, TEMPO_RELAY_TAG_SIZE, in, sizeof in, key, TEMPO_RELAY_KEY_SIZE);
}

bool tempo_relay_check(const uint8_t key[TEMPO_RELAY_KEY_SIZE], const uint8_t tag[TEMPO_RELAY_TAG_SIZE],
                       uint64_t task_id, const uint8_t *bytes, size_t len) {
  uint8_t d[32], t[TEMPO_RELAY_TAG_SIZE];
  tempo_relay_digest(bytes, len, d);
  tempo_relay_tag(key, d, task_id, len, t);
  return sodium_memcmp(t, tag, sizeof t) == 0;
}
