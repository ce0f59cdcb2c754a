/* trail.c - reassembles one training step's forward products from an audit trail
 * (attack.h). What it rebuilds is exactly what the workers received (X', W') and sent
 * back (Y'), block by block, keyed by the task ids in the headers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tempo/attack.h"
#include "tempo/audit.h"
#include "tempo/bf16.h"
#include "tempo/common.h"

typedef struct {
  uint64_t task, handle; /* a forward block's task id and its X' handle */
  int prod;
} task_ref;

static tempo_status grow_prods(tempo_trail_step *s) {
  if (s->n < s->cap) return TEMPO_STATUS_OK;
  int cap = s->cap ? 2 * s->cap : 32;
  tempo_trail_product *np = realloc(s->prods, (size_t)cap * sizeof *np);
  if (!np) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "trail: out of memory");
  memset(np + s->cap, 0, (size_t)(cap - s->cap) * sizeof *np);
  s->prods = np;
  s->cap = cap;
  return TEMPO_STATUS_OK;
}

static float *alloc3(int a, int b, int c) {
  size_t n;
  if (!tempo_mul3_size((size_t)a, (size_t)b, (size_t)c, &n)) return NULL;
  return tempo_alloc_floats(n);
}

void tempo_trail_step_free(tempo_trail_step *s) {
  if (!s) return;
  for (int i = 0; i < s->n; i++) {
    tempo_free_floats(s->prods[i].x);
    tempo_free_floats(s->prods[i].w);
    tempo_free_floats(s->prods[i].y);
    tempo_free_floats(s->prods[i].dy);
  }
  free(s->prods);
  memset(s, 0, sizeof *s);
}

/* Copies n payload elements of the header's dtype into floats (float64 payloads, shield
 * mode's shares, are rounded to float32: their per-element signal, ~1/alpha relative, is
 * far above float32's 2^-24; bfloat16 operands are widened exactly). */
static void copy_elems(float *dst, const uint8_t *src, size_t n, uint16_t dtype) {
  if (dtype == TEMPO_DTYPE_BF16) {
    for (size_t i = 0; i < n; i++) {
      uint16_t v;
      memcpy(&v, src + i * sizeof v, sizeof v);
      dst[i] = tempo_bf16_to_f32(v);
    }
    return;
  }
  if (dtype != TEMPO_DTYPE_F64) {
    memcpy(dst, src, n * sizeof(float));
    return;
  }
  for (size_t i = 0; i < n; i++) {
    double v;
    memcpy(&v, src + i * sizeof v, sizeof v);
    dst[i] = (float)v;
  }
}

/* Copies a split's rows [lo, hi) of a (batch, m, cols) tensor from the payload. */
static void put_split(float *dst, const tempo_msg_header *h, int cols, const uint8_t *src) {
  size_t off, len;
  if (h->batch == 1) {
    off = (size_t)h->lo * (size_t)cols;
    len = (size_t)(h->hi - h->lo) * (size_t)cols;
  } else {
    off = (size_t)h->lo * h->m * (size_t)cols;
    len = (size_t)(h->hi - h->lo) * h->m * (size_t)cols;
  }
  /* a RESULT's tensors are of the result dtype (float32 on the BF16 wire) */
  copy_elems(dst + off, src, len, h->op == TEMPO_OP_RESULT && h->dtype == TEMPO_DTYPE_BF16 ? TEMPO_DTYPE_F32 : h->dtype);
}

tempo_status tempo_trail_load_step(const char *dir, int step, tempo_trail_step *out) {
  memset(out, 0, sizeof *out);
  if (!dir || step < 0) return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "trail: no folder or bad step");
  char path[4096];
  if (snprintf(path, sizeof path, "%s/%s", dir, TEMPO_AUDIT_FILE) >= (int)sizeof path)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "trail: path too long");
  tempo_audit_reader *r = NULL;
  tempo_status st = tempo_audit_open(path, &r);
  if (st) return st;
  task_ref *tasks = NULL;
  size_t ntask = 0, captask = 0;
  int cur_step = 0;
  bool after_release = false, seen_forward = false;
  int cur = -1; /* product receiving blocks */
  for (;;) {
    tempo_audit_record rec;
    bool end = false;
    if ((st = tempo_audit_next(r, &rec, &end))) goto fail;
    if (end) break;
    const tempo_msg_header *h = &rec.header;
    if (rec.direction == TEMPO_AUDIT_UP && h->op == TEMPO_OP_RELEASE) {
      after_release = true;
      continue;
    }
    if (rec.direction == TEMPO_AUDIT_UP && h->op == TEMPO_OP_FORWARD) {
      if (after_release && seen_forward) cur_step++;
      after_release = false;
      seen_forward = true;
      if (cur_step > step) break;
      if (cur_step != step || !(h->flags & TEMPO_MSG_F_KEEP)) continue;
      tempo_trail_product *p = cur >= 0 ? &out->prods[cur] : NULL;
      bool same = p && (uint32_t)p->batch == h->batch && (uint32_t)p->m == h->m && (uint32_t)p->n == h->n &&
                  (uint32_t)p->p == h->p && h->lo > 0;
      if (!same) {
        if ((st = grow_prods(out))) goto fail;
        cur = out->n++;
        p = &out->prods[cur];
        p->batch = (int)h->batch;
        p->m = (int)h->m;
        p->n = (int)h->n;
        p->p = (int)h->p;
        p->w_trans = (h->flags & TEMPO_MSG_F_W_TRANS) != 0;
        p->x = alloc3(p->batch, p->m, p->n);
        p->w = alloc3(p->batch, p->n, p->p);
        p->y = alloc3(p->batch, p->m, p->p);
        if (!p->x || !p->w || !p->y) {
          st = tempo_set_error(TEMPO_STATUS_NO_MEMORY, "trail: out of memory for a product");
          goto fail;
        }
      }
      tempo_msg_sizes sz;
      tempo_msg_split_sizes(h, &sz);
      const uint8_t *pl = rec.payload;
      if (h->flags & TEMPO_MSG_F_X_INLINE) {
        put_split(p->x, h, p->n, pl);
        p->x_rows += h->hi - h->lo;
        pl += sz.x * tempo_msg_dtype_size(h->dtype);
      }
      if (h->flags & TEMPO_MSG_F_W_INLINE) {
        if (h->batch == 1) copy_elems(p->w, pl, sz.w, h->dtype);
        else copy_elems(p->w + (size_t)h->lo * h->n * h->p, pl, sz.w, h->dtype);
      }
      if (ntask == captask) {
        size_t nc = captask ? 2 * captask : 256;
        task_ref *nt = realloc(tasks, nc * sizeof *nt);
        if (!nt) {
          st = tempo_set_error(TEMPO_STATUS_NO_MEMORY, "trail: out of memory");
          goto fail;
        }
        tasks = nt;
        captask = nc;
      }
      tasks[ntask++] = (task_ref){h->task_id, h->handle_x, cur};
      continue;
    }
    if (rec.direction == TEMPO_AUDIT_UP && h->op == TEMPO_OP_BACKWARD && cur_step == step && h->handle_x) {
      for (size_t i = ntask; i-- > 0;) { /* dY* comes first; its block kept X' under handle_x */
        if (tasks[i].handle != h->handle_x) continue;
        tempo_trail_product *p = &out->prods[tasks[i].prod];
        if ((uint32_t)p->m != h->m || (uint32_t)p->p != h->p || (uint32_t)p->batch != h->batch) break;
        if (!p->dy && !(p->dy = alloc3(p->batch, p->m, p->p))) {
          st = tempo_set_error(TEMPO_STATUS_NO_MEMORY, "trail: out of memory for dY*");
          goto fail;
        }
        put_split(p->dy, h, p->p, rec.payload);
        p->dy_rows += h->hi - h->lo;
        break;
      }
      continue;
    }
    if (rec.direction == TEMPO_AUDIT_DOWN && h->op == TEMPO_OP_RESULT &&
        !(h->flags & (TEMPO_MSG_F_WANT_DX | TEMPO_MSG_F_WANT_DW))) {
      for (size_t i = ntask; i-- > 0;) {
        if (tasks[i].task != h->task_id) continue;
        tempo_trail_product *p = &out->prods[tasks[i].prod];
        if ((uint32_t)p->m != h->m || (uint32_t)p->p != h->p || (uint32_t)p->batch != h->batch) break;
        put_split(p->y, h, p->p, rec.payload);
        p->y_rows += h->hi - h->lo;
        break;
      }
    }
  }
  tempo_audit_close(r);
  free(tasks);
  if (out->n == 0) {
    tempo_trail_step_free(out);
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "trail: %s holds no training step %d", path, step);
  }
  for (int i = 0; i < out->n; i++) { /* what the trail did not fully hold is unknown */
    tempo_trail_product *p = &out->prods[i];
    uint32_t full = p->batch == 1 ? (uint32_t)p->m : (uint32_t)p->batch;
    if (p->x_rows < full) {
      tempo_free_floats(p->x);
      p->x = NULL;
    }
    if (p->y_rows < full) {
      tempo_free_floats(p->y);
      p->y = NULL;
    }
    if (p->dy_rows != full) { /* missing, or re-sent blocks */
      tempo_free_floats(p->dy);
      p->dy = NULL;
    }
  }
  return TEMPO_STATUS_OK;
fail:
  tempo_audit_close(r);
  free(tasks);
  tempo_trail_step_free(out);
  return st;
}
