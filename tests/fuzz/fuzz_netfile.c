/* fuzz_netfile.c - libFuzzer target: the network-file parser (tempo_net_parse, as `tempo train
 * --net` calls it on a file from the user) and the shape walk on two input shapes.
 * Invariants: a refused file leaves no network and a message starting "fuzz.net:LINE:COL: "; an
 * accepted one ends with a [linear] head, its blocks' branches lie inside the layer list, and every
 * name fits its bound. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tempo/netfile.h"

static void check_error(void) {
  int line, col;
  if (sscanf(tempo_errmsg(), "fuzz.net:%d:%d: ", &line, &col) != 2 || line < 1 || col < 1) abort();
}

static int fuzz_netfile_one(const uint8_t *data, size_t size) {
  tempo_net *net = (tempo_net *)&net;
  if (tempo_net_parse((const char *)data, size, "fuzz.net", &net)) {
    if (net) abort();
    check_error();
    return 0;
  }
  if (!net || net->n_layers < 1 || net->n_layers > TEMPO_NET_LAYERS_MAX) abort();
  if (net->layers[net->n_layers - 1].kind != TEMPO_NET_LINEAR) abort();
  if (strnlen(net->name, TEMPO_NET_NAME_MAX) == TEMPO_NET_NAME_MAX || !net->name[0]) abort();
  for (int i = 0; i < net->n_layers; i++) {
    const tempo_net_layer *L = &net->layers[i];
    if (L->kind < 0 || L->kind >= TEMPO_NET_KIND_COUNT) abort();
    if (strnlen(L->name, TEMPO_PARAM_NAME_MAX) == TEMPO_PARAM_NAME_MAX) abort();
    if (L->kind == TEMPO_NET_RESIDUAL && (L->n_main < 1 || L->n_short < 0 || i + L->n_main + L->n_short >= net->n_layers))
      abort();
  }
  static const int shapes[2][3] = {{1, 28, 28}, {3, 32, 32}};
  for (int k = 0; k < 2; k++) {
    int c, h, w, classes;
    size_t params;
    if (tempo_net_resolve(net, shapes[k][0], shapes[k][1], shapes[k][2], 10, &c, &h, &w, &classes, &params)) {
      if (strncmp(tempo_errmsg(), "fuzz.net", 8) != 0) abort();
    } else if (params > TEMPO_NET_PARAMS_MAX || classes < 2) {
      abort();
    }
  }
  tempo_net_free(net);
  return 0;
}

#ifndef TEMPO_FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return fuzz_netfile_one(data, size); }
#endif
