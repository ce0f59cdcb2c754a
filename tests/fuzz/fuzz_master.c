/* fuzz_master.c - libFuzzer target: the master's decoding of untrusted worker replies
 * (tempo_msg_decode, as the engine calls it on every received message). Invariants: a
 * decoded reply's payload lies inside the input and its length matches the header's
 * dimensions; re-encoding the decoded header gives the same 80 bytes. */
#include <stdlib.h>
#include <string.h>

#include "tempo/protocol.h"

static int fuzz_master_one(const uint8_t *data, size_t size) {
  tempo_msg_header h;
  const uint8_t *pay;
  if (tempo_msg_decode(data, size, &h, &pay)) return 0;
  if (pay != data + TEMPO_MSG_HEADER_SIZE || size != TEMPO_MSG_HEADER_SIZE + h.payload_len) abort();
  uint64_t want;
  if (!tempo_msg_payload_bytes(&h, &want)) abort();
  if (h.op != TEMPO_OP_ERROR && want != h.payload_len) abort();
  uint8_t again[TEMPO_MSG_HEADER_SIZE];
  tempo_msg_header_write(&h, again);
  if (memcmp(again, data, TEMPO_MSG_HEADER_SIZE)) abort();
  return 0;
}

#ifndef TEMPO_FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return fuzz_master_one(data, size); }
#endif
