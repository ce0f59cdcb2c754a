/* netfile.c - the strict parser of network description files (netfile.h,
 * docs/network-format.md): sections "[kind]", "key = value" lines, '#' or ';' comments.
 * Every error is "FILE:LINE:COLUMN: reason"; every number is range-checked before use. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tempo/common.h"
#include "tempo/fileio.h"
#include "tempo/netfile.h"

#define NAME_LEN_MAX 40 /* a prefix, leaving room for ".attn.qkv.weight" in TEMPO_PARAM_NAME_MAX */

static const char *const kind_names[TEMPO_NET_KIND_COUNT] = {
    "conv", "bn",          "relu",    "gelu", "maxpool", "avgpool",  "gap",     "flatten",
    "linear", "dropout", "layernorm", "patch_embed", "encoder", "cls", "residual",
};

const char *tempo_net_kind_name(tempo_net_kind k) {
  return k >= 0 && k < TEMPO_NET_KIND_COUNT ? kind_names[k] : "?";
}

/* ------------------------------------------------------------------ parse state */
typedef struct {
  const char *file;
  tempo_net *net;
  int cap;
  bool have_net;     /* [net] seen */
  int section;       /* -1 none yet, -2 [net], -3 [shortcut]/[end] (no keys), else a layer index */
  unsigned seen;     /* keys already set in the current section (bit per key) */
  int open_block;    /* index of the open [residual], -1 none */
  bool in_shortcut;  /* after [shortcut] in the open block */
} parser;

static tempo_status perr(const parser *ps, int line, int col, const char *fmt, ...) TEMPO_PRINTF(4, 5);
static tempo_status perr(const parser *ps, int line, int col, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return tempo_set_error(TEMPO_STATUS_CORRUPT, "%s:%d:%d: %s", ps->file, line, col, msg);
}

/* The keys (bit positions for duplicate detection) and which sections take them. */
typedef enum {
  K_NAME, K_INPUT, K_CLASSES, K_FILTERS, K_OUT, K_SIZE, K_STRIDE, K_PAD, K_BIAS, K_P, K_PATCH, K_DIM,
  K_HEADS, K_MLP, K_DROPOUT, K_RELU, K_COUNT
} key_id;

static const char *const key_names[K_COUNT] = {"name", "input", "classes", "filters", "out", "size",
                                               "stride", "pad", "bias", "p", "patch", "dim",
                                               "heads", "mlp", "dropout", "relu"};

/* Bit set of the keys each layer kind accepts. */
#define B(k) (1u << (k))
static const unsigned kind_keys[TEMPO_NET_KIND_COUNT] = {
    [TEMPO_NET_CONV] = B(K_NAME) | B(K_FILTERS) | B(K_SIZE) | B(K_STRIDE) | B(K_PAD) | B(K_BIAS),
    [TEMPO_NET_BN] = B(K_NAME),
    [TEMPO_NET_MAXPOOL] = B(K_SIZE) | B(K_STRIDE) | B(K_PAD),
    [TEMPO_NET_AVGPOOL] = B(K_SIZE) | B(K_STRIDE) | B(K_PAD),
    [TEMPO_NET_LINEAR] = B(K_NAME) | B(K_OUT) | B(K_BIAS),
    [TEMPO_NET_DROPOUT] = B(K_P),
    [TEMPO_NET_LAYERNORM] = B(K_NAME),
    [TEMPO_NET_PATCH_EMBED] = B(K_PATCH) | B(K_DIM),
    [TEMPO_NET_ENCODER] = B(K_NAME) | B(K_HEADS) | B(K_MLP) | B(K_DROPOUT),
    [TEMPO_NET_RESIDUAL] = B(K_NAME) | B(K_RELU),
};
static const unsigned net_keys = B(K_NAME) | B(K_INPUT) | B(K_CLASSES);

/* ------------------------------------------------------------------ values */
static tempo_status parse_int(const parser *ps, int line, int col, const char *key, const char *v, long lo, long hi,
                              int *out) {
  const char *s = v;
  if (*s == '-' || *s == '+') s++;
  if (!*s) return perr(ps, line, col, "%s needs a whole number, got '%s'", key, v);
  for (const char *q = s; *q; q++)
    if (!isdigit((unsigned char)*q)) return perr(ps, line, col, "%s needs a whole number, got '%s'", key, v);
  errno = 0;
  long x = strlen(s) > 12 ? (v[0] == '-' ? -(1L << 40) : 1L << 40) : strtol(v, NULL, 10);
  if (x < lo || x > hi) return perr(ps, line, col, "%s must be from %ld to %ld, got %s", key, lo, hi, v);
  *out = (int)x;
  return TEMPO_STATUS_OK;
}

static tempo_status parse_bool(const parser *ps, int line, int col, const char *key, const char *v, int *out) {
  if (strcmp(v, "true") == 0) *out = 1;
  else if (strcmp(v, "false") == 0) *out = 0;
  else return perr(ps, line, col, "%s must be true or false, got '%s'", key, v);
  return TEMPO_STATUS_OK;
}

static tempo_status parse_prob(const parser *ps, int line, int col, const char *key, const char *v, float *out) {
  char *end = NULL;
  errno = 0;
  const double x = strtod(v, &end);
  if (end == v || *end || errno || !isfinite(x) || !isdigit((unsigned char)v[0]))
    return perr(ps, line, col, "%s needs a number, got '%s'", key, v);
  if (x < 0.0 || x >= 1.0) return perr(ps, line, col, "%s must be at least 0 and below 1, got %s", key, v);
  *out = (float)x;
  return TEMPO_STATUS_OK;
}

static tempo_status parse_name(const parser *ps, int line, int col, const char *key, const char *v, char *out,
                               size_t cap) {
  const size_t n = strlen(v);
  if (n > NAME_LEN_MAX || n >= cap) return perr(ps, line, col, "%s is longer than %d characters", key, NAME_LEN_MAX);
  for (size_t i = 0; i < n; i++) {
    const unsigned char ch = (unsigned char)v[i];
    if (!isalnum(ch) && ch != '_' && ch != '.' && ch != '-')
      return perr(ps, line, col + (int)i, "%s may hold letters, digits, '_', '.' and '-' only, not '%c'", key, ch);
  }
  if (v[0] == '.' || v[n - 1] == '.' || strstr(v, ".."))
    return perr(ps, line, col, "%s '%s': dots separate non-empty parts (as in layers.0.conv1)", key, v);
  memcpy(out, v, n + 1);
  return TEMPO_STATUS_OK;
}

/* "CxHxW" */
static tempo_status parse_shape(const parser *ps, int line, int col, const char *v, tempo_net *net) {
  int dims[3], n = 0;
  const char *s = v;
  while (n < 3) {
    char part[16];
    size_t k = 0;
    while (s[k] && s[k] != 'x') k++;
    if (k == 0 || k >= sizeof part) break;
    memcpy(part, s, k);
    part[k] = '\0';
    tempo_status st = parse_int(ps, line, col + (int)(s - v), "input", part, 1, TEMPO_NET_WIDTH_MAX, &dims[n]);
    if (st) return st;
    n++;
    s += k;
    if (*s != 'x') break;
    s++;
  }
  if (n != 3 || *s) return perr(ps, line, col, "input must be CHANNELSxHEIGHTxWIDTH (as 3x32x32), got '%s'", v);
  net->in_c = dims[0], net->in_h = dims[1], net->in_w = dims[2];
  return TEMPO_STATUS_OK;
}

static tempo_status set_key(parser *ps, int line, int col, int vcol, const char *key, const char *v) {
  key_id id = K_COUNT;
  for (int k = 0; k < K_COUNT; k++)
    if (strcmp(key, key_names[k]) == 0) id = (key_id)k;
  if (ps->section == -1) return perr(ps, line, col, "'%s' before any section: the file starts with [net]", key);
  if (ps->section == -3) return perr(ps, line, col, "this section takes no keys ('%s')", key);
  tempo_net *net = ps->net;
  tempo_net_layer *L = ps->section >= 0 ? &net->layers[ps->section] : NULL;
  const unsigned allowed = L ? kind_keys[L->kind] : net_keys;
  const char *sec = L ? kind_names[L->kind] : "net";
  if (id == K_COUNT || !(allowed & B(id))) {
    char list[160] = "";
    for (int k = 0; k < K_COUNT; k++)
      if (allowed & B(k)) snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", list[0] ? ", " : "",
                                   key_names[k]);
    if (!allowed) return perr(ps, line, col, "[%s] takes no keys ('%s')", sec, key);
    return perr(ps, line, col, "unknown key '%s' in [%s] (it takes: %s)", key, sec, list);
  }
  if (ps->seen & B(id)) return perr(ps, line, col, "'%s' is set twice in this [%s]", key, sec);
  ps->seen |= B(id);
  if (!L) {
    switch (id) {
    case K_NAME: return parse_name(ps, line, vcol, "name", v, net->name, sizeof net->name);
    case K_INPUT: return parse_shape(ps, line, vcol, v, net);
    default: return parse_int(ps, line, vcol, key, v, 2, TEMPO_NET_WIDTH_MAX, &net->classes);
    }
  }
  switch (id) {
  case K_NAME: return parse_name(ps, line, vcol, "name", v, L->name, sizeof L->name);
  case K_FILTERS: case K_OUT: case K_DIM: return parse_int(ps, line, vcol, key, v, 1, TEMPO_NET_WIDTH_MAX, &L->out);
  case K_SIZE: return parse_int(ps, line, vcol, key, v, 1, 64, &L->size);
  case K_STRIDE: return parse_int(ps, line, vcol, key, v, 1, 64, &L->stride);
  case K_PAD: return parse_int(ps, line, vcol, key, v, 0, 63, &L->pad);
  case K_BIAS: return parse_bool(ps, line, vcol, key, v, &L->bias);
  case K_RELU: return parse_bool(ps, line, vcol, key, v, &L->relu);
  case K_P: case K_DROPOUT: return parse_prob(ps, line, vcol, key, v, &L->p);
  case K_HEADS: return parse_int(ps, line, vcol, key, v, 1, 1024, &L->heads);
  case K_MLP: return parse_int(ps, line, vcol, key, v, 1, TEMPO_NET_WIDTH_MAX, &L->mlp);
  case K_PATCH:
    if (strcmp(v, "auto") == 0) return L->size = 0, TEMPO_STATUS_OK;
    return parse_int(ps, line, vcol, key, v, 1, 64, &L->size);
  default: return perr(ps, line, col, "internal: key '%s'", key);
  }
}

/* Checks the section just finished (required keys). */
static tempo_status close_section(parser *ps) {
  if (ps->section < 0) return TEMPO_STATUS_OK;
  const tempo_net_layer *L = &ps->net->layers[ps->section];
  const char *need = NULL;
  switch (L->kind) {
  case TEMPO_NET_CONV: need = !(ps->seen & B(K_FILTERS)) ? "filters" : !(ps->seen & B(K_SIZE)) ? "size" : NULL; break;
  case TEMPO_NET_MAXPOOL: case TEMPO_NET_AVGPOOL: need = !(ps->seen & B(K_SIZE)) ? "size" : NULL; break;
  case TEMPO_NET_PATCH_EMBED: need = !(ps->seen & B(K_DIM)) ? "dim" : NULL; break;
  case TEMPO_NET_ENCODER: need = !(ps->seen & B(K_HEADS)) ? "heads" : !(ps->seen & B(K_MLP)) ? "mlp" : NULL; break;
  default: break;
  }
  if (need) return perr(ps, L->line, L->col, "[%s] needs '%s'", kind_names[L->kind], need);
  return TEMPO_STATUS_OK;
}

static tempo_status open_section(parser *ps, int line, int col, const char *sec) {
  tempo_status st = close_section(ps);
  if (st) return st;
  ps->seen = 0;
  tempo_net *net = ps->net;
  if (strcmp(sec, "net") == 0) {
    if (ps->have_net) return perr(ps, line, col, "a second [net]: one file describes one network");
    if (net->n_layers) return perr(ps, line, col, "[net] must come before the layers");
    ps->have_net = true;
    ps->section = -2;
    return TEMPO_STATUS_OK;
  }
  if (!ps->have_net) return perr(ps, line, col, "the file must start with [net] (its name, input and classes)");
  if (strcmp(sec, "shortcut") == 0 || strcmp(sec, "end") == 0) {
    if (ps->open_block < 0) return perr(ps, line, col, "[%s] outside a [residual] block", sec);
    tempo_net_layer *blk = &net->layers[ps->open_block];
    ps->section = -3;
    if (sec[0] == 's') {
      if (ps->in_shortcut) return perr(ps, line, col, "a second [shortcut] in the block opened at line %d", blk->line);
      if (blk->n_main == 0) return perr(ps, line, col, "the [residual] block at line %d has no main branch", blk->line);
      ps->in_shortcut = true;
    } else {
      if (blk->n_main == 0) return perr(ps, line, col, "the [residual] block at line %d has no main branch", blk->line);
      ps->open_block = -1;
      ps->in_shortcut = false;
    }
    return TEMPO_STATUS_OK;
  }
  int kind = -1;
  for (int k = 0; k < TEMPO_NET_KIND_COUNT; k++)
    if (strcmp(sec, kind_names[k]) == 0) kind = k;
  if (kind < 0)
    return perr(ps, line, col,
                "unknown section [%s] (sections: net, conv, bn, relu, gelu, maxpool, avgpool, gap, flatten, linear, "
                "dropout, layernorm, patch_embed, encoder, cls, residual, shortcut, end)", sec);
  if (ps->open_block >= 0 && (kind == TEMPO_NET_RESIDUAL || kind == TEMPO_NET_PATCH_EMBED ||
                              kind == TEMPO_NET_ENCODER || kind == TEMPO_NET_CLS))
    return perr(ps, line, col, "[%s] inside the [residual] block opened at line %d (blocks hold conv, bn, relu, gelu, "
                "pooling, linear, dropout and layernorm layers; close it with [end])", sec,
                net->layers[ps->open_block].line);
  if (kind == TEMPO_NET_PATCH_EMBED && net->n_layers)
    return perr(ps, line, col, "[patch_embed] must be the first layer (it reads the images)");
  if (net->n_layers >= TEMPO_NET_LAYERS_MAX)
    return perr(ps, line, col, "more than %d layers", TEMPO_NET_LAYERS_MAX);
  if (net->n_layers == ps->cap) {
    const int cap = ps->cap ? 2 * ps->cap : 32;
    tempo_net_layer *nl = realloc(net->layers, (size_t)cap * sizeof *nl);
    if (!nl) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "out of memory parsing %s", ps->file);
    net->layers = nl;
    ps->cap = cap;
  }
  tempo_net_layer *L = &net->layers[net->n_layers];
  memset(L, 0, sizeof *L);
  L->kind = (tempo_net_kind)kind;
  L->line = line, L->col = col;
  L->stride = -1, L->pad = -1, L->bias = -1, L->p = -1.0f, L->relu = 1, L->size = kind == TEMPO_NET_PATCH_EMBED ? 0 : -1;
  if (ps->open_block >= 0) {
    tempo_net_layer *blk = &net->layers[ps->open_block];
    if (ps->in_shortcut) blk->n_short++;
    else blk->n_main++;
  }
  ps->section = net->n_layers++;
  if (kind == TEMPO_NET_RESIDUAL) ps->open_block = ps->section, ps->in_shortcut = false;
  return TEMPO_STATUS_OK;
}

/* Fills defaults: names as an nn.Sequential named "layers" would have them, strides, pads, bias. */
static tempo_status finish(parser *ps) {
  tempo_net *net = ps->net;
  int top = 0, enc = 0;
  for (int i = 0; i < net->n_layers; i++) {
    tempo_net_layer *L = &net->layers[i];
    const bool params = L->kind == TEMPO_NET_CONV || L->kind == TEMPO_NET_BN || L->kind == TEMPO_NET_LINEAR ||
                        L->kind == TEMPO_NET_LAYERNORM || L->kind == TEMPO_NET_ENCODER;
    if (L->kind == TEMPO_NET_ENCODER && !L->name[0]) snprintf(L->name, sizeof L->name, "blocks.%d", enc);
    if (L->kind == TEMPO_NET_ENCODER) enc++;
    if ((params || L->kind == TEMPO_NET_RESIDUAL) && !L->name[0]) snprintf(L->name, sizeof L->name, "layers.%d", top);
    if (L->kind == TEMPO_NET_RESIDUAL) {
      for (int j = 0; j < L->n_main + L->n_short; j++) {
        tempo_net_layer *S = &net->layers[i + 1 + j];
        const bool sp = S->kind == TEMPO_NET_CONV || S->kind == TEMPO_NET_BN || S->kind == TEMPO_NET_LINEAR ||
                        S->kind == TEMPO_NET_LAYERNORM;
        if (sp && !S->name[0]) {
          const bool sc = j >= L->n_main;
          int n = snprintf(S->name, sizeof S->name, "%s.%s%d", L->name, sc ? "shortcut." : "", sc ? j - L->n_main : j);
          if (n < 0 || n > NAME_LEN_MAX + 12) return perr(ps, S->line, S->col, "the default name is too long: set name");
        }
      }
      i += L->n_main + L->n_short;
    }
    top++;
  }
  for (int i = 0; i < net->n_layers; i++) {
    tempo_net_layer *L = &net->layers[i];
    if (L->kind == TEMPO_NET_CONV) {
      if (L->stride < 0) L->stride = 1;
      if (L->pad < 0) L->pad = L->size / 2;
      if (L->bias < 0) L->bias = 1;
      if (L->pad >= L->size) return perr(ps, L->line, L->col, "[conv] pad %d must be below size %d", L->pad, L->size);
    } else if (L->kind == TEMPO_NET_MAXPOOL || L->kind == TEMPO_NET_AVGPOOL) {
      if (L->stride < 0) L->stride = L->size;
      if (L->pad < 0) L->pad = 0;
      if (2 * L->pad > L->size)
        return perr(ps, L->line, L->col, "[%s] pad %d must be at most half of size %d", kind_names[L->kind], L->pad,
                    L->size);
    } else if (L->kind == TEMPO_NET_LINEAR && L->bias < 0) {
      L->bias = 1;
    }
    for (int j = 0; j < i && L->name[0]; j++)
      if (strcmp(net->layers[j].name, L->name) == 0 && L->kind != TEMPO_NET_RESIDUAL &&
          net->layers[j].kind != TEMPO_NET_RESIDUAL)
        return perr(ps, L->line, L->col, "name '%s' is already used by the layer at line %d", L->name,
                    net->layers[j].line);
  }
  return TEMPO_STATUS_OK;
}

static void trim(char **s, char **e) {
  while (*s < *e && (**s == ' ' || **s == '\t')) (*s)++;
  while (*e > *s && ((*e)[-1] == ' ' || (*e)[-1] == '\t' || (*e)[-1] == '\r')) (*e)--;
}

static tempo_status parse_line(parser *ps, int line, char *s, char *e) {
  char *const base = s;
  /* strip a comment */
  for (char *q = s; q < e; q++)
    if (*q == '#' || *q == ';') {
      e = q;
      break;
    }
  trim(&s, &e);
  if (s == e) return TEMPO_STATUS_OK;
  const int col = (int)(s - base) + 1;
  if (*s == '[') {
    char *close = memchr(s, ']', (size_t)(e - s));
    if (!close) return perr(ps, line, col, "a section header needs its closing ']'");
    if (close + 1 != e) return perr(ps, line, (int)(close + 1 - base) + 1, "text after the section header");
    char *n = s + 1, *ne = close;
    trim(&n, &ne);
    if (n == ne) return perr(ps, line, col, "an empty section name");
    for (char *q = n; q < ne; q++)
      if (!islower((unsigned char)*q) && *q != '_')
        return perr(ps, line, (int)(q - base) + 1, "section names are lower-case words, as [conv]");
    *ne = '\0';
    return open_section(ps, line, col, n);
  }
  char *eq = memchr(s, '=', (size_t)(e - s));
  if (!eq) return perr(ps, line, col, "expected '[section]' or 'key = value'");
  char *k = s, *ke = eq, *v = eq + 1, *ve = e;
  trim(&k, &ke);
  trim(&v, &ve);
  if (k == ke) return perr(ps, line, col, "a key is missing before '='");
  for (char *q = k; q < ke; q++)
    if (!islower((unsigned char)*q) && *q != '_')
      return perr(ps, line, (int)(q - base) + 1, "keys are lower-case words, as filters");
  const int vcol = (int)(v - base) + 1;
  if (v == ve) return perr(ps, line, vcol, "a value is missing after '='");
  for (char *q = v; q < ve; q++)
    if (*q == ' ' || *q == '\t' || *q == '=') return perr(ps, line, (int)(q - base) + 1, "one value per key");
  *ke = '\0';
  *ve = '\0';
  return set_key(ps, line, col, vcol, k, v);
}

tempo_status tempo_net_parse(const char *text, size_t len, const char *file, tempo_net **out) {
  *out = NULL;
  if (!file) file = "<net>";
  parser ps = {.file = file, .section = -1, .open_block = -1};
  if (len > TEMPO_NET_FILE_MAX)
    return perr(&ps, 1, 1, "the file is larger than %u bytes: not a network file", TEMPO_NET_FILE_MAX);
  tempo_net *net = calloc(1, sizeof *net);
  char *buf = malloc(TEMPO_NET_LINE_MAX + 2);
  if (!net || !buf) {
    free(net);
    free(buf);
    return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "out of memory parsing %s", file);
  }
  snprintf(net->file, sizeof net->file, "%s", file);
  ps.net = net;
  tempo_status st = TEMPO_STATUS_OK;
  size_t pos = 0;
  int line = 0;
  while (pos < len && !st) {
    line++;
    size_t end = pos;
    while (end < len && text[end] != '\n') end++;
    if (end - pos > TEMPO_NET_LINE_MAX) {
      st = perr(&ps, line, TEMPO_NET_LINE_MAX + 1, "the line is longer than %d characters", TEMPO_NET_LINE_MAX);
      break;
    }
    for (size_t i = pos; i < end && !st; i++) {
      const unsigned char ch = (unsigned char)text[i];
      if ((ch < 0x20 && ch != '\t' && !(ch == '\r' && i + 1 == end)) || ch == 0x7f)
        st = perr(&ps, line, (int)(i - pos) + 1, "control character 0x%02x (a network file is plain text)", ch);
      else if (ch >= 0x80) {
        const char *hash = memchr(text + pos, '#', i - pos), *semi = memchr(text + pos, ';', i - pos);
        if (!hash && !semi)
          st = perr(&ps, line, (int)(i - pos) + 1, "byte 0x%02x: only ASCII outside comments", ch);
      }
    }
    if (st) break;
    memcpy(buf, text + pos, end - pos);
    buf[end - pos] = '\0';
    st = parse_line(&ps, line, buf, buf + (end - pos));
    pos = end + 1;
  }
  if (!st) st = close_section(&ps);
  if (!st && !ps.have_net) st = perr(&ps, line ? line : 1, 1, "no [net] section: not a network file");
  if (!st && !net->name[0]) st = perr(&ps, 1, 1, "[net] needs 'name' (the model's name in checkpoints)");
  if (!st && ps.open_block >= 0)
    st = perr(&ps, net->layers[ps.open_block].line, net->layers[ps.open_block].col,
              "this [residual] block is never closed with [end]");
  if (!st && net->n_layers == 0) st = perr(&ps, line ? line : 1, 1, "the network has no layers");
  if (!st && net->layers[net->n_layers - 1].kind != TEMPO_NET_LINEAR) {
    const tempo_net_layer *L = &net->layers[net->n_layers - 1];
    st = perr(&ps, L->line, L->col, "the last layer must be the [linear] head (it is [%s])", kind_names[L->kind]);
  }
  if (!st) st = finish(&ps);
  for (int i = 0; !st && i < net->n_layers - 1; i++)
    if (net->layers[i].kind == TEMPO_NET_LINEAR && net->layers[i].out == 0)
      st = perr(&ps, net->layers[i].line, net->layers[i].col, "[linear] needs 'out' (only the head may omit it)");
  if (!st && net->in_c) st = tempo_net_resolve(net, 0, 0, 0, 0, NULL, NULL, NULL, NULL, NULL);
  free(buf);
  if (st) {
    tempo_net_free(net);
    return st;
  }
  *out = net;
  return TEMPO_STATUS_OK;
}

tempo_status tempo_net_parse_file(const char *path, tempo_net **out) {
  *out = NULL;
  uint8_t *buf = NULL;
  size_t len = 0;
  tempo_status st = tempo_read_file(path, TEMPO_NET_FILE_MAX, &buf, &len);
  if (st) return st;
  st = tempo_net_parse((const char *)buf, len, path, out);
  free(buf);
  return st;
}

void tempo_net_free(tempo_net *net) {
  if (!net) return;
  free(net->layers);
  free(net);
}
