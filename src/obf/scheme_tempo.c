/* scheme_tempo.c - the plain and tempo schemes of the offload engine (offload/scheme.h).
 *
 * One share per product; the operands travel in float32 or (--wire bf16) bfloat16, rounded by
 * the Enc passes as they write (pass16.c), and the results come back in float32. Tempo blinds X and W with a fresh key per
 * instance (obf.h) and encodes dY under the key-shift, so the workers reuse X' and W' for
 * the backward products; plain keeps identity keys, so Enc and Dec are copies (the same
 * messages, unblinded: an insecure upper bound for speed). Results of whole instances are
 * decrypted straight from the reply; a row-split product's blocks are gathered by the
 * engine and decrypted once after the round. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "obf/obf_internal.h"
#include "offload/scheme.h"
#include "tempo/bf16.h"
#include "tempo/common.h"

#define R_MAX TEMPO_OBF_ENC_X_MAX_DOTS /* check rounds the fused forward check handles */

typedef struct {
  tempo_scheme base;
  bool blind; /* tempo: fresh keys; plain: identity keys */
  float *vwork;
  size_t cap_vwork; /* bytes, like every cap_ below (tempo_grow_buffer) */
  /* the fused forward check's scratch: v o v (p), W'v and its bound weights g (n, obf.h) as
   * floats and doubles per round, and the pass's column-moved copies of them (2 R n doubles) */
  float *vabs, *w, *wb;
  double *wd, *wbd, *wu;
  double *gh; /* the dW' check's r^T dW', its sum of squares, (X'r)^T dY* and its bound (4 p) */
  double *dxs; /* the dX' check's vectors and sums: R (n + 2 rows) doubles, then R (2 n + 2 p) floats */
  double *dws; /* the dW' check's weights: r, r o r (n), the rows' (hi - lo) */
  size_t cap_dws, cap_p, cap_w, cap_wb, cap_wd, cap_wbd, cap_wu, cap_gh, cap_dxs;
  bool bf16;  /* the 16-bit wire: operands in bfloat16 (the *16 buffers of tempo_state) */
  float *work16; /* the 16-bit Enc passes' scratch (tempo_obf_enc16_work) */
  float *dxc;    /* dX taken by rows: a chunk of decoded rows */
  uint32_t *ramp; /* and the chunk's row maps (2 m: reply row to chunk row, back) */
  size_t cap_dxc, cap_ramp;
  float *wide[2]; /* a check's bfloat16 operands A, B widened (checks after arrival), or rows of dY* */
  size_t cap_work16, cap_wide[2];
} tempo_sc;

typedef struct {
  float *xp, *wp, *dys; /* X' (batch, m, n), W' (batch, n, p) or (batch, p, n), dY* (batch, m, p) */
  size_t cap_x, cap_w, cap_dy;
  /* the forward check of every instance and round, formed while X' was written:
   * v (batch, R, p), max|v| (batch, R), X'(W'v) and (X' o X') g (batch, R, m) */
  float *fv, *fvmax;
  double *fy2, *fyb;
  size_t cap_fv, cap_fvmax, cap_fy2, cap_fyb;
  /* a training forward's dW' checks: left vectors r (batch, R, n), max|r| (batch, R), X'r and
   * (X' o X')(r o r) (batch, R, m), formed in the same X' pass */
  float *fr, *frmax;
  double *fu, *fub;
  size_t cap_fr, cap_frmax, cap_fu, cap_fub;
  /* the 16-bit wire: X', W', dY* in bfloat16 (as xp, wp, dys), and W' rounded, as floats (the checks) */
  uint16_t *xp16, *wp16, *dys16;
  float *wpf;
  size_t cap_x16, cap_w16, cap_dy16, cap_wpf;
  /* a backward's dX taken by rows (pr->dXs): rows [0, dx_done) of dX' are added to the sink
   * (the engine adds the blocks in row order), so a recomputed block adds only the rest; reset
   * by prepare */
  int dx_done;
} tempo_state;

/* What the check's bound assumes (obf.h): the checked worker's declared precision, and a
 * permuted inner index for blinded products. */
static tempo_verify_model model_of(const tempo_scheme *base, bool identity) {
  return (tempo_verify_model){.precision = (tempo_precision)base->precision, .permuted = !identity};
}

/* n floats / n doubles in *buf (tempo_grow_buffer). */
static tempo_status grow(float **buf, size_t *cap, size_t n) { return tempo_grow_buffer(buf, cap, n * sizeof(float)); }
static tempo_status grow_d(double **buf, size_t *cap, size_t n) { return tempo_grow_buffer(buf, cap, n * sizeof(double)); }
static tempo_status grow_h(uint16_t **buf, size_t *cap, size_t n) { return tempo_grow_buffer(buf, cap, n * sizeof(uint16_t)); }

/* W' as floats for the checks: the blinded W' itself, or its rounded copy on the 16-bit wire. */
static const float *w_floats(const tempo_sc *sc, const tempo_state *s) { return sc->bf16 ? s->wpf : s->wp; }

/* n floats of a wire operand: A itself (float32), or widened into slot `slot` (bfloat16);
 * NULL when out of memory. */
static const float *widen(tempo_sc *sc, int slot, const void *a, size_t n) {
  if (!sc->bf16) return a;
  if (tempo_grow_buffer(&sc->wide[slot], &sc->cap_wide[slot], n * sizeof(float))) return NULL;
  tempo_bf16_unpack(a, sc->wide[slot], n);
  return sc->wide[slot];
}

static void site_free(void *state) {
  tempo_state *s = state;
  if (!s) return;
  tempo_free_floats(s->xp);
  tempo_free_floats(s->wp);
  tempo_free_floats(s->dys);
  tempo_free_floats(s->fv);
  tempo_free_floats(s->fvmax);
  tempo_free_floats((float *)s->fy2);
  tempo_free_floats((float *)s->fyb);
  tempo_free_floats(s->fr);
  tempo_free_floats(s->frmax);
  tempo_free_floats((float *)s->fu);
  tempo_free_floats((float *)s->fub);
  tempo_free_floats((float *)s->xp16), tempo_free_floats((float *)s->wp16), tempo_free_floats((float *)s->dys16);
  tempo_free_floats(s->wpf);
  free(s);
}

/* Room for the fused forward check of shape sh. */
static tempo_status prepare_fused(tempo_sc *sc, tempo_state *s, const tempo_mm_shape *sh) {
  const size_t R = (size_t)sc->base.verify_rounds, B = (size_t)sh->batch;
  tempo_status st;
  const size_t np = (size_t)(sh->n > sh->p ? sh->n : sh->p);
  const size_t nn = 2 * R * (size_t)sh->n; /* forward vectors, then the dW' left vectors */
  if ((st = grow(&s->fv, &s->cap_fv, B * R * (size_t)sh->p)) || (st = grow(&sc->vabs, &sc->cap_p, np)) ||
      (st = grow(&s->fr, &s->cap_fr, B * R * (size_t)sh->n)) || (st = grow(&s->frmax, &s->cap_frmax, B * R)) ||
      (st = grow(&s->fvmax, &s->cap_fvmax, B * R)) || (st = grow_d(&sc->gh, &sc->cap_gh, 4 * (size_t)sh->p)) ||
      (st = grow_d(&s->fu, &s->cap_fu, B * R * (size_t)sh->m)) || (st = grow_d(&s->fub, &s->cap_fub, B * R * (size_t)sh->m)) ||
      (st = grow_d(&s->fy2, &s->cap_fy2, B * R * (size_t)sh->m)) ||
      (st = grow_d(&s->fyb, &s->cap_fyb, B * R * (size_t)sh->m)) || (st = grow(&sc->w, &sc->cap_w, nn)) ||
      (st = grow(&sc->wb, &sc->cap_wb, nn)) || (st = grow_d(&sc->wd, &sc->cap_wd, nn)) ||
      (st = grow_d(&sc->wbd, &sc->cap_wbd, nn)) || (st = grow_d(&sc->wu, &sc->cap_wu, 2 * nn)))
    return st;
  return TEMPO_STATUS_OK;
}

static tempo_status prepare(tempo_scheme *base, void **state, const tempo_mm_shape *sh, bool backward) {
  tempo_sc *sc = (tempo_sc *)base;
  if (!*state && !(*state = calloc(1, sizeof(tempo_state))))
    return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "engine: out of memory");
  tempo_state *s = *state;
  size_t x, w, y; /* the engine checked that these products fit */
  x = (size_t)sh->batch * sh->m * sh->n, w = (size_t)sh->batch * sh->n * sh->p, y = (size_t)sh->batch * sh->m * sh->p;
  tempo_status st;
  if (sc->bf16) { /* the wire's operands in bfloat16, W' also as floats, and the passes' scratch */
    const size_t work = tempo_obf_enc16_work(sh->n, sh->p);
    if ((st = tempo_grow_buffer(&sc->work16, &sc->cap_work16, work * sizeof(float)))) return st;
    if (backward) s->dx_done = 0;
    if (backward) return grow_h(&s->dys16, &s->cap_dy16, y);
    if ((st = grow_h(&s->xp16, &s->cap_x16, x)) || (st = grow_h(&s->wp16, &s->cap_w16, w)) ||
        (st = grow(&s->wpf, &s->cap_wpf, w)))
      return st;
  } else {
    if (backward) s->dx_done = 0;
    if (backward) return grow(&s->dys, &s->cap_dy, y);
    if ((st = grow(&s->xp, &s->cap_x, x)) || (st = grow(&s->wp, &s->cap_w, w))) return st;
  }
  if (base->fused_forward && sh->batch == 1 && (st = prepare_fused(sc, s, sh))) return st;
  return grow(&sc->vwork, &sc->cap_vwork, 3 * ((size_t)sh->m + sh->n + sh->p) + 64);
}

/* Instance i's X' with its forward checks: for each round, a fresh vector v (p) from the
 * verification stream (weighted by the result columns' inverse key scales, as the engine's
 * own check does), W'v and the bound weights g from the just-written W' (small), and X'(W'v),
 * (X' o X') g formed in the X' pass itself (tempo_obf_enc_x_check; the bound counts its
 * unrounded X'): the check then reads only Y' when the result comes back. */
static void encode_x_checked(tempo_sc *sc, tempo_state *s, const tempo_product *pr, int i) {
  const tempo_mm_shape *sh = pr->sh;
  const tempo_obf_key *k = &pr->keys[i];
  const int R = sc->base.verify_rounds, n = sh->n, p = sh->p, m = sh->m;
  const double *wd[2 * R_MAX], *wbd[2 * R_MAX];
  double *y2[2 * R_MAX], *yb[2 * R_MAX];
  /* a training forward: also each round's left vector r (n) for the dW' check, r and r o r as
   * the pass's weights, X'r and (X' o X')(r o r) its dots R.. 2R-1 */
  const int nd = pr->training ? 2 * R : R;
  for (int q = R; q < nd; q++) {
    uint64_t seed;
    tempo_keygen_bytes(sc->base.vg, &seed, sizeof seed);
    const size_t f = (size_t)i * R + (q - R);
    float *r = s->fr + f * n;
    s->frmax[f] = tempo_verify_vector(seed, q - R, n, k->identity ? NULL : k->dn.rcoef_p, r, sc->vabs);
    double *a = sc->wd + (size_t)q * n, *b = sc->wbd + (size_t)q * n;
    for (int j = 0; j < n; j++) a[j] = r[j], b[j] = sc->vabs[j];
    wd[q] = a, wbd[q] = b;
    y2[q] = s->fu + f * m, yb[q] = s->fub + f * m;
  }
  for (int q = 0; q < R; q++) {
    uint64_t seed;
    tempo_keygen_bytes(sc->base.vg, &seed, sizeof seed);
    float *v = s->fv + ((size_t)i * R + q) * p, *w = sc->w + (size_t)q * n, *wb = sc->wb + (size_t)q * n;
    s->fvmax[(size_t)i * R + q] = tempo_verify_vector(seed, q, p, k->identity ? NULL : k->dp.rcoef_p, v, sc->vabs);
    /* op(W') (n, p): W' stored (n, p), or (p, n) with w_trans */
    const tempo_verify_model md = model_of(&sc->base, k->identity);
    tempo_verify_matvec(n, p, w_floats(sc, s) + (size_t)i * n * p, sh->w_trans, v, sc->vabs, &md, w, wb);
    double *a = sc->wd + (size_t)q * n, *b = sc->wbd + (size_t)q * n;
    for (int j = 0; j < n; j++) a[j] = w[j], b[j] = wb[j];
    wd[q] = a, wbd[q] = b;
    y2[q] = s->fy2 + ((size_t)i * R + q) * m, yb[q] = s->fyb + ((size_t)i * R + q) * m;
  }
  if (pr->Xr && sc->bf16) /* batch 1: gathered row by row, never materialised */
    tempo_obf_enc_x16_check_rows(k, pr->Xr, s->xp16, nd, wd, wbd, y2, yb, sc->work16);
  else if (pr->Xr)
    tempo_obf_enc_x_check_rows(k, pr->Xr, s->xp, nd, wd, wbd, y2, yb, sc->wu);
  else if (sc->bf16)
    tempo_obf_enc_x16_check(k, pr->X + (size_t)i * m * n, s->xp16 + (size_t)i * m * n, nd, wd, wbd, y2, yb, sc->work16);
  else
    tempo_obf_enc_x_check(k, pr->X + (size_t)i * m * n, s->xp + (size_t)i * m * n, nd, wd, wbd, y2, yb, sc->wu);
}

static tempo_status encode(tempo_scheme *base, void *state, const tempo_product *pr, int lo, int hi) {
  tempo_sc *sc = (tempo_sc *)base;
  tempo_state *s = state;
  const tempo_mm_shape *sh = pr->sh;
  const size_t xs = (size_t)sh->m * sh->n, ws = (size_t)sh->n * sh->p, ys = (size_t)sh->m * sh->p;
  tempo_status st;
  /* each Enc pass reads the plaintext and writes the blinded copy (the 16-bit wire: in 2 bytes;
   * W' also as floats); X given by rows is read from its source tensor (its bytes), no column
   * matrix */
  const uint64_t out_b = sc->bf16 ? sizeof(uint16_t) : sizeof(float);
  if (pr->Xr && !pr->backward)
    base->bytes += out_b * (uint64_t)xs + sizeof(float) * (uint64_t)(2 * ws) + pr->Xr->bytes +
                   (sc->bf16 ? 2 * sizeof(float) * (uint64_t)ws : 0);
  else
    base->bytes += (sizeof(float) + out_b) * (uint64_t)(hi - lo) * (pr->backward ? ys : xs + ws) +
                   (sc->bf16 && !pr->backward ? 2 * sizeof(float) * (uint64_t)(hi - lo) * ws : 0);
  for (int i = lo; i < hi; i++) {
    tempo_obf_key *k = &pr->keys[i];
    if (pr->backward) {
      if (sc->bf16)
        tempo_obf_enc_dy16(k, pr->dY + i * ys, s->dys16 + i * ys, sc->work16);
      else
        tempo_obf_enc_dy(k, pr->dY + i * ys, s->dys + i * ys);
      continue;
    }
    if (sc->blind && (st = tempo_keygen_fill(base->kg, k))) return st;
    if (sc->blind && pr->mixed && (st = tempo_keygen_fill_mix(base->kg, k, TEMPO_SCHEME_MIX_BLOCK))) return st;
    if (sc->bf16)
      tempo_obf_enc_w16(k, sh->w_trans, pr->W + i * ws, s->wp16 + i * ws, s->wpf + i * ws);
    else
      tempo_obf_enc_w(k, sh->w_trans, pr->W + i * ws, s->wp + i * ws);
    if (base->fused_forward && sh->batch == 1) {
      encode_x_checked(sc, s, pr, i);
    } else if (pr->Xr && sc->bf16) {
      tempo_obf_enc_x16_rows(k, pr->Xr, s->xp16, sc->work16);
    } else if (pr->Xr) {
      tempo_obf_enc_x_rows(k, pr->Xr, s->xp);
    } else if (sc->bf16) {
      tempo_obf_enc_x16(k, pr->X + i * xs, s->xp16 + i * xs, sc->work16);
    } else {
      tempo_obf_enc_x(k, pr->X + i * xs, s->xp + i * xs);
    }
  }
  return TEMPO_STATUS_OK;
}

static const void *operand(const void *state, int share, int which) {
  const tempo_state *s = state;
  (void)share;
  if (s->xp16 || s->dys16) /* the 16-bit wire (a site's buffers are of one wire) */
    return which == TEMPO_OPERAND_X ? (const void *)s->xp16 : which == TEMPO_OPERAND_W ? (const void *)s->wp16 : s->dys16;
  return which == TEMPO_OPERAND_X ? s->xp : which == TEMPO_OPERAND_W ? s->wp : s->dys;
}

static bool check(tempo_scheme *base, int r, int k, int c, const void *A, bool at, const void *B, bool bt,
                  const void *C, const float *cw, uint64_t seed) {
  tempo_sc *sc = (tempo_sc *)base;
  const uint64_t z = sc->bf16 ? sizeof(uint16_t) : sizeof(float); /* the operands' (results: float32) */
  base->bytes += z * ((uint64_t)r * k + (uint64_t)k * c) + sizeof(float) * (uint64_t)r * c; /* A, B, C read once */
  /* the 16-bit wire: the exact bfloat16 values widened (and written and read again: these are
   * the checks after arrival, of batched instances and accumulated dX') */
  if (sc->bf16) base->bytes += 2 * sizeof(float) * ((uint64_t)r * k + (uint64_t)k * c);
  const float *a = widen(sc, 0, A, (size_t)r * k), *b = widen(sc, 1, B, (size_t)k * c);
  if (!a || !b) return false; /* out of memory: a failed check, recomputed */
  const tempo_verify_model md = model_of(base, cw == NULL); /* weights exactly for blinded products */
  tempo_verify_set_class(TEMPO_VCLASS_OTHER);
  return tempo_verify_product_model(r, k, c, a, at, b, bt, C, cw, &md, base->verify_rounds, seed, sc->vwork) ==
         TEMPO_STATUS_OK;
}

/* Decrypts instances [lo, hi) of Y' or dX' (y_or_dx) and dW' (each NULL = absent or
 * already decoded) into pr's outputs; returns the bytes read and written. */
static uint64_t decode(const tempo_product *pr, int lo, int hi, const float *y_or_dx, const float *dw) {
  const tempo_mm_shape *sh = pr->sh;
  const size_t xs = (size_t)sh->m * sh->n, ws = (size_t)sh->n * sh->p, ys = (size_t)sh->m * sh->p;
  const uint64_t n = (uint64_t)(hi - lo), f = sizeof(float);
  const bool dx = pr->backward && pr->dX && y_or_dx, dwo = pr->backward && pr->dW && dw;
  const uint64_t bytes = !pr->backward ? (y_or_dx ? 2 * f * n * ys : 0)
                                       : (dx ? (pr->accum & TEMPO_MM_ACCUM_DX ? 3 : 2) * f * n * xs : 0) +
                                             (dwo ? (pr->accum & TEMPO_MM_ACCUM_DW ? 3 : 2) * f * n * ws : 0);
  for (int i = lo; i < hi; i++) {
    const tempo_obf_key *k = &pr->keys[i];
    const size_t j = (size_t)(i - lo);
    if (!pr->backward) {
      if (y_or_dx) tempo_obf_dec_y(k, y_or_dx + j * ys, pr->Y + i * ys);
      continue;
    }
    if (dx) tempo_obf_dec_dx(k, y_or_dx + j * xs, pr->dX + i * xs, pr->accum & TEMPO_MM_ACCUM_DX);
    if (dwo) tempo_obf_dec_dw(k, sh->w_trans, dw + j * ws, pr->dW + i * ws, pr->accum & TEMPO_MM_ACCUM_DW);
  }
  return bytes;
}

/* Rows [lo, hi) of a batch-1 product's Y' or dX', straight from the reply. */
static void take_rows(tempo_scheme *sc, const tempo_product *pr, int lo, int hi, const void *y_or_dx) {
  const tempo_mm_shape *sh = pr->sh;
  const uint64_t f = sizeof(float), rows = (uint64_t)(hi - lo);
  if (!pr->backward) {
    tempo_obf_dec_y_rows(&pr->keys[0], y_or_dx, lo, hi, pr->Y);
    sc->bytes += 2 * f * rows * (uint64_t)sh->p;
  } else if (pr->dX) {
    const bool acc = pr->accum & TEMPO_MM_ACCUM_DX;
    tempo_obf_dec_dx_rows(&pr->keys[0], y_or_dx, lo, hi, pr->dX, acc);
    sc->bytes += (acc ? 3 : 2) * f * rows * (uint64_t)sh->n;
  }
}

static void take_instances(tempo_scheme *sc, const tempo_product *pr, int lo, int hi, const void *y_or_dx,
                           const void *dw) {
  sc->bytes += decode(pr, lo, hi, y_or_dx, dw);
}

static int finish(tempo_scheme *sc, const void *state, const tempo_product *pr, const void *const *res,
                  const void *const *dw) {
  sc->bytes += decode(pr, 0, pr->sh->batch, res[0], dw[0]);
  return -1; /* its checks all ran on arrival */
}

/* Rows [lo, hi) of a batch-1 forward's Y' against the checks encode formed. */
static bool check_forward(tempo_scheme *base, const void *state, const tempo_product *pr, int lo, int hi,
                          const void *y) {
  tempo_sc *sc = (tempo_sc *)base;
  const tempo_state *s = state;
  const int R = base->verify_rounds, m = pr->sh->m, n = pr->sh->n, p = pr->sh->p;
  const tempo_verify_model md = model_of(base, pr->keys[0].identity);
  tempo_verify_set_class(TEMPO_VCLASS_FORWARD);
  base->bytes += sizeof(float) * (uint64_t)(hi - lo) * p; /* Y' read once */
  for (int q = 0; q < R; q++) {
    const float *v = s->fv + (size_t)q * p;
    float *vsq = sc->vabs; /* v o v as tempo_verify_vector rounds it (np >= p floats) */
    for (int j = 0; j < p; j++) vsq[j] = (float)((double)v[j] * (double)v[j] * (1.0 + 0x1p-23));
    if (tempo_verify_rows(hi - lo, n, p, y, v, vsq, s->fvmax[q], s->fy2 + (size_t)q * m + lo, s->fyb + (size_t)q * m + lo,
                          &md, lo, m, q))
      return false;
  }
  return true;
}

/* dW' from rows [lo, hi): r^T dW' (dW' (n, p)), or dW'_stored r with w_trans ((p, n)),
 * against (X'r)^T dY* over those rows, with the left vectors, X'r and (X' o X')(r o r) the
 * training forward formed; the bound's sums of squares (obf.h, tempo_verify_left) from the
 * same reads of dW' and dY*. */
static bool check_dw(tempo_scheme *base, const void *state, const tempo_product *pr, int lo, int hi,
                     const void *dwp) {
  tempo_sc *sc = (tempo_sc *)base;
  const tempo_state *s = state;
  const tempo_mm_shape *sh = pr->sh;
  const int R = base->verify_rounds, m = sh->m, n = sh->n, p = sh->p;
  const float *dw = dwp;
  double *g = sc->gh, *g2 = g + p, *h = g2 + p, *hg = h + p;
  const tempo_verify_model md = model_of(base, pr->keys[0].identity);
  const int parts = base->dw_parts > 1 ? base->dw_parts : 1; /* chain partials in the sum (engine) */
  const double rho = tempo_verify_left_rho(&md, hi - lo, parts);
  tempo_verify_set_class(lo == 0 && hi == m ? TEMPO_VCLASS_DW_SUM : TEMPO_VCLASS_DW);
  base->bytes += sizeof(float) * (uint64_t)R * ((uint64_t)n * p + (uint64_t)(hi - lo) * p); /* dW' and dY* rows */
  const int rows = hi - lo;
  /* per round: r and r o r as doubles (n), then the rows' weights ub_i + rho u_i^2 */
  if (grow_d(&sc->dws, &sc->cap_dws, 2 * (size_t)n + (size_t)rows)) return false; /* out of memory: recomputed */
  double *rd = sc->dws, *r2 = rd + n, *gw = r2 + n;
  enum { DW_ROWS = 64 }; /* bfloat16 dY* widened this many rows at a time (in cache) */
  for (int q = 0; q < R; q++) {
    const size_t f = (size_t)q;
    const float *r = s->fr + f * n;
    const double *u = s->fu + f * m, *ub = s->fub + f * m;
    for (int j = 0; j < n; j++) rd[j] = r[j], r2[j] = (double)r[j] * r[j];
    for (int i = 0; i < rows; i++) gw[i] = ub[lo + i] + rho * u[lo + i] * u[lo + i];
    for (int k = 0; k < p; k++) g[k] = g2[k] = h[k] = hg[k] = 0;
    /* r^T dW' (dW' (n, p)) or dW'_stored r ((p, n)), with sum_j (r_j dW'_jk)^2 */
    if (sh->w_trans)
      tempo_verify_rows_d(p, n, dw, (size_t)n, rd, r2, g, g2);
    else
      tempo_verify_cols_acc(n, p, dw, (size_t)p, rd, r2, g, g2);
    /* (X'r)^T dY* over the rows, with its bound's sum */
    for (int r0 = 0; r0 < rows; r0 += sc->bf16 ? DW_ROWS : rows) {
      const int nr = !sc->bf16 || rows - r0 < DW_ROWS ? rows - r0 : DW_ROWS;
      const float *b = sc->bf16 ? widen(sc, 0, s->dys16 + (size_t)(lo + r0) * p, (size_t)nr * p) : s->dys + (size_t)lo * p;
      if (!b) return false;
      tempo_verify_cols_acc(nr, p, b, (size_t)p, u + lo + r0, gw + r0, h, hg);
    }
    if (tempo_verify_left(hi - lo, parts, n, p, g, g2, h, hg, s->frmax[f], &md, q)) return false;
  }
  return true;
}

/* The dX' check's second half for rows [a0, a1) of block [lo, hi): dY* w of those rows (bfloat16
 * dY* widened DX_ROWS rows at a time, in cache) against the dX'v formed in their decryption
 * (y1q, y1bq index rows from lo). */
static bool dx_rows_pass(tempo_sc *sc, const tempo_state *s, const tempo_product *pr, int lo, int a0, int a1,
                         const float *w, const float *wb, double *const *y1q, double *const *y1bq, const float *vmax,
                         const tempo_verify_model *md) {
  const int R = sc->base.verify_rounds, m = pr->sh->m, n = pr->sh->n, p = pr->sh->p, rows = a1 - a0;
  enum { DX_ROWS = 64 };
  for (int r0 = 0; r0 < rows; r0 += sc->bf16 ? DX_ROWS : rows) {
    const int nr = !sc->bf16 || rows - r0 < DX_ROWS ? rows - r0 : DX_ROWS;
    const float *a = sc->bf16 ? widen(sc, 0, s->dys16 + (size_t)(a0 + r0) * p, (size_t)nr * p) : s->dys + (size_t)a0 * p;
    if (!a) return false;
    for (int q = 0; q < R; q++)
      if (tempo_verify_rows_a(nr, p, n, a, w + (size_t)q * p, wb + (size_t)q * p, y1q[q] + (a0 - lo) + r0,
                              y1bq[q] + (a0 - lo) + r0, vmax[q], md, a0 + r0, m, q))
        return false;
  }
  return true;
}

/* Rows per chunk of a dX taken by rows: about DXS_BYTES of decoded floats, in L2 until added. */
#define DXS_BYTES (256u << 10)

/* check_take_dx with pr->dXs: the block's rows from where an earlier reply to it stopped, a
 * chunk at a time: decoded (with the check's dots) into scratch in reply order, checked, then
 * added to the sink at their plaintext rows; false at the first chunk that fails (the chunks
 * before it stay added, scheme.h). Blocks come in row order, so what is added is rows
 * [0, dx_done): a block starts there (a block already added adds nothing). */
static bool take_dx_sunk(tempo_sc *sc, tempo_state *s, const tempo_product *pr, int lo, int hi, const float *dxp,
                         const double *const *vq, const float *const *vabsq, double *const *y1q, double *const *y1bq,
                         const float *w, const float *wb, const float *vmax, const tempo_verify_model *md) {
  const tempo_mm_shape *sh = pr->sh;
  const int R = sc->base.verify_rounds, m = sh->m, n = sh->n, p = sh->p;
  TEMPO_ASSERT(s->dx_done >= lo); /* the engine's order: every block before this one added */
  const size_t cr = DXS_BYTES / (sizeof(float) * (size_t)n);
  const int ch = cr < 16 ? 16 : cr > 1024 ? 1024 : (int)cr / 8 * 8; /* whole mixing blocks (obf.h) */
  if (tempo_grow_buffer(&sc->dxc, &sc->cap_dxc, ((size_t)ch * n + 4) * sizeof(float)) ||
      tempo_grow_buffer((float **)&sc->ramp, &sc->cap_ramp, 2 * (size_t)m * sizeof(uint32_t) + 64))
    return false; /* out of memory: a failed check, recomputed */
  /* the key with its rows mapped into the chunk (perm: reply row a to chunk row a - a0, inv
   * back), through the general pass: an identity key's arrays are the identity's (unit scales,
   * the same floats: copies; a wipe leaves identity keys as they are, obf.h). The chunk is 16 bytes off a 64-byte line: the passes' streamed
   * stores need aligned rows, so it is written through the caches and read back from them. */
  tempo_obf_key kk = pr->keys[0];
  kk.identity = false;
  kk.dm.perm = sc->ramp, kk.dm.inv = sc->ramp + m;
  float *chunk = sc->dxc + 4;
  const uint32_t *perm = pr->keys[0].dm.perm;
  double *y1c[R_MAX], *y1bc[R_MAX];
  for (int a0 = s->dx_done > lo ? s->dx_done : lo; a0 < hi; a0 += ch) {
    const int a1 = hi - a0 < ch ? hi : a0 + ch;
    for (int a = a0; a < a1; a++) sc->ramp[a] = (uint32_t)(a - a0), sc->ramp[m + a - a0] = (uint32_t)a;
    /* the unmixed Dec scales output row i by dm.coef[i]: chunk row a - a0 is plaintext row
     * perm[a], whose scale is coef[perm[a]] = coef_p[a] (the mixed pass reads coef_p itself) */
    kk.dm.coef = pr->keys[0].dm.coef_p + a0;
    for (int q = 0; q < R; q++) y1c[q] = y1q[q] + (a0 - lo), y1bc[q] = y1bq[q] + (a0 - lo);
    tempo_obf_dec_dx_rows_dots(&kk, dxp + (size_t)(a0 - lo) * n, a0, a1, chunk, R, vq, vabsq, y1c, y1bc);
    if (!dx_rows_pass(sc, s, pr, lo, a0, a1, w, wb, y1q, y1bq, vmax, md)) return false;
    const tempo_rows_sink *k2 = pr->dXs;
    enum { AHEAD = 4 }; /* rows whose destination lines are fetched ahead (random places) */
    for (int a = a0; a < a1 && a < a0 + AHEAD && k2->prefetch; a++) k2->prefetch(k2->ctx, (int)perm[a]);
    for (int a = a0; a < a1; a++) {
      if (k2->prefetch && a + AHEAD < a1) k2->prefetch(k2->ctx, (int)perm[a + AHEAD]);
      k2->add(k2->ctx, (int)perm[a], chunk + (size_t)(a - a0) * n);
    }
    s->dx_done = a1;
  }
  const uint64_t rows = (uint64_t)(hi - lo);
  sc->base.bytes += sizeof(float) * rows * ((uint64_t)n + (uint64_t)R * p) + pr->dXs->bytes * rows / (uint64_t)m;
  return true;
}

/* Rows [lo, hi) of a batch-1 backward's dX' (not accumulated): for each round a fresh v (n)
 * weighted by the result columns' inverse key scales, w = W'^T v from the small W', y2 =
 * dY* w from the block's rows of dY*, and dX'v formed while the rows are decrypted
 * (tempo_obf_dec_dx_rows_dots). */
static bool check_take_dx(tempo_scheme *base, const void *state, const tempo_product *pr, int lo, int hi,
                          const void *dxp) {
  tempo_sc *sc = (tempo_sc *)base;
  const tempo_state *s = state;
  const tempo_mm_shape *sh = pr->sh;
  const tempo_obf_key *k = &pr->keys[0];
  const int R = base->verify_rounds, n = sh->n, p = sh->p, rows = hi - lo;
  const size_t nd = (size_t)R * ((size_t)n + 2 * (size_t)rows), nf = (size_t)R * (2 * (size_t)n + 2 * (size_t)p);
  if (grow_d(&sc->dxs, &sc->cap_dxs, nd + (nf + 1) / 2)) return false; /* out of memory: a failed check, recomputed */
  double *vd = sc->dxs, *y1 = vd + (size_t)R * n, *y1b = y1 + (size_t)R * rows;
  float *v = (float *)(sc->dxs + nd), *vabs = v + (size_t)R * n, *w = vabs + (size_t)R * n, *wb = w + (size_t)R * p;
  const tempo_verify_model md = model_of(base, k->identity);
  tempo_verify_set_class(TEMPO_VCLASS_DX);
  const double *vq[R_MAX];
  const float *vabsq[R_MAX];
  double *y1q[R_MAX], *y1bq[R_MAX];
  float vmax[R_MAX];
  for (int q = 0; q < R; q++) {
    uint64_t seed;
    tempo_keygen_bytes(base->vg, &seed, sizeof seed);
    float *vv = v + (size_t)q * n, *va = vabs + (size_t)q * n;
    vmax[q] = tempo_verify_vector(seed, q, n, k->identity ? NULL : k->dn.coef_p, vv, va);
    for (int j = 0; j < n; j++) vd[(size_t)q * n + j] = vv[j];
    /* op(W') = W'^T (p, n): W' stored (n, p), or (p, n) with w_trans */
    tempo_verify_matvec(p, n, w_floats(sc, s), !sh->w_trans, vv, va, &md, w + (size_t)q * p, wb + (size_t)q * p);
    vq[q] = vd + (size_t)q * n, vabsq[q] = va, y1q[q] = y1 + (size_t)q * rows, y1bq[q] = y1b + (size_t)q * rows;
  }
  if (pr->dXs) /* the scheme's own state: the rows already added */
    return take_dx_sunk(sc, (tempo_state *)s, pr, lo, hi, dxp, vq, vabsq, y1q, y1bq, w, wb, vmax, &md);
  tempo_obf_dec_dx_rows_dots(k, dxp, lo, hi, pr->dX, R, vq, vabsq, y1q, y1bq);
  base->bytes += sizeof(float) * (uint64_t)rows * (2 * (uint64_t)n + (uint64_t)R * p); /* dX' in, dX out, dY* */
  return dx_rows_pass(sc, s, pr, lo, lo, hi, w, wb, y1q, y1bq, vmax, &md);
}

static void sc_free(tempo_scheme *base) {
  tempo_sc *sc = (tempo_sc *)base;
  tempo_free_floats(sc->vabs), tempo_free_floats(sc->w), tempo_free_floats(sc->wb);
  double *d[] = {sc->wd, sc->wbd, sc->wu, sc->gh, sc->dxs, sc->dws};
  for (size_t i = 0; i < sizeof d / sizeof d[0]; i++) tempo_free_floats((float *)d[i]);
  tempo_free_floats(sc->vwork);
  tempo_free_floats(sc->work16), tempo_free_floats(sc->wide[0]), tempo_free_floats(sc->wide[1]);
  tempo_free_floats(sc->dxc), tempo_free_floats((float *)sc->ramp);
  free(sc);
}

static const tempo_scheme_ops tempo_ops = {
    .site_free = site_free, .prepare = prepare, .encode = encode, .operand = operand, .check = check,
    .take_instances = take_instances, .take_rows = take_rows, .finish = finish, .check_forward = check_forward,
    .check_dw = check_dw, .check_take_dx = check_take_dx, .free = sc_free};

tempo_status tempo_scheme_tempo_create(const tempo_mm_config *cfg, tempo_scheme **out) {
  tempo_sc *sc = calloc(1, sizeof *sc);
  if (!sc) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "engine: out of memory");
  sc->base = (tempo_scheme){.ops = &tempo_ops, .name = "engine", .shares = 1, .min_workers = 1,
                            .dtype = TEMPO_DTYPE_F32, .verify_rounds = cfg->verify_rounds,
                            .can_mix = true /* tempo: mixing blocks in its keys; plain: identity keys */,
                            .x_rows = true};
  sc->blind = cfg->mode == TEMPO_MODE_TEMPO;
  sc->bf16 = cfg->wire == TEMPO_WIRE_BF16;
  if (sc->bf16) sc->base.dtype = TEMPO_DTYPE_BF16;
  /* forward and dW' vectors share the X' pass's R_MAX dots */
  sc->base.fused_forward = cfg->verify_rounds >= 1 && 2 * cfg->verify_rounds <= R_MAX;
  *out = &sc->base;
  return TEMPO_STATUS_OK;
}
