/* mm_types.c - mode names and the statistics sum (mm_types.h). */
#include "tempo/mm_types.h"

#include <string.h>

const char *tempo_mode_name(tempo_mode m) {
  switch (m) {
  case TEMPO_MODE_LOCAL: return "local";
  case TEMPO_MODE_PLAIN: return "plain";
  case TEMPO_MODE_TEMPO: return "tempo";
  case TEMPO_MODE_SHIELD: return "shield";
  }
  return "?";
}

bool tempo_mode_parse(const char *s, tempo_mode *out) {
  static const tempo_mode all[] = {TEMPO_MODE_LOCAL, TEMPO_MODE_PLAIN, TEMPO_MODE_TEMPO, TEMPO_MODE_SHIELD};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    if (strcmp(s, tempo_mode_name(all[i])) == 0) {
      *out = all[i];
      return true;
    }
  return false;
}

const char *tempo_protect_name(tempo_protect p) {
  switch (p) {
  case TEMPO_PROTECT_DEFAULT: return "default";
  case TEMPO_PROTECT_NONE: return "none";
  case TEMPO_PROTECT_ENDS: return "ends";
  case TEMPO_PROTECT_SPATIAL: return "spatial";
  case TEMPO_PROTECT_ALL: return "all";
  }
  return "?";
}

bool tempo_protect_parse(const char *s, tempo_protect *out) {
  for (int p = TEMPO_PROTECT_NONE; p <= TEMPO_PROTECT_ALL; p++)
    if (strcmp(s, tempo_protect_name((tempo_protect)p)) == 0) {
      *out = (tempo_protect)p;
      return true;
    }
  return false;
}

const char *tempo_wire_name(int w) { return w == TEMPO_WIRE_F32 ? "fp32" : w == TEMPO_WIRE_BF16 ? "bf16" : "?"; }

bool tempo_wire_parse(const char *s, tempo_wire *out) {
  for (int w = TEMPO_WIRE_F32; w <= TEMPO_WIRE_BF16; w++)
    if (strcmp(s, tempo_wire_name(w)) == 0) {
      *out = (tempo_wire)w;
      return true;
    }
  return false;
}

void tempo_mm_stats_add(tempo_mm_stats *a, const tempo_mm_stats *b) {
  a->products += b->products;
  a->encryptions += b->encryptions;
  a->decryptions += b->decryptions;
  a->naive_encryptions += b->naive_encryptions;
  a->bytes_up += b->bytes_up;
  a->bytes_down += b->bytes_down;
  a->naive_bytes_up += b->naive_bytes_up;
  a->verify_failures += b->verify_failures;
  a->recomputed += b->recomputed;
  a->evictions += b->evictions;
  a->worker_errors += b->worker_errors;
  a->timeouts += b->timeouts;
  a->flops += b->flops;
  a->master_bytes += b->master_bytes;
  a->t_blind += b->t_blind;
  a->t_transfer += b->t_transfer;
  a->t_compute += b->t_compute;
  a->t_verify += b->t_verify;
  a->t_unblind += b->t_unblind;
  a->t_local += b->t_local;
  a->t_wait += b->t_wait;
}
