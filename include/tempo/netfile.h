/* netfile.h - network description files (docs/network-format.md): one text file describes one
 * network, INI-like as Darknet's .cfg: a [net] section (name, optional input shape and class
 * count), then one section per layer in forward order, with [residual] ... [shortcut] ... [end]
 * for skip connections. Parameter names follow PyTorch state_dict conventions.
 *
 * The parser is strict: an unknown section or key, a duplicate key, a value out of its range,
 * a missing required key or a network whose shapes do not chain is refused with
 * "FILE:LINE:COLUMN: reason" (tempo_errmsg()) and TEMPO_STATUS_CORRUPT (syntax, values) or
 * TEMPO_STATUS_INVALID_ARGUMENT (layers whose shapes do not chain for the input, as a model
 * that cannot take an input shape). Every size it reads is bounded
 * (TEMPO_NET_* below); nothing from the file is trusted.
 *
 * Ownership: tempo_net_parse* return a tempo_net the caller frees with tempo_net_free (NULL is
 * fine). A model built from a tempo_net copies what it needs: the net may be freed after
 * tempo_model_create. */
#ifndef TEMPO_NETFILE_H
#define TEMPO_NETFILE_H

#include <stddef.h>

#include "tempo/params.h"
#include "tempo/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TEMPO_NET_FILE_MAX (1u << 20) /* bytes of a network file */
#define TEMPO_NET_LINE_MAX 1024       /* characters of one line */
#define TEMPO_NET_LAYERS_MAX 4096     /* sections of one file */
#define TEMPO_NET_NAME_MAX 32         /* the [net] name, with its NUL (the checkpoint's model field) */
#define TEMPO_NET_WIDTH_MAX 65536     /* channels, features, classes, image sides */
#define TEMPO_NET_PARAMS_MAX (1ull << 31)     /* parameters of one network */
#define TEMPO_NET_ACT_MAX (1ull << 28)        /* floats of one sample's activation in any layer */

typedef enum {
  TEMPO_NET_CONV,        /* [conv]: Conv2d */
  TEMPO_NET_BN,          /* [bn]: BatchNorm2d */
  TEMPO_NET_RELU,        /* [relu] */
  TEMPO_NET_GELU,        /* [gelu] */
  TEMPO_NET_MAXPOOL,     /* [maxpool]: MaxPool2d */
  TEMPO_NET_AVGPOOL,     /* [avgpool]: AvgPool2d (count_include_pad) */
  TEMPO_NET_GAP,         /* [gap]: AdaptiveAvgPool2d(1) + flatten */
  TEMPO_NET_FLATTEN,     /* [flatten]: torch.flatten(x, 1) (C, H, W order) */
  TEMPO_NET_LINEAR,      /* [linear]: Linear (on features, or on every token) */
  TEMPO_NET_DROPOUT,     /* [dropout]: inverted dropout */
  TEMPO_NET_LAYERNORM,   /* [layernorm]: LayerNorm over the last dimension */
  TEMPO_NET_PATCH_EMBED, /* [patch_embed]: Conv2d patches + cls token + position embedding */
  TEMPO_NET_ENCODER,     /* [encoder]: a pre-norm transformer block (timm's Block) */
  TEMPO_NET_CLS,         /* [cls]: x[:, 0], the cls token */
  TEMPO_NET_RESIDUAL,    /* [residual]: opens a block: main branch, then [shortcut] branch, [end] */
  TEMPO_NET_KIND_COUNT
} tempo_net_kind;

/* One layer. Blocks: a TEMPO_NET_RESIDUAL layer at index i is followed by its n_main main
 * branch layers and its n_short shortcut layers (empty = identity); blocks do not nest. */
typedef struct {
  tempo_net_kind kind;
  int line, col;                   /* where its section header is (errors found later) */
  char name[TEMPO_PARAM_NAME_MAX]; /* parameter prefix ("" for layers without parameters) */
  int out;                         /* conv filters, linear out features, patch_embed dim */
  int size, stride, pad;           /* conv, pool windows; patch_embed patch (0 = auto) */
  int bias;                        /* conv, linear: 1 = with bias */
  int heads, mlp;                  /* encoder */
  float p;                         /* dropout, encoder dropout: < 0 = the run's --dropout */
  int relu;                        /* residual: ReLU after the add */
  int n_main, n_short;             /* residual: its branches' layer counts */
} tempo_net_layer;

typedef struct tempo_net {
  char name[TEMPO_NET_NAME_MAX]; /* [net] name: the model's name in checkpoints */
  char file[256];                /* the file name errors start with */
  int in_c, in_h, in_w;          /* 0 = taken from the dataset */
  int classes;                   /* 0 = taken from the dataset */
  int n_layers;
  tempo_net_layer *layers;       /* (n_layers), owned */
} tempo_net;

/* Reads and parses a network file (at most TEMPO_NET_FILE_MAX bytes). Errors: TEMPO_STATUS_IO
 * (cannot read), TEMPO_STATUS_CORRUPT with "FILE:LINE:COLUMN: reason", TEMPO_STATUS_INVALID_ARGUMENT
 * (also "FILE:LINE:COLUMN: ...") when the layers' shapes do not chain for the input the file
 * declares. */
TEMPO_WUR tempo_status tempo_net_parse_file(const char *path, tempo_net **out);
/* The same for len bytes of text (need not be NUL-terminated); `file` names it in errors. */
TEMPO_WUR tempo_status tempo_net_parse(const char *text, size_t len, const char *file, tempo_net **out);
void tempo_net_free(tempo_net *net);

/* Checks that the layers chain for an input c x h x w and `classes` classes (the file's own
 * values win where it declares them; 0 here = take the file's) and stores the effective input
 * and classes into *in_c... (any may be NULL). Errors name the layer: "FILE:LINE:COLUMN: ...".
 * Counts the parameters into *params (NULL ok). */
TEMPO_WUR tempo_status tempo_net_resolve(const tempo_net *net, int c, int h, int w, int classes, int *in_c,
                                         int *in_h, int *in_w, int *out_classes, size_t *params);

/* The network text of a built-in model (nets/<name>.net, compiled in), or NULL. */
const char *tempo_net_builtin_text(const char *name);

/* The section name of a kind ("conv", ...). */
const char *tempo_net_kind_name(tempo_net_kind k);

#ifdef __cplusplus
}
#endif
#endif
