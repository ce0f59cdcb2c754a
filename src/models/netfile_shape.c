/* netfile_shape.c - shape inference and size bounds for network files (netfile_shape.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tempo/common.h"
#include "tempo/netfile.h"
#include "models/netfile_shape.h"

typedef struct {
  const tempo_net *net;
  int classes;
  tempo_shape *in, *out;
  int *patch;
  unsigned long long params;
} walker;

static tempo_status serr(const walker *wk, const tempo_net_layer *L, const char *fmt, ...) TEMPO_PRINTF(3, 4);
static tempo_status serr(const walker *wk, const tempo_net_layer *L, const char *fmt, ...) {
  char msg[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "%s:%d:%d: [%s] %s", wk->net->file, L->line, L->col,
                         tempo_net_kind_name(L->kind), msg);
}

static const char *shape_str(tempo_shape s, char *buf, size_t cap) {
  switch (s.kind) {
  case TEMPO_SHAPE_IMG: snprintf(buf, cap, "the input image %dx%dx%d", s.c, s.h, s.w); break;
  case TEMPO_SHAPE_MAP: snprintf(buf, cap, "a %dx%dx%d feature map", s.c, s.h, s.w); break;
  case TEMPO_SHAPE_TOK: snprintf(buf, cap, "%d tokens of width %d", s.h, s.c); break;
  default: snprintf(buf, cap, "%d features", s.c); break;
  }
  return buf;
}

/* Output size of a window: floor((in + 2 pad - k) / stride) + 1, as tempo_conv_out_size
 * (cnn.h) computes it; repeated here so that the parser links alone (tests/fuzz/fuzz_netfile.c). */
static int out_size(int in, int k, int stride, int pad) {
  const long v = (long)in + 2L * pad - k;
  return v < 0 ? 0 : (int)(v / stride + 1);
}

static bool add_params(walker *wk, unsigned long long n) {
  wk->params += n;
  return wk->params <= TEMPO_NET_PARAMS_MAX;
}

/* One layer (not a block) on shape s. */
static tempo_status step(walker *wk, const tempo_net_layer *L, int idx, tempo_shape *s) {
  char b[96];
  const unsigned long long act = TEMPO_NET_ACT_MAX;
  const bool spatial = s->kind == TEMPO_SHAPE_IMG || s->kind == TEMPO_SHAPE_MAP;
  switch (L->kind) {
  case TEMPO_NET_CONV: {
    if (!spatial) return serr(wk, L, "needs an image or a feature map, not %s", shape_str(*s, b, sizeof b));
    const int oh = out_size(s->h, L->size, L->stride, L->pad);
    const int ow = out_size(s->w, L->size, L->stride, L->pad);
    if (oh < 1 || ow < 1)
      return serr(wk, L, "size %d, stride %d, pad %d leaves no output on %s", L->size, L->stride, L->pad,
                  shape_str(*s, b, sizeof b));
    const unsigned long long k = (unsigned long long)s->c * L->size * L->size;
    if (k * oh * ow > act) return serr(wk, L, "its lowered input (%d x %llu per sample) is too large", oh * ow, k);
    if (!add_params(wk, k * L->out + (L->bias ? L->out : 0))) return serr(wk, L, "too many parameters");
    *s = (tempo_shape){TEMPO_SHAPE_MAP, L->out, oh, ow};
    break;
  }
  case TEMPO_NET_BN:
    if (s->kind != TEMPO_SHAPE_MAP)
      return serr(wk, L, "normalises a feature map (after a conv), not %s", shape_str(*s, b, sizeof b));
    add_params(wk, 2ull * s->c);
    break;
  case TEMPO_NET_RELU: case TEMPO_NET_GELU: case TEMPO_NET_DROPOUT: break;
  case TEMPO_NET_MAXPOOL: case TEMPO_NET_AVGPOOL: {
    if (s->kind != TEMPO_SHAPE_MAP)
      return serr(wk, L, "pools a feature map (after a conv), not %s", shape_str(*s, b, sizeof b));
    const int oh = out_size(s->h, L->size, L->stride, L->pad);
    const int ow = out_size(s->w, L->size, L->stride, L->pad);
    if (oh < 1 || ow < 1)
      return serr(wk, L, "size %d, stride %d, pad %d leaves no output on %s", L->size, L->stride, L->pad,
                  shape_str(*s, b, sizeof b));
    s->h = oh, s->w = ow;
    break;
  }
  case TEMPO_NET_GAP:
    if (s->kind != TEMPO_SHAPE_MAP)
      return serr(wk, L, "averages a feature map (after a conv), not %s", shape_str(*s, b, sizeof b));
    *s = (tempo_shape){TEMPO_SHAPE_VEC, s->c, 1, 1};
    break;
  case TEMPO_NET_FLATTEN: {
    const unsigned long long n = (unsigned long long)s->c * s->h * s->w;
    if (n > TEMPO_NET_WIDTH_MAX * 64ull) return serr(wk, L, "%llu features are too many", n);
    *s = (tempo_shape){TEMPO_SHAPE_VEC, (int)n, 1, 1};
    break;
  }
  case TEMPO_NET_LINEAR: {
    if (s->kind != TEMPO_SHAPE_VEC && s->kind != TEMPO_SHAPE_TOK)
      return serr(wk, L, "needs features or tokens, not %s: put [flatten] or [gap] before it",
                  shape_str(*s, b, sizeof b));
    const bool head = idx == wk->net->n_layers - 1;
    int out = L->out;
    if (head && wk->classes) {
      if (out && out != wk->classes)
        return serr(wk, L, "the head has out = %d but the network has %d classes", out, wk->classes);
      out = wk->classes;
    }
    if (head && s->kind != TEMPO_SHAPE_VEC)
      return serr(wk, L, "the head needs features, not %s: put [cls], [flatten] or [gap] before it",
                  shape_str(*s, b, sizeof b));
    if (!out) out = 2; /* unknown classes: any width chains */
    if (!add_params(wk, (unsigned long long)s->c * out + (L->bias ? out : 0)))
      return serr(wk, L, "too many parameters");
    s->c = out;
    break;
  }
  case TEMPO_NET_LAYERNORM:
    if (s->kind != TEMPO_SHAPE_VEC && s->kind != TEMPO_SHAPE_TOK)
      return serr(wk, L, "normalises features or tokens, not %s", shape_str(*s, b, sizeof b));
    add_params(wk, 2ull * s->c);
    break;
  case TEMPO_NET_PATCH_EMBED: {
    if (s->kind != TEMPO_SHAPE_IMG) return serr(wk, L, "reads the input image");
    const int patch = L->size ? L->size : (s->h == 28 && s->w == 28 ? 7 : 4);
    if (s->h % patch || s->w % patch)
      return serr(wk, L, "patch %d does not divide the %dx%d image", patch, s->h, s->w);
    if (wk->patch) wk->patch[idx] = patch;
    const unsigned long long n = 1ull + (unsigned long long)(s->h / patch) * (s->w / patch);
    const unsigned long long k = (unsigned long long)s->c * patch * patch;
    if (n * L->out > act || n > 65536) return serr(wk, L, "%llu tokens of width %d are too large", n, L->out);
    if (!add_params(wk, k * L->out + 2ull * L->out + n * L->out)) return serr(wk, L, "too many parameters");
    *s = (tempo_shape){TEMPO_SHAPE_TOK, L->out, (int)n, 1};
    break;
  }
  case TEMPO_NET_ENCODER: {
    if (s->kind != TEMPO_SHAPE_TOK) return serr(wk, L, "needs tokens (after [patch_embed]), not %s",
                                                shape_str(*s, b, sizeof b));
    if (s->c % L->heads) return serr(wk, L, "%d heads do not divide the width %d", L->heads, s->c);
    const unsigned long long d = (unsigned long long)s->c, n = (unsigned long long)s->h;
    if ((unsigned long long)L->heads * n * n > act || n * L->mlp > act || 3 * n * d > act)
      return serr(wk, L, "its activations are too large for %llu tokens", n);
    if (!add_params(wk, 4 * d * d + 4 * d + 4 * d + 2 * d * L->mlp + L->mlp + d)) return serr(wk, L, "too many parameters");
    break;
  }
  case TEMPO_NET_CLS:
    if (s->kind != TEMPO_SHAPE_TOK) return serr(wk, L, "needs tokens, not %s", shape_str(*s, b, sizeof b));
    *s = (tempo_shape){TEMPO_SHAPE_VEC, s->c, 1, 1};
    break;
  default: return serr(wk, L, "internal: not a layer");
  }
  if (tempo_shape_floats(*s) > TEMPO_NET_ACT_MAX) return serr(wk, L, "its output is too large");
  return TEMPO_STATUS_OK;
}

static tempo_status walk_range(walker *wk, int from, int n, tempo_shape *s) {
  const tempo_net *net = wk->net;
  for (int i = from; i < from + n; i++) {
    const tempo_net_layer *L = &net->layers[i];
    if (wk->in) wk->in[i] = *s;
    tempo_status st;
    if (L->kind == TEMPO_NET_RESIDUAL) {
      tempo_shape a = *s, sc = *s;
      if ((st = walk_range(wk, i + 1, L->n_main, &a)) || (st = walk_range(wk, i + 1 + L->n_main, L->n_short, &sc)))
        return st;
      if (a.kind != sc.kind || a.c != sc.c || a.h != sc.h || a.w != sc.w) {
        char b1[96], b2[96];
        return serr(wk, L, "the main branch gives %s but the %s gives %s: add a projection [shortcut]",
                    shape_str(a, b1, sizeof b1), L->n_short ? "shortcut" : "identity shortcut",
                    shape_str(sc, b2, sizeof b2));
      }
      if (a.kind == TEMPO_SHAPE_IMG) return serr(wk, L, "adds raw input images: put a conv first");
      if (L->n_short) {
        const tempo_net_layer *F = &net->layers[i + 1 + L->n_main];
        if (F->kind != TEMPO_NET_CONV)
          return serr(wk, F, "a shortcut branch starts with a [conv] (a projection), then an optional [bn]");
        if (L->n_short > 2 || (L->n_short == 2 && net->layers[i + 2 + L->n_main].kind != TEMPO_NET_BN))
          return serr(wk, F, "a shortcut branch is a [conv] and an optional [bn]");
      }
      *s = a;
      if (wk->out) wk->out[i] = *s;
      i += L->n_main + L->n_short;
    } else if ((st = step(wk, L, i, s))) {
      return st;
    } else if (wk->out) {
      wk->out[i] = *s;
    }
  }
  return TEMPO_STATUS_OK;
}

tempo_status tempo_net_walk(const tempo_net *net, int c, int h, int w, int classes, tempo_shape *in,
                            tempo_shape *out, int *patch, size_t *params) {
  if (net->in_c) c = net->in_c, h = net->in_h, w = net->in_w;
  if (net->classes) classes = net->classes;
  if (c < 1 || h < 1 || w < 1 || c > TEMPO_NET_WIDTH_MAX || h > TEMPO_NET_WIDTH_MAX || w > TEMPO_NET_WIDTH_MAX)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "%s: no input shape (set input in [net], as 3x32x32)",
                           net->file);
  if ((unsigned long long)c * h * w > TEMPO_NET_ACT_MAX)
    return tempo_set_error(TEMPO_STATUS_MISMATCH, "%s: the input %dx%dx%d is too large", net->file, c, h, w);
  walker wk = {.net = net, .classes = classes, .in = in, .out = out, .patch = patch};
  tempo_shape s = {TEMPO_SHAPE_IMG, c, h, w};
  tempo_status st = walk_range(&wk, 0, net->n_layers, &s);
  if (st) return st;
  if (params) *params = (size_t)wk.params;
  return TEMPO_STATUS_OK;
}

tempo_status tempo_net_resolve(const tempo_net *net, int c, int h, int w, int classes, int *in_c, int *in_h,
                               int *in_w, int *out_classes, size_t *params) {
  if (net->in_c) c = net->in_c, h = net->in_h, w = net->in_w;
  if (net->classes) classes = net->classes;
  tempo_status st = tempo_net_walk(net, c, h, w, classes, NULL, NULL, NULL, params);
  if (st) return st;
  if (in_c) *in_c = c;
  if (in_h) *in_h = h;
  if (in_w) *in_w = w;
  if (out_classes) *out_classes = classes;
  return TEMPO_STATUS_OK;
}
