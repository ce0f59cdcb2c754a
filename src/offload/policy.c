/* policy.c - the protection policy's route table (engine.h tempo_protect_route; the
 * policy: docs/obfuscation.md, "Protection policy"). */
#include "offload/engine.h"

tempo_route tempo_protect_route(tempo_protect p, unsigned kind, bool can_mix) {
  if (p >= TEMPO_PROTECT_ENDS && (kind & (TEMPO_SITE_RAW_INPUT | TEMPO_SITE_HEAD))) return TEMPO_ROUTE_MASTER;
  const bool mixed = (p >= TEMPO_PROTECT_SPATIAL && (kind & TEMPO_SITE_SPATIAL)) || p >= TEMPO_PROTECT_ALL;
  if (!mixed) return TEMPO_ROUTE_WORKERS;
  return can_mix ? TEMPO_ROUTE_MIXED : TEMPO_ROUTE_MASTER;
}
