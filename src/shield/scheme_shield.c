/* scheme_shield.c - the shield scheme of the offload engine (offload/scheme.h, shield.h,
 * docs/shield.md): tempo keys plus fresh additive masks, four shares (roles) per product.
 *
 * Forward: X'' = Enc(X + R0), R = Enc(R0), W'' = Enc(W + S0), S = Enc(S0), each pair written
 * in one pass over the plaintext (blind.c); role r gets
 * (X'' or R, W'' or S) as tempo_shield_role_masked_* say, and the signed sum of the four
 * products is Enc(X) Enc(W) = Y' (likewise dY** / T for the backward). Shares are float64
 * by default (masks, Enc, Freivalds and the combine in double, rounded to float32 once,
 * before Dec), or float32 (cfg->shield_f32). The combine adds the four shares in role
 * order, so a result never depends on which reply arrived first. */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "offload/scheme.h"
#include "tempo/common.h"
#include "tempo/shield.h"
#include "fused.h"

#define NR TEMPO_SHIELD_ROLES

typedef struct {
  tempo_scheme base;
  bool f64;
  double alpha;
  float *narrow;    /* one instance's combined share, float32 */
  void *vwork;      /* check vectors (double-sized) */
  size_t cap_narrow, cap_vwork; /* bytes (tempo_grow_buffer) */
} shield_sc;

typedef struct {
  void *xm, *r;   /* X'' and R (batch, m, n) */
  void *wm, *s;   /* W'' and S (batch, n, p) or (batch, p, n) */
  void *dym, *t;  /* dY** and T (batch, m, p) */
  size_t cap_xm, cap_r, cap_wm, cap_s, cap_dym, cap_t; /* bytes */
  tempo_shield_fused fz; /* the checks formed in the passes (batch-1 float64 products, fused.h) */
} shield_state;

static size_t es(const shield_sc *sc) { return sc->f64 ? sizeof(double) : sizeof(float); }
static void *at(void *base, size_t i, size_t z) { return (uint8_t *)base + i * z; }

static void site_free(void *state) {
  shield_state *s = state;
  if (!s) return;
  void *f[] = {s->xm, s->r, s->wm, s->s, s->dym, s->t};
  for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) tempo_free_floats(f[i]);
  tempo_shield_fused_free(&s->fz);
  free(s);
}

static tempo_status prepare(tempo_scheme *base, void **state, const tempo_mm_shape *sh, bool backward) {
  shield_sc *sc = (shield_sc *)base;
  if (!*state && !(*state = calloc(1, sizeof(shield_state))))
    return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "shield: out of memory");
  shield_state *s = *state;
  const size_t z = sizeof(double); /* room for either dtype, so a dtype change never reallocates wrongly */
  const size_t x = (size_t)sh->m * sh->n, w = (size_t)sh->n * sh->p, y = (size_t)sh->m * sh->p, B = (size_t)sh->batch;
  tempo_status st;
  if (backward) {
    /* dX' checked in the combine: batch 1, with the fused state of this shape's forward */
    base->dx_deferred = base->dx_deferred && sh->batch == 1 && s->fz.mem && s->fz.m == sh->m && s->fz.n == sh->n &&
                        s->fz.p == sh->p;
    if ((st = tempo_grow_buffer(&s->dym, &s->cap_dym, B * y * z))) return st;
    return tempo_grow_buffer(&s->t, &s->cap_t, B * y * z);
  }
  size_t one = x > w ? x : w; /* the combine's one instance of Y', dX' or dW' */
  one = one > y ? one : y;
  const size_t need = 3 * ((size_t)sh->m + sh->n + sh->p) + 64; /* check work, doubles */
  if ((st = tempo_grow_buffer(&s->xm, &s->cap_xm, B * x * z)) || (st = tempo_grow_buffer(&s->r, &s->cap_r, B * x * z)) ||
      (st = tempo_grow_buffer(&s->wm, &s->cap_wm, B * w * z)) || (st = tempo_grow_buffer(&s->s, &s->cap_s, B * w * z)) ||
      (st = tempo_grow_buffer(&sc->narrow, &sc->cap_narrow, one * sizeof(float))) ||
      (st = tempo_grow_buffer(&sc->vwork, &sc->cap_vwork, need * z)))
    return st;
  if (base->fused_forward && sh->batch == 1)
    return tempo_shield_fused_prepare(&s->fz, base->verify_rounds, sh->m, sh->n, sh->p);
  return TEMPO_STATUS_OK;
}

/* Masks one plaintext operand instance A (n floats) and blinds both shares in one pass
 * (tempo_shield_blind64/32, blind.c): *masked = Enc(A + R0), *mask = Enc(R0), R0 of scale
 * sigma = alpha rms(A). Masking before Enc (which the pass reproduces) keeps every share's
 * magnitude proportional to the key scale of its row and column, so the combine loses the
 * same relative precision in every element (masking after Enc with one sigma swamps rows
 * with small key scales). */
static void mask_into(shield_sc *sc, const tempo_obf_key *k, int which, bool wt, const float *A, void *mask,
                      void *masked, size_t n, const tempo_shield_rowdots *rd) {
  uint8_t seed[TEMPO_SHIELD_SEED_BYTES];
  tempo_keygen_bytes(sc->base.kg, seed, sizeof seed);
  const double rms = tempo_shield_rms(A, n);
  if (sc->f64) tempo_shield_blind64(k, which, wt, seed, sc->alpha * rms, A, masked, mask, rd);
  else tempo_shield_blind32(k, which, wt, seed, tempo_shield_sigma(sc->alpha, rms), A, masked, mask);
  sodium_memzero(seed, sizeof seed);
}

static tempo_status encode(tempo_scheme *base, void *state, const tempo_product *pr, int lo, int hi) {
  shield_sc *sc = (shield_sc *)base;
  shield_state *s = state;
  const tempo_mm_shape *sh = pr->sh;
  const size_t xs = (size_t)sh->m * sh->n, ws = (size_t)sh->n * sh->p, ys = (size_t)sh->m * sh->p, z = es(sc);
  tempo_status st;
  /* per element: the plaintext read twice (rms, the blinding pass), both shares written */
  base->bytes += (2 * sizeof(float) + 2 * z) * (uint64_t)(hi - lo) * (pr->backward ? ys : xs + ws);
  for (int i = lo; i < hi; i++) {
    tempo_obf_key *k = &pr->keys[i];
    if (pr->backward) {
      tempo_shield_rowdots rd, *rdp = NULL;
      if (base->dx_deferred) { /* the dX' check's vectors and W_s^T x, then its sums in the dY pass */
        uint64_t vseed;
        tempo_keygen_bytes(base->vg, &vseed, sizeof vseed);
        tempo_shield_fused_begin_dx(&s->fz, vseed, s->wm, s->s, sh->w_trans, &rd);
        rdp = &rd;
      }
      mask_into(sc, k, TEMPO_OPERAND_DY, false, pr->dY + i * ys, at(s->t, i * ys, z), at(s->dym, i * ys, z), ys, rdp);
      continue;
    }
    if ((st = tempo_keygen_fill(base->kg, k))) return st;
    void *wm = at(s->wm, i * ws, z), *sm = at(s->s, i * ws, z);
    mask_into(sc, k, TEMPO_OPERAND_W, sh->w_trans, pr->W + i * ws, sm, wm, ws, NULL);
    tempo_shield_rowdots rd, *rdp = NULL;
    if (base->fused_forward && sh->batch == 1) { /* W'' and S written: the check vectors and W_s v, then the X pass */
      uint64_t vseed;
      tempo_keygen_bytes(base->vg, &vseed, sizeof vseed);
      tempo_shield_fused_begin(&s->fz, vseed, wm, sm, sh->w_trans, pr->training, &rd);
      rdp = &rd;
    }
    mask_into(sc, k, TEMPO_OPERAND_X, false, pr->X + i * xs, at(s->r, i * xs, z), at(s->xm, i * xs, z), xs, rdp);
  }
  return TEMPO_STATUS_OK;
}

static const void *operand(const void *state, int role, int which) {
  const shield_state *s = state;
  if (which == TEMPO_OPERAND_X) return tempo_shield_role_masked_x(role) ? s->xm : s->r;
  if (which == TEMPO_OPERAND_W) return tempo_shield_role_masked_w(role) ? s->wm : s->s;
  return tempo_shield_role_masked_dy(role) ? s->dym : s->t;
}

/* float32 shares are checked like tempo's results (weighted by the key scales); float64
 * ones with the float64 bound, whose 2^-53 tolerance needs no weighting. */
static bool check(tempo_scheme *base, int r, int k, int c, const void *A, bool at_, const void *B, bool bt,
                  const void *C, const float *cw, uint64_t seed) {
  shield_sc *sc = (shield_sc *)base;
  base->bytes += es(sc) * ((uint64_t)r * k + (uint64_t)k * c + (uint64_t)r * c); /* A, B, C read once */
  if (sc->f64)
    return tempo_shield_verify64(r, k, c, A, at_, B, bt, C, base->verify_rounds, seed, sc->vwork) == TEMPO_STATUS_OK;
  /* the bound follows the checked worker's declared precision; weights come exactly with keys */
  const tempo_verify_model md = {.precision = (tempo_precision)base->precision, .permuted = cw != NULL};
  return tempo_verify_product_model(r, k, c, A, at_, B, bt, C, cw, &md, base->verify_rounds, seed, sc->vwork) ==
         TEMPO_STATUS_OK;
}

/* The fused hooks (fused.h; batch-1 float64 products). Share base->share's Y' rows [lo, hi). */
static bool check_forward(tempo_scheme *base, const void *state, const tempo_product *pr, int lo, int hi,
                          const void *y) {
  const shield_state *s = state;
  const int r = base->share;
  base->bytes += sizeof(double) * (uint64_t)(hi - lo) * pr->sh->p; /* Y' rows read once */
  return tempo_shield_fused_check_y(&s->fz, tempo_shield_role_masked_x(r), tempo_shield_role_masked_w(r), lo, hi, y);
}

/* Share base->share's dW' from rows [lo, hi): from dW' and its dY rows, with the X_s u the
 * training forward formed; without them (no training forward before) the full check. */
static bool check_dw(tempo_scheme *base, const void *state, const tempo_product *pr, int lo, int hi, const void *dw) {
  const shield_state *s = state;
  const tempo_mm_shape *sh = pr->sh;
  const int r = base->share, rows = hi - lo;
  const double *dys = (const double *)operand(state, r, TEMPO_OPERAND_DY) + (size_t)lo * sh->p;
  if (s->fz.dw_ready && s->fz.m == sh->m && s->fz.n == sh->n && s->fz.p == sh->p) {
    base->bytes += sizeof(double) * ((uint64_t)sh->n * sh->p + (uint64_t)rows * sh->p); /* dW' and dY_s rows */
    return tempo_shield_fused_check_dw(&s->fz, tempo_shield_role_masked_x(r), sh->w_trans, lo, hi, dys, dw,
                                       base->dw_parts);
  }
  const double *xs = (const double *)operand(state, r, TEMPO_OPERAND_X) + (size_t)lo * sh->n;
  uint64_t seed;
  tempo_keygen_bytes(base->vg, &seed, sizeof seed);
  if (sh->w_trans) return check(base, sh->p, rows, sh->n, dys, true, xs, false, dw, NULL, seed);
  return check(base, sh->n, rows, sh->p, xs, true, dys, false, dw, NULL, seed);
}

/* out = (float) sum over roles r of sign(r) share_r[i], added in role order (double). */
static void combine(const shield_sc *sc, const void *const *share, size_t off, int (*sign)(int), float *out,
                    size_t n) {
  double sg[NR];
  for (int r = 0; r < NR; r++) sg[r] = sign(r);
  if (sc->f64) {
    const double *a = (const double *)share[0] + off, *b = (const double *)share[1] + off,
                 *c = (const double *)share[2] + off, *d = (const double *)share[3] + off;
    enum { PIECE = 1 << 20 }; /* the kernel counts in int */
    for (size_t i = 0; i < n; i += PIECE) /* the checked combine's sum, without its dots (dots.h) */
      tempo_shield_combine4_dots(a + i, b + i, c + i, d + i, sg, n - i < PIECE ? (int)(n - i) : PIECE, NULL, 0,
                                 out + i, NULL);
  } else {
    const float *a = (const float *)share[0] + off, *b = (const float *)share[1] + off,
                *c = (const float *)share[2] + off, *d = (const float *)share[3] + off;
    for (size_t i = 0; i < n; i++)
      out[i] = (float)(((sg[0] * a[i] + sg[1] * (double)b[i]) + sg[2] * (double)c[i]) + sg[3] * (double)d[i]);
  }
}

static int finish(tempo_scheme *base, const void *state, const tempo_product *pr, const void *const *res,
                  const void *const *dw) {
  shield_sc *sc = (shield_sc *)base;
  const shield_state *s = state;
  const tempo_mm_shape *sh = pr->sh;
  const size_t xs = (size_t)sh->m * sh->n, ws = (size_t)sh->n * sh->p, ys = (size_t)sh->m * sh->p;
  /* per element: four shares read, the sum written and read by Dec, the output written (and read to accumulate) */
  const uint64_t per = NR * es(sc) + 3 * sizeof(float), B = (uint64_t)sh->batch;
  base->bytes += !pr->backward ? per * B * ys
                               : (pr->dX ? (per + (pr->accum & TEMPO_MM_ACCUM_DX ? 4 : 0)) * B * xs : 0) +
                                     (pr->dW ? (per + (pr->accum & TEMPO_MM_ACCUM_DW ? 4 : 0)) * B * ws : 0);
  for (int i = 0; i < sh->batch; i++) {
    const tempo_obf_key *k = &pr->keys[i];
    if (!pr->backward) {
      combine(sc, res, i * ys, tempo_shield_sign_y, sc->narrow, ys);
      tempo_obf_dec_y(k, sc->narrow, pr->Y + i * ys);
      continue;
    }
    if (pr->dX && base->dx_deferred) { /* batch 1: each share's dX' checked inside the combine */
      const double *four[NR];
      for (int r = 0; r < NR; r++) four[r] = res[r];
      const int bad = tempo_shield_fused_combine_dx(&s->fz, four, sc->narrow);
      if (bad >= 0) return bad; /* nothing decoded: the engine recomputes share `bad` */
      tempo_obf_dec_dx(k, sc->narrow, pr->dX, pr->accum & TEMPO_MM_ACCUM_DX);
    } else if (pr->dX) {
      combine(sc, res, i * xs, tempo_shield_sign_dx, sc->narrow, xs);
      tempo_obf_dec_dx(k, sc->narrow, pr->dX + i * xs, pr->accum & TEMPO_MM_ACCUM_DX);
    }
    if (pr->dW) {
      combine(sc, dw, i * ws, tempo_shield_sign_dw, sc->narrow, ws);
      tempo_obf_dec_dw(k, sh->w_trans, sc->narrow, pr->dW + i * ws, pr->accum & TEMPO_MM_ACCUM_DW);
    }
  }
  return -1;
}

static void sc_free(tempo_scheme *base) {
  shield_sc *sc = (shield_sc *)base;
  tempo_free_floats(sc->narrow);
  tempo_free_floats(sc->vwork);
  free(sc);
}

static const tempo_scheme_ops shield_ops = {.site_free = site_free, .prepare = prepare, .encode = encode,
                                            .operand = operand, .check = check, .finish = finish,
                                            .check_forward = check_forward, .check_dw = check_dw, .free = sc_free};

bool tempo_scheme_shield_configure(tempo_scheme *base, bool f32, double alpha) {
  if (!base || base->ops != &shield_ops) return false;
  shield_sc *sc = (shield_sc *)base;
  sc->f64 = !f32;
  sc->alpha = alpha > 0 ? alpha : f32 ? TEMPO_SHIELD_DEFAULT_ALPHA_F32 : TEMPO_SHIELD_DEFAULT_ALPHA;
  base->dtype = f32 ? TEMPO_DTYPE_F32 : TEMPO_DTYPE_F64;
  /* float64 shares check batch-1 products from dots formed in the X pass (fused.h) */
  base->fused_forward = !f32 && base->verify_rounds >= 1 && base->verify_rounds <= TEMPO_SHIELD_FUSED_ROUNDS;
  base->dx_in_finish = base->fused_forward; /* and their dX' inside the combine */
  return true;
}

tempo_status tempo_scheme_shield_create(const tempo_mm_config *cfg, tempo_scheme **out) {
  if (!(cfg->shield_alpha >= 0))
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "shield: the mask scale alpha must be > 0 (0 = default)");
  shield_sc *sc = calloc(1, sizeof *sc);
  if (!sc) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "shield: out of memory");
  sc->base = (tempo_scheme){.ops = &shield_ops, .name = "shield", .shares = NR, .min_workers = TEMPO_SHIELD_MIN_WORKERS,
                            .verify_rounds = cfg->verify_rounds, .can_mix = true /* its masks hide them */};
  tempo_scheme_shield_configure(&sc->base, cfg->shield_f32, cfg->shield_alpha);
  *out = &sc->base;
  return TEMPO_STATUS_OK;
}
