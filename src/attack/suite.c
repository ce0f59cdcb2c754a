/* suite.c - every attack on one step of an audit trail (attack.h, docs/SECURITY.md).
 * Prints "result <name> <value>" lines (and writes them as JSON with json_out). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attack/attack_internal.h"
#include "tempo/checkpoint.h"
#include "tempo/common.h"

#define MAX_RESULTS 256
typedef struct {
  int n;
  char name[MAX_RESULTS][48];
  double v[MAX_RESULTS];
} results;

static void put(results *r, const char *name, double v) {
  printf("result %s %.6g\n", name, v);
  if (r->n == MAX_RESULTS) return;
  snprintf(r->name[r->n], sizeof r->name[0], "%s", name);
  r->v[r->n++] = v;
}

void tempo_attack_config_default(tempo_attack_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->model = "resnet20";
  cfg->finetune_steps = 150;
  cfg->eval_samples = 2000;
  cfg->roles = 1;
  cfg->batch = 32;
}

/* Keeps products role, role + roles, ... (a shield-mode worker role's view). */
static void keep_role(tempo_trail_step *s, int roles, int role) {
  int k = 0;
  for (int i = 0; i < s->n; i++) {
    if (i % roles == role) {
      tempo_trail_product t = s->prods[k];
      s->prods[k++] = s->prods[i];
      s->prods[i] = t;
    }
  }
  for (int i = k; i < s->n; i++) {
    tempo_free_floats(s->prods[i].x), tempo_free_floats(s->prods[i].w), tempo_free_floats(s->prods[i].y);
    tempo_free_floats(s->prods[i].dy);
    memset(&s->prods[i], 0, sizeof s->prods[i]);
  }
  s->n = k;
}

/* The parameter holding the weight of product s (shape (p, ...) with n per row), the
 * next unused one in declaration order; -1 if none. */
static void map_weights(const tempo_trail_step *s, const tempo_params *P, int *param_of) {
  bool *used = calloc((size_t)P->n, sizeof *used);
  int next = 0;
  for (int i = 0; i < s->n; i++) {
    const tempo_trail_product *pr = &s->prods[i];
    param_of[i] = -1;
    if (!used || pr->batch != 1 || !pr->w_trans || !pr->w) continue;
    for (int t = 0; t < P->n; t++) {
      int k = (next + t) % P->n;
      const tempo_param_info *in = &P->info[k];
      if (used[k] || in->ndim < 2 || (in->flags & TEMPO_PARAM_STATE)) continue;
      if (in->shape[0] != pr->p || in->count != (size_t)pr->p * pr->n) continue;
      used[k] = true;
      param_of[i] = k;
      next = k + 1;
      break;
    }
  }
  free(used);
}

static double sqdiff(const float *a, const float *b, size_t n, double *ref) {
  double s = 0, r = 0;
  for (size_t i = 0; i < n; i++) s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]), r += (double)b[i] * b[i];
  *ref += r;
  return s;
}

/* Truth column permutation of a blinded matrix against its plaintext: balanced columns
 * are the same multisets, so sorted columns match exactly. */
static tempo_status truth_cols(const float *Xb, const float *Xt, int m, int n, int *perm) {
  tempo_status st = TEMPO_STATUS_OK;
  float *bb = tempo_alloc_floats((size_t)m * n), *bt = tempo_alloc_floats((size_t)m * n);
  double *rf = malloc((size_t)m * sizeof *rf), *cf = malloc((size_t)n * sizeof *cf);
  double *cost = malloc((size_t)n * n * sizeof *cost);
  float *ca = tempo_alloc_floats((size_t)n * m), *ct = tempo_alloc_floats((size_t)n * m);
  if (!bb || !bt || !rf || !cf || !cost || !ca || !ct) {
    st = tempo_set_error(TEMPO_STATUS_NO_MEMORY, "attack: out of memory");
    goto out;
  }
  tempo_balance(Xb, m, n, 300, rf, cf, bb);
  tempo_balance(Xt, m, n, 300, rf, cf, bt);
  for (int i = 0; i < m; i++)
    for (int j = 0; j < n; j++) ca[(size_t)j * m + i] = bb[(size_t)i * n + j], ct[(size_t)j * m + i] = bt[(size_t)i * n + j];
  for (int j = 0; j < n; j++) {
    qsort(ca + (size_t)j * m, (size_t)m, sizeof(float), tempo_attack_cmp_float);
    qsort(ct + (size_t)j * m, (size_t)m, sizeof(float), tempo_attack_cmp_float);
  }
  for (int j = 0; j < n; j++)
    for (int l = 0; l < n; l++) {
      double s = 0;
      for (int i = 0; i < m; i++) {
        double d = (double)ca[(size_t)j * m + i] - ct[(size_t)l * m + i];
        s += d * d;
      }
      cost[(size_t)j * n + l] = s;
    }
  st = tempo_assign(cost, n, perm, NULL);
out:
  tempo_free_floats(bb), tempo_free_floats(bt), tempo_free_floats(ca), tempo_free_floats(ct);
  free(rf), free(cf), free(cost);
  return st;
}

/* out = balanced(Y) with each column minus its median (Y (m, p)). */
static tempo_status center_columns(const float *Y, int m, int p, float *out) {
  double *rf = malloc((size_t)m * sizeof *rf), *cf = malloc((size_t)p * sizeof *cf);
  float *col = tempo_alloc_floats((size_t)m);
  if (!rf || !cf || !col) {
    free(rf), free(cf), tempo_free_floats(col);
    return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "attack: out of memory");
  }
  tempo_balance(Y, m, p, 200, rf, cf, out);
  for (int j = 0; j < p; j++) {
    for (int i = 0; i < m; i++) col[i] = out[(size_t)i * p + j];
    qsort(col, (size_t)m, sizeof *col, tempo_attack_cmp_float);
    float med = col[m / 2];
    for (int i = 0; i < m; i++) out[(size_t)i * p + j] -= med;
  }
  free(rf), free(cf), tempo_free_floats(col);
  return TEMPO_STATUS_OK;
}

/* Input recovery on product 0: column permutation and patch PSNR against the truth. */
static tempo_status attack_input(const tempo_trail_product *pb, const tempo_trail_product *pp,
                                 const tempo_trail_product *pt, results *res) {
  int m = pb->m, n = pb->n;
  const float mean = 0.2860f, sd = 0.3530f, floor_v = -mean / sd; /* Fashion-MNIST normalisation */
  tempo_status st = TEMPO_STATUS_OK;
  int *cp = malloc((size_t)n * sizeof *cp), *tcp = malloc((size_t)n * sizeof *tcp);
  float *rec = tempo_alloc_floats((size_t)m * n), *bb = tempo_alloc_floats((size_t)m * n),
        *bt = tempo_alloc_floats((size_t)m * n), *re = malloc((size_t)n * sizeof(float));
  double *rf = malloc((size_t)m * sizeof *rf), *cf = malloc((size_t)n * sizeof *cf), *mp = calloc((size_t)n, sizeof *mp);
  if (!cp || !tcp || !rec || !bb || !bt || !re || !rf || !cf || !mp) {
    st = tempo_set_error(TEMPO_STATUS_NO_MEMORY, "attack: out of memory");
    goto out;
  }
  if ((st = tempo_attack_patches(pb->x, m, pp->x, pp->m, n, floor_v, cp, rec))) goto out;
  if (!pt || !pt->x) goto out;
  if ((st = truth_cols(pb->x, pt->x, m, n, tcp))) goto out;
  int ok = 0;
  for (int j = 0; j < n; j++) ok += cp[j] == tcp[j];
  put(res, "input_colperm_recovered", (double)ok / n);
  /* row correspondence for scoring: nearest balanced truth row */
  tempo_balance(pb->x, m, n, 300, rf, cf, bb);
  tempo_balance(pt->x, m, n, 300, rf, cf, bt);
  for (int i = 0; i < pp->m; i++)
    for (int j = 0; j < n; j++) mp[j] += pp->x[(size_t)i * n + j] * sd + mean;
  for (int j = 0; j < n; j++) mp[j] /= pp->m;
  int samples = m < 2000 ? m : 2000, good = 0;
  double mse = 0, mse_triv = 0;
  for (int s = 0; s < samples; s++) {
    int r = (int)((long)s * m / samples);
    for (int j = 0; j < n; j++) re[tcp[j]] = bb[(size_t)r * n + j];
    int best = 0;
    double bd = INFINITY;
    for (int t = 0; t < m; t++) {
      const float *b = bt + (size_t)t * n;
      double d = 0;
      for (int j = 0; j < n && d < bd; j++) d += ((double)b[j] - re[j]) * ((double)b[j] - re[j]);
      if (d < bd) bd = d, best = t;
    }
    double e = 0, et = 0;
    for (int j = 0; j < n; j++) {
      double truth = pt->x[(size_t)best * n + j] * sd + mean;
      double guess = fmin(1.0, fmax(0.0, rec[(size_t)r * n + j] * sd + mean));
      e += (guess - truth) * (guess - truth);
      et += (mp[j] - truth) * (mp[j] - truth);
    }
    e /= n, et /= n;
    good += e < 0.01; /* 20 dB */
    mse += e, mse_triv += et;
  }
  put(res, "input_patch_psnr_db", 10 * log10(samples / fmax(mse, 1e-12)));
  put(res, "input_patch_psnr_mean_guess_db", 10 * log10(samples / fmax(mse_triv, 1e-12)));
  put(res, "input_patches_over_20db", (double)good / samples);
out:
  free(cp), free(tcp), tempo_free_floats(rec), tempo_free_floats(bb), tempo_free_floats(bt), free(re);
  free(rf), free(cf), free(mp);
  return st;
}

/* Pixel (y, x) of sample b from a plain 3x3 im2col (rows (b, y, x), centre tap column 4). */
static void images_of(const float *X, int B, int hw, float *img) {
  for (size_t r = 0; r < (size_t)B * hw; r++) img[r] = X[r * 9 + 4];
}

/* Whole images from product 0 (the stem's 3x3 im2col of the raw images), scored per image
 * against the truth: recovered and true images paired by a minimum-error assignment (the
 * sample order is unknown to the attacker), PSNR on pixels in [0, 1]. */
static tempo_status attack_images(const tempo_trail_product *pb, const tempo_trail_product *pp,
                                  const tempo_trail_product *pt, int B, results *res) {
  const float mean = 0.2860f, sd = 0.3530f; /* Fashion-MNIST normalisation */
  const int hw = pb->m / B, side = (int)lround(sqrt((double)hw));
  if (side * side != hw || pb->n != 9) return TEMPO_STATUS_OK;
  tempo_status st = TEMPO_STATUS_OK;
  size_t np = (size_t)B * hw;
  float *rec = tempo_alloc_floats(np), *tru = tempo_alloc_floats(np), *pub = tempo_alloc_floats(np);
  float *pm = tempo_alloc_floats((size_t)hw);
  double *cost = malloc((size_t)B * B * sizeof *cost);
  int *asg = malloc((size_t)B * sizeof *asg);
  if (!rec || !tru || !pub || !pm || !cost || !asg) {
    st = tempo_set_error(TEMPO_STATUS_NO_MEMORY, "attack: out of memory");
    goto out;
  }
  const float *pmean = NULL;
  if (pp && pp->x && pp->m == pb->m && pp->n == 9) {
    images_of(pp->x, B, hw, pub);
    for (int k = 0; k < hw; k++) {
      double a = 0;
      for (int b = 0; b < B; b++) a += pub[(size_t)b * hw + k];
      pm[k] = (float)(a / B);
    }
    pmean = pm;
  }
  tempo_image_geom g = {.batch = B, .h = side, .w = side, .black = -mean / sd};
  tempo_image_stats is;
  st = tempo_attack_images(pb->x, pb->m, pb->n, &g, pmean, rec, &is);
  if (st == TEMPO_STATUS_MISMATCH) { /* the view has no such structure: the attacker's best is the public mean */
    printf("attack: images: %s\n", tempo_errmsg());
    for (int b = 0; b < B; b++)
      for (int k = 0; k < hw; k++) rec[(size_t)b * hw + k] = pmean ? pm[k] : g.black;
    st = TEMPO_STATUS_OK;
    put(res, "image_l0_attack_ran", 0);
  } else if (st) {
    goto out;
  } else {
    printf("attack: images: %d background rows, %ld links (%ld conflicts), %d pieces, %ld rows placed, %d of %d axes "
           "anchored, symmetry %d\n",
           is.background_rows, is.links, is.conflicts, is.pieces, is.placed_rows, is.anchored, 2 * B, is.symmetry);
    put(res, "image_l0_attack_ran", 1);
    put(res, "image_l0_rows_placed", (double)is.placed_rows / pb->m);
  }
  if (!pt || !pt->x || pt->m != pb->m || pt->n != 9) goto out;
  images_of(pt->x, B, hw, tru);
  for (size_t k = 0; k < np; k++) {
    tru[k] = tru[k] * sd + mean;
    rec[k] = fminf(1.0f, fmaxf(0.0f, rec[k] * sd + mean));
  }
  for (int a = 0; a < B; a++)
    for (int b = 0; b < B; b++) {
      double e = 0;
      for (int k = 0; k < hw; k++) {
        double d = (double)rec[(size_t)a * hw + k] - tru[(size_t)b * hw + k];
        e += d * d;
      }
      cost[(size_t)a * B + b] = e / hw;
    }
  if ((st = tempo_assign(cost, B, asg, NULL))) goto out;
  double mse = 0, mse_pub = 0;
  int over = 0;
  for (int a = 0; a < B; a++) {
    double e = cost[(size_t)a * B + asg[a]];
    mse += e / B;
    over += 10 * log10(1.0 / fmax(e, 1e-12)) > 30;
    if (pmean) {
      double ep = 0;
      for (int k = 0; k < hw; k++) {
        double d = (double)pm[k] * sd + mean - tru[(size_t)a * hw + k];
        ep += d * d;
      }
      mse_pub += ep / hw / B;
    }
  }
  put(res, "image_l0_psnr_db", 10 * log10(1.0 / fmax(mse, 1e-12)));
  put(res, "image_l0_over_30db", (double)over / B);
  if (pmean) put(res, "image_l0_psnr_mean_guess_db", 10 * log10(1.0 / fmax(mse_pub, 1e-12)));
out:
  tempo_free_floats(rec), tempo_free_floats(tru), tempo_free_floats(pub), tempo_free_floats(pm);
  free(cost), free(asg);
  return st;
}

static void sym_of(int k, int s, int y, int x, int *oy, int *ox) {
  if (k & 4) {
    int t = y;
    y = x, x = t;
  }
  if (k & 1) y = s - 1 - y;
  if (k & 2) x = s - 1 - x;
  *oy = y, *ox = x;
}

/* Feature maps from product k's input (a later 3x3 conv), scored against the truth's
 * plaintext input: recovered channels named by the true column of their centre tap, one
 * scale per channel (the attack gives maps in units of the background), samples paired by a
 * minimum-error assignment, the best of the square's 8 symmetries (an attacker fixes it
 * against the recovered images). PSNR per sample over the recovered channels, peak = the
 * largest true value; the reference: each channel's true batch mean everywhere. */
static tempo_status attack_fmaps(int k, const tempo_trail_product *pb, const tempo_trail_product *pt, int B,
                                 results *res, double *over_sum, int *layers) {
  const int hw = pb->m / B, side = (int)lround(sqrt((double)hw)), n = pb->n, C = n / 9;
  if (side * side != hw || n % 9 || side < 3) return TEMPO_STATUS_OK;
  tempo_status st = TEMPO_STATUS_OK;
  size_t np = (size_t)B * hw;
  float *rec = tempo_alloc_floats(np * C), *tru = NULL;
  int *col_of = malloc((size_t)n * sizeof *col_of), *tcp = malloc((size_t)n * sizeof *tcp), L = 0;
  double *cost = malloc((size_t)B * B * sizeof *cost), *alpha = malloc((size_t)C * sizeof *alpha);
  int *asg = malloc((size_t)B * sizeof *asg), *chan = malloc((size_t)C * sizeof *chan);
  char name[48];
  if (!rec || !col_of || !tcp || !cost || !alpha || !asg || !chan) {
    st = tempo_set_error(TEMPO_STATUS_NO_MEMORY, "attack: out of memory");
    goto out;
  }
  tempo_image_stats is;
  st = tempo_attack_fmaps(pb->x, pb->m, n, B, side, side, rec, col_of, &L, &is);
  (*layers)++;
  snprintf(name, sizeof name, "fmap_p%d_attack_ran", k);
  if (st == TEMPO_STATUS_MISMATCH) {
    printf("attack: fmaps %d: %s\n", k, tempo_errmsg());
    put(res, name, 0);
    st = TEMPO_STATUS_OK;
    goto out;
  }
  if (st) goto out;
  put(res, name, 1);
  printf("attack: fmaps %d (%dx%d, %d channels, %d live on the background): %d background rows, %ld links, %d pieces, "
         "%ld rows placed\n",
         k, side, side, C, L, is.background_rows, is.links, is.pieces, is.placed_rows);
  if (!pt || !pt->x || pt->m != pb->m || pt->n != n) goto out;
  if (!(tru = tempo_alloc_floats(np * L))) {
    st = tempo_set_error(TEMPO_STATUS_NO_MEMORY, "attack: out of memory");
    goto out;
  }
  if ((st = truth_cols(pb->x, pt->x, pb->m, n, tcp))) goto out;
  int tap_ok = 0;
  for (int a = 0; a < L; a++) {
    int tj = tcp[col_of[4 * L + a]];
    tap_ok += tj / C == 4;
    chan[a] = tj % C;
  }
  for (int t = 0; t < 9; t++) /* the other taps: right up to the square's symmetry */
    for (int a = 0; a < L; a++) tap_ok += t != 4 && tcp[col_of[t * L + a]] % C == chan[a];
  snprintf(name, sizeof name, "fmap_p%d_live_channels", k);
  put(res, name, (double)L / C);
  snprintf(name, sizeof name, "fmap_p%d_columns_placed", k);
  put(res, name, (double)tap_ok / (9.0 * L));
  if (L == 0) goto out;
  double peak = 0;
  for (size_t r = 0; r < np; r++)
    for (int a = 0; a < L; a++) {
      float v = pt->x[r * n + 4 * C + chan[a]];
      tru[r * L + a] = v;
      peak = fmax(peak, v);
    }
  /* the attack's unit is each channel's background value: the most frequent true value */
  float *col = tempo_alloc_floats(np);
  if (!col) {
    st = tempo_set_error(TEMPO_STATUS_NO_MEMORY, "attack: out of memory");
    goto out;
  }
  for (int a = 0; a < L; a++) {
    for (size_t r = 0; r < np; r++) col[r] = tru[r * L + a];
    qsort(col, np, sizeof *col, tempo_attack_cmp_float);
    size_t best = 0;
    alpha[a] = 0;
    for (size_t r = 0, q = 0; r < np; r++) {
      while (col[r] - col[q] > 1e-5f * fabsf(col[r])) q++;
      if (col[r] > 0 && r - q + 1 > best) best = r - q + 1, alpha[a] = col[r];
    }
  }
  tempo_free_floats(col);
  double best_mse = INFINITY;
  int best_over = 0;
  for (int sy = 0; sy < 8; sy++) {
    for (int a = 0; a < B; a++)
      for (int b = 0; b < B; b++) {
        double e = 0;
        for (int y = 0; y < side; y++)
          for (int x = 0; x < side; x++) {
            int oy, ox;
            sym_of(sy, side, y, x, &oy, &ox);
            const float *rv = rec + ((size_t)a * hw + (size_t)y * side + x) * L;
            const float *tv = tru + ((size_t)b * hw + (size_t)oy * side + ox) * L;
            for (int c = 0; c < L; c++) e += (alpha[c] * rv[c] - tv[c]) * (alpha[c] * rv[c] - tv[c]);
          }
        cost[(size_t)a * B + b] = e / ((double)hw * L);
      }
    if ((st = tempo_assign(cost, B, asg, NULL))) goto out;
    double mse = 0;
    int over = 0;
    for (int a = 0; a < B; a++) {
      double e = cost[(size_t)a * B + asg[a]];
      mse += e / B;
      over += 10 * log10(peak * peak / fmax(e, 1e-30)) > 30;
    }
    if (mse < best_mse) best_mse = mse, best_over = over;
  }
  double mse_mean = 0;
  for (int c = 0; c < L; c++) {
    double mu = 0;
    for (size_t r = 0; r < np; r++) mu += tru[r * L + c];
    mu /= np;
    for (size_t r = 0; r < np; r++) mse_mean += (tru[r * L + c] - mu) * (tru[r * L + c] - mu);
  }
  mse_mean /= (double)np * L;
  snprintf(name, sizeof name, "fmap_p%d_psnr_db", k);
  put(res, name, 10 * log10(peak * peak / fmax(best_mse, 1e-30)));
  snprintf(name, sizeof name, "fmap_p%d_psnr_mean_guess_db", k);
  put(res, name, 10 * log10(peak * peak / fmax(mse_mean, 1e-30)));
  snprintf(name, sizeof name, "fmap_p%d_over_30db", k);
  put(res, name, (double)best_over / B);
  *over_sum += (double)best_over / B;
out:
  tempo_free_floats(rec), tempo_free_floats(tru);
  free(col_of), free(tcp), free(cost), free(alpha), free(asg), free(chan);
  return st;
}

static tempo_status attack_labels(const tempo_trail_step *sb, const tempo_trail_step *tr, int *const *arp,
                                   int *const *trp, results *res) {
  int L = -1;
  for (int i = sb->n - 1; i >= 0 && L < 0; i--)
    if (sb->prods[i].batch == 1 && sb->prods[i].p == 10 && sb->prods[i].dy && sb->prods[i].x) L = i;
  put(res, "label_head_in_trail", L >= 0);
  if (L < 0) return TEMPO_STATUS_OK;
  const tempo_trail_product *pb = &sb->prods[L];
  int m = pb->m, n = pb->n, single = 0;
  int *col = malloc((size_t)m * sizeof *col), *rows = malloc((size_t)m * sizeof *rows),
      *cols = malloc((size_t)n * sizeof *cols), asg[10];
  tempo_status st = TEMPO_STATUS_OK;
  if (!col || !rows || !cols) {
    st = tempo_set_error(TEMPO_STATUS_NO_MEMORY, "attack: out of memory");
    goto out;
  }
  for (int r = 0; r < m; r++) {
    int neg = 0;
    col[r] = -1;
    for (int j = 0; j < 10; j++)
      if (pb->dy[(size_t)r * 10 + j] < 0) neg++, col[r] = j;
    if (neg != 1) col[r] = -1;
    single += neg == 1;
  }
  put(res, "label_rows_one_negative", (double)single / m);
  const tempo_trail_product *pt = tr ? &tr->prods[L] : NULL;
  if (!pt || !pt->dy || !pt->x || !trp[L]) goto out;
  /* scoring: the rows' true order from aligning X' to the plaintext X (same pi_m as dY*) */
  if ((st = tempo_attack_match_weight(pb->x, pt->x, m, n, 1, rows, cols, NULL))) goto out;
  double conf[100] = {0}, cost[100];
  int ok = 0;
  for (int r = 0; r < m; r++) {
    const float *d = pt->dy + (size_t)rows[r] * 10;
    int truth = 0;
    for (int j = 1; j < 10; j++)
      if (d[j] < d[truth]) truth = j;
    if (col[r] < 0) continue;
    if (arp[L] && arp[L][col[r]] == truth) ok++;
    conf[col[r] * 10 + truth] += 1;
  }
  for (int k = 0; k < 100; k++) cost[k] = -conf[k];
  if ((st = tempo_assign(cost, 10, asg, NULL))) goto out;
  double best = 0;
  for (int j = 0; j < 10; j++) best += conf[j * 10 + asg[j]];
  if (arp[L]) put(res, "label_recovered", (double)ok / m);
  put(res, "label_recovered_up_to_renaming", best / m);
out:
  free(col), free(rows), free(cols);
  return st;
}

/* Puts the truth's products in the trail's order: a protection policy keeps some products
 * on the master, so the trail holds a subsequence of the truth's (plain mode shows all); each
 * trail product is the next truth product of its shape. MISMATCH when one has none. */
static tempo_status align_truth(const tempo_trail_step *sb, tempo_trail_step *tr, int *tidx) {
  tempo_trail_product *np = calloc((size_t)(sb->n ? sb->n : 1), sizeof *np);
  if (!np) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "attack: out of memory");
  int t = 0;
  for (int i = 0; i < sb->n; i++) {
    const tempo_trail_product *a = &sb->prods[i];
    while (t < tr->n && (tr->prods[t].batch != a->batch || tr->prods[t].m != a->m || tr->prods[t].n != a->n ||
                         tr->prods[t].p != a->p))
      t++;
    if (t == tr->n) {
      free(np);
      return tempo_set_error(TEMPO_STATUS_MISMATCH, "attack: trail product %d (%dx%dx%d) is not in the truth trail", i,
                             a->m, a->n, a->p);
    }
    np[i] = tr->prods[t];
    tidx[i] = t;
    memset(&tr->prods[t++], 0, sizeof *np);
  }
  if (sb->n < tr->n) printf("attack: %d of the truth's %d products are not in the trail (kept on the master)\n", tr->n - sb->n, tr->n);
  for (int k = 0; k < tr->n; k++) {
    tempo_free_floats(tr->prods[k].x), tempo_free_floats(tr->prods[k].w), tempo_free_floats(tr->prods[k].y);
    tempo_free_floats(tr->prods[k].dy);
  }
  free(tr->prods);
  tr->prods = np, tr->n = tr->cap = sb->n;
  return TEMPO_STATUS_OK;
}

tempo_status tempo_attack_run(const tempo_attack_config *cfg) {
  tempo_trail_step sb = {0}, st_truth = {0}, sp = {0};
  tempo_attack_model am = {0};
  tempo_dataset test = {0}, train = {0}, small = {0};
  results res = {0};
  int *param_of = NULL, **trp = NULL, **tcp = NULL, **arp = NULL, *tidx = NULL; /* tidx: the product's index
                                                                                 * in the truth (the layer) */
  float *prior_data = NULL, *prior_state = NULL, *asis = NULL, *recd = NULL;
  tempo_status st;
  if (cfg->roles < 1 || cfg->role < 0 || cfg->role >= cfg->roles)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "attack: role %d of %d", cfg->role, cfg->roles);
  if ((st = tempo_trail_load_step(cfg->audit_dir, cfg->step, &sb))) return st;
  if (sb.n % cfg->roles) {
    st = tempo_set_error(TEMPO_STATUS_MISMATCH, "attack: %d products are not %d roles each", sb.n, cfg->roles);
    goto out;
  }
  keep_role(&sb, cfg->roles, cfg->role);
  if (cfg->truth_dir && (st = tempo_trail_load_step(cfg->truth_dir, cfg->step, &st_truth))) goto out;
  if (cfg->public_dir && (st = tempo_trail_load_step(cfg->public_dir, 0, &sp))) goto out;
  if (!(tidx = malloc((size_t)sb.n * sizeof *tidx))) {
    st = tempo_set_error(TEMPO_STATUS_NO_MEMORY, "attack: out of memory");
    goto out;
  }
  for (int i = 0; i < sb.n; i++) tidx[i] = i;
  if (st_truth.n && (st = align_truth(&sb, &st_truth, tidx))) goto out;
  printf("attack: %s step %d: %d forward products (role %d of %d)\n", cfg->audit_dir, cfg->step, sb.n, cfg->role, cfg->roles);
  /* the prior: a checkpoint, or the public initialisation scheme with another seed */
  if ((st = tempo_attack_model_create(cfg->model, 0x5eed5eedull, &am))) goto out;
  tempo_params *P = &am.model->params;
  if (cfg->prior) {
    tempo_ckpt_meta meta;
    if ((st = tempo_ckpt_load(cfg->prior, &meta, P, NULL))) goto out;
  }
  size_t cnt = P->count, scnt = P->state_count;
  prior_data = malloc(cnt * sizeof(float)), asis = malloc(cnt * sizeof(float)), recd = malloc(cnt * sizeof(float));
  prior_state = malloc((scnt ? scnt : 1) * sizeof(float));
  param_of = malloc((size_t)sb.n * sizeof *param_of);
  trp = calloc((size_t)sb.n, sizeof *trp), tcp = calloc((size_t)sb.n, sizeof *tcp);
  arp = calloc((size_t)sb.n, sizeof *arp);
  if (!prior_data || !asis || !recd || !prior_state || !param_of || !trp || !tcp || !arp) {
    st = tempo_set_error(TEMPO_STATUS_NO_MEMORY, "attack: out of memory");
    goto out;
  }
  memcpy(prior_data, P->data, cnt * sizeof(float));
  if (scnt) memcpy(prior_state, P->state, scnt * sizeof(float));
  memcpy(asis, prior_data, cnt * sizeof(float));
  memcpy(recd, prior_data, cnt * sizeof(float));
  map_weights(&sb, P, param_of);

  /* 1. weight recovery against the prior */
  long rows_ok = 0, rows = 0, cols_ok = 0, cols = 0, mapped = 0, aligned = 0, cos_ok = 0;
  double err = 0, err_prior = 0, ref = 0, ref2 = 0, cos_err = 0;
  for (int i = 0; i < sb.n; i++) {
    if (param_of[i] < 0) continue;
    const tempo_trail_product *pr = &sb.prods[i];
    int r = pr->p, c = pr->n;
    float *W0 = prior_data + P->info[param_of[i]].offset, *rec = recd + P->info[param_of[i]].offset;
    int *rp = malloc((size_t)r * sizeof *rp), *cp = malloc((size_t)c * sizeof *cp);
    trp[i] = malloc((size_t)r * sizeof **trp), tcp[i] = malloc((size_t)c * sizeof **tcp);
    if (!rp || !cp || !trp[i] || !tcp[i]) {
      free(rp), free(cp);
      st = tempo_set_error(TEMPO_STATUS_NO_MEMORY, "attack: out of memory");
      goto out;
    }
    memcpy(asis + P->info[param_of[i]].offset, pr->w, (size_t)r * c * sizeof(float));
    st = tempo_attack_match_weight(pr->w, W0, r, c, 2, rp, cp, rec);
    /* the scoring's ground truth: the trail's weight aligned to the plaintext one (exact
     * for MM-obfuscation; when it is not, the view is no permuted scaling of the secret) */
    float *tr = NULL;
    if (!st && st_truth.n) {
      tr = tempo_alloc_floats((size_t)r * c);
      st = tr ? tempo_attack_match_weight(pr->w, st_truth.prods[i].w, r, c, 1, trp[i], tcp[i], tr)
              : tempo_set_error(TEMPO_STATUS_NO_MEMORY, "attack: out of memory");
      if (!st) {
        double e2 = 0, r2 = 0;
        e2 = sqdiff(tr, st_truth.prods[i].w, (size_t)r * c, &r2);
        aligned += sqrt(e2 / r2) < 1e-3;
      }
      tempo_free_floats(tr);
    }
    if (st) {
      free(rp), free(cp);
      goto out;
    }
    mapped++;
    arp[i] = rp;
    rp = NULL;
    if (st_truth.n) { /* direction matching (ArrowMatch-style), scored the same way */
      int *rq = malloc((size_t)r * sizeof *rq), *cq = malloc((size_t)c * sizeof *cq);
      float *rc2 = tempo_alloc_floats((size_t)r * c);
      st = rq && cq && rc2 ? tempo_attack_match_cosine(pr->w, W0, r, c, 2, rq, cq, rc2)
                           : tempo_set_error(TEMPO_STATUS_NO_MEMORY, "attack: out of memory");
      if (!st) {
        for (int a = 0; a < r; a++) cos_ok += rq[a] == trp[i][a];
        for (int a = 0; a < c; a++) cos_ok += cq[a] == tcp[i][a];
        double r2 = 0;
        cos_err += sqdiff(rc2, st_truth.prods[i].w, (size_t)r * c, &r2);
      }
      free(rq), free(cq), tempo_free_floats(rc2);
      if (st) {
        free(rp), free(cp);
        goto out;
      }
    }
    if (st_truth.n) {
      const float *Wt = st_truth.prods[i].w;
      for (int a = 0; a < r; a++) rows_ok += arp[i][a] == trp[i][a];
      for (int a = 0; a < c; a++) cols_ok += cp[a] == tcp[i][a];
      rows += r, cols += c;
      err += sqdiff(rec, Wt, (size_t)r * c, &ref);
      err_prior += sqdiff(W0, Wt, (size_t)r * c, &ref2);
    }
    free(rp), free(cp);
  }
  put(&res, "weights_attacked", (double)mapped);
  if (rows) {
    put(&res, "truth_alignable", (double)aligned / mapped);
    put(&res, "weight_perm_recovered", (double)(rows_ok + cols_ok) / (double)(rows + cols));
    put(&res, "weight_perm_recovered_out", (double)rows_ok / rows);
    put(&res, "weight_perm_recovered_in", (double)cols_ok / cols);
    put(&res, "weight_rel_error", sqrt(err / ref));
    put(&res, "weight_rel_error_of_prior", sqrt(err_prior / ref2));
    put(&res, "weight_perm_recovered_cosine", (double)cos_ok / (double)(rows + cols));
    put(&res, "weight_rel_error_cosine", sqrt(cos_err / ref));
  }

  /* 2. linking: the next product's input columns to this product's output columns */
  long link_ok = 0, link_n = 0, link_pairs = 0;
  double chance = 0;
  for (int i = 0; i + 1 < sb.n; i++) {
    const tempo_trail_product *a = &sb.prods[i], *b = &sb.prods[i + 1];
    if (a->batch != 1 || b->batch != 1 || !a->y || !b->x || a->m != b->m || b->n % a->p) continue;
    int *link = malloc((size_t)b->n * sizeof *link);
    if (!link) {
      st = tempo_set_error(TEMPO_STATUS_NO_MEMORY, "attack: out of memory");
      goto out;
    }
    /* Batch norm thresholds the next input at the batch mean, not at 0: centre each
     * output column of the balanced Y' (row scales removed) at its median first. */
    float *yc = tempo_alloc_floats((size_t)a->m * a->p);
    if (!yc) {
      free(link);
      st = tempo_set_error(TEMPO_STATUS_NO_MEMORY, "attack: out of memory");
      goto out;
    }
    st = center_columns(a->y, a->m, a->p, yc);
    if (!st) st = tempo_attack_link(yc, a->m, a->p, b->x, b->m, b->n, link);
    tempo_free_floats(yc);
    if (st) {
      free(link);
      goto out;
    }
    link_pairs++;
    if (trp[i] && tcp[i + 1]) {
      int ok = 0;
      for (int l = 0; l < b->n; l++) ok += tcp[i + 1][l] % a->p == trp[i][link[l]]; /* tap-major: t * Cin + c */
      printf("attack: link %d -> %d (%d units, %d inputs): %.3f\n", i, i + 1, a->p, b->n, (double)ok / b->n);
      link_ok += ok, link_n += b->n;
      chance += 1.0 / a->p;
    }
    free(link);
  }
  put(&res, "link_pairs", (double)link_pairs);
  if (link_n) {
    put(&res, "link_recovered", (double)link_ok / link_n);
    put(&res, "link_chance", chance / link_pairs);
  }

  /* 2b. labels from the head's dY* = (softmax - onehot) / B under the shifted key: the
   * one negative entry of each row is the sample's label column */
  if ((st = attack_labels(&sb, st_truth.n ? &st_truth : NULL, arp, trp, &res))) goto out;

  /* 3. input recovery from the first product */
  /* (the quadratic assignment is O(n^3) per pass: first layers up to 256 inputs) */
  if (sp.n && sb.prods[0].x && sp.prods[0].x && sp.prods[0].n == sb.prods[0].n && sb.prods[0].batch == 1 &&
      sb.prods[0].n <= 256)
    if ((st = attack_input(&sb.prods[0], &sp.prods[0], st_truth.n ? &st_truth.prods[0] : NULL, &res))) goto out;

  /* 3b. whole images from the first product (a 3x3 im2col of the raw images) */
  {
    const int B = cfg->batch;
    put(&res, "image_l0_in_trail", sb.prods[0].batch == 1 && sb.prods[0].x && sb.prods[0].n == 9);
    if (B > 0 && sb.prods[0].batch == 1 && sb.prods[0].x && sb.prods[0].m % B == 0 && sb.prods[0].n == 9)
      if ((st = attack_images(&sb.prods[0], sp.n ? &sp.prods[0] : NULL, st_truth.n ? &st_truth.prods[0] : NULL, B, &res)))
        goto out;
  }

  /* 3c. feature maps from the input of every later conv product (3x3 im2col inputs) */
  {
    const int B = cfg->batch;
    int layers = 0;
    double over = 0;
    for (int k = 0; k < sb.n && B > 0; k++) {
      const tempo_trail_product *pk = &sb.prods[k];
      if (pk->batch != 1 || !pk->x || pk->m % B || pk->n % 9 || pk->n == 9 || pk->m == B) continue;
      if ((st = attack_fmaps(tidx[k], pk, st_truth.n ? &st_truth.prods[k] : NULL, B, &res, &over, &layers))) goto out;
    }
    if (layers) {
      put(&res, "fmap_layers", layers);
      put(&res, "fmap_over_30db_mean", over / layers);
    }
  }

  /* 4. model theft */
  if (cfg->data_dir) {
    if ((st = tempo_dataset_load(TEMPO_DATASET_FASHION_MNIST, cfg->data_dir, false, &test))) goto out;
    if ((st = tempo_dataset_load(TEMPO_DATASET_FASHION_MNIST, cfg->data_dir, true, &train))) goto out;
    if ((st = tempo_attack_subset(&train, train.n / 100, &small))) goto out;
    const float lr = 0.02f;
    struct {
      const char *name;
      const float *data;
      bool finetune;
    } runs[] = {{"theft_acc_prior", prior_data, false},  {"theft_acc_blinded", asis, false},
                {"theft_acc_recovered", recd, false},    {"theft_acc_blinded_ft1pct", asis, true},
                {"theft_acc_recovered_ft1pct", recd, true}};
    for (size_t k = 0; k < sizeof runs / sizeof runs[0]; k++) {
      memcpy(P->data, runs[k].data, cnt * sizeof(float));
      if (scnt) memcpy(P->state, prior_state, scnt * sizeof(float));
      if (runs[k].finetune && (st = tempo_attack_finetune(&am, &small, cfg->finetune_steps, lr))) goto out;
      if (!runs[k].finetune && k > 0 && (st = tempo_attack_recalibrate(&am, &small, 30))) goto out;
      double acc;
      if ((st = tempo_attack_accuracy(&am, &test, cfg->eval_samples, &acc))) goto out;
      put(&res, runs[k].name, acc);
    }
    tempo_attack_model scratch;
    if ((st = tempo_attack_model_create(cfg->model, 0xabcdefull, &scratch))) goto out;
    double acc = 0;
    st = tempo_attack_finetune(&scratch, &small, cfg->finetune_steps, lr);
    if (!st) st = tempo_attack_accuracy(&scratch, &test, cfg->eval_samples, &acc);
    tempo_attack_model_free(&scratch);
    if (st) goto out;
    put(&res, "theft_acc_scratch_1pct", acc);
  }
  if (cfg->json_out) {
    FILE *f = fopen(cfg->json_out, "w");
    if (!f) {
      st = tempo_set_error(TEMPO_STATUS_IO, "attack: cannot write %s", cfg->json_out);
      goto out;
    }
    fprintf(f, "{");
    for (int k = 0; k < res.n; k++) fprintf(f, "%s\"%s\": %.6g", k ? ", " : "", res.name[k], res.v[k]);
    fprintf(f, "}\n");
    if (fclose(f)) st = tempo_set_error(TEMPO_STATUS_IO, "attack: cannot write %s", cfg->json_out);
  }
out:
  for (int i = 0; trp && tcp && arp && i < sb.n; i++) free(trp[i]), free(tcp[i]), free(arp[i]);
  free(trp), free(tcp), free(arp), free(param_of), free(tidx);
  free(prior_data), free(prior_state), free(asis), free(recd);
  tempo_dataset_free(&test), tempo_dataset_free(&train), tempo_dataset_free(&small);
  tempo_attack_model_free(&am);
  tempo_trail_step_free(&sb), tempo_trail_step_free(&st_truth), tempo_trail_step_free(&sp);
  return st;
}
